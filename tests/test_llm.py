"""rag/llm: the backend registry, error mapping, streaming and cancellation.

Fast tests use no real model: a fake OpenAI-compatible server on 127.0.0.1 (http.server in
a thread), a fake ``Llama`` object, and a tiny random-initialised transformers model built
in tmp_path.  Tests marked ``slow`` use the real GGUF (llama_cpp backend in-process, and
``python -m llama_cpp.server`` for the openai backend); they are skipped only when the
GGUF is not installed.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.metadata
import inspect
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.llm import (
    BUILTIN_BACKENDS,
    ENTRY_POINT_GROUP,
    BackendLoadError,
    ContextLengthError,
    GenerationParams,
    LLMBackend,
    LLMError,
    LLMTimeoutError,
    LLMUnavailableError,
    StopMatcher,
    UnknownBackendError,
    available_backends,
    complete,
    load_llm,
    register_backend,
    unregister_backend,
)
from rag.settings import Settings

USER_Q = [{"role": "user", "content": "Wat is een motie?"}]

# --------------------------------------------------------------------------- registry


class FakeBackend:
    """A minimal backend: streams the words of a fixed answer."""

    def __init__(self, answer: str = "Een motie is een verzoek.", model_id: str = "fake"):
        self.model_id = model_id
        self.context_window = 128
        self.answer = answer
        self.closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeBackend:
        return cls(model_id=settings.llm)

    def stream_chat(self, messages, params):
        try:
            for word in self.answer.split(" "):
                yield word + " "
        finally:
            self.closed = True

    def chat(self, messages, params):
        return complete(self, messages, params)

    def count_tokens(self, text: str) -> int:
        return len(text.split())


@pytest.fixture
def registry_cleanup():
    names: list[str] = []
    yield names
    for n in names:
        unregister_backend(n)


def test_unknown_backend_lists_builtins(settings):
    s = settings.model_copy(update={"llm_backend": "does-not-exist"})
    with pytest.raises(UnknownBackendError) as err:
        load_llm(s)
    msg = str(err.value)
    for name in ("llama_cpp", "openai", "transformers"):
        assert name in msg
    assert "does-not-exist" in msg
    assert list(BUILTIN_BACKENDS) == available_backends()[:3]


def test_registered_factories_are_used(settings, registry_cleanup):
    registry_cleanup += ["fake-class", "fake-callable"]
    register_backend("fake-class", FakeBackend)
    register_backend("fake-callable", lambda s: FakeBackend(answer="hallo", model_id="callable"))

    b = load_llm(settings.model_copy(update={"llm_backend": "fake-class", "llm": "my-model"}))
    assert isinstance(b, FakeBackend) and b.model_id == "my-model"
    assert isinstance(b, LLMBackend)  # satisfies the protocol
    assert b.chat(USER_Q, GenerationParams()) == "Een motie is een verzoek. "
    assert b.closed

    b2 = load_llm(settings.model_copy(update={"llm_backend": "FAKE-CALLABLE"}))  # case-insensitive
    assert b2.model_id == "callable"
    assert "fake-class" in available_backends()


def _write_plugin(tmp_path: Path, monkeypatch, body: str, name: str) -> None:
    (tmp_path / f"{name}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_entry_point_discovery(settings, tmp_path, monkeypatch, registry_cleanup):
    _write_plugin(
        tmp_path,
        monkeypatch,
        "class PluginBackend:\n"
        "    model_id = 'plugin'\n"
        "    context_window = 64\n"
        "    @classmethod\n"
        "    def from_settings(cls, settings):\n"
        "        return cls()\n"
        "    def stream_chat(self, messages, params):\n"
        "        yield 'plug'\n"
        "    def chat(self, messages, params):\n"
        "        return 'plug'\n"
        "    def count_tokens(self, text):\n"
        "        return 1\n",
        "vb_fake_plugin",
    )
    eps = [
        importlib.metadata.EntryPoint(name="plugged", value="vb_fake_plugin:PluginBackend", group=ENTRY_POINT_GROUP),
        importlib.metadata.EntryPoint(name="broken", value="vb_no_such_module:X", group=ENTRY_POINT_GROUP),
    ]
    seen_groups = []

    def fake_entry_points(**kw):
        seen_groups.append(kw.get("group"))
        return [ep for ep in eps if ep.group == kw.get("group")]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    assert {"plugged", "broken"} <= set(available_backends())
    b = load_llm(settings.model_copy(update={"llm_backend": "plugged"}))
    assert b.model_id == "plugin" and "".join(b.stream_chat(USER_Q, GenerationParams())) == "plug"
    assert seen_groups and set(seen_groups) == {ENTRY_POINT_GROUP}
    # a broken plugin fails only when chosen, with a clear error
    with pytest.raises(BackendLoadError, match="broken"):
        load_llm(settings.model_copy(update={"llm_backend": "broken"}))
    with pytest.raises(UnknownBackendError, match="plugged"):
        load_llm(settings.model_copy(update={"llm_backend": "nope"}))
    # a "module:attribute" string works as a registered factory too
    registry_cleanup.append("by-string")
    register_backend("by-string", "vb_fake_plugin:PluginBackend")
    assert load_llm(settings.model_copy(update={"llm_backend": "by-string"})).model_id == "plugin"


def test_backend_import_failure_only_when_chosen(settings, tmp_path, monkeypatch, registry_cleanup):
    monkeypatch.setitem(BUILTIN_BACKENDS, "ghost", "rag.llm.no_such_module:Ghost")
    registry_cleanup.append("fake")
    register_backend("fake", FakeBackend)
    assert "ghost" in available_backends()
    assert isinstance(load_llm(settings.model_copy(update={"llm_backend": "fake"})), FakeBackend)
    with pytest.raises(BackendLoadError, match="ghost"):
        load_llm(settings.model_copy(update={"llm_backend": "ghost"}))

    # a missing dependency (transformers) inside a built-in backend
    monkeypatch.setitem(sys.modules, "transformers", None)
    s = settings.model_copy(update={"llm_backend": "transformers", "llm": str(tmp_path)})
    with pytest.raises(BackendLoadError, match="transformers"):
        load_llm(s)


def test_transformers_backend_rejects_gguf_registry_name(settings):
    pytest.importorskip("transformers")
    with pytest.raises(LLMError, match="llama_cpp"):
        load_llm(settings.model_copy(update={"llm_backend": "transformers"}))  # default llm = GGUF name


# --------------------------------------------------------------------------- stop strings


def test_stop_matcher_across_deltas():
    m = StopMatcher(["\n\nVraag:", "###"])
    out = "".join(m.feed(d) for d in ["Het ant", "woord.\n", "\nVr", "aag: meer"])
    assert out == "Het antwoord." and m.stopped
    assert m.flush() == "" and m.feed("x") == ""

    m = StopMatcher(["###"])
    out = "".join(m.feed(d) for d in ["a#", "#b", "c#"]) + m.flush()
    assert out == "a##bc#" and not m.stopped

    m = StopMatcher(None)
    assert m.feed("abc") == "abc"


# --------------------------------------------------------------------------- fake OpenAI server


class _FakeOpenAI:
    """An OpenAI-compatible server on 127.0.0.1: set ``mode`` per test."""

    def __init__(self) -> None:
        self.mode = "stream"
        self.words = [f"woord{i} " for i in range(200)]
        self.delay = 0.0
        self.hang = 3.0
        self.requests: list[tuple[str, dict]] = []
        self.chunks_sent = 0
        self.disconnected = threading.Event()
        self.tokenize = True
        self._stop = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _json(self, status: int, obj: dict, headers: dict | None = None) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.requests.append((self.path, {}))
                if self.path == "/v1/models":
                    self._json(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}],
                        },
                    )
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                fake.requests.append((self.path, body))
                if self.path == "/extras/tokenize/count" and fake.tokenize:
                    return self._json(200, {"count": len(body["input"].split())})
                if self.path != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "not found"}})
                mode = fake.mode
                if mode == "503":
                    return self._json(503, {"error": {"message": "overloaded"}}, {"Retry-After": "7"})
                if mode == "429":
                    return self._json(429, {"error": {"message": "slow down"}}, {"retry-after-ms": "1500"})
                if mode == "400":
                    return self._json(400, {"error": {"message": "bad request"}})
                if mode == "hang":
                    fake._stop.wait(fake.hang)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                words = fake.words[: body.get("max_tokens") or len(fake.words)]
                try:
                    for i, w in enumerate(words):
                        chunk = {
                            "id": "c1",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": "fake-model",
                            "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                        self.wfile.flush()
                        fake.chunks_sent += 1
                        if mode == "hang_mid" and i == 0:
                            fake._stop.wait(fake.hang)
                        if fake.delay:
                            time.sleep(fake.delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    fake.disconnected.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_openai():
    srv = _FakeOpenAI()
    yield srv
    srv.close()


def _openai_backend(url: str, timeout: float = 5.0, model_name: str = ""):
    pytest.importorskip("openai")
    s = Settings(llm_backend="openai", llm_base_url=url, llm_timeout=timeout, llm_model_name=model_name)
    return load_llm(s)


def test_openai_streams_and_looks_up_model(fake_openai):
    b = _openai_backend(fake_openai.base_url)
    fake_openai.words = ["Een ", "motie ", "is ", "een ", "verzoek."]
    out = list(b.stream_chat(USER_Q, GenerationParams(max_tokens=16, stop=["###"])))
    assert out == fake_openai.words
    assert b.model_id == "fake-model"
    path, body = fake_openai.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["model"] == "fake-model" and body["stream"] is True
    assert body["max_tokens"] == 16 and body["stop"] == ["###"] and body["messages"] == USER_Q
    # the model list is asked once
    assert b.chat(USER_Q, GenerationParams()) == "Een motie is een verzoek."
    assert sum(p == "/v1/models" for p, _ in fake_openai.requests) == 1
    # server-side token counting, then the estimate when the server has none
    assert b.count_tokens("een twee drie") == 3
    b2 = _openai_backend(fake_openai.base_url, model_name="fixed")
    fake_openai.tokenize = False
    assert b2.count_tokens("x" * 35) == 10
    assert b2.model_id == "fixed"


def test_openai_503_and_429_map_to_unavailable(fake_openai):
    b = _openai_backend(fake_openai.base_url, model_name="m")
    fake_openai.mode = "503"
    with pytest.raises(LLMUnavailableError) as err:
        list(b.stream_chat(USER_Q, GenerationParams()))
    assert err.value.retry_after == 7.0 and not isinstance(err.value, LLMTimeoutError)
    assert sum(p == "/v1/chat/completions" for p, _ in fake_openai.requests) == 1  # no client retries
    fake_openai.mode = "429"
    with pytest.raises(LLMUnavailableError) as err:
        b.chat(USER_Q, GenerationParams())
    assert err.value.retry_after == 1.5
    fake_openai.mode = "400"
    with pytest.raises(LLMError) as err:
        b.chat(USER_Q, GenerationParams())
    assert not isinstance(err.value, LLMUnavailableError)


def test_openai_timeouts(fake_openai):
    b = _openai_backend(fake_openai.base_url, timeout=0.5, model_name="m")
    fake_openai.mode = "hang"  # no answer at all
    t0 = time.monotonic()
    with pytest.raises(LLMTimeoutError):
        list(b.stream_chat(USER_Q, GenerationParams()))
    assert time.monotonic() - t0 < 2.5
    fake_openai.mode = "hang_mid"  # one chunk, then silence
    got = []
    with pytest.raises(LLMTimeoutError):
        for d in b.stream_chat(USER_Q, GenerationParams()):
            got.append(d)
    assert got == ["woord0 "]


def test_openai_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = _openai_backend(f"http://127.0.0.1:{port}/v1", timeout=2.0)
    with pytest.raises(LLMUnavailableError) as err:  # while looking up the model
        b.chat(USER_Q, GenerationParams())
    assert not isinstance(err.value, LLMTimeoutError)
    b = _openai_backend(f"http://127.0.0.1:{port}/v1", timeout=2.0, model_name="m")
    with pytest.raises(LLMUnavailableError):
        b.chat(USER_Q, GenerationParams())
    assert b.count_tokens("x" * 7) == 2  # estimate while the server is down


def test_openai_close_early_disconnects(fake_openai):
    b = _openai_backend(fake_openai.base_url, model_name="m")
    fake_openai.delay = 0.02
    gen = b.stream_chat(USER_Q, GenerationParams(max_tokens=200))
    assert next(gen) == "woord0 " and next(gen) == "woord1 "
    gen.close()
    assert fake_openai.disconnected.wait(5.0), "the server did not see the client go away"
    assert fake_openai.chunks_sent < 100


# --------------------------------------------------------------------------- llama_cpp wrapper (fake Llama)


class _FakeLlama:
    """Stands in for llama_cpp.Llama: a lazy token stream, records how far it got."""

    def __init__(self):
        self.decoded = 0
        self.closed = 0

    def create_chat_completion(self, messages, stream, max_tokens, **kw):
        assert stream is True
        if max_tokens > 10_000:
            raise ValueError("Requested tokens (20000) exceed context window of 4096")

        def gen():
            try:
                yield {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}
                for i in range(max_tokens):
                    self.decoded += 1
                    yield {"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
                yield {"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
            finally:
                self.closed += 1

        return gen()

    def tokenize(self, data: bytes, add_bos: bool = True, special: bool = False):
        return data.split()


def _fake_llama_backend():
    from rag.llm.llama_cpp import LlamaCppBackend

    b = LlamaCppBackend.__new__(LlamaCppBackend)
    b.llm = _FakeLlama()
    b.model_id = "fake-gguf"
    b.context_window = 64
    b.lock_timeout = None
    b._lock = threading.Lock()
    return b


def test_llama_cpp_ram_cache_comes_from_settings(monkeypatch, tmp_path):
    import rag.models
    from rag.llm.llama_cpp import LlamaCppBackend

    got = {}
    monkeypatch.setattr(rag.models, "resolve_llm", lambda settings: tmp_path / "m.gguf")
    monkeypatch.setattr(LlamaCppBackend, "__init__", lambda self, path, **kw: got.update(kw))
    LlamaCppBackend.from_settings(Settings(llm_ram_cache_mb=3))
    assert got["ram_cache_bytes"] == 3 << 20
    LlamaCppBackend.from_settings(Settings(llm_ram_cache_mb=0))
    assert got["ram_cache_bytes"] == 0
    assert Settings().llm_ram_cache_mb > 0  # on by default: follow-ups resume cached prompts


def test_llama_cpp_close_releases_lock_and_stops():
    b = _fake_llama_backend()
    gen = b.stream_chat(USER_Q, GenerationParams(max_tokens=1000))
    assert not b._lock.locked()  # nothing happens before the first next()
    assert [next(gen) for _ in range(3)] == ["t0 ", "t1 ", "t2 "]
    assert b._lock.locked()
    # a second caller waits for the first
    done = threading.Event()
    result: list[str] = []
    t = threading.Thread(target=lambda: (result.append(b.chat(USER_Q, GenerationParams(max_tokens=2))), done.set()))
    t.start()
    assert not done.wait(0.2)
    gen.close()
    assert done.wait(5.0) and result == ["t0 t1 "]
    t.join()
    assert b.llm.decoded == 3 + 2  # the closed stream decoded nothing more
    assert b.llm.closed == 2  # both underlying generators were closed
    assert not b._lock.locked()
    assert b.count_tokens("een twee") == 2
    with pytest.raises(ContextLengthError):
        b.chat(USER_Q, GenerationParams(max_tokens=20_000))
    assert not b._lock.locked()
    b.lock_timeout = 0.05
    g = b.stream_chat(USER_Q, GenerationParams())
    next(g)
    with pytest.raises(LLMUnavailableError):
        b.chat(USER_Q, GenerationParams())
    g.close()


# --------------------------------------------------------------------------- transformers (tiny model)


def _char_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = list(" abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,?!:;'\"-\n<>_|/")
    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    tk = Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(specials + chars)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tk.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )


_SIMPLE_TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>\n{% endif %}"
)


def _tiny_model(folder: Path, tok, arch: str = "qwen2") -> Path:
    """A random-initialised causal LM (a few hundred kB) with ``tok``, saved to ``folder``.

    The architecture must suit the tokenizer: transformers 5 picks the tokenizer class
    from the model's config (a Qwen2 config turns a Gemma tokenizer into a byte-level one)."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, Qwen2Config, Qwen2ForCausalLM

    if not getattr(tok, "chat_template", None):
        tok.chat_template = _SIMPLE_TEMPLATE
    common = {
        "vocab_size": len(tok),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
        "max_position_embeddings": 4096,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    torch.manual_seed(0)
    if arch == "gemma3":
        model = Gemma3ForCausalLM(Gemma3TextConfig(head_dim=16, **common))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _spy_generate(backend) -> list[int]:
    """Records how many tokens each generate() call produced."""
    produced: list[int] = []
    orig = backend.model.generate

    def spy(*args, **kw):
        out = orig(*args, **kw)
        produced.append(int(out.shape[-1] - kw["input_ids"].shape[-1]))
        return out

    backend.model.generate = spy
    return produced


def _check_transformers_backend(folder: Path, settings: Settings) -> None:
    s = settings.model_copy(update={"llm_backend": "transformers", "llm": str(folder), "llm_device": "auto"})
    b = load_llm(s)
    assert b.model_id == str(folder) and b.context_window == 4096
    produced = _spy_generate(b)
    deltas = list(b.stream_chat(USER_Q, GenerationParams(max_tokens=12)))
    assert deltas and all(isinstance(d, str) for d in deltas)
    assert produced == [12] or (len(produced) == 1 and produced[0] <= 12)  # may end early on EOS
    assert b.count_tokens("".join(deltas)) <= 12
    assert b.count_tokens("een motie") > 0

    # closing early stops the generation thread and frees the model
    gen = b.stream_chat(USER_Q, GenerationParams(max_tokens=3000))
    next(gen)
    gen.close()
    assert b._thread is not None and not b._thread.is_alive()
    assert not b._lock.locked()
    assert produced[-1] < 3000

    # sampling, stop strings via StopMatcher, a second answer after the close
    text = b.chat(USER_Q, GenerationParams(max_tokens=8, temperature=0.8, seed=1))
    assert isinstance(text, str)


def test_transformers_backend_tiny_model(tmp_path, settings):
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    folder = _tiny_model(tmp_path / "tiny", _char_tokenizer())
    _check_transformers_backend(folder, settings)


# --------------------------------------------------------------------------- real model (slow)

_DUTCH = set(
    "de het een en van is in dat die op te voor zijn met wordt worden niet aan of bij door er als om kan ook naar "
    "deze".split()
)


def _gguf_path() -> str:
    from rag.models import ModelError, resolve_llm

    s = Settings()  # the real models_dir
    try:
        return resolve_llm(s)
    except ModelError as exc:
        pytest.skip(f"the default GGUF is not installed ({exc}); run `vraagbaak models install`")


def _dutch_words(text: str) -> int:
    return sum(w.strip(".,:;!?()\"'").lower() in _DUTCH for w in text.split())


@pytest.fixture(scope="module")
def real_llama():
    pytest.importorskip("llama_cpp")
    path = _gguf_path()
    from rag.llm.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(path, model_id="qwen2.5-coder-1.5b-instruct-q4_k_m", n_ctx=2048)


@pytest.mark.slow
def test_llama_cpp_real_model(real_llama):
    import llama_cpp

    b = real_llama
    messages = [
        {"role": "system", "content": "Je bent een behulpzame assistent. Antwoord altijd kort en in het Nederlands."},
        {"role": "user", "content": "Wat doet een gemeenteraad? Antwoord in twee zinnen."},
    ]
    deltas = list(b.stream_chat(messages, GenerationParams(max_tokens=60)))
    answer = "".join(deltas)
    assert len(deltas) > 3 and answer.strip()
    assert _dutch_words(answer) >= 2, answer
    assert 0 < b.count_tokens(answer) <= 61
    assert b.count_tokens("<|im_end|>") == 1  # special tokens are parsed

    # close after 3 deltas: no further decoding
    gen = b.stream_chat(messages, GenerationParams(max_tokens=200))
    got = [next(gen) for _ in range(3)]
    n_after = b.llm.n_tokens
    gen.close()
    assert len(got) == 3 and b.llm.n_tokens == n_after
    assert not b._lock.locked()
    live = [
        g
        for g in gc.get_objects()
        if inspect.isgenerator(g)
        and g.gi_frame is not None
        and g.gi_code.co_name in ("generate", "_create_completion", "_convert_text_completion_chunks_to_chat")
    ]
    assert not live, "llama-cpp-python generators still open after close()"

    # prompt-prefix reuse: the same long system prompt, another question: few tokens prefilled
    system = {"role": "system", "content": "Je bent de Vraagbaak van de gemeente. " * 40}
    b.chat([system, {"role": "user", "content": "Wat is een motie?"}], GenerationParams(max_tokens=2))
    llama_cpp.llama_perf_context_reset(b.llm.ctx)
    b.chat([system, {"role": "user", "content": "Wat is een amendement?"}], GenerationParams(max_tokens=2))
    n_prefill = llama_cpp.llama_perf_context(b.llm.ctx).n_p_eval
    assert b.count_tokens(system["content"]) > 300
    assert n_prefill < 40, n_prefill

    # RAM cache: alternating two long prompts (a follow-up's rewrite, then its answer) loads
    # the saved state of the first instead of prefilling it again, and a state stays small
    other = {"role": "system", "content": "Herschrijf de vervolgvraag tot een zelfstandige vraag. " * 30}
    b.enable_ram_cache(256 << 20)
    try:
        first = b.chat([system, {"role": "user", "content": "Wat is een motie?"}], GenerationParams(max_tokens=8))
        b.chat([other, {"role": "user", "content": "En die van vorig jaar?"}], GenerationParams(max_tokens=2))
        llama_cpp.llama_perf_context_reset(b.llm.ctx)
        again = b.chat([system, {"role": "user", "content": "Wat is een motie?"}], GenerationParams(max_tokens=8))
        n_prefill = llama_cpp.llama_perf_context(b.llm.ctx).n_p_eval
        assert n_prefill < 40, n_prefill
        assert first.strip() and again.strip()
        states = list(b.llm.cache.cache_state.values())
        assert states and all(st.scores.nbytes < 4 << 20 for st in states)  # not the ~300 MB logits buffer
    finally:
        b.llm.set_cache(None)
        del b.llm.save_state


@pytest.mark.slow
def test_llama_cpp_fixed_prefix_gives_the_same_answer_whatever_came_before(real_llama):
    """The answer prompt is evaluated from the same state every time: the fixed messages alone,
    then the rest, not from wherever the previous prompt's shared prefix happened to end (which
    changed greedy answers with the question before). A repeated prompt is a state load."""
    import llama_cpp

    b = real_llama
    assert b._init_fixed_prefix()
    b.fixed_prefix, b._prompt_cache_bytes = True, 256 << 20
    system = {"role": "system", "content": "Je bent de Vraagbaak van de gemeente. Antwoord kort. " * 20}
    shared = "Fragmenten: [1] Begroting 2023 › Opvang. De nachtopvang aan de Hereweg krijgt 60 extra plekken. "
    asked = [system, {"role": "user", "content": shared + "Vraag: Hoeveel plekken krijgt de nachtopvang erbij?"}]
    near = [system, {"role": "user", "content": shared + "Vraag: Waar ligt de nachtopvang?"}]
    far = [system, {"role": "user", "content": "Wat is een motie?"}]
    rewrite = [{"role": "user", "content": "Herschrijf de vraag: En die van vorig jaar?"}]
    params = GenerationParams(max_tokens=16)
    try:
        answers, prefilled = [], []
        for before in (near, far, rewrite):
            b.chat(before, GenerationParams(max_tokens=2))
            b._prompt_states.clear()  # not a repeat: evaluated, not loaded
            llama_cpp.llama_perf_context_reset(b.llm.ctx)
            answers.append(b.chat(asked, params))
            prefilled.append(llama_cpp.llama_perf_context(b.llm.ctx).n_p_eval)
        assert answers[0].strip() and len(set(answers)) == 1, answers
        # the same tokens evaluated each time: after the fixed system message, the whole question
        assert len(set(prefilled)) == 1 and prefilled[0] >= b.count_tokens(shared), prefilled
        assert len(b._prefix_states) == 1  # the system message's state, kept once

        b.chat(far, GenerationParams(max_tokens=2))
        llama_cpp.llama_perf_context_reset(b.llm.ctx)
        again = b.chat(asked, params)  # asked before: its state is loaded, only its last token evaluated
        assert again == answers[0]
        assert llama_cpp.llama_perf_context(b.llm.ctx).n_p_eval == 1
        assert all(st.scores.nbytes < 4 << 20 for st in b._prompt_states.values())
        # kept once the answer was written (not in the time to the first token): the answer is in it
        assert all(st.n_tokens > len(body) for body, st in b._prompt_states.items())

        too_long = [system, {"role": "user", "content": "Wat is een motie? " * 600}]
        with pytest.raises(ContextLengthError):
            b.chat(too_long, params)
        assert b.chat(asked, params) == answers[0]  # and nothing else is affected

        # a state that cannot be kept (out of memory) costs a later repeat its speed, not this answer
        b._prompt_states.clear()

        def no_memory():
            raise MemoryError("llama_state_get_data")

        b._lean_state = no_memory
        try:
            assert b.chat(asked, params) == answers[0] and not b._prompt_states
        finally:
            del b._lean_state
        assert b.chat(asked, params) == answers[0] and len(b._prompt_states) == 1
    finally:
        b.fixed_prefix, b._prompt_cache_bytes = False, 0
        b._prefix_states.clear()
        b._prompt_states.clear()
        b._kv_prefix = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` with the real GGUF on a free loopback port."""
    pytest.importorskip("llama_cpp")
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] extras are not installed")
    pytest.importorskip("openai")
    from tests.llama_server import LlamaServer

    server = LlamaServer(_gguf_path(), _free_port(), tmp_path_factory.mktemp("llama_server") / "server.log")
    try:
        yield server.start().url
    finally:
        server.stop()


@pytest.mark.slow
def test_openai_backend_real_server(llama_server):
    b = _openai_backend(llama_server, timeout=120.0)
    messages = [
        {"role": "system", "content": "Antwoord kort en in het Nederlands."},
        {"role": "user", "content": "Wat is een gemeente? Eén zin."},
    ]
    deltas = list(b.stream_chat(messages, GenerationParams(max_tokens=40)))
    answer = "".join(deltas)
    assert len(deltas) > 3 and _dutch_words(answer) >= 1, answer
    assert b.model_id  # the served model's name
    n = b.count_tokens("De gemeenteraad stelt de begroting vast.")
    assert b._tokenize_url and b._tokenize_url.endswith("/extras/tokenize/count")
    assert 5 <= n <= 15
    gen = b.stream_chat(messages, GenerationParams(max_tokens=200))
    got = [next(gen) for _ in range(3)]
    gen.close()
    assert len(got) == 3
    # the server is free again right away
    assert b.chat(messages, GenerationParams(max_tokens=3))


@pytest.mark.slow
def test_transformers_backend_real_tokenizer(tmp_path, settings):
    """The tiny model with a real sentencepiece tokenizer (EmbeddingGemma's; slow to load)."""
    pytest.importorskip("transformers")
    from transformers import AutoTokenizer

    folder = Settings().resolve_models_dir() / "embeddinggemma-300m"
    if not (folder / "tokenizer_config.json").is_file():
        pytest.skip("the EmbeddingGemma model folder is not installed")
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    with contextlib.suppress(AttributeError):
        if not tok.chat_template:
            tok.chat_template = _SIMPLE_TEMPLATE
    _check_transformers_backend(_tiny_model(tmp_path / "tiny-gemma", tok, arch="gemma3"), settings)
