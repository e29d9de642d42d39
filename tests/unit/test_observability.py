"""Unit tests for mcs.runtime.observability: logging setup, metrics and the health server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator

import aiohttp
import pytest
import structlog

from mcs.runtime.observability import (
    REGISTRY,
    WATCH_RESTARTS,
    HealthServer,
    configure_logging,
    loop_lag_measured,
)


async def fetch(address: tuple[str, int], path: str, **headers: str) -> tuple[int, str, str]:
    host, port = address
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}{path}", headers=headers) as resp,
    ):
        return resp.status, resp.headers["Content-Type"], await resp.text()


async def test_health_ready_and_metrics_on_separate_listeners() -> None:
    """/healthz is always 200, /readyz follows the check, /metrics serves the registry."""
    reason: str | None = "caches not synced: c2/services"
    WATCH_RESTARTS.labels(cluster="c1", resource="services", reason="gone").inc()
    async with HealthServer(
        ready=lambda: reason,
        health_addr=("127.0.0.1", 0),
        metrics_addr=("127.0.0.1", 0),
    ) as server:
        health, metrics = server.health_address, server.metrics_address
        assert health != metrics
        assert (await fetch(health, "/healthz"))[0] == 200
        status, _, body = await fetch(health, "/readyz")
        assert (status, body) == (503, "not ready: caches not synced: c2/services\n")
        reason = None
        assert (await fetch(health, "/readyz"))[0] == 200

        status, content_type, body = await fetch(metrics, "/metrics")
        assert status == 200
        assert content_type.startswith("text/plain")
        assert 'mcs_watch_restarts_total{cluster="c1",reason="gone",resource="services"}' in body
        for name in (
            "controller_runtime_reconcile_total",
            "controller_runtime_reconcile_errors_total",
            "controller_runtime_reconcile_time_seconds_bucket",
            "workqueue_depth",
            "mcs_build_info",
            "mcs_cluster_connected",
            "mcs_api_writes_total",
            "mcs_rejected_objects_total",
        ):
            assert f"# TYPE {name.removesuffix('_bucket')}" in body or name in body

        # Routes stay on their own listener.
        assert (await fetch(health, "/metrics"))[0] == 404
        assert (await fetch(metrics, "/readyz"))[0] == 404

        status, content_type, _ = await fetch(
            metrics, "/metrics", Accept="application/openmetrics-text; version=1.0.0"
        )
        assert content_type.startswith("application/openmetrics-text")
    with pytest.raises(aiohttp.ClientConnectionError):
        await fetch(health, "/healthz")


async def test_one_listener_when_addresses_are_equal() -> None:
    """Equal health and metrics addresses share one listener serving all routes."""
    async with HealthServer(
        ready=lambda: None, health_addr=("127.0.0.1", 0), metrics_addr=("127.0.0.1", 0)
    ) as first:
        port = first.health_address[1]
    addr = ("127.0.0.1", port)
    async with HealthServer(ready=lambda: None, health_addr=addr, metrics_addr=addr) as server:
        assert server.health_address == server.metrics_address == addr
        assert (await fetch(addr, "/readyz"))[0] == 200
        assert (await fetch(addr, "/metrics"))[0] == 200


def _lag() -> tuple[float, float, float]:
    """count, sum and the count of observations over 0.25 s of the loop lag histogram."""
    name = "mcs_event_loop_lag_seconds"
    count = REGISTRY.get_sample_value(f"{name}_count") or 0.0
    late = count - (REGISTRY.get_sample_value(f"{name}_bucket", {"le": "0.25"}) or 0.0)
    return count, REGISTRY.get_sample_value(f"{name}_sum") or 0.0, late


async def test_the_event_loop_lag_shows_a_stretch_of_blocking_work() -> None:
    """Ticks are observed while inside; 0.3 s of blocking work makes exactly one tick
    late by over 0.25 s (at least 0.28 s: the tick was due at most 0.02 s before it);
    leaving stops the measuring task (no tick after it)."""
    count0 = _lag()[0]
    async with loop_lag_measured(period=0.02):
        await asyncio.sleep(0.2)
        count1, sum1, late1 = _lag()
        assert count1 - count0 >= 5
        time.sleep(0.3)  # a CPU-bound stretch, as a relist's decoding
        await asyncio.sleep(0.05)
        _, sum2, late2 = _lag()
        assert late2 - late1 == 1
        assert sum2 - sum1 >= 0.28
    left = _lag()[0]
    await asyncio.sleep(0.1)
    assert _lag()[0] == left


async def test_start_fails_cleanly_when_address_is_taken() -> None:
    """A taken port raises OSError and releases the listener already bound."""
    async with HealthServer(
        ready=lambda: None, health_addr=("127.0.0.1", 0), metrics_addr=None
    ) as a:
        taken = a.health_address
        server = HealthServer(ready=lambda: None, health_addr=("127.0.0.1", 0), metrics_addr=taken)
        with pytest.raises(OSError):
            await server.start()
        with pytest.raises(RuntimeError):
            server.health_address  # noqa: B018


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_json_renders_context(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON logs carry timestamp, level, bound context and stdlib records too."""
    configure_logging("json", "debug")
    with structlog.contextvars.bound_contextvars(cluster="c1", namespace="ns", name="svc"):
        structlog.get_logger("mcs.test").info("reconciled", writes=2)
    logging.getLogger("kubernetes_asyncio.test").warning("plain %s", "stdlib")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    first, second = lines
    assert first["event"] == "reconciled"
    assert (first["cluster"], first["namespace"], first["name"]) == ("c1", "ns", "svc")
    assert first["level"] == "info" and first["writes"] == 2 and "timestamp" in first
    assert second["event"] == "plain stdlib" and second["level"] == "warning"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    """Events below the configured level are dropped; console format is plain text."""
    configure_logging("console", logging.WARNING)
    structlog.get_logger("mcs.test").info("hidden")
    structlog.get_logger("mcs.test").warning("shown", cluster="c9")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err and "c9" in err
