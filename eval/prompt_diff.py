"""Which questions would a change give the model another prompt for? A cheap, exact A/B.

The answers are deterministic and do not depend on the questions asked before them
(``llm_fixed_prefix``), so a question whose answer prompt a change leaves alone gets the same
answer with and without the change. This module records each question's answer prompt (a
sha256 of the chat messages) with no generation — retrieval, units, focus, prompts run as in
``eval run``; the model is a recorder that counts tokens with the real tokenizer and writes
nothing — so that only the questions whose prompt changed need to be answered again::

    python -m eval prompts --dataset demo --split tune --out /tmp/a.json
    VRAAGBAAK_FOCUS_SENTENCES=3 python -m eval prompts --dataset demo --split tune --out /tmp/b.json
    python -m eval prompts-diff /tmp/a.json /tmp/b.json            # the ids, comma-separated
    python -m eval run --dataset demo --ids <ids> --out-dir …       # baseline (or the stored full run)
    VRAAGBAAK_FOCUS_SENTENCES=3 python -m eval run --dataset demo --ids <ids> --out-dir …

What it cannot tell: a change after the model (the answer checks) changes no prompt, so those
need the whole set; follow-ups (items with history) are always listed, since their rewrite is
a model call the recorder does not make. Questions refused before the model have no prompt
(``"-"``): a change that makes the model be asked (or not) shows as a changed value.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

FOLLOW_UP = "follow-up"
NO_PROMPT = "-"


class PromptRecorder:
    """An LLM backend that records the messages it is asked and answers nothing. Tokens are
    counted by ``counter`` (the real backend: the context budget is in its tokens)."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.model_id = getattr(counter, "model_id", "recorder")
        self.context_window = getattr(counter, "context_window", 4096)
        self.calls: list[list[dict[str, str]]] = []

    def count_tokens(self, text: str) -> int:
        return int(self.counter.count_tokens(text))

    def stream_chat(self, messages, params) -> Iterator[str]:
        self.calls.append([dict(m) for m in messages])
        yield from ()

    def chat(self, messages, params) -> str:
        return "".join(self.stream_chat(messages, params))


def prompt_key(messages: Sequence[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(messages), ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def record_prompts(
    items: Sequence[Any], pipeline: Any, recorder: PromptRecorder, top_k: int | None = None
) -> dict[str, str]:
    """``{id: sha256 of the answer prompt}`` (:data:`FOLLOW_UP`, :data:`NO_PROMPT`)."""
    out: dict[str, str] = {}
    for item in items:
        if item.history:
            out[item.id] = FOLLOW_UP
            continue
        recorder.calls.clear()
        pipeline.ask(item.question, top_k=top_k)
        out[item.id] = prompt_key(recorder.calls[0]) if recorder.calls else NO_PROMPT
    return out


def changed(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """The ids to answer again: a changed prompt, a follow-up, or in one record only."""
    ids = [*a, *(k for k in b if k not in a)]
    return [k for k in ids if a.get(k) != b.get(k) or a.get(k) == FOLLOW_UP]


def record(cfg: Any, out: Path, settings: Any = None, log=print) -> dict[str, Any]:
    """Record the prompts of ``cfg``'s questions (an ``eval.run.RunConfig``) into ``out``."""
    from rag.llm import load_llm
    from rag.retrieve import Retriever

    from .run import make_pipeline, prepare

    s, items, embedder = prepare(cfg, settings, log=log)
    recorder = PromptRecorder(load_llm(s))
    pipeline = make_pipeline(s, Retriever(s, embedder), recorder)
    prompts = record_prompts(items, pipeline, recorder, cfg.top_k)
    result = {"dataset": cfg.dataset, "split": cfg.split, "prompts": prompts}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    n_follow = sum(v == FOLLOW_UP for v in prompts.values())
    log(f"{len(prompts)} questions ({n_follow} follow-ups) -> {out}")
    return result


def load_record(path: Path) -> dict[str, str]:
    return dict(json.loads(Path(path).read_text(encoding="utf-8"))["prompts"])
