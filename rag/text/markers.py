"""The ``[n]`` citation markers of an answer: "[1]", "[2, 3]", "[1; 4]"."""

from __future__ import annotations

import re

MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")  # group 1: the marker numbers
_MARKER_AND_SPACE = re.compile(r"\s*" + MARKER.pattern)
_WS = re.compile(r"\s+")


def strip_markers(text: str) -> str:
    """The text without its markers (and the space before each), whitespace collapsed."""
    return _WS.sub(" ", _MARKER_AND_SPACE.sub("", text)).strip()


def markers_in(text: str) -> list[int]:
    """Every marker number in order of appearance, repeats included."""
    out: list[int] = []
    for m in MARKER.finditer(text):
        out += [int(x) for x in re.split(r"[,;]", m.group(1)) if x.strip()]
    return out
