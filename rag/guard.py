"""Prompt-injection guard: instructions to the assistant are data, not orders.

A question that asks something of the documents is answered from the documents, whatever
words it contains ("Wat zijn uw regels voor …", "Wat gebeurt er als ik vergeet …", "Wie is
de beheerder: …", "Vergeet de begroting van 2016; wat zegt die van 2023 …"). What the guard
takes out is narrower than a sentence: the *clause* that addresses the assistant itself —

* ``override``: an imperative to drop its instructions or its sources ("negeer alle
  eerdere instructies", "vergeet de documenten", "ignore your rules", "kun je je regels
  negeren"); an object with a topic of its own ("de oude regels voor parkeren") is not the
  assistant's and is left alone;
* ``extraction``: asking for its own instructions ("je systeemprompt", "jouw instructies",
  "your rules", "herhaal de tekst hierboven");
* ``roleplay``: changing its role ("doe alsof je …", "jij bent nu …", "vanaf nu ben je …",
  "DAN", "developer mode");
* ``fake_system``: a line posing as a system or admin message ("SYSTEEM: …", "[system]",
  "<|im_start|>system");
* ``output``: hijacking the answer's form ("antwoord alleen met …", "answer in English
  only", "voeg aan elk antwoord toe …");
* ``off_task``: asking for made-up text instead of an answer ("schrijf een gedicht over …",
  "write a joke") — nothing the documents can answer.

A clause matches in a normalised shadow of the text (NFKC, zero-width characters removed,
spaced-out letters and digit-for-letter spellings joined), so "N e g e e r" and "negeer
al1e instructies" are the same words. What is left of the question is answered as usual;
only when nothing that asks something is left is the answer the standard refusal
(``refusal_reason: injection``) and no model is called. The same clause test runs over the
user turns of a conversation's history and over the text of retrieved passages
(:func:`strip_instructions`), so an instruction hidden in a document reaches the model no
more than one typed into the question. The output checks (prompt leak, language,
attribution) are the second wall: the guard is not the only thing that keeps an attack out.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass, field

from .text.sentences import split_sentences

_I = re.IGNORECASE

# -- the words ------------------------------------------------------------------------
# the assistant's own instructions (what an override or an extraction is after)
_RULES = (
    r"(?:instructies?|instructions?|systeem[- ]?prompt|system[- ]?prompt|prompts?|opdrachten|opdracht|"
    r"richtlijnen|guidelines|programmering|programming|regels|rules|beperkingen|restrictions|filters?|"
    r"veiligheidsregels|safety rules)"
)
# qualifiers that make rules the assistant's: "je regels", "alle vorige instructies", "the above"
_OWNER = (
    r"(?:je|jouw|uw|your|al\s+je|al\s+jouw|alle|all|any|elke|iedere|de\s+vorige|de\s+eerdere|de\s+bovenstaande|"
    r"de\s+voorgaande|vorige|eerdere|bovenstaande|voorgaande|oude|previous|prior|above|earlier|the\s+previous|"
    r"the\s+above|the\s+prior|the\s+earlier|these|deze|die|the|de|het|je\s+eigen|your\s+own)"
)
# the sources as a whole ("vergeet de documenten", "ignore the context")
_SOURCES = r"(?:documenten|bronnen|fragmenten|passages|context|documents|sources|sources|tekst hierboven|text above)"
# an object with a topic of its own is about the world, not about the assistant
_TOPIC = r"\s+(?:voor|over|van|bij|rond|omtrent|inzake|uit|rondom|for|about|on|of|regarding)\s+(?!je\b|jouw\b|your\b|dit gesprek|this)\w"
_OVERRIDE_VERB = (
    r"(?:negeer|negeren|vergeet|vergeten|ignore|ignoring|forget|disregard|overrule|omzeil|omzeilen|bypass|"
    r"schakel\s+\w+\s+uit|zet\s+\w+\s+uit|laat\s+\w+\s+los|override|skip|verwijder)"
)
# imperative position: the verb opens the clause, perhaps after a politeness or a modal + you
_LEAD = (
    r"(?:^|^(?:nu|eerst|even|alsjeblieft|alstublieft|graag|please|now|first|ok[eé]?|oké|goed|dus|so|and|en|maar|but)[\s,]+"
    r"|^(?:kun|kan|kunt|wil|wilt|moet|mag|zou|zal|ga|can|could|would|will|should|must)\s+(?:je|jij|u|you)\s+(?:\w+\s+){0,4}?"
    r"|^(?:je|jij|u|you)\s+(?:moet|mag|kunt|kan|zult|gaat|must|should|can|will|may|are\s+allowed\s+to)\s+(?:nu\s+|now\s+)?(?:\w+\s+){0,4}?)"
)

PATTERNS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        _LEAD + _OVERRIDE_VERB + r"\b(?:[^.?!;:]{0,40}?)\b(?:"
        rf"{_OWNER}\s+(?:\w+\s+){{0,2}}?{_RULES}\b(?!{_TOPIC})|{_OWNER}\s+{_SOURCES}\b(?!{_TOPIC})|"
        r"alles|everything|all of that|wat (?:je|u) (?:is|werd) (?:verteld|gezegd|opgedragen)|what you were told)"
        r"|\b(?:answer|antwoord|beantwoord|reply|respond)\b(?:\s+\w+){0,3}?\s+(?:from|uit|met|op basis van|using|with)\s+"
        r"(?:your|je|jouw|uw)\s+(?:own|eigen|general|algemene)\s+(?:knowledge|kennis)\b",
        _I,
    ),
    "extraction": re.compile(
        r"\b(?:systeem[- ]?prompt|system[- ]?prompt|systeeminstructies?|system (?:message|instructions?)|"
        r"systeembericht|initi[eë]le prompt|initial prompt|verborgen (?:instructies|regels|prompt)|"
        r"hidden (?:instructions|rules|prompt)|developer (?:message|instructions))\b"
        rf"|\b(?:je|jouw|your)\s+(?:eigen\s+|own\s+|volledige\s+|full\s+|exacte\s+|exact\s+|oorspronkelijke\s+|original\s+)?{_RULES}\b(?!{_TOPIC})"
        rf"|\buw\s+(?:eigen\s+|volledige\s+)?(?:instructies|prompt|systeem\w*|opdracht)\b(?!{_TOPIC})"
        r"|^(?:herhaal|repeat|print|toon|laat\s+zien|show|geef|output|kopieer|copy|citeer|quote|vertel|tell|schrijf|write)\b"
        r"[^.?!]{0,40}\b(?:hierboven|above|vóór deze vraag|voor deze vraag|before this|eerste bericht|first message|"
        r"begin van dit gesprek|start of this conversation|woordelijk wat|verbatim)"
        r"|\b(?:je|jouw|your)\s+(?:ontwikkelaars?|makers?|developers?|creators?|programmeurs?|bouwers?)\b"
        r"|\b(?:eerste bericht|first message)\s+(?:van|in|of)\s+(?:dit|ons|het|this|our|the)\s+(?:gesprek|chat|conversation)\b"
        r"|\b(?:vóór|voor|boven|before|above)\s+(?:deze|this)\s+(?:vraag|question|bericht|message)\b",
        _I,
    ),
    "roleplay": re.compile(
        r"\b(?:rollenspel|role[- ]?play|jailbreak|developer mode|ontwikkelaarsmodus|god mode|doe alsof (?:je|jij|u)|"
        r"speel (?:nu )?(?:de|een) rol|neem de rol|gedraag je als|act as (?:if|a|an)\b|pretend (?:to be|you are|that)|"
        r"jij bent nu|je bent nu|u bent nu|you are now|(?:vanaf nu|voortaan|van nu af aan)\s+\w+\s+(?:je|jij|u)|from now on)\b",
        _I,
    ),
    "off_task": re.compile(
        r"^(?:(?:alsjeblieft|alstublieft|please|en|and|graag|kun je|kunt u|can you|could you)[\s,]+)?"
        r"(?:schrijf|maak|verzin|dicht|bedenk|write|compose|make up|create)\b[^.?!;:]{0,20}\b"
        r"(?:gedicht(?:je)?|lied(?:je)?|songtekst|verhaal(?:tje)?|sprookje|mop|grap|rap|limerick|haiku|sonnet|"
        r"poem|song|story|joke|fairy tale)\b",
        _I,
    ),
    "dan": re.compile(r"\bDAN\b"),  # the jailbreak persona; case-sensitive, "dan" is a Dutch word
    "fake_system": re.compile(
        r"^\s*(?:[\[(<#*]+\s*)?(?:SYSTEEM|SYSTEM|ADMIN|ADMINISTRATOR|BEHEERDER|DEVELOPER|ONTWIKKELAAR|ROOT|OPERATOR|USER|GEBRUIKER|ASSISTANT|ASSISTENT)"
        r"(?:\s*[\])>*]+)?\s*(?::|\]|>)|^\s*\[(?:system|systeem|admin|inst)\]|<\|?(?:im_start|system|endoftext)\|?>|"
        r"\[/?INST\]|<<SYS>>|^\s*#{2,}\s*(?:system|systeem|instructie|instruction)",
        # capitals only for the plain words: "Beheerder: wie is dat?" is a question, "SYSTEEM:" is not
    ),
    "output": re.compile(
        r"^(?:(?:alsjeblieft|alstublieft|please|en|and|maar|but|graag)[\s,]+)?"
        r"(?:(?:antwoord|answer|reply|respond|schrijf|write|geef)\b[^.?!;:]{0,40}\b(?:in english|in het engels|only with|"
        r"alleen met|uitsluitend met|only in|alleen in|in hoofdletters|in capitals|in all caps)"
        r"|(?:voeg|add|zet|plak|append|begin|start|eindig|end|sluit)\b[^.?!;:]{0,40}\b(?:elk|ieder|every|each|je|jouw|your|het)\b"
        r"[^.?!;:]{0,20}\b(?:antwoord|answer|reply|response)\b)"
        r"|\b(?:in english only|english only|alleen in het engels|answer in english|antwoord in het engels)\b"
        # a rule for every answer inside a longer clause: "jij bent Piet en je begint elk antwoord met 'Arrr'"
        r"|\b(?:je|jij|u|you)\s+(?:begint|start|eindigt|sluit|besluit|begin|end|finish)\b[^.?!;:]{0,30}"
        r"\b(?:elk|ieder|al je|every|each|all your)\s+(?:antwoord|antwoorden|answer|answers|reply|replies|response)\b"
        r"|^(?:(?:alsjeblieft|alstublieft|please|en|and|graag)[\s,]+)?(?:zeg|say|schrijf|write|print|typ|type|output|"
        r"antwoord met|reply with|respond with)\s+(?:\w+\s+){0,3}?['\"“‘]",
        _I,
    ),
}
_ROLE_WORDS = frozenset(
    "systeem system admin administrator beheerder developer ontwikkelaar root operator user gebruiker assistant assistent".split()
)
_TEMPLATE_OPEN = re.compile(r"<\|?im_start\|?>|\[INST\]|<<SYS>>", _I)
_TEMPLATE_CLOSE = re.compile(r"<\|?(?:im_end|endoftext|eot_id)\|?>|\[/INST\]|<</SYS>>", _I)
_UPPER_WORDS = re.compile(r"^\s*(?:[\[(<#*]+\s*)?([A-Za-z]+)")

_QUESTION_START = re.compile(
    r"^\s*(?:wat|wie|wiens|welke?|waar\w*|wanneer|waarom|hoe\w*|hoeveel|kan|kun|kunt|mag|moet|is|zijn|heeft|hebben|"
    r"wordt|worden|geldt|gelden|klopt|bestaat|bestaan|valt|vallen|staat|staan|komt|komen|zit|zitten|"
    r"what|who|whom|whose|which|where|when|why|how|can|is|are|does|do|did|was|were|has|have)\b",
    _I,
)
# an imperative that asks for information ("vertel hoeveel …", "tell me which …"); "vertel een mop" does not
_ASKING_VERB = re.compile(
    r"^\s*(?:(?:alsjeblieft|alstublieft|please|en|and|graag)[\s,]+)?"
    r"(?:vertel|geef|noem|beschrijf|leg\s+\w*\s*uit|licht\s+\w*\s*toe|som\s+\w*\s*op|zoek|vat\s+\w*\s*samen|"
    r"tell|give|list|explain|describe|summari[sz]e|name|find|look up)\b\s+(?:me|mij|ons|us|even|eens)?\s*"
    r"(?:wat|wie|welke?|waar\w*|wanneer|waarom|hoe\w*|hoeveel|of|what|who|which|where|when|why|how|whether)\b",
    _I,
)
# what the assistant itself thinks, feels or wants: no document answers that
_ABOUT_ASSISTANT = re.compile(
    r"\b(?:(?:je|jij|u)\s+(?:\w+\s+){0,2}?(?:denkt|vindt|voelt|wilt|gelooft)|(?:vind|denk|voel|wil|geloof)\s+(?:jij|je|u)|"
    r"(?:jouw|je|uw)\s+(?:eigen\s+)?(?:mening|gevoel|opinie)|"
    r"(?:do|would)\s+you\s+(?:\w+\s+)?(?:think|feel|believe|want)|your\s+(?:own\s+)?(?:opinion|feelings?|view))\b",
    _I,
)
_CLAUSE_SPLIT = re.compile(
    r"\s*[;:]\s+|\s+[–—-]\s+|,\s+(?=(?:en|and|maar|but|daarna|dan|then|vervolgens|wat|wie|welke?|hoe\w*|hoeveel|"
    r"waar\w*|wanneer|waarom|what|who|which|how|where|when|why)\b)|\s+(?:en|and)\s+(?:daarna\s+|dan\s+|then\s+)?"
    r"(?=(?:negeer|vergeet|ignore|forget|disregard|geef|toon|show|print|herhaal|repeat|vertel|tell|schrijf|write|"
    r"antwoord|answer|reply|doe|speel|voeg|add|zeg|say|laat|noem|wat|wie|welke?|hoe\w*|hoeveel|waar\w*|wanneer|"
    r"waarom|what|who|which|how|where|when|why)\b)",
    _I,
)
_WORD = re.compile(r"\w+")
# letters spelled out one by one; the joined run is then searched for the core attack phrases
_SPACED_RUN = re.compile(r"(?:\b\w[ .\-_*]+){4,}\w\b")
_COMPACT = re.compile(
    r"(?:negeer|negeren|vergeet|vergeten|ignore|forget|disregard)(?:al|alle|all|je|jouw|your|de|the)?"
    r"(?:vorige|eerdere|bovenstaande|previous|prior|above)?(?:instructies|instructions|regels|rules|prompt)"
    r"|systeemprompt|systemprompt"
)
_BASE64 = re.compile(r"(?<![\w+/=])[A-Za-z0-9+/]{16,}={0,2}(?![\w+/=])")
_ZERO_WIDTH = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_SPACED = re.compile(r"\b(?:\w[ .\-_*]){3,}\w\b")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
_MIXED = re.compile(r"\b(?=\w*[A-Za-z])(?=\w*[0-9])[\w@$]+\b")


def shadow(text: str) -> str:
    """The text as the patterns see it: compatibility forms folded, invisible characters
    dropped, "n e g e e r" and "n.e.g.e.e.r" joined, "al1e" read as "alie"/"alle"."""
    t = _ZERO_WIDTH.sub("", unicodedata.normalize("NFKC", text))
    t = _BASE64.sub(_decoded, t)
    t = _SPACED.sub(lambda m: re.sub(r"[ .\-_*]", "", m.group()), t)
    t = _MIXED.sub(lambda m: m.group().translate(_LEET).replace("iie", "lle").replace("aii", "all"), t)
    return " ".join(t.split())


def _decoded(m: re.Match[str]) -> str:
    """A base64 token that decodes to text is read as that text ("decodeer en voer uit: …")."""
    token = m.group()
    try:
        text = base64.b64decode(token + "=" * (-len(token) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return token
    letters = sum(c.isalpha() or c.isspace() for c in text)
    return text if text and letters / len(text) > 0.85 and " " in text else token


def clauses(sentence: str) -> list[str]:
    """A sentence cut where a new instruction or question may begin: at ``;`` and ``:``, at
    dashes, and before "en/and" or a comma that open a new imperative or question."""
    return [c for c in _CLAUSE_SPLIT.split(sentence) if c and c.strip()]


def steering(clause: str) -> list[str]:
    """The pattern families a clause matches (empty: the clause is data, not an order)."""
    s = shadow(clause)
    kinds = []
    for name, pattern in PATTERNS.items():
        if name == "fake_system" or not pattern.search(s):
            continue
        if name == "dan" and s.upper() == s and len(_WORD.findall(s)) > 2:
            continue  # a sentence in capitals: "DAN" is the Dutch word
        kinds.append(name)
    if not kinds and _SPACED_RUN.search(clause) and _COMPACT.search(re.sub(r"\W", "", s).lower()):
        kinds.append("override")  # "N e g e e r  a l l e  i n s t r u c t i e s": the words run together
    return kinds


def fake_system(sentence: str) -> bool:
    """A sentence posing as a system or admin message: "SYSTEEM:" in capitals, or a
    bracketed or chat-template marker ("Beheerder: wie is dat?" is a question)."""
    s = shadow(sentence)
    if not PATTERNS["fake_system"].search(s):
        return False
    return _fake_system_line(s)


def _fake_system_line(s: str) -> bool:
    """A system line: "SYSTEEM:" in capitals, or a bracketed or chat-template marker; "Beheerder: …?" is a
    question that starts with a word."""
    m = _UPPER_WORDS.match(s)
    word = m.group(1) if m else ""
    if word and word.lower() in _ROLE_WORDS:
        bracketed = s.lstrip()[:1] in "[(<#*"
        return bracketed or word.isupper()
    return True


@dataclass
class GuardResult:
    question: str  # what is left to answer ("" when nothing)
    removed: list[str] = field(default_factory=list)  # the clauses taken out
    kinds: list[str] = field(default_factory=list)  # which pattern families matched

    @property
    def injection(self) -> bool:
        return bool(self.removed)

    @property
    def refuse(self) -> bool:
        """Only an attempt to steer, no question left to answer."""
        return self.injection and not asks_something(self.question)


def asks_something(text: str) -> bool:
    """Some sentence asks for information the documents can hold: a question mark after at
    least two words, a question word or an asking imperative ("vertel hoeveel …") at its start,
    and not about the assistant's own mind ("wat vind jij …", "vertel wat je denkt")."""
    return any(
        (("?" in s and len(_WORD.findall(s)) >= 2) or _QUESTION_START.match(s) or _ASKING_VERB.match(s))
        and not _ABOUT_ASSISTANT.search(s)
        for s in split_sentences(text)
    )


def _strip(text: str) -> GuardResult:
    kept: list[str] = []
    removed: list[str] = []
    kinds: list[str] = []
    # a chat-template token opens a new message: "<|im_start|>system …<|im_end|> Wat is GOTU?"
    text = _TEMPLATE_OPEN.sub(lambda m: "\n" + m.group(), _TEMPLATE_CLOSE.sub("\n", text))
    for line in text.splitlines() or [text]:
        for sentence in split_sentences(line):
            if fake_system(sentence):  # a fake system line: the whole sentence is the attack
                removed.append(sentence)
                kinds += [] if "fake_system" in kinds else ["fake_system"]
                continue
            parts = clauses(sentence)
            hits = [steering(p) for p in parts]
            if not any(hits):
                kept.append(sentence)
                continue
            left = [p.strip() for p, h in zip(parts, hits) if not h]
            removed += [p.strip() for p, h in zip(parts, hits) if h]
            kinds += [k for h in hits for k in h if k not in kinds]
            if left:
                piece = " ".join(left)
                if sentence.rstrip()[-1:] in "?.!" and piece[-1:] not in "?.!":
                    piece += sentence.rstrip()[-1]
                kept.append(piece[:1].upper() + piece[1:])
    return GuardResult(question=" ".join(kept).strip(), removed=removed, kinds=kinds)


def check_question(question: str) -> GuardResult:
    """The question with the clauses that steer the assistant taken out."""
    return _strip(question)


def strip_instructions(text: str) -> str:
    """A passage or an earlier turn without the clauses that address the assistant; text
    without any is returned unchanged (same string, same whitespace)."""
    sentences = split_sentences(text)
    if not any(fake_system(s) or any(steering(p) for p in clauses(s)) for s in sentences):
        return text
    return _strip(text).question
