"""Settings of the Slack and Teams bots.

Values come, highest priority first, from keyword arguments, environment variables, the
TOML settings file (``VRAAGBAAK_CONFIG`` or ``./vraagbaak.toml``, optional ``[vraagbaak]``
table, keys named like the fields below in lower case; a key no settings class knows is an
error, see :mod:`rag.settings`) and the defaults.

The platform credentials use the usual names, without a prefix::

    SLACK_BOT_TOKEN=xoxb-…            SLACK_SIGNING_SECRET=…       (SLACK_APP_TOKEN=xapp-… for Socket Mode)
    TEAMS_APP_ID=<guid>               TEAMS_APP_PASSWORD=<secret>  TEAMS_TENANT_ID=<guid>

Access: each bot has its own mapping from where a question is asked to the access groups
it may see (``rag.retrieve.Filters.groups``; documents without groups are public)::

    VRAAGBAAK_SLACK_GROUPS='{"T0123/C0456": ["sociaal"], "T0123/im": ["sociaal"], "T0123/*": []}'
    VRAAGBAAK_TEAMS_GROUPS='{"<tenant>/<team id>": ["financien"], "<tenant>/personal": [], "*": []}'

The most specific key wins (see :func:`lookup_groups`); no match means public documents
only. A bot never answers without a group filter.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from rag.settings import ENV_PREFIX, VraagbaakSettings

SLACK_API_URL = "https://slack.com/api/"
# Bot Framework channel service (Teams → bot): tokens are signed with the keys published here.
BOTFRAMEWORK_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"

_GROUP_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


def _alias(name: str) -> Any:
    """Accept the field name (keyword argument, TOML key) and ``VRAAGBAAK_<NAME>`` (env)."""
    return AliasChoices(name, f"{ENV_PREFIX}{name.upper()}")


class BotSettings(VraagbaakSettings):
    model_config = SettingsConfigDict(populate_by_name=True)

    # ------------------------------------------------------------------ Slack
    slack_bot_token: SecretStr | None = None  # SLACK_BOT_TOKEN (xoxb-…)
    slack_signing_secret: SecretStr | None = None  # SLACK_SIGNING_SECRET
    slack_app_token: SecretStr | None = None  # SLACK_APP_TOKEN (xapp-…): Socket Mode only
    slack_api_url: str = SLACK_API_URL  # SLACK_API_URL: the Web API base (tests: a fake on loopback)
    # (NoDecode: parsed by the validator below, so a mapping from the environment replaces,
    # never merges with, one given as an argument)
    slack_groups: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict, validation_alias=_alias("slack_groups")
    )
    # Socket Mode (python -m service.bots --socket-mode): for sites without a public endpoint
    slack_socket_mode: bool = Field(False, validation_alias=_alias("slack_socket_mode"))

    # ------------------------------------------------------------------ Teams
    teams_app_id: str | None = None  # TEAMS_APP_ID (the Azure Bot's Microsoft App ID)
    teams_app_password: SecretStr | None = None  # TEAMS_APP_PASSWORD (its client secret)
    teams_tenant_id: str | None = None  # TEAMS_TENANT_ID (single-tenant bots; also limits who is answered)
    teams_groups: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict, validation_alias=_alias("teams_groups")
    )
    # Where the signing keys of incoming activities are published (OpenID metadata). Tests
    # point this at a fake on loopback; in production leave the Bot Framework default.
    teams_openid_metadata_url: str = BOTFRAMEWORK_OPENID_METADATA_URL  # TEAMS_OPENID_METADATA_URL
    teams_typing_interval: float = Field(3.0, gt=0, validation_alias=_alias("teams_typing_interval"))

    # ------------------------------------------------------------------ both
    # Link for a source that is not itself a URL (a file path): a template with {doc_id},
    # {source} (URL-quoted), e.g. "https://intranet.gemeente.nl/documenten/{doc_id}".
    # Empty: such sources are shown without a link.
    bots_document_url: str = Field("", validation_alias=_alias("bots_document_url"))
    bots_feedback_buttons: bool = Field(True, validation_alias=_alias("bots_feedback_buttons"))

    # ------------------------------------------------------------------ Teams app package
    teams_app_name: str = Field("Vraagbaak", max_length=30, validation_alias=_alias("teams_app_name"))
    teams_app_full_name: str = Field(
        "Vraagbaak — vragen over gemeentelijke documenten",
        max_length=100,
        validation_alias=_alias("teams_app_full_name"),
    )
    teams_app_version: str = Field("1.0.0", pattern=r"^\d+\.\d+\.\d+$", validation_alias=_alias("teams_app_version"))
    teams_developer_name: str = Field("Gemeente", max_length=32, validation_alias=_alias("teams_developer_name"))
    teams_developer_url: str = Field("https://www.example.nl", validation_alias=_alias("teams_developer_url"))
    teams_privacy_url: str = Field("https://www.example.nl/privacy", validation_alias=_alias("teams_privacy_url"))
    teams_terms_url: str = Field("https://www.example.nl/voorwaarden", validation_alias=_alias("teams_terms_url"))
    teams_accent_color: str = Field(
        "#154273", pattern=r"^#[0-9A-Fa-f]{6}$", validation_alias=_alias("teams_accent_color")
    )

    # ------------------------------------------------------------------ validation
    @field_validator("slack_groups", "teams_groups", mode="before")
    @classmethod
    def _parse_json(cls, v):
        if isinstance(v, str):
            v = json.loads(v) if v.strip() else {}
        return v

    @field_validator("slack_groups", "teams_groups")
    @classmethod
    def _check_groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, groups in v.items():
            if not key or (key != "*" and "/" not in key):
                raise ValueError(f"group mapping key {key!r}: use 'WORKSPACE/CHANNEL', 'WORKSPACE/*' or '*'")
            for g in groups:
                if not _GROUP_RE.match(g):
                    raise ValueError(f"group mapping {key!r}: invalid group name {g!r}")
        return v

    @field_validator("teams_developer_url", "teams_privacy_url", "teams_terms_url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("Teams requires https:// URLs in the app manifest")
        return v

    @field_validator("slack_api_url")
    @classmethod
    def _slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    # ------------------------------------------------------------------ helpers
    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret)

    @property
    def teams_enabled(self) -> bool:
        return bool((self.teams_app_id or "").strip())

    def secret(self, name: str) -> str:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else ""


def lookup_groups(mapping: dict[str, list[str]], workspace: str, place: str, *kinds: str) -> list[str]:
    """The groups for a question asked in ``place`` (a channel, team) of ``workspace`` (a
    Slack workspace, a Microsoft tenant). Tried in order: ``workspace/place``, then
    ``workspace/KIND`` for each kind given (e.g. ``im``, ``personal``), ``workspace/*``,
    ``*``. No match: ``[]`` (public documents only)."""
    keys = []
    if workspace and place:
        keys.append(f"{workspace}/{place}")
    keys += [f"{workspace}/{k}" for k in kinds if workspace and k]
    if workspace:
        keys.append(f"{workspace}/*")
    keys.append("*")
    for k in keys:
        if k in mapping:
            return list(mapping[k])
    return []
