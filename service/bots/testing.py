"""Test doubles for the bots: a fake Slack Web API and a fake Bot Framework (OpenID
metadata, signing keys, token signing and the connector that receives the replies). Each
is a small FastAPI app meant to run on loopback with :class:`service.testing.LiveServer`.
Nothing here is used by the running service."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate()`` until it returns something truthy (returned) or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


# --------------------------------------------------------------------------- Slack


def slack_signature_headers(secret: str, body: str | bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: ``X-Slack-Request-Timestamp`` and ``X-Slack-Signature``
    (``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    base = b"v0:" + ts.encode() + b":" + raw
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


class FakeSlackAPI:
    """The few Web API methods the bot uses (``auth.test``, ``chat.postMessage``,
    ``chat.update``), recording every call. Mount: ``LiveServer(fake.app)``; the bot's
    ``SLACK_API_URL`` is ``<url>/api/``.

    Socket Mode too: ``apps.connections.open`` (with the app token) hands out
    ``ws://…/socket``, where envelopes put in :meth:`push` are delivered and the client's
    acknowledgements are recorded in ``socket_acks``."""

    def __init__(
        self,
        token: str = "xoxb-test-token",
        team_id: str = "T0TEST",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_token: str = "xapp-test-token",
    ) -> None:
        import queue

        self.token = token
        self.app_token = app_token
        self.socket_outbox: queue.Queue = queue.Queue()
        self.socket_acks: list[dict[str, Any]] = []
        self.socket_connections = 0
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.calls: list[dict[str, Any]] = []
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}  # (channel, ts) → the current message
        self._ts = itertools.count(1)
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route("/api/{method}", self._call, methods=["POST", "GET"])
        self.app.add_api_websocket_route("/socket", self._socket)

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        with self._lock:
            return [c for c in self.calls if c["method"] == method]

    async def _call(self, method: str, request: Request):
        raw = await request.body()
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            params = json.loads(raw or b"{}")
        else:
            params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        params.update(dict(request.query_params.items()))
        for key in ("blocks", "attachments"):
            if isinstance(params.get(key), str):
                params[key] = json.loads(params[key])
        call = {"method": method, "params": params, "authorization": request.headers.get("authorization")}
        with self._lock:
            self.calls.append(call)
        if method == "apps.connections.open":
            if call["authorization"] != f"Bearer {self.app_token}":
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            return {"ok": True, "url": f"ws://{request.url.netloc}/socket"}
        if call["authorization"] != f"Bearer {self.token}":
            return JSONResponse({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://gemeente.slack.com/",
                "team": "Gemeente",
                "user": "vraagbaak",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            ts = f"{int(time.time())}.{next(self._ts):06d}"
            msg = {
                "ts": ts,
                "text": params.get("text"),
                "blocks": params.get("blocks"),
                "thread_ts": params.get("thread_ts"),
                "user": self.bot_user_id,
                "bot_id": self.bot_id,
            }
            with self._lock:
                self.messages[(params.get("channel"), ts)] = msg
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": msg}
        if method == "chat.update":
            where = (params.get("channel"), params.get("ts"))
            with self._lock:
                if where not in self.messages:
                    return {"ok": False, "error": "message_not_found"}
                self.messages[where].update(text=params.get("text"), blocks=params.get("blocks"))
            return {"ok": True, "channel": where[0], "ts": where[1], "text": params.get("text")}
        return {"ok": False, "error": "unknown_method"}

    def push(self, payload: dict[str, Any], type_: str = "events_api") -> str:
        """Deliver ``payload`` (an Events API body, …) over Socket Mode; returns the envelope id."""
        envelope_id = uuid.uuid4().hex
        self.socket_outbox.put(
            {
                "envelope_id": envelope_id,
                "type": type_,
                "accepts_response_payload": False,
                "payload": payload,
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def _socket(self, ws: WebSocket):
        import asyncio
        import queue

        await ws.accept()
        self.socket_connections += 1
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0VRAAG"}})

        async def read():
            while True:
                self.socket_acks.append(json.loads(await ws.receive_text()))

        reader = asyncio.create_task(read())
        try:
            while not reader.done():
                try:
                    await ws.send_json(self.socket_outbox.get_nowait())
                except queue.Empty:
                    await asyncio.sleep(0.05)
        finally:
            reader.cancel()


# --------------------------------------------------------------------------- Bot Framework


class FakeBotFramework:
    """A Bot Framework channel on loopback:

    * ``GET /.well-known/openidconfiguration`` and ``GET /keys``: OpenID metadata and a JWKS
      with a fresh RSA key (endorsed for ``msteams``);
    * :meth:`token`: a channel token signed with that key (claims can be overridden);
    * ``/teams/v3/conversations/…``: the connector that receives the bot's replies, typing
      indicators and updates (the activities' ``serviceUrl`` is ``<url>/teams/``), recording
      each with the bearer token it came with.
    """

    ISSUER = "https://api.botframework.com"

    def __init__(self, endorsements: tuple[str, ...] = ("msteams",)) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "fake-" + uuid.uuid4().hex[:8]
        self.endorsements = list(endorsements)
        self.base_url = ""  # set by the test once the server runs
        self.activities: list[dict[str, Any]] = []
        self.metadata_hits = 0
        self._lock = threading.Lock()
        self.app = FastAPI()
        self.app.add_api_route("/.well-known/openidconfiguration", self._metadata, methods=["GET"])
        self.app.add_api_route("/keys", self._keys, methods=["GET"])
        self.app.add_api_route("/teams/v3/conversations/{conversation_id}/activities", self._post, methods=["POST"])
        self.app.add_api_route(
            "/teams/v3/conversations/{conversation_id}/activities/{activity_id}", self._post, methods=["POST", "PUT"]
        )

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/.well-known/openidconfiguration"

    @property
    def service_url(self) -> str:
        return f"{self.base_url}/teams/"

    def jwk(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update(kid=self.kid, use="sig", alg="RS256", endorsements=self.endorsements)
        return jwk

    async def _metadata(self):
        with self._lock:
            self.metadata_hits += 1
        return {
            "issuer": self.ISSUER,
            "authorization_endpoint": "https://invalid.botframework.com",
            "jwks_uri": f"{self.base_url}/keys",
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        }

    async def _keys(self):
        return {"keys": [self.jwk()]}

    def token(self, app_id: str, *, key=None, kid: str | None = None, alg: str = "RS256", **claims) -> str:
        """A channel → bot token: ``iss`` Bot Framework, ``aud`` the app id, valid for an
        hour, ``serviceurl`` this connector. Keyword arguments override claims (None
        removes one)."""
        import jwt

        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.ISSUER,
            "aud": app_id,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + 3600,
            "serviceurl": self.service_url,
        }
        for k, v in claims.items():
            if v is None:
                payload.pop(k, None)
            else:
                payload[k] = v
        if alg == "none":
            return jwt.encode(payload, None, algorithm="none")  # type: ignore[arg-type]  # "none" takes no key
        return jwt.encode(payload, key or self.key, algorithm=alg, headers={"kid": kid or self.kid})

    async def _post(self, conversation_id: str, request: Request, activity_id: str | None = None):
        body = await request.json()
        record = {
            "method": request.method,
            "conversation_id": unquote(conversation_id),
            "activity_id": unquote(activity_id) if activity_id else None,
            "authorization": request.headers.get("authorization"),
            "activity": body,
        }
        with self._lock:
            self.activities.append(record)
        return {"id": activity_id if request.method == "PUT" else "reply-" + uuid.uuid4().hex[:8]}

    def sent(self, type_: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [a for a in self.activities if type_ is None or a["activity"].get("type") == type_]


def teams_message(
    service_url: str,
    text: str,
    *,
    conversation_type: str = "personal",
    tenant: str = "tenant-1",
    team: str | None = None,
    bot_id: str = "28:bot-app",
    bot_name: str = "Vraagbaak",
    mention: bool = False,
    activity_id: str | None = None,
    value: dict | None = None,
    conversation_id: str | None = None,
) -> dict[str, Any]:
    """An incoming Teams message activity as the channel sends it."""
    conv_id = conversation_id or (
        "19:channel-abc@thread.tacv2;messageid=1700000000000" if conversation_type == "channel" else "a:1personal-chat"
    )
    activity: dict[str, Any] = {
        "type": "message",
        "id": activity_id or uuid.uuid4().hex,
        "timestamp": "2025-03-01T10:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": "29:user-1", "name": "Jan Jansen", "aadObjectId": "aad-user-1"},
        "conversation": {"id": conv_id, "conversationType": conversation_type, "tenantId": tenant},
        "recipient": {"id": bot_id, "name": bot_name},
        "text": (f"<at>{bot_name}</at> {text}" if mention else text),
        "textFormat": "plain",
        "locale": "nl-NL",
        "channelData": {"tenant": {"id": tenant}},
    }
    if mention:
        activity["entities"] = [
            {"type": "mention", "text": f"<at>{bot_name}</at>", "mentioned": {"id": bot_id, "name": bot_name}}
        ]
    if team:
        activity["channelData"]["team"] = {"id": team}
        activity["channelData"]["channel"] = {"id": conv_id.split(";")[0]}
    if value is not None:
        activity["value"] = value
        activity["text"] = ""
    return activity


# --------------------------------------------------------------------------- HTTP


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, elapsed: float) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.elapsed = elapsed

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


def http_post(url: str, body: str | bytes, headers: dict[str, str] | None = None, timeout: float = 30.0) -> HttpResult:
    """POST with the standard library (no client library needed in the tests)."""
    import urllib.error
    import urllib.request

    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return HttpResult(
                resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read(), time.monotonic() - t0
            )
    except urllib.error.HTTPError as err:
        return HttpResult(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read(), time.monotonic() - t0)


class StaticTokenProvider:
    """An outgoing-token provider for the Agents SDK's connection manager that needs no
    Entra ID: it hands out ``outbound-<app id>`` and records what was asked for."""

    requests: ClassVar[list[tuple[str, list[str]]]] = []

    def __init__(self, configuration) -> None:
        self._configuration = configuration

    @property
    def configuration(self):
        return self._configuration

    async def get_access_token(self, resource_url: str, scopes: list[str], force_refresh: bool = False) -> str:
        StaticTokenProvider.requests.append((resource_url, list(scopes or [])))
        return f"outbound-{self._configuration.CLIENT_ID}"

    def get_token_credential(self):  # pragma: no cover - not used by the bot
        raise NotImplementedError
