"""Chaos and model-based tests, checked by the independent oracle (``oracle.py``).

* ``test_chaos``: a 200-export workload; the controller is SIGKILLed at random points
  while the workload changes, member API servers are killed and restarted, and etcd is
  compacted so that resumed watches get 410 Gone. Afterwards: 0 orphaned, 0 duplicated,
  0 missing objects.
* ``test_model``: random operations (create/update/delete Service, ServiceExport,
  endpoints; kill/restart the controller; partition a member for less than the grace)
  over 3 clusters, compared with the oracle after every quiescence.

Both print their seed (``MCS_CHAOS_SEED`` replays a run). Their sizes are the issue's
and can be changed: ``MCS_CHAOS_KILLS`` (default 50), ``MCS_CHAOS_API_RESTARTS`` (10),
``MCS_MODEL_OPS`` (2000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mcs.mesh.mesh import Member, MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, _http_ok, eventually
from tests.integration.faults import ApiServer, log_events, seed_for, spawn_controller
from tests.integration.oracle import ClusterState, check, read_cluster

pytestmark = pytest.mark.faults

CLUSTERS = ["cluster1", "cluster2", "cluster3"]
Obj = dict[str, Any]


class Workload:
    """The clusters' own objects (Services, ServiceExports, exporter EndpointSlices) as the
    test drives them, one namespace; every change goes through kubectl in batches."""

    def __init__(self, kubectl: Kubectl, ns: str, rng: random.Random) -> None:
        self.kubectl, self.ns, self.rng = kubectl, ns, rng
        self.applies: dict[str, list[Obj]] = {c: [] for c in CLUSTERS}
        self.deletes: dict[str, list[tuple[str, str]]] = {c: [] for c in CLUSTERS}
        self.ops = 0

    def _addr(self, cluster: str) -> str:
        c = CLUSTERS.index(cluster) + 1
        return f"10.{c}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"

    def export(self, cluster: str, name: str) -> None:
        ns = self.ns
        self.applies[cluster] += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
            },
            {
                "apiVersion": "multicluster.x-k8s.io/v1beta1",
                "kind": "ServiceExport",
                "metadata": {"name": name, "namespace": ns},
            },
        ]
        self.endpoints(cluster, name)
        self.ops += 3

    def endpoints(self, cluster: str, name: str) -> None:
        self.applies[cluster].append(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-src",
                    "namespace": self.ns,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "test.example",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": [self._addr(cluster)], "conditions": {"ready": True}}
                    for _ in range(self.rng.randint(1, 3))
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
        self.ops += 1

    def delete(self, cluster: str, kind: str, name: str) -> None:
        self.deletes[cluster].append((kind, name))
        self.ops += 1

    def random_op(self, cluster: str, names: list[str]) -> None:
        name = self.rng.choice(names)
        op = self.rng.choice(["export", "export", "endpoints", "unexport", "unservice", "noslice"])
        if op == "export":
            self.export(cluster, name)
        elif op == "endpoints":
            self.endpoints(cluster, name)
        elif op == "unexport":
            self.delete(cluster, "serviceexports.multicluster.x-k8s.io", name)
        elif op == "unservice":
            self.delete(cluster, "services", name)
        else:
            self.delete(cluster, "endpointslices.discovery.k8s.io", f"{name}-src")

    def flush(self, skip: str | None = None) -> None:
        """Send the batched changes (not to ``skip``, a cluster that is down: kept for
        later): one apply and one delete per cluster, the clusters in parallel."""
        with ThreadPoolExecutor(len(CLUSTERS)) as pool:
            list(pool.map(self._flush, [c for c in CLUSTERS if c != skip]))

    def _flush(self, cluster: str) -> None:
        items, self.applies[cluster] = self.applies[cluster], []
        if items:
            self.kubectl(
                cluster,
                "apply",
                "-f",
                "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )
        deletes, self.deletes[cluster] = self.deletes[cluster], []
        if deletes:
            self.kubectl(
                cluster,
                "delete",
                *sorted({f"{kind}/{name}" for kind, name in deletes}),
                "-n",
                self.ns,
                "--ignore-not-found",
                "--wait=false",
            )


def read_state(kubectl: Kubectl, ns: str) -> dict[str, ClusterState]:
    return {c: read_cluster(kubectl, c, {ns}) for c in CLUSTERS}


def wait_quiescent(kubectl: Kubectl, ns: str, timeout: float = 90) -> tuple[list[str], float]:
    """Poll the oracle until nothing is wrong or ``timeout``; (last problems, seconds)."""
    started = time.monotonic()
    problems: list[str] = []
    while time.monotonic() - started < timeout:
        problems = check(read_state(kubectl, ns))
        if not problems:
            break
        time.sleep(1)
    return problems, time.monotonic() - started


def compact_etcd(mesh: MeshState) -> int:
    """Compact etcd at its current revision: every older resourceVersion is gone (410)."""
    base = f"http://127.0.0.1:{mesh.etcd.port}/v3/kv"

    def post(path: str, body: Obj) -> Obj:
        req = urllib.request.Request(
            f"{base}/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            out: Obj = json.loads(r.read())
            return out

    rev = int(post("range", {"key": "AA=="})["header"]["revision"])
    post("compaction", {"revision": rev})
    return rev


def _kill(ctl: Controllers, name: str) -> None:
    proc = ctl.procs.pop(name)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


class Restarter:
    """Kills a member's API server (SIGKILL, then an etcd compaction: resumed watches get
    410 Gone) and starts it again, without waiting: the controller keeps being killed
    meanwhile. ``poll`` (called between kills) notices when it is ready; ``down`` is the
    member being restarted, if any."""

    def __init__(self, mesh: MeshState, kubectl: Kubectl) -> None:
        self.mesh, self.kubectl = mesh, kubectl
        self.victim: ApiServer | None = None
        self.done = 0

    @property
    def down(self) -> str | None:
        return self.victim.member.name if self.victim else None

    def start(self, member: Member) -> None:
        self.wait()
        self.victim = ApiServer(self.mesh, member, self.kubectl)
        argv = self.victim.kill()
        compact_etcd(self.mesh)
        self.victim.spawn(argv)

    def poll(self) -> bool:
        """True when no restart is under way (any more)."""
        if self.victim is not None and self.victim.started():
            self.victim = None
            self.done += 1
        return self.victim is None

    def wait(self) -> None:
        eventually(self.poll, timeout=120, interval=0.5, what=f"{self.down} restarted")


def _started(ctl: Controllers, name: str) -> None:
    """Wait until ``mcs run`` serves /healthz (Python has imported it and it is
    reading its members), so that a kill lands somewhere in the controller's work."""
    health = ctl.ports[name][1]
    eventually(
        lambda: _http_ok(f"http://127.0.0.1:{health}/healthz"),
        timeout=60,
        interval=0.05,
        what=f"{name} serving /healthz",
    )


def test_chaos(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """``kills`` SIGKILLs of the controller at random points (0-2 s after it serves
    /healthz: reading members, listing, reconciling or idle), 10 random operations
    after each kill (sent while the next controller starts), and ``restarts`` member
    API-server restarts running concurrently with the kills. The controller survives
    every fifth restart (synced, then frozen until the API server is ready again), so
    that a watch resumes from a compacted revision (410 Gone). Convergence is awaited
    once, at the end."""
    rng = random.Random(seed_for("test_chaos"))
    kills = int(os.environ.get("MCS_CHAOS_KILLS", "50"))
    restarts = min(int(os.environ.get("MCS_CHAOS_API_RESTARTS", "10")), kills)
    names = [f"svc{i:03d}" for i in range(200)]
    work = Workload(kubectl, namespace, rng)
    for name in names:
        for cluster in rng.sample(CLUSTERS, rng.randint(1, 3)):
            work.export(cluster, name)
    work.flush()
    ctl = Controllers("central", accounts, tmp_path)
    restart_at = sorted(rng.sample(range(kills), restarts))
    survive = set(restart_at[1::5])  # the controller lives through these restarts
    apis = Restarter(mesh, kubectl)
    sender = ThreadPoolExecutor(1)  # sends each batch of changes while the controller runs
    sent: Future[None] = sender.submit(lambda: None)
    started = time.monotonic()
    try:
        spawn_controller(ctl, "central")
        for i in range(kills):
            _started(ctl, "central")
            time.sleep(rng.uniform(0.0, 2.0))
            apis.poll()
            if i in restart_at:
                sent.result()  # no batch in flight to the API server about to be killed
            if i in restart_at and i in survive:
                # Synced, it watches every member; frozen while one API server restarts,
                # it resumes that watch from a compacted revision once it is ready (had
                # it reconnected earlier, the starting server's 403s would make it relist).
                apis.wait()
                eventually(lambda: ctl._ready("central"), timeout=60, what="caches synced")
                controller = ctl.procs["central"]
                controller.send_signal(signal.SIGSTOP)
                try:
                    apis.start(rng.choice(mesh.members))
                    apis.wait()
                finally:
                    controller.send_signal(signal.SIGCONT)
                time.sleep(rng.uniform(1.0, 3.0))
            elif i in restart_at:
                apis.start(rng.choice(mesh.members))
            _kill(ctl, "central")
            spawn_controller(ctl, "central")
            sent.result()
            for _ in range(10):
                work.random_op(rng.choice(CLUSTERS), names)
            sent = sender.submit(work.flush, apis.down)  # lands while it starts and lists
        sent.result()
        apis.wait()
        work.flush()
        faults_took = time.monotonic() - started
        problems, took = wait_quiescent(kubectl, namespace, timeout=300)
        gone = sum(
            1
            for e in log_events(ctl, "central")
            if e.get("event", "").startswith("resource version expired")
        )
        print(
            f"test_chaos: {kills} kills, {apis.done} API-server restarts, "
            f"{gone} relists after 410 Gone, {work.ops} operations in {faults_took:.1f}s; "
            f"converged in {took:.1f}s"
        )
        assert not problems, "\n".join(problems[:50])
        assert apis.done == restarts
        assert gone > 0, "no watch was resumed from a compacted revision: 410 not exercised"
    finally:
        sender.shutdown()
        apis.wait()
        for name in list(ctl.procs):
            ctl.stop(name)


def test_model(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed_for("test_model"))
    total = int(os.environ.get("MCS_MODEL_OPS", "2000"))
    names = [f"m{i:02d}" for i in range(40)]
    work = Workload(kubectl, namespace, rng)
    ctl = Controllers("central", accounts, tmp_path)
    checks = 0
    try:
        spawn_controller(ctl, "central")
        phase = 0
        while work.ops < total:
            phase += 1
            batches = rng.randint(10, 16)
            for _ in range(batches):
                for _ in range(rng.randint(5, 20)):
                    work.random_op(rng.choice(CLUSTERS), names)
                event = rng.random()
                if event < 0.15:  # kill and restart the controller
                    _kill(ctl, "central")
                    work.ops += 1
                    work.flush()
                    spawn_controller(ctl, "central")
                elif event < 0.25:  # partition a member for less than the grace period
                    victim = ApiServer(mesh, rng.choice(mesh.members), kubectl)
                    work.ops += 1
                    with victim.frozen():
                        work.flush(skip=victim.member.name)
                        time.sleep(rng.uniform(0.5, 2.0))
                    work.flush()
                else:
                    work.flush()
            problems, took = wait_quiescent(kubectl, namespace, timeout=180)
            checks += 1
            assert not problems, (
                f"after phase {phase} ({work.ops} operations), not quiescent in {took:.0f}s:\n"
                + "\n".join(problems[:50])
            )
        print(f"test_model: {work.ops} operations, {phase} phases, {checks} oracle checks: ok")
    finally:
        for name in list(ctl.procs):
            ctl.stop(name)
