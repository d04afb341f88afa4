"""Citation validation and post-hoc attribution (deterministic, no model)."""

from rag.attribute import attribute
from rag.text.markers import markers_in, strip_markers
from rag.text.meaning import meaning_differs
from rag.text.numbers import normalise_number, numbers_in
from rag.types import Passage

P = [
    Passage(
        1,
        "Voor mantelzorgondersteuning is in 2023 € 1.200.000 beschikbaar. Het programma Kansrijke Start loopt door.",
        "Begroting 2023",
        "Mantelzorg",
    ),
    Passage(
        2,
        "De nachtopvang aan de Hereweg krijgt 60 extra plekken. Wethouder Jan de Vries opende de locatie op 3 maart.",
        "Raadsbrief",
        "Opvang",
    ),
    Passage(3, "Het aantal meldingen van huiselijk geweld steeg naar 1.450 in 2022.", "Jaarstukken", "Veiligheid"),
]


def test_number_normalisation():
    assert normalise_number("1.000") == "1000"
    assert normalise_number("2.500.000") == "2500000"
    assert normalise_number("3,2") == "3.2"
    assert normalise_number("1,50") == "1.5"
    assert normalise_number("1,000") == "1000"
    assert numbers_in("€ 1.200.000 en 60 plekken") == {"1200000", "60"}


def test_markers_parsed_and_stripped():
    assert markers_in("Zo is het [1]. En dit [2, 3].") == [1, 2, 3]
    assert strip_markers("Zo is het [1] echt.") == "Zo is het echt."


def test_correct_marker_is_kept():
    at = attribute("De nachtopvang aan de Hereweg krijgt 60 extra plekken [2].", P)
    assert at.text == "De nachtopvang aan de Hereweg krijgt 60 extra plekken [1]."
    assert at.cited_markers == [2]  # passage 2 becomes citation 1
    assert not at.dropped


def test_missing_marker_is_added_and_wrong_marker_fixed():
    at = attribute(
        "Voor mantelzorgondersteuning is € 1.200.000 beschikbaar. Er kwamen 60 extra plekken bij de nachtopvang [3].", P
    )
    assert at.cited_markers == [1, 2]
    assert (
        at.text
        == "Voor mantelzorgondersteuning is € 1.200.000 beschikbaar [1]. Er kwamen 60 extra plekken bij de nachtopvang [2]."
    )


def test_a_list_gets_its_markers_before_the_colon_and_semicolons():
    """'… twee niveaus [1]: 1. … [1]; 2. … [1].', not '… niveaus: [1] 1. …'."""
    lijst = Passage(1, "We werken op twee niveaus: 1. het sociaal klimaat; 2. de preventieve sfeer.", "Begroting 2020")
    at = attribute("We werken op twee niveaus: 1. het sociaal klimaat; 2. de preventieve sfeer.", [lijst])
    assert at.text == "We werken op twee niveaus [1]: 1. het sociaal klimaat [1]; 2. de preventieve sfeer [1]."


def test_marker_outside_the_context_is_not_kept():
    at = attribute("Het aantal meldingen van huiselijk geweld steeg naar 1.450 [7].", P)
    assert at.cited_markers == [3]
    assert "[7]" not in at.text and at.text.endswith("[1].")


def test_wrong_number_drops_the_sentence():
    at = attribute("De nachtopvang krijgt 600 extra plekken [2].", P)
    assert not at.supported and at.text == ""
    assert "600" in at.dropped[0].reason


def test_number_words_count_as_numbers():
    assert numbers_in("twaalf gemeenten, drie locaties en achttien jaar") == {"12", "3", "18"}
    assert numbers_in("Eight themes") == {"8"}
    # not numbers: the article, "ten minste", "in acht nemen"
    assert numbers_in("een huis, ten minste één keer, dat wordt in acht genomen") == set()
    p = [Passage(1, "De RIGG koopt de jeugdhulp in voor de 12 Groninger gemeenten.", "Begroting 2020")]
    wrong = attribute("De RIGG koopt de jeugdhulp in voor de tien Groninger gemeenten [1].", p)
    assert not wrong.supported and "10" in wrong.dropped[0].reason
    right = attribute("De RIGG koopt de jeugdhulp in voor twaalf Groninger gemeenten [1].", p)
    assert right.cited_markers == [1] and not right.dropped


def test_scaled_amounts_must_match_as_a_whole():
    assert numbers_in("€ 2,5 miljoen en 10 duizend woningen") == {"2500000", "2.5", "10000", "10"}
    assert numbers_in("€ 2,5 miljoen en 10 duizend woningen", claimed=True) == {"2500000", "10000"}
    p = [Passage(1, "Er komen 100 woningen bij. Het fonds is in totaal een miljoen euro groot.", "Raadsbrief")]
    invented = attribute("Er komt € 100 miljoen voor de woningen [1].", p)
    assert not invented.supported and "100000000" in invented.dropped[0].reason
    q = [Passage(1, "Het college trekt € 1,5 miljard uit.", "Begroting")]
    assert attribute("Het college trekt € 1.500 miljoen uit [1].", q).cited_markers == [1]
    assert attribute("Het college trekt € 1.500.000.000 uit [1].", q).cited_markers == [1]


def test_a_question_in_the_answer_is_not_a_claim():
    p = [
        Passage(
            1,
            "Leg uw wensen vast in een testament en regel uw uitvaart.",
            "Eigen overlijden: wat moet ik regelen voordat ik overlijd?",
        )
    ]
    echo = attribute("Eigen overlijden: wat moet ik regelen voordat ik overlijd [1]?", p)
    assert not echo.supported and echo.dropped[0].reason == "a question, not a statement"
    mixed = attribute("Leg uw wensen vast in een testament [1]. Wilt u uw uitvaart regelen?", p)
    assert mixed.text == "Leg uw wensen vast in een testament [1]." and len(mixed.dropped) == 1


def test_invented_name_drops_only_that_sentence():
    at = attribute(
        "De nachtopvang aan de Hereweg krijgt 60 extra plekken [2]. De wethouder van zorg is Pietersen [2].", P
    )
    assert at.cited_markers == [2]
    assert "Pietersen" not in at.text
    assert [d.reason for d in at.dropped] == ["names not in the passage: pietersen"]


def test_sentence_without_support_is_dropped():
    at = attribute("Parkeren in de binnenstad kost 4 euro per uur.", P)
    assert not at.supported
    assert at.dropped and at.dropped[0].cited == []


def test_citations_renumbered_in_order_of_first_use():
    at = attribute(
        "Huiselijk geweld: 1.450 meldingen in 2022 [3]. Kansrijke Start loopt door [1]. Meldingen steeg naar 1.450 [3].",
        P,
    )
    assert at.cited_markers == [3, 1]
    assert at.text.count("[1]") == 2 and at.text.count("[2]") == 1


def test_threshold_is_respected():
    text = "Kansrijke Start helpt gezinnen met jonge kinderen enorm goed vooruit."
    assert attribute(text, P, threshold=0.2).supported
    assert not attribute(text, P, threshold=0.8).supported


def test_a_dropped_or_added_negation_or_a_changed_modality_is_not_supported():
    passages = [
        Passage(
            1,
            "Een aanvraag kan niet meer worden ingediend na 1 mei. U kunt bezwaar maken binnen zes weken. "
            "De gemeente vergoedt de kosten van de cursus, maar niet de reiskosten.",
            "Subsidie",
            "Aanvragen",
        )
    ]
    for wrong in (
        "Een aanvraag kan worden ingediend na 1 mei [1].",  # the "niet" dropped
        "U moet bezwaar maken binnen zes weken [1].",  # "kunt" became "moet"
        "De gemeente vergoedt de kosten van de cursus niet [1].",  # a negation added
    ):
        att = attribute(wrong, passages)
        assert not att.supported and att.dropped[0].reason, wrong
    for right in (
        "Na 1 mei kan een aanvraag niet meer worden ingediend [1].",
        "U kunt binnen zes weken bezwaar maken [1].",
        "De gemeente vergoedt de kosten van de cursus [1].",  # the negated phrase (reiskosten) not restated
    ):
        assert attribute(right, passages).supported, right


def test_a_negation_inside_a_name_negates_nothing():
    passages = [Passage(1, "Voor leerlingen zonder school is er het programma GOTU (Geen Onderwijs Toch Uitdaging).")]
    assert attribute("GOTU is een programma voor leerlingen zonder school [1].", passages).supported


def test_a_no_of_its_own_is_not_supported_by_a_passage_that_negates_nothing():
    passages = [
        Passage(1, "U mag een vakantiewoning verhuren als u een vergunning heeft.", "Verhuur"),
        Passage(2, "Voor een tweede woning of vakantiewoning wordt geen kwijtschelding verleend.", "Kwijtschelding"),
    ]
    assert not attribute("Nee, u mag een vakantiewoning verhuren als u een vergunning heeft [1].", passages).supported
    assert "nee" in meaning_differs("Nee, u mag verhuren.", "U mag verhuren als u een vergunning heeft.")
    # a no that the passage says itself stands
    assert attribute("Nee, voor een vakantiewoning wordt geen kwijtschelding verleend [2].", passages).supported
    assert attribute("Ja, u mag een vakantiewoning verhuren als u een vergunning heeft [1].", passages).supported
    # "Nee" inside a sentence is no answer of its own ("Neem contact op …" neither)
    assert attribute("Neem een vergunning als u een vakantiewoning wilt verhuren [1].", passages).supported
