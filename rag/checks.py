"""Answer checks: what the model's raw text must pass before it is shown as an answer.

Each check is a small component with a typed ``run(draft, question) -> Verdict``:

* ``Keep()`` — the draft passes as it is;
* ``Replace(text, markers)`` — the draft continues as this text (a translation, the attributed
  text with its cited markers);
* ``Refuse(reason)`` — the draft is not an answer; ``quotable`` says whether a literal passage
  sentence may stand in for it (``Pipeline.quote``), else the standard refusal is given.

``run_checks`` runs them in order and stops at the first refusal. Which checks run, and in which
order, is the setting ``answer_checks`` (names of :data:`CHECKS`); the eval's ablations run the
same list minus one. Everything a check needs about the question (its passages, its expected
answer kind, the IDF of the index) is computed once, on the :class:`CheckedQuestion`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from enum import StrEnum
from functools import cached_property, lru_cache
from typing import Protocol

from .attribute import attribute
from .evidence import Evidence, answers_kind, expected_kind, kind_values, part_evidence, part_kind
from .language import detect_language
from .text.acronyms import (
    asked_abbreviation,
    expansion_sentence,
    find_expansion,
    named_abbreviation,
    states_expansion,
)
from .text.boilerplate import (
    asks_about_the_letter,
    asks_for_a_field,
    asks_for_a_signed_role,
    content_of,
    letter_field,
    names_a_letter,
)
from .text.idf import IdfFn, uniform_idf
from .text.markers import MARKER, markers_in, strip_markers
from .text.names import names_in
from .text.sentences import split_sentences
from .text.tokens import novel_terms, tokenize
from .types import Passage
from .units import LIST_ITEM, asks_for_a_list, enumerations

_WORDS = re.compile(r"\w+", re.UNICODE)


class RefusalReason(StrEnum):
    """Why an answer was refused (``Answer.refusal_reason``) or replaced by a quote."""

    NO_RELEVANT_PASSAGES = "no_relevant_passages"
    INJECTION = "injection"
    MODEL_DECLINED = "model_declined"
    NOT_DUTCH = "not_dutch"
    UNSUPPORTED = "unsupported"
    MISSING_NUMBER = "missing_number"
    MISSING_AMOUNT = "missing_amount"
    MISSING_DATE = "missing_date"
    RESTATES_QUESTION = "restates_question"
    LETTER_FURNITURE = "letter_furniture"


# --------------------------------------------------------------------------- verdicts


@dataclass
class Draft:
    """The answer on its way through the checks. ``markers`` are the cited passage markers once
    a check has decided them (attribution); ``None`` means: as written in the text."""

    text: str
    markers: list[int] | None = None

    def cited(self, known: Sequence[int]) -> list[int]:
        """The markers this answer cites, in order, restricted to the passages it was given."""
        if self.markers is not None:
            return list(self.markers)
        given = set(known)
        return [m for m in dict.fromkeys(markers_in(self.text)) if m in given]


@dataclass(frozen=True)
class Keep:
    pass


@dataclass(frozen=True)
class Replace:
    text: str
    markers: list[int] | None = None


@dataclass(frozen=True)
class Refuse:
    reason: RefusalReason
    quotable: bool = True


Verdict = Keep | Replace | Refuse


@dataclass
class CheckedQuestion:
    """What the checks know about the question being answered (computed once per question)."""

    question: str  # the question itself (a follow-up without the earlier question it carries)
    passages: list[Passage]
    refusal: str  # the standard refusal sentence
    system_prompt: str
    translate: Callable[[str], str] = field(repr=False, default=lambda text: text)
    idf: IdfFn = field(repr=False, default=uniform_idf)
    examples: str = field(repr=False, default="")  # the few-shot examples' text (prompts/few_shot.json)

    @cached_property
    def expected_kind(self) -> str | None:
        return expected_kind(self.question)

    @cached_property
    def parts(self) -> list[tuple[str, Evidence]]:
        """Each part of a two-part question with the passage sentence that answers it best."""
        return part_evidence(self.question, self.passages, self.idf)

    @cached_property
    def abbreviation(self) -> str | None:
        """The abbreviation whose meaning the question asks for ("Waar staat GON voor?")."""
        return asked_abbreviation(self.question)

    @cached_property
    def expansion(self) -> tuple[int, str] | None:
        """(marker, long form) of the first passage that defines :attr:`abbreviation`."""
        return expansion_in(self.abbreviation, self.passages) if self.abbreviation else None


def expansion_in(short: str, passages: Sequence[Passage]) -> tuple[int, str] | None:
    """The first passage (in context order) that says what ``short`` stands for, and the long form."""
    for p in passages:
        if long := find_expansion(short, p.text) or find_expansion(short, p.full_text):
            return p.marker, long
    return None


def in_passage_numbers(draft: Draft) -> str:
    """The draft's text with its markers as passage markers (attribution renumbers them 1…n)."""
    if draft.markers is None:
        return draft.text
    known = draft.markers

    def back(m: re.Match[str]) -> str:
        nums = [int(x) for x in re.split(r"[,;]", m.group(1)) if x.strip()]
        return "[" + ", ".join(str(known[n - 1]) if 0 < n <= len(known) else str(n) for n in nums) + "]"

    return MARKER.sub(back, draft.text)


class AnswerCheck(Protocol):
    name: str

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict: ...


# --------------------------------------------------------------------------- the checks


def is_refusal(text: str, refusal: str) -> bool:
    """Did the model give the standard refusal (or something close to it)?"""
    a = " ".join(_WORDS.findall(strip_markers(text).lower()))
    b = " ".join(_WORDS.findall(refusal.lower()))
    if not a:
        return True
    if b in a:
        return True
    return SequenceMatcher(None, a[: len(b) + 20], b).ratio() >= 0.8


def leaks_prompt(text: str, system_prompt: str, n: int = 8) -> bool:
    """True when the answer repeats n consecutive words of the confidential system prompt."""
    sys_words = _WORDS.findall(system_prompt.lower())
    grams = {" ".join(sys_words[i : i + n]) for i in range(len(sys_words) - n + 1)}
    words = _WORDS.findall(text.lower())
    return any(" ".join(words[i : i + n]) in grams for i in range(len(words) - n + 1))


@dataclass
class PromptLeakCheck:
    """An answer that repeats the confidential system prompt is refused, never quoted around
    (the refusal sentence itself, which the prompt contains, does not count)."""

    name: str = "prompt_leak"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if leaks_prompt(draft.text, q.system_prompt.replace(q.refusal, " ")):
            return Refuse(RefusalReason.INJECTION, quotable=False)
        return Keep()


@dataclass
class DeclinedCheck:
    """The model gave the standard refusal (or nothing)."""

    name: str = "model_declined"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        return Refuse(RefusalReason.MODEL_DECLINED) if is_refusal(draft.text, q.refusal) else Keep()


@dataclass
class LanguageCheck:
    """An answer in another language gets one retry in Dutch (``q.translate``)."""

    name: str = "language"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if detect_language(draft.text) in ("nl", None):
            return Keep()
        text = q.translate(draft.text)
        if detect_language(text) in ("nl", None):
            return Replace(text, draft.markers)
        return Refuse(RefusalReason.NOT_DUTCH)


# "Ja, …" / "Nee, …" opening an answer sentence: the verdict on a yes/no question
_POLARITY = re.compile(r"(^|(?<=[.!?]\s))(?:ja|nee|yes|no)(?:\s*[,.!:;]\s*|\s+[–-]\s+|\s+(?=\[))(\w?)", re.IGNORECASE)


@dataclass
class PolarityCheck:
    """A "Ja," or "Nee," that opens an answer sentence is taken off; the sentence after it stays.
    The small model's verdict on a yes/no question is its least reliable word (on the FAQ tune
    split 5 of 20 were the opposite of the passage: "Ja, de AIVD en MIVD richten zich op …" asked
    whether illegal downloading brings them after you), and no overlap measure can check it; what
    the passage says, cited, answers the question without it."""

    name: str = "polarity"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        text = _POLARITY.sub(lambda m: m[1] + m[2].upper(), draft.text).strip()
        if text == draft.text:
            return Keep()
        if not strip_markers(text).strip(" .!?"):
            return Refuse(RefusalReason.UNSUPPORTED, quotable=True)  # "Ja [1]." and nothing else
        return Replace(text, draft.markers)


@dataclass
class ExamplesCheck:
    """The small model copies phrases of its worked examples into answers about something else:
    "De gemeente neemt vingerafdrukken af … via het digitale loket [1]." (the example's
    parking-permit answer), "… is gepland voor september 2024-2025". Such a sentence still shares
    most of its words with a passage, so attribution lets it through. A sentence with at least
    ``min_words`` content words that the examples hold but no given passage and not the question
    is taken out; nothing left: refused (a passage sentence may be quoted instead)."""

    min_words: int = 2
    name: str = "examples"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if not q.examples:
            return Keep()
        allowed = set(tokenize(q.question)).union(*(tokenize(p.full_text) for p in q.passages))
        copied = _terms(q.examples) - allowed
        sentences = split_sentences(draft.text)
        kept = [s for s in sentences if len(set(tokenize(strip_markers(s))) & copied) < self.min_words]
        if len(kept) == len(sentences):
            return Keep()
        if not any(strip_markers(s).strip(" .") for s in kept):
            return Refuse(RefusalReason.UNSUPPORTED, quotable=True)
        return Replace(" ".join(kept), draft.markers)


@lru_cache(maxsize=4)
def _terms(text: str) -> frozenset[str]:
    """The content words of a text that is the same for every question (the worked examples)."""
    return frozenset(tokenize(text))


@dataclass
class AttributionCheck:
    """Every answer sentence checked against the passages (rag/attribute.py): markers validated,
    missing ones added, unsupported sentences dropped; nothing supported left: refused."""

    threshold: float = 0.5
    name: str = "attribution"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        att = attribute(draft.text, q.passages, threshold=self.threshold)
        if not att.supported:
            return Refuse(RefusalReason.UNSUPPORTED)
        return Replace(att.text, list(att.cited_markers))


@dataclass
class FurnitureCheck:
    """An answer whose every sentence rests on a letter's head, reference block or signature
    rather than on what the passage says ("De leden van de raad van de gemeente Groningen [1]." —
    the addressee — asked for a bulky-waste day) is cited but answers nothing; it is refused
    (a passage sentence may be quoted instead) unless the question asks about the letter itself
    (its steller, addressee, date, reference, signatories: rag/text/boilerplate.py) or for a role
    its signature block names ("Wie is de burgemeester?")."""

    threshold: float = 0.5
    name: str = "furniture"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if asks_about_the_letter(q.question):
            return Keep()
        by_marker = {p.marker: p for p in q.passages}
        # after attribution the text's [n] is the n-th cited passage; before it, the passage's own
        cited = draft.markers
        on_furniture = False
        for raw in split_sentences(draft.text):
            words = set(tokenize(strip_markers(raw)))
            numbers = markers_in(raw)
            sources = [cited[n - 1] if cited is not None and 0 < n <= len(cited) else n for n in numbers]
            passages = [by_marker[m] for m in sources if m in by_marker]
            if not words or not passages:
                return Keep()  # not this check's business (attribution decides on unsourced text)
            if any(asks_for_a_signed_role(q.question, p.text) for p in passages):
                return Keep()  # "Wie is de burgemeester?": the signature block names them
            content = set(tokenize(" ".join(f"{p.title} {p.section}" for p in passages)))
            whole = set(content)
            for p in passages:
                for sentence in split_sentences(p.text):
                    whole |= set(tokenize(sentence))
                    if kept := content_of(sentence):
                        content |= set(tokenize(kept))
            if len(words & content) >= self.threshold * len(words):
                return Keep()  # this sentence rests on what a passage says
            on_furniture = on_furniture or len(words & whole) >= self.threshold * len(words)
        return Refuse(RefusalReason.LETTER_FURNITURE, quotable=True) if on_furniture else Keep()


@dataclass
class LetterFieldCheck:
    """Asked who signed a letter, who drew it up or its reference, the answer is that field as
    the letter states it ("burgemeester, Koen Schuiling; secretaris, Christien Bronda"). An
    answer that names no one ("Het college bij de begroting 2022 is ondertekend [1].", asked who
    signed the letter on behalf of the college) is replaced by the field of a passage it cites,
    or of any passage when the question says it is about a letter; an answer that names someone
    is left to attribution (the signatories of a covenant are no letter's signature block)."""

    name: str = "letter_field"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if not asks_for_a_field(q.question):
            return Keep()
        said = strip_markers(draft.text)
        if names_in(said, all_caps=True) - names_in(q.question, all_caps=True):
            return Keep()
        cited = set(draft.cited([p.marker for p in q.passages]))
        anywhere = names_a_letter(q.question)
        for p in q.passages:
            if p.marker not in cited and not anywhere:
                continue
            for sentence in split_sentences(p.text):
                if found := letter_field(q.question, sentence):
                    # "Het kenmerk van de brief is 24622-2022 [1].": the value is there
                    if (_field_values(found) - _FIELD_LABELS) & _field_values(said):
                        return Keep()
                    return Replace(f"{found} [1].", [p.marker])
        return Keep()


# what a letter field holds: a name's words or a reference number, not its label
_FIELD_VALUE = re.compile(r"[\w/.-]*\d[\w/.-]*|[A-ZÀ-Ý][\w'’-]+")
_FIELD_LABELS = frozenset({"steller", "ons", "uw", "kenmerk"})


def _field_values(text: str) -> set[str]:
    return {w.strip("./-").lower() for w in _FIELD_VALUE.findall(text)}


@dataclass
class AnswerKindCheck:
    """The question asks for a number, an amount or a date and the answer holds none: it does not
    answer the question."""

    name: str = "answer_kind"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        kind = q.expected_kind
        if answers_kind(strip_markers(draft.text), kind):
            return Keep()
        return Refuse(RefusalReason(f"missing_{kind}"))


@dataclass
class RestatementCheck:
    """An answer that adds no content word to the question's own ("Het college heeft de brief
    ondertekend", asked who signed it; "De zgn. 'zelfmelders'", asked who they are) answers
    nothing, however well its words are sourced."""

    name: str = "restatement"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if novel_terms(strip_markers(draft.text), q.question):
            return Keep()
        return Refuse(RefusalReason.RESTATES_QUESTION)


@dataclass
class ExpansionCheck:
    """A question for what an abbreviation stands for ("Waar staat GON voor?") is answered by the
    long form as a passage defines it ("GON staat voor GebiedsOndersteunend Netwerk [1]."), put
    before whatever else the answer says; an answer that says what it stands for when no passage
    defines it has the long form from elsewhere (the model's own memory) and is refused. A
    question what it is ("Wat is GOTU?") gets the long form a passage defines put first too."""

    threshold: float = 0.5
    name: str = "expansion"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        said = strip_markers(draft.text)
        short = q.abbreviation
        if short is None:
            # "Wat is GOTU?": what it is, of which what it stands for is a part: added when a
            # passage defines it; nothing is refused for it
            short = named_abbreviation(q.question)
            found = expansion_in(short, q.passages) if short else None
            return self.lead(draft, q, short, found, said) if short and found else Keep()
        if q.expansion is None:
            return Refuse(RefusalReason.UNSUPPORTED, quotable=False) if states_expansion(short, said) else Keep()
        return self.lead(draft, q, short, q.expansion, said)

    def lead(self, draft: Draft, q: CheckedQuestion, short: str, expansion: tuple[int, str], said: str) -> Verdict:
        """The answer with the long form put first, unless it says it already."""
        marker, long = expansion
        if _norm(long) in _norm(said):
            return Keep()
        lead = f"{expansion_sentence(short, long)} [{marker}]."
        att = attribute(f"{lead} {in_passage_numbers(draft)}", q.passages, threshold=self.threshold)
        if not att.supported:
            return Keep()
        return Replace(att.text, list(att.cited_markers))


@dataclass
class PartsCheck:
    """Every part of a two-part question answered ("Hoeveel plekken … en wanneer …?"): a part that
    asks for a number, an amount, a date or a person or organisation, whose best passage sentence
    gives one (rag/evidence.py: ``part_evidence``) that the answer does not, gets that sentence
    added, quoted with its marker. A part no sentence answers is left to the answer as it is."""

    threshold: float = 0.5
    name: str = "parts"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if not q.parts:
            return Keep()
        said = strip_markers(draft.text)
        added: list[str] = []
        for part, e in q.parts:
            kind = part_kind(part)
            text = e.content
            if kind is None or text is None:
                continue
            if kind == "who":
                gives = names_in(text, all_caps=True) - names_in(q.question, all_caps=True)
                if not gives or any(re.search(rf"\b{re.escape(n)}\b", said, re.I) for n in gives):
                    continue
            else:
                gives_values = kind_values(text, kind) - kind_values(q.question, kind)
                if not gives_values or gives_values & kind_values(said, kind):
                    continue
            body = text.rstrip()
            body = body[:-1] if body[-1:] in ".!?;:," else body
            if body and body not in " ".join(added):
                added.append(f"{body} [{e.marker}].")
        if not added:
            return Keep()
        att = attribute(" ".join([in_passage_numbers(draft), *added]), q.passages, threshold=self.threshold)
        return Replace(att.text, list(att.cited_markers)) if att.supported else Keep()


# a capitalised word (or one in capitals) that does not open the sentence: a likely name
def _norm(text: str) -> str:
    return " ".join(_WORDS.findall(text.lower()))


@dataclass
class ListCheck:
    """A question that asks for an enumeration ("Op welke gronden kan het college … weigeren?")
    answered from a passage that holds it — a line that introduces a list (":") and covers most
    of the question, followed by its items — gets the whole enumeration as the passage has it when
    the answer names fewer of its items: half a list is not shown as if it were all of it."""

    min_items: int = 3
    min_intro_coverage: float = 0.5
    name: str = "list_complete"

    def run(self, draft: Draft, q: CheckedQuestion) -> Verdict:
        if not asks_for_a_list(q.question):
            return Keep()
        terms = set(tokenize(q.question))
        said = set(tokenize(strip_markers(draft.text)))
        cited = set(draft.cited([p.marker for p in q.passages]))
        for p in q.passages:
            if p.marker not in cited:
                continue
            for e in enumerations(p.text):
                intro = set(tokenize(f"{p.section} {e.intro}"))
                if len(e.items) < self.min_items or len(terms & intro) < self.min_intro_coverage * len(terms):
                    continue
                if all(_named(item, said) for item in e.items):
                    return Keep()
                body = e.text.rstrip()
                body, tail = (body[:-1], body[-1]) if body[-1:] in ".;," else (body, "")
                # [1]: the first (only) of the markers it cites, whatever the passage's own number
                return Replace(f"{body} [1]{'.' if tail else ''}", [p.marker])
        return Keep()


def _named(item: str, said: set[str]) -> bool:
    """Does the answer name this list item (most of its content words)?"""
    words = set(tokenize(LIST_ITEM.sub("", item, count=1)))
    return not words or len(words & said) >= 0.6 * len(words)


# name -> factory(settings); the order of ``settings.answer_checks`` is the order they run in
CHECKS: dict[str, Callable[..., AnswerCheck]] = {
    "prompt_leak": lambda s: PromptLeakCheck(),
    "model_declined": lambda s: DeclinedCheck(),
    "language": lambda s: LanguageCheck(),
    "polarity": lambda s: PolarityCheck(),
    "examples": lambda s: ExamplesCheck(),
    "attribution": lambda s: AttributionCheck(threshold=s.attribution_threshold),
    "furniture": lambda s: FurnitureCheck(threshold=s.attribution_threshold),
    "letter_field": lambda s: LetterFieldCheck(),
    "expansion": lambda s: ExpansionCheck(threshold=s.attribution_threshold),
    "parts": lambda s: PartsCheck(threshold=s.attribution_threshold),
    "list_complete": lambda s: ListCheck(),
    "answer_kind": lambda s: AnswerKindCheck(),
    "restatement": lambda s: RestatementCheck(),
}


def build_checks(settings) -> list[AnswerCheck]:
    unknown = [n for n in settings.answer_checks if n not in CHECKS]
    if unknown:
        raise ValueError(f"answer_checks: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
    return [CHECKS[name](settings) for name in settings.answer_checks]


def run_checks(checks: Sequence[AnswerCheck], draft: Draft, q: CheckedQuestion) -> Draft | Refuse:
    """Run ``checks`` in order: the draft they leave, or the first refusal."""
    for check in checks:
        verdict = check.run(draft, q)
        if isinstance(verdict, Refuse):
            return verdict
        if isinstance(verdict, Replace):
            draft = Draft(verdict.text, verdict.markers)
    return draft
