"""Prometheus metrics of the memory, and the text ``GET /metrics`` serves.

The engine calls the small ``observe_*``/``count_*`` functions below; nothing
else touches the metric objects. Counters live in the process that counted
them: with several gunicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (an empty
directory, emptied by gunicorn's master before the workers start:
``memory.infra.multiprocess``) and prometheus_client keeps them in shared files
that :func:`render_latest` adds up across workers. Each gauge says how its
workers' values combine (``multiprocess_mode``): the ones set from the truth at
each scrape take the most recent value, that of the worker answering the scrape.

``deploy/prometheus/alerts.yml`` and ``deploy/grafana/beecatalog-memory.json``
name these series; ``tests/infra/test_monitoring.py`` fails when they name one
this module does not expose.
"""
from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import REGISTRY, multiprocess
from prometheus_client.core import CounterMetricFamily

from memory.infra import redis

logger = logging.getLogger("memory")

TIERS = ("l1", "l2", "l3")

# Lookups answered from L1 take microseconds, from L3 milliseconds.
LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# An LLM call takes seconds.
GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)

TIER_HITS = Counter(
    "beecatalog_memory_tier_hits", "Products found fresh in a tier", ["tier"]
)
TIER_MISSES = Counter(
    "beecatalog_memory_tier_misses",
    "Products a tier did not hold fresh (they fall through to the next tier; l3 misses are final)",
    ["tier"],
)
LOOKUP_SECONDS = Histogram(
    "beecatalog_memory_lookup_seconds", "Time of one batched read of a tier", ["tier"], buckets=LOOKUP_BUCKETS
)
GENERATIONS = Counter("beecatalog_memory_generations", "Contents generated and stored")
GENERATION_SECONDS = Histogram(
    "beecatalog_memory_generation_seconds", "Time of one generation call to the provider", buckets=GENERATION_BUCKETS
)
TOKENS_SPENT = Counter("beecatalog_memory_tokens_spent", "Tokens spent on the generations that were stored")
TOKENS_SAVED = Counter("beecatalog_memory_tokens_saved", "Tokens saved by serving stored content instead")
TOKENS_WASTED = Counter(
    "beecatalog_memory_tokens_wasted", "Tokens billed for generation attempts that failed or were discarded"
)
TOKENS_SAVED_BY_FAMILY = Counter(
    "beecatalog_memory_tokens_saved_by_family",
    "Tokens the variants derived from their family's base content did not cost (one generation per family)",
)
# Parts of tokens_spent: prompt tokens the provider served from its cache (billed at the cached
# price), completion tokens spent reasoning (billed as completion tokens).
TOKENS_CACHED = Counter(
    "beecatalog_memory_tokens_cached", "Prompt tokens of the stored generations the provider served from its cache"
)
TOKENS_REASONING = Counter(
    "beecatalog_memory_tokens_reasoning", "Completion tokens of the stored generations spent reasoning"
)
REDIS_UP = Gauge(
    "beecatalog_memory_redis_up",
    "1 when Redis (L2) answered at the last scrape, 0 when it is down or not configured",
    multiprocess_mode="mostrecent",
)
LLM_REQUESTS = Counter(
    "beecatalog_memory_llm_requests", "HTTP requests started to the LLM provider, the SDK's retries included"
)
LLM_RATE_WAIT_SECONDS = Histogram(
    "beecatalog_memory_llm_rate_limit_wait_seconds",
    "Time a request to the LLM provider waited for its place under LLM_RPM/LLM_TPM",
    buckets=(0.001, 0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
LLM_BREAKER_OPEN = Gauge(
    "beecatalog_memory_llm_breaker_open",
    "1 while the provider's circuit breaker stops calls (open, or testing with one call), 0 when closed",
    multiprocess_mode="mostrecent",
)
# Why a generation ended without content (``services.generation``'s failure kinds): the
# provider could not answer now, answered with nothing usable, or its circuit breaker refused
# the call (nothing was paid).
GENERATION_FAILURE_REASONS = ("provider_unavailable", "provider_error", "not_attempted")
GENERATION_FAILURES = Counter(
    "beecatalog_memory_generation_failures",
    "Generations that ended without content, by reason: provider_unavailable, provider_error,"
    " not_attempted (the provider's circuit breaker refused the call)",
    ["reason"],
)
# The purge's backlog, read from PostgreSQL at each scrape (``services.purge`` registers the
# callback): whichever process purges (a Celery worker), the web process serving /metrics sees it.
PURGE_BACKLOG_LIMIT = 10_000
PURGE_BACKLOG = Gauge(
    "beecatalog_memory_purge_backlog_entries",
    f"Expired entries still stored, waiting for the purge (counted up to {PURGE_BACKLOG_LIMIT})",
    multiprocess_mode="mostrecent",
)
PURGE_LAG_SECONDS = Gauge(
    "beecatalog_memory_purge_lag_seconds",
    "Seconds since the oldest expired entry still stored expired (0 when none): how far the purge lags",
    multiprocess_mode="mostrecent",
)
PURGE_INTERVAL_SECONDS = Gauge(
    "beecatalog_memory_purge_interval_seconds",
    "MEMORY_PURGE_INTERVAL: how often the scheduled purge should run (the alerts compare the lag with it)",
    multiprocess_mode="mostrecent",
)
# Refresh-ahead's settings, set at each scrape (``services.refresh`` registers the callback): the
# alerts compare what it spends per run with its budget.
REFRESH_TOKEN_BUDGET = Gauge(
    "beecatalog_memory_refresh_token_budget",
    "MEMORY_REFRESH_TOKEN_BUDGET: the tokens one refresh-ahead run may bill (0: refresh-ahead is off)",
    multiprocess_mode="mostrecent",
)
REFRESH_INTERVAL_SECONDS = Gauge(
    "beecatalog_memory_refresh_interval_seconds",
    "MEMORY_REFRESH_AHEAD_INTERVAL: how often the scheduled refresh-ahead runs",
    multiprocess_mode="mostrecent",
)
LLM_BREAKER_OPENED = Counter(
    "beecatalog_memory_llm_breaker_opened",
    "Times the provider's circuit breaker opened (each counted by the process that opened it)",
)

# Totals of the daily statistics (``DailyStats``, summed over every day), read from PostgreSQL at
# each scrape (``services.stats`` registers the reader): what every process recorded, the Celery
# worker's generations and refresh-ahead runs and a ``generate_content`` run included, which the
# process counters above do not see when nothing scrapes those processes. Counters as
# PostgreSQL holds them (once the counter flush has written them: up to a minute late), the same
# in every web process: aggregate them across instances with ``max``, not ``sum``.
# ``DailyStats`` field -> (series, help).
RECORDED_TOTALS = {
    "generations": ("beecatalog_memory_recorded_generations",
                    "Contents generated and stored by any process (the daily statistics' generations)"),
    "tokens_spent": ("beecatalog_memory_recorded_tokens_spent",
                     "Tokens of the stored generations of any process (the daily statistics' tokens_spent)"),
    "tokens_wasted": ("beecatalog_memory_recorded_tokens_wasted",
                      "Tokens billed for failed or discarded attempts in any process (the daily statistics')"),
    # Refresh-ahead (memory.services.refresh) runs in the Celery worker: its cost (a part of
    # tokens_spent), and its gain, the lookups served by content it refreshed where the content it
    # replaced would have missed (counted by the counter flush, in whichever process runs it).
    "tokens_spent_ahead": ("beecatalog_memory_tokens_spent_ahead",
                           "Tokens spent by refresh-ahead regenerating hot entries before they expired or went stale"),
    "misses_avoided": ("beecatalog_memory_misses_avoided",
                       "Lookups that hit content refreshed ahead, after the content it replaced would have"
                       " stopped being served"),
}

# What a scrape asks first, registered by the layers above (the provider's breaker state).
_scrape_callbacks: list = []

# Each tier's series, resolved once: ``labels()`` looks the series up on every call, a
# sizeable share of an L1 hit (docs/benchmarks.md); and every series exists, at 0, before
# the first lookup.
_TIER_SERIES = {
    tier: (LOOKUP_SECONDS.labels(tier), TIER_HITS.labels(tier), TIER_MISSES.labels(tier)) for tier in TIERS
}


def observe_tier_lookup(tier: str, seconds: float, *, hits: int, misses: int) -> None:
    """Record one batched read of a tier: its latency, and how many products it had or lacked."""
    latency, tier_hits, tier_misses = _TIER_SERIES[tier]
    latency.observe(seconds)
    if hits:
        tier_hits.inc(hits)
    if misses:
        tier_misses.inc(misses)


def count_tokens_saved(tokens: int) -> None:
    if tokens > 0:
        TOKENS_SAVED.inc(tokens)


def count_tokens_wasted(tokens: int) -> None:
    if tokens > 0:
        TOKENS_WASTED.inc(tokens)


def count_tokens_saved_by_family(tokens: int) -> None:
    if tokens > 0:
        TOKENS_SAVED_BY_FAMILY.inc(tokens)


# Resolved once, as the tiers': every reason's series exists, at 0, before the first failure.
_FAILURE_SERIES = {reason: GENERATION_FAILURES.labels(reason) for reason in GENERATION_FAILURE_REASONS}


def count_generation_failure(reason: str) -> None:
    """One generation ended without content, for ``reason`` (one of ``GENERATION_FAILURE_REASONS``)."""
    _FAILURE_SERIES[reason].inc()


def set_purge_backlog(entries: float, lag_seconds: float, interval_seconds: float) -> None:
    """What the purge has left: expired entries still stored, and how long the oldest has been expired."""
    PURGE_BACKLOG.set(entries)
    PURGE_LAG_SECONDS.set(lag_seconds)
    PURGE_INTERVAL_SECONDS.set(interval_seconds)


def set_refresh_settings(budget: float, interval_seconds: float) -> None:
    REFRESH_TOKEN_BUDGET.set(budget)
    REFRESH_INTERVAL_SECONDS.set(interval_seconds)


def count_generation_stored(tokens: int, *, cached: int = 0, reasoning: int = 0) -> None:
    """A generated content reached the memory, having cost ``tokens``, of which ``cached`` prompt
    tokens came from the provider's cache and ``reasoning`` completion tokens went to reasoning."""
    GENERATIONS.inc()
    if tokens > 0:
        TOKENS_SPENT.inc(tokens)
    if cached > 0:
        TOKENS_CACHED.inc(cached)
    if reasoning > 0:
        TOKENS_REASONING.inc(reasoning)


def observe_generation(seconds: float) -> None:
    """Record the latency of one provider call.

    Its tokens are counted when the content is stored (:func:`count_generation_stored`), so
    that a generation is counted once.
    """
    GENERATION_SECONDS.observe(seconds)


def set_redis_up(available: bool) -> None:
    REDIS_UP.set(1 if available else 0)


def count_llm_request() -> None:
    LLM_REQUESTS.inc()


def observe_rate_limit_wait(seconds: float) -> None:
    LLM_RATE_WAIT_SECONDS.observe(max(0.0, seconds))


def set_llm_breaker_open(stopped: bool) -> None:
    LLM_BREAKER_OPEN.set(1 if stopped else 0)


def count_llm_breaker_opened() -> None:
    LLM_BREAKER_OPENED.inc()


class RecordedTotals:
    """The collector of ``RECORDED_TOTALS``: yields what the last :func:`set_recorded_totals` set
    (each scrape sets them first), nothing while they are unknown (the database did not answer)."""

    def __init__(self):
        self.values: dict[str, float] | None = None

    def describe(self):
        # Registering must not read the database (the default describe() would collect).
        return [CounterMetricFamily(name, help_text) for name, help_text in RECORDED_TOTALS.values()]

    def collect(self):
        values = self.values
        if values is None:
            return
        for field, (name, help_text) in RECORDED_TOTALS.items():
            yield CounterMetricFamily(name, help_text, value=values.get(field, 0))


_RECORDED = RecordedTotals()
REGISTRY.register(_RECORDED)


def set_recorded_totals(totals: dict[str, float] | None) -> None:
    """The daily statistics' totals now (``RECORDED_TOTALS``' fields), or None when unknown."""
    _RECORDED.values = None if totals is None else {field: float(totals.get(field) or 0) for field in RECORDED_TOTALS}


def on_scrape(callback) -> None:
    """Run ``callback()`` before each scrape renders (to set a gauge from the truth now)."""
    if callback not in _scrape_callbacks:
        _scrape_callbacks.append(callback)


def multiprocess_enabled() -> bool:
    return bool(settings.PROMETHEUS_MULTIPROC_DIR)


def render_latest() -> tuple[bytes, str]:
    """The exposition text of every metric (of every worker in multiprocess mode), and its content type."""
    set_redis_up(redis.info()["available"])
    for callback in _scrape_callbacks:
        callback()
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_RECORDED)  # read by the process answering, not kept in the shared files
    else:
        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _web_only_series() -> set[str]:
    """The series only an ``on_scrape`` callback sets, from a truth every process shares (the
    database, the settings): web's /metrics shows them; another target showing them too would
    count them twice (the daily statistics' totals), or show a 0 no one set (the purge's)."""
    gauges = (PURGE_BACKLOG, PURGE_LAG_SECONDS, PURGE_INTERVAL_SECONDS, REFRESH_TOKEN_BUDGET, REFRESH_INTERVAL_SECONDS)
    return {name for name, _ in RECORDED_TOTALS.values()} | {gauge._name for gauge in gauges}


class _ProcessSeries:
    """The families of ``source`` but the web-only series."""

    def __init__(self, source):
        self.source = source

    def collect(self):
        excluded = _web_only_series()
        for family in self.source.collect():
            if family.name not in excluded:
                yield family


def render_process() -> tuple[bytes, str]:
    """The exposition text of what this process counted (with ``PROMETHEUS_MULTIPROC_DIR``: every
    process of its folder, the Celery worker's pool), and its content type: the worker's
    endpoint. No ``on_scrape`` callback runs, and the series they set are left out: web shows them."""
    set_redis_up(redis.info()["available"])
    if multiprocess_enabled():
        source = CollectorRegistry()
        multiprocess.MultiProcessCollector(source)
    else:
        source = REGISTRY
    return generate_latest(_ProcessSeries(source)), CONTENT_TYPE_LATEST


class _ProcessMetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] != "/metrics":
            self._answer(404, "Não encontrado: as métricas estão em /metrics\n".encode(), "text/plain; charset=utf-8")
            return
        try:
            body, content_type = render_process()
        except Exception:  # one bad scrape must not end the server thread
            logger.exception("Falha ao gerar as métricas do processo")
            self._answer(500, "Falha ao gerar as métricas\n".encode(), "text/plain; charset=utf-8")
            return
        self._answer(200, body, content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # one line per scrape would drown the worker's log
        pass


def serve_process_metrics(port: int, address: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Serve :func:`render_process` at ``http://address:port/metrics`` from a daemon thread (the
    Celery worker's endpoint, ``METRICS_WORKER_PORT``); the server, to ``shutdown()``. ``OSError``
    when the port cannot be taken."""
    server = ThreadingHTTPServer((address, port), _ProcessMetricsHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="memory-process-metrics", daemon=True).start()
    return server
