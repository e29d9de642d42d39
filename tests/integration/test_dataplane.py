"""Packets, not only objects: the Cilium tutorial and an MCS export on a dataplane mesh
(``mcs mesh up --dataplane``: real containerd, runc, CNI, kubelet, kube-proxy and cluster
DNS per member), with the controller in central and in per-cluster mode. Every assertion
is on the set of clusters that *answered* requests sent by ``curl`` from an x-wing pod.

When the module is done the mesh is stopped, and its teardown checks that nothing of it
is left: no network namespace, process, mount, cgroup or state directory, and no new
address on the host (``test_dataplane_cli.py`` checks the same through the CLI, also
after a SIGKILL).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from mcs_mesh import binaries, dataplane, processes
from mcs_mesh.mesh import Mesh
from mcs_mesh.state import MeshState
from tests.integration.accounts import ServiceAccounts, provision
from tests.integration.conftest import Controllers, Kubectl, eventually

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "dataplane"
C1, C2 = "cluster1", "cluster2"
CURLS = 20
_CLUSTER = re.compile(r'"Cluster": "(Cluster-\d)"')


def _host_addresses() -> set[str]:
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    return {" ".join(line.split()[1:4]) for line in out.splitlines()}


@pytest.fixture(scope="module")
def node_binaries() -> binaries.NodeBinaries:
    try:
        return binaries.ensure_node()
    except binaries.BinariesUnavailable as e:
        pytest.fail(f"dataplane binaries unavailable: {e}")


@pytest.fixture(scope="module")
async def dp_mesh(
    binaries_ready: binaries.Binaries,
    node_binaries: binaries.NodeBinaries,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Mesh, MeshState, set[str]]]:
    before = _host_addresses()
    m = Mesh(tmp_path_factory.mktemp("dpmesh"), say=lambda s: None)
    state = await m.up(2, detach=False, dataplane=True)
    try:
        yield m, state, before
    finally:
        m.down()
    _nothing_left(Path(state.dir), before)


def _nothing_left(directory: Path, before: set[str]) -> None:
    assert dataplane.leftovers(directory) == []
    assert not directory.exists()
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"mcs-{processes.mesh_id(directory)}" not in netns
    assert _host_addresses() <= before, _host_addresses() - before


@pytest.fixture(scope="module")
def dp_kubectl(dp_mesh: tuple[Mesh, MeshState, set[str]]) -> Kubectl:
    return Kubectl(dp_mesh[1].kubeconfig)


@pytest.fixture(scope="module")
def dp_accounts(
    dp_mesh: tuple[Mesh, MeshState, set[str]], tmp_path_factory: pytest.TempPathFactory
) -> ServiceAccounts:
    return provision(dp_mesh[1], tmp_path_factory.mktemp("dp-accounts"))


@pytest.fixture(scope="module", params=["central", "per-cluster"])
def ctl(
    request: pytest.FixtureRequest,
    dp_accounts: ServiceAccounts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controllers]:
    mode = request.param
    ctl = Controllers(mode, dp_accounts, tmp_path_factory.mktemp(f"dp-ctl-{mode}"))
    ctl.start_all([C1, C2], "--resync-period", "5")
    try:
        yield ctl
    finally:
        for name in list(ctl.procs):
            ctl.stop(name)


@pytest.fixture(scope="module")
def tutorial(dp_kubectl: Kubectl) -> Iterator[None]:
    """The tutorial's manifests in both clusters (default namespace, as it has them),
    rolled out."""
    for n, ctx in ((1, C1), (2, C2)):
        dp_kubectl(ctx, "apply", "-f", str(EXAMPLES / f"cluster{n}.yaml"))
    for ctx in (C1, C2):
        for deploy in ("rebel-base", "x-wing"):
            dp_kubectl(ctx, "rollout", "status", f"deployment/{deploy}", "--timeout=120s")
    yield


def answers(kubectl: Kubectl, ctx: str, target: str, n: int = CURLS) -> Counter[str]:
    """Which clusters answered ``n`` curls of ``target`` from x-wing in ``ctx`` (one exec,
    a shell loop: a new connection, so a new kube-proxy choice, each time)."""
    script = f"for i in $(seq {n}); do curl -s -m 2 {target} || echo no-answer; echo; done"
    out = kubectl(ctx, "exec", "deployment/x-wing", "--", "sh", "-c", script).stdout
    got: Counter[str] = Counter()
    for line in out.splitlines():
        if line.strip():
            match = _CLUSTER.search(line)
            got[match.group(1) if match else line.strip()] += 1
    return got


def cluster_ip(kubectl: Kubectl, ctx: str, name: str = "rebel-base") -> str:
    ip: str = kubectl.json(ctx, "get", "service", name)["spec"]["clusterIP"]
    return ip


def test_pods_are_real(dp_kubectl: Kubectl, tutorial: None) -> None:
    """Pods run on the kubelet nodes, with IPs from the member's pod CIDR; exec and logs
    reach them (API server -> egress proxy -> kubelet)."""
    for ctx, prefix in ((C1, "10.241."), (C2, "10.242.")):
        pods = dp_kubectl.json(ctx, "get", "pods", "-l", "name=rebel-base")["items"]
        assert len(pods) == 2
        for p in pods:
            assert p["spec"]["nodeName"] == f"{ctx}-node1"
            assert p["status"]["podIP"].startswith(prefix), p["status"]
    hostname = dp_kubectl(C1, "exec", "deployment/x-wing", "--", "hostname").stdout
    assert hostname.startswith("x-wing-")
    dp_kubectl(C1, "logs", "deployment/rebel-base")


def test_global_service_answered_by_both_then_shared_false(
    dp_kubectl: Kubectl, tutorial: None, ctl: Controllers
) -> None:
    """The tutorial, verbatim (``curl rebel-base``: the member's cluster DNS, then
    kube-proxy): x-wing in either cluster hears both; with shared=false in cluster1,
    cluster2 hears only itself (cluster1 still hears both)."""
    ip1, ip2 = "rebel-base", "rebel-base"
    eventually(
        lambda: set(answers(dp_kubectl, C1, ip1)) == {"Cluster-1", "Cluster-2"},
        timeout=90,
        interval=1,
        what="x-wing in cluster1 answered by both clusters",
    )
    eventually(
        lambda: set(answers(dp_kubectl, C2, ip2)) == {"Cluster-1", "Cluster-2"},
        timeout=60,
        interval=1,
        what="x-wing in cluster2 answered by both clusters",
    )
    dp_kubectl(C1, "annotate", "service", "rebel-base", "service.cilium.io/shared=false")
    eventually(
        lambda: set(answers(dp_kubectl, C2, ip2)) == {"Cluster-2"},
        timeout=60,
        interval=1,
        what="x-wing in cluster2 answered only by cluster2",
    )
    assert set(answers(dp_kubectl, C1, ip1)) == {"Cluster-1", "Cluster-2"}
    dp_kubectl(C1, "annotate", "service", "rebel-base", "service.cilium.io/shared-")


def test_clusterset_ip_reaches_both_exporting_clusters(
    dp_kubectl: Kubectl, tutorial: None, ctl: Controllers
) -> None:
    """MCS: a ServiceExport in both clusters; the ServiceImport's ClusterSetIP and the
    name ``rebel-base.default.svc.clusterset.local``, curled from a pod in either cluster,
    are answered by the pods of both; once unexported, the name answers no more."""
    export = json.dumps(
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {"name": "rebel-base", "namespace": "default"},
        }
    )
    for ctx in (C1, C2):
        dp_kubectl(ctx, "apply", "-f", "-", stdin=export)

    def clusterset_ip(ctx: str) -> str | None:
        out = dp_kubectl(
            ctx, "get", "serviceimports", "rebel-base", "-o", "json", "--ignore-not-found"
        ).stdout
        imp = json.loads(out) if out.strip() else {}
        clusters = {c["cluster"] for c in imp.get("status", {}).get("clusters") or []}
        ips = imp.get("spec", {}).get("ips") or []
        return ips[0] if ips and clusters == {C1, C2} else None

    name = "rebel-base.default.svc.clusterset.local"
    for ctx in (C1, C2):
        ip = eventually(lambda c=ctx: clusterset_ip(c), timeout=60, what=f"{ctx} ClusterSetIP")
        eventually(
            lambda c=ctx, i=ip: set(answers(dp_kubectl, c, i)) == {"Cluster-1", "Cluster-2"},
            timeout=60,
            interval=1,
            what=f"ClusterSetIP {ip} from {ctx} answered by both clusters",
        )
        eventually(
            lambda c=ctx: set(answers(dp_kubectl, c, name)) == {"Cluster-1", "Cluster-2"},
            timeout=60,
            interval=1,
            what=f"{name} from {ctx} answered by both clusters",
        )

    # unexported: the import goes, and the clusterset name stops answering (the next
    # controller mode then starts from nothing)
    for ctx in (C1, C2):
        dp_kubectl(ctx, "delete", "serviceexport", "rebel-base")
    for ctx in (C1, C2):
        eventually(
            lambda c=ctx: set(answers(dp_kubectl, c, name, n=3)) == {"no-answer"},
            timeout=60,
            interval=1,
            what=f"{name} from {ctx} no longer answering",
        )


HEADLESS = """
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {name: db}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 1
  selector: {matchLabels: {name: db}}
  template:
    metadata: {labels: {name: db}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: localhost/mcs/rebel-base:1
          imagePullPolicy: IfNotPresent
          volumeMounts: [{name: html, mountPath: /usr/share/nginx/html/}]
      volumes:
        - name: html
          configMap:
            name: rebel-base-response
            items: [{key: message, path: index.html}]
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: db}
"""


def test_headless_pod_names_reach_that_pod(
    dp_kubectl: Kubectl, tutorial: None, ctl: Controllers
) -> None:
    """A headless export of a StatefulSet in both clusters: from a pod in cluster1,
    ``db-0.<cluster>.db.default.svc.clusterset.local`` reaches that cluster's ``db-0``."""
    for ctx in (C1, C2):
        dp_kubectl(ctx, "apply", "-f", "-", stdin=HEADLESS)
    for ctx in (C1, C2):
        dp_kubectl(ctx, "rollout", "status", "statefulset/db", "--timeout=120s")
    try:
        for cluster, answer in ((C1, "Cluster-1"), (C2, "Cluster-2")):
            name = f"db-0.{cluster}.db.default.svc.clusterset.local"
            eventually(
                lambda n=name, a=answer: set(answers(dp_kubectl, C1, n, n=3)) == {a},
                timeout=60,
                interval=1,
                what=f"{name} from cluster1 answered by {answer} only",
            )
    finally:
        for ctx in (C1, C2):
            dp_kubectl(ctx, "delete", "-f", "-", "--wait=false", stdin=HEADLESS)


def _ports_service(extra_port: bool) -> str:
    """``ports-demo`` over the rebel-base pods: port 80 everywhere, and port 8081 (to the
    same pods' port 80) only where ``extra_port``; exported."""
    ports = [{"name": "http", "port": 80, "targetPort": 80}]
    if extra_port:
        ports.append({"name": "alt", "port": 8081, "targetPort": 80})
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "ports-demo", "namespace": "default"},
        "spec": {"selector": {"name": "rebel-base"}, "ports": ports},
    }
    exp = {
        "apiVersion": "multicluster.x-k8s.io/v1alpha1",
        "kind": "ServiceExport",
        "metadata": {"name": "ports-demo", "namespace": "default"},
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [svc, exp]})


def test_port_only_one_cluster_exports_reaches_only_that_cluster(
    dp_kubectl: Kubectl, tutorial: None, ctl: Controllers
) -> None:
    """The upstream StrictPortConflict behaviour, by traffic: cluster2 alone exports port
    8081; the ClusterSetIP's port 80 reaches both clusters, its port 8081 only cluster2."""
    dp_kubectl(C1, "apply", "-f", "-", stdin=_ports_service(False))
    dp_kubectl(C2, "apply", "-f", "-", stdin=_ports_service(True))
    try:

        def ip_with_both_ports() -> str | None:
            out = dp_kubectl(
                C1, "get", "serviceimports", "ports-demo", "-o", "json", "--ignore-not-found"
            ).stdout
            imp = json.loads(out) if out.strip() else {}
            ports = {p["port"] for p in imp.get("spec", {}).get("ports") or []}
            clusters = {c["cluster"] for c in imp.get("status", {}).get("clusters") or []}
            ips = imp.get("spec", {}).get("ips") or []
            return ips[0] if ips and ports == {80, 8081} and clusters == {C1, C2} else None

        ip = eventually(ip_with_both_ports, timeout=60, what="ports-demo import with 80 and 8081")
        eventually(
            lambda: set(answers(dp_kubectl, C1, f"{ip}:80")) == {"Cluster-1", "Cluster-2"},
            timeout=60,
            interval=1,
            what=f"{ip}:80 answered by both clusters",
        )
        eventually(
            lambda: set(answers(dp_kubectl, C1, f"{ip}:8081")) == {"Cluster-2"},
            timeout=60,
            interval=1,
            what=f"{ip}:8081 answered by cluster2 only",
        )
    finally:
        for ctx in (C1, C2):
            dp_kubectl(ctx, "delete", "serviceexport,service", "ports-demo", "--wait=false")


def test_withdrawn_member_stops_receiving_traffic(
    dp_kubectl: Kubectl, tutorial: None, ctl: Controllers
) -> None:
    """cluster2 removed from the controllers' members (``--contexts cluster1``): cluster1's
    x-wing stops reaching cluster2's pods through the global rebel-base; back as a
    member, they answer again."""
    eventually(
        lambda: set(answers(dp_kubectl, C1, "rebel-base")) == {"Cluster-1", "Cluster-2"},
        timeout=60,
        interval=1,
        what="both clusters answer before the withdrawal",
    )
    ctl.stop_all()
    try:
        if ctl.mode == "central":
            ctl.start("central", "--contexts", C1, "--resync-period", "5")
        else:
            ctl.start(C1, "--local", C1, "--contexts", C1, "--resync-period", "5")
        eventually(
            lambda: set(answers(dp_kubectl, C1, "rebel-base")) == {"Cluster-1"},
            timeout=60,
            interval=1,
            what="only cluster1 answers once cluster2 is withdrawn",
        )
    finally:
        ctl.stop_all()
        ctl.start_all([C1, C2], "--resync-period", "5")
    eventually(
        lambda: set(answers(dp_kubectl, C1, "rebel-base")) == {"Cluster-1", "Cluster-2"},
        timeout=60,
        interval=1,
        what="both clusters answer again",
    )
