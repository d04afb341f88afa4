"""Render the example messages in service/bots/examples/ (``python -m service.bots.render_examples``).

* ``slack_answer.json`` / ``slack_refusal.json``: ``{"blocks": […]}``, paste into Slack's
  Block Kit Builder to see them;
* ``teams_answer_card.json`` / ``teams_refusal_card.json``: Adaptive Cards, paste into the
  Adaptive Cards Designer (host app: Microsoft Teams).

tests/test_bots_cards.py checks that the files match what the code renders.
"""

from __future__ import annotations

import json
from pathlib import Path

from rag.schema import Answer, Citation, ModelInfo, Timings

from ..links import LinkSigner
from . import cards

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
DOCUMENT_URL = "https://intranet.gemeente.nl/documenten/{doc_id}"
_MODEL = ModelInfo(llm="qwen2.5-coder-1.5b-instruct-q4_k_m", embedder="embeddinggemma-300m")


# the viewer links as a service at https://vraagbaak.gemeente.nl signs them (a fixed secret
# and time here, so that the examples do not change on every run)
_LINKS = LinkSigner(b"example-secret, not a real one", base_url="https://vraagbaak.gemeente.nl")
_NOW = 1_767_225_600.0  # 2026-01-01


def example_answer() -> Answer:
    answer = _example_answer()
    for c in answer.citations:
        hl = (c.quote_start, c.quote_end) if c.quote_start is not None and c.quote_end is not None else None
        c.url = _LINKS.view_url(c.doc_id, [], c.chunk_id, hl, now=_NOW)
    return answer


def _example_answer() -> Answer:
    return Answer(
        id="5c0f6a3e9b2d4f1c8e7a6b5d4c3b2a19",
        question="Hoeveel geld gaat er in 2023 naar mantelzorgondersteuning?",
        answer=(
            "In 2023 besteedt de gemeente 2 miljoen euro aan mantelzorgondersteuning [1]. Mantelzorgers krijgen "
            "daarnaast een jaarlijkse waardering [1]. De raad vroeg in 2022 met een motie om meer geld voor "
            "preventie in de wijk; het college voert die uit met buurtsportcoaches [2]."
        ),
        citations=[
            Citation(
                marker=1,
                doc_id="openbaar/begroting-2023-zorg",
                title="Begroting 2023 zorg",
                source="https://www.gemeente.nl/documenten/begroting-2023-zorg.pdf",
                section="Begroting 2023 zorg › Mantelzorg",
                page=12,
                snippet="De gemeente besteedt 2 miljoen euro aan mantelzorgondersteuning in 2023.",
                score=0.71,
                chunk_id=41,
                doc_type="begroting",
                year=2023,
                label="Begroting 2023",
                quote="De gemeente besteedt 2 miljoen euro aan mantelzorgondersteuning in 2023.",
                quote_start=0,
                quote_end=72,
            ),
            Citation(
                marker=2,
                doc_id="openbaar/raadsbrief-2022-preventie",
                title="Raadsbrief preventie",
                source="data/openbaar/raadsbrief-2022-preventie.md",
                section="Raadsbrief preventie › Motie",
                snippet="De raad nam in 2022 een motie aan om meer geld te besteden aan preventie in de wijk.",
                score=0.58,
                chunk_id=7,
                doc_type="raadsbrief",
                year=2022,
                date="2022-01-26",
                label="Raadsbrief 26-1-2022",
            ),
        ],
        timings=Timings(retrieval_ms=85.0, first_token_ms=2100.0, total_ms=9400.0),
        model=_MODEL,
        language="nl",
    )


def example_refusal() -> Answer:
    return Answer(
        id="9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b",
        question="Wat is het telefoonnummer van de wethouder?",
        answer="Dat staat niet in de documenten die ik kan raadplegen.",
        refused=True,
        refusal_reason="no_relevant_passages",
        model=_MODEL,
    )


def rendered() -> dict[str, dict]:
    a, r = example_answer(), example_refusal()
    return {
        "slack_answer.json": {"blocks": cards.slack_blocks(a, document_url=DOCUMENT_URL), "text": cards.slack_text(a)},
        "slack_refusal.json": {"blocks": cards.slack_blocks(r, document_url=DOCUMENT_URL), "text": cards.slack_text(r)},
        "teams_answer_card.json": cards.adaptive_card(a, document_url=DOCUMENT_URL),
        "teams_refusal_card.json": cards.adaptive_card(r, document_url=DOCUMENT_URL),
    }


def dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2) + "\n"


def main() -> None:
    EXAMPLES_DIR.mkdir(exist_ok=True)
    for name, obj in rendered().items():
        (EXAMPLES_DIR / name).write_text(dumps(obj), encoding="utf-8")
        print(EXAMPLES_DIR / name)


if __name__ == "__main__":
    main()
