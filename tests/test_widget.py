"""The chat widget's routes (service/widget): the loader, versioned cacheable assets, the
demo page, and static checks of the JavaScript and CSS. Fast, no browser: the browser tests
are in tests/test_widget_browser.py."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rag.settings import Settings
from service.app import create_app
from service.config import ServiceSettings
from service.widget import IMMUTABLE, STATIC, load_assets, mount_widget, script_tag

APP_JS = STATIC / "widget-app.js"
CSS = STATIC / "widget.css"


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    mount_widget(app)
    with TestClient(app) as c:
        yield c


def _version(client) -> str:
    return client.app.state.widget.version


def test_loader_is_small_short_cached_and_points_at_the_version(client):
    r = client.get("/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "public, max-age=300"
    assert r.headers["x-content-type-options"] == "nosniff"
    v = _version(client)
    assert re.fullmatch(r"[0-9a-f]{12}", v)
    assert f"'{v}'" in r.text and "/widget/" in r.text and "widget-app.js" in r.text
    assert len(r.content) < 2000
    etag = r.headers["etag"]
    r2 = client.get("/widget.js", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
    assert client.get("/widget.js", headers={"If-None-Match": f'W/{etag}, "other"'}).status_code == 304
    assert client.get("/widget.js", headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(("name", "ctype"), [("widget-app.js", "text/javascript"), ("widget.css", "text/css")])
def test_versioned_assets_are_immutable_with_etag_and_gzip(client, name, ctype):
    v = _version(client)
    r = client.get(f"/widget/{v}/{name}", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(ctype)
    assert r.headers["cache-control"] == IMMUTABLE == "public, max-age=31536000, immutable"
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "Accept-Encoding"
    assert r.content == (STATIC / name).read_bytes()  # decompressed by the client
    r2 = client.get(f"/widget/{v}/{name}", headers={"If-None-Match": r.headers["etag"]})
    assert r2.status_code == 304
    plain = client.get(f"/widget/{v}/{name}", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == r.content


def test_outdated_version_is_served_uncached_and_unknown_files_404(client):
    r = client.get("/widget/000000000000/widget-app.js")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-cache"
    v = _version(client)
    for path in (
        f"/widget/{v}/demo.html",
        f"/widget/{v}/__init__.py",
        f"/widget/{v}/..%2F__init__.py",
        f"/widget/{v}/%2e%2e/%2e%2e/app.py",
        "/widget/../service/app.py",
    ):
        assert client.get(path).status_code == 404, path


def test_version_is_a_hash_of_the_content(tmp_path):
    for name in ("widget-app.js", "widget.css", "demo.html"):
        shutil.copy(STATIC / name, tmp_path / name)
    a = load_assets(tmp_path)
    assert a.version == load_assets(STATIC).version
    (tmp_path / "widget.css").write_text(CSS.read_text() + "\n/* changed */\n")
    assert load_assets(tmp_path).version != a.version


def test_demo_page_carries_the_key_escaped_with_a_strict_csp(client):
    r = client.get("/demo", params={"key": "vbk_0123456789ab_Secret-_x"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert 'src="/widget.js" data-vraagbaak-key="vbk_0123456789ab_Secret-_x"' in r.text
    assert 'data-title="Vraag het de gemeente"' in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-eval" not in csp and "connect-src 'self'" in csp
    assert "<script>" not in r.text  # no inline script: the page works under its own CSP
    bad = client.get("/demo", params={"key": '"><script>alert(1)</script>'})
    assert "alert(1)" not in bad.text and 'data-vraagbaak-key=""' in bad.text
    assert "__" not in client.get("/demo").text.replace("__init__", "")  # every placeholder filled


def test_demo_key_setting_and_demo_off():
    app = FastAPI()
    mount_widget(app, demo_key="vbk_aaaaaaaaaaaa_demo")
    with TestClient(app) as c:
        assert 'data-vraagbaak-key="vbk_aaaaaaaaaaaa_demo"' in c.get("/demo", params={"key": "other"}).text
    app = FastAPI()
    mount_widget(app, demo=False)
    with TestClient(app) as c:
        assert c.get("/demo").status_code == 404
        assert c.get("/widget.js").status_code == 200


def test_mounted_on_the_service_app(tmp_path):
    """On the real app: the routes work next to the API, stay out of the OpenAPI schema, do
    not need a key, the demo page knows about dev mode, and mounting twice is harmless."""
    cfg = ServiceSettings(data_dir=tmp_path / "data", dev_mode=True)
    app = create_app(Settings(index_dir=tmp_path / "index"), pipeline=object(), service_settings=cfg)
    mount_widget(app)
    mount_widget(app)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        assert c.get("/widget.js").status_code == 200
        v = app.state.widget.version
        assert c.get(f"/widget/{v}/widget.css").status_code == 200
        demo = c.get("/demo")
        assert demo.status_code == 200 and "dev-modus" in demo.text
        assert demo.headers.get("x-request-id")  # went through the service middleware
        paths = c.get("/openapi.json").json()["paths"]
        assert not any(p.startswith(("/widget", "/demo")) for p in paths)
        key = app.state.vb.keys.add("t", "reader")
        fb = {"answer_id": "abc", "rating": "up"}
        assert c.post("/v1/feedback", json=fb).status_code == 401  # the API still needs a key (not loopback)
        assert c.post("/v1/feedback", json=fb, headers={"X-API-Key": key}).status_code == 201


def test_script_tag_escapes():
    tag = script_tag("https://vraagbaak.gemeente.nl/", "vbk_x", 'Vraag "ons"')
    assert tag == (
        '<script src="https://vraagbaak.gemeente.nl/widget.js" data-vraagbaak-key="vbk_x" '
        'data-title="Vraag &quot;ons&quot;" defer></script>'
    )


def test_javascript_has_no_html_sinks_and_parses(tmp_path):
    src = APP_JS.read_text()
    for sink in (
        r"\.innerHTML\b",
        r"\.outerHTML\b",
        r"insertAdjacentHTML\(",
        r"document\.write",
        r"\beval\(",
        r"new Function\(",
        r"setTimeout\(['\"]",
        r"\.srcdoc\b",
    ):
        assert not re.search(sink, src), f"widget-app.js uses {sink}"
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (only needed for this syntax check)")
    loader = tmp_path / "loader.js"
    loader.write_bytes(load_assets().loader.body)
    for f in (APP_JS, loader):
        proc = subprocess.run([node, "--check", str(f)], check=False, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


def test_css_is_scoped_and_zoom_friendly():
    css = CSS.read_text()
    assert not re.search(r"\d(\.\d+)?rem\b", css), "rem follows the host page's html font-size: use em"
    assert "@import" not in css and "url(" not in css
    assert ":host" in css and "all: initial" in css
    assert "@media (max-width: 40em)" in css  # phone width / 200 % zoom layout
