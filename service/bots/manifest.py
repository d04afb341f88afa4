"""The Teams app package: ``manifest.json`` (schema 1.17) with a colour and an outline icon,
zipped, ready for "Upload a custom app" in Teams or the Teams admin centre.

    vraagbaak teams manifest --out vraagbaak-teams.zip

The icons are drawn here (a speech bubble in the accent colour), so no image library or
design file is needed; replace them in the zip with the municipality's own if wanted
(colour 192×192, outline 32×32 white on transparent).
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Annotated, Any

import typer

from .config import BotSettings

MANIFEST_VERSION = "1.17"
MANIFEST_SCHEMA = (
    f"https://developer.microsoft.com/en-us/json-schemas/teams/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json"
)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


# --------------------------------------------------------------------------- manifest


def teams_manifest(config: BotSettings, app_id: str | None = None) -> dict[str, Any]:
    """The manifest for the bot whose Microsoft App ID is ``app_id`` (default TEAMS_APP_ID)."""
    app_id = (app_id or config.teams_app_id or "").strip()
    if not _GUID.match(app_id):
        raise ValueError(f"TEAMS_APP_ID must be the bot's Microsoft App ID (a GUID), got {app_id!r}")
    scopes = ["personal", "team", "groupChat"]
    return {
        "$schema": MANIFEST_SCHEMA,
        "manifestVersion": MANIFEST_VERSION,
        "version": config.teams_app_version,
        "id": app_id,
        "localizationInfo": {"defaultLanguageTag": "nl-nl"},
        "developer": {
            "name": config.teams_developer_name,
            "websiteUrl": config.teams_developer_url,
            "privacyUrl": config.teams_privacy_url,
            "termsOfUseUrl": config.teams_terms_url,
        },
        "name": {"short": config.teams_app_name, "full": config.teams_app_full_name},
        "description": {
            "short": "Vragen over gemeentelijke documenten, beantwoord met bronnen.",
            "full": (
                "Stel in gewone taal een vraag over de documenten van de gemeente (raadsstukken, begrotingen, "
                "beleid). Vraagbaak antwoordt in het Nederlands en noemt de bronnen waarop het antwoord steunt. "
                "Het antwoord komt van een taalmodel dat binnen de gemeente draait: controleer de bronnen. "
                "Gebruik in een kanaal: noem @" + config.teams_app_name + " in je bericht."
            ),
        },
        "icons": {"color": "color.png", "outline": "outline.png"},
        "accentColor": config.teams_accent_color.upper(),
        "bots": [
            {
                "botId": app_id,
                "scopes": scopes,
                "supportsFiles": False,
                "isNotificationOnly": False,
                "commandLists": [
                    {
                        "scopes": scopes,
                        "commands": [
                            {
                                "title": "Stel een vraag",
                                "description": "Bijvoorbeeld: Hoeveel geld gaat er naar mantelzorg?",
                            }
                        ],
                    }
                ],
            }
        ],
        "permissions": ["identity", "messageTeamMembers"],
        "validDomains": [],
    }


def build_teams_manifest(config: BotSettings, out_path: Path | str, app_id: str | None = None) -> Path:
    """Write the app package (manifest.json, color.png, outline.png) as a zip; returns its path."""
    out = Path(out_path)
    if out.suffix.lower() != ".zip":
        out = out / "vraagbaak-teams.zip" if out.is_dir() else out.with_suffix(".zip")
    out.parent.mkdir(parents=True, exist_ok=True)
    manifest = teams_manifest(config, app_id)
    color = _hex_rgb(config.teams_accent_color)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
        z.writestr("color.png", color_icon(color))
        z.writestr("outline.png", outline_icon())
    return out


# --------------------------------------------------------------------------- icons


def _hex_rgb(value: str) -> tuple[int, int, int]:
    v = value.lstrip("#")
    return int(v[0:2], 16), int(v[2:4], 16), int(v[4:6], 16)


def _png(width: int, height: int, rgba_rows: list[bytes]) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rgba_rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _in_bubble(x: float, y: float) -> bool:
    """A speech bubble in the unit square: a rounded rectangle with a tail."""
    x0, x1, y0, y1, r = 0.16, 0.84, 0.20, 0.68, 0.13
    cx, cy = min(max(x, x0 + r), x1 - r), min(max(y, y0 + r), y1 - r)
    if x0 <= x <= x1 and y0 <= y <= y1 and (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
        return True
    # the tail: a triangle below the left part
    ax, ay, bx, by, qx, qy = 0.28, 0.62, 0.48, 0.66, 0.26, 0.84
    d = (by - qy) * (ax - qx) + (qx - bx) * (ay - qy)
    s = ((by - qy) * (x - qx) + (qx - bx) * (y - qy)) / d
    t = ((qy - ay) * (x - qx) + (ax - qx) * (y - qy)) / d
    return s >= 0 and t >= 0 and s + t <= 1


def _in_dot(x: float, y: float) -> bool:
    return any((x - cx) ** 2 + (y - 0.44) ** 2 <= 0.055**2 for cx in (0.34, 0.50, 0.66))


def _coverage(size: int, inside, samples: int = 3) -> list[list[float]]:
    """Share of each pixel inside the shape: the pixel centre, supersampled
    (``samples``×``samples``) only along the edges (anti-aliasing)."""
    centre = [
        [1.0 if inside((px + 0.5) / size, (py + 0.5) / size) else 0.0 for px in range(size)] for py in range(size)
    ]
    step = 1.0 / (size * samples)
    grid = [row[:] for row in centre]
    for py in range(size):
        for px in range(size):
            v = centre[py][px]
            near = [
                centre[y][x]
                for y, x in ((py - 1, px), (py + 1, px), (py, px - 1), (py, px + 1))
                if 0 <= y < size and 0 <= x < size
            ]
            if all(n == v for n in near):
                continue
            hits = sum(
                inside((px * samples + sx + 0.5) * step, (py * samples + sy + 0.5) * step)
                for sy in range(samples)
                for sx in range(samples)
            )
            grid[py][px] = hits / (samples * samples)
    return grid


def color_icon(accent: tuple[int, int, int], size: int = 192) -> bytes:
    """192×192: a white speech bubble with three dots on the accent colour."""
    cover = _coverage(size, lambda x, y: _in_bubble(x, y) and not _in_dot(x, y))
    rows = []
    for row in cover:
        out = bytearray()
        for a in row:
            out += bytes(round(c + (255 - c) * a) for c in accent) + b"\xff"
        rows.append(bytes(out))
    return _png(size, size, rows)


def outline_icon(size: int = 32) -> bytes:
    """32×32: the bubble in white on a transparent background (as Teams requires)."""
    cover = _coverage(size, lambda x, y: _in_bubble(x, y) and not _in_dot(x, y), samples=4)
    rows = [b"".join(b"\xff\xff\xff" + bytes([round(255 * a)]) for a in row) for row in cover]
    return _png(size, size, rows)


# --------------------------------------------------------------------------- CLI

teams_app = typer.Typer(help="Microsoft Teams bot.", no_args_is_help=True)
bots_app = typer.Typer(help="The Slack and Teams bots as their own process.", no_args_is_help=True)


@teams_app.command("manifest")
def manifest_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="The zip to write.")] = Path("vraagbaak-teams.zip"),
    app_id: Annotated[str | None, typer.Option("--app-id", help="Microsoft App ID (default: TEAMS_APP_ID).")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="App version x.y.z (raise it on each upload).")
    ] = None,
) -> None:
    """Generate the Teams app package (manifest.json + icons, zipped) from the settings."""
    try:
        config = BotSettings(teams_app_version=version) if version else BotSettings()
        path = build_teams_manifest(config, out, app_id)
    except ValueError as exc:  # includes pydantic's ValidationError
        typer.secho(f"cannot build the Teams package: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    typer.echo(str(path))
    typer.secho(
        "upload it in Teams: Apps → Manage your apps → Upload an app (or via the Teams admin centre)",
        err=True,
        dim=True,
    )


@bots_app.command("serve")
def bots_serve(
    host: Annotated[str | None, typer.Option(help="Address (default: VRAAGBAAK_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: VRAAGBAAK_PORT or 8000).")] = None,
    socket_mode: Annotated[
        bool, typer.Option("--socket-mode", help="Slack over Socket Mode (SLACK_APP_TOKEN).")
    ] = False,
) -> None:
    """Run only the bots (Slack at /slack/events, Teams at /api/teams/messages) with their own pipeline."""
    from .server import serve

    serve(host=host, port=port, socket_mode=socket_mode)


def register(app: typer.Typer) -> None:
    """Add ``teams manifest`` and ``bots serve`` to the main ``vraagbaak`` CLI."""
    app.add_typer(teams_app, name="teams")
    app.add_typer(bots_app, name="bots")
