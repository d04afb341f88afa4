"""Both bots end to end with the real default models on the demo corpus (slow): a signed
Slack @mention and an authenticated Teams message, each answered in Dutch with sources."""

from __future__ import annotations

import json
import time

import pytest

from service.app import create_app
from service.bots import cards
from service.bots.config import BotSettings
from service.bots.slack import mount_slack
from service.bots.teams import mount_teams
from service.bots.testing import (
    FakeBotFramework,
    FakeSlackAPI,
    StaticTokenProvider,
    http_post,
    slack_signature_headers,
    teams_message,
    wait_for,
)
from service.config import ServiceSettings
from service.testing import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

APP_ID = "00000000-1111-2222-3333-444444444444"
QUESTION = "Hoeveel Oekraïense ontheemden vangt de gemeente in totaal op?"
DOC = "voorbeeld/jaarstukken-2024-welzijn-gezondheid-zorg-diversiteit"


def test_slack_and_teams_answer_with_the_real_model(demo_pipeline, tmp_path):
    slack, bf = FakeSlackAPI(), FakeBotFramework()
    with LiveServer(slack.app) as slack_url, LiveServer(bf.app) as bf_url:
        bf.base_url = bf_url
        settings = BotSettings(
            slack_bot_token=slack.token,
            slack_signing_secret="s3cret",
            slack_api_url=slack_url + "/api/",
            teams_app_id=APP_ID,
            teams_app_password="x",
            teams_openid_metadata_url=bf.metadata_url,
            bots_document_url="https://intranet.example.nl/doc/{doc_id}",
        )
        app = create_app(
            demo_pipeline.settings, demo_pipeline, service_settings=ServiceSettings(data_dir=tmp_path / "data")
        )
        mount_slack(app, None, settings)
        mount_teams(app, None, settings, token_provider_factory=StaticTokenProvider)
        with LiveServer(app) as url:
            # Slack
            ts = f"{int(time.time())}.000100"
            body = json.dumps(
                {
                    "team_id": slack.team_id,
                    "api_app_id": "A1",
                    "type": "event_callback",
                    "event_id": "EvE2E1",
                    "event_time": int(time.time()),
                    "event": {
                        "type": "app_mention",
                        "user": "U1",
                        "text": f"<@{slack.bot_user_id}> {QUESTION}",
                        "ts": ts,
                        "channel": "CE2E",
                        "event_ts": ts,
                    },
                }
            )
            r = http_post(
                url + "/slack/events",
                body,
                {"Content-Type": "application/json", **slack_signature_headers("s3cret", body)},
            )
            assert r.status == 200 and r.elapsed < 3.0

            def slack_answer():
                return next(
                    (
                        m
                        for (ch, _), m in list(slack.messages.items())
                        if ch == "CE2E" and m["text"] != cards.PLACEHOLDER
                    ),
                    None,
                )

            msg = wait_for(slack_answer, timeout=600, interval=0.5)
            text = msg["blocks"][0]["text"]["text"]
            assert "1.500" in text and "[1]" in text, msg
            assert f"<https://intranet.example.nl/doc/{DOC}|" in msg["blocks"][1]["elements"][0]["text"]

            # Teams
            act = teams_message(bf.service_url, QUESTION, conversation_type="channel", team="t1", mention=True)
            r = http_post(
                url + "/api/teams/messages",
                json.dumps(act),
                {"Content-Type": "application/json", "Authorization": f"Bearer {bf.token(APP_ID)}"},
            )
            assert r.status in (200, 202) and r.elapsed < 3.0
            reply = wait_for(
                lambda: [a for a in bf.sent("message") if a["activity_id"] == act["id"]], timeout=600, interval=0.5
            )[0]
            assert bf.sent("typing")
            card = reply["activity"]["attachments"][0]["content"]
            assert "1.500" in card["body"][0]["text"] and "[1]" in card["body"][0]["text"], card
            assert any(b["text"].startswith("[1] ") and DOC in b["text"] for b in card["body"])
