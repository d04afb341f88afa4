"""Prometheus metrics, one registry per app (so several apps, e.g. in tests, don't clash).

Exported at ``GET /metrics``:

``vraagbaak_http_requests_total{method,endpoint,status}``
    requests by route template (``/v1/documents/{doc_id}``; ``unmatched`` for 404s).
``vraagbaak_http_request_duration_seconds{method,endpoint}``
    latency until the response is complete (a streamed answer: until its end).
``vraagbaak_llm_time_to_first_token_seconds``, ``vraagbaak_llm_tokens_per_second``
    per answer, as reported by the pipeline.
``vraagbaak_llm_in_flight``, ``vraagbaak_llm_queue_depth``, ``vraagbaak_llm_queue_wait_seconds``
    generations running / requests waiting for the LLM gate / how long admitted ones waited.
``vraagbaak_llm_rejected_total{reason}``
    refused by the gate: ``queue_full``, ``queue_timeout``, or ``llm_unavailable``
    (the backend said it is overloaded/unreachable).
``vraagbaak_rate_limited_total``
    429s of the per-key rate limit.
``vraagbaak_answers_total{endpoint,refused}``, ``vraagbaak_answers_refused_total{reason}``
    answers given, and answers where the pipeline refused (no relevant passages, ...).
``vraagbaak_client_disconnects_total``
    streams whose client went away (generation stopped).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
_TTFT_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60)
_TPS_BUCKETS = (1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 200)


class Metrics:
    def __init__(self, queue_depth: Callable[[], float] | None = None, in_flight: Callable[[], float] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vraagbaak_http_requests", "HTTP requests", ["method", "endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "vraagbaak_http_request_duration_seconds",
            "HTTP request latency (streams: until the end)",
            ["method", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "vraagbaak_llm_time_to_first_token_seconds",
            "Time to the first answer token",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens_per_s = Histogram(
            "vraagbaak_llm_tokens_per_second", "Generation speed per answer", buckets=_TPS_BUCKETS, registry=r
        )
        self.completion_tokens = Counter("vraagbaak_llm_completion_tokens", "Answer tokens generated", registry=r)
        self.queue_wait = Histogram(
            "vraagbaak_llm_queue_wait_seconds",
            "Time waited for an LLM slot (admitted requests)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("vraagbaak_llm_queue_depth", "Requests waiting for the LLM", registry=r)
        self.in_flight = Gauge("vraagbaak_llm_in_flight", "Generations running", registry=r)
        if queue_depth is not None:
            self.queue_depth.set_function(queue_depth)
        if in_flight is not None:
            self.in_flight.set_function(in_flight)
        self.rejected = Counter(
            "vraagbaak_llm_rejected", "Requests refused for lack of LLM capacity", ["reason"], registry=r
        )
        self.rate_limited = Counter("vraagbaak_rate_limited", "Requests refused by the rate limit", registry=r)
        self.answers = Counter("vraagbaak_answers", "Answers given", ["endpoint", "refused"], registry=r)
        self.refusals = Counter(
            "vraagbaak_answers_refused", "Answers where the pipeline refused", ["reason"], registry=r
        )
        self.disconnects = Counter(
            "vraagbaak_client_disconnects", "Streams stopped because the client went away", registry=r
        )
        for reason in ("queue_full", "queue_timeout", "llm_unavailable"):
            self.rejected.labels(reason=reason)

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        self.requests.labels(method=method, endpoint=endpoint, status=str(status)).inc()
        self.latency.labels(method=method, endpoint=endpoint).observe(seconds)

    def observe_answer(self, answer, endpoint: str) -> None:
        """Record one final rag.schema.Answer."""
        t = answer.timings
        if t.first_token_ms is not None:
            self.ttft.observe(t.first_token_ms / 1000.0)
        if t.tokens_per_s:
            self.tokens_per_s.observe(t.tokens_per_s)
        if t.completion_tokens:
            self.completion_tokens.inc(t.completion_tokens)
        self.answers.labels(endpoint=endpoint, refused=str(bool(answer.refused)).lower()).inc()
        if answer.refused:
            self.refusals.labels(reason=answer.refusal_reason or "unknown").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
