"""Latency benchmark of the answer pipeline with the local LLM (llama_cpp backend).

For each question (the demo gold set's answerable questions, first ``--limit``):

* the pipeline answer, timed: time to first token, total time, decode tokens/s, and the
  number of prompt tokens the model got;
* raw llama.cpp on the *same* chat messages (captured from the pipeline), straight through
  ``Llama.create_chat_completion`` with the same number of new tokens: its decode
  tokens/s. The ratio pipeline / raw shows what the pipeline costs per token (streaming,
  events, stop checks). The raw call comes right after the pipeline's, so its prompt is
  already in llama.cpp's KV cache: only decoding is compared;
* once, the prefill speed of the fixed prefix (system prompt + few-shot) from an empty
  cache, and of a whole prompt after the prefix is cached.

    python -m eval.latency_benchmark [--limit 20] [--out eval/reports/latency-benchmark]

Run it on a quiet machine: 2 cores shared with anything else make llama.cpp's threads wait
for each other and every number meaningless.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from rag.schema import DoneEvent, TokenEvent
from rag.settings import Settings

REPORTS = Path(__file__).resolve().parent / "reports"


class RecordingLLM:
    """Passes everything to the real backend and keeps the last chat messages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.last_messages: list[dict[str, str]] = []

    def stream_chat(self, messages, params):
        self.last_messages = list(messages)
        return self.inner.stream_chat(messages, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    xs = sorted(values)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return round(xs[lo] + (xs[hi] - xs[lo]) * (k - lo), 1)


def raw_decode(llama: Any, messages: list[dict[str, str]], n_tokens: int) -> dict[str, float]:
    """Decode tokens/s of llama.cpp itself on ``messages``, ``n_tokens`` new tokens."""
    t0 = time.perf_counter()
    first = None
    n = 0
    for chunk in llama.create_chat_completion(
        messages=messages, stream=True, max_tokens=max(2, n_tokens), temperature=0.0
    ):
        if chunk["choices"][0].get("delta", {}).get("content"):
            n += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    tps = (n - 1) / (end - first) if first and n > 1 and end > first else 0.0
    return {"first_token_ms": round(((first or end) - t0) * 1000, 1), "tokens": n, "tokens_per_s": round(tps, 2)}


def prefill_speed(backend: Any, messages: list[dict[str, str]]) -> dict[str, float]:
    """Prefill tokens/s of the fixed prefix from an empty cache, then of the rest of one
    prompt with the prefix cached."""
    llama = backend.llm
    fixed = [m for m in messages if m["role"] != "user" or m is not messages[-1]]
    # with the RAM prompt cache (llm_ram_cache_mb) a saved state of these very prompts would be
    # restored instead of prefilled: the numbers were a state load (~2,400 tokens/s), not prefill
    cache = getattr(llama, "cache", None)
    llama.set_cache(None)
    try:
        llama.reset()  # n_tokens = 0: the next prompt is evaluated from the start, no prefix reuse
        t0 = time.perf_counter()
        list(
            llama.create_chat_completion(messages=fixed + [{"role": "user", "content": "."}], max_tokens=1, stream=True)
        )
        t_prefix = time.perf_counter() - t0
        t0 = time.perf_counter()
        list(llama.create_chat_completion(messages=messages, max_tokens=1, stream=True))
        t_rest = time.perf_counter() - t0
    finally:
        llama.set_cache(cache)
    n_prefix = backend.count_tokens("".join(m["content"] for m in fixed))
    n_rest = backend.count_tokens(messages[-1]["content"])
    return {
        "prefix_tokens": n_prefix,
        "prefix_s": round(t_prefix, 2),
        "prefix_tokens_per_s": round(n_prefix / t_prefix, 1),
        "context_tokens": n_rest,
        "context_s": round(t_rest, 2),
        "context_tokens_per_s": round(n_rest / t_rest, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=20, help="answerable gold questions to time")
    ap.add_argument("--out", type=Path, default=REPORTS / "latency-benchmark")
    ap.add_argument(
        "--worker",
        choices=["inline", "process"],
        default="inline",
        help="where the LLM runs (settings.llm_worker); the raw llama.cpp comparison needs inline",
    )
    args = ap.parse_args(argv)

    from rag.embed import load_embedder
    from rag.llm import load_llm
    from rag.pipeline import Pipeline
    from rag.retrieve import Retriever

    from .datasets import load_demo
    from .run import RunConfig, ensure_index

    settings = Settings()
    if settings.llm_backend != "llama_cpp":
        raise SystemExit("the latency benchmark compares against raw llama.cpp: use llm_backend=llama_cpp")
    embedder = load_embedder(settings)
    index_dir = ensure_index(RunConfig(dataset="demo"), settings, embedder)
    settings = settings.model_copy(update={"index_dir": index_dir, "llm_worker": args.worker})
    raw = args.worker == "inline"  # the raw llama.cpp figures need the model in this process
    llm = RecordingLLM(load_llm(settings))
    pipeline = Pipeline(settings, Retriever(settings, embedder), llm)
    items = [i for i in load_demo() if i.type == "answerable"][: args.limit]

    pipeline.ask("Wat is de gemeente?")  # warm up: loads the fixed prefix into the KV cache
    rows = []
    for item in items:
        t0 = time.perf_counter()
        first = None
        answer = None
        llm.last_messages = []  # a question refused before the model leaves none
        for event in pipeline.stream(item.question):
            if isinstance(event, TokenEvent) and first is None:
                first = time.perf_counter()
            elif isinstance(event, DoneEvent):
                answer = event.answer
        total = time.perf_counter() - t0
        if answer is None:
            raise RuntimeError(f"{item.id}: the pipeline's stream ended without an answer")
        t = answer.timings
        row: dict[str, Any] = {
            "id": item.id,
            "first_token_ms": t.first_token_ms,
            "total_ms": round(total * 1000, 1),
            "retrieval_ms": t.retrieval_ms,
            "completion_tokens": t.completion_tokens,
            "prompt_tokens": t.prompt_tokens,  # the pipeline's count of the answer prompt
            "context_tokens": llm.count_tokens(llm.last_messages[-1]["content"]) if llm.last_messages else 0,
            "pipeline_tokens_per_s": t.tokens_per_s,
        }
        if raw and t.completion_tokens and t.completion_tokens > 2:
            decoded = raw_decode(llm.inner.llm, llm.last_messages, t.completion_tokens)
            row["raw_tokens_per_s"] = decoded["tokens_per_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    prefill = prefill_speed(llm.inner, llm.last_messages) if raw and llm.last_messages else {}
    pairs = [(r["pipeline_tokens_per_s"], r["raw_tokens_per_s"]) for r in rows if r.get("raw_tokens_per_s")]
    summary = {
        "questions": len(rows),
        "threads": getattr(llm.inner, "n_threads", None),
        "worker": args.worker,
        "focus_sentences": settings.focus_sentences,
        "first_token_ms": {
            "p50": pct([r["first_token_ms"] for r in rows if r["first_token_ms"]], 0.5),
            "p95": pct([r["first_token_ms"] for r in rows if r["first_token_ms"]], 0.95),
        },
        "total_ms": {"p50": pct([r["total_ms"] for r in rows], 0.5), "p95": pct([r["total_ms"] for r in rows], 0.95)},
        "context_tokens_p50": pct([r["context_tokens"] for r in rows], 0.5),
        "prompt_tokens_p50": pct([r["prompt_tokens"] for r in rows if r["prompt_tokens"]], 0.5),
        "pipeline_tokens_per_s_p50": pct([p for p, _ in pairs], 0.5),
        "raw_tokens_per_s_p50": pct([r for _, r in pairs], 0.5),
        "decode_ratio_mean": round(statistics.mean(p / r for p, r in pairs), 3) if pairs else None,
        "prefill": prefill,
    }
    md = [
        "| measure | value |",
        "|---|---|",
        f"| questions | {summary['questions']} (demo gold, answerable) |",
        f"| time to first token p50 / p95 | {summary['first_token_ms']['p50']} / {summary['first_token_ms']['p95']} ms |",
        f"| total per answer p50 / p95 | {summary['total_ms']['p50']} / {summary['total_ms']['p95']} ms |",
        (
            f"| prompt tokens p50 (of which context + question) | {summary['prompt_tokens_p50']} "
            f"({summary['context_tokens_p50']}) |"
        ),
        (
            f"| decode tok/s pipeline / raw llama.cpp (p50) | {summary['pipeline_tokens_per_s_p50']} / "
            f"{summary['raw_tokens_per_s_p50']} |"
        ),
        f"| pipeline / raw decode (mean of ratios) | {summary['decode_ratio_mean']} |",
    ]
    if prefill:
        md.append(
            f"| prefill, fixed prefix from empty cache | {prefill['prefix_tokens']} tokens in "
            f"{prefill['prefix_s']} s ({prefill['prefix_tokens_per_s']} tok/s) |"
        )
        md.append(
            f"| prefill, context + question after cached prefix | {prefill['context_tokens']} tokens in "
            f"{prefill['context_s']} s ({prefill['context_tokens_per_s']} tok/s) |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1), encoding="utf-8")
    args.out.with_suffix(".md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
