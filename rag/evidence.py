"""Evidence: the sentences of the retrieved passages that bear on the question.

The default model is small: given three whole passages it often paraphrases the wrong
sentence or drops the number that was asked for. This step ranks the sentences of the
passages by how much of the question they cover, so that the pipeline can

* give the model only the sentences that matter (context compression: less prefill, less
  distraction), and
* fall back to quoting the best sentence literally when the model declines or its answer
  cannot be attributed, but the passages clearly hold the answer.

Coverage is lexical and deterministic: the IDF-weighted share of the question's content
words (Dutch-stemmed, stop words left out) that occur in a sentence. IDF comes from the
index's BM25 statistics, so rare words ("multiprobleemgezinnen", "Bibob") weigh more than
common ones ("gemeente"). Words of the passage title and section count for every sentence
of that passage, as a heading often carries the subject the sentence leaves implicit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from .text.acronyms import definitions
from .text.boilerplate import content_of, letter_field
from .text.documents import without_document_names
from .text.idf import IdfFn, uniform_idf
from .text.numbers import COUNT_WORD, numbers_in
from .text.sentences import split_sentences
from .text.tokens import novel_terms, tokenize
from .types import Passage
from .units import continuation, premise

# Question words and the kind of answer they ask for.
_EXPECTS_NUMBER = re.compile(
    r"\b(hoeveel|hoe ?veel|welk(e)? (bedrag|aantal|percentage)|hoe (groot|lang|hoog|oud)|"
    r"tot welke leeftijd|how (much|many|long|old))\b",
    re.IGNORECASE,
)
_EXPECTS_DATE = re.compile(
    r"\b((sinds|vanaf|tot|per) wanneer|op welke datum|in welk jaar|in welke maand|since when|on what date|in what year)\b",
    re.IGNORECASE,
)
# A plain "wanneer"/"when" asks for a moment in a council question ("Wanneer is de opvang
# opengegaan?") but for a condition in a citizen's one ("Wanneer moet ik een vergunning
# aanvragen?", "Wanneer wordt mijn paspoort ongeldig?"): with a person or a condition word
# in the question, no date is required of the answer.
_WHEN = re.compile(r"\b(wanneer|when)\b", re.IGNORECASE)
_CONDITION = re.compile(
    r"\b(ik|u|je|jij|we|wij|men|mijn|uw|jouw|ons|onze|i|you|my|your|"
    r"nodig|verplicht|geldt|gelden|recht|aanmerking|needed|required|eligible|apply|"
    # a modal verb asks for the conditions, as in legal and policy Dutch ("Wanneer kan het college
    # een vergunning weigeren?", "Wanneer moet een aanvraag worden ingediend?")
    r"kan|kunnen|mag|mogen|moet|moeten|dient|dienen|hoeft|hoeven|can|may|must|should)\b",
    re.IGNORECASE,
)
_EXPECTS_AMOUNT = re.compile(
    r"\b(hoeveel|hoe ?veel|how much)\b(\s+[\w-]+){0,3}?\s+(geld|budget|euro|eigen bijdrage|kost\w*|money|cost\w*)\b|"
    r"\b(wat|hoeveel) (kost|kosten|bedraagt|bedragen)\b|"
    r"\b(wat|welk|welke) (is|zijn|was|waren) (het|de) ([\w-]+ )?(budget|bedrag|tarief|uurtarief|prijs|kosten)\b|"
    r"\bwhat (is|was|are) the ([\w-]+ )?(budget|amount|price|cost|costs|rate)\b|\bhow much does\b.*\bcost\b|"
    # "Hoeveel heeft de gemeente in 2024 uitgegeven aan …?": spending asks for money
    r"\b(hoeveel|how much)\b.*\b(uitgegeven|uitgeven|uitgeeft|besteed|besteden|besteedt|geïnvesteerd|"
    r"investeert|investeren|spent|spend|spends|invested)\b",
    re.IGNORECASE,
)
_MONEY = re.compile(r"€|\beuro\b|\bEUR\b|\d\s*(miljoen|miljard|duizend|mln|mld)\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_YEAR = re.compile(r"(?<![\d.,-])(?:19|20)\d\d(?:\s*[-–]\s*(?:19|20)?\d\d)?(?![\d.,]\d)")
# a moment that recurs or is named without digits: "op de eerste dinsdag van de maand", "jaarlijks"
_RECURRING = re.compile(
    r"\b(maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|dagelijks|wekelijks|maandelijks|"
    r"jaarlijks|elke (dag|week|maand|jaar)|ieder(e)? (dag|week|maand|jaar)|kwartaal|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|daily|weekly|monthly|yearly|annually)\b",
    re.IGNORECASE,
)
# an answer that says what the number, amount or moment depends on answers the question as the
# documents can ("Hoe hoog de EPV is, hangt af van de isolatie van uw woning", "Het tarief verschilt
# per gemeente"); a bare "afhankelijk van" is left out: it is as often about people ("gezinnen die
# afhankelijk zijn van de voedselbank") as about a value
_DEPENDS = re.compile(
    r"\bhang(?:t|en)\b(?:\s+[\w-]+){0,3}?\s+af\b|\b(?:verschil|varieer|variëer)\w*\s+per\b|"
    r"\b(?:wordt|worden) bepaald door\b|\b(?:it )?depends on\b|\bvar(?:y|ies) (?:by|per|with)\b",
    re.IGNORECASE,
)
_MONTH = re.compile(
    r"\b(januari|februari|maart|april|mei|juni|juli|augustus|september|oktober|november|december|"
    r"voorjaar|najaar|zomer|winter)\b",
    re.IGNORECASE,
)


# what a date is made of: a day-month-year, a year, a month or season
_DATE_PART = re.compile(r"\b\d{1,2}-\d{1,2}-\d{2,4}\b|\b(?:1[89]|20)\d\d\b|" + _MONTH.pattern, re.IGNORECASE)


@dataclass(frozen=True)
class Evidence:
    """One sentence of a passage, with how well it covers the question."""

    marker: int  # the passage's marker in the context
    position: int  # sentence number within the passage, from 0
    text: str
    coverage: float  # IDF-weighted share of the question's content words, 0..1
    # the sentence without letter or page furniture (rag/text/boilerplate.py), None when it is
    # only that, and its coverage: what a quote may use
    content: str | None = None
    content_coverage: float = 0.0
    # cosine of the question and the sentence in the embedder's space, when ranked by meaning
    # (:func:`rank_by_meaning`); None when only the words were compared
    similarity: float | None = None


# (question, sentences) -> one similarity per sentence: the embedder's cosine
SentenceScorer = Callable[[str, Sequence[str]], Sequence[float]]


def coverage(terms: set[str], sentence_terms: set[str], idf: IdfFn) -> float:
    # summed in sorted order: a float sum over a set depends on the set's order, which changes
    # with the process's hash seed, and equal coverages must compare equal in every process
    total = sum(idf(t) for t in sorted(terms))
    if total <= 0:
        return 0.0
    return sum(idf(t) for t in sorted(terms & sentence_terms)) / total


def _score(terms: set[str], toks: set[str], heading_terms: set[str], idf: IdfFn) -> float:
    # heading words help, but a sentence must itself carry part of the question
    own = coverage(terms, toks, idf)
    with_heading = coverage(terms, toks | heading_terms, idf)
    return own if own == 0 else (3 * own + with_heading) / 4


Aliases = list[tuple[frozenset[str], frozenset[str]]]


def _aliases(passages: Sequence[Passage]) -> Aliases:
    """The abbreviations the passages define, as (short form's terms, long form's terms)."""
    found = definitions("\n".join(p.text for p in passages))
    return [(frozenset(tokenize(short)), frozenset(tokenize(long))) for short, long in found.items()]


def _terms(sentence: str, aliases: Aliases) -> set[str]:
    """A sentence's terms; one that uses an abbreviation the passages define ("De OJG is een
    schakel …") also covers its long form's words ("Ondersteuner Jeugd en Gezin"), and the
    other way round."""
    toks = set(tokenize(sentence))
    for short, long in aliases:
        if short and short <= toks:
            toks |= long
        elif long and long <= toks:
            toks |= short
    return toks


def rank_evidence(question: str, passages: Sequence[Passage], idf: IdfFn = uniform_idf) -> list[Evidence]:
    """Every sentence of every passage, best first (coverage, then passage order, then
    position in the passage)."""
    # "… in de begroting 2020?" names the source, which retrieval has used already
    # (rag/recency.py); a sentence that mentions 2020 does not answer it any better
    terms = set(tokenize(without_document_names(question))) or set(tokenize(question))
    aliases = _aliases(passages)
    out: list[Evidence] = []
    for p in passages:
        heading_terms = set(tokenize(f"{p.title} {p.section}"))
        for i, sentence in enumerate(split_sentences(p.text)):
            score = _score(terms, _terms(sentence, aliases), heading_terms, idf)
            content = content_of(sentence)
            if content == sentence:
                content_score = score
            else:
                content_score = _score(terms, _terms(content, aliases), heading_terms, idf) if content else 0.0
            out.append(Evidence(p.marker, i, sentence, score, content, content_score))
    out.sort(key=lambda e: (-e.coverage, e.marker, e.position))
    return out


def rank_by_meaning(question: str, evidence: Sequence[Evidence], score: SentenceScorer) -> list[Evidence]:
    """The evidence ordered by meaning as well as by words: similarity plus coverage, so that a
    question in English over Dutch passages, or one in other words than the documents use,
    still brings the sentence that answers it into view. ``coverage`` stays the lexical share
    (quote thresholds are stated in it)."""
    if not evidence:
        return []
    sims = score(question, [e.text for e in evidence])
    out = [replace(e, similarity=float(s)) for e, s in zip(evidence, sims, strict=True)]
    out.sort(key=lambda e: (-((e.similarity or 0.0) + e.coverage), e.marker, e.position))
    return out


def weak_words(evidence: Sequence[Evidence], below: float) -> bool:
    """Do the question's words fail to find the passages' sentences: no sentence covers any
    of them ("Tot welke leeftijd richt de jeugdambitie zich?" over "… de ambitie dat kinderen
    van 0-23 jaar …"), or none covers ``below`` of them?"""
    best = max((e.coverage for e in evidence), default=0.0)
    return best <= 0.0 or best < below


def focus(
    passage: Passage,
    evidence: Sequence[Evidence],
    max_sentences: int = 3,
    unit_chars: int = 0,
    also: Sequence[int] = (),
) -> Passage:
    """The passage cut to its best sentences (at most ``max_sentences``, kept in their
    original order, with the sentence before the best one for context when there is room).
    With ``unit_chars``, the sentences that belong to the best one (the items of the list it
    opens, "Hiermee wordt bedoeld …": rag/units.py) are kept with it, within that many
    characters. A passage whose sentences cover nothing of the question keeps only its first
    sentence."""
    sentences = split_sentences(passage.text)
    if len(sentences) <= max_sentences and not also:
        return passage
    mine = [e for e in evidence if e.marker == passage.marker and (e.coverage > 0 or e.similarity is not None)]
    keep: list[int] = [e.position for e in mine[:max_sentences]]
    if keep and len(keep) < max_sentences and keep[0] > 0 and keep[0] - 1 not in keep:
        keep.append(keep[0] - 1)
    if not keep:  # nothing of the question here: the first sentence alone, not its unit
        keep = [0]
    elif unit_chars > 0:
        keep += continuation(sentences, keep[0], unit_chars)
    for i in also:
        if 0 <= i < len(sentences):
            keep += [i, *(continuation(sentences, i, unit_chars) if unit_chars > 0 else [])]
    if unit_chars > 0:  # "Daarom …" keeps the sentence that gives the reason
        keep += [j for i in set(keep) if (j := premise(sentences, i)) is not None]
    text = " ".join(sentences[i] for i in sorted(set(keep)))
    return Passage(marker=passage.marker, text=text, title=passage.title, section=passage.section)


# "Hoeveel plekken … en wanneer …?", "Wat is JIM en wie …?", "… and when …?": a question that
# asks two things, split before the "en"/"and" that opens the second (an interrogative within
# the next two words; "zorg en welzijn" or "en de" does not)
_PART_BREAK = re.compile(
    r",?\s+(?:en|and)\s+(?=(?:[\w-]+\s+){0,2}?(?:wie|wat|waar|waarom|wanneer|hoeveel|hoe|welke|welk|"
    r"who|what|when|where|why|how|which)\b)",
    re.IGNORECASE,
)


def question_parts(question: str) -> list[str]:
    """The questions a question asks: one, or the parts of a two-part question ("Hoeveel
    plekken heeft de locatie en wanneer ging die open?" -> "Hoeveel plekken heeft de locatie",
    "wanneer ging die open?"). A part with no content word of its own ("en waarom?") is kept:
    it still asks something, though nothing can be checked of it."""
    parts = [p.strip(" ,") for p in _PART_BREAK.split(question) if p.strip(" ,?")]
    return parts if len(parts) > 1 else [question]


_WHO = re.compile(
    r"^\W*(?:\w+\s+){0,2}?(wie|welke (organisatie|partij|partijen|instantie|instanties)|who|which organi[sz]ations?)\b",
    re.I,
)


def part_kind(part: str) -> str | None:
    """What a part of a question asks for, where an answer can be checked for it: a date, an
    amount, a number, or a person or organisation ('who')."""
    return expected_kind(part) or ("who" if _WHO.search(part) else None)


def part_evidence(
    question: str, passages: Sequence[Passage], idf: IdfFn = uniform_idf, min_part_coverage: float = 0.5
) -> list[tuple[str, Evidence]]:
    """For a question of several parts (:func:`question_parts`), each part with the sentence that
    answers it best: of the sentences that cover at least ``min_part_coverage`` of the part's own
    words, the one that covers most of the whole question (a second part often leaves its subject
    to the first: "… en hoeveel plekken heeft die?"). Empty for a question of one part."""
    parts = question_parts(question)
    if len(parts) < 2:
        return []
    whole = {(e.marker, e.position): e.coverage for e in rank_evidence(question, passages, idf)}
    out: list[tuple[str, Evidence]] = []
    for part in parts:
        own = [e for e in rank_evidence(part, passages, idf) if e.coverage >= min_part_coverage]
        if own:
            best = min(own, key=lambda e: (-whole.get((e.marker, e.position), 0.0), -e.coverage, e.marker, e.position))
            out.append((part, best))
    return out


def kind_values(text: str, kind: str) -> set[str]:
    """What in ``text`` answers a question of this kind: its numbers (and month names, for a
    date). Used to tell whether an answer gives the value a passage sentence gives."""
    if kind == "date":
        return {m.group(0).lower() for m in _DATE_PART.finditer(text)}
    return numbers_in(text)


def expected_kind(question: str) -> str | None:
    """'date', 'amount' (of money) or 'number' when the question asks for one, else None."""
    if _EXPECTS_DATE.search(question) or (_WHEN.search(question) and not _CONDITION.search(question)):
        return "date"
    if _EXPECTS_AMOUNT.search(question):
        return "amount"
    if _EXPECTS_NUMBER.search(question):
        return "number"
    return None


def answers_kind(text: str, kind: str | None) -> bool:
    """Does ``text`` contain the kind of answer the question asks for? Saying what it depends on
    counts: that is the answer where the documents give no single value."""
    if kind is None:
        return True
    if _DEPENDS.search(text):
        return True
    if kind == "date":
        text = without_document_names(text)  # "in de begroting 2022 …" says no moment
        return bool(_DIGIT.search(text) or _MONTH.search(text) or _RECURRING.search(text))
    if kind == "amount":
        return bool(_MONEY.search(text))
    # a year is no count: "In 2024 zijn de voorbereidingen getroffen …" does not say how many
    return bool(_DIGIT.search(_YEAR.sub(" ", text)) or COUNT_WORD.search(text))


def best_quote(
    question: str,
    evidence: Sequence[Evidence],
    min_coverage: float,
    kind: str | None = None,
    passages: Sequence[Passage] = (),
    unit_chars: int = 0,
    accept: Callable[[str], bool] | None = None,
) -> Evidence | None:
    """The sentence to quote when the model's own answer is not usable: the best-covering
    sentence that holds the kind of answer asked for, if it covers enough of the question
    (and, with ``accept``, passes it: the pipeline's check that the sentence means what the
    question asks, not only shares its words).

    A question is no answer: a rhetorical one ("Bent u het niet eens met de aanslag?") is
    quoted together with the sentence after it in its passage ("Dan kunt u bezwaar maken."),
    and skipped when ``passages`` has no such sentence. Letter and page furniture is cut off a
    sentence first; a sentence that is only that is never quoted."""
    sentences = {p.marker: split_sentences(p.text) for p in passages}
    # by coverage: the thresholds below are stated in it (the evidence may be ranked by meaning)
    evidence = sorted(evidence, key=lambda e: (-e.coverage, e.marker, e.position))

    def whole(e: Evidence, text: str) -> str:
        """The quoted sentence with the sentences that belong to it (rag/units.py)."""
        own = sentences.get(e.marker, [])
        if unit_chars <= 0 or e.position >= len(own):
            return text
        more = [own[i] for i in continuation(own, e.position, unit_chars)]
        before = premise(own, e.position)
        return " ".join([*([own[before]] if before is not None else []), text.rstrip(), *more])

    for e in evidence:  # a question about a letter's head or signature: the field, not the block
        if e.coverage < min_coverage:
            break
        if field := letter_field(question, e.text):
            return replace(e, text=field)
    for e in evidence:
        if e.coverage < min_coverage:
            return None
        if e.content is None or e.content_coverage < min_coverage:
            continue  # letter head, signature, page furniture: never an answer by itself
        text = e.content
        if text.rstrip().endswith("?"):
            following = sentences.get(e.marker, [])[e.position + 1 : e.position + 2]
            if not following or following[0].rstrip().endswith("?"):
                continue
            text = f"{text.rstrip()} {following[0]}"
        else:
            text = whole(e, text)
        if (
            answers_kind(text, kind)
            and len(text) >= 20
            and novel_terms(text, question)
            and (accept is None or accept(text))
        ):
            return replace(e, text=text)
    return None
