"""Scale benchmark: the controller side by side with the write floor, on fresh
3-cluster meshes.

For each size (``N`` exports in one namespace, or ``KxM``: K namespaces of M exports),
phases 1-3 on one mesh and phase 4 on another, so that neither works on a store the
other has filled:

1. **controller**: a central ``mcs run`` is ready; N Services + ServiceExports are
   created in cluster1 (the same creation code as the floor's); time until every
   cluster holds a correct, Ready ServiceImport for each, and every export is Ready.
   Writes per export (``mcs_api_writes_total``), controller CPU seconds and peak RSS.
2. **single-export latency** on the loaded clusterset: one more Service and, half a
   second later, its export at a time; time from the export's creation until every
   cluster's watch has delivered its import with IPs (p50, p99, also with the
   Service's creation added; and for the slowest, when it started, how long its two
   creations took, how many keys the controller's work queue held then and where the
   controller's time went; phase 1 gives that depth at convergence).
3. **restart** over the existing clusterset: a new controller process; seconds to
   ready (caches synced) and to resynced (every key reconciled once), the writes it
   made (must be 0), CPU seconds and peak RSS.
4. **floor**: with no controller running, a bare client makes the same minimal
   writes for N exports, no watches and no merge: create the Service and the
   ServiceExport, then in every cluster apply the derived Service, apply the
   ServiceImport with its IPs and patch its status, then patch the export's status
   (12 writes per export, creation included). Exports are created 64 at a time, as
   in phase 1, and the other writes go at most ``writer.MAX_IN_FLIGHT`` at once to a
   cluster, as the controller's do: more makes 2-core API servers slower, not faster.

The ratio to the floor is given twice: of wall time (what the issue's targets are
about) and of the CPU seconds the whole system spent (API servers, etcd, the bench's
client, the controller), which a machine shared with other jobs hardly moves.

Prints one JSON line per size and a Markdown table for README.md:

    .venv/bin/python bench/convergence.py 100 1000        # make bench
    .venv/bin/python bench/convergence.py 10000 1000x10   # make bench-large
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Self

import mcsrun
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core import imports, plan
from mcs.core.api import Obj, ResourceKind, key_of
from mcs.core.model import format_time
from mcs.runtime import writer
from mcs.runtime.informer import Informer
from mcs.runtime.kubeapi import new_client, request_json
from mcs.runtime.observability import configure_logging
from mcs_mesh.mesh import Mesh
from mcs_mesh.processes import free_port

PORTS = [
    {"name": "http", "port": 80, "protocol": "TCP"},
    {"name": "dns", "port": 53, "protocol": "UDP"},
]
GROUP, VERSION = "multicluster.x-k8s.io", "v1beta1"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
CONCURRENCY = 64  # exports in flight while creating (controller and floor alike)
Apis = dict[str, client.ApiClient]
DEPTH = "workqueue_depth"


@dataclass(frozen=True)
class Size:
    namespaces: int
    per_namespace: int

    @classmethod
    def parse(cls, text: str) -> Size:
        k, _, m = text.partition("x")
        return cls(int(k), int(m)) if m else cls(1, int(k))

    @property
    def exports(self) -> int:
        return self.namespaces * self.per_namespace

    def __str__(self) -> str:
        if self.namespaces == 1:
            return str(self.per_namespace)
        return f"{self.namespaces}x{self.per_namespace}"

    def names(self, prefix: str) -> list[tuple[str, str]]:
        return [
            (f"{prefix}-{k:04}", f"svc-{i:05}")
            for k in range(self.namespaces)
            for i in range(self.per_namespace)
        ]


# ---------------------------------------------------------------- process figures


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _metrics_text(port: int) -> list[str]:
    """The lines of one scrape of ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text: str = r.read().decode()
    return text.splitlines()


def _metric_in(lines: list[str], name: str, having: str = "") -> float:
    """The sum of the samples of metric ``name`` (those whose line has ``having``)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith((name + "{", name + " ")) and having in line
    )


class CpuMeter:
    """CPU seconds of the mesh's processes (API servers, etcd) and of this process
    (the load generator and checker), to show where the time goes."""

    def __init__(self, apiservers: list[int], etcd: int) -> None:
        self.apiservers, self.etcd = apiservers, etcd

    def read(self) -> dict[str, float]:
        return {
            "apiservers": sum(_cpu_seconds(p) for p in self.apiservers),
            "etcd": _cpu_seconds(self.etcd),
            "bench": time.process_time(),
        }

    @staticmethod
    def since(before: dict[str, float], after: dict[str, float], prefix: str) -> dict[str, float]:
        return {f"{prefix}_{k}_cpu_seconds": round(after[k] - before[k], 1) for k in before}


class Controller:
    """One central ``mcs run`` process."""

    def __init__(self, kubeconfig: Path, log: Path, workers: int) -> None:
        self.metrics, self.health = free_port(), free_port()
        self.started = time.monotonic()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                mcsrun.argv(
                    kubeconfig,
                    self.metrics,
                    self.health,
                    "--workers",
                    str(workers),
                    "--log-level",
                    os.environ.get("MCS_BENCH_LOG_LEVEL", "info"),
                ),
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self) -> float:
        """Seconds from start until /readyz answers 200."""
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}")
            try:
                url = f"http://127.0.0.1:{self.health}/readyz"
                with urllib.request.urlopen(url, timeout=2):
                    return time.monotonic() - self.started
            except OSError:
                await asyncio.sleep(0.1)

    def metric(self, name: str, having: str = "") -> float:
        return _metric_in(_metrics_text(self.metrics), name, having)

    def metrics_of(self, wanted: dict[str, tuple[str, str]]) -> dict[str, float]:
        """Each of ``wanted``'s ``(metric, filter)`` sums, from one scrape (the
        controller renders every metric for each, on its event loop)."""
        lines = _metrics_text(self.metrics)
        return {k: _metric_in(lines, *m) for k, m in wanted.items()}

    def cpu(self) -> float:
        return _cpu_seconds(self.proc.pid)

    def rss(self) -> float:
        return _peak_rss_mib(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


# ---------------------------------------------------------------- creating, checking


async def _bounded(n: int, jobs: list[Callable[[], Awaitable[object]]]) -> None:
    gate = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


async def _create_namespaces(apis: Apis, names: set[str]) -> None:
    async def one(api: client.ApiClient, ns: str) -> None:
        await client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})

    await _bounded(CONCURRENCY, [partial(one, a, n) for a in apis.values() for n in sorted(names)])


async def _create_service(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    return await _post(
        api,
        f"/api/v1/namespaces/{ns}/services",
        body={"metadata": {"name": name}, "spec": {"selector": {"app": name}, "ports": PORTS}},
    )


async def _create_service_export(api: client.ApiClient, ns: str, name: str) -> dict[str, Any]:
    return await _post(
        api,
        f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/serviceexports",
        body={
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": ns},
        },
    )


async def _create_export(
    api: client.ApiClient, ns: str, name: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a user does: a Service and its ServiceExport (2 writes); returns both."""
    return await _create_service(api, ns, name), await _create_service_export(api, ns, name)


RETRIES = 0  # writes retried after a timeout or a 429/5xx (reported per size)


async def _again(call: Callable[[bool], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """``call(retried)``, again after a growing pause on a timeout or a 429/5xx answer
    (a loaded API server stalls or sheds load), for up to 5 minutes. Only for writes
    that may be repeated: an apply, a merge patch, or a create that reads back what a
    timed-out attempt did create (``_post``)."""
    global RETRIES
    deadline = time.monotonic() + 300
    for attempt in itertools.count():
        try:
            return await call(attempt > 0)
        except ApiException as e:
            if e.status not in (429, 500, 503, 504) or time.monotonic() > deadline:
                raise
        except TimeoutError:
            if time.monotonic() > deadline:
                raise
        RETRIES += 1
        await asyncio.sleep(min(0.25 * 2**attempt, 10) * random.uniform(0.5, 1))
    raise AssertionError("unreachable")


async def _post(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create, as a user would, retried (``_again``)."""

    async def once(retried: bool) -> dict[str, Any]:
        try:
            return await request_json(api, "POST", path, body=body)
        except ApiException as e:
            if e.status == 409 and retried:
                return await request_json(api, "GET", f"{path}/{body['metadata']['name']}")
            raise

    return await _again(once)


def _correct(item: dict[str, Any]) -> bool:
    spec = item.get("spec", {})
    ports = sorted((p.get("name"), p["port"], p.get("protocol")) for p in spec.get("ports", []))
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in item.get("status", {}).get("conditions") or []
    )
    return (
        spec.get("type") == "ClusterSetIP"
        and bool(spec.get("ips"))
        and ports == [("dns", 53, "UDP"), ("http", 80, "TCP")]
        and ready
    )


def _ready_export(item: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in item.get("status", {}).get("conditions") or []
    )


class _Watching:
    """Owns ``informers``: started and synced on entry, stopped on exit."""

    informers: list[Informer]

    async def __aenter__(self) -> Self:
        for i in self.informers:
            i.start()
        await asyncio.gather(*(i.synced.wait() for i in self.informers))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for i in self.informers:
            await i.stop()


class Convergence(_Watching):
    """Watches (mcs's own informer) the imports of every cluster and the exports of
    cluster1 in ``namespaces``; ``done`` is set once every cluster has ``n`` correct,
    Ready imports and cluster1 has ``n`` Ready exports. Event-driven, so it neither
    polls the API servers nor adds a polling interval to the figure."""

    def __init__(self, apis: Apis, namespaces: set[str], n: int) -> None:
        self.namespaces, self.n = namespaces, n
        self.done = asyncio.Event()
        self.good: dict[str, set[tuple[str, str]]] = {}
        self.informers: list[Informer] = []
        for cluster, api in apis.items():
            self._watch(api, cluster, "serviceimports", _correct)
        self._watch(apis["cluster1"], "exports", "serviceexports", _ready_export)

    def _watch(
        self, api: client.ApiClient, name: str, plural: str, check: Callable[[Obj], bool]
    ) -> None:
        good = self.good.setdefault(name, set())

        def on_event(_t: str, _old: Obj | None, new: Obj | None) -> None:
            obj = new or _old
            assert obj is not None
            key = key_of(obj)
            if key[0] not in self.namespaces:
                return
            if new is not None and check(new):
                good.add(key)
            else:
                good.discard(key)
            if all(len(g) >= self.n for g in self.good.values()):
                self.done.set()

        kind = ResourceKind(GROUP, VERSION, plural)
        self.informers.append(Informer(api, cluster=name, kind=kind, on_event=on_event))


# ---------------------------------------------------------------- the phases


async def controller_phase(
    kubeconfig: Path,
    apis: Apis,
    size: Size,
    logdir: Path,
    workers: int,
    samples: int,
    meter: CpuMeter,
) -> dict[str, Any]:
    names = size.names(f"ctl-{size}")
    namespaces = {ns for ns, _ in names}
    await _create_namespaces(apis, namespaces)
    ctl = Controller(kubeconfig, logdir / f"controller-{size}.log", workers)
    out: dict[str, Any] = {}
    try:
        await ctl.ready()
        async with Convergence(apis, namespaces, size.exports) as converged:
            writes0, cpu0, mesh0 = ctl.metric("mcs_api_writes_total"), ctl.cpu(), meter.read()
            reconciles0 = ctl.metric("controller_runtime_reconcile_total")
            started = time.monotonic()
            await _bounded(
                CONCURRENCY,
                [partial(_create_export, apis["cluster1"], ns, n) for ns, n in names],
            )
            out["create_seconds"] = round(time.monotonic() - started, 1)
            await converged.done.wait()
            took = time.monotonic() - started
            out["queue_depth_at_convergence"] = int(ctl.metric(DEPTH))
        cpu = ctl.cpu() - cpu0
        out |= CpuMeter.since(mesh0, meter.read(), "controller_run")
        await asyncio.sleep(3)  # trailing writes, if any, count too
        writes = ctl.metric("mcs_api_writes_total") - writes0
        reconciles = ctl.metric("controller_runtime_reconcile_total") - reconciles0
        out |= {
            "controller_seconds": round(took, 1),
            "exports_per_second": round(size.exports / took, 1),
            "writes_per_export": round(writes / size.exports + 2, 2),  # + the user's 2
            "reconciles_per_export": round(reconciles / size.exports, 2),
            "controller_cpu_seconds": round(cpu, 1),
            "controller_peak_rss_mib": round(ctl.rss()),
        }
        out |= latency_figures(await latency(apis, sorted(namespaces)[0], samples, ctl))
    finally:
        ctl.stop()
    out |= await restart_phase(kubeconfig, logdir, size, workers, size.exports + samples)
    return out


@dataclass(frozen=True)
class Sample:
    seconds: float  # from the export's creation until every cluster has its import
    service_seconds: float  # the Service's creation, just before (not in ``seconds``)
    export_seconds: float  # the export's creation (in ``seconds``)
    at: str  # when the export's creation started (to find it in the controller's log)
    queue_depth: int  # keys waiting in the controller's work queue when it started
    # Where the controller's time went, from its metrics over the sample: of the urgent
    # lane (the new export's key is the only one in it), its key's wait in the work
    # queue, and its writes' waits for a write slot and time at the API servers, summed
    # over the writes (those to different clusters overlap); and how late its event
    # loop ran, summed over the 0.25 s ticks (time every event waited for the CPU).
    spent: dict[str, float]


URGENT = 'lane="urgent"'
SPENT = {  # (metric, filter)
    "queue": ("mcs_workqueue_wait_seconds_sum", URGENT),
    "write_slots": ("mcs_api_write_wait_seconds_sum", URGENT),
    "api": ("mcs_api_write_duration_seconds_sum", URGENT),
    "writes": ("mcs_api_write_duration_seconds_count", URGENT),
    "loop_late": ("mcs_event_loop_lag_seconds_sum", ""),
}
SETTLE = 0.5  # between a sample's Service and its export: the Service exists already


class Arrivals(_Watching):
    """When each cluster's watch first delivered an import with IPs, by name: the
    bench's clock runs on watch events, so a sample neither waits for a polling round
    (GETs to 3 loaded API servers, one after another) nor adds the load of one."""

    def __init__(self, apis: Apis, ns: str) -> None:
        self.seen: dict[str, dict[str, float]] = {}
        self.changed = asyncio.Event()
        self.informers = [
            Informer(
                api,
                cluster=c,
                kind=ResourceKind(GROUP, VERSION, "serviceimports"),
                namespace=ns,
                on_event=partial(self._on_event, c),
            )
            for c, api in apis.items()
        ]

    def _on_event(self, cluster: str, _t: str, _old: Obj | None, new: Obj | None) -> None:
        if new is not None and new.get("spec", {}).get("ips"):
            self.seen.setdefault(new["metadata"]["name"], {}).setdefault(cluster, time.monotonic())
            self.changed.set()

    async def everywhere(self, name: str) -> float:
        """``time.monotonic()`` when the last cluster's watch delivered ``name``'s
        import with IPs (waits for it, at most 5 minutes)."""
        async with asyncio.timeout(300):
            while True:
                self.changed.clear()
                seen = self.seen.get(name, {})
                if len(seen) == len(self.informers):
                    return max(seen.values())
                await self.changed.wait()


async def latency(apis: Apis, ns: str, samples: int, ctl: Controller) -> list[Sample]:
    """One export at a time: how long from its creation until every cluster has its
    import. As when a user exports a running Service, the Service is created first
    (timed apart, ``SETTLE`` before the export)."""
    out: list[Sample] = []
    api = apis["cluster1"]
    async with Arrivals(apis, ns) as arrivals:
        for i in range(samples):
            name = f"lat-{i:04}"
            started = time.monotonic()
            await _create_service(api, ns, name)
            service = time.monotonic() - started
            await asyncio.sleep(SETTLE)
            before = ctl.metrics_of({**SPENT, "queued": (DEPTH, "")})
            queued = int(before.pop("queued"))
            at, started = format_time(datetime.now(UTC)), time.monotonic()
            await _create_service_export(api, ns, name)
            created = time.monotonic() - started
            took = await arrivals.everywhere(name) - started
            await asyncio.sleep(0.2)  # the key's last writes (its statuses) count too
            after = ctl.metrics_of(SPENT)
            spent = {k: after[k] - before[k] for k in SPENT}
            out.append(Sample(took, service, created, at, queued, spent))
    return out


def latency_figures(samples: list[Sample]) -> dict[str, Any]:
    """p50 and p99 (nearest rank) from the export's creation, and with the Service's
    creation added (as the older rows in README measured, then by polling); the
    slowest sample: when it started, how long the API server took to accept its
    Service and its export, how many keys were queued in the controller when it
    started, and where the controller's time went (``Sample.spent``); that last also
    as a mean over the samples."""

    def ranks(seconds: list[float], prefix: str) -> dict[str, int]:
        seconds = sorted(seconds)
        return {
            f"{prefix}_p50_ms": round(statistics.median(seconds) * 1000),
            f"{prefix}_p99_ms": round(seconds[math.ceil(0.99 * len(seconds)) - 1] * 1000),
        }

    slowest = max(samples, key=lambda s: s.seconds)
    return {
        "latency_samples": len(samples),
        **ranks([s.seconds for s in samples], "latency"),
        **ranks([s.service_seconds + s.seconds for s in samples], "latency_with_service"),
        "latency_max_ms": round(slowest.seconds * 1000),
        "latency_max_service_ms": round(slowest.service_seconds * 1000),
        "latency_max_export_ms": round(slowest.export_seconds * 1000),
        "latency_max_at": slowest.at,
        "latency_max_queue_depth": slowest.queue_depth,
        **{
            f"latency_max_{k}" + ("" if k == "writes" else "_ms"): round(
                v if k == "writes" else v * 1000
            )
            for k, v in slowest.spent.items()
        },
        **{
            f"latency_mean_{k}_ms": round(statistics.mean(s.spent[k] for s in samples) * 1000)
            for k in SPENT
            if k != "writes"
        },
    }


async def restart_phase(
    kubeconfig: Path, logdir: Path, size: Size, workers: int, keys: int
) -> dict[str, Any]:
    """A new controller over the existing clusterset: ready, resynced, writes."""
    ctl = Controller(kubeconfig, logdir / f"restart-{size}.log", workers)
    try:
        ready = await ctl.ready()
        while ctl.metric("controller_runtime_reconcile_total") < keys or ctl.metric(DEPTH) > 0:
            await asyncio.sleep(0.1)
        resynced = time.monotonic() - ctl.started
        await asyncio.sleep(2)
        return {
            "restart_ready_seconds": round(ready, 1),
            "restart_resynced_seconds": round(resynced, 1),
            "restart_writes": int(ctl.metric("mcs_api_writes_total")),
            "restart_cpu_seconds": round(ctl.cpu(), 1),
            "restart_peak_rss_mib": round(ctl.rss()),
        }
    finally:
        ctl.stop()


async def _apply(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply, as the controller's writer does it (retried, as the
    controller's work queue would)."""
    query = {"fieldManager": api.FIELD_MANAGER, "force": "true"}
    return await _again(
        lambda _: request_json(api, "PATCH", path, body=body, content_type=APPLY, query=query)
    )


async def _merge(api: client.ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch, retried."""
    return await _again(lambda _: request_json(api, "PATCH", path, body=body, content_type=MERGE))


async def floor_phase(apis: Apis, size: Size, meter: CpuMeter) -> dict[str, Any]:
    """The minimal writes, made by a bare client with as many in flight per cluster as
    the controller's writer allows (``writer.MAX_IN_FLIGHT``)."""
    names = size.names(f"floor-{size}")
    await _create_namespaces(apis, {ns for ns, _ in names})
    slots = {c: asyncio.Semaphore(writer.MAX_IN_FLIGHT) for c in apis}

    async def write(c: str, how: Callable[..., Awaitable[dict[str, Any]]], *a: Any) -> Any:
        async with slots[c]:
            return await how(apis[c], *a)

    async def one(ns: str, name: str) -> None:
        svc, exp = await _create_export(apis["cluster1"], ns, name)
        evaluation = plan.evaluate([plan.ClusterView("cluster1", True, exp, svc)])
        merged = evaluation.merged
        assert merged is not None
        now = datetime.now(UTC)

        async def in_cluster(c: str) -> None:
            derived = imports.desired_derived_service(ns, name, merged)
            assert derived is not None
            path = f"/api/v1/namespaces/{ns}/services/{derived['metadata']['name']}"
            got = await write(c, _apply, path, derived)
            imp = imports.desired_import(ns, name, merged, got)
            ipath = f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/serviceimports/{name}"
            await write(c, _apply, ipath, imp)
            status = imports.desired_import_status(merged, imp, [], now)
            await write(c, _merge, ipath + "/status", {"status": status})

        await asyncio.gather(*(in_cluster(c) for c in apis))
        conditions = plan.export_status(
            evaluation, plan.ClusterView("cluster1", True, exp, svc), now
        )
        await write(
            "cluster1",
            _merge,
            f"/apis/{GROUP}/{VERSION}/namespaces/{ns}/serviceexports/{name}/status",
            {"status": {"conditions": conditions}},
        )

    started, mesh0 = time.monotonic(), meter.read()
    await _bounded(CONCURRENCY, [partial(one, ns, n) for ns, n in names])
    took = time.monotonic() - started
    return {
        "floor_seconds": round(took, 1),
        "floor_writes_per_export": 2 + 3 * len(apis) + 1,
        **CpuMeter.since(mesh0, meter.read(), "floor_run"),
    }


@contextlib.asynccontextmanager
async def _fresh_mesh(tmp: Path, name: str) -> AsyncIterator[tuple[Path, Apis, CpuMeter]]:
    """A new 3-cluster mesh: its kubeconfig, a client per cluster, its CPU meter."""
    mesh = Mesh(tmp / f"mesh-{name}", say=lambda s: None)
    state = await mesh.up(3, detach=False)
    apis: Apis = {}
    try:
        for m in state.members:
            apis[m.name] = await new_client(str(state.kubeconfig), m.name)
        yield state.kubeconfig, apis, CpuMeter([m.pid for m in state.members], state.etcd.pid)
    finally:
        for api in apis.values():
            await api.close()
        mesh.down()


async def run_size(
    size: Size, workers: int, samples: int, tmp: Path, *, floor: bool = True
) -> dict[str, Any]:
    """The controller's phases on one fresh mesh, then the floor on another, so that
    neither works on a store the other has filled."""
    global RETRIES
    RETRIES = 0
    row: dict[str, Any] = {"size": str(size), "exports": size.exports, "workers": workers}
    async with _fresh_mesh(tmp, str(size)) as (kubeconfig, apis, meter):
        row |= await controller_phase(kubeconfig, apis, size, tmp, workers, samples, meter)
    if floor:
        print(json.dumps(row), file=sys.stderr, flush=True)  # in case the floor fails
        async with _fresh_mesh(tmp, f"{size}-floor") as (_, apis, meter):
            row |= await floor_phase(apis, size, meter)
        row["ratio_to_floor"] = round(row["controller_seconds"] / row["floor_seconds"], 2)
        cpu = _cpu_total(row, "controller") / _cpu_total(row, "floor")
        row["cpu_ratio_to_floor"] = round(cpu, 2)
    row["retries"] = RETRIES
    row["at"] = format_time(datetime.now(UTC))
    return row


def _cpu_total(row: dict[str, Any], phase: str) -> float:
    """CPU seconds the whole system spent on a phase: API servers, etcd, the bench's
    own client and, for the controller's phase, the controller. Unlike wall time, this
    hardly moves with what else runs on the machine."""
    own = row["controller_cpu_seconds"] if phase == "controller" else 0.0
    return float(
        own + sum(row[f"{phase}_run_{p}_cpu_seconds"] for p in ("apiservers", "etcd", "bench"))
    )


COLUMNS = [
    ("size", "exports"),
    ("floor_seconds", "floor (s)"),
    ("controller_seconds", "controller (s)"),
    ("ratio_to_floor", "ratio"),
    ("cpu_ratio_to_floor", "CPU ratio"),
    ("exports_per_second", "exports/s"),
    ("writes_per_export", "writes/export"),
    ("latency_p50_ms", "latency p50 (ms)"),
    ("latency_p99_ms", "p99 (ms)"),
    ("latency_with_service_p99_ms", "p99 with the Service's creation (ms)"),
    ("controller_cpu_seconds", "controller CPU (s)"),
    ("controller_peak_rss_mib", "RSS (MiB)"),
    ("restart_ready_seconds", "restart: ready (s)"),
    ("restart_resynced_seconds", "resynced (s)"),
    ("restart_writes", "writes"),
    ("restart_peak_rss_mib", "RSS (MiB)"),
]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", default=["100", "1000"], help="N or KxM")
    parser.add_argument(
        "--workers",
        type=int,
        default=CONCURRENCY,
        help="controller --workers (default: as many as the floor has exports in flight)",
    )
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--keep", type=Path, help="keep logs in this directory")
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the floor (no ratio): the controller, latency and restart phases only",
    )
    args = parser.parse_args()
    configure_logging("console", "warning")  # the convergence watches' informers
    rows = []
    with tempfile.TemporaryDirectory(prefix="mcs-bench-") as tmp:
        logdir = args.keep or Path(tmp)
        logdir.mkdir(parents=True, exist_ok=True)
        for text in args.sizes:
            size = Size.parse(text)
            floor = not args.no_floor
            row = await run_size(size, args.workers, args.latency_samples, logdir, floor=floor)
            print(json.dumps(row), flush=True)
            rows.append(row)
    print("\n| " + " | ".join(title for _, title in COLUMNS) + " |")
    print("|" + " --- |" * len(COLUMNS))
    for r in rows:
        print("| " + " | ".join(str(r.get(k, "")) for k, _ in COLUMNS) + " |")


if __name__ == "__main__":
    asyncio.run(main())
