"""Chaos and model-based tests, checked by the independent oracle (``oracle.py``).

* ``test_chaos``: a 200-export workload; the controller is SIGKILLed at random points
  while the workload changes, member API servers are killed and restarted, and etcd is
  compacted so that resumed watches get 410 Gone. Afterwards: 0 orphaned, 0 duplicated,
  0 missing objects.
* ``test_model``: random operations (create/update/delete Service, ServiceExport,
  endpoints in 4 namespaces; create/delete a Namespace in one cluster; kill/restart the
  controller; partition a member for less than the grace, or for longer) over 3
  clusters, compared with the oracle after every quiescence. Its controller runs with
  ``--member-grace 7``: a partition longer than that withdraws the member, and the
  other two clusters are checked against the oracle with that member's exports gone
  before it is thawed; the controller's log must show one withdrawal per long
  partition and none for the short ones (0.5-5 s).

The workload's Services are mostly alike but not all: other ports, session affinity,
traffic policies, headless ones, IPv6-only and dual-stack ones, unready endpoints
(``Workload.service_spec``), so that conflicts of every kind the oracle states occur.

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
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.state import Member, MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import (
    Controllers,
    Kubectl,
    _http_ok,
    assert_clean_exit,
    eventually,
)
from tests.integration.faults import ApiServer, log_events, log_time, seed_for, spawn_controller
from tests.integration.oracle import (
    ClusterState,
    check,
    expected_exporters,
    expected_merges,
    read_cluster,
)

pytestmark = pytest.mark.faults

Obj = dict[str, Any]
CLUSTERS = ["cluster1", "cluster2", "cluster3"]
EXPORT_API = "multicluster.x-k8s.io/v1beta1"
SLICE_API = "discovery.k8s.io/v1"
# The model's controller's --member-grace. Its health probe (every 1 s) times out after
# 2 s and two failed probes make a member unreachable, so a freeze shorter than about
# 4 s goes unseen; a short partition (0.5-5 s) may be seen as unreachable (since its
# first failed probe) until the first probe after the thaw: then the grace keeps it in.
MODEL_GRACE = 7.0
NAMESPACE_OPS = 0.05  # of the model's random operations: create or delete a namespace
# How often an exported Service differs from the usual one (port http 80, ClusterIP, IPv4,
# no affinity, default policies), so that exports of one name conflict: each of ports,
# session affinity (VARIANT), internal traffic policy and traffic distribution (VARIANT/2)
# on every apply; headless and the IP families (IPv6 only, dual-stack) once per Service.
VARIANT = 0.2
HEADLESS = 0.15
FAMILIES = 0.1
UNREADY = 0.2  # of the endpoints: ready false
PORT_VARIANTS: list[list[Obj]] = [
    [{"name": "http", "port": 81, "protocol": "TCP"}],  # its http is not the import's
    [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "metrics", "port": 9090}],
    [{"name": "http", "port": 80, "protocol": "TCP", "appProtocol": "http"}],
]


class Workload:
    """The clusters' own objects (Services, ServiceExports, exporter EndpointSlices) as the
    test drives them; every change goes through kubectl in batches.

    They live in ``ns`` (the test's namespace, in every cluster) and in ``extra``
    namespaces, which the workload creates and deletes per cluster (``present``: where
    each exists as far as the workload knows; a deleted one's objects go with it)."""

    def __init__(
        self, kubectl: Kubectl, ns: str, rng: random.Random, extra: Sequence[str] = ()
    ) -> None:
        self.kubectl, self.ns, self.rng = kubectl, ns, rng
        self.extra = list(extra)
        self.namespaces = [ns, *self.extra]
        self.present: dict[str, set[str]] = {c: {ns} for c in CLUSTERS}
        self.applies: dict[str, list[Obj]] = {c: [] for c in CLUSTERS}
        self.deletes: dict[str, list[Obj]] = {c: [] for c in CLUSTERS}
        self.fixed: dict[tuple[str, str, str], Obj] = {}
        self.ops = 0
        self.ns_created = self.ns_deleted = self.ns_busy = 0

    def _addr(self, cluster: str) -> str:
        c = CLUSTERS.index(cluster) + 1
        return f"10.{c}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"

    def _fixed(self, cluster: str, ns: str, name: str) -> Obj:
        """The fields of a Service that cannot change once it exists (headless or not,
        its IP families), drawn once per cluster, namespace and name: a Service
        deleted and made again gets the same ones, so that no apply is refused."""
        key = (cluster, ns, name)
        if key not in self.fixed:
            spec: Obj = {}
            if self.rng.random() < HEADLESS:
                spec["clusterIP"] = "None"
            r = self.rng.random()
            if r < FAMILIES:
                spec |= {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}
            elif r < 2 * FAMILIES:
                spec |= {"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4", "IPv6"]}
            else:
                spec |= {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4"]}
            self.fixed[key] = spec
        return self.fixed[key]

    def service_spec(self, cluster: str, ns: str, name: str) -> Obj:
        """Mostly the usual Service (port http 80, no affinity, the default policies);
        now and then one that conflicts with it: other ports, session affinity (or its
        timeout), internal traffic policy, traffic distribution; and fixed per name and
        cluster, headless or not and the IP families (``_fixed``)."""
        rng = self.rng
        spec: Obj = dict(self._fixed(cluster, ns, name))
        spec["ports"] = [{"name": "http", "port": 80, "protocol": "TCP"}]
        if rng.random() < VARIANT:
            spec["ports"] = rng.choice(PORT_VARIANTS)
        spec["sessionAffinity"] = "None"
        if rng.random() < VARIANT and spec.get("clusterIP") != "None":
            spec["sessionAffinity"] = "ClientIP"
            spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": rng.choice([60, 600])}}
        spec["internalTrafficPolicy"] = "Local" if rng.random() < VARIANT / 2 else "Cluster"
        if rng.random() < VARIANT / 2:
            spec["trafficDistribution"] = "PreferClose"
        return spec

    def export(self, cluster: str, name: str, ns: str | None = None) -> None:
        ns = ns or self.ns
        self.applies[cluster] += [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": ns},
                "spec": self.service_spec(cluster, ns, name),
            },
            {
                "apiVersion": EXPORT_API,
                "kind": "ServiceExport",
                "metadata": {"name": name, "namespace": ns},
            },
        ]
        self.endpoints(cluster, name, ns)
        self.ops += 3

    def endpoints(self, cluster: str, name: str, ns: str | None = None) -> None:
        self.applies[cluster].append(
            {
                "apiVersion": SLICE_API,
                "kind": "EndpointSlice",
                "metadata": {
                    "name": f"{name}-src",
                    "namespace": ns or self.ns,
                    "labels": {
                        "kubernetes.io/service-name": name,
                        "endpointslice.kubernetes.io/managed-by": "test.example",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [self._addr(cluster)],
                        "conditions": {"ready": self.rng.random() >= UNREADY},
                    }
                    for _ in range(self.rng.randint(1, 3))
                ],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        )
        self.ops += 1

    def delete(self, cluster: str, kind: str, name: str, ns: str | None = None) -> None:
        api = {"Service": "v1", "ServiceExport": EXPORT_API, "EndpointSlice": SLICE_API}[kind]
        meta = {"name": name, "namespace": ns or self.ns}
        self.deletes[cluster].append({"apiVersion": api, "kind": kind, "metadata": meta})
        self.ops += 1

    def create_namespace(self, cluster: str, ns: str) -> bool:
        """Create ``ns`` in ``cluster`` now (not batched: the batch's objects may go in
        it). False when it is still being deleted (Terminating: the API server refuses
        to create it again until kube-controller-manager has emptied it)."""
        out = self.kubectl(cluster, "create", "namespace", ns, check=False)
        if out.returncode != 0:
            assert "AlreadyExists" in out.stderr, f"create namespace {ns}: {out.stderr}"
            self.ns_busy += 1
            return False
        self.present[cluster].add(ns)
        self.ns_created += 1
        self.ops += 1
        return True

    def delete_namespace(self, cluster: str, ns: str) -> None:
        """Delete ``ns`` in ``cluster`` with the batch (after its objects' changes)."""
        self.present[cluster].discard(ns)
        self.deletes[cluster].append(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        self.ns_deleted += 1
        self.ops += 1

    def random_op(self, cluster: str, names: list[str]) -> None:
        if self.extra and self.rng.random() < NAMESPACE_OPS:
            ns = self.rng.choice(self.extra)
            if ns in self.present[cluster]:
                self.delete_namespace(cluster, ns)
            else:
                self.create_namespace(cluster, ns)
            return
        name = self.rng.choice(names)
        op = self.rng.choice(["export", "export", "endpoints", "unexport", "unservice", "noslice"])
        ns = self.ns
        if self.extra:  # one draw whatever exists, so that a seed replays the same draws
            ns = self.rng.choice(self.namespaces)
            ns = ns if ns in self.present[cluster] else self.ns
        if op == "export":
            self.export(cluster, name, ns)
        elif op == "endpoints":
            self.endpoints(cluster, name, ns)
        elif op == "unexport":
            self.delete(cluster, "ServiceExport", name, ns)
        elif op == "unservice":
            self.delete(cluster, "Service", name, ns)
        else:
            self.delete(cluster, "EndpointSlice", f"{name}-src", ns)

    def flush(self, skip: str | None = None) -> None:
        """Send the batched changes (not to ``skip``, a cluster that is down: kept for
        later): one apply and one delete per cluster (namespaces last), the clusters
        in parallel."""
        with ThreadPoolExecutor(len(CLUSTERS)) as pool:
            list(pool.map(self._flush, [c for c in CLUSTERS if c != skip]))

    def _flush(self, cluster: str) -> None:
        items, self.applies[cluster] = self.applies[cluster], []
        if items:
            self.kubectl(cluster, "apply", "-f", "-", stdin=_as_list(items))
        deletes, self.deletes[cluster] = self.deletes[cluster], []
        if deletes:
            unique = {json.dumps(d, sort_keys=True): d for d in deletes}.values()
            last = sorted(unique, key=lambda d: d["kind"] == "Namespace")
            self.kubectl(
                cluster,
                "delete",
                "-f",
                "-",
                "--ignore-not-found",
                "--wait=false",
                stdin=_as_list(last),
            )

    def cleanup(self) -> None:
        """Delete the extra namespaces in every cluster (without waiting)."""
        for cluster in CLUSTERS:
            if self.extra:
                self.kubectl(
                    cluster,
                    "delete",
                    "namespace",
                    *self.extra,
                    "--ignore-not-found",
                    "--wait=false",
                    check=False,  # in a finally: do not hide the test's own error
                )


def _as_list(items: Iterable[Obj]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)})


def read_state(
    kubectl: Kubectl, namespaces: str | Iterable[str], clusters: Iterable[str] = CLUSTERS
) -> dict[str, ClusterState]:
    """The oracle's view of ``clusters`` (read in parallel), in ``namespaces``."""
    wanted = {namespaces} if isinstance(namespaces, str) else set(namespaces)
    clusters = list(clusters)
    with ThreadPoolExecutor(len(clusters)) as pool:
        states = pool.map(lambda c: read_cluster(kubectl, c, wanted), clusters)
    return dict(zip(clusters, states, strict=True))


def wait_quiescent(
    kubectl: Kubectl,
    namespaces: str | Iterable[str],
    timeout: float = 90,
    withdrawn: str | None = None,
    seen: Counter[str] | None = None,
) -> tuple[list[str], float]:
    """Poll the oracle until nothing is wrong or ``timeout``; (last problems, seconds).
    ``withdrawn``: a member that is frozen for longer than the controller's grace: it is
    not read, and the oracle takes it as exporting nothing (the others must not show
    its exports). ``seen`` counts what the checked state held (``coverage``)."""
    started = time.monotonic()
    problems: list[str] = []
    others = [c for c in CLUSTERS if c != withdrawn]
    gone = frozenset({withdrawn} if withdrawn else ())
    while time.monotonic() - started < timeout:
        state = read_state(kubectl, namespaces, others)
        if withdrawn:
            state[withdrawn] = ClusterState()
        problems = check(state, gone)
        if not problems:
            if seen is not None:
                seen.update(coverage(state, gone))
            break
        time.sleep(1)
    return problems, time.monotonic() - started


def victim_imports(state: dict[str, ClusterState], victim: str) -> set[tuple[str, str, str]]:
    """(cluster, namespace, name) of every other cluster's import of a key that
    ``victim`` exports validly (from a quiescent ``state``: the import lists it)."""
    mine = {k for k, v in expected_exporters(state).items() if victim in v}
    return {
        (c, *key)
        for c, st in state.items()
        if c != victim
        for key in mine
        if key[0] in st.namespaces
    }


def lost_imports(
    kubectl: Kubectl, namespaces: Iterable[str], victim: str, kept: set[tuple[str, str, str]]
) -> list[str]:
    """The imports of ``kept`` that no longer list ``victim`` (their namespace still
    existing in that cluster): the victim's exports withdrawn from them."""
    others = sorted({c for c, _, _ in kept})
    if not others:
        return []
    state = read_state(kubectl, namespaces, others)
    lost = []
    for c, ns, name in sorted(kept):
        if ns not in state[c].namespaces:
            continue  # deleted meanwhile by the workload: its import goes with it
        imp = state[c].imports.get((ns, name)) or {}
        listed = [x["cluster"] for x in (imp.get("status") or {}).get("clusters") or []]
        if victim not in listed:
            lost.append(f"{c}: {ns}/{name} lists {listed}")
    return lost


def coverage(
    state: dict[str, ClusterState], withdrawn: frozenset[str] = frozenset()
) -> Counter[str]:
    """What a checked state held: imports by conflict reason, headless and multi-cluster
    ones, unready endpoints; so that a test can require its workload to reach them."""
    out: Counter[str] = Counter()
    for merged in expected_merges(state, withdrawn).values():
        out.update(merged.reasons)
        out["imports"] += 1
        out["headless"] += merged.headless
        out["several clusters"] += len(merged.clusters) > 1
        out["no conflict"] += not merged.reasons
    for st in state.values():
        for s in st.slices:
            out["unready endpoints"] += sum(
                (e.get("conditions") or {}).get("ready") is False for e in s.get("endpoints") or []
            )
    return out


# what the model's workload must reach over a run (``coverage``)
MUST_SEE = (
    "PortConflict",
    "TypeConflict",
    "SessionAffinityConflict",
    "InternalTrafficPolicyConflict",
    "TrafficDistributionConflict",
    "IPFamilyConflict",
    "headless",
    "no conflict",
    "unready endpoints",
)


def withdrawal_problems(
    withdrawals: list[tuple[str, float]], partitions: list[tuple[str, float, float, str]]
) -> list[str]:
    """How the controller's withdrawals (member, wall-clock time) disagree with the
    partitions (member, frozen, thawed, kind): each ``long`` one withdraws its member
    exactly once while frozen, a ``short`` one never, and one that lasted the grace on a
    loaded machine (``overran``) at most once."""
    problems = []
    found: dict[int, int] = {}
    for member, t in withdrawals:
        hits = [
            i for i, (m, t0, t1, _) in enumerate(partitions) if m == member and t0 <= t <= t1 + 2
        ]
        if not hits:
            problems.append(f"{member} withdrawn at {t:.1f} outside any partition of it")
        for i in hits:
            found[i] = found.get(i, 0) + 1
    for i, (m, t0, t1, kind) in enumerate(partitions):
        n = found.get(i, 0)
        if (kind == "long" and n != 1) or (kind == "short" and n) or n > 1:
            problems.append(f"{kind} partition of {m} ({t1 - t0:.1f}s): {n} withdrawals")
    return problems


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
    assert kills >= 1, f"MCS_CHAOS_KILLS={kills}: no kill, nothing tested"
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
        seen: Counter[str] = Counter()
        problems, took = wait_quiescent(kubectl, namespace, timeout=300, seen=seen)
        gone = sum(
            1
            for e in log_events(ctl, "central")
            if e.get("event", "").startswith("resource version expired")
        )
        print(
            f"test_chaos: {kills} kills, {apis.done} API-server restarts, "
            f"{gone} relists after 410 Gone, {work.ops} operations in {faults_took:.1f}s; "
            f"converged in {took:.1f}s; checked {dict(sorted(seen.items()))}"
        )
        assert not problems, "\n".join(problems[:50])
        assert seen["PortConflict"] and seen["headless"], f"the workload missed cases: {seen}"
        assert apis.done == restarts
        assert gone > 0, "no watch was resumed from a compacted revision: 410 not exercised"
    finally:
        sender.shutdown()
        apis.wait()
        codes = ctl.stop_all()
    assert_clean_exit(codes)


def test_model(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Phases of 10-16 batches of 5-20 random operations over 4 namespaces (the test's,
    in every cluster, and 3 that the workload creates and deletes per cluster), each
    batch ended by an event: send it, or kill and restart the controller, or freeze a
    member shorter than the grace (from a quiescent state: while it is frozen, every other
    cluster's import of its exports must still list it), or longer (once
    the grace has passed, the others must show none of its exports: checked against the
    oracle with that member withdrawn; then it is thawed and must return). The oracle
    checks every cluster after each phase; at the end, the controller must have
    withdrawn a member exactly once per long partition, and never otherwise.
    ``MCS_MODEL_OPS`` below 100 fails: too few to test anything."""
    rng = random.Random(seed_for("test_model"))
    total = int(os.environ.get("MCS_MODEL_OPS", "2000"))
    assert total >= 100, f"MCS_MODEL_OPS={total}: too few operations to test anything"
    names = [f"m{i:02d}" for i in range(40)]
    work = Workload(kubectl, namespace, rng, [f"{namespace}-{s}" for s in ("b", "c", "d")])
    ctl = Controllers("central", accounts, tmp_path)
    checks = 0
    waited: dict[str, float] = defaultdict(float)  # seconds waiting for quiescence, by kind
    long_partitions: list[str] = []
    short_partitions: list[tuple[str, float, float]] = []  # member, wall clock frozen..thawed
    short_checked = 0  # imports checked to keep a member through its short partition
    overran = 0  # short partitions that lasted the grace (flushing on a loaded machine)
    sender = ThreadPoolExecutor(1)
    covered: Counter[str] = Counter()  # what the oracle checked (coverage), over all checks
    partitions: list[tuple[str, float, float, str]] = []  # member, frozen, thawed, kind

    def quiescent(what: str, kind: str, withdrawn: str | None = None, timeout: float = 180) -> None:
        nonlocal checks
        problems, took = wait_quiescent(kubectl, work.namespaces, timeout, withdrawn, covered)
        checks += 1
        waited[kind] += took
        assert not problems, (
            f"{what} ({work.ops} operations), not quiescent in {took:.0f}s:\n"
            + "\n".join(problems[:50])
        )

    started = time.monotonic()
    try:
        for cluster in CLUSTERS:  # each extra namespace in 2 of 3 clusters on average
            for ns in work.extra:
                if rng.random() < 2 / 3:
                    work.create_namespace(cluster, ns)
        spawn_controller(ctl, "central", "--member-grace", str(MODEL_GRACE))
        phase = 0
        while work.ops < total:
            phase += 1
            batches = rng.randint(10, 16)
            for batch in range(batches):
                for _ in range(rng.randint(5, 20)):
                    work.random_op(rng.choice(CLUSTERS), names)
                event = rng.random()
                if phase == 1 and batch == batches - 1:
                    event = 0.26  # the first phase ends with a long partition: every run has one
                if event < 0.15:  # kill and restart the controller
                    _kill(ctl, "central")
                    work.ops += 1
                    work.flush()
                    spawn_controller(ctl, "central", "--member-grace", str(MODEL_GRACE))
                elif event < 0.25:  # partition a member for less than the grace period
                    victim = ApiServer(mesh, rng.choice(mesh.members), kubectl)
                    work.ops += 1
                    # from a quiescent state (the controller has seen all of the victim's
                    # exports): while frozen, the others must keep importing them
                    quiescent("before a short partition", "short")
                    kept = victim_imports(read_state(kubectl, work.namespaces), victim.member.name)
                    hold = rng.uniform(0.5, 4.0)
                    with victim.frozen():
                        since, frozen_at = time.monotonic(), time.time()
                        # the others' changes go meanwhile, however long they take
                        sending = sender.submit(work.flush, victim.member.name)
                        time.sleep(max(0.0, since + hold - time.monotonic()))
                        lost = lost_imports(kubectl, work.namespaces, victim.member.name, kept)
                    frozen_for = time.monotonic() - since
                    sending.result()
                    short_partitions.append((victim.member.name, frozen_at, time.time()))
                    # a freeze that the machine's load made last the grace may withdraw
                    kind = "short" if frozen_for < MODEL_GRACE else "overran"
                    partitions.append((victim.member.name, frozen_at, time.time(), kind))
                    if kind == "short":
                        assert not lost, (
                            f"{victim.member.name} frozen for {frozen_for:.1f}s, less than the "
                            f"grace: its exports left the others' imports: {lost[:20]}"
                        )
                        short_checked += len(kept)
                    else:
                        overran += 1
                    work.flush()
                elif event < 0.275:  # partition a member for longer than the grace period
                    # joined (ready), so that the controller has something to withdraw
                    eventually(lambda: ctl._ready("central"), timeout=120, what="ready")
                    victim = ApiServer(mesh, rng.choice(mesh.members), kubectl)
                    frozen = victim.member.name
                    work.ops += 1
                    long_partitions.append(frozen)
                    hold = MODEL_GRACE + rng.uniform(2.0, 4.0)
                    with victim.frozen():
                        since, frozen_at = time.monotonic(), time.time()
                        work.flush(skip=frozen)
                        quiescent(
                            f"{frozen} frozen for longer than the grace",
                            "withdrawn",
                            frozen,
                            MODEL_GRACE + 30,  # hung writes to it must not hold the others
                        )
                        time.sleep(max(0.0, since + hold - time.monotonic()))
                    partitions.append((frozen, frozen_at, time.time(), "long"))
                    work.flush()
                    quiescent(f"{frozen} thawed after {time.monotonic() - since:.1f}s", "returned")
                else:
                    work.flush()
            quiescent(f"after phase {phase}", "phase")
        events = log_events(ctl, "central")
        withdrawals = [
            (str(e.get("cluster")), log_time(e))
            for e in events
            if e.get("event", "").startswith("member withdrawn")
        ]
        unreachable = [
            (e.get("context"), log_time(e))
            for e in events
            if e.get("event") == "member unreachable" and "timestamp" in e
        ]
        seen = sum(  # short partitions that the controller saw as unreachable
            any(c == m and t0 <= t <= t1 + 2 for c, t in unreachable)
            for m, t0, t1 in short_partitions
        )
        print(
            f"test_model: {work.ops} operations, {phase} phases, {checks} oracle checks, "
            f"{len(short_partitions)} short partitions ({seen} seen as unreachable, "
            f"{short_checked} imports of theirs kept, {overran} lasted the grace) and "
            f"{len(long_partitions)} long, "
            f"namespaces {work.ns_created} created, {work.ns_deleted} deleted, "
            f"{work.ns_busy} creations skipped (still terminating); waited for quiescence "
            + ", ".join(f"{k} {v:.0f}s" for k, v in sorted(waited.items()))
            + f"; {time.monotonic() - started:.0f}s in all; checked {dict(sorted(covered.items()))}"
        )
        missed = [what for what in MUST_SEE if not covered[what]]
        assert not missed, f"the workload never reached {missed}: {covered}"
        assert short_partitions, "no short partition: the model never tested one"
        assert short_checked, "no short partition had an export to keep: nothing tested"
        wrong = withdrawal_problems(withdrawals, partitions)
        assert not wrong, (
            "a short partition must not withdraw its member, a long one must, once: "
            + "; ".join(wrong)
        )
    finally:
        sender.shutdown()
        codes = ctl.stop_all()
        work.cleanup()
    assert_clean_exit(codes)
