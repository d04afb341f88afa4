"""Polarity and modality: the small words that turn a sentence into its opposite.

Word overlap cannot see that "De aanvraag kan niet na 1 mei worden ingediend" and "De aanvraag
kan na 1 mei worden ingediend" say opposite things, or that "u kunt bezwaar maken" became "u
moet bezwaar maken". ``meaning_differs(a, b)`` compares an answer sentence with the source
sentence it rests on:

* **negation**: a negation word ("niet", "geen", "nooit", "tenzij", …) in one sentence whose
  phrase (the next few content words of its clause, or the ones before a clause-final "niet")
  also occurs in the other sentence, which negates nothing of that phrase: the negated phrase
  was restated without its negation (or a negation was added). A negation elsewhere in a long
  source sentence ("…, maar niet de reiskosten") does not count when the answer does not
  restate that phrase;
* **modality**: the answer says "moet/verplicht" where the source only has "kan/mag", or the
  other way round;
* **a "nee" of its own**: the answer opens with "Nee" (a yes/no question answered no) while the
  source sentence negates nothing.
"""

from __future__ import annotations

import re

from .tokens import tokenize

NEGATIONS = frozenset({"niet", "geen", "nooit", "niets", "nergens", "noch", "tenzij", "zonder", "not", "no", "never"})
_WORDS = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
_NO = re.compile(r"^\W*(?:nee|no)\b", re.IGNORECASE)
_WINDOW = 4  # content words after a negation that make up the negated phrase

MUST = frozenset({"moet", "moeten", "moest", "moesten", "verplicht", "verplichte", "dient", "dienen", "must"})
MAY = frozenset(
    {"kan", "kunnen", "kon", "konden", "kunt", "mag", "mogen", "mocht", "mochten", "mogelijk", "can", "may"}
)


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def negated_phrases(text: str) -> list[set[str]]:
    """For each negation word in ``text``: the stems of the content words it negates (those that
    follow it; for a negation that ends its clause, "… vergoedt de kosten niet", those before).
    A capitalised negation inside a sentence belongs to a name ("GOTU (Geen Onderwijs Toch
    Uitdaging)") and negates nothing."""
    out = []
    for n, clause in enumerate(re.split(r"[,;:()]", text)):
        cased = _WORDS.findall(clause)
        words = [w.lower() for w in cased]
        for i, w in enumerate(words):
            if w not in NEGATIONS or (cased[i][0].isupper() and (i > 0 or n > 0)):
                continue  # a capitalised "Geen" inside a sentence is part of a name
            after = tokenize(" ".join(words[i + 1 :]))[:_WINDOW]
            out.append(set(after or tokenize(" ".join(words[:i]))[-_WINDOW:]))
    return out


def _restated_without_negation(a: str, b: str) -> bool:
    """A negated phrase of ``a`` occurs in ``b`` while ``b`` negates nothing of that phrase."""
    stems_b = set(tokenize(b))
    phrases_b = negated_phrases(b)
    for phrase in negated_phrases(a):
        if phrase & stems_b and not any(phrase & other for other in phrases_b):
            return True
    return False


def meaning_differs(answer: str, source: str) -> str | None:
    """Why ``answer`` says something other than ``source`` despite their shared words, or None."""
    if _restated_without_negation(source, answer):
        return "drops a negation of the passage"
    if _restated_without_negation(answer, source):
        return "adds a negation the passage does not have"
    a, s = set(_words(answer)), set(_words(source))
    if _NO.match(answer) and not s & NEGATIONS:
        return "answers 'nee' where the passage negates nothing"
    if a & MUST and not s & MUST and s & MAY:
        return "says 'must' where the passage says 'can/may'"
    if a & MAY and not s & MAY and s & MUST:
        return "says 'can/may' where the passage says 'must'"
    return None
