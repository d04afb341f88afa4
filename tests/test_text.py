"""The text toolkit (rag/text): the two lists of number words, side by side."""

from __future__ import annotations

from rag.evidence import answers_kind
from rag.text.numbers import CARDINALS, COUNT_WORDS, NOT_COUNTED_IN_NUMBERS, NUMBER_WORDS, QUANTITY_WORDS, numbers_in


def test_number_words_are_the_cardinals_without_een():
    assert NOT_COUNTED_IN_NUMBERS == {"een"}
    assert NUMBER_WORDS == {w: v for w, v in CARDINALS.items() if w != "een"}
    assert numbers_in("een vergunning en twee aanvragen") == {"2"}


def test_count_words_keep_een():
    assert "een" in COUNT_WORDS and COUNT_WORDS <= CARDINALS.keys()
    assert not QUANTITY_WORDS & CARDINALS.keys()
    assert answers_kind("Dat gebeurt een keer per jaar.", "number")  # "een" counts here ...
    assert numbers_in("Dat gebeurt een keer per jaar.") == set()  # ... and not as a claimed number
    assert not answers_kind("Dat gebeurt elk jaar.", "number")
