"""Settings of the HTTP service (``vraagbaak serve``).

Same mechanism as :mod:`rag.settings`: keyword arguments, then environment variables
``VRAAGBAAK_<NAME>`` (e.g. ``VRAAGBAAK_PORT=8080``), then the TOML settings file
(``VRAAGBAAK_CONFIG`` or ``./vraagbaak.toml``, optional ``[vraagbaak]`` table), then the
defaults below. The service keys live in the same file as the library's settings; each
settings class only reads the keys it knows, and a key no settings class knows is an error
(see :mod:`rag.settings`).

List values (``cors_origins``) may be given as JSON (``["https://a.nl"]``) or as a
comma-separated string (``https://a.nl,https://b.nl``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from rag.settings import ENV_PREFIX, VraagbaakSettings


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vraagbaak"


class ServiceSettings(VraagbaakSettings):
    """Everything the HTTP service adds to :class:`rag.settings.Settings`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX)

    # --- where to listen --------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # --- state: API keys (keys.sqlite), feedback (feedback.sqlite), audit log
    # (audit.sqlite), uploaded documents (uploads/). Default $XDG_DATA_HOME/vraagbaak,
    # i.e. ~/.local/share/vraagbaak.
    data_dir: Path = Field(default_factory=_default_data_dir)

    # --- access ----------------------------------------------------------------------
    # Dev mode: requests WITHOUT a key from a loopback address (127.0.0.0/8, ::1) are let in
    # as the caller "anonymous" with role ``dev_role`` and no groups (public documents
    # only). A wrong key is still refused. Off by default; never enable it on a server
    # that is reachable from other machines.
    dev_mode: bool = False
    dev_role: Literal["reader", "admin"] = "reader"

    # CORS: the origins of the pages that embed the widget, e.g. https://www.gemeente.nl.
    # Empty = no cross-origin access. "*" is refused together with credentials.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_allow_credentials: bool = False
    cors_max_age: int = 600

    # --- links to the document viewer (service/links.py) -----------------------------------
    # Citations carry signed, expiring viewer links that need no API key (a Slack message,
    # a Teams card, a new browser tab). The secret signs them: set the same one on every
    # replica of a multi-host deployment; unset, one is created in data_dir/link-secret.
    # public_base_url makes the links absolute (https://vraagbaak.gemeente.nl); empty =
    # relative to the service. The bots need absolute links: they fall back to their own
    # service URL when this is empty.
    link_secret: SecretStr | None = None
    link_ttl_s: float = Field(7 * 24 * 3600, gt=0)
    public_base_url: str = ""

    # --- request validation ------------------------------------------------------------
    # (the question's maximum length is rag.settings.Settings.max_question_chars)
    max_history_turns: int = Field(20, ge=0)
    max_turn_chars: int = Field(8000, ge=1, le=8000)  # rag.schema.Turn allows 8,000
    max_top_k: int = Field(20, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)  # JSON bodies
    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)  # POST /v1/documents
    max_comment_chars: int = Field(2000, ge=0)

    # --- rate limit per API key (token bucket; 0 = off) ----------------------------------
    rate_limit_per_minute: float = Field(60.0, ge=0)
    rate_limit_burst: int = Field(20, ge=1)

    # --- the LLM gate -------------------------------------------------------------------
    # At most ``llm_concurrency`` answers are generated at once; at most ``llm_queue``
    # more wait for a slot, each at most ``llm_queue_timeout`` seconds. Beyond that: 503
    # with Retry-After. On a 2-core CPU with llama.cpp one at a time is fastest.
    llm_concurrency: int = Field(1, ge=1)
    llm_queue: int = Field(4, ge=0)
    llm_queue_timeout: float = Field(60.0, gt=0)
    # CPU priority (nice) of the worker threads that load models, answer and ingest (and of
    # the threads llama.cpp/torch start from them): the event loop goes first, so /healthz
    # and refusals stay fast while the LLM uses every core. 0 = same priority.
    worker_nice: int = Field(10, ge=0, le=19)

    # --- logging ------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"  # any case; WARN, FATAL too
    log_json: bool = True
    # Opt-in audit log (question, answer, citations, caller) in data_dir/audit.sqlite,
    # rows older than audit_retention_days are deleted (at start-up and hourly).
    audit_log: bool = False
    audit_retention_days: int = Field(30, ge=1)

    # --- loading ------------------------------------------------------------------------
    # Load the models in the background after start-up (/readyz says when it is done), so
    # /healthz answers at once. False: load before accepting connections.
    load_in_background: bool = True
    # On SIGTERM: new requests get 503 while the ones in flight (answers, streams) finish,
    # for at most this many seconds (service/lifecycle.py); then the process exits.
    shutdown_grace_s: float = Field(30.0, ge=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_name(cls, v):
        if isinstance(v, str):
            v = v.strip().upper()
            return {"WARN": "WARNING", "FATAL": "CRITICAL"}.get(v, v)
        return v

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, v):
        if isinstance(v, str):
            s = v.strip()
            if s.startswith("["):
                import json

                return json.loads(s)
            return [o.strip() for o in s.split(",") if o.strip()]
        return v

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, v: list[str]) -> list[str]:
        out = []
        for o in v:
            o = o.strip().rstrip("/")
            if o != "*" and not (o.startswith("http://") or o.startswith("https://")):
                raise ValueError(f"CORS origin {o!r} must start with http:// or https:// (or be '*')")
            out.append(o)
        return out

    @field_validator("public_base_url")
    @classmethod
    def _check_base_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v and not v.startswith(("http://", "https://")):
            raise ValueError(f"public_base_url {v!r} must start with http:// or https:// (or be empty)")
        return v

    @model_validator(mode="after")
    def _no_wildcard_with_credentials(self) -> ServiceSettings:
        if self.cors_allow_credentials and "*" in self.cors_origins:
            raise ValueError(
                "cors_origins '*' cannot be combined with cors_allow_credentials: list the widget's origins"
            )
        return self

    def resolve_data_dir(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def keys_db(self) -> Path:
        return self.resolve_data_dir() / "keys.sqlite"

    @property
    def feedback_db(self) -> Path:
        return self.resolve_data_dir() / "feedback.sqlite"

    @property
    def audit_db(self) -> Path:
        return self.resolve_data_dir() / "audit.sqlite"

    @property
    def link_secret_file(self) -> Path:
        return self.resolve_data_dir() / "link-secret"

    @property
    def uploads_dir(self) -> Path:
        return self.resolve_data_dir() / "uploads"
