"""The chat widget in a real browser: Debian's headless Chromium driven by Playwright (the
Python package, with ``executable_path``: no browser download), against the real service
on 127.0.0.1 with a fake LLM (service.testing.FakeLLM) — and one test with the real models.

Covers: opening /demo and asking by keyboard only, streamed tokens then the final answer
with citations, opening a citation, feedback (stored by the service), copy, follow-up
questions with history, "nieuw gesprek", the 429/503/unreachable/broken-stream states, a
refusal, isolation from the host page's CSS, phone width and 200 % zoom, and axe-core
(tests/browser/node_modules, ``npm ci``) with no serious or critical violations.

Screenshots and the axe results go to test-artifacts/widget/ (VRAAGBAAK_ARTIFACTS);
tests/browser/update_screenshots.py copies a set to docs/screenshots/. The browser is
/usr/bin/chromium (VRAAGBAAK_CHROMIUM to override). Skipped, with the reason, only where
Chromium, Playwright or axe-core is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from rag.settings import Settings
from service.app import create_app
from service.config import ServiceSettings
from service.limits import RateLimiter
from service.testing import FakeLLM, LiveServer, build_index, make_pipeline
from service.widget import mount_widget
from tests.conftest import REPO, HashEmbedder

CHROMIUM = os.environ.get("VRAAGBAAK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Chromium is not installed (apt-get install -y chromium; scripts/setup.sh does it)", allow_module_level=True
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")

AXE = REPO / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("VRAAGBAAK_ARTIFACTS", REPO / "test-artifacts")) / "widget"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--font-render-hinting=none",
]
QUESTION = "Hoeveel besteedt de gemeente aan mantelzorgondersteuning?"
REAL_QUESTION = "Hoeveel geld gaat er naar mantelzorgondersteuning?"
FOLLOW_UP = "En hoeveel is er voor jeugdhulp begroot?"
DESKTOP = {"width": 1100, "height": 760}

pytestmark = pytest.mark.timeout(300)


class BreakingLLM(FakeLLM):
    """FakeLLM that can fail after ``break_after`` tokens (a server-side error mid-stream)."""

    break_after: int | None = None

    def _gen(self, messages, params, rec):
        for i, tok in enumerate(super()._gen(messages, params, rec)):
            if self.break_after is not None and i >= self.break_after and "Zelfstandige vraag" not in str(messages):
                raise RuntimeError("the fake LLM broke mid-stream")
            yield tok


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("widget")
    settings = Settings(index_dir=root / "index", models_dir=root / "models", refusal_min_score=0.0)
    emb = HashEmbedder()
    build_index(root / "corpus", settings, emb)
    llm = BreakingLLM(delay=0.05)
    pipeline = make_pipeline(settings, emb, llm)
    cfg = ServiceSettings(data_dir=root / "data", rate_limit_per_minute=0, llm_concurrency=1, llm_queue=4)
    app = create_app(settings, pipeline, service_settings=cfg)
    mount_widget(app)
    key = app.state.vb.keys.add("widget", "reader")
    with LiveServer(app) as url:
        yield {"url": url, "app": app, "llm": llm, "pipeline": pipeline, "key": key, "demo": f"{url}/demo?key={key}"}


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def fresh(server):
    """Undo the per-test switches of the shared server."""
    llm, vb = server["llm"], server["app"].state.vb
    yield server
    llm.delay, llm.unavailable, llm.fixed_answer, llm.break_after = 0.05, False, None, None
    vb.limiter = RateLimiter(0, 20)
    vb.pipeline = server["pipeline"]


def _context(browser, server, **kw):
    kw.setdefault("viewport", DESKTOP)
    ctx = browser.new_context(locale="nl-NL", reduced_motion="reduce", **kw)
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=server["url"])
    return ctx


def _open_demo(ctx, server, errors: list | None = None):
    page = ctx.new_page()
    if errors is not None:
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server["demo"])
    page.wait_for_selector("vraagbaak-widget[data-ready]", state="attached")
    return page


def shot(page, name: str, panel: bool = False) -> Path:
    path = ARTIFACTS / f"{name}.png"
    time.sleep(0.15)  # let the last frame paint
    if panel:
        page.locator(".vb-panel").screenshot(path=str(path), animations="disabled")
    else:
        page.evaluate("window.scrollTo(0, 0)")  # the page (not the widget) may have scrolled while tabbing
        page.screenshot(path=str(path), animations="disabled")
    return path


FOCUSED = """() => {
  let a = document.activeElement;
  while (a && a.shadowRoot && a.shadowRoot.activeElement) a = a.shadowRoot.activeElement;
  if (!a) return null;
  return {tag: a.tagName.toLowerCase(), cls: typeof a.className === 'string' ? a.className : '',
          label: a.getAttribute('aria-label') || '', text: (a.textContent || '').trim().slice(0, 80),
          expanded: a.getAttribute('aria-expanded'), inWidget: a.getRootNode() !== document};
}"""


def focused(page) -> dict:
    return page.evaluate(FOCUSED) or {}


def tab_to(page, pred, limit: int = 60, key: str = "Tab") -> dict:
    seen = []
    for _ in range(limit):
        page.keyboard.press(key)
        f = focused(page)
        seen.append(f.get("cls") or f.get("tag"))
        if pred(f):
            return f
    raise AssertionError(f"never focused; went through {seen}")


def ask_by_keyboard(page, question: str) -> None:
    assert "vb-question" in focused(page).get("cls", ""), focused(page)
    page.keyboard.type(question)
    page.keyboard.press("Enter")


def last_answer(page):
    return page.locator(".vb-msg-answer").last


def wait_done(page, n: int = 1, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "n => { const r = document.querySelector('vraagbaak-widget').shadowRoot;"
        " return r.querySelectorAll('.vb-msg-answer.vb-done').length >= n && !r.querySelector('.vb-streaming'); }",
        arg=n,
        timeout=timeout,
    )


def live_text(page) -> str:
    return page.locator(".vb-root > [role=status]").text_content() or ""


def feedback_rows(server) -> list[dict]:
    return list(server["app"].state.vb.feedback.rows())


def run_axe(page, name: str) -> list[dict]:
    """axe-core on the whole page (the widget's open shadow root included); returns the
    serious and critical violations and saves the full result."""
    if not AXE.exists():
        pytest.skip(f"axe-core is not installed: run `npm ci` in tests/browser ({AXE} missing)")
    if not page.evaluate("!!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return {violations: r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))})),"
        " passes: r.passes.length, incomplete: r.incomplete.length, version: axe.version}; }"
    )
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]


# --------------------------------------------------------------------------- tests


def test_keyboard_conversation(browser, fresh):
    """Open /demo, do everything by keyboard: open the widget, ask, watch the answer stream,
    open a citation, rate it with a comment, copy it, ask a follow-up, start over."""
    server = fresh
    server["llm"].delay = 0.12  # ~1.5 s per answer: long enough to see it stream
    requests: list[dict] = []
    errors: list[str] = []
    ctx = _context(browser, server)
    page = _open_demo(ctx, server, errors)
    page.on("request", lambda r: requests.append(r.post_data_json) if r.url.endswith("/v1/ask/stream") else None)
    shot(page, "01-demo-closed")

    # Tab through the page to the launcher; Enter opens the panel with focus in the input
    f = tab_to(page, lambda f: "vb-launcher" in f.get("cls", ""))
    assert f["expanded"] == "false" and f["inWidget"]
    page.keyboard.press("Enter")
    assert page.locator(".vb-panel").is_visible()
    assert "vb-question" in focused(page)["cls"]
    assert page.locator(".vb-launcher").get_attribute("aria-expanded") == "true"
    shot(page, "02-open-empty")

    # Escape closes and gives focus back to the launcher; Enter opens again
    page.keyboard.press("Escape")
    assert not page.locator(".vb-panel").is_visible()
    assert "vb-launcher" in focused(page)["cls"]
    page.keyboard.press("Enter")

    ask_by_keyboard(page, QUESTION)
    assert page.locator(".vb-msg-user").last.text_content().strip().endswith(QUESTION)
    # streamed: the text grows token by token before the final answer arrives
    lengths = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = page.evaluate(
            "() => { const r = document.querySelector('vraagbaak-widget').shadowRoot;"
            " const s = r.querySelector('.vb-streaming .vb-stream');"
            " return {streaming: !!s, len: s ? s.textContent.length : -1,"
            " busy: r.querySelector('.vb-log').getAttribute('aria-busy')}; }"
        )
        if not state["streaming"]:
            break
        assert state["busy"] == "true"
        if state["len"] > 0 and (not lengths or lengths[-1] != state["len"]):
            lengths.append(state["len"])
            if len(lengths) == 3:
                shot(page, "03-streaming")
        time.sleep(0.04)
    assert len(lengths) >= 3 and lengths == sorted(lengths), lengths
    wait_done(page)
    answer = last_answer(page)
    assert "vb-refused" not in (answer.get_attribute("class") or "")
    text = answer.locator(".vb-text").text_content()
    assert "mantelzorg" in text and "[1]" in text
    assert page.locator(".vb-log").get_attribute("aria-busy") == "false"
    # the final answer (not each token) is announced in the live region
    page.wait_for_function(
        "() => document.querySelector('vraagbaak-widget').shadowRoot"
        ".querySelector('[role=status]').textContent.startsWith('Antwoord:')"
    )
    assert "mantelzorgondersteuning" in live_text(page) and "[1]" not in live_text(page)
    assert answer.locator(".vb-sources li").count() >= 1
    assert answer.locator(".vb-sources-title").text_content() == "Bronnen"
    assert "vb-question" in focused(page)["cls"]  # focus stays where the user types
    shot(page, "04-answer")

    # to the citation marker by keyboard; Enter opens the footnote with the source
    f = tab_to(page, lambda f: "vb-cite" in f.get("cls", ""), key="Shift+Tab")
    assert f["label"].startswith("Bron 1: ") and f["expanded"] == "false"
    page.keyboard.press("Enter")
    note = answer.locator(".vb-note")
    assert note.is_visible()
    assert "vb-note" in focused(page)["cls"]
    assert "Begroting 2023 zorg" in note.text_content()
    assert "Mantelzorg" in note.text_content()  # the section
    assert "2 miljoen euro" in note.locator(".vb-snippet").text_content()
    assert "openbaar/begroting-2023-zorg.md" in note.text_content()  # a file path: shown, not linked
    # one link: the document viewer at this passage (a signed link, no key in it)
    assert note.locator("a").count() == 1
    viewer_href = note.locator("a.vb-viewer-link").get_attribute("href")
    assert viewer_href.startswith(server["url"] + "/v1/documents/openbaar/begroting-2023-zorg/view?")
    assert server["key"] not in viewer_href
    assert answer.locator(".vb-cite").first.get_attribute("aria-expanded") == "true"
    shot(page, "05-citation", panel=True)
    page.keyboard.press("Escape")  # closes the footnote only, back on the marker
    assert not note.is_visible() and page.locator(".vb-panel").is_visible()
    assert "vb-cite" in focused(page)["cls"]

    # the snippet in the Bronnen list (details/summary) opens with the keyboard too
    tab_to(page, lambda f: f.get("tag") == "summary")
    page.keyboard.press("Enter")
    assert answer.locator(".vb-details").first.get_attribute("open") is not None

    # copy the answer (with its sources)
    tab_to(page, lambda f: "vb-copy" in f.get("cls", ""))
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('vraagbaak-widget').shadowRoot"
        ".querySelector('.vb-copy').textContent.includes('gekopieerd')"
    )
    clip = page.evaluate("navigator.clipboard.readText()")
    assert clip.startswith(text.split("[1]")[0].strip()[:30]) and "Bronnen:\n[1] Begroting 2023 zorg" in clip

    # thumbs down by keyboard → stored; then an optional comment → stored with the rating
    before = len(feedback_rows(server))
    f = tab_to(page, lambda f: "vb-down" in f.get("cls", ""))
    assert f["label"] == "Nee, niet nuttig"
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => !document.querySelector('vraagbaak-widget').shadowRoot.querySelector('.vb-comment-form').hidden"
    )
    assert answer.locator(".vb-down").get_attribute("aria-pressed") == "true"
    rows = feedback_rows(server)
    assert len(rows) == before + 1 and rows[-1]["rating"] == "down" and rows[-1]["comment"] is None
    answer_id = rows[-1]["answer_id"]
    assert "Bedankt" in live_text(page) or "Bedankt" in answer.locator(".vb-fb-msg").text_content()
    tab_to(page, lambda f: "vb-comment" in f.get("cls", ""))
    page.keyboard.type("De bedragen voor 2024 ontbreken.")
    shot(page, "06-feedback", panel=True)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => document.querySelector('vraagbaak-widget').shadowRoot.querySelector('.vb-comment-form').hidden"
    )
    rows = feedback_rows(server)
    assert rows[-1]["answer_id"] == answer_id and rows[-1]["rating"] == "down"
    assert rows[-1]["comment"] == "De bedragen voor 2024 ontbreken."
    assert "vb-fb-msg" in focused(page)["cls"]  # focus does not fall back to the page

    # a follow-up in the same conversation sends the history
    tab_to(page, lambda f: "vb-question" in f.get("cls", ""))
    ask_by_keyboard(page, FOLLOW_UP)
    wait_done(page, 2)
    assert len(requests) == 2
    assert requests[0]["history"] == []
    hist = requests[1]["history"]
    assert [t["role"] for t in hist] == ["user", "assistant"] and hist[0]["content"] == QUESTION
    assert "jeugdhulp" in last_answer(page).locator(".vb-text").text_content()
    shot(page, "07-follow-up")

    # "Nieuw gesprek": an empty conversation, focus in the input, no history sent
    tab_to(page, lambda f: "Nieuw gesprek" in f.get("text", ""), key="Shift+Tab")
    page.keyboard.press("Enter")
    assert page.locator(".vb-msg").count() == 0 and page.locator(".vb-intro").is_visible()
    assert "vb-question" in focused(page)["cls"]
    ask_by_keyboard(page, FOLLOW_UP)
    wait_done(page, 1)
    assert requests[2]["history"] == []
    assert not errors, errors  # no script errors, no CSP violations
    ctx.close()


def _status(url: str, key: str) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_citation_opens_the_viewer_at_the_passage(browser, fresh):
    """Keyboard only: ask, open citation [1], follow its link; the viewer opens in a new tab
    with the cited passage marked and in view; axe-core finds nothing on the viewer. The
    same link with a key of another group is a 404."""
    server = fresh
    keys = server["app"].state.vb.keys
    fin = keys.add(f"fin-{time.monotonic_ns()}", "reader", "financien")
    soc = keys.add(f"soc-{time.monotonic_ns()}", "reader", "sociaal")
    ctx = _context(browser, server, bypass_csp=True)  # lets axe-core in; the CSP is checked below
    errors: list[str] = []
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server['url']}/demo?key={fin}")
    page.wait_for_selector("vraagbaak-widget[data-ready]", state="attached")
    tab_to(page, lambda f: "vb-launcher" in f.get("cls", ""))
    page.keyboard.press("Enter")
    ask_by_keyboard(page, "Wat levert de grondexploitatie zwavelkoepel op?")
    wait_done(page)
    tab_to(page, lambda f: "vb-cite" in f.get("cls", ""), key="Shift+Tab")
    page.keyboard.press("Enter")
    f = tab_to(page, lambda f: "vb-viewer-link" in f.get("cls", ""))
    assert f["text"].startswith("Open het document")
    with ctx.expect_page() as opened:
        page.keyboard.press("Enter")
    viewer = opened.value
    viewer.wait_for_load_state()
    assert "/v1/documents/financien/vertrouwelijk-grondexploitatie/view?" in viewer.url
    assert viewer.url.endswith(("#quote", "#passage"))
    marked = viewer.locator("mark").all_text_contents()
    assert any("zwavelkoepel" in m for m in marked), marked
    box = viewer.locator("mark").first.bounding_box()
    height = viewer.viewport_size["height"]
    assert box is not None and 0 <= box["y"] < height, (box, height)  # in view
    time.sleep(0.15)
    viewer.screenshot(path=str(ARTIFACTS / "16-viewer.png"), animations="disabled")
    violations = run_axe(viewer, "viewer")
    full = json.loads((ARTIFACTS / "axe-viewer.json").read_text())
    assert full["violations"] == [] and not violations, full["violations"]
    # the same link: with a key of another group 404, with the asker's own key 200
    url = viewer.url.split("#")[0]
    assert _status(url, soc) == 404
    assert _status(url, fin) == 200
    assert not errors, errors
    ctx.close()
    # without the bypass, the viewer's Content-Security-Policy runs no script at all
    plain = _context(browser, server)
    p2 = plain.new_page()
    p2.goto(url)
    with pytest.raises(sync_api.Error, match="Content Security Policy"):
        p2.add_script_tag(content="window.injected = 1")
    assert p2.evaluate("typeof window.injected") == "undefined"
    plain.close()


def test_viewer_on_a_pdf_of_the_demo_corpus(browser, tmp_path):
    """The LibreOffice PDF of the jaarstukken 2024 (data/voorbeeld-pdf): a link to the table
    row of the Eemsgolaan opens on page 5 with the row marked, the table with its column
    headings, the page marker above it; axe-core finds nothing."""
    from rag.index import open_snapshot
    from rag.indexing import ingest_paths

    settings = Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models", refusal_min_score=0.0)
    corpus = tmp_path / "voorbeeld-pdf"
    corpus.mkdir()
    name = "jaarstukken-2024-welzijn-gezondheid-zorg-diversiteit.pdf"
    shutil.copy(REPO / "data" / "voorbeeld-pdf" / name, corpus / name)
    emb = HashEmbedder()
    assert ingest_paths([corpus], settings, emb).ok
    doc_id = f"voorbeeld-pdf/{name[:-4]}"
    chunk = next(c for c in open_snapshot(settings.index_dir).chunks_of(doc_id) if "Eemsgolaan |" in c.text)
    row = next(line for line in chunk.text.split("\n") if line.startswith("Eemsgolaan |"))
    start = chunk.text.index(row)
    app = create_app(
        settings, make_pipeline(settings, emb, FakeLLM()), service_settings=ServiceSettings(data_dir=tmp_path / "data")
    )
    with LiveServer(app) as url:
        link = app.state.vb.links.view_url(doc_id, [], chunk.chunk_id, (start, start + len(row)))
        ctx = browser.new_context(locale="nl-NL", viewport={"width": 1000, "height": 760}, bypass_csp=True)
        page = ctx.new_page()
        page.goto(url + link)
        quote = page.locator("main mark.vb-quote")
        assert " ".join(quote.all_text_contents()).startswith("Eemsgolaan")
        box = quote.first.bounding_box()
        assert box is not None and 0 <= box["y"] < 760
        assert page.locator("#page-5").count() == 1
        assert page.locator("table th").first.text_content() == "Locatie"
        assert "Pagina 5" in page.locator(".vb-meta").text_content() or chunk.page == 5
        assert page.locator("a.vb-original").get_attribute("href").endswith("#page=5")
        time.sleep(0.15)
        page.screenshot(path=str(ARTIFACTS / "17-viewer-pdf.png"), animations="disabled")
        assert run_axe(page, "viewer-pdf") == []
        ctx.close()


HOSTILE_DOC = (
    "# Nota <img src=/x-title onerror=alert('titel')>\n\n## Risico's\n\n"
    "De bibliotheek <script>alert('tekst')</script> in Beijum <img src=/x-text onerror=alert(1)> opent op "
    "[maandag](javascript:alert('md')) om negen uur. <a href=\"javascript:alert('a')\">klik</a>\n"
)


def test_script_and_markup_in_documents_stay_inert_in_widget_and_viewer(browser, tmp_path):
    """A document whose title and text carry <script>, onerror= and javascript: links: asked
    about in the widget (the fake LLM repeats its first sentence), its citation opened in the
    viewer. No dialog opens, no request leaves for the injected image, no script error."""
    from rag.indexing import ingest_paths

    settings = Settings(index_dir=tmp_path / "index", models_dir=tmp_path / "models", refusal_min_score=0.0)
    docs = tmp_path / "nota"
    docs.mkdir()
    (docs / "nota-2024-bibliotheek.md").write_text(HOSTILE_DOC, encoding="utf-8")
    emb = HashEmbedder()
    assert ingest_paths([docs], settings, emb).ok
    app = create_app(
        settings, make_pipeline(settings, emb, FakeLLM()), service_settings=ServiceSettings(data_dir=tmp_path / "d")
    )
    mount_widget(app)
    key = app.state.vb.keys.add("w", "reader")
    dialogs: list[str] = []
    requests: list[str] = []
    errors: list[str] = []
    with LiveServer(app) as url:
        ctx = browser.new_context(locale="nl-NL", viewport=DESKTOP)
        ctx.on("request", lambda r: requests.append(r.url))
        page = ctx.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/demo?key={key}")
        page.wait_for_selector("vraagbaak-widget[data-ready]", state="attached")
        tab_to(page, lambda f: "vb-launcher" in f.get("cls", ""))
        page.keyboard.press("Enter")
        ask_by_keyboard(page, "Wanneer opent de bibliotheek in Beijum?")
        wait_done(page)
        answer = last_answer(page)
        assert "<script>" in answer.locator(".vb-text").text_content()  # shown as text
        assert answer.locator(".vb-text script, .vb-text img, .vb-text a[href^=javascript]").count() == 0
        tab_to(page, lambda f: "vb-cite" in f.get("cls", ""), key="Shift+Tab")
        page.keyboard.press("Enter")
        assert answer.locator(".vb-note img, .vb-note script").count() == 0
        href = answer.locator(".vb-note a.vb-viewer-link").get_attribute("href")
        viewer = ctx.new_page()
        viewer.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        viewer.on("pageerror", lambda e: errors.append(str(e)))
        viewer.goto(href)
        assert "<script>alert('tekst')</script>" in viewer.locator("main").text_content()
        assert viewer.locator("main script, main img, a[href^=javascript]").count() == 0
        assert "<img src=/x-title" in viewer.locator("h1").text_content()
        time.sleep(0.3)
        ctx.close()
    assert dialogs == [] and errors == []
    assert not [r for r in requests if "/x-title" in r or "/x-text" in r], requests


def test_error_states(browser, fresh):
    """429 and 503 with the wait time, the service unreachable, an error mid-stream and a
    stream that breaks halfway (what arrived is kept, retry works)."""
    server = fresh
    vb, llm = server["app"].state.vb, server["llm"]
    ctx = _context(browser, server)
    page = _open_demo(ctx, server)
    page.locator(".vb-launcher").click()

    def ask(q=QUESTION):
        page.locator(".vb-question").fill(q)
        page.keyboard.press("Enter")

    def alert_text():
        a = last_answer(page).locator("[role=alert]")
        a.wait_for(timeout=15_000)
        return a.text_content()

    # 429: the key's rate limit is used up → the service's Retry-After (60 s)
    vb.limiter = RateLimiter(1, 1)
    vb.limiter.hit("key:widget")
    ask()
    msg = alert_text()
    assert "veel vragen kort na elkaar" in msg and "over 60 seconden" in msg
    retry = last_answer(page).locator(".vb-retry")
    assert retry.get_attribute("aria-disabled") == "true" and "nog " in retry.text_content()
    shot(page, "08-error-429", panel=True)
    vb.limiter = RateLimiter(0, 20)

    # 503 from the service (models still loading, Retry-After: 10)
    vb.pipeline = None
    ask()
    msg = alert_text()
    assert "erg druk of wordt opgestart" in msg and "over 10 seconden" in msg
    shot(page, "09-error-503", panel=True)
    vb.pipeline = server["pipeline"]

    # the LLM is unavailable once the stream has started: an error event with retry_after 7
    llm.unavailable = True
    ask()
    msg = alert_text()
    assert "erg druk" in msg and "over 7 seconden" in msg
    llm.unavailable = False

    # the service cannot be reached at all
    page.route("**/v1/ask/stream", lambda route: route.abort("connectionrefused"))
    ask()
    assert "niet bereikbaar" in alert_text()
    shot(page, "10-error-unreachable", panel=True)
    page.unroute("**/v1/ask/stream")

    # the server fails mid-stream: an error event after some tokens; the tokens are kept
    llm.break_after = 4
    ask()
    msg = alert_text()
    assert "Er ging iets mis" in msg
    partial = last_answer(page).locator(".vb-stream").text_content()
    assert partial and len(partial.split()) == 4
    assert last_answer(page).locator(".vb-partial-label").is_visible()
    llm.break_after = None

    # the connection breaks halfway: the body ends after a few tokens, without "done"
    def cut(route):
        resp = route.fetch()
        events = resp.text().replace("\r\n", "\n").split("\n\n")
        keep = [e for e in events if "event: done" not in e][:5]  # sources + 4 tokens
        route.fulfill(status=200, content_type="text/event-stream", body="\n\n".join(keep) + "\n\n")

    page.route("**/v1/ask/stream", cut)
    ask()
    msg = alert_text()
    assert "verbinding werd verbroken" in msg
    answer = last_answer(page)
    kept = answer.locator(".vb-stream").text_content()
    assert kept and kept.startswith("De gemeente besteedt")
    assert answer.locator(".vb-partial-label").text_content() == "Onvolledig antwoord"
    shot(page, "11-error-broken-stream", panel=True)
    page.unroute("**/v1/ask/stream")
    # retry (keyboard) replaces the partial answer with the whole one
    answer.locator(".vb-retry").focus()
    page.keyboard.press("Enter")
    page.wait_for_function(
        "() => { const a = [...document.querySelector('vraagbaak-widget').shadowRoot"
        ".querySelectorAll('.vb-msg-answer')].pop(); return a.classList.contains('vb-done'); }",
        timeout=20_000,
    )
    assert answer.locator(".vb-cite").count() >= 1 and answer.locator("[role=alert]").count() == 0
    assert "vb-question" in focused(page)["cls"]

    # stop a running answer: what arrived stays, with a retry button
    llm.delay = 0.3
    ask()
    page.locator(".vb-streaming .vb-stream:not(:empty)").wait_for(timeout=10_000)
    page.locator(".vb-stop").click()
    assert "gestopt" in alert_text()
    ctx.close()


def test_refusal_and_accessibility(browser, fresh):
    """axe-core on the open widget — an answer with an open citation, an open source snippet
    and the feedback form, a refusal and an error — on desktop and on a phone: no serious
    or critical violations."""
    server = fresh
    vb, llm = server["app"].state.vb, server["llm"]
    llm.delay = 0.0
    # bypass_csp: axe is injected as an inline script, which the demo page's CSP forbids
    ctx = _context(browser, server, bypass_csp=True)
    page = _open_demo(ctx, server)
    page.locator(".vb-launcher").click()
    page.locator(".vb-question").fill(QUESTION)
    page.keyboard.press("Enter")
    wait_done(page, 1)
    answer = last_answer(page)
    answer.locator(".vb-cite").first.click()
    answer.locator(".vb-details summary").first.click()
    answer.locator(".vb-up").click()
    answer.locator(".vb-comment-form").wait_for()

    # a refusal: the model gives the standard refusal text
    llm.fixed_answer = server["pipeline"].prompts.refusal
    page.locator(".vb-question").fill("Wat is de hoofdstad van Australië?")
    page.keyboard.press("Enter")
    wait_done(page, 2)
    refusal = last_answer(page)
    assert "vb-refused" in refusal.get_attribute("class")
    assert "Geen antwoord gevonden" in refusal.text_content()
    assert refusal.locator(".vb-cite").count() == 0 and refusal.locator(".vb-sources").count() == 0
    assert refusal.locator(".vb-up").count() == 1  # refusals can be rated too
    shot(page, "12-refusal", panel=True)
    llm.fixed_answer = None

    # an error state in the same conversation
    vb.limiter = RateLimiter(1, 1)
    vb.limiter.hit("key:widget")
    page.locator(".vb-question").fill(QUESTION)
    page.keyboard.press("Enter")
    last_answer(page).locator("[role=alert]").wait_for()
    vb.limiter = RateLimiter(0, 20)

    bad = run_axe(page, "desktop")
    assert not bad, json.dumps(bad, indent=1, ensure_ascii=False)
    page.set_viewport_size({"width": 320, "height": 640})
    bad = run_axe(page, "phone")
    assert not bad, json.dumps(bad, indent=1, ensure_ascii=False)
    ctx.close()


def test_isolated_from_the_host_page(browser, fresh):
    """Hostile page CSS does not change the widget, and the widget changes nothing on the
    page: no styles, no layout change, one global (VraagbaakWidget)."""
    server = fresh
    ctx = _context(browser, server)
    probe = """() => {
      const pick = el => { const s = getComputedStyle(el); const r = el.getBoundingClientRect();
        return [s.fontFamily, s.fontSize, s.color, s.backgroundColor, s.margin, r.x, r.y, r.width, r.height].join('|'); };
      return {styles: ['body', 'h1', 'main p', 'button', 'nav a', 'footer'].map(q => pick(document.querySelector(q))),
              sheets: document.styleSheets.length, globals: Object.keys(window).filter(k => /vraagbaak/i.test(k)),
              scrollW: document.documentElement.scrollWidth, scrollH: document.documentElement.scrollHeight};
    }"""
    # the page without the widget (its script blocked) and with it
    bare = ctx.new_page()
    bare.route("**/widget.js", lambda r: r.abort())
    bare.goto(server["demo"])
    without = bare.evaluate(probe)
    bare.close()
    page = _open_demo(ctx, server)
    page.locator(".vb-launcher").click()
    with_widget = page.evaluate(probe)
    assert with_widget["styles"] == without["styles"]
    assert with_widget["sheets"] == without["sheets"]
    assert with_widget["globals"] == ["VraagbaakWidget"] and without["globals"] == []
    assert (with_widget["scrollW"], with_widget["scrollH"]) == (without["scrollW"], without["scrollH"])

    widget_probe = """() => {
      const r = document.querySelector('vraagbaak-widget').shadowRoot;
      return ['.vb-launcher', '.vb-title', '.vb-question', '.vb-send'].map(q => {
        const el = r.querySelector(q); const s = getComputedStyle(el); const b = el.getBoundingClientRect();
        return [s.display, s.fontFamily, s.fontSize, s.color, s.backgroundColor, s.textTransform,
                Math.round(b.width), Math.round(b.height)].join('|'); });
    }"""
    before = page.evaluate(widget_probe)
    page.add_style_tag(
        content="""
      html { font-size: 8px !important; }
      * { font-family: "Comic Sans MS", cursive !important; color: red !important; line-height: 3 !important;
          letter-spacing: 2px !important; text-transform: uppercase !important; }
      button, textarea, h2 { display: none !important; background: yellow !important; font-size: 40px !important; }
      div, section { padding: 50px !important; border: 10px solid lime !important; }
    """
    )
    after = page.evaluate(widget_probe)
    assert after == before
    assert page.locator(".vb-launcher").is_visible() and page.locator(".vb-question").is_visible()
    shot(page, "13-hostile-page-css")
    ctx.close()


@pytest.mark.parametrize(
    ("name", "viewport", "scale"),
    [("phone-320", {"width": 320, "height": 640}, 3), ("zoom-200", {"width": 640, "height": 400}, 2)],
)
def test_phone_width_and_200_percent_zoom(browser, fresh, name, viewport, scale):
    """320 CSS px (a phone; also 1280 px at 400 %) and 640×400 (1280×800 at 200 % zoom):
    the panel fills the viewport, nothing scrolls sideways, input and button stay reachable."""
    server = fresh
    server["llm"].delay = 0.0
    ctx = _context(browser, server, viewport=viewport, device_scale_factor=scale)
    page = _open_demo(ctx, server)
    tab_to(page, lambda f: "vb-launcher" in f.get("cls", ""))
    page.keyboard.press("Enter")
    ask_by_keyboard(page, QUESTION)
    wait_done(page)
    last_answer(page).locator(".vb-cite").first.click()
    m = page.evaluate(
        """() => { const r = document.querySelector('vraagbaak-widget').shadowRoot;
          const box = q => r.querySelector(q).getBoundingClientRect().toJSON();
          const log = r.querySelector('.vb-log'), panel = r.querySelector('.vb-panel');
          return {panel: box('.vb-panel'), input: box('.vb-question'), send: box('.vb-send'), close: box('.vb-close'),
                  logOverflow: log.scrollWidth - log.clientWidth, panelOverflow: panel.scrollWidth - panel.clientWidth,
                  vw: innerWidth, vh: innerHeight}; }"""
    )
    vw, vh = m["vw"], m["vh"]
    assert (m["panel"]["x"], m["panel"]["y"]) == (0, 0)
    assert m["panel"]["width"] == vw and m["panel"]["height"] == vh
    assert m["logOverflow"] <= 0 and m["panelOverflow"] <= 0
    for part in ("input", "send", "close"):
        b = m[part]
        assert b["x"] >= 0 and b["y"] >= 0 and b["right"] <= vw and b["bottom"] <= vh, (part, b)
    assert not page.locator(".vb-launcher").is_visible()  # covered by the panel: hidden
    shot(page, f"14-{name}")
    page.keyboard.press("Escape")  # closes the footnote
    page.keyboard.press("Escape")  # closes the panel; the launcher is back with focus
    assert page.locator(".vb-launcher").is_visible() and "vb-launcher" in focused(page)["cls"]
    ctx.close()


class _Recording:
    """A pipeline that keeps the final answers it streams (for the test artifacts)."""

    def __init__(self, pipeline) -> None:
        self._pipeline = pipeline
        self.answers: list = []

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def stream(self, *args, **kwargs):
        inner = self._pipeline.stream(*args, **kwargs)
        try:
            for event in inner:
                if event.type == "done":
                    self.answers.append(event.answer)
                yield event
        finally:
            inner.close()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # embedding the demo corpus + generating on 2 busy cores
def test_real_model_through_the_widget(browser, demo_pipeline, tmp_path):
    """The real default models behind the widget (minutes on 2 cores): a streamed Dutch
    answer with citations, or a clear refusal."""
    cfg = ServiceSettings(data_dir=tmp_path / "data", rate_limit_per_minute=0)
    recording = _Recording(demo_pipeline)
    app = create_app(demo_pipeline.settings, recording, service_settings=cfg)
    mount_widget(app)
    key = app.state.vb.keys.add("widget", "reader")
    with LiveServer(app) as url:
        server = {"url": url, "demo": f"{url}/demo?key={key}"}
        ctx = _context(browser, server)
        page = _open_demo(ctx, server)
        tab_to(page, lambda f: "vb-launcher" in f.get("cls", ""))
        page.keyboard.press("Enter")
        ask_by_keyboard(page, REAL_QUESTION)
        page.locator(".vb-streaming .vb-stream:not(:empty)").wait_for(timeout=300_000)
        wait_done(page, 1, timeout=600_000)
        # keep the final answer (text, citations, refusal reason, timings) with the screenshot
        (ARTIFACTS / "15-real-model-answer.json").write_text(
            json.dumps([a.model_dump(mode="json") for a in recording.answers], indent=2, ensure_ascii=False)
        )
        answer = last_answer(page)
        refused = "vb-refused" in answer.get_attribute("class")
        assert refused or answer.locator(".vb-cite").count() >= 1
        if not refused:
            assert answer.locator(".vb-sources li").count() >= 1
        shot(page, "15-real-model")
        ctx.close()
