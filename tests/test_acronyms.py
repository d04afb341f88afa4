"""Abbreviations and their definitions (rag/text/acronyms.py) and the expansion check."""

from __future__ import annotations

import pytest

from rag.checks import CHECKS, CheckedQuestion, Draft, Keep, RefusalReason, Refuse, Replace
from rag.prompts import PromptSet
from rag.settings import Settings
from rag.text.acronyms import asked_abbreviation, definitions, find_expansion, states_expansion
from rag.types import Passage

GON = (
    "Deze beweging is in gang gezet door een opdracht aan Stichting WIJ Groningen, door het in werking "
    "stellen van het GebiedsOndersteunend Netwerk (GON) en een verdere decentralisering van Beschermd Wonen."
)


@pytest.mark.parametrize(
    ("short", "text", "long"),
    [
        ("GON", GON, "GebiedsOndersteunend Netwerk"),
        (
            "RIGG",
            "met de Regionale Inkooporganisatie Groninger Gemeenten (RIGG) aan",
            "Regionale Inkooporganisatie Groninger Gemeenten",
        ),
        ("SES", "met hogere of lagere sociaaleconomische status (SES) zijn", "sociaaleconomische status"),
        ("GOTU", "er is het programma GOTU (Geen Onderwijs Toch Uitdaging), waarmee", "Geen Onderwijs Toch Uitdaging"),
        ("OJG", "door de Ondersteuner Jeugd en Gezin (OJG) (2).", "Ondersteuner Jeugd en Gezin"),
        ("AWBZ", "onder de Algemene Wet Bijzondere Ziektekosten (AWBZ) en de", "Algemene Wet Bijzondere Ziektekosten"),
    ],
)
def test_definitions_are_found_in_either_order(short, text, long):
    assert find_expansion(short, text) == long


@pytest.mark.parametrize(
    ("short", "text"),
    [
        ("ISK", "een onderwijsplek op de ISK (voortgezet onderwijs) is er"),  # a gloss, not the long form
        ("DUMO", "gefinancierd vanuit het Rijk via de DUMO en DUVO."),  # used, never defined
        ("SPUK", "Er is een Rijksuitkering (SPUK) gehonoreerd"),  # one word cannot spell four letters
        ("GON", "Stichting WIJ Groningen, het GON en de gebiedsteams stemmen af."),
    ],
)
def test_no_definition_is_made_up(short, text):
    assert find_expansion(short, text) is None


def test_every_definition_in_a_text():
    text = (
        "De inzet van de Ondersteuner Jeugd en Gezin (OJG) is belangrijk. De OJG is een schakel. GOTU (Geen "
        "Onderwijs Toch Uitdaging) helpt. Een plek op de ISK (voortgezet onderwijs). Zie bijlage (2) en (a). "
        "Via de DUMO en de Rijksuitkering (SPUK)."
    )
    assert definitions(text) == {"OJG": "Ondersteuner Jeugd en Gezin", "GOTU": "Geen Onderwijs Toch Uitdaging"}
    assert definitions("Geen afkortingen hier.") == {}


@pytest.mark.parametrize(
    ("q", "short"),
    [
        ("Waar staat GON voor?", "GON"),
        ("Waar staat de afkorting RIGG voor?", "RIGG"),
        ("Wat betekent IZA?", "IZA"),
        ("Waar staat LVV voor en sinds wanneer loopt die pilot?", "LVV"),
        ("What does SES stand for in the 2023 budget?", "SES"),
        ("Wat is de volledige naam van de Rijksuitkering SPUK?", "SPUK"),
        # ordinary questions that merely look like it
        ("Waar staat de gemeente voor?", None),
        ("Waar staan de WIJ-teams voor?", None),
        ("Wat betekent de Wmo voor mantelzorgers?", None),
        ("Wat betekent dat voor de WMO?", None),
        ("Wat is het GON?", None),
        ("Wat betekent JIM voor jongeren?", None),
    ],
)
def test_the_question_for_an_expansion(q, short):
    assert asked_abbreviation(q) == short


PROMPTS = PromptSet()
PASSAGES = [
    Passage(1, "We blijven in 2020 met het GON inzetten op substitutie van zware zorg.", "Begroting 2020", "GON"),
    Passage(2, GON, "Begroting 2020", "Relevante ontwikkelingen"),
]


def _q(text: str) -> CheckedQuestion:
    return CheckedQuestion(text, PASSAGES, PROMPTS.refusal, PROMPTS.system())


def test_a_vacuous_answer_gets_the_long_form_first():
    check = CHECKS["expansion"](Settings())
    verdict = check.run(Draft("Het GON is een netwerk [1].", markers=[1]), _q("Waar staat GON voor?"))
    assert isinstance(verdict, Replace)
    assert verdict.text.startswith("GON staat voor GebiedsOndersteunend Netwerk [1].")
    assert verdict.markers == [2, 1]  # the defining passage first, the model's own citation kept
    assert "Het GON is een netwerk [2]." in verdict.text


def test_an_answer_with_the_long_form_is_kept():
    check = CHECKS["expansion"](Settings())
    draft = Draft("GON is het GebiedsOndersteunend Netwerk [1].", markers=[2])
    assert check.run(draft, _q("Waar staat GON voor?")) == Keep()
    assert check.run(Draft("Het GON zet in op substitutie [1]."), _q("Wat doet het GON?")) == Keep()


def test_a_long_form_no_passage_defines_is_refused():
    check = CHECKS["expansion"](Settings())
    q = CheckedQuestion("Waar staat DUMO voor?", PASSAGES, PROMPTS.refusal, PROMPTS.system())
    invented = Draft("DUMO staat voor Decentralisatie-uitkering Maatschappelijke Opvang [1].")
    assert check.run(invented, q) == Refuse(RefusalReason.UNSUPPORTED, quotable=False)
    assert states_expansion("DUMO", invented.text)
    assert check.run(Draft("De DUMO financiert de opvang [1]."), q) == Keep()


# -- two-part questions (rag/evidence.py: question_parts, part_evidence; rag/checks.py: parts) ----

from rag.evidence import part_evidence, part_kind, question_parts  # noqa: E402

EEMS = Passage(
    1,
    "De uitbreiding aan de Sint Petersburgweg is in gang gezet. De nieuwe locatie aan de Eemsgolaan is in "
    "december 2024 opengegaan voor de eerste 150 asielzoekers. De overige 150 plekken volgen begin januari 2025.",
    "Jaarstukken 2024",
    "Nieuwkomers",
)
JIM = Passage(
    2,
    "Jouw Ingebrachte Mentor (JIM) werkt met vertrouwenspersonen uit het netwerk van jongeren. "
    "De WIJ-medewerkers zijn getraind in deze methodiek.",
    "Raadsbrief 2022",
    "",
)


@pytest.mark.parametrize(
    ("q", "parts"),
    [
        (
            "Hoeveel plekken heeft de Eemsgolaan en wanneer volgen de overige plekken?",
            ["Hoeveel plekken heeft de Eemsgolaan", "wanneer volgen de overige plekken?"],
        ),
        (
            "Met hoeveel leveranciers is een contract gesloten, en waarom?",
            ["Met hoeveel leveranciers is een contract gesloten", "waarom?"],
        ),
        ("Wat is JIM en wie zijn in die methodiek getraind?", ["Wat is JIM", "wie zijn in die methodiek getraind?"]),
        # one question with an "en" inside
        (
            "Wie is de wethouder van zorg en welzijn in Groningen?",
            ["Wie is de wethouder van zorg en welzijn in Groningen?"],
        ),
        (
            "Wat zijn de openingstijden van de opvang voor dak- en thuislozen?",
            ["Wat zijn de openingstijden van de opvang voor dak- en thuislozen?"],
        ),
    ],
)
def test_question_parts(q, parts):
    assert question_parts(q) == parts


def test_part_kinds():
    assert part_kind("wanneer volgen de overige plekken?") == "date"
    assert part_kind("hoeveel plekken heeft die?") == "number"
    assert part_kind("wie zijn in die methodiek getraind?") == "who"
    assert part_kind("bij welke organisatie hoort het?") == "who"
    assert part_kind("waarom?") is None


def test_each_part_gets_its_own_sentence():
    q = "Hoeveel asielzoekers kunnen sinds december 2024 terecht aan de Eemsgolaan en wanneer volgen de overige plekken?"
    found = dict(part_evidence(q, [EEMS]))
    assert "150 asielzoekers" in found["Hoeveel asielzoekers kunnen sinds december 2024 terecht aan de Eemsgolaan"].text
    assert "januari 2025" in found["wanneer volgen de overige plekken?"].text
    assert part_evidence("Hoeveel plekken heeft de Eemsgolaan?", [EEMS]) == []


def test_a_missing_part_is_added_from_its_sentence():
    check = CHECKS["parts"](Settings())
    q = CheckedQuestion(
        "Hoeveel asielzoekers kunnen sinds december 2024 terecht aan de Eemsgolaan en wanneer volgen de overige plekken?",
        [EEMS],
        PROMPTS.refusal,
        PROMPTS.system(),
    )
    verdict = check.run(Draft("Aan de Eemsgolaan kunnen 150 asielzoekers terecht [1].", markers=[1]), q)
    assert isinstance(verdict, Replace)
    assert verdict.text == (
        "Aan de Eemsgolaan kunnen 150 asielzoekers terecht [1]. De overige 150 plekken volgen begin januari 2025 [1]."
    )
    whole = Draft("Eerst 150 asielzoekers, de overige 150 plekken begin januari 2025 [1].", markers=[1])
    assert check.run(whole, q) == Keep()


def test_a_missing_who_part_is_added_and_a_present_one_kept():
    check = CHECKS["parts"](Settings())
    q = CheckedQuestion("Wat is JIM en wie zijn in die methodiek getraind?", [JIM], PROMPTS.refusal, PROMPTS.system())
    verdict = check.run(Draft("JIM werkt met vertrouwenspersonen uit het netwerk van jongeren [1].", markers=[2]), q)
    assert isinstance(verdict, Replace) and verdict.text.endswith(
        "De WIJ-medewerkers zijn getraind in deze methodiek [1]."
    )
    said = Draft("JIM werkt met vertrouwenspersonen; de WIJ-medewerkers zijn erin getraind [1].", markers=[2])
    assert check.run(said, q) == Keep()


def test_a_who_part_is_answered_only_by_the_name_itself():
    """'… en welke organisatie krijgt daarbij een belangrijke verantwoordelijkheid?': an answer that
    names other things (the RIGG, Groninger gemeenten) lacks the organisation the sentence names."""
    passage = Passage(
        1,
        "We gaan bij 240 gezinnen onderzoeken of de interventies doeltreffender kunnen. Bij deze aanpak krijgt "
        "WIJ Groningen een belangrijke verantwoordelijkheid.",
        "Begroting 2020",
        "",
    )
    q = CheckedQuestion(
        "Bij hoeveel gezinnen wil de gemeente de voorzieningen onderzoeken, en welke organisatie krijgt daarbij "
        "een belangrijke verantwoordelijkheid?",
        [passage],
        PROMPTS.refusal,
        PROMPTS.system(),
    )
    check = CHECKS["parts"](Settings())
    verdict = check.run(Draft("Bij 240 gezinnen, met de RIGG voor de Groninger gemeenten [1].", markers=[1]), q)
    assert isinstance(verdict, Replace) and "WIJ Groningen een belangrijke verantwoordelijkheid [1]." in verdict.text
    assert (
        check.run(Draft("Bij 240 gezinnen; WIJ Groningen krijgt de verantwoordelijkheid [1].", markers=[1]), q)
        == Keep()
    )


def test_what_an_abbreviation_is_gets_its_long_form_first():
    from rag.text.acronyms import named_abbreviation

    assert [named_abbreviation(q) for q in ("Wat is het GON?", "Wat is de WMO?", "What is the IZA?")] == [
        "GON",
        "WMO",
        "IZA",
    ]
    for q in ("Waar staat GON voor?", "Wat doet het GON?", "Wat is het budget?", "Wat is Koers en Kansen?"):
        assert named_abbreviation(q) is None, q
    check = CHECKS["expansion"](Settings())
    verdict = check.run(Draft("Het GON is een netwerk van partners [1].", markers=[1]), _q("Wat is het GON?"))
    assert isinstance(verdict, Replace) and verdict.text.startswith("GON staat voor GebiedsOndersteunend Netwerk [1].")
    # the long form already said, or no passage that defines it: the answer stays, nothing refused
    said = Draft("Het GebiedsOndersteunend Netwerk (GON) verbindt partners [1].", markers=[2])
    assert check.run(said, _q("Wat is het GON?")) == Keep()
    q = CheckedQuestion("Wat is de DUMO?", PASSAGES, PROMPTS.refusal, PROMPTS.system())
    assert check.run(Draft("DUMO staat voor Decentralisatie-uitkering Maatschappelijke Opvang [1]."), q) == Keep()
