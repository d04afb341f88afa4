"""How well follow-up questions are rewritten into standalone ones (the condense step).

``eval/gold/followups.jsonl`` holds 24 short conversations written for this check (none taken
from the gold sets; topics of a municipality, one in English), each with the follow-up asked
last and ``keep``: word stems the rewrite must contain (``a | b`` = one of them, matched at a
word's start with the key-fact matcher of ``eval.textnorm``), what the
follow-up leans on ("Hoeveel heeft het gekost?" after a question about a swimming pool must
name the pool). A rewrite counts as **usable** when ``rag.pipeline.is_rewrite`` accepts it (one
question, not the follow-up echoed) and it keeps every stem. The stems do not check that the
rewrite still asks what the follow-up asked: read the printed rewrites for that.

    python -m eval.followups                         # the shipped prompts and model
    python -m eval.followups --gold my.jsonl --out /tmp/fu

Prints one line per conversation and the count; writes ``<out>.json`` when ``--out`` is given.
Uses the configured LLM backend (the real model: ~3 s per conversation on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rag.llm import load_llm
from rag.pipeline import rewrite_follow_up
from rag.prompts import PromptSet
from rag.schema import Turn
from rag.settings import Settings

from .textnorm import contains_fact

GOLD = Path(__file__).parent / "gold" / "followups.jsonl"


def keeps(text: str, stems: list[str]) -> bool:
    """Does ``text`` contain, for every entry of ``stems``, one of its `` | ``-separated stems?"""
    return all(contains_fact(text, entry) for entry in stems)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gold", type=Path, default=GOLD)
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json")
    args = ap.parse_args(argv)

    settings = Settings()
    llm = load_llm(settings)
    prompts = PromptSet(settings.prompts_dir)
    rows = [json.loads(line) for line in args.gold.read_text(encoding="utf-8").splitlines() if line.strip()]
    results = []
    for r in rows:
        history = [Turn(**t) for t in r["history"]]
        t0 = time.perf_counter()
        rewrite = rewrite_follow_up(llm, prompts, r["question"], history)
        seconds = time.perf_counter() - t0
        usable = rewrite is not None and keeps(rewrite, r.get("keep", []))
        results.append({"id": r["id"], "question": r["question"], "rewrite": rewrite, "usable": usable, "s": seconds})
        print(f"{'ok ' if usable else 'BAD'} {r['id']} {seconds:4.1f}s | {r['question']} -> {rewrite}", flush=True)
    n_ok = sum(r["usable"] for r in results)
    median = statistics.median(r["s"] for r in results) if results else 0.0
    print(
        f"usable rewrites: {n_ok} of {len(results)}; median {median:.2f} s per rewrite (prompt versions {prompts.versions})"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        summary = {"usable": n_ok, "n": len(results), "median_s": median, "versions": prompts.versions}
        Path(f"{args.out}.json").write_text(
            json.dumps({"summary": summary, "results": results}, ensure_ascii=False, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
