"""Whole units (rag/units.py): lists and explanations are not cut where a chunk ends."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.chunking import chunk_document
from rag.evidence import best_quote, focus, rank_evidence
from rag.ingest import parse_file
from rag.pipeline import Pipeline
from rag.retrieve import Retriever
from rag.text.sentences import split_sentences
from rag.types import Chunk, Hit, Passage
from rag.units import continuation, continues, expand_hits
from tests.conftest import ScriptedLLM, ingest_docs

REGELINGEN = Path(__file__).resolve().parent / "fixtures" / "regelingen"
VERORDENING = REGELINGEN / "verordening-maatschappelijke-ondersteuning-2025.md"
GROUNDS = [f"{letter}. " for letter in "abcdefghijk"]


def _hits_of(path: Path) -> tuple[list[Hit], list]:
    chunks = chunk_document(parse_file(path, REGELINGEN))
    hits = [
        Hit(
            chunk_id=c.position,
            doc_id="v",
            title="Verordening",
            source=str(path),
            text=c.text,
            heading_path=c.heading_path,
            page=None,
            score=1.0,
            position=c.position,
        )
        for c in chunks
    ]
    return hits, chunks


def _neighbour(chunks):
    return lambda hit, offset: chunks[hit.position + offset] if 0 <= hit.position + offset < len(chunks) else None


def test_the_article_is_longer_than_one_chunk():
    hits, _ = _hits_of(VERORDENING)
    article = [h for h in hits if h.heading_path == ["Artikel 7. Weigeringsgronden"]]
    assert len(article) == 2  # the enumeration is cut: the fixture tests what it should
    assert not all(g in article[0].text for g in GROUNDS)


@pytest.mark.parametrize("which", [0, 1])
def test_either_half_of_a_cut_enumeration_becomes_the_whole_article(which):
    hits, chunks = _hits_of(VERORDENING)
    half = [h for h in hits if h.heading_path == ["Artikel 7. Weigeringsgronden"]][which]
    whole = expand_hits([half], _neighbour(chunks), 1500)[0]
    assert whole.text.startswith("Het college kan een aanvraag")
    assert all(f"\n{g}" in whole.text for g in GROUNDS), whole.text
    assert whole.text.count("e. de cliënt niet meewerkt") == 1  # the chunks' overlap is not doubled
    assert whole.text.rstrip().endswith("kan worden beschouwd.")


def test_a_short_introduction_repeated_by_the_next_chunk_is_not_doubled():
    """The chunker's overlap carries the last line ("Deze thema's zijn:", shorter than the
    usual overlap match) into the next chunk; the completed list has it once."""
    head = ["Jeugd"]
    first = Chunk(doc_id="d", text="Er zijn acht thema's.\nDeze thema's zijn:", heading_path=head, position=0)
    second = Chunk(doc_id="d", text="Deze thema's zijn:\n1. Preventie;\n2. Basisteam.", heading_path=head, position=1)
    chunks = [first, second]
    hit = Hit(
        chunk_id=0,
        doc_id="d",
        title="T",
        source="s",
        text=first.text,
        heading_path=head,
        page=None,
        score=1.0,
        position=0,
    )
    got = expand_hits([hit], _neighbour(chunks), 1500)[0].text
    assert got == "Er zijn acht thema's.\nDeze thema's zijn:\n1. Preventie;\n2. Basisteam."


def test_expansion_stays_in_its_section_and_within_the_limit():
    hits, chunks = _hits_of(VERORDENING)
    first = [h for h in hits if h.heading_path == ["Artikel 7. Weigeringsgronden"]][0]
    assert expand_hits([first], _neighbour(chunks), 700)[0].text == first.text  # would not fit: unchanged
    whole = [h for h in hits if h.heading_path == ["Artikel 8. Persoonsgebonden budget"]][0]
    assert expand_hits([whole], _neighbour(chunks), 1500)[0] is whole  # a closed unit is left as it is


def test_a_pipeline_answer_about_the_grounds_sees_all_of_them(tmp_path, settings, hash_embedder):
    ingest_docs(tmp_path / "docs", {VERORDENING.name: VERORDENING.read_text(encoding="utf-8")}, settings, hash_embedder)
    settings.refusal_min_score = -1.0
    llm = ScriptedLLM("Het college kan weigeren als de cliënt niet meewerkt [1].")
    p = Pipeline(settings, Retriever(settings, hash_embedder), llm)
    p.ask("Op welke gronden kan het college een aanvraag om een maatwerkvoorziening weigeren?")
    sent = llm.calls[0][-1]["content"]
    assert all(f"{g}de " in sent or f"{g}het " in sent for g in GROUNDS), sent
    settings.unit_max_chars = 0  # switched off: the chunk as it was cut
    llm.calls.clear()
    p.ask("Op welke gronden kan het college een aanvraag om een maatwerkvoorziening weigeren?")
    assert not all(f"{g}de " in llm.calls[0][-1]["content"] for g in GROUNDS)


# -- sentences that belong together ----------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "sentence", "together"),
    [
        ("Deze thema's zijn:", "- Jeugd en onderwijs.", True),
        ("- Jeugd en onderwijs.", "- Zorg en veiligheid.", True),
        ("Er is aandacht voor de zelfmelders.", "Hiermee wordt bedoeld: inwoners die een oproep afwachten.", True),
        ("De OJG is een schakel.", "Dit betekent dat de huisarts minder doorverwijst.", True),
        ("De OJG is een schakel.", "Dit zien we terug in de cijfers.", False),
        ("De opvang gaat open.", "- Een losse opsomming zonder inleiding.", False),
        ("De opvang gaat open.", "De gemeente betaalt.", False),
    ],
)
def test_continues(previous, sentence, together):
    assert continues(previous, sentence) is together


def test_continuation_stops_at_the_limit_and_at_furniture():
    sentences = ["Deze thema's zijn:", "- Jeugd.", "- Zorg.", "- Wonen.", "De gemeente betaalt."]
    assert continuation(sentences, 0, 900) == [1, 2, 3]
    assert continuation(sentences, 0, 30) == [1]
    head = "Telefoon | 42 18 | Bijlage(n) | 1 | Ons kenmerk | 24622-2022"
    assert continuation(["Het volgende geldt:", head], 0, 900) == []


ZELFMELDERS = Passage(
    marker=1,
    title="Jaarstukken 2024",
    section="Zorg en veiligheid",
    text=(
        "In 2024 werkten we aan de aanpak van mensenhandel. Op het gebied van nazorg detentie is in het project "
        "Koers en Kansen aandacht voor de zelfmelders. Hiermee wordt bedoeld: inwoners die door de rechter een "
        "vrijheidsbeperkende straf opgelegd hebben gekregen en in vrijheid een oproep afwachten. Het Meetingpoint "
        "wordt steeds beter gevonden."
    ),
)


def test_a_focused_passage_keeps_the_explanation_of_its_best_sentence():
    question = "Wie worden bedoeld met de zelfmelders bij Koers en Kansen?"
    evidence = rank_evidence(question, [ZELFMELDERS])
    assert "vrijheidsbeperkende straf" not in focus(ZELFMELDERS, evidence, 1).text
    assert "vrijheidsbeperkende straf" in focus(ZELFMELDERS, evidence, 1, 900).text


def test_a_quote_keeps_the_explanation_of_its_sentence():
    question = "Wie worden bedoeld met de zelfmelders bij Koers en Kansen?"
    evidence = rank_evidence(question, [ZELFMELDERS])
    quoted = best_quote(question, evidence, 0.3, None, [ZELFMELDERS], 900)
    assert quoted is not None and "vrijheidsbeperkende straf" in quoted.text
    assert "Meetingpoint" not in quoted.text
    assert len(split_sentences(quoted.text)) == 2


def test_a_consequence_keeps_its_reason():
    from rag.evidence import best_quote, focus, rank_evidence
    from rag.types import Passage
    from rag.units import premise

    text = (
        "Mensenhandel draait om uitbuiting. Mensenhandel wordt vaak gepleegd in criminele samenwerkingsverbanden. "
        "Daarom is het een vorm van ondermijnende criminaliteit. Gemeenten zijn verantwoordelijk voor preventie."
    )
    passage = Passage(1, text, "Begroting 2023", "Zorg en veiligheid")
    question = "Waarom is mensenhandel een vorm van ondermijnende criminaliteit?"
    evidence = rank_evidence(question, [passage])
    shown = focus(passage, evidence, max_sentences=1, unit_chars=1500).text
    assert shown.startswith("Mensenhandel wordt vaak gepleegd in criminele samenwerkingsverbanden. Daarom")
    quote = best_quote(question, evidence, 0.3, passages=[passage], unit_chars=1500)
    assert quote is not None and quote.text.startswith("Mensenhandel wordt vaak gepleegd")
    assert premise(["Het regent.", "De zon schijnt."], 1) is None
