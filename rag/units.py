"""Whole units, not fragments: the sentence, list or paragraph an answer belongs to.

Chunks are small so that search is precise, but a chunk boundary falls where the size says,
not where the text does: in the middle of an enumeration ("De aanvraag wordt geweigerd als:"
and half of its grounds), or between a sentence and the one that explains it ("… aandacht
voor de zelfmelders. Hiermee wordt bedoeld: inwoners die …"). This module puts the unit back
together, in two places:

* :func:`expand_hits` — a retrieved chunk that ends open (a line that introduces a list with
  ":", an item ending in ";" or ",", a sentence cut off) gets the continuation from the next
  chunk of the same section, and a chunk that starts in the middle of a list gets the list's
  introduction from the previous chunk, within ``max_chars``;
* :func:`continuation` — the sentences after a chosen sentence that belong to it (list items
  after an introduction, "Hiermee wordt bedoeld …", "Dit betekent …"), used when a passage is
  focused to its best sentences and when a sentence is quoted as the answer; :func:`premise`,
  the sentence before one that draws its consequence ("Daarom is het …"), is kept with it;
* :func:`enumerations` and :func:`asks_for_a_list` — the line lists of a passage and the
  questions that ask for one, for the answer check that does not let half a list pass as all of
  it (rag/checks.py: ``list_complete``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .text.boilerplate import content_of
from .types import Chunk, Hit

# a sentence that cannot stand without the one before it
_BACK_REFERENCE = re.compile(
    r"^\s*(?:hiermee|hierbij|hiervan|hieronder|hiertoe|daarmee|daarbij|daarvan|daaronder|daartoe|namelijk|"
    r"dat wil zeggen|d\.w\.z\.|te weten|het gaat (?:hierbij |daarbij )?om|dit (?:zijn|is|betreft|betekent|houdt in)|"
    r"deze (?:groep|mensen|inwoners|personen|zijn|is)|this means|these are|namely)\b",
    re.IGNORECASE,
)
# a sentence that states the consequence of the one before it: the reason is there ("Mensenhandel
# wordt vaak gepleegd in criminele samenwerkingsverbanden. Daarom is het een vorm van
# ondermijnende criminaliteit.")
_CONSEQUENCE = re.compile(
    r"^\s*(?:daarom|hierom|daardoor|hierdoor|dus|zodoende|vandaar|om (?:die|deze) redenen?|"
    r"(?:dit|dat) (?:heeft|leidt|heeft geleid) (?:ertoe|er toe)|als gevolg (?:daarvan|hiervan)|"
    r"therefore|for this reason|as a result|this is why)\b",
    re.IGNORECASE,
)
# a list item: a bullet, "a.", "a)", "1.", "1)" or "(a)" at the start
LIST_ITEM = re.compile(r"^\s*(?:[-•–*▪]\s|\(?[a-z]\)\s|\(?\d{1,2}[.)]\s|[a-z]\.\s)", re.IGNORECASE)
_MAX_CONTINUATION = 12  # list items or back-referring sentences added to one sentence
_OVERLAP_MIN = 20  # characters: a shorter common piece is not the chunker's overlap


def opens_list(sentence: str) -> bool:
    return sentence.rstrip().endswith(":")


def continues(previous: str, sentence: str) -> bool:
    """Does ``sentence`` belong to ``previous``: an item of the list it opens or continues, or
    a sentence that refers back to it?"""
    if LIST_ITEM.match(sentence):
        return opens_list(previous) or bool(LIST_ITEM.match(previous))
    return opens_list(previous) or bool(_BACK_REFERENCE.match(sentence))


def premise(sentences: Sequence[str], position: int) -> int | None:
    """The position of the sentence that ``sentences[position]`` draws its consequence from
    ("Daarom …", "Dit heeft ertoe geleid dat …"), or None."""
    if 0 < position < len(sentences) and _CONSEQUENCE.match(sentences[position]):
        if content_of(sentences[position - 1]) == sentences[position - 1]:
            return position - 1
    return None


def continuation(sentences: Sequence[str], position: int, max_chars: int = 900) -> list[int]:
    """The positions after ``position`` that belong to its sentence (see :func:`continues`),
    as long as the unit stays within ``max_chars``."""
    out: list[int] = []
    used = len(sentences[position]) if 0 <= position < len(sentences) else 0
    i = position + 1
    while i < len(sentences) and len(out) < _MAX_CONTINUATION and continues(sentences[i - 1], sentences[i]):
        if content_of(sentences[i]) != sentences[i]:
            break  # letter or page furniture is no part of an answer
        used += len(sentences[i]) + 1
        if used > max_chars:
            break
        out.append(i)
        i += 1
    return out


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _ends_open(text: str) -> bool:
    """The text stops where its unit does not: its last line opens a list (":"), is a list
    item that is not the last one (";" or ","), or is cut mid-sentence (no closing mark)."""
    lines = _lines(text)
    if not lines:
        return False
    last = lines[-1]
    return last[-1] in ":;," or last[-1].isalnum()


def _starts_in_list(text: str) -> bool:
    lines = _lines(text)
    return bool(lines) and bool(LIST_ITEM.match(lines[0]))


def _without_overlap(before: str, after: str) -> str:
    """``after`` without the sentences it repeats from the end of ``before`` (chunk overlap)."""
    limit = min(len(before), len(after))
    for k in range(limit, _OVERLAP_MIN - 1, -1):
        if before.endswith(after[:k]):
            return after[k:].lstrip()
    # a shorter repeat counts when it is a whole line: the list's introduction ("Deze thema's
    # zijn:") that ends one chunk and opens the next
    first, _, rest = after.lstrip().partition("\n")
    last = _lines(before)[-1:] or [""]
    if first.strip() and first.strip() == last[0]:
        return rest.lstrip()
    return after


def _list_tail(text: str) -> str:
    """The last list of ``text``: from the line that introduces it (ending in ":") on."""
    lines = _lines(text)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].endswith(":"):
            return "\n".join(lines[i:])
        if not LIST_ITEM.match(lines[i]):
            break
    return ""


def expand_hits(hits: Sequence[Hit], neighbour: Callable[[Hit, int], Chunk | None], max_chars: int) -> list[Hit]:
    """Each hit's text completed to its list: the continuation from the next chunk(s) of the
    same section while the text ends in an open list, and the list's introduction from the
    previous chunk when the hit starts with a list item. ``neighbour(hit, offset)`` is the
    chunk at ``offset`` from the hit in its document (None at the ends). A hit whose text is
    already whole is returned as it is."""
    out: list[Hit] = []
    for hit in hits:
        text = hit.text
        if max_chars > len(text):
            offset = 1
            while _ends_open(text) and len(text) < max_chars:
                nxt = neighbour(hit, offset)
                if nxt is None or nxt.heading_path != hit.heading_path:
                    break
                more = _without_overlap(text, nxt.text)
                if not more or len(text) + len(more) + 1 > max_chars:
                    break
                text = f"{text}\n{more}"
                offset += 1
            if _starts_in_list(hit.text):
                prev = neighbour(hit, -1)
                if prev is not None and prev.heading_path == hit.heading_path:
                    intro = _list_tail(prev.text)
                    if intro and len(text) + len(intro) + 1 <= max_chars:
                        text = f"{intro}\n{_without_overlap(intro, text)}"
        out.append(hit if text == hit.text else replace(hit, text=text))
    return out


# -- enumerations --------------------------------------------------------------------------

_LIST_QUESTION = re.compile(
    r"\b(?:welke|wat zijn (?:de|alle)|noem(?:\s+(?:de|het|alle))?|som\s+\w*\s*op|which|what are the|list)\s+([\w'’]+)",
    re.IGNORECASE,
)
_PLURAL_END = ("en", "s", "'s", "’s")
_NOT_PLURAL = frozenset("tussen wanneer voordat nadat binnen buiten boven beneden tegen volgens zonder".split())


def asks_for_a_list(question: str) -> bool:
    """ "Welke gronden …", "Wat zijn de voorwaarden …", "Noem de taken …": a plural after the
    question word ("Welke organisatie …" asks for one thing)."""
    for m in _LIST_QUESTION.finditer(question):
        word = m.group(1).lower()
        if len(word) > 3 and word.endswith(_PLURAL_END) and word not in _NOT_PLURAL:
            return True
    return False


@dataclass(frozen=True)
class Enumeration:
    intro: str  # the line that opens it, ending in ":"
    items: list[str]

    @property
    def text(self) -> str:
        return "\n".join([self.intro, *self.items])


def enumerations(text: str) -> list[Enumeration]:
    """The line lists of ``text``: a line ending in ":" followed by two or more list items."""
    lines = _lines(text)
    out: list[Enumeration] = []
    i = 0
    while i < len(lines):
        if lines[i].endswith(":"):
            j = i + 1
            while j < len(lines) and LIST_ITEM.match(lines[j]):
                j += 1
            if j - i - 1 >= 2:
                out.append(Enumeration(lines[i], lines[i + 1 : j]))
            i = j if j > i + 1 else i + 1
        else:
            i += 1
    return out
