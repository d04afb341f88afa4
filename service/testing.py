"""Test helpers for the service: a fake LLM backend and a tiny corpus with access groups.

Used by tests/test_service*.py and ``python -m service.loadtest --fake``. Nothing here is
used by the running service.

``FakeLLM`` implements the ``rag.llm.LLMBackend`` interface without a model. Its answer is
the first sentence of passage [1] of the prompt followed by `` [1]`` (so the pipeline's
attribution accepts it), streamed word by word, optionally with a delay per token. It
records every stream it starts and whether the stream was closed before its end, so tests
can prove that a disconnected client stops generation.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.llm import GenerationParams, LLMUnavailableError

_PASSAGE = re.compile(r"^\[1\][^\n]*\n(?P<text>.+?)(?:\n\[\d+\]|\nVraag:|\Z)", re.S | re.M)
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.S)


class StreamRecord:
    def __init__(self) -> None:
        self.tokens = 0
        self.finished = False  # ran to its end
        self.closed = threading.Event()  # generator closed (end, close() or error)
        self.closed_early = False
        self.started = time.monotonic()


class FakeLLM:
    """A deterministic LLM stand-in. ``delay``: seconds per token; ``unavailable``: raise
    LLMUnavailableError(retry_after=...) when a stream starts."""

    keeps_prefix = True  # as the default backend (llama_cpp): the service warms it up

    def __init__(
        self,
        model_id: str = "fake-llm",
        delay: float = 0.0,
        unavailable: bool = False,
        retry_after: float = 7.0,
        fixed_answer: str | None = None,
        extra_tokens: int = 0,
    ) -> None:
        self.model_id = model_id
        self.context_window = 4096
        self.delay = delay
        self.unavailable = unavailable
        self.retry_after = retry_after
        self.fixed_answer = fixed_answer
        self.extra_tokens = extra_tokens  # padding words after the answer (long streams)
        self.streams: list[StreamRecord] = []
        self.prompts: list[list[dict[str, str]]] = []
        self._lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    @classmethod
    def from_settings(cls, settings) -> FakeLLM:  # for rag.llm.register_backend
        return cls()

    # -- LLMBackend --------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def chat(self, messages, params=None) -> str:
        return "".join(self.stream_chat(messages, params or GenerationParams()))

    def answer_for(self, messages: list[dict[str, str]]) -> str:
        user = messages[-1]["content"] if messages else ""
        if "Zelfstandige vraag:" in user:  # the condense prompt: return the last question
            m = re.search(r"Laatste vraag:\s*(.+)", user)
            return m.group(1).strip() if m else ""
        if self.fixed_answer is not None:
            return self.fixed_answer
        m = _PASSAGE.search(user)
        if not m:
            return "Dat staat niet in de documenten die ik kan raadplegen."
        text = " ".join(m.group("text").split())
        s = _FIRST_SENTENCE.match(text)
        sentence = s.group(1) if s else text
        return f"{sentence} [1]"

    def stream_chat(self, messages, params: GenerationParams) -> Iterator[str]:
        rec = StreamRecord()
        with self._lock:
            self.streams.append(rec)
            self.prompts.append([dict(m) for m in messages])
        return self._gen(messages, params, rec)

    def _gen(self, messages, params, rec: StreamRecord) -> Iterator[str]:
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.unavailable:
                raise LLMUnavailableError("fake LLM is overloaded", retry_after=self.retry_after)
            words = self.answer_for(messages).split(" ")
            words += ["…"] * self.extra_tokens if self.extra_tokens else []
            limit = params.max_tokens if params and params.max_tokens else len(words)
            stop = (params.stop if params else None) or []
            for i, w in enumerate(words[: max(limit, 1)]):
                if any(s and s in w for s in stop):
                    break
                if self.delay:
                    time.sleep(self.delay)
                rec.tokens += 1
                yield w if i == 0 else " " + w
            rec.finished = True
        except GeneratorExit:
            rec.closed_early = True
            raise
        finally:
            with self._lock:
                self.active -= 1
            rec.closed.set()


# --------------------------------------------------------------------------- corpus

PUBLIC_DOCS = {
    "begroting-2023-zorg.md": (
        "# Begroting 2023 zorg\n\n## Mantelzorg\n\n"
        "De gemeente besteedt 2 miljoen euro aan mantelzorgondersteuning in 2023. "
        "Mantelzorgers krijgen een jaarlijkse waardering.\n\n## Jeugd\n\n"
        "Voor jeugdhulp is 40 miljoen euro begroot, vooral voor wijkteams.\n"
    ),
    "raadsbrief-2022-preventie.md": (
        "# Raadsbrief preventie\n\n## Motie\n\n"
        "De raad nam in 2022 een motie aan om meer geld te besteden aan preventie in de wijk. "
        "Het college voert de motie uit met buurtsportcoaches.\n"
    ),
}

# Each restricted document has a unique word that appears nowhere else.
RESTRICTED = {
    "financien": (
        "vertrouwelijk-grondexploitatie.md",
        "zwavelkoepel",
        "# Grondexploitatie Zwavelkoepel\n\n## Verwachte opbrengst\n\n"
        "De grondexploitatie zwavelkoepel levert naar verwachting 7 miljoen euro op in 2026. "
        "De zwavelkoepel grond wordt in delen verkocht aan ontwikkelaars.\n",
    ),
    "sociaal": (
        "vertrouwelijk-casusoverleg.md",
        "kwartelhof",
        "# Casusoverleg Kwartelhof\n\n## Afspraken\n\n"
        "Het casusoverleg kwartelhof bespreekt maandelijks de zorg voor kwetsbare bewoners. "
        "In kwartelhof werkt het wijkteam samen met de woningcorporatie.\n",
    ),
}


def write_corpus(root: Path) -> dict[str, Path]:
    """Write the test corpus: ``root/openbaar`` (public) and one folder per restricted group.
    Returns {"public": folder, group: folder, ...}."""
    out: dict[str, Path] = {}
    pub = root / "openbaar"
    pub.mkdir(parents=True, exist_ok=True)
    for name, text in PUBLIC_DOCS.items():
        (pub / name).write_text(text, encoding="utf-8")
    out["public"] = pub
    for group, (name, _word, text) in RESTRICTED.items():
        folder = root / group
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        out[group] = folder
    return out


def build_index(root: Path, settings, embedder) -> None:
    """Ingest the test corpus into ``settings.index_dir``: the public folder for everyone,
    each restricted folder for its group only."""
    from rag.indexing import ingest_paths

    folders = write_corpus(root)
    report = ingest_paths([folders["public"]], settings, embedder)
    assert report.ok, report.failed
    for group in RESTRICTED:
        report = ingest_paths([folders[group]], settings, embedder, groups=[group])
        assert report.ok, report.failed


def make_pipeline(settings, embedder, llm):
    """A real rag.pipeline.Pipeline over ``settings.index_dir`` that sees new index
    generations at once."""
    from rag.index import IndexReader
    from rag.pipeline import Pipeline
    from rag.retrieve import Retriever

    retriever = Retriever(settings, embedder, IndexReader(settings.index_dir, check_interval=0.0))
    return Pipeline(settings, retriever, llm)


# --------------------------------------------------------------------------- a live server


class LiveServer:
    """Run an ASGI app with uvicorn on 127.0.0.1 (a free port) in a background thread.

    with LiveServer(app) as base_url:
        httpx.get(base_url + "/healthz")
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self.host = host
        self.port = port or free_port(host)
        self.server: Any = None  # a uvicorn.Server while running
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        server = self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def free_port(host: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- a fake service in a process


class FakeService:
    """``python -m service.loadtest --serve-fake PORT`` in a subprocess: the real service
    (uvicorn, drain on SIGTERM) over a test index with a fake LLM (``delay`` s per token),
    its index, data folder and keys in ``root`` — start it again on the same root to restart
    it. Used by tests/test_faults.py and eval/fault_drills.py."""

    def __init__(self, root: Path, delay: float = 0.05, tokens: int = 60, grace: float = 20.0) -> None:
        self.root, self.delay, self.tokens, self.grace = Path(root), delay, tokens, grace
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: Any = None  # subprocess.Popen

    def start(self, timeout: float = 60) -> float:
        """Start and wait until /readyz is 200; returns the seconds that took."""
        import os
        import subprocess
        import sys
        import urllib.request

        t0 = time.monotonic()
        cmd = [sys.executable, "-m", "service.loadtest", "--serve-fake", str(self.port)]
        cmd += ["--fake-delay", str(self.delay), "--fake-tokens", str(self.tokens)]
        cmd += ["--root", str(self.root), "--grace", str(self.grace)]
        self.proc = subprocess.Popen(
            cmd,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.proc.stdout.readline()  # {"root": ...} once the app exists
        while time.monotonic() - t0 < timeout:
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"the fake service exited with {self.proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError("the fake service did not become ready")

    def key(self) -> str:
        import json

        return json.loads((self.root / "keys.json").read_text())[0]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key()}"}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
