"""Logs, metrics and the health/metrics HTTP endpoints of the controller.

This module owns three things and nothing else:

* ``configure_logging`` sets up structlog once per process. Every log line is
  a structured event; context such as ``cluster``, ``namespace``, ``name``,
  ``key`` and ``reconcile_id`` is bound with ``structlog.contextvars`` (or
  ``logger.bind``) by the code that knows it, never formatted into messages.
  Logs of third-party libraries (aiohttp, kubernetes_asyncio) go through the
  same renderer.
* The Prometheus metrics, as module-level objects in one registry
  (``REGISTRY``), so that every module records into the same place and tests
  can read values back with ``REGISTRY.get_sample_value``; and
  ``loop_lag_measured``, which owns the task behind ``mcs_event_loop_lag_seconds``.
* ``HealthServer``: an aiohttp server for ``/healthz``, ``/readyz`` and
  ``/metrics``, an async context manager that owns its listeners.

No Kubernetes knowledge lives here; the controller decides what "ready" means
and passes it in as a callable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import platform
import sys
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Literal, Self

import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

import mcs
from mcs.core.merge import MERGE_RULES

__all__ = [
    "API_WRITES",
    "BUILD_INFO",
    "CLUSTER_CONNECTED",
    "CONTROLLER",
    "MEMBER_CREDENTIAL_EXPIRY",
    "PROPAGATION",
    "RECONCILES",
    "RECONCILE_DURATION",
    "RECONCILE_ERRORS",
    "REGISTRY",
    "REJECTED_OBJECTS",
    "RESYNCS",
    "WATCH_RESTARTS",
    "WORKQUEUE_DEPTH",
    "Address",
    "HealthServer",
    "ReadinessCheck",
    "build_labels",
    "configure_logging",
    "loop_lag_measured",
]

# --------------------------------------------------------------------------- logging

LogFormat = Literal["json", "console"]


def configure_logging(fmt: LogFormat = "json", level: str | int = "info") -> None:
    """Configure structlog and the standard library's logging for the process.

    ``fmt="json"`` renders one JSON object per line (for log collectors);
    ``"console"`` renders coloured, aligned lines for humans. Every event gets
    an ISO-8601 UTC ``timestamp``, a ``level`` and the context variables bound
    with ``structlog.contextvars`` (cluster, namespace, name, key, ...).
    ``level`` is a name (``"debug"``, ``"INFO"``) or a ``logging`` constant.

    Logs go to stderr through one ``logging.StreamHandler`` on the root logger,
    which replaces any handler installed earlier, so calling this twice is
    harmless (the last call wins). aiohttp's per-request access log is quietened
    to WARNING so that metric scrapes do not flood the log.
    """
    numeric = logging.getLevelNamesMapping()[level.upper()] if isinstance(level, str) else level

    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        # Plain tracebacks: with rich installed (mcs status uses it) structlog would draw
        # them with rich, which is slow and wide.
        renderer = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: tests (structlog.testing.capture_logs) and a second call
        # must be able to reconfigure loggers created at import time.
        cache_logger_on_first_use=False,
    )

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("aiohttp.access").setLevel(max(numeric, logging.WARNING))


# --------------------------------------------------------------------------- metrics

REGISTRY = CollectorRegistry(auto_describe=True)
"""The one registry every ``mcs`` metric lives in; ``/metrics`` serves it."""

ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

CONTROLLER = "mcs"
"""The controller's name in controller-runtime's metrics (label ``controller``) and the
name of its work queue (workqueue metrics' ``name`` and ``controller``)."""

# controller-runtime's reconcile metrics (sigs.k8s.io/controller-runtime/pkg/internal/
# controller/metrics): stock dashboards and alerts for Go controllers apply as they are.
RECONCILES = Counter(
    "controller_runtime_reconcile",
    "Reconciles of one key per controller, by result (success, error, requeue_after).",
    ["controller", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "controller_runtime_reconcile_errors",
    "Reconciles that raised (retried or terminal): the one error counter.",
    ["controller"],
    registry=REGISTRY,
)
TERMINAL_RECONCILE_ERRORS = Counter(
    "controller_runtime_terminal_reconcile_errors",
    "Reconciles that raised an error retrying cannot help (not retried).",
    ["controller"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "controller_runtime_reconcile_time_seconds",
    "Wall time of one reconcile of one key.",
    ["controller"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
# client-go's workqueue metrics (k8s.io/client-go/util/workqueue, as controller-runtime
# registers them: labels name and controller, both the controller's name).
_QUEUE_LABELS = ["name", "controller"]
_QUEUE_BUCKETS = tuple(10.0**e for e in range(-8, 4))  # client-go: 10 ns .. 1000 s
WORKQUEUE_DEPTH = Gauge(
    "workqueue_depth",
    "Keys waiting in the work queue (not counting keys in flight or delayed).",
    _QUEUE_LABELS,
    registry=REGISTRY,
)
WORKQUEUE_ADDS = Counter(
    "workqueue_adds",
    "Keys that entered the work queue (a key already waiting is not counted again).",
    _QUEUE_LABELS,
    registry=REGISTRY,
)
WORKQUEUE_QUEUE_DURATION = Histogram(
    "workqueue_queue_duration_seconds",
    "How long a key stayed in the work queue before a worker took it.",
    _QUEUE_LABELS,
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_WORK_DURATION = Histogram(
    "workqueue_work_duration_seconds",
    "How long processing a key took, from taken to done.",
    _QUEUE_LABELS,
    buckets=_QUEUE_BUCKETS,
    registry=REGISTRY,
)
WORKQUEUE_RETRIES = Counter(
    "workqueue_retries",
    "Keys added again with backoff after a failed reconcile.",
    _QUEUE_LABELS,
    registry=REGISTRY,
)
WORKQUEUE_UNFINISHED = Gauge(
    "workqueue_unfinished_work_seconds",
    "Seconds of work in flight not yet done (the sum over keys being processed); a "
    "large value that keeps growing suggests stuck workers.",
    _QUEUE_LABELS,
    registry=REGISTRY,
)
WORKQUEUE_LONGEST = Gauge(
    "workqueue_longest_running_processor_seconds",
    "Seconds the longest-running key in flight has been processed.",
    _QUEUE_LABELS,
    registry=REGISTRY,
)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WORKQUEUE_WAIT = Histogram(
    "mcs_workqueue_wait_seconds",
    "Time a key waited in the work queue before a worker took it, since it entered the "
    "lane it was taken from (urgent: what users write; change; resync).",
    ["lane"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
PROPAGATION = Histogram(
    "mcs_propagation_seconds",
    "From the event that queued a key (a watch event, a resync) to the end of the "
    "successful reconcile that carried it out (its writes answered), by the lane the key "
    "was taken from (urgent: what users write; change; resync). A key that failed first "
    "counts from the add of its last retry.",
    ["lane"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
RESYNCS = Counter(
    "mcs_resyncs",
    "Periodic full resyncs: every known key queued again.",
    registry=REGISTRY,
)
WATCH_RESTARTS = Counter(
    "mcs_watch_restarts",
    "Watch streams that ended abnormally, by reason (gone: 410 relist; stalled: "
    "client-side timeout; error: anything else).",
    ["cluster", "resource", "reason"],
    registry=REGISTRY,
)
CLUSTER_CONNECTED = Gauge(
    "mcs_cluster_connected",
    "1 when every watch of the cluster is connected, else 0.",
    ["cluster"],
    registry=REGISTRY,
)
API_WRITES = Counter(
    "mcs_api_writes",
    "Write requests sent to a cluster's API server, by verb and resource.",
    ["cluster", "verb", "resource"],
    registry=REGISTRY,
)
API_WRITE_WAIT = Histogram(
    "mcs_api_write_wait_seconds",
    "Time a write waited for one of the cluster's write slots (--max-writes-in-flight), "
    "by the lane of the key it is written for: urgent keys' writes go first.",
    ["cluster", "lane"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
API_WRITE_DURATION = Histogram(
    "mcs_api_write_duration_seconds",
    "Time a write took once sent (the API server's answer, or a failure), by the lane of "
    "the key it is written for.",
    ["cluster", "lane"],
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
LOOP_LAG = Histogram(
    "mcs_event_loop_lag_seconds",
    "How late the event loop woke a timer due every 0.25 s: how long every watch event, "
    "reconcile and write waited then for the CPU the process was using (about 0 when idle).",
    buckets=WAIT_BUCKETS,
    registry=REGISTRY,
)
REJECTED_OBJECTS = Counter(
    "mcs_rejected_objects",
    "Objects seen but not used (invalid, not owned by us, ...), by reason.",
    ["cluster", "resource", "reason"],
    registry=REGISTRY,
)
ENDPOINTS_DROPPED = Counter(
    "mcs_endpoints_dropped",
    "Endpoints of a member's EndpointSlices newly left out of its imports (mcs.core.trust), "
    "by source cluster and reason (invalid, metadata-address, outside-cidrs, "
    "fqdn-not-allowed, no-ranges).",
    ["cluster", "reason"],
    registry=REGISTRY,
)
OBJECTS_TOO_LARGE = Counter(
    "mcs_objects_too_large",
    "Objects left out of a cache because they were larger than the informer's per-object "
    "cap once trimmed (treated as absent), by cluster and resource.",
    ["cluster", "resource"],
    registry=REGISTRY,
)
LIST_PAGES_SHRUNK = Counter(
    "mcs_list_pages_shrunk",
    "List pages refused for being over the byte cap and asked again with half the limit, "
    "by cluster and resource.",
    ["cluster", "resource"],
    registry=REGISTRY,
)
MEMBER_RANGES_MISSING = Gauge(
    "mcs_member_ranges_missing",
    "1 for a member (by kubeconfig context) that has no --member-cidrs entry while other "
    "members have ranges: it offers no endpoints; else 0.",
    ["context"],
    registry=REGISTRY,
)
CLUSTER_ID_CONFLICT = Gauge(
    "mcs_cluster_id_conflict",
    "1 for a member (by kubeconfig context) whose cluster id is also claimed by another "
    "member: both are left out of the clusterset until the ids differ; else 0.",
    ["context"],
    registry=REGISTRY,
)
MERGE_RULES_SKEW = Gauge(
    "mcs_merge_rules_skew",
    "Services whose results this instance holds back because a peer's ServiceImport was "
    "written with other merge rules (per-cluster mode, instances of different releases), "
    "by peer cluster; 0 once the versions agree.",
    ["peer_cluster"],
    registry=REGISTRY,
)


MEMBER_CREDENTIAL_EXPIRY = Gauge(
    "mcs_member_credential_expiry_timestamp_seconds",
    "When the credential the controller uses for a member (by kubeconfig context) expires, "
    "in seconds since the epoch: a bearer token's JWT exp, or the client certificate's "
    "notAfter (the earlier of the two when both are set). Absent when unknown (an opaque "
    "token, an exec plugin). Refreshed whenever the credentials are re-read.",
    ["member"],
    registry=REGISTRY,
)


def build_labels() -> dict[str, str]:
    """The labels of ``mcs_build_info``: mcs's version and those of what it runs on."""

    def dist(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return {
        "version": mcs.__version__,
        "merge_rules": MERGE_RULES,
        "python_version": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "kubernetes_asyncio_version": dist("kubernetes_asyncio"),
        "aiohttp_version": dist("aiohttp"),
        "prometheus_client_version": dist("prometheus_client"),
    }


BUILD_INFO = Info(
    "mcs_build",
    "mcs's version, the version of its merge rules, and the versions of Python and the "
    "libraries it runs on (always 1).",
    registry=REGISTRY,
)
BUILD_INFO.info(build_labels())


# --------------------------------------------------------------------------- HTTP

Address = tuple[str, int]
"""A ``(host, port)`` to listen on; port 0 picks a free port."""

ReadinessCheck = Callable[[], str | None]
"""Returns ``None`` when the process is ready, else the reason it is not."""


@contextlib.asynccontextmanager
async def loop_lag_measured(period: float = 0.25) -> AsyncIterator[None]:
    """While inside, observe ``mcs_event_loop_lag_seconds`` every ``period`` seconds: a
    pure-CPU stretch (a relist decoded, a resync's merges) delays every event, and this
    says by how much."""

    async def measure() -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + period
            await asyncio.sleep(period)
            LOOP_LAG.observe(max(0.0, loop.time() - due))

    task = asyncio.create_task(measure(), name="event loop lag")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _healthz(_request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _metrics(request: web.Request) -> web.Response:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return web.Response(body=encoder(REGISTRY), headers={"Content-Type": content_type})


class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` over plain HTTP.

    ``/healthz`` answers 200 as long as the event loop runs. ``/readyz``
    answers 200 ``ok`` when ``ready()`` returns ``None`` and 503 with the
    returned reason otherwise; ``ready`` is called on every request, so it must
    be cheap and must not block. ``/metrics`` serves ``REGISTRY`` in the
    Prometheus text format (or OpenMetrics when the scraper asks for it).

    The health endpoints listen on ``health_addr`` and ``/metrics`` on
    ``metrics_addr``; equal addresses share one listener (except port 0, which
    always gets its own free port), and ``None`` disables that listener.

    Resource handling: ``start()`` binds the listeners (raising ``OSError`` if
    an address is taken, after releasing whatever it bound); ``stop()`` closes
    them and is idempotent. Prefer ``async with HealthServer(...) as server:``.
    """

    def __init__(
        self,
        *,
        ready: ReadinessCheck,
        health_addr: Address | None = ("0.0.0.0", 8081),
        metrics_addr: Address | None = ("0.0.0.0", 8080),
    ) -> None:
        self._ready = ready
        health_routes = [web.get("/healthz", _healthz), web.get("/readyz", self._readyz)]
        metrics_routes = [web.get("/metrics", _metrics)]
        # One listener per address; port 0 ("any free port") is never shared.
        self._shared = (
            health_addr is not None and health_addr == metrics_addr and health_addr[1] != 0
        )
        self._listeners: dict[str, tuple[Address, list[web.RouteDef]]] = {}
        if health_addr is not None:
            self._listeners["health"] = (health_addr, health_routes)
        if metrics_addr is not None:
            if self._shared:
                health_routes.extend(metrics_routes)
            else:
                self._listeners["metrics"] = (metrics_addr, metrics_routes)
        self._runners: list[web.AppRunner] = []
        self._bound: dict[str, Address] = {}

    async def _readyz(self, _request: web.Request) -> web.Response:
        reason = self._ready()
        if reason is None:
            return web.Response(text="ok\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def start(self) -> None:
        """Bind every listener. Raises ``RuntimeError`` if already started."""
        if self._runners:
            raise RuntimeError("HealthServer already started")
        try:
            for which, (addr, routes) in self._listeners.items():
                app = web.Application()
                app.add_routes(routes)
                # A bounded wait for in-flight requests keeps shutdown prompt.
                runner = web.AppRunner(
                    app, access_log=None, handle_signals=False, shutdown_timeout=5.0
                )
                await runner.setup()
                self._runners.append(runner)
                await web.TCPSite(runner, addr[0], addr[1]).start()
                host, port = runner.addresses[0][:2]
                self._bound[which] = (str(host), int(port))
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every listener and wait for in-flight requests. Idempotent."""
        runners, self._runners = self._runners, []
        self._bound.clear()
        for runner in runners:
            await runner.cleanup()

    def _bound_address(self, which: str) -> Address:
        try:
            return self._bound[which]
        except KeyError:
            raise RuntimeError(f"the {which} listener is not running") from None

    @property
    def health_address(self) -> Address:
        """The ``(host, port)`` bound for the health endpoints (``RuntimeError`` if none)."""
        return self._bound_address("health")

    @property
    def metrics_address(self) -> Address:
        """The ``(host, port)`` bound for ``/metrics`` (``RuntimeError`` if none)."""
        return self._bound_address("health" if self._shared else "metrics")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
