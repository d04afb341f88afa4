"""The bots' parts without a platform: Slack blocks, the Adaptive Card, settings and group
mapping, the shared answerer (access filter, LLM gate, audit, notices), the Teams app
package, and the rendered examples."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib

import pytest

from rag.schema import Answer, Citation, ModelInfo
from service.bots import cards
from service.bots.config import BotSettings, lookup_groups
from service.bots.manifest import build_teams_manifest, register, teams_manifest
from service.bots.render_examples import EXAMPLES_DIR, dumps, rendered

MODEL = ModelInfo(llm="llm", embedder="emb")
APP_ID = "00000000-1111-2222-3333-444444444444"


def _answer(text="Het kost 5 & meer <b>euro</b> [1].", **kw) -> Answer:
    cits = kw.pop("citations", None)
    if cits is None:
        cits = [
            Citation(
                marker=1,
                doc_id="openbaar/tarieven",
                title="Tarieven <2024> & kosten",
                source="data/tarieven.md",
                section="Tarieven › Leges",
                snippet="…",
            ),
            Citation(
                marker=2,
                doc_id="openbaar/nota",
                title="Nota [concept]",
                source="https://x.nl/a|b>c.pdf",
                page=3,
                snippet="…",
            ),
        ]
    return Answer(answer=text, citations=cits, model=MODEL, id="abc123", **kw)


# --------------------------------------------------------------------------- Slack


def test_slack_blocks_escape_link_and_carry_the_answer_id():
    blocks = cards.slack_blocks(_answer(), document_url="https://intranet.nl/doc/{doc_id}")
    assert [b["type"] for b in blocks] == ["section", "context", "context", "actions"]
    assert blocks[0]["text"]["text"] == "Het kost 5 &amp; meer &lt;b&gt;euro&lt;/b&gt; [1]."
    sources = blocks[1]["elements"][0]["text"]
    assert sources.splitlines()[0] == "*Bronnen*"
    assert "[1] <https://intranet.nl/doc/openbaar/tarieven|Tarieven &lt;2024&gt; &amp; kosten> — Leges" in sources
    # a '|' or '>' in a URL cannot end the link early; a PDF page becomes an anchor
    assert "[2] <https://x.nl/a%7Cb%3Ec.pdf#page=3|Nota [concept]> — blz. 3" in sources
    buttons = blocks[3]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        (cards.SLACK_ACTION_UP, "abc123"),
        (cards.SLACK_ACTION_DOWN, "abc123"),
    ]
    assert blocks[3]["block_id"] == cards.SLACK_FEEDBACK_BLOCK
    assert "<" not in cards.slack_text(_answer()).replace("&lt;", "")


def test_slack_blocks_without_links_refusal_and_limits():
    a = _answer(citations=[Citation(marker=1, doc_id="d", title="Titel", source="data/d.md", snippet="…")])
    assert "[1] Titel" in cards.slack_blocks(a)[1]["elements"][0]["text"]  # no template: no link
    refusal = Answer(
        answer="Dat staat niet in de documenten die ik kan raadplegen.", refused=True, model=MODEL, id="r1"
    )
    blocks = cards.slack_blocks(refusal)
    assert blocks[0]["text"]["text"].startswith(f":information_source: *{cards.REFUSAL_TITLE}*\nDat staat niet")
    assert [b["type"] for b in blocks] == ["section", "actions"]
    assert cards.slack_text(refusal).startswith(cards.REFUSAL_TITLE)
    long = cards.slack_blocks(_answer(text="woord " * 2000), feedback=False)
    assert len(long[0]["text"]["text"]) <= 3000 and long[-1]["type"] != "actions"
    assert (
        cards.slack_blocks(_answer(text="Dit is **belangrijk** [1]."))[0]["text"]["text"] == "Dit is *belangrijk* [1]."
    )
    many = _answer(
        citations=[Citation(marker=i, doc_id=f"d{i}", title=f"T{i}", source="s", snippet="…") for i in range(1, 13)]
    )
    assert "… en nog 3" in cards.slack_blocks(many)[1]["elements"][0]["text"]


def test_slack_feedback_done_replaces_the_buttons():
    blocks = cards.slack_blocks(_answer())
    done = cards.slack_feedback_done_blocks(blocks, "up")
    assert not [b for b in done if b["type"] == "actions"]
    assert done[-1]["elements"][0]["text"] == f"👍 {cards.FEEDBACK_THANKS}"


# --------------------------------------------------------------------------- Teams


def test_adaptive_card_answer_sources_and_feedback():
    card = cards.adaptive_card(_answer(), document_url="https://intranet.nl/doc/{doc_id}")
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.5" and "$schema" in card
    texts = [b["text"] for b in card["body"]]
    assert texts[0] == "Het kost 5 & meer <b>euro</b> [1]."
    assert texts[1] == cards.SOURCES_TITLE and card["body"][1]["separator"] is True
    assert texts[2] == "[1] [Tarieven <2024> & kosten](https://intranet.nl/doc/openbaar/tarieven) — Leges"
    assert texts[3] == "[2] [Nota (concept)](https://x.nl/a|b>c.pdf#page=3) — blz. 3"
    assert texts[-1] == cards.DISCLAIMER
    assert [a["data"] for a in card["actions"]] == [
        {cards.TEAMS_FEEDBACK_KEY: "up", "answer_id": "abc123"},
        {cards.TEAMS_FEEDBACK_KEY: "down", "answer_id": "abc123"},
    ]
    assert all(a["type"] == "Action.Submit" for a in card["actions"])
    assert "actions" not in cards.adaptive_card(_answer(), feedback=False)


def test_adaptive_card_refusal():
    refusal = Answer(answer="Dat staat niet in de documenten die ik kan raadplegen.", refused=True, model=MODEL)
    card = cards.adaptive_card(refusal)
    assert card["body"][0] == {
        "type": "TextBlock",
        "text": cards.REFUSAL_TITLE,
        "weight": "Bolder",
        "color": "Warning",
        "wrap": True,
    }
    assert card["body"][1]["text"].startswith("Dat staat niet")
    assert len(card["body"]) == 2
    assert cards.teams_text(refusal).startswith(cards.REFUSAL_TITLE)


def test_document_link():
    c = Citation(marker=1, doc_id="map/doc één", title="t", source="data/map/doc één.pdf", page=4, snippet="")
    assert cards.document_link(c) is None
    assert cards.document_link(c, "https://i.nl/d/{doc_id}") == "https://i.nl/d/map/doc%20%C3%A9%C3%A9n"
    assert (
        cards.document_link(c, "https://i.nl/f?p={source}") == "https://i.nl/f?p=data%2Fmap%2Fdoc%20%C3%A9%C3%A9n.pdf"
    )
    web = c.model_copy(update={"source": "https://www.gemeente.nl/a.pdf"})
    assert cards.document_link(web) == "https://www.gemeente.nl/a.pdf#page=4"


def test_document_link_prefers_the_viewer_and_the_public_passage():
    c = Citation(marker=1, doc_id="d", title="t", source="data/d.pdf", page=4, snippet="")
    viewer = "https://vraagbaak.gemeente.nl/v1/documents/d/view?chunk=3&exp=1&g=&sig=ab#passage"
    assert cards.document_link(c.model_copy(update={"url": viewer}), "https://i.nl/d/{doc_id}") == viewer
    # a relative viewer link (no public base URL configured) cannot be followed from Slack/Teams
    relative = c.model_copy(update={"url": "/v1/documents/d/view?sig=ab"})
    assert cards.document_link(relative, "https://i.nl/d/{doc_id}") == "https://i.nl/d/d"
    page = c.model_copy(
        update={"source": "https://www.rijksoverheid.nl/x", "public_url": "https://www.rijksoverheid.nl/x#:~:text=a"}
    )
    assert cards.document_link(page) == "https://www.rijksoverheid.nl/x#:~:text=a"


def test_source_label_shows_type_and_date_unless_the_title_says_it():
    c = Citation(
        marker=1, doc_id="d", title="Motie van zorg naar preventie", source="s", snippet="", page=3, page_end=4
    )
    assert cards.source_label(c.model_copy(update={"label": "Raadsbrief 26-1-2022"})) == (
        "Motie van zorg naar preventie",
        "Raadsbrief 26-1-2022, blz. 3–4",
    )
    same = c.model_copy(update={"title": "Begroting 2023 zorg", "label": "Begroting 2023", "page_end": None})
    assert cards.source_label(same) == ("Begroting 2023 zorg", "blz. 3")


def test_rendered_examples_link_every_source_to_the_viewer():
    from service.bots import render_examples

    answer = render_examples.example_answer()
    slack = cards.slack_sources_text(answer)
    card = cards.adaptive_card(answer)
    for c in answer.citations:
        assert c.url and c.url.startswith("https://vraagbaak.gemeente.nl/v1/documents/")
        assert f"<{c.url}|" in slack
        assert any(f"]({c.url})" in b.get("text", "") for b in card["body"])


# --------------------------------------------------------------------------- settings


def test_settings_from_env_and_group_lookup(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-env")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "sekret")
    monkeypatch.setenv("TEAMS_APP_ID", APP_ID)
    monkeypatch.setenv("TEAMS_APP_PASSWORD", "pw")
    monkeypatch.setenv("TEAMS_TENANT_ID", "tid")
    monkeypatch.setenv("VRAAGBAAK_SLACK_GROUPS", '{"T1/C1": ["sociaal"], "T1/im": ["a"], "T1/*": [], "*": ["x"]}')
    monkeypatch.setenv("VRAAGBAAK_TEAMS_GROUPS", '{"tid/team1": ["financien"]}')
    s = BotSettings()
    assert s.slack_enabled and s.teams_enabled and s.teams_tenant_id == "tid"
    assert s.secret("slack_bot_token") == "xoxb-env" and "xoxb-env" not in repr(s) and "pw" not in repr(s)
    assert lookup_groups(s.slack_groups, "T1", "C1") == ["sociaal"]
    assert lookup_groups(s.slack_groups, "T1", "D9", "im") == ["a"]
    assert lookup_groups(s.slack_groups, "T1", "C2") == []
    assert lookup_groups(s.slack_groups, "T2", "C1") == ["x"]
    assert lookup_groups(s.teams_groups, "tid", "team1", "channel") == ["financien"]
    assert lookup_groups(s.teams_groups, "tid", "", "personal") == []  # nothing matches: public only
    # an argument replaces the environment's mapping, never merges with it
    assert BotSettings(slack_groups={"T9/C9": ["b"]}).slack_groups == {"T9/C9": ["b"]}


def test_settings_reject_bad_mappings(monkeypatch):
    for env in ('{"C1": ["x"]}', '{"T1/C1": ["bad group!"]}', "not json"):
        monkeypatch.setenv("VRAAGBAAK_SLACK_GROUPS", env)
        with pytest.raises(ValueError):
            BotSettings()


def test_settings_from_toml(tmp_path, monkeypatch):
    cfg = tmp_path / "vraagbaak.toml"
    cfg.write_text(f'[vraagbaak]\nteams_app_id = "{APP_ID}"\nteams_groups = {{"t/x" = ["g"]}}\n')
    monkeypatch.setenv("VRAAGBAAK_CONFIG", str(cfg))
    monkeypatch.delenv("TEAMS_APP_ID", raising=False)
    s = BotSettings()
    assert s.teams_app_id == APP_ID and s.teams_groups == {"t/x": ["g"]}


# --------------------------------------------------------------------------- Teams app package


def _png_info(data: bytes) -> tuple[int, int, list[bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    idat, pos = b"", 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8 : pos + 8 + n]
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * 4 + 1
    return w, h, [raw[i * stride + 1 : (i + 1) * stride] for i in range(h)]


def test_teams_manifest_package(tmp_path):
    s = BotSettings(teams_app_id=APP_ID, teams_app_name="Vraagbaak", teams_developer_name="Gemeente Voorbeeld")
    path = build_teams_manifest(s, tmp_path / "pkg.zip")
    with zipfile.ZipFile(path) as z:
        assert sorted(z.namelist()) == ["color.png", "manifest.json", "outline.png"]
        m = json.loads(z.read("manifest.json"))
        color = _png_info(z.read("color.png"))
        outline = _png_info(z.read("outline.png"))
    assert m["manifestVersion"] == "1.17" and "v1.17" in m["$schema"]
    assert m["id"] == APP_ID and m["bots"][0]["botId"] == APP_ID
    assert set(m["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    assert m["icons"] == {"color": "color.png", "outline": "outline.png"}
    assert len(m["name"]["short"]) <= 30 and len(m["description"]["short"]) <= 80
    assert len(m["description"]["full"]) <= 4000
    assert all(m["developer"][k].startswith("https://") for k in ("websiteUrl", "privacyUrl", "termsOfUseUrl"))
    assert all(len(c["title"]) <= 32 for c in m["bots"][0]["commandLists"][0]["commands"])
    assert color[:2] == (192, 192) and outline[:2] == (32, 32)
    rows = outline[2]
    pixels = [rows[y][x * 4 : x * 4 + 4] for y in range(32) for x in range(32)]
    assert pixels[0][3] == 0  # transparent corner
    assert all(p[:3] == b"\xff\xff\xff" for p in pixels)  # white only
    assert any(p[3] == 255 for p in pixels)
    with pytest.raises(ValueError):
        teams_manifest(BotSettings(teams_app_id="not-a-guid"))
    with pytest.raises(ValueError):
        BotSettings(teams_developer_url="http://insecure.example.nl")


def test_teams_manifest_cli(tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    register(app)
    monkeypatch.setenv("TEAMS_APP_ID", APP_ID)
    out = tmp_path / "teams.zip"
    r = CliRunner().invoke(app, ["teams", "manifest", "--out", str(out), "--version", "2.0.1"])
    assert r.exit_code == 0, r.output
    with zipfile.ZipFile(out) as z:
        assert json.loads(z.read("manifest.json"))["version"] == "2.0.1"
    monkeypatch.delenv("TEAMS_APP_ID")
    r = CliRunner().invoke(app, ["teams", "manifest", "--out", str(tmp_path / "x.zip")])
    assert r.exit_code == 2


# --------------------------------------------------------------------------- examples


def test_rendered_examples_are_up_to_date():
    """service/bots/examples/ holds what the code renders (python -m service.bots.render_examples)."""
    for name, obj in rendered().items():
        assert (EXAMPLES_DIR / name).read_text(encoding="utf-8") == dumps(obj), name


# --------------------------------------------------------------------------- the shared answerer


class _Pipe:
    """A pipeline stand-in: one DoneEvent, or the error given."""

    def __init__(self, error=None):
        self.calls, self.error = [], error

    def ask(self, question, filters=None):
        self.calls.append((question, filters))
        if self.error:
            raise self.error
        return _answer(text="Antwoord [1].")

    def stream(self, question, history=None, filters=None, top_k=None, should_stop=None):
        from rag.schema import DoneEvent

        yield DoneEvent(answer=self.ask(question, filters=filters))


def _bot_answerer(provider, *, gate=None, audit=None, max_question_chars=2000, metrics=None):
    """A BotAnswerer over its own answering service (the service's own is app.state.vb.answers)."""
    from service.answering import AnswerService
    from service.bots.common import BotAnswerer
    from service.limits import LLMGate
    from service.metrics import Metrics
    from service.schemas import RequestLimits
    from service.workers import WorkerPool

    return BotAnswerer(
        AnswerService(
            provider,
            gate=gate or LLMGate(1, 4, 60.0),
            workers=WorkerPool(2),
            metrics=metrics or Metrics(),
            limits=RequestLimits(max_question_chars=max_question_chars),
            audit=audit,
        )
    )


def test_answerer_always_filters_uses_the_gate_and_audits(tmp_path):
    import asyncio

    from rag.llm import LLMUnavailableError
    from service.bots.common import TTLCache
    from service.limits import LLMGate
    from service.logging import AuditLog

    Pipe, BotAnswerer = _Pipe, _bot_answerer  # a pipeline stand-in; a BotAnswerer over its own AnswerService

    async def run():
        pipe, gate = Pipe(), LLMGate(1, 0, 1.0)
        audit = AuditLog(tmp_path / "audit.sqlite", 30)
        answerer = BotAnswerer(lambda: pipe, gate=gate, audit=audit, max_question_chars=50)
        reply = await answerer.ask("  Wat kost een paspoort?  ", [], caller="slack:T/U", endpoint="slack")
        assert reply.answer is not None and gate.in_flight == 0
        question, filters = pipe.calls[0]
        assert question == "Wat kost een paspoort?" and filters.groups == []  # public only, never None
        await answerer.ask("Vraag", ["sociaal"], caller="c", endpoint="teams")
        assert pipe.calls[1][1].groups == ["sociaal"]
        assert audit.by_answer_id(reply.answer.id)["question"] == "Wat kost een paspoort?"
        assert (await answerer.ask(" ", [], caller="c", endpoint="e")).notice == cards.EMPTY_QUESTION
        assert "50" in (await answerer.ask("x" * 51, [], caller="c", endpoint="e")).notice
        assert (await BotAnswerer(lambda: None).ask("v", [], caller="c", endpoint="e")).notice == cards.NOT_READY
        busy = BotAnswerer(lambda: Pipe(LLMUnavailableError("x", retry_after=1)))
        assert (await busy.ask("v", [], caller="c", endpoint="e")).notice == cards.BUSY
        broken = BotAnswerer(lambda: Pipe(RuntimeError("boom")))
        assert (await broken.ask("v", [], caller="c", endpoint="e")).notice == cards.FAILED
        ticket = await gate.acquire()  # the gate is full and has no queue: busy
        assert (await answerer.ask("v", [], caller="c", endpoint="e")).notice == cards.BUSY
        gate.release(ticket)

    asyncio.run(run())
    cache = TTLCache(ttl=60, max_items=2)
    assert cache.add("a") and not cache.add("a") and cache.add("b") and cache.add("c")
    assert "a" not in cache and "c" in cache and len(cache) == 2


def test_answerer_counts_answers_and_runs_in_the_worker_pool():
    """A bot's answer is counted like the API's (vraagbaak_answers_total, by endpoint) and
    generated in the service's lower-priority worker threads, not in asyncio's default pool."""
    import asyncio
    import threading

    from service.metrics import Metrics

    threads = []

    class Pipe(_Pipe):
        def stream(self, *args, **kw):
            threads.append(threading.current_thread().name)
            yield from super().stream(*args, **kw)

    async def run():
        metrics = Metrics()
        reply = await _bot_answerer(lambda: Pipe(), metrics=metrics).ask("Vraag?", [], caller="c", endpoint="slack")
        assert reply.answer is not None
        return metrics.render().decode()

    text = asyncio.run(run())
    assert 'vraagbaak_answers_total{endpoint="slack",refused="false"} 1.0' in text
    assert threads and threads[0].startswith("vraagbaak-worker")


def test_a_cancelled_bot_question_stops_the_generation():
    """Cancelling the bot's ask (the bot gives up on it) stops the LLM and frees the gate."""
    import asyncio
    import contextlib
    import threading
    import time

    from rag.schema import TokenEvent
    from service.limits import LLMGate

    stopped = threading.Event()

    class Slow(_Pipe):
        def stream(self, question, history=None, filters=None, top_k=None, should_stop=None):
            try:
                for _ in range(500):  # 5 s of tokens
                    time.sleep(0.01)
                    yield TokenEvent(text=" woord")
                    if should_stop():
                        return
            finally:
                stopped.set()  # closed or stopped (the LLM stream with it)

    async def run():
        gate = LLMGate(1, 4, 60.0)
        ask = _bot_answerer(lambda: Slow(), gate=gate).ask("Vraag?", [], caller="c", endpoint="teams")
        task = asyncio.create_task(ask)
        await asyncio.sleep(0.2)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return gate.in_flight, time.monotonic() - t0

    t0 = time.monotonic()
    in_flight, seconds = asyncio.run(run())
    assert in_flight == 0 and stopped.is_set() and seconds < 3


def test_script_and_links_from_documents_stay_inert_in_slack_and_teams():
    """Text from the model or a document cannot become markup, a mention or a javascript: link."""
    hostile = "Zie [klik](javascript:alert(1)) en <script>alert(2)</script> <!channel> <https://evil.example|bank>"
    answer = Answer(
        answer=hostile + " [1].",
        citations=[
            Citation(
                marker=1,
                doc_id="d",
                title="<img src=x onerror=alert(1)> [t](javascript:alert(3))",
                source="d.txt",
                section="[kop](javascript:alert(4))",
                snippet="x",
            )
        ],
        model=ModelInfo(llm="l", embedder="e"),
    )
    slack = json.dumps(cards.slack_blocks(answer))
    assert "<script" not in slack and "<!channel>" not in slack and "<https://evil" not in slack
    assert "&lt;script&gt;" in slack and "&lt;!channel&gt;" in slack
    card = cards.adaptive_card(answer)
    texts = " ".join(b.get("text", "") for b in card["body"])
    assert "](javascript" not in texts and "](" not in texts.replace("](http", "")
    assert "[1]" in texts  # the markers stay
