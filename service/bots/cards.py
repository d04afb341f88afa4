"""How an answer looks in Slack (Block Kit) and in Teams (an Adaptive Card). Pure functions
of :class:`rag.schema.Answer`, so they are tested and rendered without a platform.

Both show the answer text (with its markers ``[1]``, ``[2]``), then the numbered sources,
each linking to its document where a link is known (see :func:`document_link`), then 👍/👎
feedback buttons that carry the answer id. A refusal is shown as such, in Dutch.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from rag.schema import Answer, Citation

PLACEHOLDER = "Ik zoek het op…"
REFUSAL_TITLE = "Geen antwoord gevonden"
SOURCES_TITLE = "Bronnen"
DISCLAIMER = "Automatisch antwoord op basis van gemeentelijke documenten. Controleer de bronnen."
FEEDBACK_UP = "👍 Nuttig"
FEEDBACK_DOWN = "👎 Niet nuttig"
FEEDBACK_THANKS = "Bedankt voor je feedback!"
BUSY = "De vraagbaak is op dit moment druk. Probeer het over een minuut opnieuw."
NOT_READY = "De vraagbaak wordt nog opgestart. Probeer het over een minuut opnieuw."
FAILED = "Er ging iets mis bij het beantwoorden van je vraag. Probeer het later opnieuw."
EMPTY_QUESTION = "Stel je vraag in gewone taal, bijvoorbeeld: _Hoeveel geld gaat er naar mantelzorg?_"
TOO_LONG = "Je vraag is te lang (hoogstens {max} tekens). Maak hem korter en probeer het opnieuw."

SLACK_FEEDBACK_BLOCK = "vraagbaak_feedback"
SLACK_ACTION_UP = "vraagbaak_feedback_up"
SLACK_ACTION_DOWN = "vraagbaak_feedback_down"
TEAMS_FEEDBACK_KEY = "vraagbaak_feedback"

_SLACK_SECTION_MAX = 3000
_MAX_SOURCES = 9
_BOLD_MD = re.compile(r"\*\*(.+?)\*\*", re.DOTALL)


# --------------------------------------------------------------------------- sources


def document_link(c: Citation, template: str = "") -> str | None:
    """The URL of a cited passage: the document viewer at the passage (the citation's signed
    ``url``, when the service has a public base URL so that it is absolute), else its
    source when that is a web address (with its text-fragment link when there is one),
    otherwise the site's ``template`` (``{doc_id}``, ``{source}``) when one is configured,
    else None. A page number becomes ``#page=N`` on PDF links."""
    if c.url and c.url.startswith(("https://", "http://")):
        return c.url
    if c.source.startswith(("https://", "http://")):
        url = c.public_url or c.source
    elif template:
        url = template.format(doc_id=quote(c.doc_id, safe="/"), source=quote(c.source, safe=""))
    else:
        return None
    if c.page and "#" not in url and url.lower().split("?")[0].endswith(".pdf"):
        url += f"#page={c.page}"
    return url


def source_label(c: Citation) -> tuple[str, str]:
    """(title, detail): the document title and what and where in it (type and date, last
    heading, page)."""
    title = " ".join((c.title or c.doc_id).split())
    parts = []
    if c.label and c.label.lower() not in title.lower():
        parts.append(c.label)
    section = (c.section or "").split(" › ")[-1].strip()
    if section and section.lower() != title.lower():
        parts.append(section)
    if c.page:
        parts.append(f"blz. {c.page}" + (f"–{c.page_end}" if c.page_end and c.page_end != c.page else ""))
    return _cut(title, 150), _cut(", ".join(parts), 100)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


# --------------------------------------------------------------------------- Slack


def slack_escape(text: str) -> str:
    """Escape Slack's control characters (``& < >``) so user or model text cannot form
    links, mentions (``<!channel>``) or markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_url(url: str) -> str:
    # in <url|label> a '|' or '>' would end the URL
    return url.replace("|", "%7C").replace(">", "%3E").replace("<", "%3C").replace(" ", "%20")


def slack_placeholder_blocks(text: str = PLACEHOLDER) -> list[dict[str, Any]]:
    return [
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f":hourglass_flowing_sand: {slack_escape(text)}"}]}
    ]


def slack_message_blocks(text: str, emoji: str = ":warning:") -> list[dict[str, Any]]:
    """A plain notice (busy, failed, …) in place of an answer."""
    return [{"type": "section", "text": {"type": "mrkdwn", "text": f"{emoji} {slack_escape(text)}"}}]


def slack_sources_text(answer: Answer, template: str = "") -> str:
    lines = [f"*{SOURCES_TITLE}*"]
    for c in answer.citations[:_MAX_SOURCES]:
        title, detail = source_label(c)
        url = document_link(c, template)
        name = f"<{_slack_url(url)}|{slack_escape(title)}>" if url else slack_escape(title)
        lines.append(f"[{c.marker}] {name}" + (f" — {slack_escape(detail)}" if detail else ""))
    if len(answer.citations) > _MAX_SOURCES:
        lines.append(f"… en nog {len(answer.citations) - _MAX_SOURCES}")
    return "\n".join(lines)


def slack_blocks(answer: Answer, *, document_url: str = "", feedback: bool = True) -> list[dict[str, Any]]:
    """Block Kit for an answer: the text, a context block with the numbered sources (linked),
    a disclaimer, and 👍/👎 buttons whose value is the answer id."""
    blocks: list[dict[str, Any]] = []
    if answer.refused:
        text = f":information_source: *{REFUSAL_TITLE}*\n{slack_escape(answer.answer.strip())}"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(text, _SLACK_SECTION_MAX)}})
    else:
        body = _BOLD_MD.sub(r"*\1*", slack_escape(answer.answer.strip()))
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, _SLACK_SECTION_MAX)}})
        if answer.citations:
            blocks.append(
                {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_sources_text(answer, document_url)}]}
            )
        blocks.append({"type": "context", "elements": [{"type": "plain_text", "text": DISCLAIMER, "emoji": True}]})
    if feedback:
        blocks.append(
            {
                "type": "actions",
                "block_id": SLACK_FEEDBACK_BLOCK,
                "elements": [
                    {
                        "type": "button",
                        "action_id": SLACK_ACTION_UP,
                        "text": {"type": "plain_text", "text": FEEDBACK_UP, "emoji": True},
                        "value": answer.id,
                    },
                    {
                        "type": "button",
                        "action_id": SLACK_ACTION_DOWN,
                        "text": {"type": "plain_text", "text": FEEDBACK_DOWN, "emoji": True},
                        "value": answer.id,
                    },
                ],
            }
        )
    return blocks


def slack_text(answer: Answer) -> str:
    """The plain ``text`` of the message: notifications, screen readers, old clients."""
    text = answer.answer.strip()
    if answer.refused:
        text = f"{REFUSAL_TITLE}: {text}"
    elif answer.citations:
        text += (
            "\n\n"
            + SOURCES_TITLE
            + ": "
            + "; ".join(f"[{c.marker}] {source_label(c)[0]}" for c in answer.citations[:_MAX_SOURCES])
        )
    return slack_escape(_cut(text, 3000))


def slack_feedback_done_blocks(blocks: list[dict[str, Any]], rating: str) -> list[dict[str, Any]]:
    """The answer's blocks with the buttons replaced by a thank-you line."""
    emoji = "👍" if rating == "up" else "👎"
    kept = [b for b in blocks if b.get("block_id") != SLACK_FEEDBACK_BLOCK]
    kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{emoji} {FEEDBACK_THANKS}"}]})
    return kept


# --------------------------------------------------------------------------- Teams

ADAPTIVE_CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def _md_link_text(text: str) -> str:
    return text.replace("[", "(").replace("]", ")")


def _md_inert(text: str) -> str:
    """Text from the model or a document, in an Adaptive Card: ``[x](javascript:…)`` (or any
    target) cannot form a link (``] (`` is no link syntax); markers ``[1]`` stay as they are."""
    return text.replace("](", "] (")


def adaptive_card(answer: Answer, *, document_url: str = "", feedback: bool = True) -> dict[str, Any]:
    """An Adaptive Card (1.5, as Teams renders it) with the answer text, the numbered sources
    (markdown links) and 👍/👎 ``Action.Submit`` buttons carrying the answer id."""
    body: list[dict[str, Any]] = []
    if answer.refused:
        body.append({"type": "TextBlock", "text": REFUSAL_TITLE, "weight": "Bolder", "color": "Warning", "wrap": True})
        body.append({"type": "TextBlock", "text": _md_inert(answer.answer.strip()), "wrap": True})
    else:
        body.append({"type": "TextBlock", "text": _md_inert(answer.answer.strip()), "wrap": True})
        if answer.citations:
            body.append(
                {"type": "TextBlock", "text": SOURCES_TITLE, "weight": "Bolder", "spacing": "Medium", "separator": True}
            )
            for c in answer.citations[:_MAX_SOURCES]:
                title, detail = source_label(c)
                url = document_link(c, document_url)
                name = (
                    f"[{_md_link_text(title)}]({url.replace(' ', '%20').replace(')', '%29')})"
                    if url
                    else _md_link_text(title)
                )
                body.append(
                    {
                        "type": "TextBlock",
                        "text": f"[{c.marker}] {name}" + (f" — {_md_link_text(detail)}" if detail else ""),
                        "wrap": True,
                        "size": "Small",
                        "spacing": "Small",
                    }
                )
        body.append(
            {
                "type": "TextBlock",
                "text": DISCLAIMER,
                "wrap": True,
                "size": "Small",
                "isSubtle": True,
                "spacing": "Medium",
            }
        )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    }
    if feedback:
        card["actions"] = [
            {"type": "Action.Submit", "title": FEEDBACK_UP, "data": {TEAMS_FEEDBACK_KEY: "up", "answer_id": answer.id}},
            {
                "type": "Action.Submit",
                "title": FEEDBACK_DOWN,
                "data": {TEAMS_FEEDBACK_KEY: "down", "answer_id": answer.id},
            },
        ]
    return card


def teams_text(answer: Answer) -> str:
    """A plain-text summary sent with the card (notifications, search)."""
    text = answer.answer.strip()
    return f"{REFUSAL_TITLE}: {text}" if answer.refused else _cut(text, 1000)
