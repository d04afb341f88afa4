"""Evidence ranking, context focusing and the quote fallback (deterministic, no model)."""

from __future__ import annotations

import pytest

from rag.evidence import (
    answers_kind,
    best_quote,
    expected_kind,
    focus,
    rank_evidence,
)
from rag.pipeline import is_rewrite
from rag.text.idf import bm25_idf, uniform_idf
from rag.types import Passage

P1 = Passage(
    marker=1,
    title="Jaarstukken 2024",
    section="Opvang",
    text=(
        "De gemeente werkt samen met maatschappelijke partners. "
        "In totaal vangen we circa 1.500 Oekraïense ontheemden op, waarvan circa 950 in de gemeentelijke opvang. "
        "De rest woont bij particulieren. "
        "Het college evalueert de aanpak in 2025."
    ),
)
P2 = Passage(
    marker=2,
    title="Begroting 2023",
    section="Jeugd",
    text="De eerste 1.000 dagen van een kind zijn cruciaal. Daarom investeren we in de kraamzorg.",
)


def test_best_sentence_covers_the_question_first():
    ev = rank_evidence("Hoeveel Oekraïense ontheemden zitten in de gemeentelijke opvang?", [P1, P2])
    assert ev[0].marker == 1 and "950" in ev[0].text
    assert ev[0].coverage > ev[1].coverage
    assert all(0.0 <= e.coverage <= 1.0 for e in ev)


def test_idf_weights_rare_words_over_common_ones():
    df = {"meen": 90, "kraamzorg": 1}  # Snowball stems: gemeente -> meen
    idf = bm25_idf(lambda t: df.get(t, 0), 100)
    assert idf("kraamzorg") > idf("meen") > 0
    # with IDF the sentence holding the rare word wins although both hold one question word
    q = "Investeert de gemeente in kraamzorg?"
    assert rank_evidence(q, [P1, P2], idf)[0].marker == 2


def test_focus_keeps_best_sentences_in_original_order():
    ev = rank_evidence("Hoeveel ontheemden zitten in de gemeentelijke opvang?", [P1])
    short = focus(P1, ev, max_sentences=2)
    assert "950" in short.text and len(short.text) < len(P1.text)
    assert short.marker == 1 and short.title == P1.title
    # original order is kept
    sentences = P1.text.split(". ")
    kept = [s for s in sentences if s.rstrip(".") in short.text]
    assert kept == [s for s in sentences if s in kept]


def test_focus_leaves_short_passages_whole():
    ev = rank_evidence("Welke periode is cruciaal?", [P2])
    assert focus(P2, ev, max_sentences=3).text == P2.text


def test_expected_kind_from_dutch_and_english_question_words():
    assert expected_kind("Hoeveel plekken zijn er?") == "number"
    assert expected_kind("Sinds wanneer is de gemeente verantwoordelijk?") == "date"
    assert expected_kind("Op welke datum nam de raad de motie aan?") == "date"
    assert expected_kind("How many suppliers are there?") == "number"
    assert expected_kind("Wat is het Overweeghuis?") is None


def test_when_asks_for_a_date_unless_it_asks_for_a_condition():
    for q in (
        "Wanneer is de nieuwe asielopvang aan de Eemsgolaan opengegaan?",
        "Wanneer lopen de huidige overeenkomsten voor Wmo-begeleiding af?",
        "Tot wanneer loopt de pilot?",
        "When did the council adopt the motion?",
    ):
        assert expected_kind(q) == "date", q
    for q in (
        "Wanneer moet ik toeristenbelasting betalen?",
        "Wanneer wordt mijn paspoort ongeldig?",
        "Wanneer heb ik een Verklaring bezit Nederlanderschap nodig?",
        "Wanneer kom ik in aanmerking voor kwijtschelding?",
        "Wanneer geldt de Omgevingswet?",
        "When do I need a permit?",
    ):
        assert expected_kind(q) is None, q
    assert expected_kind("Sinds wanneer mag ik het Fries gebruiken?") == "date"  # explicit: always a date


def test_answers_kind():
    assert answers_kind("Er zijn 60 plekken.", "number")
    assert answers_kind("Er zijn twee leveranciers.", "number")
    assert not answers_kind("Er zijn plekken bij gekomen.", "number")
    assert answers_kind("Dat gebeurde in mei.", "date")
    assert not answers_kind("Dat gebeurde vorig jaar.", "date")
    # a year that names a document is no moment ("Sinds wanneer …?" -> a sentence about a budget)
    assert not answers_kind("In de begroting 2022 zijn minder programma's opgenomen.", "date")
    assert not answers_kind("De programmabegroting 2020-2023 noemt het.", "date")
    assert answers_kind("Sinds 1 januari 2015, volgens de begroting 2016.", "date")
    assert answers_kind("Dat is in 2022 in de begroting opgenomen.", "date")
    assert answers_kind("Wat dan ook.", None)


def test_a_sentence_that_uses_a_defined_abbreviation_covers_its_long_form():
    """'De OJG is een schakel …' answers a question about the Ondersteuner Jeugd en Gezin: the
    passages define OJG; the document the question names ('begroting 2020') is no word to cover."""
    p = Passage(
        1,
        "De inzet van de Ondersteuner Jeugd en Gezin (OJG) is hierin een belangrijke ontwikkeling. De OJG is "
        "een schakel tussen de huisarts en de WIJ-teams. De OJG wordt in 2020 versneld uitgebreid.",
        "Jeugd",
    )
    q = "Wat is de rol van de Ondersteuner Jeugd en Gezin in de begroting 2020?"
    ev = {e.position: e.coverage for e in rank_evidence(q, [p])}
    assert ev[1] == ev[2] > 0  # both use OJG; 2020 no longer favours the last one
    got = focus(p, rank_evidence(q, [p]), max_sentences=2)
    assert "schakel" in got.text
    # the other way round: a question with the abbreviation meets a sentence with the long form
    other = Passage(2, "De Ondersteuner Jeugd en Gezin werkt in de wijk. De gemeente betaalt de OJG niet.", "Jeugd")
    both = Passage(3, "Ook de Ondersteuner Jeugd en Gezin (OJG) doet mee.", "Jeugd")
    ranked = rank_evidence("Waar werkt de OJG?", [other, both])
    assert (ranked[0].marker, ranked[0].position) == (2, 0)
    assert ranked[0].coverage == 2 * ranked[1].coverage  # werkt + OJG; without the alias only werkt


def test_a_passage_that_covers_nothing_keeps_its_first_sentence_only():
    """Not the list that sentence opens: an unrelated passage stays short, not a distraction."""
    listing = Passage(3, "Deze thema's zijn: 1. Investeren in preventie; 2. Versterken van het basisteam.", "Jeugd")
    q = "Hoeveel maatregelen bevat het alcoholconvenant?"
    got = focus(listing, rank_evidence(q, [listing]), max_sentences=1, unit_chars=1500)
    assert got.text == "Deze thema's zijn:"
    # a list that does cover the question keeps its items
    q2 = "Welke thema's zijn er?"
    whole = focus(listing, rank_evidence(q2, [listing]), max_sentences=1, unit_chars=1500)
    assert whole.text == listing.text


def test_best_quote_needs_coverage_and_the_asked_kind():
    q = "Hoeveel Oekraïense ontheemden zitten in de gemeentelijke opvang?"
    ev = rank_evidence(q, [P1, P2], uniform_idf)
    quote = best_quote(q, ev, min_coverage=0.5, kind="number")
    assert quote is not None and "950" in quote.text
    assert best_quote(q, ev, min_coverage=0.99, kind="number") is None
    # a question the passages do not cover gets no quote
    q2 = "Wat kost een parkeervergunning in de binnenstad?"
    assert best_quote(q2, rank_evidence(q2, [P1, P2]), min_coverage=0.5) is None


def test_a_rhetorical_question_is_quoted_with_the_sentence_after_it():
    faq = Passage(
        1,
        "Bent u het niet eens met de gemeentelijke belastingaanslag? Dan kunt u bezwaar maken bij "
        "uw gemeente. Dat doet u binnen 6 weken.",
        "Bezwaar tegen de belastingaanslag",
    )
    q = "Kan ik bezwaar maken tegen de gemeentelijke belastingaanslag?"
    ev = rank_evidence(q, [faq])
    assert ev[0].text.endswith("?")  # the best-covering sentence is the rhetorical question
    quote = best_quote(q, ev, min_coverage=0.3, passages=[faq])
    assert quote is not None
    assert (
        quote.text
        == "Bent u het niet eens met de gemeentelijke belastingaanslag? Dan kunt u bezwaar maken bij uw gemeente."
    )
    # without its passage the question cannot be completed, so it is not quoted alone
    alone = best_quote(q, ev, min_coverage=0.3)
    assert alone is None or not alone.text.endswith("?")
    last = Passage(2, "Dan kunt u bezwaar maken. Bent u het niet eens met de belastingaanslag?", "Bezwaar")
    got = best_quote(q, rank_evidence(q, [last]), min_coverage=0.3, passages=[last])
    assert got is None or not got.text.endswith("?")


def test_is_rewrite_rejects_echo_statement_and_essay():
    assert is_rewrite("Wanneer opent de nachtopvang aan de Hereweg?", "En wanneer gaat die open?")
    assert not is_rewrite("En wanneer gaat die open?", "En wanneer gaat die open?")
    assert not is_rewrite("De nachtopvang opent op 3 maart.", "En wanneer gaat die open?")
    assert not is_rewrite("Waarom? " + "x" * 500, "En wanneer gaat die open?")
    assert not is_rewrite("", "En wanneer gaat die open?")


def test_money_questions_need_an_amount():
    assert expected_kind("Hoeveel geld is er begroot voor de winteropvang?") == "amount"
    assert expected_kind("Wat kost een parkeervergunning?") == "amount"
    assert expected_kind("Hoeveel plekken zijn er?") == "number"
    assert answers_kind("Er is € 3,2 miljoen gereserveerd.", "amount")
    assert answers_kind("Het kost 105 euro per maand.", "amount")
    assert not answers_kind("Na drie jaar is er een locatie.", "amount")


def test_budget_as_a_subject_is_not_an_amount_question():
    assert expected_kind("What does the 2016 budget say about the WIJ-teams?") is None
    assert expected_kind("Wat staat er in het budget over jeugdhulp?") is None
    assert expected_kind("Wat is het totale budget van programma 4?") == "amount"
    assert expected_kind("What is the hourly rate for household help?") == "amount"
    assert expected_kind("Hoeveel eigen bijdrage betalen vluchtelingen?") == "amount"


def test_evidence_ranking_is_the_same_in_every_process():
    """Coverage is a float sum over a set of words; summed in set order it differed in the last
    bits between processes (hash seeds), which could reorder sentences of equal coverage."""
    import os
    import subprocess
    import sys

    script = (
        "from rag.evidence import rank_evidence\n"
        "from rag.types import Passage\n"
        "idf = {'nachtopvang': 0.1, 'hereweg': 0.7, 'plek': 0.2, 'extra': 0.3, 'krijgt': 0.6, 'hoeveel': 0.11,"
        " 'groning': 0.13}\n"
        "ps = [Passage(1, 'De Hereweg krijgt plekken in Groningen. De nachtopvang krijgt extra plekken. Extra Hereweg.')]\n"
        "q = 'Hoeveel extra plekken krijgt de nachtopvang aan de Hereweg in Groningen?'\n"
        "print([(e.position, e.coverage.hex()) for e in rank_evidence(q, ps, lambda t: idf.get(t, 0.45))])\n"
    )
    outs = set()
    for seed in range(8):
        env = {**os.environ, "PYTHONHASHSEED": str(seed)}
        outs.add(
            subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
        )
    assert len(outs) == 1, outs


# -- ranking by meaning (an English question over Dutch passages) ------------------------------


def test_an_english_question_brings_the_answering_sentence_into_view():
    from rag.evidence import rank_by_meaning, weak_words

    passage = Passage(
        1,
        "Het afgelopen jaar zijn we met inwoners in gesprek gegaan. Er komen richtlijnen vanuit het Rijk. "
        "Voor asielzoekers werken we toe naar drie structurele opvanglocaties met in totaal 960 plekken.",
        "Jaarstukken 2024",
        "Nieuwkomers",
    )
    question = "How many places will the structural reception locations have?"
    evidence = rank_evidence(question, [passage])
    assert weak_words(evidence, 0.01)  # no Dutch word of the passages is in the question
    assert "960" not in focus(passage, evidence, max_sentences=1).text  # the words alone miss it

    def score(q, sentences):  # a stand-in for the embedder: the sentence about places is nearest
        return [0.7 if "plekken" in s else 0.2 for s in sentences]

    ranked = rank_by_meaning(question, evidence, score)
    assert ranked[0].similarity == 0.7 and ranked[0].coverage == 0.0  # coverage stays lexical
    assert "960 plekken" in focus(passage, ranked, max_sentences=1).text


def test_a_dutch_question_whose_words_no_sentence_covers_is_focused_by_meaning():
    """A compound the passage writes apart ("jeugdambitie" / "de ambitie … kinderen") covers
    nothing: each passage would keep its first sentence, whatever it says. Ranked by meaning
    (one embedding call, only for such questions) the answering sentence is kept."""
    from rag.evidence import weak_words
    from rag.pipeline import build_context, focus_context
    from rag.prompts import PromptSet
    from rag.types import Hit

    text = (
        "Het fundament voor onze levensloop wordt gelegd tijdens de jeugd. "
        "De stad heeft de ambitie dat kinderen tot 23 jaar gezond opgroeien. "
        "Dat vraagt samenwerking met scholen en sportclubs."
    )
    hit = Hit(
        chunk_id=1,
        doc_id="docs/begroting",
        title="Begroting",
        source="b.md",
        text=text,
        heading_path=[],
        page=None,
        score=0.9,
    )
    question = "Tot welke leeftijd richt de jeugdambitie zich?"
    ctx = build_context(question, [hit], PromptSet(None), lambda t: len(t) // 4, 900)
    evidence = rank_evidence(question, ctx.passages)
    assert max(e.coverage for e in evidence) == 0.0
    assert weak_words(evidence, 0.0) and not weak_words(
        rank_evidence("Wat heeft de stad als ambitie?", ctx.passages), 0.0
    )

    def meaning(q, sentences):  # a stand-in for the embedder: the sentence about ages is nearest
        return [0.8 if "23 jaar" in s else 0.3 for s in sentences]

    shown = focus_context(ctx, PromptSet(None), uniform_idf, 1, 0, meaning, 0.0).messages[-1]["content"]
    assert "23 jaar" in shown and "fundament" not in shown
    # without meaning the words alone keep the first sentence
    plain = focus_context(ctx, PromptSet(None), uniform_idf, 1, 0, None, 0.0).messages[-1]["content"]
    assert "fundament" in plain and "23 jaar" not in plain


def test_quotes_are_chosen_by_coverage_whatever_the_order():
    from dataclasses import replace

    from rag.evidence import best_quote

    passage = Passage(1, "De opvang aan de Sontweg is permanent. Het weer was goed in de zomer van dat jaar.", "T", "")
    question = "Welke opvang is permanent?"
    evidence = rank_evidence(question, [passage])
    # ranked by meaning, a sentence of less coverage may come first
    by_meaning = [replace(e, similarity=0.5) for e in reversed(evidence)]
    assert by_meaning[0].text.startswith("Het weer")
    assert best_quote(question, by_meaning, 0.3).text.startswith("De opvang aan de Sontweg")


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Wanneer is de opvang aan de Eemsgolaan opengegaan?", "date"),
        ("Wanneer lopen de overeenkomsten af?", "date"),
        # a modal verb: the question asks for the conditions (legal and policy Dutch)
        ("Wanneer kan het college een vergunning weigeren?", None),
        ("Wanneer moet een aanvraag worden ingediend?", None),
        ("When can the council refuse a permit?", None),
    ],
)
def test_when_asks_for_a_date_or_for_conditions(question, kind):
    assert expected_kind(question) == kind


def test_a_recurring_moment_answers_when():
    assert answers_kind("Het spreekuur is op de eerste dinsdag van de maand [1].", "date")
    assert answers_kind("De raad vergadert maandelijks [1].", "date")
    assert not answers_kind("Het spreekuur is in het wijkcentrum.", "date")  # (markers are stripped first)


def test_spending_asks_for_money():
    assert expected_kind("Hoeveel heeft de gemeente in 2024 uitgegeven aan de winteropvang?") == "amount"
    assert expected_kind("How much did the council spend on the shelter?") == "amount"
    assert expected_kind("Hoeveel plekken heeft de opvang?") == "number"


def test_a_year_is_no_count():
    assert not answers_kind("In 2024 zijn de voorbereidingen getroffen voor de opvanglocatie.", "number")
    assert not answers_kind("Het programma loopt van 2023-2026.", "number")
    assert answers_kind("In 2024 kwamen er 300 professionals.", "number")
    assert answers_kind("De locatie heeft 2.000 plekken.", "number")
    assert answers_kind("In 2024 is gewerkt aan twee locaties.", "number")
    assert answers_kind("Sinds 2015.", "date")


def test_an_answer_that_says_what_the_value_depends_on_answers_the_kind():
    # the FAQ's own answer to "Hoe hoog is de maximale EPV van mijn huurwoning?" has no number
    epv = "Hoe hoog de EPV is die u aan uw verhuurder betaalt, hangt af van de isolatie van uw woning."
    assert answers_kind(epv, "number") and answers_kind(epv, "amount")
    assert answers_kind("Dat hangt ervan af of u een vergunning heeft.", "date")
    assert answers_kind("Het tarief verschilt per gemeente.", "amount")
    assert answers_kind("De hoogte wordt bepaald door uw inkomen.", "amount")
    assert answers_kind("It depends on your income.", "amount")
    # ordinary sentences that merely resemble it do not count
    assert not answers_kind("Veel gezinnen zijn afhankelijk van de voedselbank.", "number")
    assert not answers_kind("De gemeente hangt een vlag op.", "number")
    assert not answers_kind("Er is een verschil tussen de wijken.", "number")
    assert not answers_kind("De opvang wordt gerund door Humanitas.", "date")


def test_a_hyphenated_compound_meets_the_same_words_written_apart():
    from rag.lexical import BM25Index
    from rag.text.tokens import tokenize

    asked = "Wanneer lopen de huidige overeenkomsten voor Wmo-begeleiding af?"
    written = "Vooruitlopend op de afloop van de overeenkomsten m.b.t. de Wmo begeleiding per 1 januari 2027."
    other = "De overeenkomsten voor de huishoudelijke hulp lopen door tot 2026."
    assert {"wmo", "beleid"} <= set(tokenize(asked)) & set(tokenize(written))
    assert tokenize("e-mail")[0] == "e-mail"  # the compound itself still counts, one-letter parts do not
    assert tokenize("e-mail") == ["e-mail", "mail"]
    # the sentence that writes it apart now outranks one that only shares the common words
    (best, *_) = rank_evidence(asked, [Passage(1, f"{other} {written}", "Jaarstukken 2024", "Wmo")])
    assert best.text == written
    bm25 = BM25Index.build([1, 2], [other, written])
    assert bm25.scores("Wmo-begeleiding").argmax() == 1


def test_a_typographic_apostrophe_is_a_plain_one():
    """Documents write "thema’s" (word processors), people type "thema's": the same word, for
    BM25 and for the sentences that answer."""
    from rag.lexical import BM25Index
    from rag.text.tokens import tokenize

    assert tokenize("acht thema’s") == tokenize("acht thema's") == ["acht", "thema"]
    assert tokenize("AMV’s en auto’s") == tokenize("AMV's en auto's")
    written = "In het schema zijn acht thema’s geordend."
    other = "Het schema is in 2025 vastgesteld."
    (best, *_) = rank_evidence("Hoeveel thema's zijn er?", [Passage(1, f"{other} {written}", "Jeugd")])
    assert best.text == written and best.coverage > 0
    assert BM25Index.build([1, 2], [other, written]).scores("thema's").argmax() == 1
