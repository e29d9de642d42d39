"""EndpointSlices across clusters and ``clusterset.local`` answered by a real CoreDNS
(one per member, reading that member's API server), in both deployment modes.

Where the point is how Kubernetes behaves, the endpoints are real Pods of a Deployment
(here and in test_workloads.py). Hand-written slices remain only in the DNS tests, which
need exact addresses and a not-ready endpoint that keeps its hostname in several
clusters at once (test_workloads.py covers a real headless StatefulSet).
"""

from __future__ import annotations

import time

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from mcs_mesh.state import MeshState
from tests.integration.conftest import Controllers, Kubectl, eventually, holds
from tests.integration.helpers import ask, records
from tests.integration.mcs_objects import (
    MANAGED_BY,
    MCS_NAME,
    SOURCE,
    addresses,
    by_source,
    deployment,
    export,
    get_import,
    mcs_slices,
    service,
    source_slice,
    wait_running,
)

C0, C1 = "cluster1", "cluster2"


def test_16_slices_in_every_cluster_and_removed(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    kubectl(C0, "apply", "-f", "-", stdin=service(namespace))
    kubectl(C0, "apply", "-f", "-", stdin=deployment(namespace, replicas=2))
    kubectl(C0, "apply", "-f", "-", stdin=export(namespace))
    pods = wait_running(kubectl, C0, namespace, 2)
    for ctx in contexts:
        slices = eventually(
            lambda ctx=ctx: mcs_slices(kubectl, ctx, namespace), what=f"slices in {ctx}"
        )
        imp = get_import(kubectl, ctx, namespace)
        assert imp is not None
        for s in slices:
            labels = s["metadata"]["labels"]
            assert labels[MCS_NAME] == "hello" and labels[SOURCE] == C0
            assert labels[MANAGED_BY] not in ("", "endpointslice-controller.k8s.io")
            assert (
                labels["kubernetes.io/service-name"]
                == imp["metadata"]["annotations"]["multicluster.kubernetes.io/derived-service"]
            )
            assert s["addressType"] in ("IPv4", "IPv6") and s["endpoints"]
        eventually(lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, namespace)) == pods)
    kubectl(C0, "delete", "serviceexport", "hello", "-n", namespace)
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: mcs_slices(kubectl, ctx, namespace) == [], what=f"slices gone in {ctx}"
        )


@pytest.mark.parametrize("case", ["20-same-name", "21-other-name"])
def test_strict_port_conflict_slices(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str, case: str
) -> None:
    c0_ports = [{"name": "tcp", "port": 42, "protocol": "TCP"}]
    other = "tcp" if case == "20-same-name" else "tcp2"
    # cluster2 serves 4242 on its pods' port 42: kube's slices there say 42, named `other`
    c1_ports = [{"name": other, "port": 4242, "targetPort": 42, "protocol": "TCP"}]
    kubectl(C0, "apply", "-f", "-", stdin=service(namespace, ports=c0_ports))
    kubectl(C0, "apply", "-f", "-", stdin=deployment(namespace, replicas=1))
    kubectl(C0, "apply", "-f", "-", stdin=export(namespace))
    eventually(lambda: get_import(kubectl, C0, namespace))
    time.sleep(1.1)
    kubectl(C1, "apply", "-f", "-", stdin=service(namespace, ports=c1_ports))
    kubectl(C1, "apply", "-f", "-", stdin=deployment(namespace, replicas=1))
    kubectl(C1, "apply", "-f", "-", stdin=export(namespace))
    wait_running(kubectl, C0, namespace, 1)
    wait_running(kubectl, C1, namespace, 1)

    def port_names() -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for src, slices in by_source(mcs_slices(kubectl, ctx, namespace)).items():
            out[src] = {p.get("name", "") for s in slices for p in s.get("ports") or []}
        return out

    for ctx in contexts:
        if case == "20-same-name":
            # port 42 ("tcp") reaches only cluster1; cluster2's "tcp" lost: no slice at all
            eventually(lambda: port_names() == {C0: {"tcp"}}, what=f"case 20 slices in {ctx}")
            holds(lambda: port_names() == {C0: {"tcp"}}, duration=2)
        else:
            eventually(
                lambda: port_names() == {C0: {"tcp"}, C1: {"tcp2"}}, what=f"case 21 slices in {ctx}"
            )


# ------------------------------------------------------------------------------------ DNS


def test_dns_clusterset_ip(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str, mesh: MeshState
) -> None:
    kubectl(C0, "apply", "-f", "-", stdin=service(namespace))
    kubectl(C0, "apply", "-f", "-", stdin=export(namespace))
    fqdn = f"hello.{namespace}.svc.clusterset.local"
    for ctx in contexts:
        imp = eventually(
            lambda ctx=ctx: (
                (i := get_import(kubectl, ctx, namespace)) and i["spec"].get("ips") and i
            )
        )
        ips = imp["spec"]["ips"]
        v4 = {ip for ip in ips if ":" not in ip}
        v6 = {ip for ip in ips if ":" in ip}
        eventually(
            lambda ctx=ctx, v4=v4: records(ask(mesh, ctx, fqdn, "A"), "A") == v4,
            what=f"A in {ctx}",
        )
        assert {r for r in records(ask(mesh, ctx, fqdn, "AAAA"), "AAAA")} == v6
        for port in ("tcp", "udp"):
            srv = records(ask(mesh, ctx, f"_{port}._{port}.{fqdn}", "SRV"), "SRV")
            # priority and weight are CoreDNS's choice; port and target are the contract
            assert {tuple(r.split()[2:]) for r in srv} == {("42", f"{fqdn}.")}, srv
        assert ask(mesh, ctx, f"{C0}.{fqdn}", "A").rcode() == dns.rcode.NXDOMAIN
        assert records(ask(mesh, ctx, "dns-version.clusterset.local", "TXT"), "TXT") == {'"1.0.0"'}
    assert (
        ask(mesh, C1, f"nothere.{namespace}.svc.clusterset.local", "A").rcode()
        == dns.rcode.NXDOMAIN
    )


def test_dns_headless(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str, mesh: MeshState
) -> None:
    kubectl(C0, "apply", "-f", "-", stdin=service(namespace, headless=True))
    kubectl(
        C0,
        "apply",
        "-f",
        "-",
        stdin=source_slice(
            namespace, "hello", ["10.1.0.1", "10.1.0.2"], hostnames=["web-0", "web-1"]
        ),
    )
    kubectl(
        C0,
        "apply",
        "-f",
        "-",
        stdin=source_slice(
            namespace, "hello", ["10.1.0.3"], hostnames=["web-2"], ready=False, suffix="b"
        ),
    )
    kubectl(C0, "apply", "-f", "-", stdin=export(namespace))
    eventually(lambda: get_import(kubectl, C0, namespace))
    time.sleep(1.1)
    kubectl(C1, "apply", "-f", "-", stdin=service(namespace, headless=True))
    kubectl(
        C1,
        "apply",
        "-f",
        "-",
        stdin=source_slice(namespace, "hello", ["10.2.0.1"], hostnames=["web-0"]),
    )
    kubectl(C1, "apply", "-f", "-", stdin=export(namespace))
    fqdn = f"hello.{namespace}.svc.clusterset.local"
    want = {"10.1.0.1", "10.1.0.2", "10.2.0.1"}
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: records(ask(mesh, ctx, fqdn, "A"), "A") == want,
            what=f"headless A in {ctx}",
        )
        assert records(ask(mesh, ctx, f"web-1.{C0}.{fqdn}", "A"), "A") == {"10.1.0.2"}
        assert records(ask(mesh, ctx, f"web-0.{C1}.{fqdn}", "A"), "A") == {"10.2.0.1"}
        assert ask(mesh, ctx, f"web-2.{C0}.{fqdn}", "A").rcode() == dns.rcode.NXDOMAIN  # not ready
    unexported = f"other.{namespace}.svc.clusterset.local"
    kubectl(C0, "apply", "-f", "-", stdin=service(namespace, "other"))
    holds(lambda: ask(mesh, C0, unexported, "A").rcode() == dns.rcode.NXDOMAIN, duration=2)
