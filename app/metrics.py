"""Prometheus metrics at ``/metrics`` (prometheus-client).

Counted as the process works: HTTP requests and their durations by method, route
template and status class (from app.request_context), access decisions by outcome
(from the access-check handlers) and the sizes of the ledger's committed batches (a
hook on the sequencer). Read from the database when scraped, with a short timeout:
the ledger's size and the age of its newest checkpoint, and the webhook backlog.

Several worker processes: each process counts on its own, so a scrape sees the
counters of whichever worker answered, unless PROMETHEUS_MULTIPROC_DIR names a folder
(prometheus-client's multiprocess mode, set before the server starts): then every
worker writes its counters there and any of them answers the sum. ``onceonly serve``
empties the folder's metric files when it starts.

``/metrics`` answers a scraper on loopback (with no proxy in between), or one that
sends ``Authorization: Bearer`` ONCEONLY_METRICS_TOKEN; anyone else gets a 403 problem.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.problems import Problem, problem_response
from app.settings import Settings
from consent.decision import Decision
from consent.models import Notification
from ledger.log import TransparencyLog
from ledger.models import LedgerCheckpoint

log = logging.getLogger("onceonly.metrics")

#: How long a scrape waits for the database before answering without its gauges.
SCRAPE_DB_TIMEOUT = 2.0
#: Request durations, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Entries per committed ledger batch (the sequencer takes at most 128 by default).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
#: The files prometheus-client's multiprocess mode writes (one per kind and process).
_METRIC_FILE = re.compile(r"(counter|histogram|summary|gauge_[a-z]+)_\d+\.db")
#: Headers a reverse proxy adds: a request carrying one did not come from loopback.
_FORWARDING = ("forwarded", "x-forwarded-for", "x-real-ip")


def status_class(status: int) -> str:
    """``2xx``, ``4xx``...: the label of an HTTP status."""
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


@dataclass(frozen=True)
class DatabaseGauges:
    """What a scrape reads from the database."""

    ledger_size: int
    checkpoint_age: float | None
    webhook_backlog: int


class Metrics:
    """The metrics of one application: counters fed as it works, gauges read on scrape.

    ``multiprocess_dir`` is PROMETHEUS_MULTIPROC_DIR (Settings.metrics_multiprocess_dir):
    with it a scrape sums the files of every process there.
    """

    def __init__(self, settings: Settings) -> None:
        self.token = settings.metrics_token
        self.multiprocess_dir = settings.metrics_multiprocess_dir
        self.registry = CollectorRegistry()
        if self.multiprocess_dir is None:
            # Only meaningful for the one process that answers.
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
            GCCollector(registry=self.registry)
        labels = ("method", "route", "status")
        self.requests = Counter(
            "onceonly_http_requests",
            "HTTP requests answered, by method, route template and status class.",
            labels,
            registry=self.registry,
        )
        self.durations = Histogram(
            "onceonly_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status class.",
            labels,
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "onceonly_access_decisions",
            "Access decisions made, by decision (permit, deny), basis kind and the first "
            "deny reason (none for a permit).",
            ("decision", "basis", "reason"),
            registry=self.registry,
        )
        self.batch_sizes = Histogram(
            "onceonly_ledger_batch_size",
            "Entries in each batch the ledger's sequencer committed in this process.",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request (app.request_context.RequestContext calls this)."""
        labels = (method, route, status_class(status))
        self.requests.labels(*labels).inc()
        self.durations.labels(*labels).observe(seconds)

    def count_decisions(self, decisions: Iterable[Decision]) -> None:
        """Count decisions that were made and recorded (not idempotent replays)."""
        for decision in decisions:
            if decision.permit:
                self.decisions.labels("permit", decision.basis_kind, "none").inc()
            else:
                reason = decision.reasons[0] if decision.reasons else "none"
                self.decisions.labels("deny", decision.basis_kind, reason).inc()

    def watch_ledger(self, ledger: TransparencyLog) -> None:
        """Observe the size of every batch ``ledger``'s sequencer commits."""
        ledger.sequencer.on_batch = self.batch_sizes.observe

    @property
    def routes(self) -> list[Route]:
        return [Route("/metrics", self.scrape, methods=["GET"], include_in_schema=False)]

    async def scrape(self, request: Request) -> Response:
        """``GET /metrics``: the text exposition format, or a 403 problem."""
        if not self.allowed(request):
            problem = Problem(
                403,
                "forbidden",
                "Forbidden",
                "Metrics are served on loopback, or with the bearer token set in "
                "ONCEONLY_METRICS_TOKEN.",
            )
            return problem_response(problem, request)
        gauges = await self._read_database(request)
        read = CollectorRegistry(auto_describe=False)
        read.register(_DatabaseCollector(gauges))
        body = generate_latest(self._counted()) + generate_latest(read)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def allowed(self, request: Request) -> bool:
        """Whether the scraper may read: loopback without a proxy, or the right token."""
        if _from_loopback(request):
            return True
        if self.token is None:
            return False
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(credentials.strip().encode(), self.token.encode())

    def _counted(self) -> CollectorRegistry:
        if self.multiprocess_dir is None:
            return self.registry
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.multiprocess_dir))
        return registry

    async def _read_database(self, request: Request) -> DatabaseGauges | None:
        services = getattr(request.app.state, "services", None)
        if services is None:
            return None
        try:
            return await asyncio.wait_for(read_database_gauges(), SCRAPE_DB_TIMEOUT)
        except Exception as exc:
            log.warning("metrics scrape could not read the database: %s", type(exc).__name__)
            return None


async def read_database_gauges(now: datetime | None = None) -> DatabaseGauges:
    """The ledger's newest checkpoint (size, age in seconds) and the notices still to be
    pushed to a webhook (not acknowledged, with a next attempt planned)."""
    now = now or datetime.now(UTC)
    newest = await LedgerCheckpoint.all().order_by("-size").first()
    backlog = await Notification.filter(
        acknowledged_at__isnull=True, next_attempt_at__isnull=False
    ).count()
    if newest is None:
        return DatabaseGauges(0, None, backlog)
    created = newest.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    age = max(0.0, (now - created).total_seconds())
    return DatabaseGauges(int(newest.size), age, backlog)


class _DatabaseCollector(Collector):
    """The gauges read from the database for one scrape."""

    def __init__(self, gauges: DatabaseGauges | None) -> None:
        self.gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauges = self.gauges
        yield GaugeMetricFamily(
            "onceonly_metrics_database_up",
            "1 when this scrape could read the database gauges below, else 0.",
            value=0 if gauges is None else 1,
        )
        if gauges is None:
            return
        yield GaugeMetricFamily(
            "onceonly_ledger_size",
            "Entries in the ledger: the tree size of its newest signed checkpoint.",
            value=gauges.ledger_size,
        )
        if gauges.checkpoint_age is not None:
            yield GaugeMetricFamily(
                "onceonly_ledger_checkpoint_age_seconds",
                "Seconds since the ledger's newest checkpoint was signed.",
                value=gauges.checkpoint_age,
            )
        yield GaugeMetricFamily(
            "onceonly_webhook_backlog",
            "Revocation notices waiting to be pushed to a ministry's webhook.",
            value=gauges.webhook_backlog,
        )


def _from_loopback(request: Request) -> bool:
    if any(name in request.headers for name in _FORWARDING):
        return False
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def clear_multiprocess_dir(directory: Path) -> int:
    """Remove the metric files of earlier runs from ``directory`` (prometheus-client's
    multiprocess mode needs it emptied before the server starts); return how many.

    Raises OSError when the folder cannot be read.
    """
    removed = 0
    for path in directory.iterdir():
        if _METRIC_FILE.fullmatch(path.name) and path.is_file():
            path.unlink()
            removed += 1
    return removed
