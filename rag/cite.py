"""What a citation tells its reader beyond the passage: the document's label, the sentence
the answer rests on, and a link into the public page where the document has one.

* ``document_label``: "Begroting 2023", "Jaarstukken 2024", "Raadsbrief 26-1-2022" — a
  reader sees at once what kind of document it is and whether it is current;
* ``quote``: the sentence of the cited passage that shares most content words with the
  answer sentences carrying that citation's marker (the viewer highlights it more strongly
  than the rest of the passage), with its offsets in the passage;
* ``public_url``: for documents whose source is a web page (FAQ pages, council website
  pages), that page with a text fragment (``#:~:text=start,end``) that makes a browser
  scroll to and highlight the passage.

The viewer link (``url``) needs the service's signing key and public address; the service
adds it (service/links.py). Everything here is deterministic and needs no model.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote as url_quote

from .schema import Citation
from .spans import find_span
from .text.markers import markers_in, strip_markers
from .text.sentences import split_sentences
from .text.tokens import tokenize

# document types whose date says more than their year (a letter of 26 January 2022)
_DATED_TYPES = {"raadsbrief", "motie", "brief", "collegebrief", "raadsinformatiebrief", "beleidsnota"}


def document_label(doc_type: str | None, year: int | None, date: str | None) -> str | None:
    """ "Begroting 2023", "Raadsbrief 26-1-2022"; None when the type is unknown."""
    if not doc_type:
        return None
    kind = doc_type[:1].upper() + doc_type[1:]
    if date and (doc_type in _DATED_TYPES or not year):
        y, m, d = date[:10].split("-")
        return f"{kind} {int(d)}-{int(m)}-{y}"
    return f"{kind} {year}" if year else kind


def sentence_span(passage: str, sentence: str) -> tuple[int, int] | None:
    """Offsets of ``sentence`` in ``passage`` (verbatim, else word for word)."""
    return find_span(passage, sentence)


def best_sentence(passage: str, claims: Sequence[str]) -> str | None:
    """The passage sentence sharing most content words with ``claims`` (None: nothing shared)."""
    wanted: set[str] = set()
    for claim in claims:
        wanted |= set(tokenize(claim))
    best: tuple[int, str] | None = None
    for sentence in split_sentences(passage):
        shared = len(set(tokenize(sentence)) & wanted)
        if shared and (best is None or shared > best[0]):
            best = (shared, sentence)
    return best[1] if best else None


def text_fragment(text: str, max_words: int = 6) -> str:
    """A text directive for ``text``: ``start,end`` words when it is long, else all of it."""
    words = text.split()
    if len(words) <= 2 * max_words:
        return url_quote(" ".join(words), safe="")
    start = url_quote(" ".join(words[:max_words]), safe="")
    end = url_quote(" ".join(words[-max_words:]), safe="")
    return f"{start},{end}"


def public_url(source: str, text: str) -> str | None:
    """The source page with a text fragment pointing at ``text``; None for a non-web source."""
    if not source.startswith(("https://", "http://")) or not text.strip():
        return None
    base = source.split("#", 1)[0]
    return f"{base}#:~:text={text_fragment(text)}"


def annotate(answer_text: str, citations: Sequence[Citation], refused: bool = False) -> None:
    """Set ``label``, ``quote`` (+ offsets) and ``public_url`` of ``citations`` in place."""
    claims: dict[int, list[str]] = {}
    if not refused:
        for sentence in split_sentences(answer_text):
            for marker in markers_in(sentence):
                claims.setdefault(marker, []).append(strip_markers(sentence))
    for c in citations:
        c.label = document_label(c.doc_type, c.year, c.date)
        said = claims.get(c.marker)
        c.quote = best_sentence(c.snippet, said) if said else None
        span = sentence_span(c.snippet, c.quote) if c.quote else None
        c.quote_start, c.quote_end = span if span else (None, None)
        c.public_url = public_url(c.source, c.quote or c.snippet)
