"""Language identification of answers (py3langid: a small model shipped in the package)."""

from __future__ import annotations

import re
from functools import lru_cache

_MARKERS = re.compile(r"\[\d+\]")
LANGUAGES = ["nl", "en", "de", "fr", "es", "it"]


@lru_cache(maxsize=1)
def _identifier():
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    ident.set_languages(LANGUAGES)
    return ident


def detect_language(text: str, min_letters: int = 12) -> str | None:
    """ISO code of the text's language, or None when the text is too short to tell."""
    clean = _MARKERS.sub(" ", text)
    if sum(ch.isalpha() for ch in clean) < min_letters:
        return None
    lang, _ = _identifier().classify(clean)
    return lang
