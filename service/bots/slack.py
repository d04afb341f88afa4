"""The Slack bot: Bolt for Python (async, Events API over HTTP), mounted in the FastAPI app
at ``/slack/events`` (events and interactivity share the URL).

* An @mention in a channel, or a direct message, is answered in the message's thread: a
  placeholder "Ik zoek het op…" is posted at once (Slack wants its 3-second acknowledgement;
  Bolt acknowledges before the listener runs), the pipeline runs behind the service's LLM
  gate, and the placeholder is updated (``chat.update``) with the answer as Block Kit
  (:func:`service.bots.cards.slack_blocks`).
* Every request's signature and timestamp are verified by Bolt (``X-Slack-Signature``,
  ``X-Slack-Request-Timestamp`` at most 5 minutes old): unsigned, wrongly signed and
  replayed requests get 401.
* Slack retries an event it thinks was not acknowledged (``X-Slack-Retry-Num``); an event
  id already handled is acknowledged again (with ``X-Slack-No-Retry: 1``) and dropped, and
  the same message is never answered twice (an @mention in a DM arrives as two events).
* The bot's own messages (and other bots') are ignored.
* The workspace/channel decides the access groups (``VRAAGBAAK_SLACK_GROUPS``).
* 👍/👎 buttons store feedback in the same store as ``POST /v1/feedback``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request

from service.answering import AnswerService

from . import cards
from .common import BotAnswerer, TTLCache, answer_service, feedback_store
from .config import BotSettings, lookup_groups

log = logging.getLogger("vraagbaak.bots.slack")

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#[CG][A-Z0-9]+\|([^>]*)>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<![^>]*>")
_ANSWER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def question_text(text: str, bot_user_id: str | None = None) -> str:
    """The question in a Slack message: the bot's mention removed, other mentions, channel
    references and links made plain, entities unescaped."""
    # the bot's mention goes; another user's becomes their name where Slack gave it (else nothing)
    text = _USER_MENTION.sub(lambda m: "" if m.group(1) == bot_user_id else (m.group(2) or ""), text or "")
    text = _CHANNEL_REF.sub(lambda m: "#" + m.group(1), text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = _SPECIAL.sub("", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def build_slack_app(
    settings: BotSettings,
    answerer: BotAnswerer,
    feedback: Any,
    *,
    seen_events: TTLCache | None = None,
):
    """The Bolt app with its listeners (no web framework attached)."""
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.response import BoltResponse
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(token=settings.secret("slack_bot_token"), base_url=settings.slack_api_url)
    bolt = AsyncApp(
        client=client,
        signing_secret=settings.secret("slack_signing_secret"),
        name="vraagbaak",
        logger=logging.getLogger("vraagbaak.bots.slack.bolt"),
    )
    seen_events = seen_events or TTLCache(ttl=3600, max_items=10_000)
    seen_messages = TTLCache(ttl=3600, max_items=10_000)
    bolt.vraagbaak_seen_events = seen_events  # type: ignore[attr-defined]  # for tests and metrics

    @bolt.middleware
    async def drop_retries(req, resp, next):
        """Acknowledge and drop an event already handled: Slack's retries
        (X-Slack-Retry-Num) and duplicates of the same event id."""
        event_id = req.body.get("event_id") if isinstance(req.body, dict) else None
        if event_id:
            retry = (req.headers.get("x-slack-retry-num") or [None])[0]
            if not seen_events.add(str(event_id)):
                log.info("slack: duplicate event dropped", extra={"event_id": event_id, "retry": retry})
                return BoltResponse(status=200, body="", headers={"X-Slack-No-Retry": "1"})
        return await next()

    async def answer(event: dict, body: dict, client, context, *, direct: bool) -> None:
        channel = event.get("channel") or ""
        ts = event.get("ts") or ""
        if not channel or not ts:
            return
        if not seen_messages.add(f"{channel}:{ts}"):  # the same message as app_mention and message.im
            return
        team = body.get("team_id") or event.get("team") or ""
        user = event.get("user") or ""
        groups = lookup_groups(settings.slack_groups, team, channel, "im" if direct else "")
        # ids only (never the question): what an admin needs for VRAAGBAAK_SLACK_GROUPS
        log.info("slack: question", extra={"team": team, "channel": channel, "direct": direct, "groups": groups})
        question = question_text(event.get("text") or "", context.get("bot_user_id"))
        thread_ts = event.get("thread_ts") or ts
        placeholder = await client.chat_postMessage(
            channel=channel, thread_ts=thread_ts, text=cards.PLACEHOLDER, blocks=cards.slack_placeholder_blocks()
        )
        reply = await answerer.ask(question, groups, caller=f"slack:{team}/{user}", endpoint="slack")
        if reply.answer is not None:
            blocks = cards.slack_blocks(
                reply.answer, document_url=settings.bots_document_url, feedback=settings.bots_feedback_buttons
            )
            text = cards.slack_text(reply.answer)
        else:
            notice = reply.notice or cards.FAILED
            blocks = cards.slack_message_blocks(notice)
            text = cards.slack_escape(notice)
        try:
            await client.chat_update(channel=placeholder["channel"], ts=placeholder["ts"], text=text, blocks=blocks)
        except Exception:
            log.exception("slack: chat.update failed; posting the answer instead")
            await client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text, blocks=blocks)

    def is_from_a_bot(event: dict) -> bool:
        return bool(event.get("bot_id") or event.get("subtype") in ("bot_message",) or event.get("bot_profile"))

    @bolt.event("app_mention")
    async def on_mention(event, body, client, context):
        if is_from_a_bot(event):
            return
        await answer(event, body, client, context, direct=str(event.get("channel", "")).startswith("D"))

    @bolt.event("message")
    async def on_message(event, body, client, context):
        # direct messages only; edits, joins, bot posts etc. have a subtype
        if event.get("channel_type") != "im" or event.get("subtype") or is_from_a_bot(event):
            return
        await answer(event, body, client, context, direct=True)

    @bolt.action(re.compile(rf"^({cards.SLACK_ACTION_UP}|{cards.SLACK_ACTION_DOWN})$"))
    async def on_feedback(ack, body, action, client):
        await ack()
        answer_id = str(action.get("value") or "")
        if not _ANSWER_ID.match(answer_id):
            return
        rating = "up" if action.get("action_id") == cards.SLACK_ACTION_UP else "down"
        team = (body.get("team") or {}).get("id", "")
        user = (body.get("user") or {}).get("id", "")
        await asyncio.to_thread(feedback.add, answer_id, rating, None, f"slack:{team}/{user}")
        log.info("slack: feedback stored", extra={"answer_id": answer_id, "rating": rating})
        message = body.get("message") or {}
        channel = (body.get("channel") or {}).get("id")
        if channel and message.get("ts") and message.get("blocks"):
            await client.chat_update(
                channel=channel,
                ts=message["ts"],
                text=message.get("text") or "",
                blocks=cards.slack_feedback_done_blocks(message["blocks"], rating),
            )

    return bolt


def mount_slack(
    app: FastAPI,
    pipeline_provider: Callable[[], Any] | None = None,
    settings: BotSettings | None = None,
    *,
    feedback: Any = None,
    answers: AnswerService | None = None,
    path: str = "/slack/events",
):
    """Add ``POST /slack/events`` to ``app``. A no-op (one log line) without
    ``SLACK_BOT_TOKEN`` and ``SLACK_SIGNING_SECRET``. Returns the Bolt app or None.

    ``answers`` (the answering service: LLM gate, worker pool, metrics, audit log) and
    ``feedback`` default to the Vraagbaak service's when ``app`` is that service.
    ``pipeline_provider``: returns the pipeline (None while loading) to answer with instead
    of the service's."""
    settings = settings or BotSettings()
    if not settings.slack_enabled:
        log.info("slack bot disabled: SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not both set")
        return None
    from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler

    answerer = BotAnswerer(answer_service(app, answers, pipeline_provider))
    bolt = build_slack_app(settings, answerer, feedback_store(app, feedback))
    handler = AsyncSlackRequestHandler(bolt)

    async def slack_events(request: Request):
        return await handler.handle(request)

    app.add_api_route(
        path,
        slack_events,
        methods=["POST"],
        include_in_schema=False,
        name="slack_events",
    )
    app.state.slack_bolt = bolt
    log.info("slack bot mounted", extra={"path": path, "api_url": settings.slack_api_url})
    return bolt
