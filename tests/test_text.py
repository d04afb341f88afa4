"""The text toolkit (rag/text): number words, letter furniture."""

from __future__ import annotations

from rag.evidence import answers_kind
from rag.text.numbers import CARDINALS, COUNT_WORDS, NOT_COUNTED_IN_NUMBERS, NUMBER_WORDS, QUANTITY_WORDS, numbers_in


def test_number_words_are_the_cardinals_without_een():
    assert NOT_COUNTED_IN_NUMBERS == {"een"}
    assert NUMBER_WORDS == {w: v for w, v in CARDINALS.items() if w != "een"}
    assert numbers_in("een vergunning en twee aanvragen") == {"2"}


def test_one_list_of_number_words_for_attribution_and_counts():
    assert COUNT_WORDS == set(NUMBER_WORDS) | {"één"}
    assert not QUANTITY_WORDS & CARDINALS.keys()
    assert not answers_kind("Een deel van de gezinnen heeft nog steeds te maken met geweld.", "number")
    assert numbers_in("Dat gebeurt een keer per jaar.") == set()
    assert answers_kind("Er komt één nieuwe locatie.", "number")
    assert answers_kind("Het aantal is vijftien.", "number") and answers_kind("De helft van de gezinnen.", "number")
    assert not answers_kind("Dat gebeurt elk jaar.", "number")


# --------------------------------------------------------------------------- letter and page furniture


def test_content_of_cuts_letter_furniture_and_keeps_ordinary_sentences():
    from rag.text.boilerplate import content_of, is_furniture

    head = (
        "Onderwerp Stand van zaken motie ter informatie Steller Alfons Boer De leden van de raad te GRONINGEN "
        "Telefoon | 42 18 | Bijlage(n) | 1 | Ons kenmerk | 24622-2022 Datum | 26-1-2022 | Uw brief van | - "
        "Geachte heer, mevrouw, Met deze brief informeren wij u over de stand van zaken."
    )
    assert content_of(head) == "Met deze brief informeren wij u over de stand van zaken."
    closing = "Met vriendelijke groet, burgemeester en wethouders van Groningen, burgemeester, Koen Schuiling"
    assert content_of("Wij vertrouwen u voldoende te hebben geïnformeerd. " + closing) == (
        "Wij vertrouwen u voldoende te hebben geïnformeerd."
    )
    for furniture in (
        closing,
        "burgemeester, Koen Schuiling secretaris, Christien Bronda",
        "Telefoon | 42 18 | Bijlage(n) | 1 | Ons kenmerk | 24622-2022",
        "Inleiding ............ 3",
        "Pagina 3 van 5",
        "Volgvel 2",
        "Geachte leden van de raad,",
    ):
        assert is_furniture(furniture), furniture
    for ordinary in (  # sentences that merely mention what furniture is made of
        "Het onderwerp wordt in bijlage 2 toegelicht; bel de telefoon of stuur een e-mail.",
        "De burgemeester heeft op 3 maart besloten de nachtopvang te openen.",
        "Het college van burgemeester en wethouders stelt de raad voor het budget te verhogen.",
        "Wethouder Jongman ondertekende het convenant met de zorgaanbieders.",
        "Zie pagina 12 van de begroting voor de bedragen per jaar.",
        "De datum van de verkiezingen is 16 maart 2022.",
    ):
        assert content_of(ordinary) == ordinary, ordinary


def test_a_letter_head_or_signature_is_never_quoted():
    from rag.evidence import best_quote, rank_evidence
    from rag.types import Passage

    letter = Passage(
        1,
        "Onderwerp Motie preventie Steller Alfons Boer Telefoon | 42 18 | Bijlage(n) | 1 | Ons kenmerk | 24622 "
        "Geachte heer, mevrouw, Met deze brief informeren wij u over de motie preventie. "
        "Met vriendelijke groet, burgemeester en wethouders van Groningen, burgemeester, Koen Schuiling "
        "secretaris, Christien Bronda",
        "Raadsbrief",
    )
    for q in ("Wie is de steller van de brief over de motie preventie?", "Wie is de wethouder van onderwijs?"):
        best = best_quote(q, rank_evidence(q, [letter]), 0.3, None, [letter])
        assert best is None or ("Telefoon" not in best.text and "secretaris" not in best.text), best
    q = "Waarover informeert de brief over de motie preventie?"
    best = best_quote(q, rank_evidence(q, [letter]), 0.3, None, [letter])
    assert best is not None and best.text == "Met deze brief informeren wij u over de motie preventie."


def test_a_question_about_a_letter_field_gets_the_field_not_the_block():
    from rag.evidence import best_quote, rank_evidence
    from rag.text.boilerplate import letter_field
    from rag.types import Passage

    head = (
        "Onderwerp Motie preventie ter informatie Steller Alfons Boer De leden van de raad te GRONINGEN "
        "Telefoon | 42 18 | Bijlage(n) | 1 | Ons kenmerk | 24622-2022 Datum | 26-1-2022 "
        "Geachte heer, mevrouw, Met deze brief informeren wij u over de motie preventie."
    )
    closing = (
        "Met vriendelijke groet, burgemeester en wethouders van Groningen, burgemeester, Koen Schuiling "
        "secretaris, Christien Bronda Deze brief is elektronisch aangemaakt en daarom niet ondertekend."
    )
    assert letter_field("Wie is de steller van de brief?", head) == "Steller Alfons Boer"
    assert letter_field("Wat is het kenmerk van de brief?", head) == "Ons kenmerk 24622-2022"
    assert letter_field("Wie hebben de brief ondertekend?", closing) == (
        "burgemeester, Koen Schuiling; secretaris, Christien Bronda"
    )
    assert letter_field("Wie is de wethouder van onderwijs?", closing) is None  # asks no field of the letter
    assert letter_field("Wat is het kenmerk van de brief?", "Het kenmerk van goed beleid is preventie.") is None
    convenant = "Wethouder Jongman heeft het convenant met de zorgaanbieders ondertekend."
    assert letter_field("Wie heeft het convenant ondertekend?", convenant) is None  # no signature block
    letter = Passage(1, f"{head} {closing}", "Raadsbrief")
    q = "Wie is de steller van de brief over de motie preventie?"
    assert best_quote(q, rank_evidence(q, [letter]), 0.3, None, [letter]).text == "Steller Alfons Boer"


# --------------------------------------------------------------------------- names


def test_names_are_capitalised_words_that_do_not_open_a_sentence():
    from rag.text.names import names_in

    text = "Het college vraagt Humanitas en WIJ Groningen om hulp; de RUG doet onderzoek."
    assert names_in(text) == {"humanitas", "groningen"}  # "Het" opens the sentence; WIJ, RUG are capitals only
    assert names_in(text, all_caps=True) == {"humanitas", "wij", "groningen", "rug"}
    assert names_in("Vinkhuizen") == set()  # the first word of a text
    assert names_in("Opvang in: Vinkhuizen") == {"vinkhuizen"}  # after a colon
