"""Slack and Teams front-ends over the answer pipeline (the same :class:`rag.schema.Answer`).

Mount both in the Vraagbaak API (each is a no-op, with a log line, when its credentials
are absent)::

    from service.bots import mount_bots
    app = create_app(...)
    mount_bots(app)                      # /slack/events and /api/teams/messages

or run them as their own process: ``vraagbaak bots serve`` (``python -m service.bots``).
See service/bots/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import BotSettings
from .slack import mount_slack
from .teams import mount_teams

__all__ = ["BotSettings", "mount_bots", "mount_slack", "mount_teams"]


def mount_bots(app, pipeline_provider: Callable[[], Any] | None = None, settings: BotSettings | None = None) -> None:
    """Mount the Slack and the Teams bot on ``app`` (by default they answer through the
    service's answering service — its pipeline, LLM gate, worker pool, metrics and audit log —
    and store feedback in its feedback store)."""
    settings = settings or BotSettings()
    mount_slack(app, pipeline_provider, settings)
    mount_teams(app, pipeline_provider, settings)
