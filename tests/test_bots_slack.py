"""The Slack bot against a fake Slack Web API on loopback: the real service app (with a
fake LLM) runs under uvicorn, signed (and badly signed) Events API requests are sent to
it, and the messages the bot posts to the fake API are checked."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from rag.settings import Settings
from service.app import create_app
from service.bots import cards
from service.bots.config import BotSettings
from service.bots.slack import mount_slack, question_text
from service.bots.testing import FakeSlackAPI, http_post, slack_signature_headers, wait_for
from service.config import ServiceSettings
from service.feedback import FeedbackStore
from service.testing import FakeLLM, LiveServer, build_index, make_pipeline
from tests.conftest import HashEmbedder

pytestmark = pytest.mark.timeout(120)

SECRET = "test-signing-secret"
TEAM = "T0TEST"
SOC_DOC = "sociaal/vertrouwelijk-casusoverleg"


def _settings(root: Path) -> Settings:
    return Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)


class World:
    def __init__(self, root: Path, fake: FakeSlackAPI, fake_url: str, llm: FakeLLM, provider=None) -> None:
        self.fake = fake
        self.llm = llm
        self.settings = _settings(root)
        self.cfg = ServiceSettings(data_dir=root / f"data-{uuid.uuid4().hex[:6]}", rate_limit_per_minute=0)
        self.pipeline = make_pipeline(self.settings, HashEmbedder(), llm)
        self.app = create_app(self.settings, self.pipeline, service_settings=self.cfg)
        self.bot_settings = BotSettings(
            slack_bot_token=fake.token,
            slack_signing_secret=SECRET,
            slack_api_url=fake_url + "/api/",
            slack_groups={f"{TEAM}/CSOC": ["sociaal"], f"{TEAM}/im": ["sociaal"], f"{TEAM}/*": []},
            bots_document_url="https://intranet.example.nl/doc/{doc_id}",
        )
        self.bolt = mount_slack(self.app, provider, self.bot_settings)
        self.url = ""

    def post(
        self,
        payload: dict,
        *,
        secret: str = SECRET,
        timestamp: int | None = None,
        headers=None,
        signed: bool = True,
        form: bool = False,
    ):
        body = urlencode({"payload": json.dumps(payload)}) if form else json.dumps(payload)
        h = {"Content-Type": "application/x-www-form-urlencoded" if form else "application/json"}
        if signed:
            h.update(slack_signature_headers(secret, body, timestamp))
        h.update(headers or {})
        return http_post(self.url + "/slack/events", body, h)


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("slack")
    build_index(root / "corpus", _settings(root), HashEmbedder())
    return root


@pytest.fixture(scope="module")
def fake_slack():
    fake = FakeSlackAPI(team_id=TEAM)
    with LiveServer(fake.app) as url:
        yield fake, url


@pytest.fixture(scope="module")
def world(corpus_root, fake_slack):
    fake, url = fake_slack
    w = World(corpus_root, fake, url, FakeLLM(delay=0.02))
    with LiveServer(w.app) as app_url:
        w.url = app_url
        yield w


def event(
    text: str,
    *,
    channel: str = "CSOC",
    kind: str = "app_mention",
    user: str = "U123",
    ts: str | None = None,
    event_id: str | None = None,
    **extra,
) -> dict:
    ts = ts or f"{int(time.time())}.{uuid.uuid4().int % 10**6:06d}"
    ev = {"type": kind, "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts, "team": TEAM}
    if kind == "message":
        ev["channel_type"] = "im" if channel.startswith("D") else "channel"
    ev.update(extra)
    return {
        "token": "unused",
        "team_id": TEAM,
        "api_app_id": "A0VRAAG",
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": "UBOT", "is_bot": True}],
        "event": ev,
    }


def posts_in(fake: FakeSlackAPI, channel: str, thread_ts: str | None = None) -> list[dict]:
    return [
        c["params"]
        for c in fake.calls_to("chat.postMessage")
        if c["params"].get("channel") == channel and (thread_ts is None or c["params"].get("thread_ts") == thread_ts)
    ]


def final_message(fake: FakeSlackAPI, channel: str, thread_ts: str) -> dict:
    """Wait for the placeholder in the thread to be replaced; return the updated message."""
    placeholder = wait_for(lambda: posts_in(fake, channel, thread_ts))[0]

    def updated():
        for (ch, _ts), msg in list(fake.messages.items()):
            if ch == channel and msg.get("thread_ts") == thread_ts and msg["text"] != cards.PLACEHOLDER:
                return msg
        return None

    msg = wait_for(updated)
    assert placeholder["text"] == cards.PLACEHOLDER
    return msg


def _all_text(blocks: list[dict]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# --------------------------------------------------------------------------- answering


def test_mention_answered_in_thread_placeholder_then_update(world):
    fake = world.fake
    payload = event("<@UBOT> Wat bespreekt het casusoverleg kwartelhof?", channel="CSOC")
    ts = payload["event"]["ts"]
    r = world.post(payload)
    assert r.status == 200 and r.elapsed < 3.0  # acknowledged at once, the LLM works afterwards
    msg = final_message(fake, "CSOC", ts)
    # the placeholder was posted in the thread of the question, then updated in place
    posts = posts_in(fake, "CSOC", ts)
    assert len(posts) == 1 and posts[0]["blocks"] == cards.slack_placeholder_blocks()
    updates = [c["params"] for c in fake.calls_to("chat.update") if c["params"]["channel"] == "CSOC"]
    assert [u["ts"] for u in updates if u["ts"] == msg["ts"]], "the placeholder message itself is updated"
    blocks = msg["blocks"]
    assert blocks[0]["type"] == "section" and "kwartelhof" in blocks[0]["text"]["text"].lower()
    assert "[1]" in blocks[0]["text"]["text"]
    sources = blocks[1]
    assert sources["type"] == "context"
    assert f"<https://intranet.example.nl/doc/{SOC_DOC}|Casusoverleg Kwartelhof>" in sources["elements"][0]["text"]
    actions = blocks[-1]
    assert actions["type"] == "actions" and {e["action_id"] for e in actions["elements"]} == {
        cards.SLACK_ACTION_UP,
        cards.SLACK_ACTION_DOWN,
    }
    answer_id = actions["elements"][0]["value"]
    assert len(answer_id) == 32
    assert "kwartelhof" in msg["text"].lower()  # the plain-text fallback
    # every call carried the bot token; the question's mention of the bot is not in the question
    assert all(c["authorization"] == f"Bearer {fake.token}" for c in fake.calls)
    assert "UBOT" not in world.llm.prompts[-1][-1]["content"]


def test_channel_without_mapping_sees_public_documents_only(world):
    payload = event("<@UBOT> Wat bespreekt het casusoverleg kwartelhof?", channel="COPEN")
    world.post(payload)
    msg = final_message(world.fake, "COPEN", payload["event"]["ts"])
    text = _all_text(msg["blocks"]) + msg["text"]
    assert "kwartelhof" not in text.lower() and "casusoverleg" not in text.lower()
    assert "zwavelkoepel" not in text.lower()


def test_direct_message_answered_in_thread(world):
    payload = event(
        "Hoeveel geld besteedt de gemeente aan mantelzorgondersteuning in 2023?", channel="DU123", kind="message"
    )
    world.post(payload)
    msg = final_message(world.fake, "DU123", payload["event"]["ts"])
    assert "mantelzorg" in msg["blocks"][0]["text"]["text"].lower()
    assert "Begroting 2023 zorg" in msg["blocks"][1]["elements"][0]["text"]


def test_answers_go_through_the_services_answering_service(world):
    """The bot answers through the service's AnswerService: its answers are in the
    service's /metrics, by endpoint, and the LLM gate is free again afterwards."""
    import urllib.request

    payload = event("<@UBOT> Wat is een motie over preventie?", channel="CMETRICS")
    world.post(payload)
    final_message(world.fake, "CMETRICS", payload["event"]["ts"])
    text = urllib.request.urlopen(world.url + "/metrics", timeout=5).read().decode()
    assert 'vraagbaak_answers_total{endpoint="slack"' in text
    assert wait_for(lambda: world.app.state.vb.gate.in_flight == 0)


def test_not_ready_and_failure_are_told_in_dutch(corpus_root, fake_slack):
    fake, url = fake_slack
    w = World(corpus_root, fake, url, FakeLLM(), provider=lambda: None)  # models still loading
    with LiveServer(w.app) as app_url:
        w.url = app_url
        payload = event("<@UBOT> Wat is een motie?", channel="CLOAD")
        assert w.post(payload).status == 200
        msg = final_message(fake, "CLOAD", payload["event"]["ts"])
        assert cards.NOT_READY in msg["blocks"][0]["text"]["text"]


# --------------------------------------------------------------------------- verification


def test_unsigned_wrongly_signed_and_replayed_requests_are_rejected(world):
    before = len(world.fake.calls_to("chat.postMessage"))
    payload = event("<@UBOT> Wat is een motie?", channel="CSIG")
    assert world.post(payload, signed=False).status == 401
    assert world.post(payload, secret="not-the-secret").status == 401
    old = int(time.time()) - 10 * 60  # correctly signed, but 10 minutes old: a replay
    assert world.post(payload, timestamp=old).status == 401
    future = int(time.time()) + 10 * 60
    assert world.post(payload, timestamp=future).status == 401
    tampered = slack_signature_headers(SECRET, json.dumps(payload))
    other = dict(payload, event=dict(payload["event"], text="<@UBOT> iets anders"))
    assert (
        http_post(
            world.url + "/slack/events", json.dumps(other), {"Content-Type": "application/json", **tampered}
        ).status
        == 401
    )
    time.sleep(0.3)
    assert len(world.fake.calls_to("chat.postMessage")) == before
    assert not posts_in(world.fake, "CSIG")


def test_url_verification_challenge(world):
    r = world.post({"token": "x", "challenge": "abc123", "type": "url_verification"})
    assert r.status == 200 and "abc123" in r.text
    assert world.post({"token": "x", "challenge": "abc123", "type": "url_verification"}, signed=False).status == 401


def test_retries_and_duplicate_events_are_answered_once(world):
    payload = event("<@UBOT> Wat is een motie over preventie?", channel="CRETRY")
    ts = payload["event"]["ts"]
    assert world.post(payload).status == 200
    final_message(world.fake, "CRETRY", ts)
    r = world.post(payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert r.status == 200 and r.headers.get("x-slack-no-retry") == "1"
    assert world.post(payload).status == 200  # the same event id again, without the header
    # the same DM delivered twice, as message.im and as app_mention (two event ids)
    dm = event("<@UBOT> Wat is een motie?", channel="DDUP", kind="message")
    mention = event(dm["event"]["text"], channel="DDUP", ts=dm["event"]["ts"])
    world.post(dm)
    world.post(mention)
    final_message(world.fake, "DDUP", dm["event"]["ts"])
    time.sleep(0.5)
    assert len(posts_in(world.fake, "CRETRY")) == 1
    assert len(posts_in(world.fake, "DDUP")) == 1
    assert payload["event_id"] in world.bolt.vraagbaak_seen_events


def test_own_and_other_bot_messages_are_ignored(world):
    own = event("Ik zoek het op…", channel="DOWN", kind="message", user="UBOT")
    other_bot = event("Hallo", channel="DOWN", kind="message", user="U999", bot_id="B999")
    edited = event("Wat is een motie?", channel="DOWN", kind="message", subtype="message_changed")
    for p in (own, other_bot, edited):
        assert world.post(p).status == 200
    time.sleep(0.5)
    assert not posts_in(world.fake, "DOWN")


# --------------------------------------------------------------------------- feedback


def test_feedback_buttons_land_in_the_feedback_store(world):
    payload = event("<@UBOT> Wat bespreekt het casusoverleg kwartelhof?", channel="CSOC")
    world.post(payload)
    msg = final_message(world.fake, "CSOC", payload["event"]["ts"])
    answer_id = msg["blocks"][-1]["elements"][1]["value"]
    click = {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "gemeente"},
        "user": {"id": "U123", "username": "jan", "team_id": TEAM},
        "api_app_id": "A0VRAAG",
        "token": "unused",
        "container": {"type": "message", "message_ts": msg["ts"], "channel_id": "CSOC", "is_ephemeral": False},
        "trigger_id": "1.2.3",
        "channel": {"id": "CSOC", "name": "sociaal"},
        "message": {"type": "message", "ts": msg["ts"], "text": msg["text"], "blocks": msg["blocks"]},
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [
            {
                "type": "button",
                "block_id": cards.SLACK_FEEDBACK_BLOCK,
                "action_id": cards.SLACK_ACTION_DOWN,
                "value": answer_id,
                "action_ts": str(time.time()),
            }
        ],
    }
    assert world.post(click, form=True, signed=False).status == 401  # interactivity is verified too
    r = world.post(click, form=True)
    assert r.status == 200
    store = world.app.state.vb.feedback
    rows = wait_for(lambda: [x for x in store.rows() if x["answer_id"] == answer_id])
    assert rows[0]["rating"] == "down" and rows[0]["caller"] == f"slack:{TEAM}/U123"
    # the same store serves GET /v1/feedback/export
    admin = world.app.state.vb.keys.add(f"admin-{uuid.uuid4().hex[:6]}", "admin")
    import urllib.request

    req = urllib.request.Request(world.url + "/v1/feedback/export", headers={"X-API-Key": admin})
    exported = urllib.request.urlopen(req, timeout=10).read().decode()
    assert answer_id in exported and '"caller": "slack:T0TEST/U123"' in exported
    assert FeedbackStore(world.cfg.feedback_db).count() >= 1
    # the buttons are replaced by a thank-you line
    done = wait_for(
        lambda: (
            cards.FEEDBACK_THANKS in json.dumps(world.fake.messages[("CSOC", msg["ts"])]["blocks"], ensure_ascii=False)
        )
    )
    assert done
    blocks = world.fake.messages[("CSOC", msg["ts"])]["blocks"]
    assert not [b for b in blocks if b["type"] == "actions"]


# --------------------------------------------------------------------------- mounting, parsing


def test_not_mounted_without_tokens(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    assert mount_slack(app, lambda: None, BotSettings(slack_bot_token=None, slack_signing_secret=None)) is None
    assert mount_slack(app, lambda: None, BotSettings(slack_bot_token="xoxb-1", slack_signing_secret=None)) is None
    with TestClient(app) as c:
        assert c.post("/slack/events", json={}).status_code == 404


def test_question_text():
    assert question_text("<@UBOT> Wat kost &lt;een&gt; paspoort?", "UBOT") == "Wat kost <een> paspoort?"
    assert question_text("<@UBOT> vraag van <@U999|piet> en <@U998>", "UBOT") == "vraag van piet en"
    assert question_text("<@UBOT|vraagbaak> zie <https://a.nl/x|de site> en <#C1|sociaal> <!here>", "UBOT") == (
        "zie de site en #sociaal"
    )


# --------------------------------------------------------------------------- as its own process


def test_bots_as_their_own_process_over_http_and_socket_mode(corpus_root, fake_slack, tmp_path):
    """`vraagbaak bots serve`: the bots-only app answers a signed event over HTTP, and in
    Socket Mode an event delivered over the (fake) WebSocket, acknowledging its envelope."""
    from service.bots.server import create_bots_app

    fake, url = fake_slack
    settings = _settings(corpus_root)
    pipeline = make_pipeline(settings, HashEmbedder(), FakeLLM())
    bots = BotSettings(
        slack_bot_token=fake.token,
        slack_signing_secret=SECRET,
        slack_app_token=fake.app_token,
        slack_api_url=url + "/api/",
        teams_app_id=None,
    )
    cfg = ServiceSettings(data_dir=tmp_path / "data")
    app = create_bots_app(settings, pipeline, bots, cfg)
    with LiveServer(app) as app_url:
        assert http_post(app_url + "/api/teams/messages", "{}").status == 404  # Teams not configured
        import urllib.request

        assert json.loads(urllib.request.urlopen(app_url + "/readyz", timeout=5).read())["status"] == "ready"
        payload = event("<@UBOT> Wat is een motie over preventie?", channel="CPROC")
        body = json.dumps(payload)
        r = http_post(
            app_url + "/slack/events",
            body,
            {"Content-Type": "application/json", **slack_signature_headers(SECRET, body)},
        )
        assert r.status == 200
        msg = final_message(fake, "CPROC", payload["event"]["ts"])
        assert "preventie" in msg["blocks"][0]["text"]["text"]

    app = create_bots_app(settings, pipeline, bots, cfg, socket_mode=True)
    with LiveServer(app) as app_url:
        assert http_post(app_url + "/slack/events", "{}").status == 404  # no public endpoint in Socket Mode
        wait_for(lambda: fake.socket_connections)
        payload = event("<@UBOT> Wat is een motie over preventie?", channel="CSOCKET")
        envelope_id = fake.push(payload)
        msg = final_message(fake, "CSOCKET", payload["event"]["ts"])
        assert "preventie" in msg["blocks"][0]["text"]["text"]
        assert any(a.get("envelope_id") == envelope_id for a in fake.socket_acks)
