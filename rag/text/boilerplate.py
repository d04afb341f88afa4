"""Letter and page furniture: text that is about a document, not what it says.

Letterheads and reference blocks ("Onderwerp …", "Steller", "Telefoon | 42 18 | Bijlage(n)",
"Ons kenmerk", "Uw brief van"), the salutation ("Geachte heer, mevrouw,"), the closing and
signature block ("Met vriendelijke groet, burgemeester en wethouders …, burgemeester, <naam>
secretaris, <naam>"), tables of contents (dotted leaders and a page number) and page markers
("Pagina 3 van 5", "Volgvel 2").

The sentence splitter joins the lines of a letter head to the first sentence after it, and the
closing to the last one before it, so ``content_of`` cuts the furniture off a sentence and
returns what is left, or None when nothing is. The text stays indexed, searchable and shown to
the model (a question may ask who signed a letter or what its date is); it is only never
*quoted* as an answer by itself.
"""

from __future__ import annotations

import re

_SALUTATION = re.compile(
    r"\b(?:hoog|zeer )?geachte\s+\w+\b[^.!?,]{0,60},(?:\s*(?:heer|mevrouw|dames en heren|leden)\b[^.!?,]{0,30},)*\s*",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    r"\b(?:met vriendelijke groet(?:en)?|met hartelijke groet(?:en)?|hoogachtend|met de meeste hoogachting)\b",
    re.IGNORECASE,
)
# labels of a letter's reference block; words that also occur in ordinary sentences ("onderwerp",
# "telefoon", "datum") count only as a label (followed by "|" or ":")
_FIELD = re.compile(
    r"\b(steller|ons kenmerk|uw kenmerk|uw brief van|bijlage\(n\)|behandeld door|doorkiesnummer|"
    r"verzenddatum|zaaknummer|registratienummer)\b|\b(onderwerp|telefoon|datum|e-?mail|bijlagen?)\s*[|:]",
    re.IGNORECASE,
)
# "burgemeester, Koen Schuiling" / "de secretaris, mr. A. de Vries": a role, a comma, a name
# the roles that sign a council letter
_ROLES = r"burgemeester|secretaris|wethouder|griffier|voorzitter|directeur|gemeentesecretaris"
_SIGNATURE = re.compile(
    r"\b(?:" + _ROLES + r")\s*,\s*"
    r"(?:(?:mr|drs|dr|ir|ing|prof)\.?\s*)*[A-Z][\w'’.-]*(?:\s+(?:van|de|der|den|ter|ten|[A-Z][\w'’.-]*))*"
)
_TOC_LEADER = re.compile(r"(?:\.\s?){4,}\s*\d+|…{2,}\s*\d+")
_PAGE_MARKER = re.compile(r"^\s*(?:pagina|blad|volgvel|page)\s+\d+(?:\s+(?:van|of)\s+\d+)?\s*$", re.IGNORECASE)


def is_furniture(text: str) -> bool:
    """Is ``text`` (a sentence or line) only letter or page furniture?"""
    return content_of(text) is None


def content_of(sentence: str) -> str | None:
    """``sentence`` without a letter head before its salutation and without a closing and
    signature after it; None when what is left is furniture too (reference fields, signatures,
    a table-of-contents line, a page marker)."""
    text = sentence.strip()
    if m := _CLOSING.search(text):
        text = text[: m.start()].strip()
    if (m := _SALUTATION.search(text)) and (m.start() == 0 or _FIELD.search(text[: m.start()])):
        text = text[m.end() :].strip()
    if not text or _PAGE_MARKER.match(text) or _TOC_LEADER.search(text):
        return None
    fields = {(a or b).lower() for a, b in _FIELD.findall(text)}
    if len(fields) >= 2 or (fields and text.count("|") >= 3) or len(_SIGNATURE.findall(text)) >= 2:
        return None
    return text


# A question about a letter's head or signature is answered by the one field it asks for, as it
# stands in the text, never by the whole block.
_ASKS = {
    "steller": re.compile(r"\b(steller|opgesteld|contactpersoon)\b", re.IGNORECASE),
    "kenmerk": re.compile(r"\b(kenmerk|referentie)\b", re.IGNORECASE),
    "signature": re.compile(r"\b(ondertekend|ondertekening|getekend|handtekening|ondertekenaars?)\b", re.IGNORECASE),
}
_NAME = r"[A-Z][\w'’.-]*(?:\s+(?:van|de|der|den|ter|ten|[A-Z][\w'’.-]*)){0,3}"
_STELLER = re.compile(r"\b(Steller)\s*[|:]?\s*(" + _NAME + ")")
_KENMERK = re.compile(r"\b(Ons kenmerk|Uw kenmerk|Kenmerk)\s*[|:]?\s*([\w/.-]*\d[\w/.-]*)", re.IGNORECASE)
# capitalised words that start the next line of a letter head, not a name
_NOT_NAME = frozenset({"De", "Het", "Een", "Aan", "Deze", "Dit", "Telefoon", "Datum", "Bijlage", "Bijlage(n)", "Ons", "Uw",
                       "Postbus", "Onderwerp", "Geachte", "Met"})  # fmt: skip


def _name(text: str) -> str:
    words = text.split()
    while words and words[-1] in _NOT_NAME:
        words.pop()
    return " ".join(words)


def letter_field(question: str, sentence: str) -> str | None:
    """The field of a letter head or signature block that ``question`` asks for, as it stands
    in ``sentence`` ("Steller Alfons Boer", "Ons kenmerk 24622-2022", "burgemeester, Koen
    Schuiling; secretaris, Christien Bronda"), or None."""
    if _ASKS["steller"].search(question) and (m := _STELLER.search(sentence)) and (name := _name(m[2])):
        return f"{m[1]} {name}"
    if _ASKS["kenmerk"].search(question) and (m := _KENMERK.search(sentence)):
        return f"{m[1]} {m[2]}"
    if _ASKS["signature"].search(question):
        names = [n for n in (_name(s) for s in _SIGNATURE.findall(sentence)) if "," in n]
        if names:
            return "; ".join(names)
    return None


def asks_for_a_field(question: str) -> bool:
    """Does ``question`` ask for one field of a letter's head or signature (its steller, its
    reference, who signed it)?"""
    return any(p.search(question) for p in _ASKS.values())


_A_LETTER = re.compile(r"\b(brief|raadsbrief|collegebrief|letter)\b", re.IGNORECASE)


def names_a_letter(question: str) -> bool:
    """Does ``question`` say it is about a letter ("Wie heeft de raadsbrief ondertekend?"), not
    about something else that is signed or drawn up ("Wie hebben het convenant ondertekend?")?"""
    return bool(_A_LETTER.search(question))


# a question about the letter itself: who wrote, signed or received it, its date, subject,
# reference or enclosures (the fields of ``_ASKS`` and these). Such a question is answered from
# the head or signature block.
_ABOUT_THE_LETTER = re.compile(
    r"\b(geadresseerd|gericht aan|aan wie|ontvangers?|afzender|verzonden|verstuurd|"
    r"gedateerd|datum|onderwerp|bijlagen?|bijlage\(n\)|telefoonnummer|signed|addressed|sender|recipients?)\b|"
    r"\b(wie|wanneer|who|when)\b.*\b(brief|raadsbrief|letter)\b",
    re.IGNORECASE,
)


def asks_about_the_letter(question: str) -> bool:
    """Does ``question`` ask about a letter's head or signature block (its steller, addressee,
    date, subject, reference, signatories) rather than about what the letter says?"""
    return bool(_ABOUT_THE_LETTER.search(question)) or asks_for_a_field(question)


_ROLE = re.compile(r"\b(" + _ROLES + r")\b", re.IGNORECASE)
# a question that asks who holds a role: "Wie is de burgemeester?", "Wie was toen burgemeester?",
# "Welke wethouder …?", "Hoe heet de secretaris?" — not one that only mentions it ("In welke maand
# bood de burgemeester excuses aan?", "Namens wie … die de burgemeester bood?")
_ASKS_ROLE = re.compile(
    r"\bwie\s+(?:is|was|zijn|waren)\s+(?:[\w-]+\s+){0,3}?(" + _ROLES + r")\b|"
    r"\bwelke?\s+(" + _ROLES + r")\b|"
    r"\b(?:naam\s+van|hoe\s+heet|hoe\s+heette)\s+(?:de\s+|het\s+)?(" + _ROLES + r")\b",
    re.IGNORECASE,
)


def signed_roles(text: str) -> set[str]:
    """The roles a signature block in ``text`` names ("burgemeester, Koen Schuiling" -> burgemeester)."""
    return {role[1].lower() for m in _SIGNATURE.finditer(text) if (role := _ROLE.match(m.group(0)))}


def asks_for_a_signed_role(question: str, passage: str) -> bool:
    """ "Wie is de burgemeester?" over a letter signed "burgemeester, Koen Schuiling": the signature
    block answers it. "Wie is de wethouder van onderwijs?" over the same letter: it does not, nor
    does a question that only mentions the burgemeester ("Namens wie werden de excuses aangeboden
    die de burgemeester bood?")."""
    asked = {role.lower() for m in _ASKS_ROLE.finditer(question) for role in m.groups() if role}
    return bool(asked & signed_roles(passage))
