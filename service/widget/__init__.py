"""The Vraagbaak chat widget: one script tag on any intranet page.

    <script src="https://<service>/widget.js" data-vraagbaak-key="…"
            data-title="Vraag het de gemeente" defer></script>

``mount_widget(app)`` adds three routes to the FastAPI app (none in the OpenAPI schema):

* ``GET /widget.js`` — a tiny loader (short cache, ETag). It finds its own script tag and
  loads the versioned application and stylesheet from the same origin.
* ``GET /widget/<version>/widget-app.js`` and ``…/widget.css`` — the widget itself (plain
  JavaScript and CSS, no build step). ``<version>`` is a hash of their content, so they are
  cached for a year (``immutable``); a new release changes the URL. An old version in the
  URL still gets the current file, but uncached.
* ``GET /demo`` (``demo=True``) — a mock intranet page with the widget, for people to try
  it. Its key: ``demo_key``, else ``?key=…`` in the URL, else none (works with the
  service's loopback dev mode, ``vraagbaak serve --dev``).

The widget renders into a Shadow DOM (page CSS cannot break it, and it cannot break the
page), talks to ``POST /v1/ask/stream`` and ``POST /v1/feedback``, and is in Dutch. See
``service/widget/README.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["STATIC", "WidgetAssets", "load_assets", "mount_widget", "script_tag"]

STATIC: Traversable = files(__name__) / "static"  # package data: found in a wheel install too
ASSET_TYPES = {
    "widget-app.js": "text/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
}
IMMUTABLE = "public, max-age=31536000, immutable"
LOADER_CACHE = "public, max-age=300"  # a new release reaches pages within 5 minutes
DEFAULT_TITLE = "Vraag het de gemeente"
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")

_LOADER = """/* Vraagbaak widget loader, version {version}.
   <script src="https://SERVICE/widget.js" data-vraagbaak-key="KEY" data-title="Vraag het de gemeente" defer></script> */
(function (d, w) {{
  var s = d.currentScript;
  if (!s || !s.src) return;
  var base = s.src.replace(/\\/widget\\.js(?:[?#].*)?$/, '');
  var v = '{version}';
  var ns = (w.VraagbaakWidget = w.VraagbaakWidget || {{}});
  ns.version = ns.version || v;
  (ns.q = ns.q || []).push({{ script: s, base: base, css: base + '/widget/' + v + '/widget.css' }});
  if (ns.loading) return;
  ns.loading = true;
  var a = d.createElement('script');
  a.src = base + '/widget/' + v + '/widget-app.js';
  a.async = true;
  if (s.nonce) a.nonce = s.nonce;
  (d.head || d.documentElement).appendChild(a);
}})(document, window);
"""

# The demo page only talks to its own origin: no inline script, no eval.
DEMO_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@dataclass(frozen=True)
class Asset:
    body: bytes
    gz: bytes | None
    etag: str
    media_type: str


def _asset(body: bytes, media_type: str) -> Asset:
    etag = '"' + hashlib.sha256(body).hexdigest()[:24] + '"'
    gz = gzip.compress(body, compresslevel=9, mtime=0) if len(body) > 1024 else None
    return Asset(body, gz, etag, media_type)


@dataclass(frozen=True)
class WidgetAssets:
    version: str  # content hash of the application files
    loader: Asset
    files: dict[str, Asset]
    demo_html: str


def load_assets(static: Traversable = STATIC) -> WidgetAssets:
    """Read the widget's files once; ``version`` is a hash of their content."""
    raw = {name: (static / name).read_bytes() for name in ASSET_TYPES}
    h = hashlib.sha256()
    for name in sorted(raw):
        h.update(name.encode() + b"\0" + raw[name] + b"\0")
    version = h.hexdigest()[:12]
    files = {name: _asset(body, ASSET_TYPES[name]) for name, body in raw.items()}
    loader = _asset(_LOADER.format(version=version).encode(), "text/javascript; charset=utf-8")
    return WidgetAssets(version, loader, files, (static / "demo.html").read_text(encoding="utf-8"))


def script_tag(service_url: str, key: str = "", title: str = DEFAULT_TITLE) -> str:
    """The tag to put on an intranet page (all values HTML-escaped)."""
    src = service_url.rstrip("/") + "/widget.js"
    return (
        f'<script src="{html.escape(src)}" data-vraagbaak-key="{html.escape(key)}" '
        f'data-title="{html.escape(title)}" defer></script>'
    )


def _etag_matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    if header.strip() == "*":
        return True
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return etag in tags


def _serve(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {
        "Cache-Control": cache_control,
        "ETag": asset.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # the loader and the app are loaded cross-origin by intranet pages
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Access-Control-Allow-Origin": "*",
    }
    if _etag_matches(request, asset.etag):
        return Response(status_code=304, headers=headers)
    body = asset.body
    if asset.gz is not None and "gzip" in request.headers.get("accept-encoding", "").lower():
        body = asset.gz
        headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=asset.media_type, headers=headers)


def _demo_note(key: str, dev_mode: bool) -> str:
    if key:
        return "Demo: de Vraagbaak op een nagebootste intranetpagina. De widget gebruikt de API-sleutel van deze demo."
    if dev_mode:
        return (
            "Demo: de Vraagbaak op een nagebootste intranetpagina. De service draait in dev-modus: "
            "vragen vanaf deze computer mogen zonder API-sleutel."
        )
    return (
        "Demo: deze pagina heeft geen API-sleutel. Start de service met 'vraagbaak serve --dev' "
        "(alleen op deze computer), of open /demo?key=UW_SLEUTEL."
    )


def mount_widget(app: FastAPI, *, demo: bool = True, demo_key: str | None = None) -> None:
    """Add ``/widget.js``, ``/widget/{version}/{file}`` and (``demo``) ``/demo`` to ``app``.

    ``demo_key``: the API key the demo page's script tag carries (else ``?key=`` in the
    URL, else none: only the service's loopback dev mode then answers). Calling it twice
    does nothing the second time."""
    if getattr(app.state, "widget", None) is not None:
        return
    assets = load_assets()
    app.state.widget = assets

    async def loader(request: Request) -> Response:
        return _serve(request, assets.loader, LOADER_CACHE)

    async def asset(request: Request) -> Response:
        version = request.path_params["version"]
        name = request.path_params["name"]
        a = assets.files.get(name)
        if a is None:
            raise HTTPException(404, "not found")
        # an outdated version (a loader cached before a release) still works, uncached
        return _serve(request, a, IMMUTABLE if version == assets.version else "no-cache")

    app.add_route("/widget.js", loader, methods=["GET"], include_in_schema=False)
    app.add_route("/widget/{version}/{name}", asset, methods=["GET"], include_in_schema=False)

    if not demo:
        return

    async def demo_page(request: Request) -> Response:
        key = demo_key or ""
        if not key:
            q = request.query_params.get("key", "")
            key = q if _KEY_RE.match(q) else ""
        cfg = getattr(getattr(request.app.state, "vb", None), "cfg", None)
        page = assets.demo_html.replace("__VRAAGBAAK_KEY__", html.escape(key, quote=True)).replace(
            "__DEMO_NOTE__", html.escape(_demo_note(key, bool(getattr(cfg, "dev_mode", False))))
        )
        return Response(
            page,
            media_type="text/html; charset=utf-8",
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": DEMO_CSP,
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
            },
        )

    app.add_route("/demo", demo_page, methods=["GET"], include_in_schema=False)
