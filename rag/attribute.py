"""Citation guarantee: validate the model's [n] markers and attribute every sentence post hoc.

The model is small and does not cite reliably, so its text is checked sentence by sentence
against the passages that were in its context:

* a sentence is *supported* by a passage when most of its content words (Dutch-stemmed)
  occur in that passage and every number and name in it occurs there too (numbers compared
  after normalising "1.000", "€ 105", "3,2", and number words: "twaalf" is 12);
* a marker the model wrote is kept when its passage supports the sentence; otherwise the
  best supporting passage replaces it; a sentence that no passage supports is dropped —
  it is never shown as sourced;
* citations list only passages actually cited, renumbered 1…n in order of first use.

Everything here is deterministic and needs no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .text.markers import markers_in, strip_markers
from .text.meaning import meaning_differs
from .text.names import names_in
from .text.numbers import numbers_in
from .text.sentences import split_sentences
from .text.tokens import tokenize
from .types import Passage


@dataclass
class SentenceSupport:
    sentence: str  # without markers
    claimed: list[int]  # markers the model wrote
    cited: list[int]  # markers after validation/attribution (passage markers)
    score: float  # support of the best cited passage
    reason: str = ""  # why a sentence was dropped


@dataclass
class Attribution:
    text: str  # the answer with validated, renumbered markers
    cited_markers: list[int]  # original passage markers in order of first use (new marker i+1)
    sentences: list[SentenceSupport] = field(default_factory=list)
    dropped: list[SentenceSupport] = field(default_factory=list)

    @property
    def supported(self) -> bool:
        return bool(self.cited_markers)


class _PassageIndex:
    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = {p.marker: p for p in passages}
        self.tokens = {p.marker: set(tokenize(p.full_text)) for p in passages}
        self.numbers = {p.marker: numbers_in(p.full_text) for p in passages}
        self.lower = {p.marker: p.full_text.lower() for p in passages}
        self.sentences = {p.marker: [(t, set(tokenize(t))) for t in split_sentences(p.text)] for p in passages}

    def closest_sentence(self, marker: int, toks: set[str]) -> str | None:
        """The sentence of passage ``marker`` that shares most content words with ``toks``."""
        best = max(self.sentences[marker], key=lambda st: len(st[1] & toks), default=None)
        return best[0] if best is not None and best[1] & toks else None


def support(sentence: str, marker: int, idx: _PassageIndex) -> tuple[float, str]:
    """Support of ``sentence`` by passage ``marker`` in [0, 1], and a reason when it fails.

    The share of the sentence's content words (Dutch stems, stop words left out) found in
    the passage; 0 when a number or a name in the sentence is not in the passage, 0 when it
    states the opposite of the passage sentence it rests on (a negation dropped or added,
    "kan" turned into "moet": rag/text/meaning.py), and 0 for
    a question: a sentence ending in "?" claims nothing (the small model sometimes answers
    by repeating the question, which a passage titled with that question would "support").
    """
    toks = set(tokenize(sentence))
    if not toks:
        return 0.0, "no content words"
    if sentence.rstrip().endswith("?"):
        return 0.0, "a question, not a statement"
    missing_numbers = numbers_in(sentence, claimed=True) - idx.numbers[marker]
    if missing_numbers:
        return 0.0, f"numbers not in the passage: {', '.join(sorted(missing_numbers))}"
    missing_names = {n for n in names_in(sentence) if n not in idx.lower[marker]}
    if missing_names:
        return 0.0, f"names not in the passage: {', '.join(sorted(missing_names))}"
    share = len(toks & idx.tokens[marker]) / len(toks)
    closest = idx.closest_sentence(marker, toks) if share > 0 else None
    if closest is not None and (why := meaning_differs(sentence, closest)):
        return 0.0, why
    return share, ""


def attribute(
    answer: str,
    passages: Sequence[Passage],
    threshold: float = 0.5,
    max_citations_per_sentence: int = 2,
) -> Attribution:
    """Validate and repair the markers of ``answer``; drop unsupported sentences."""
    idx = _PassageIndex(passages)
    kept: list[SentenceSupport] = []
    dropped: list[SentenceSupport] = []
    for raw in split_sentences(answer):
        sentence = strip_markers(raw)
        if not sentence:
            continue
        claimed = markers_in(raw)
        valid_claimed = [m for m in dict.fromkeys(claimed) if m in idx.passages]
        scored = {m: support(sentence, m, idx) for m in idx.passages}
        good = [m for m in valid_claimed if scored[m][0] >= threshold]
        if not good:
            ranked = sorted(idx.passages, key=lambda m: (-scored[m][0], m))
            good = [m for m in ranked[:1] if scored[m][0] >= threshold]
        if good:
            good = good[:max_citations_per_sentence]
            kept.append(SentenceSupport(sentence, claimed, good, max(scored[m][0] for m in good)))
        else:
            best = max(idx.passages, key=lambda m: scored[m][0]) if idx.passages else None
            reason = scored[best][1] if best is not None and scored[best][1] else "too little overlap with any passage"
            dropped.append(SentenceSupport(sentence, claimed, [], scored[best][0] if best else 0.0, reason))

    order: list[int] = []
    for s in kept:
        for m in s.cited:
            if m not in order:
                order.append(m)
    renumber = {m: i + 1 for i, m in enumerate(order)}
    parts = []
    for s in kept:
        body = s.sentence
        tail = ""
        if body and body[-1] in ".!?:;":  # "… niveaus [1]:", "1. Het sociaal klimaat [1];"
            body, tail = body[:-1], body[-1]
        parts.append(body + "".join(f" [{renumber[m]}]" for m in s.cited) + tail)
    return Attribution(text=" ".join(parts), cited_markers=order, sentences=kept, dropped=dropped)
