"""Abbreviations and what they stand for.

A question "Waar staat GON voor?" is answered by the long form as the documents define it
("het GebiedsOndersteunend Netwerk (GON)"), not by a sentence that merely uses the
abbreviation ("Het GON is een organisatie"). Definitions are found with the algorithm of
Schwartz & Hearst (2003, "A simple algorithm for identifying abbreviation definitions in
biomedical text"): for "long form (SF)" or "SF (long form)", the letters of the short form are
matched from the last one backwards through the words before it, the first letter at the start
of a word. It is language-independent and needs no list: "Regionale Inkooporganisatie
Groninger Gemeenten (RIGG)", "sociaaleconomische status (SES)", "GOTU (Geen Onderwijs Toch
Uitdaging)"; "ISK (voortgezet onderwijs)" is no definition and is not taken for one.
"""

from __future__ import annotations

import re

# "Waar staat GON voor?", "Wat betekent de afkorting IZA?", "Wat is de volledige naam van …",
# "What does SES stand for?": the abbreviation asked about
_SHORT = r"([A-Z][A-Za-z0-9&]{0,2}[A-Z0-9&][A-Za-z0-9&]{0,4})(?![-\w])"
_ASKS = [
    re.compile(rf"\bwaar\s+sta(?:at|an)\s+(?:de\s+afkorting\s+|het\s+|de\s+)?{_SHORT}[^?]*?\bvoor\b", re.I),
    re.compile(
        rf"\bwat\s+(?:betekent|betekenen|is\s+de\s+betekenis\s+van)\s+(?:de\s+afkorting\s+|het\s+|de\s+)?{_SHORT}\s*(?:\?|$|hier\b|precies\b|in\s+(?:de|het)\b)",
        re.I,
    ),
    re.compile(rf"\b(?:afkorting|acroniem)\s+{_SHORT}", re.I),
    re.compile(
        rf"\b(?:volledige|voluit(?:geschreven)?)\s+naam\s+(?:van\s+)?(?:de\s+|het\s+)?(?:\w+\s+){{0,2}}{_SHORT}", re.I
    ),
    re.compile(
        rf"\bwhat\s+(?:does|do)\s+(?:the\s+)?(?:abbreviation\s+|acronym\s+)?{_SHORT}[^?]*?\bstand\s+for\b", re.I
    ),
    re.compile(rf"\bwhat\s+is\s+(?:the\s+)?(?:meaning|full\s+name)\s+of\s+(?:the\s+)?{_SHORT}", re.I),
]


def _capitals(short: str) -> bool:
    """Written as an abbreviation: two capitals or more ("GON", "WIJ", "IZA"), not "Wat"."""
    return sum(c.isupper() for c in short) >= 2


# "Wat is GOTU?", "Wat is de WMO?", "What is the IZA?": asks what it is; its long form is part of
# the answer, though not all of it
_NAMES = re.compile(
    rf"\b(?:wat\s+(?:is|zijn|was)\s+(?:de\s+|het\s+|een\s+)?|what\s+(?:is|are)\s+(?:the\s+)?){_SHORT}", re.I
)


def named_abbreviation(question: str) -> str | None:
    """The abbreviation a "what is X?" question asks about (not one asking what it stands for)."""
    if asked_abbreviation(question):
        return None
    for m in _NAMES.finditer(question):
        if _capitals(m.group(1)):
            return m.group(1)
    return None


def asked_abbreviation(question: str) -> str | None:
    """The abbreviation whose meaning the question asks for, or None."""
    for pattern in _ASKS:
        for m in pattern.finditer(question):
            short = m.group(1)
            if _capitals(short):
                return short
    return None


def _long_before(short: str, before: str) -> str | None:
    """Schwartz & Hearst: the shortest text at the end of ``before`` whose letters spell ``short``
    backwards, the first letter at a word start; at most min(|SF| + 5, 2·|SF|) words."""
    words = before.split()
    if not words:
        return None
    limit = min(len(short) + 5, 2 * len(short))
    cand = " ".join(words[-limit:])
    s_i, l_i = len(short) - 1, len(cand) - 1
    letters = short.lower()
    text = cand.lower()
    while s_i >= 0:
        c = letters[s_i]
        if not c.isalnum():
            s_i -= 1
            continue
        while l_i >= 0 and (text[l_i] != c or (s_i == 0 and l_i > 0 and text[l_i - 1].isalnum())):
            l_i -= 1
        if l_i < 0:
            return None
        l_i -= 1
        s_i -= 1
    start = cand.rfind(" ", 0, l_i + 1) + 1
    long = cand[start:].strip(" ,;:-–(\"'‘’“”")
    if len(long.split()) < 1 or long.lower() == short.lower() or len(long) <= len(short):
        return None
    return long


def _spells(short: str, long: str) -> bool:
    """Does ``long`` (given after the abbreviation) spell it: its first letter at the start of
    the first word, the rest in order?"""
    long = long.strip()
    if not long or long[0].lower() != short[0].lower():
        return False
    found = _long_before(short, long)
    return found is not None and found == long.strip(" ,;:-–(\"'‘’“”")


def find_expansion(short: str, text: str) -> str | None:
    """The long form ``text`` gives for ``short``: "… long form (SHORT)" or "SHORT (long form)"."""
    esc = re.escape(short)
    for m in re.finditer(rf"\(\s*{esc}\s*\)", text):
        # the clause before the parenthesis: a sentence or list boundary ends the search
        before = re.split(r"[.;:!?\n(]\s", text[: m.start()])[-1]
        if long := _long_before(short, before):
            return long
    for m in re.finditer(rf"\b{esc}\s*\(([^()]{{3,120}})\)", text):
        if _spells(short, m.group(1)):
            return m.group(1).strip()
    return None


# an abbreviation in brackets after its long form, or before its long form in brackets
_DEFINED = re.compile(rf"\(\s*{_SHORT}\s*\)|\b{_SHORT}\s*\(")


def definitions(text: str) -> dict[str, str]:
    """Every abbreviation ``text`` defines, with its long form: "de Ondersteuner Jeugd en
    Gezin (OJG)" -> {"OJG": "Ondersteuner Jeugd en Gezin"}."""
    found: dict[str, str] = {}
    for m in _DEFINED.finditer(text):
        short = m.group(1) or m.group(2)
        if short in found or not _capitals(short):
            continue
        if long := find_expansion(short, text):
            found[short] = long
    return found


def expansion_sentence(short: str, long: str) -> str:
    """The answer to "waar staat SHORT voor?" as the documents define it (without its marker)."""
    return f"{short} staat voor {long}"


def states_expansion(short: str, text: str) -> bool:
    """Does ``text`` say what ``short`` stands for ("GON staat voor …", "… (GON)", "GON (…)")?"""
    esc = re.escape(short)
    if re.search(rf"\b{esc}\b[^.?!]{{0,20}}\b(?:staat|staan)\s+voor\b|\b{esc}\s+stands\s+for\b", text, re.I):
        return True
    return find_expansion(short, text) is not None
