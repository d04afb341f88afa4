"""What the service keeps for its lifetime, one per app: ``app.state.vb``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from rag.settings import Settings

from .answering import AnswerService
from .auth import KeyStoreBase
from .config import ServiceSettings
from .feedback import FeedbackStoreBase
from .limits import LLMGate, RateLimiter
from .links import LinkSigner
from .logging import AuditLogBase
from .metrics import Metrics
from .workers import WorkerPool


@dataclass
class ServiceState:
    """The settings, stores and limits of the service, the pipeline (None until the models
    are loaded) and the answering service over it (:attr:`answers`, with the LLM gate, the
    worker pool and the metrics)."""

    settings: Settings
    cfg: ServiceSettings
    keys: KeyStoreBase
    limiter: RateLimiter
    feedback: FeedbackStoreBase
    audit: AuditLogBase | None
    pipeline: Any = None
    load_error: str | None = None
    loading: bool = False
    doc_lock: asyncio.Lock | None = None  # one ingest/removal at a time
    links: LinkSigner | None = None  # signs the citations' viewer links (service/links.py)
    draining_since: float | None = None  # monotonic time of SIGTERM (service/lifecycle.py)
    active_requests: int = 0  # requests in flight, /healthz, /readyz and /metrics not counted
    answers: AnswerService = field(init=False)

    def __post_init__(self) -> None:
        if self.links is None:
            self.links = LinkSigner.from_config(self.cfg)
        self.answers = AnswerService.from_settings(
            self.settings,
            self.cfg,
            lambda: self.pipeline,
            load_error=lambda: self.load_error,
            audit=self.audit,
            links=self.links,
        )

    @property
    def gate(self) -> LLMGate:
        return self.answers.gate

    @property
    def metrics(self) -> Metrics:
        return self.answers.metrics

    @property
    def workers(self) -> WorkerPool:
        return self.answers.workers

    def get_executor(self):
        """The worker pool's executor: the threads for CPU-heavy work (service/workers.py)."""
        return self.workers.executor()

    async def in_worker(self, fn, *args):
        return await self.workers.run(fn, *args)

    def require_pipeline(self) -> Any:
        """The pipeline; 503 (NotReady) while the models load or when loading failed."""
        return self.answers.require_pipeline()

    def document_lock(self) -> asyncio.Lock:
        if self.doc_lock is None:
            self.doc_lock = asyncio.Lock()
        return self.doc_lock
