"""The Teams bot, on the Microsoft 365 Agents SDK for Python (``microsoft-agents-hosting-*``,
the successor of the Bot Framework SDK), mounted in the FastAPI app at
``/api/teams/messages``.

* Without ``TEAMS_APP_ID`` the endpoint does not exist (404): never open. The SDK treats a
  request without validated claims as anonymous (its emulator mode), so every request
  goes through :class:`service.bots.teams_auth.BotFrameworkAuth` first and the SDK only
  ever sees authenticated claims.
* A 1:1 chat message, or an @mention in a channel or group chat (the mention removed from
  the question), is acknowledged at once (the channel expects an answer within seconds);
  a typing indicator is sent, and repeated while the pipeline runs, then the answer
  arrives as a reply with an Adaptive Card (:func:`service.bots.cards.adaptive_card`).
* The tenant/team decides the access groups (``VRAAGBAAK_TEAMS_GROUPS``); with
  ``TEAMS_TENANT_ID`` set, other tenants get no answer.
* 👍/👎 on the card (``Action.Submit``) store feedback in the ``/v1/feedback`` store.

Replies go to the activity's ``serviceUrl`` (signed into the token) with a token from
Microsoft Entra ID for the app id/secret (MSAL, via ``microsoft-agents-authentication-msal``).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from service.answering import AnswerService

from . import cards
from .common import BotAnswerer, TTLCache, answer_service, feedback_store
from .config import BotSettings, lookup_groups
from .teams_auth import AuthError, BotFrameworkAuth

log = logging.getLogger("vraagbaak.bots.teams")

_AT = re.compile(r"<at>(.*?)</at>", re.DOTALL | re.IGNORECASE)
_TAG = re.compile(r"<[^>]+>")
_ANSWER_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def question_from_activity(activity: Any) -> str:
    """The question of a message activity: the bot's own mention removed, other mentions
    kept as plain names, HTML tags and entities removed."""
    text = activity.remove_recipient_mention() if activity.recipient else (activity.text or "")
    text = _AT.sub(lambda m: m.group(1), text or "")
    text = html.unescape(_TAG.sub(" ", text))
    return " ".join(text.split())


def _channel_data(activity: Any) -> dict[str, Any]:
    data = activity.channel_data
    if data is None:
        return {}
    if isinstance(data, dict):
        return data
    return data.model_dump(by_alias=True, exclude_none=True) if hasattr(data, "model_dump") else dict(data)


def tenant_of(activity: Any) -> str:
    tenant = (_channel_data(activity).get("tenant") or {}).get("id")
    if not tenant and activity.conversation is not None:
        tenant = getattr(activity.conversation, "tenant_id", None)
    return str(tenant or "")


class TeamsBot:
    """The agent: ``on_turn`` handles one incoming activity."""

    def __init__(self, settings: BotSettings, answerer: BotAnswerer, feedback: Any, adapter: Any) -> None:
        self.settings = settings
        self.answerer = answerer
        self.feedback = feedback
        self.adapter = adapter
        self.seen = TTLCache(ttl=3600, max_items=10_000)
        self.tasks: set[asyncio.Task] = set()

    async def on_turn(self, context) -> None:
        from microsoft_agents.activity import Activity, ActivityTypes

        a = context.activity
        if a.type != ActivityTypes.message:
            return
        tenant = tenant_of(a)
        if self.settings.teams_tenant_id and tenant.lower() != self.settings.teams_tenant_id.lower():
            log.warning("teams: message from another tenant ignored")
            return
        if a.id and not self.seen.add(f"{a.conversation.id}:{a.id}"):
            log.info("teams: duplicate activity dropped")
            return
        user = (a.from_property.aad_object_id or a.from_property.id) if a.from_property else ""
        caller = f"teams:{tenant}/{user}"
        if isinstance(a.value, dict) and cards.TEAMS_FEEDBACK_KEY in a.value:
            await self._feedback(context, a.value, caller)
            return
        question = question_from_activity(a)
        data = _channel_data(a)
        team = str((data.get("team") or {}).get("id") or "")
        conv_type = str(getattr(a.conversation, "conversation_type", "") or "")
        groups = lookup_groups(self.settings.teams_groups, tenant, team, conv_type)
        # ids only (never the question): what an admin needs for VRAAGBAAK_TEAMS_GROUPS
        log.info(
            "teams: question", extra={"tenant": tenant, "team": team, "conversation_type": conv_type, "groups": groups}
        )
        await context.send_activity(Activity(type=ActivityTypes.typing))
        reference = a.get_conversation_reference()
        app_id = self.settings.teams_app_id or ""
        task = asyncio.create_task(self._answer(app_id, reference, a.id, question, groups, caller))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, app_id: str, reference: Any, reply_to: str | None, activity: Any) -> None:
        continuation = reference.get_continuation_activity()
        if reply_to:
            continuation.id = reply_to  # replies (and typing) refer to the question, not a random id

        async def send(ctx) -> None:
            await ctx.send_activity(activity)

        await self.adapter.continue_conversation(app_id, continuation, send)

    async def _answer(
        self, app_id: str, reference: Any, reply_to: str | None, question: str, groups: list[str], caller: str
    ) -> None:
        from microsoft_agents.activity import Activity, ActivityTypes, Attachment

        work = asyncio.create_task(self.answerer.ask(question, groups, caller=caller, endpoint="teams"))
        try:
            while True:
                done, _ = await asyncio.wait({work}, timeout=self.settings.teams_typing_interval)
                if done:
                    break
                try:
                    await self._send(app_id, reference, reply_to, Activity(type=ActivityTypes.typing))
                except Exception:
                    log.warning("teams: typing indicator failed", exc_info=True)
            reply = work.result()
            if reply.answer is not None:
                card = cards.adaptive_card(
                    reply.answer,
                    document_url=self.settings.bots_document_url,
                    feedback=self.settings.bots_feedback_buttons,
                )
                message = Activity(
                    type=ActivityTypes.message,
                    summary=cards.teams_text(reply.answer),
                    attachments=[Attachment(content_type=cards.ADAPTIVE_CARD_CONTENT_TYPE, content=card)],
                )
            else:
                message = Activity(type=ActivityTypes.message, text=reply.notice or cards.FAILED)
            await self._send(app_id, reference, reply_to, message)
        except Exception:
            log.exception("teams: answering failed")
            if not work.done():
                work.cancel()

    async def _feedback(self, context, value: dict, caller: str) -> None:
        rating = value.get(cards.TEAMS_FEEDBACK_KEY)
        answer_id = str(value.get("answer_id") or "")
        if rating not in ("up", "down") or not _ANSWER_ID.match(answer_id):
            return
        await asyncio.to_thread(self.feedback.add, answer_id, rating, None, caller)
        log.info("teams: feedback stored", extra={"answer_id": answer_id, "rating": rating})
        await context.send_activity(("👍 " if rating == "up" else "👎 ") + cards.FEEDBACK_THANKS)

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for answers still being worked on (tests, shutdown)."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=timeout)


def _connections(settings: BotSettings, token_provider_factory: Callable[[Any], Any] | None):
    from microsoft_agents.hosting.core import AgentAuthConfiguration
    from microsoft_agents.hosting.core.authorization import AuthTypes, ConnectionManager

    config = AgentAuthConfiguration(
        auth_type=AuthTypes.client_secret,
        client_id=settings.teams_app_id,
        # single-tenant bots: their tenant; legacy multi-tenant registrations: botframework.com
        tenant_id=settings.teams_tenant_id or "botframework.com",
        client_secret=settings.secret("teams_app_password") or None,
    )
    if token_provider_factory is None:
        from microsoft_agents.authentication.msal import MsalAuth

        token_provider_factory = MsalAuth
    return ConnectionManager(
        provider_factory=token_provider_factory, connections_configurations={"SERVICE_CONNECTION": config}
    )


def mount_teams(
    app: FastAPI,
    pipeline_provider: Callable[[], Any] | None = None,
    settings: BotSettings | None = None,
    *,
    feedback: Any = None,
    answers: AnswerService | None = None,
    path: str = "/api/teams/messages",
    token_provider_factory: Callable[[Any], Any] | None = None,
) -> TeamsBot | None:
    """Add ``POST /api/teams/messages`` to ``app``. Without ``TEAMS_APP_ID`` nothing is added
    (the path answers 404) and one line is logged. Returns the bot or None.

    ``answers``, ``feedback`` and ``pipeline_provider``: as for
    :func:`service.bots.slack.mount_slack`. ``token_provider_factory``: builds the provider of outgoing tokens from an
    ``AgentAuthConfiguration`` (default: MSAL client credentials against Entra ID; tests
    pass a fake)."""
    settings = settings or BotSettings()
    if not settings.teams_enabled:
        log.info("teams bot disabled: TEAMS_APP_ID is not set (the endpoint answers 404)")
        return None
    if not settings.teams_app_password and token_provider_factory is None:
        log.error("teams bot disabled: TEAMS_APP_PASSWORD is not set, the bot could not reply")
        return None
    from microsoft_agents.hosting.core.authorization import ClaimsIdentity
    from microsoft_agents.hosting.fastapi import CloudAdapter

    answerer = BotAnswerer(answer_service(app, answers, pipeline_provider))
    adapter = CloudAdapter(connection_manager=_connections(settings, token_provider_factory))

    async def on_turn_error(context, error: Exception) -> None:  # the SDK's default echoes the exception text
        log.error("teams: turn failed", exc_info=(type(error), error, error.__traceback__))
        try:
            await context.send_activity(cards.FAILED)
        except Exception as exc:  # noqa: BLE001 - nothing more to do than log it
            log.warning("teams: could not tell the user about the failure", extra={"error": type(exc).__name__})

    adapter.on_turn_error = on_turn_error
    bot = TeamsBot(settings, answerer, feedback_store(app, feedback), adapter)
    auth = BotFrameworkAuth(settings.teams_app_id or "", settings.teams_openid_metadata_url)

    def unauthorized() -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "unauthorized", "message": "invalid or missing token"}},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def teams_messages(request: Request):
        if not request.headers.get("authorization"):
            return unauthorized()
        try:
            activity = json.loads(await request.body())
        except ValueError:
            activity = None
        if not isinstance(activity, dict):
            return JSONResponse(
                {"error": {"code": "bad_request", "message": "the body must be an activity"}}, status_code=400
            )
        try:
            claims, token = await auth.authenticate(request.headers.get("authorization"), activity)
        except AuthError as exc:
            log.warning("teams: request refused", extra={"reason": str(exc)})
            return unauthorized()
        request.state.claims_identity = ClaimsIdentity(claims, authentication_type="Bearer", security_token=token)
        return await adapter.process(request, bot)

    app.add_api_route(path, teams_messages, methods=["POST"], include_in_schema=False, name="teams_messages")
    app.state.teams_bot = bot
    log.info("teams bot mounted", extra={"path": path})
    return bot
