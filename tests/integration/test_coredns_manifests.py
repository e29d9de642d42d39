"""What docs/install.md ships for DNS works as shipped: CoreDNS running as kubeadm's
ServiceAccount ``kube-system/coredns``, with kubeadm's ``system:coredns`` permissions and
the Corefile snippet of ``manifests/coredns/``, answers ``clusterset.local`` only once
``kubectl apply -k manifests/coredns/`` has granted it ServiceImports.

The CoreDNS here is the mesh's build (the plugins the snippet uses), started beside the
mesh's own CoreDNS (which reads as the mesh's admin) against member ``cluster1``.
"""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import pytest
import yaml

from mcs_mesh.binaries import Binaries
from mcs_mesh.processes import free_port, spawn, stop_pids
from mcs_mesh.state import MeshState
from tests.integration.conftest import Kubectl, eventually, holds

ROOT = Path(__file__).resolve().parents[2]
CTX = "cluster1"
IP = "10.101.250.7"

# kubeadm's ClusterRole system:coredns (cmd/kubeadm/app/phases/addons/dns/manifests.go).
KUBEADM_COREDNS_RBAC = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
"""

IMPORT = f"""
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata: {{name: dns-probe, namespace: default}}
spec:
  type: ClusterSetIP
  ips: ["{IP}"]
  ports: [{{name: http, port: 80, protocol: TCP}}]
"""


def corefile(kubeconfig: Path, dns_port: int, ready_port: int) -> str:
    """manifests/coredns/Corefile.snippet, as shipped, in a server block on loopback, with
    the one line a CoreDNS outside the cluster needs (its kubeconfig)."""
    snippet = (ROOT / "manifests/coredns/Corefile.snippet").read_text()
    block = "\n".join(line for line in snippet.splitlines() if not line.startswith("#"))
    block = re.sub(r"\{\n", f'{{\n    kubeconfig "{kubeconfig}" coredns\n', block, count=1)
    assert "multicluster clusterset.local" in block
    return (
        f".:{dns_port} {{\n    bind 127.0.0.1\n    ready 127.0.0.1:{ready_port}\n"
        f"    errors\n{block}\n}}\n"
    )


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _a_records(port: int, name: str) -> set[str]:
    try:
        reply = dns.query.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=2)
    except dns.exception.DNSException:
        return set()
    return {r.to_text() for rr in reply.answer if rr.rdtype == dns.rdatatype.A for r in rr}


@pytest.fixture
def coredns_as_kubeadm(
    mesh: MeshState, kubectl: Kubectl, binaries_ready: Binaries
) -> Iterator[tuple[int, int]]:
    """CoreDNS as kube-system/coredns with kubeadm's RBAC only: (dns port, ready port)."""
    assert binaries_ready.coredns is not None
    kubectl(CTX, "apply", "-f", "-", stdin=KUBEADM_COREDNS_RBAC)
    token = kubectl(CTX, "-n", "kube-system", "create", "token", "coredns").stdout.strip()
    admin = yaml.safe_load(mesh.kubeconfig.read_text())
    cluster = next(c for c in admin["clusters"] if c["name"] == CTX)["cluster"]
    ca = (
        cluster.get("certificate-authority-data")
        or base64.b64encode(Path(cluster["certificate-authority"]).read_bytes()).decode()
    )
    directory = Path(mesh.dir) / "coredns-as-kubeadm"
    directory.mkdir(exist_ok=True)
    kubeconfig = directory / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {"server": cluster["server"], "certificate-authority-data": ca},
                    }
                ],
                "users": [{"name": "coredns", "user": {"token": token}}],
                "contexts": [{"name": "coredns", "context": {"cluster": "c", "user": "coredns"}}],
                "current-context": "coredns",
            }
        )
    )
    dns_port, ready_port = free_port(), free_port()
    conf = directory / "Corefile"
    conf.write_text(corefile(kubeconfig, dns_port, ready_port))
    proc = spawn([str(binaries_ready.coredns), "-conf", str(conf)], directory / "log", False)
    kubectl(CTX, "apply", "-f", "-", stdin=IMPORT)
    try:
        yield dns_port, ready_port
    finally:
        stop_pids([proc.pid], Path(mesh.dir), grace=5)
        kubectl(CTX, "delete", "serviceimport", "-n", "default", "dns-probe", "--ignore-not-found")
        kubectl(CTX, "delete", "-k", str(ROOT / "manifests/coredns"), "--ignore-not-found")
        kubectl(CTX, "delete", "-f", "-", "--ignore-not-found", stdin=KUBEADM_COREDNS_RBAC)


def test_coredns_answers_clusterset_local_with_the_shipped_rbac(
    coredns_as_kubeadm: tuple[int, int], kubectl: Kubectl
) -> None:
    dns_port, ready_port = coredns_as_kubeadm
    name = "dns-probe.default.svc.clusterset.local"
    can_i = ["auth", "can-i", "list", "serviceimports.multicluster.x-k8s.io"]
    as_coredns = "--as=system:serviceaccount:kube-system:coredns"
    # kubeadm's permissions alone: CoreDNS cannot list ServiceImports, never gets ready,
    # and does not answer the clusterset name (the check docs/operations.md gives says no).
    assert kubectl(CTX, *can_i, as_coredns, check=False).stdout.strip() == "no"
    holds(lambda: not _ready(ready_port) and not _a_records(dns_port, name), duration=8)
    # The shipped manifests: ready, and the import's IP is the answer.
    kubectl(CTX, "apply", "-k", str(ROOT / "manifests/coredns"))
    assert kubectl(CTX, *can_i, as_coredns).stdout.strip() == "yes"
    eventually(lambda: _ready(ready_port), timeout=90, what="CoreDNS ready")
    assert eventually(lambda: _a_records(dns_port, name), timeout=30) == {IP}
