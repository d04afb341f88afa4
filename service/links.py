"""Signed, expiring links to the document viewer, for citations opened without an API key.

A citation's link is opened from a browser tab, a Slack message or a Teams card, which carry
no API key. So the service signs each link it hands out:

    /v1/documents/{doc_id}/view?chunk=12&hl=40-95&exp=1767225600&g=team-a,team-b&sig=…#quote

``sig`` is an HMAC-SHA256 (server-side secret) over the document id, the caller's access
groups (``*`` for an admin, who sees everything) and the expiry. Opening the link checks
the signature and the expiry, then the same rule as every other read: the document must be
visible to the groups in the link (so a document whose groups changed since is no longer
shown). A tampered, expired or foreign link gets 404, exactly like a document that does not
exist. ``chunk`` and ``hl`` only choose what is highlighted and are not signed. A request
that also carries an API key must pass both (the key's own groups too).

The secret: ``VRAAGBAAK_LINK_SECRET`` when set (replicas on several hosts set the same one),
else a random one created once in the data folder (``link-secret``, mode 600), which the
replicas on one host share. Rotating it invalidates every link handed out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from rag.schema import Citation

ALL_GROUPS = "*"


def load_secret(configured: str | None, path: Path) -> bytes:
    """The configured secret, else the one in ``path`` (created once, atomically)."""
    if configured:
        return configured.encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    for _ in range(50):  # another replica may be writing it right now
        value = path.read_text().strip()
        if value:
            return value.encode()
        time.sleep(0.02)
    raise RuntimeError(f"the link secret file {path} is empty")


def groups_param(groups: list[str] | None) -> str:
    """``None`` (an admin: everything) is ``*``; otherwise the sorted groups, comma-separated."""
    return ALL_GROUPS if groups is None else ",".join(sorted(set(groups)))


def parse_groups_param(value: str) -> list[str] | None:
    if value == ALL_GROUPS:
        return None
    return [g for g in value.split(",") if g]


def document_path(doc_id: str, what: str = "view") -> str:
    return f"/v1/documents/{quote(doc_id, safe='/')}/{what}"


@dataclass(frozen=True)
class LinkSigner:
    secret: bytes
    ttl_s: float = 7 * 24 * 3600
    base_url: str = ""  # "" = links relative to the service

    @classmethod
    def from_config(cls, cfg: Any) -> LinkSigner:
        """The signer as the service settings say (service/config.py: link_*, public_base_url)."""
        secret = cfg.link_secret.get_secret_value() if cfg.link_secret else None
        return cls(load_secret(secret, cfg.link_secret_file), cfg.link_ttl_s, cfg.public_base_url)

    def signature(self, doc_id: str, groups: str, expires: int) -> str:
        message = f"vraagbaak-view-v1\n{doc_id}\n{groups}\n{expires}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def params(self, doc_id: str, groups: list[str] | None, now: float | None = None) -> dict[str, str]:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        g = groups_param(groups)
        return {"exp": str(expires), "g": g, "sig": self.signature(doc_id, g, expires)}

    def verify(self, doc_id: str, g: str, exp: str, sig: str, now: float | None = None) -> list[str] | None | bool:
        """The groups the link grants (None: all), or False when the link is not valid."""
        try:
            expires = int(exp)
        except ValueError:
            return False
        if expires < (now if now is not None else time.time()):
            return False
        if not hmac.compare_digest(self.signature(doc_id, g, expires), sig or ""):
            return False
        return parse_groups_param(g)

    def view_url(
        self,
        doc_id: str,
        groups: list[str] | None,
        chunk_id: int | None = None,
        highlight: tuple[int, int] | None = None,
        now: float | None = None,
    ) -> str:
        query: dict[str, str] = {}
        if chunk_id is not None:
            query["chunk"] = str(chunk_id)
        if highlight is not None:
            query["hl"] = f"{highlight[0]}-{highlight[1]}"
        query.update(self.params(doc_id, groups, now))
        fragment = "#quote" if highlight is not None else "#passage" if chunk_id is not None else ""
        return f"{self.base_url.rstrip('/')}{document_path(doc_id)}?{urlencode(query)}{fragment}"

    def file_url(self, doc_id: str, groups: list[str] | None, page: int | None = None) -> str:
        query = urlencode(self.params(doc_id, groups))
        fragment = f"#page={page}" if page else ""
        return f"{self.base_url.rstrip('/')}{document_path(doc_id, 'file')}?{query}{fragment}"

    def link(self, citations: list[Citation], groups: list[str] | None) -> None:
        """Set ``url`` of every citation, for a caller with ``groups`` (None: an admin)."""
        for c in citations:
            hl = (c.quote_start, c.quote_end) if c.quote_start is not None and c.quote_end is not None else None
            c.url = self.view_url(c.doc_id, groups, c.chunk_id, hl)
