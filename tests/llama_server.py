"""A real ``python -m llama_cpp.server`` with the default GGUF on a loopback port, for the
slow tests of the openai backend (tests/test_llm.py) and of an LLM server that goes away and
comes back (tests/test_faults.py). Its log goes to a file, never to a pipe nobody reads (it
writes ~200 kB at start)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


class LlamaServer:
    def __init__(self, model_path: str, port: int, log_path: Path, n_ctx: int = 2048) -> None:
        self.model_path, self.port, self.log_path, self.n_ctx = model_path, port, log_path, n_ctx
        self.url = f"http://127.0.0.1:{port}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 240) -> LlamaServer:
        threads = str(max(1, len(os.sched_getaffinity(0))))
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", self.model_path]
        cmd += ["--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx)]
        cmd += ["--n_threads", threads, "--n_threads_batch", threads]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(self.url + "/models", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer in {timeout:.0f} s; see {self.log_path}")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL: the server goes away without a word (a crash, an OOM kill)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
