"""Prompt-injection guard for questions: instructions are data, not orders.

The system prompt already tells the model to ignore instructions in questions and passages,
but a 1.5B model follows "negeer alle instructies" often enough. Before retrieval, the
sentences of a question that try to steer the assistant are removed:

* overriding its rules ("negeer/vergeet … instructies/documenten", "ignore previous
  instructions"),
* extracting its instructions ("systeemprompt", "je instructies", "your rules"),
* role-play jailbreaks ("rollenspel", "DAN", "doe alsof je", "you are now"),
* fake system or admin messages ("SYSTEEM: …"),
* hijacking the output ("answer in English only", "voeg aan elk antwoord toe …").

What is left is answered as usual; when nothing that asks a question is left, the answer is
the standard refusal (``refusal_reason: injection``) and no model is called. The patterns are
families of attacks in Dutch and English, not a list of known attack strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text.sentences import split_sentences

_I = re.IGNORECASE
PATTERNS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"\b(negeer|vergeet|ignore|forget|disregard|overrule)\b[^.?!]{0,60}?"
        r"\b(instructies?|regels|opdrachten|documenten|bronnen|prompt|instructions?|rules|documents|context)\b",
        _I,
    ),
    "extraction": re.compile(
        r"\b(systeem[- ]?prompt|system[- ]?prompt|(je|jouw|uw) (instructies|regels|prompt|opdracht)|"
        r"your (instructions|rules|system message|prompt))\b",
        _I,
    ),
    "roleplay": re.compile(
        r"\b(rollenspel|role[- ]?play|jailbreak|doe alsof je|speel (nu )?de rol|pretend (to be|you are)|"
        r"jij bent nu|je bent nu|you are now)\b",
        _I,
    ),
    "dan": re.compile(r"\bDAN\b"),  # the jailbreak persona; case-sensitive, "dan" is a Dutch word
    "fake_system": re.compile(r"(^|[\s.?!])(SYSTEEM|SYSTEM|ADMIN|BEHEERDER|DEVELOPER|ONTWIKKELAAR)\s*:", _I),
    "output": re.compile(
        r"\b(answer|reply|respond|antwoord|schrijf)\b[^.?!]{0,40}\b(in english|in het engels|only with|alleen met)\b|"
        r"\b(voeg|add|zet)\b[^.?!]{0,40}\b(elk|ieder|every|each)\b[^.?!]{0,20}\b(antwoord|answer|reply)\b|"
        r"\b(in english only|english only|alleen in het engels)\b",
        _I,
    ),
}
_QUESTION_START = re.compile(
    r"^\s*(wat|wie|wiens|welke?|waar\w*|wanneer|waarom|hoe\w*|hoeveel|kan|kun|kunt|mag|moet|is|zijn|heeft|hebben|"
    r"wordt|worden|geldt|klopt|bestaat|what|who|which|where|when|why|how|can|is|are|does|do)\b",
    _I,
)


@dataclass
class GuardResult:
    question: str  # what is left to answer ("" when nothing)
    removed: list[str] = field(default_factory=list)  # the sentences taken out
    kinds: list[str] = field(default_factory=list)  # which pattern families matched

    @property
    def injection(self) -> bool:
        return bool(self.removed)

    @property
    def refuse(self) -> bool:
        """Only an attempt to steer, no question left to answer."""
        return self.injection and not asks_something(self.question)


def asks_something(text: str) -> bool:
    return any("?" in s or _QUESTION_START.match(s) for s in split_sentences(text))


def check_question(question: str) -> GuardResult:
    kept: list[str] = []
    removed: list[str] = []
    kinds: list[str] = []
    for sentence in split_sentences(question):
        hit = [name for name, pattern in PATTERNS.items() if pattern.search(sentence)]
        if hit:
            removed.append(sentence)
            kinds += [k for k in hit if k not in kinds]
        else:
            kept.append(sentence)
    return GuardResult(question=" ".join(kept).strip(), removed=removed, kinds=kinds)
