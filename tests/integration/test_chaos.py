"""Chaos and model-based tests, checked by the independent oracle (``oracle.py``).

* ``test_chaos``: a 200-export workload; the controller is SIGKILLed at random points
  while the workload changes, member API servers are killed and restarted, and etcd is
  compacted so that resumed watches get 410 Gone. Afterwards: 0 orphaned, 0 duplicated,
  0 missing objects.
* ``test_model``: random operations (create/update/delete Service, ServiceExport,
  endpoints; kill/restart the controller; partition a member for less than the grace)
  over 3 clusters, compared with the oracle after every quiescence.

Both print their seed (``MCS_CHAOS_SEED`` replays a run). Their sizes are lean for CI and
can be raised: ``MCS_CHAOS_KILLS`` (default 10), ``MCS_CHAOS_API_RESTARTS`` (2 points, each
restarting two API servers),
``MCS_MODEL_OPS`` (2000).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mcs.mesh.mesh import MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl
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
        """Send the batched changes (not to ``skip``, a frozen cluster: kept for later)."""
        for cluster in CLUSTERS:
            if cluster == skip:
                continue
            items, self.applies[cluster] = self.applies[cluster], []
            if items:
                self.kubectl(
                    cluster,
                    "apply",
                    "-f",
                    "-",
                    stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
                )
            by_kind: dict[str, list[str]] = {}
            for kind, name in self.deletes[cluster]:
                by_kind.setdefault(kind, []).append(name)
            self.deletes[cluster] = []
            for kind, names in by_kind.items():
                self.kubectl(
                    cluster,
                    "delete",
                    kind,
                    *sorted(set(names)),
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


def test_chaos(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    rng = random.Random(seed_for("test_chaos"))
    kills = int(os.environ.get("MCS_CHAOS_KILLS", "10"))
    restarts = int(os.environ.get("MCS_CHAOS_API_RESTARTS", "2"))
    names = [f"svc{i:03d}" for i in range(200)]
    work = Workload(kubectl, namespace, rng)
    for name in names:
        for cluster in rng.sample(CLUSTERS, rng.randint(1, 3)):
            work.export(cluster, name)
    work.flush()
    ctl = Controllers("central", accounts, tmp_path)
    restart_at = set(rng.sample(range(kills), min(restarts, kills)))
    try:
        spawn_controller(ctl, "central")
        for i in range(kills):
            time.sleep(rng.uniform(0.0, 3.0))  # a random point: listing, reconciling, idle
            _kill(ctl, "central")
            for _ in range(10):
                work.random_op(rng.choice(CLUSTERS), names)
            work.flush()
            if i in restart_at:
                victim = ApiServer(mesh, rng.choice(mesh.members), kubectl)
                argv = victim.kill()
                compact_etcd(mesh)  # resumed watches now ask for a compacted revision
                victim.restart(argv)
                spawn_controller(ctl, "central")
                time.sleep(rng.uniform(3.0, 6.0))  # let it list and watch before the next fault
                victim = ApiServer(mesh, rng.choice(mesh.members), kubectl)
                argv = victim.kill()
                compact_etcd(mesh)
                victim.restart(argv)
            else:
                spawn_controller(ctl, "central")
        problems, took = wait_quiescent(kubectl, namespace, timeout=300)
        gone = sum(
            1
            for e in log_events(ctl, "central")
            if e.get("event", "").startswith("resource version expired")
        )
        print(
            f"test_chaos: {kills} kills, {len(restart_at) * 2} API-server restarts, "
            f"{gone} relists after 410 Gone, {work.ops} operations; converged in {took:.1f}s"
        )
        assert not problems, "\n".join(problems[:50])
        assert gone > 0, "no watch was resumed from a compacted revision: 410 not exercised"
    finally:
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
