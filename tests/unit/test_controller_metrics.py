"""controller-runtime's and client-go's metric names, as a scrape reads them: the
reconcile outcome, the work queue's adds, depth, durations, retries and work in flight,
one error counter, and ``mcs_build_info``."""

from __future__ import annotations

import asyncio
import platform
import re

from prometheus_client import generate_latest

import mcs
from mcs.runtime.observability import REGISTRY
from mcs.runtime.workqueue import ExponentialBackoff, TerminalError, WorkQueue, run_workers

Key = tuple[str, str]


def value(metric: str, /, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def test_every_metric_of_controller_runtime_and_client_go_is_registered() -> None:
    """The names stock dashboards and alerts for Go controllers query, with their labels;
    the duplicate error counter of old is gone."""
    WorkQueue[Key](name="names")
    text = generate_latest(REGISTRY).decode()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert {
        "controller_runtime_reconcile_total": "counter",
        "controller_runtime_reconcile_errors_total": "counter",
        "controller_runtime_reconcile_time_seconds": "histogram",
        "workqueue_depth": "gauge",
        "workqueue_adds_total": "counter",
        "workqueue_queue_duration_seconds": "histogram",
        "workqueue_work_duration_seconds": "histogram",
        "workqueue_retries_total": "counter",
        "workqueue_unfinished_work_seconds": "gauge",
        "workqueue_longest_running_processor_seconds": "gauge",
        "mcs_build_info": "gauge",
    }.items() <= types.items()
    assert not {"mcs_reconcile_errors_total", "mcs_reconciles_total", "mcs_workqueue_depth"} & set(
        types
    )
    assert 'workqueue_depth{controller="names",name="names"} 0.0' in text


def test_build_info_names_the_version_and_the_runtime() -> None:
    labels = {
        "version": mcs.__version__,
        "python_version": platform.python_version(),
    }
    [sample] = [s for m in REGISTRY.collect() if m.name == "mcs_build" for s in m.samples]
    assert sample.value == 1.0
    assert labels.items() <= sample.labels.items()
    assert sample.labels["kubernetes_asyncio_version"] not in ("", "unknown")


async def test_the_queue_and_reconcile_metrics_follow_what_happens() -> None:
    """A key added three times while waiting is one add; a failure is one retry and one
    error; a terminal failure is one more error; each success is one propagation; while a
    key is in flight the unfinished work and the longest processor grow, and the depth
    counts what waits."""
    name = "metrics-test"
    q = {"name": name, "controller": name}
    c = {"controller": name}
    queue: WorkQueue[Key] = WorkQueue(backoff=ExponentialBackoff(base=0.001, cap=0.01), name=name)
    release = asyncio.Event()
    taken = asyncio.Event()
    failures = {"flaky": 1}

    async def handler(key: Key) -> float | None:
        if key[1] == "slow":
            taken.set()
            await asyncio.wait_for(release.wait(), 10)
        if failures.get(key[1], 0) > 0:
            failures[key[1]] -= 1
            raise RuntimeError("boom")
        if key[1] == "terminal":
            raise TerminalError("no")
        return 60.0 if key[1] == "later" else None

    propagated = ("mcs_propagation_seconds_count", "mcs_propagation_seconds_sum")
    before = [value(m, lane="change") for m in propagated]
    for _ in range(3):
        queue.add(("ns", "slow"))
    assert value("workqueue_adds_total", **q) == 1
    assert value("workqueue_depth", **q) == 1
    workers = asyncio.create_task(run_workers(queue, handler, concurrency=1))
    try:
        await asyncio.wait_for(taken.wait(), 10)
        assert value("workqueue_depth", **q) == 0
        queue.add(("ns", "flaky"))
        queue.add(("ns", "terminal"))
        queue.add(("ns", "later"))
        assert value("workqueue_depth", **q) == 3
        await asyncio.sleep(0.05)
        assert value("workqueue_unfinished_work_seconds", **q) >= 0.05
        assert value("workqueue_longest_running_processor_seconds", **q) >= 0.05
        release.set()

        def settled() -> bool:
            return value("controller_runtime_reconcile_total", result="success", **c) == 2

        for _ in range(200):
            if settled():
                break
            await asyncio.sleep(0.01)
        assert value("controller_runtime_reconcile_total", result="success", **c) == 2
        assert value("controller_runtime_reconcile_total", result="requeue_after", **c) == 1
        assert value("controller_runtime_reconcile_total", result="error", **c) == 2
        assert value("controller_runtime_reconcile_errors_total", **c) == 2
        assert value("controller_runtime_terminal_reconcile_errors_total", **c) == 1
        assert value("workqueue_retries_total", **q) == 1
        assert value("workqueue_adds_total", **q) == 5  # slow, flaky x2, terminal, later
        assert value("workqueue_work_duration_seconds_count", **q) == 5
        assert value("workqueue_queue_duration_seconds_count", **q) == 5
        assert value("workqueue_work_duration_seconds_sum", **q) >= 0.05
        assert value("controller_runtime_reconcile_time_seconds_count", **c) == 5
        # from add to the end of each successful reconcile: slow (>= 0.05 s), flaky's
        # retry, later
        count, total = (
            value(m, lane="change") - b for m, b in zip(propagated, before, strict=True)
        )
        assert count == 3 and total >= 0.05
        assert value("workqueue_unfinished_work_seconds", **q) == 0
        assert value("workqueue_longest_running_processor_seconds", **q) == 0
    finally:
        queue.shutdown()
        await asyncio.wait_for(workers, 10)
