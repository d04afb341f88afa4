"""The Teams bot against a fake Bot Framework on loopback: the real service app (fake LLM)
runs under uvicorn with the Agents SDK adapter; activities are sent with tokens signed by
the fake channel's RSA key (published as OpenID metadata + JWKS), and with broken tokens;
the replies, typing indicators and cards reaching the fake connector are checked."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from rag.settings import Settings
from service.app import create_app
from service.bots import cards
from service.bots.config import BotSettings
from service.bots.teams import mount_teams
from service.bots.testing import FakeBotFramework, StaticTokenProvider, http_post, teams_message, wait_for
from service.config import ServiceSettings
from service.testing import FakeLLM, LiveServer, build_index, make_pipeline
from tests.conftest import HashEmbedder

pytestmark = pytest.mark.timeout(120)

APP_ID = "00000000-1111-2222-3333-444444444444"
TENANT = "tenant-1"
SOC_DOC = "sociaal/vertrouwelijk-casusoverleg"
FIN_DOC = "financien/vertrouwelijk-grondexploitatie"


def _settings(root: Path) -> Settings:
    return Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)


def _bot_settings(fake: FakeBotFramework, **kw) -> BotSettings:
    values = {
        "teams_app_id": APP_ID,
        "teams_app_password": "not-used-with-the-static-token-provider",
        "teams_openid_metadata_url": fake.metadata_url,
        "teams_groups": {f"{TENANT}/team-fin": ["financien"], f"{TENANT}/personal": ["sociaal"], f"{TENANT}/*": []},
        "teams_typing_interval": 0.2,
        "bots_document_url": "https://intranet.example.nl/doc/{doc_id}",
    }
    values.update(kw)
    return BotSettings(**values)


class World:
    def __init__(self, root: Path, fake: FakeBotFramework) -> None:
        self.fake = fake
        self.llm = FakeLLM(delay=0.05)
        self.settings = _settings(root)
        self.cfg = ServiceSettings(data_dir=root / "data", rate_limit_per_minute=0)
        self.app = create_app(
            self.settings, make_pipeline(self.settings, HashEmbedder(), self.llm), service_settings=self.cfg
        )
        self.bot = mount_teams(self.app, None, _bot_settings(fake), token_provider_factory=StaticTokenProvider)
        # a second endpoint that only answers the tenant TEAMS_TENANT_ID
        self.tenant_bot = mount_teams(
            self.app,
            None,
            _bot_settings(fake, teams_tenant_id="other-tenant"),
            path="/api/teams/tenant-only",
            token_provider_factory=StaticTokenProvider,
        )
        self.url = ""

    def send(self, activity: dict, token: str | None = "valid", path: str = "/api/teams/messages"):
        headers = {"Content-Type": "application/json"}
        if token == "valid":
            token = self.fake.token(APP_ID)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return http_post(self.url + path, json.dumps(activity), headers)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("teams")
    build_index(root / "corpus", _settings(root), HashEmbedder())
    fake = FakeBotFramework()
    with LiveServer(fake.app) as fake_url:
        fake.base_url = fake_url
        w = World(root, fake)
        with LiveServer(w.app) as url:
            w.url = url
            yield w


def sent_for(fake: FakeBotFramework, conversation_id: str, type_: str | None = None) -> list[dict]:
    return [a for a in fake.sent(type_) if a["conversation_id"] == conversation_id]


def reply_to(fake: FakeBotFramework, activity: dict) -> dict:
    conv = activity["conversation"]["id"]
    return wait_for(
        lambda: next((a for a in sent_for(fake, conv, "message") if a["activity_id"] == activity["id"]), None)
    )


def card_of(record: dict) -> dict:
    (att,) = record["activity"]["attachments"]
    assert att["contentType"] == cards.ADAPTIVE_CARD_CONTENT_TYPE
    return att["content"]


# --------------------------------------------------------------------------- answering


def test_personal_chat_typing_then_adaptive_card(world):
    fake = world.fake
    act = teams_message(
        fake.service_url,
        "Wat bespreekt het casusoverleg kwartelhof?",
        tenant=TENANT,
        conversation_id="a:1personal-" + uuid.uuid4().hex[:6],
    )
    r = world.send(act)
    assert r.status in (200, 202) and r.elapsed < 3.0  # acknowledged before the LLM finishes
    reply = reply_to(fake, act)
    conv = act["conversation"]["id"]
    typing = sent_for(fake, conv, "typing")
    assert len(typing) >= 2, "a typing indicator at once and again while the LLM works"
    first_typing = fake.activities.index(typing[0])
    assert first_typing < fake.activities.index(reply)
    # replies go to the activity's serviceUrl with the bot's outgoing token, in reply to the question
    assert reply["method"] == "POST" and reply["activity_id"] == act["id"]
    assert all(a["authorization"] == f"Bearer outbound-{APP_ID}" for a in sent_for(fake, conv))
    assert reply["activity"]["replyToId"] == act["id"]
    assert reply["activity"]["recipient"]["id"] == act["from"]["id"]
    card = card_of(reply)
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5"
    assert "kwartelhof" in card["body"][0]["text"].lower() and "[1]" in card["body"][0]["text"]
    texts = [b["text"] for b in card["body"]]
    assert cards.SOURCES_TITLE in texts
    assert f"[1] [Casusoverleg Kwartelhof](https://intranet.example.nl/doc/{SOC_DOC})" in texts[2]
    feedback = {a["data"][cards.TEAMS_FEEDBACK_KEY]: a["data"]["answer_id"] for a in card["actions"]}
    assert set(feedback) == {"up", "down"} and len(feedback["up"]) == 32


def test_channel_mention_is_stripped_and_team_groups_apply(world):
    fake = world.fake
    act = teams_message(
        fake.service_url,
        "Wat levert de grondexploitatie zwavelkoepel op?",
        tenant=TENANT,
        conversation_type="channel",
        team="team-fin",
        mention=True,
        conversation_id=f"19:fin{uuid.uuid4().hex[:6]}@thread.tacv2;messageid=1700000000001",
    )
    assert world.send(act).status in (200, 202)
    reply = reply_to(fake, act)
    assert reply["conversation_id"] == act["conversation"]["id"]  # in the channel thread
    question = world.llm.prompts[-1][-1]["content"]
    assert "<at>" not in question and "Vraagbaak" not in question.split("Vraag:")[-1]
    card = card_of(reply)
    assert "zwavelkoepel" in card["body"][0]["text"].lower()
    assert FIN_DOC in json.dumps(card)


def test_team_without_mapping_sees_public_documents_only(world):
    fake = world.fake
    act = teams_message(
        fake.service_url,
        "Wat levert de grondexploitatie zwavelkoepel op?",
        tenant=TENANT,
        conversation_type="channel",
        team="team-open",
        mention=True,
        conversation_id=f"19:open{uuid.uuid4().hex[:6]}@thread.tacv2;messageid=1",
    )
    world.send(act)
    text = json.dumps(card_of(reply_to(fake, act)), ensure_ascii=False).lower()
    assert "zwavelkoepel" not in text and "kwartelhof" not in text


def test_duplicate_activity_answered_once(world):
    fake = world.fake
    act = teams_message(
        fake.service_url, "Wat is een motie?", tenant=TENANT, conversation_id="a:dup-" + uuid.uuid4().hex[:6]
    )
    world.send(act)
    world.send(act)
    reply_to(fake, act)
    time.sleep(0.5)
    assert len(sent_for(fake, act["conversation"]["id"], "message")) == 1


def test_other_tenant_gets_no_answer(world):
    fake = world.fake
    act = teams_message(
        fake.service_url, "Wat is een motie?", tenant=TENANT, conversation_id="a:tenant-" + uuid.uuid4().hex[:6]
    )
    assert world.send(act, path="/api/teams/tenant-only").status in (200, 202)
    time.sleep(0.5)
    assert not sent_for(fake, act["conversation"]["id"])


def test_feedback_from_the_card_is_stored(world):
    fake = world.fake
    conv = "a:fb-" + uuid.uuid4().hex[:6]
    act = teams_message(
        fake.service_url,
        "",
        tenant=TENANT,
        conversation_id=conv,
        value={cards.TEAMS_FEEDBACK_KEY: "up", "answer_id": "a" * 32},
    )
    assert world.send(act).status in (200, 202)
    rows = wait_for(lambda: [x for x in world.app.state.vb.feedback.rows() if x["answer_id"] == "a" * 32])
    assert rows[0]["rating"] == "up" and rows[0]["caller"] == f"teams:{TENANT}/aad-user-1"
    thanks = wait_for(lambda: sent_for(fake, conv, "message"))
    assert cards.FEEDBACK_THANKS in thanks[0]["activity"]["text"]


# --------------------------------------------------------------------------- authentication


def test_bad_tokens_are_refused_and_nothing_is_sent(world):
    from cryptography.hazmat.primitives.asymmetric import rsa

    fake = world.fake
    conv = "a:auth-" + uuid.uuid4().hex[:6]
    act = teams_message(fake.service_url, "Wat is een motie?", tenant=TENANT, conversation_id=conv)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    bad = {
        "no header": None,
        "not a jwt": "abc.def",
        "unsigned (alg none)": fake.token(APP_ID, alg="none"),
        "wrong audience": fake.token("some-other-bot"),
        "wrong issuer": fake.token(APP_ID, iss="https://evil.example.com"),
        "expired": fake.token(APP_ID, exp=now - 3600, iat=now - 7200, nbf=now - 7200),
        "not yet valid": fake.token(APP_ID, nbf=now + 3600),
        "no exp": fake.token(APP_ID, exp=None),
        "signed by another key": fake.token(APP_ID, key=other_key),
        "unknown key id": fake.token(APP_ID, key=other_key, kid="unknown-kid"),
        "other serviceUrl": fake.token(APP_ID, serviceurl="https://smba.trafficmanager.net/emea/"),
    }
    for name, token in bad.items():
        r = world.send(act, token=token)
        assert r.status == 401, name
    # an HMAC token "signed" with the public key (algorithm confusion)
    import base64
    import hashlib
    import hmac as _hmac

    def b64(d: bytes) -> str:
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "kid": fake.kid, "typ": "JWT"}).encode())
    payload = b64(
        json.dumps({"iss": fake.ISSUER, "aud": APP_ID, "exp": now + 600, "serviceurl": fake.service_url}).encode()
    )
    sig = b64(_hmac.new(json.dumps(fake.jwk()).encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest())
    assert world.send(act, token=f"{header}.{payload}.{sig}").status == 401
    # a key endorsed for another channel: the emulator/webchat cannot pass as Teams
    webchat = dict(act, channelId="webchat")
    assert world.send(webchat).status == 401
    time.sleep(0.3)
    assert not sent_for(fake, conv)
    # and the same activity with a good token is answered
    assert world.send(act).status in (200, 202)
    reply_to(fake, act)


def test_disabled_without_app_id(tmp_path):
    """No app id: no endpoint at all (404), never the SDK's anonymous emulator mode."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    for s in (BotSettings(teams_app_id=None), BotSettings(teams_app_id="  ")):
        assert mount_teams(app, lambda: None, s, token_provider_factory=StaticTokenProvider) is None
    assert mount_teams(app, lambda: None, BotSettings(teams_app_id=APP_ID, teams_app_password=None)) is None
    with TestClient(app) as c:
        act = teams_message("https://smba.trafficmanager.net/emea/", "Wat is een motie?")
        assert c.post("/api/teams/messages", json=act).status_code == 404


def test_question_from_activity():
    from microsoft_agents.activity import Activity

    act = Activity.model_validate(
        teams_message(
            "https://x/", "Wat kost een &quot;paspoort&quot;?", mention=True, conversation_type="channel", team="t"
        )
    )
    from service.bots.teams import question_from_activity

    assert question_from_activity(act) == 'Wat kost een "paspoort"?'
    act = Activity.model_validate(teams_message("https://x/", "vraag <at>Piet</at> over <b>afval</b>"))
    assert question_from_activity(act) == "vraag Piet over afval"


def test_each_bad_token_fails_for_its_own_reason(world):
    """The validator's reasons (logged, never sent to the caller)."""
    import asyncio

    from cryptography.hazmat.primitives.asymmetric import rsa

    from service.bots.teams_auth import AuthError, BotFrameworkAuth

    fake = world.fake
    auth = BotFrameworkAuth(APP_ID, fake.metadata_url)
    act = teams_message(fake.service_url, "x")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    cases = {
        "algorithm 'none' not accepted": fake.token(APP_ID, alg="none"),
        "InvalidAudienceError": fake.token("other"),
        "InvalidIssuerError": fake.token(APP_ID, iss="https://evil.example.com"),
        "ExpiredSignatureError": fake.token(APP_ID, exp=now - 3600),
        "ImmatureSignatureError": fake.token(APP_ID, nbf=now + 3600),
        "MissingRequiredClaimError": fake.token(APP_ID, exp=None),
        "InvalidSignatureError": fake.token(APP_ID, key=other_key),
        "unknown signing key": fake.token(APP_ID, key=other_key, kid="nope"),
        "serviceUrl does not match": fake.token(APP_ID, serviceurl="https://elsewhere.example.com/"),
    }

    async def check():
        claims, _ = await auth.authenticate("Bearer " + fake.token(APP_ID), act)
        assert claims["aud"] == APP_ID
        for reason, token in cases.items():
            with pytest.raises(AuthError, match=reason):
                await auth.authenticate("Bearer " + token, act)
        with pytest.raises(AuthError, match="not endorsed"):
            await auth.authenticate("Bearer " + fake.token(APP_ID), dict(act, channelId="emulator"))
        with pytest.raises(AuthError, match="not a bearer"):
            await auth.authenticate("Basic " + fake.token(APP_ID), act)

    asyncio.run(check())
