"""Likely names in a text: capitalised words that do not open a sentence."""

from __future__ import annotations

import re

# a capitalised word after a word, comma, semicolon, colon or bracket (so not at the start of
# a sentence); with a lower-case letter in it ("Humanitas", "Groningen") ...
_NAME = re.compile(r"(?<=[\w,;:)] )([A-ZÀ-Ý][\w'’-]*[a-zà-ÿ][\w'’-]*)")
# ... or all capitals as well ("WIJ", "RUG")
_NAME_OR_CAPS = re.compile(r"(?<=[\w,;:)] )([A-ZÀ-Ý][\w'’-]*)")


def names_in(text: str, all_caps: bool = False) -> set[str]:
    """The likely names in ``text``, lower-cased. ``all_caps`` counts words written in capitals
    only (abbreviations such as WIJ, RUG) as names too."""
    pattern = _NAME_OR_CAPS if all_caps else _NAME
    return {m.group(1).lower() for m in pattern.finditer(text)}
