"""Dutch sentence splitting."""

from __future__ import annotations

import re

# Abbreviations (lowercase, with their dot) after which a sentence does not end.
# Dotted multi-letter forms (o.a., d.w.z., m.b.t., e.e.a.) and single-letter initials
# are recognised by pattern and need not be listed.
ABBREVIATIONS = frozenset(
    """
    bijv. bv. nr. nrs. art. artt. mr. mevr. dhr. drs. dr. ir. ing. prof. ca. enz. etc.
    zgn. zg. resp. incl. excl. jl. vgl. blz. pag. st. mln. mld. mrd. gem. evt. tel. fig.
    hfst. par. jr. sr. vs. ggz. max. min. lid. no. sept. okt. nov. dec. jan. feb. aug.
    """.split()
)
_DOTTED = re.compile(r"(?:[a-z]\.){2,}|[a-z]\.")
_BOUNDARY = re.compile(r"[.!?…]+[\"'’”)\]]*(?=\s+[\"'‘“(\[]?[A-Z0-9À-ÖØ-Þ•–-])")
# a numbered list item ("1. ", "2) ") starts a sentence of its own where a line starts with it,
# where it follows the semicolon that ends the item before, or, as the first item ("1."), the
# colon that opens the list ("het aantal: 3. Daarna …" is a number ending a sentence)
_ITEM_START = re.compile(r"(?:\n|(?<=;))[^\S\n]*\n?\s*(?=\(?\d{1,2}[.)]\s)|(?<=:)[^\S\n]*\n?\s*(?=\(?1[.)]\s)")


def split_sentences(text: str) -> list[str]:
    """Split Dutch text into sentences (whitespace inside the text is collapsed).

    A sentence ends at ``. ! ? …`` (plus closing quotes/brackets) followed by whitespace
    and a capital, digit, opening quote or bullet, except after known abbreviations
    ("o.a.", "bijv.", "nr.", "art.", "mr.", ...) and initials ("J."). Decimal and
    thousands separators ("3.3", "1.000") are never followed by whitespace, so they
    never split. A numbered list item is a sentence of its own where a line starts with it
    or a colon or semicolon comes before it ("Deze thema's zijn: 1. Investeren …; 2. …"),
    its number included.
    """
    return [s for block in _ITEM_START.split(text) for s in _split(" ".join(block.split()))]


def _split(text: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        if _ends_in_abbreviation(text, start, m):
            continue
        piece = text[start : m.end()].strip()
        if piece:
            sentences.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return sentences


def _ends_in_abbreviation(text: str, start: int, m: re.Match[str]) -> bool:
    if m.group().rstrip("\"'’”)]") != ".":
        return False
    word_start = max(text.rfind(" ", start, m.start()), text.rfind("(", start, m.start())) + 1
    token = text[word_start : m.start() + 1].lower().lstrip("\"'‘“")
    if not text[start:word_start].strip() and token[:-1].isdigit():
        return True  # list numbering: "3. Ontwikkelen van ..."
    return token in ABBREVIATIONS or bool(_DOTTED.fullmatch(token))
