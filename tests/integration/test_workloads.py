"""Real workloads behind exports: Deployments and StatefulSets whose Pods the mesh's
kube-controller-manager, kube-scheduler and kwok nodes really run, and the
EndpointSlices kube's own endpointslice controller writes for them.

The conformance scenarios of mcs-api ``conformance/`` that need workloads
(``endpoint_slice.go``, ``headless_service_dns.go``) are here as our own tests, with
DNS asked of each member's CoreDNS directly (see README: why not ``kubectl exec``).
"""

from __future__ import annotations

import json
from typing import Any

import dns.rcode

from mcs_mesh.state import MeshState
from tests.integration.conftest import Controllers, Kubectl, eventually, holds
from tests.integration.helpers import ask, records
from tests.integration.mcs_objects import (
    MANAGED_BY,
    SOURCE,
    addresses,
    deployment,
    export,
    get_import,
    mcs_slices,
    running_pod_ips,
    service,
    statefulset,
    wait_running,
)

C0, C1 = "cluster1", "cluster2"
KUBE_SLICES = "endpointslice-controller.k8s.io"


def _kube_slices(kubectl: Kubectl, ctx: str, ns: str, svc: str = "hello") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        ctx, "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={svc}"
    )["items"]
    return [s for s in items if s["metadata"]["labels"].get(MANAGED_BY) == KUBE_SLICES]


def test_deployment_export_follows_pods_scale_and_namespace_deletion(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    ns = namespace
    kubectl(C0, "apply", "-f", "-", stdin=service(ns))
    kubectl(C0, "apply", "-f", "-", stdin=deployment(ns, replicas=2))
    kubectl(C0, "apply", "-f", "-", stdin=export(ns))
    pods = wait_running(kubectl, C0, ns, 2)
    assert {ip.count(":") > 0 for ip in pods} == {False, True}, f"dual-stack pod IPs: {pods}"
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, ns)) == pods,
            what=f"cluster1's pod IPs in {ctx}'s MCS slices",
        )
        for s in mcs_slices(kubectl, ctx, ns):
            assert s["metadata"]["labels"][SOURCE] == C0
            assert s["metadata"]["labels"][MANAGED_BY] != KUBE_SLICES
    # kube's endpointslice controller and ours share cluster1's namespace without a fight
    holds(
        lambda: (
            addresses(_kube_slices(kubectl, C0, ns)) == pods
            and addresses(mcs_slices(kubectl, C0, ns)) == pods
        ),
        duration=3,
    )
    derived = get_import(kubectl, C1, ns)["metadata"]["annotations"][  # type: ignore[index]
        "multicluster.kubernetes.io/derived-service"
    ]

    kubectl(C0, "scale", "deployment/hello", "-n", ns, "--replicas=0")
    eventually(lambda: running_pod_ips(kubectl, C0, ns) == set(), timeout=60, what="scaled to 0")
    eventually(
        lambda: addresses(mcs_slices(kubectl, C1, ns)) == set(), what="no endpoints in cluster2"
    )
    assert get_import(kubectl, C1, ns) is not None, "the export stays while nothing runs"

    kubectl(C0, "scale", "deployment/hello", "-n", ns, "--replicas=2")
    again = wait_running(kubectl, C0, ns, 2)
    eventually(
        lambda: addresses(mcs_slices(kubectl, C1, ns)) == again, what="the new pods in cluster2"
    )

    kubectl(C0, "delete", "namespace", ns, "--wait=false")
    eventually(
        lambda: not kubectl(C0, "get", "namespace", ns, "--ignore-not-found").stdout.strip(),
        timeout=60,
        what="cluster1's namespace deleted by kube-controller-manager",
    )
    eventually(lambda: get_import(kubectl, C1, ns) is None, what="import gone in cluster2")
    eventually(lambda: mcs_slices(kubectl, C1, ns) == [], what="MCS slices gone in cluster2")
    eventually(
        lambda: (
            not kubectl(
                C1, "get", "service", derived, "-n", ns, "--ignore-not-found"
            ).stdout.strip()
        ),
        what="derived Service gone in cluster2",
    )


def test_not_ready_pod_reaches_every_cluster_within_5s(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """A Pod that fails its readiness (a status patch, as the kubelet would write it)
    turns not-ready in every cluster's MCS slices within 5 s; deleting it drops it."""
    ns = namespace
    kubectl(C0, "apply", "-f", "-", stdin=service(ns))
    kubectl(C0, "apply", "-f", "-", stdin=deployment(ns, replicas=1))
    kubectl(C0, "apply", "-f", "-", stdin=export(ns))
    ips = wait_running(kubectl, C0, ns, 1)
    for ctx in contexts:
        eventually(lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, ns), ready_only=True) == ips)
    pod = kubectl.json(C0, "get", "pods", "-n", ns, "-l", "app=hello")["items"][0]["metadata"]
    kubectl(
        C0,
        "patch",
        "pod",
        pod["name"],
        "-n",
        ns,
        "--subresource=status",
        "-p",
        json.dumps({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    )
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, ns), ready_only=True) == set(),
            timeout=5,
            what=f"not-ready in {ctx}",
        )
        assert addresses(mcs_slices(kubectl, ctx, ns)) == ips
    kubectl(C0, "delete", "pod", pod["name"], "-n", ns, "--wait=false")

    def replaced() -> bool:
        pods = kubectl.json(C0, "get", "pods", "-n", ns, "-l", "app=hello")["items"]
        names = {p["metadata"]["name"] for p in pods}
        return pod["name"] not in names and len(running_pod_ips(kubectl, C0, ns)) == 2

    eventually(replaced, timeout=60, what="the ReplicaSet's replacement pod running")
    # kwok may hand the freed IPs to the replacement: what counts is that it is ready
    replacement = running_pod_ips(kubectl, C0, ns)
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: (
                addresses(mcs_slices(kubectl, ctx, ns), ready_only=True) == replacement
                and addresses(mcs_slices(kubectl, ctx, ns)) == replacement
            ),
            what=f"replacement pod in {ctx}",
        )


def test_conformance_endpointslice_per_exporting_cluster(
    controllers: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """conformance/endpoint_slice.go with a Deployment in each of two exporting clusters:
    each cluster holds one group of MCS slices per exporting cluster, with the MCS labels,
    holding exactly that cluster's pod IPs; unexporting one removes its group everywhere."""
    ns = namespace
    for ctx in (C0, C1):
        kubectl(ctx, "apply", "-f", "-", stdin=service(ns))
        kubectl(ctx, "apply", "-f", "-", stdin=deployment(ns, replicas=1))
        kubectl(ctx, "apply", "-f", "-", stdin=export(ns))
    pods = {ctx: wait_running(kubectl, ctx, ns, 1) for ctx in (C0, C1)}
    assert not pods[C0] & pods[C1], f"pod CIDRs overlap across clusters: {pods}"

    def grouped(ctx: str) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for s in mcs_slices(kubectl, ctx, ns):
            labels = s["metadata"]["labels"]
            assert labels["multicluster.kubernetes.io/service-name"] == "hello"
            assert labels[MANAGED_BY] and labels[MANAGED_BY] != KUBE_SLICES
            out.setdefault(labels[SOURCE], set()).update(addresses([s]))
        return out

    for ctx in contexts:
        eventually(lambda ctx=ctx: grouped(ctx) == pods, what=f"two groups in {ctx}")
    kubectl(C1, "delete", "serviceexport", "hello", "-n", ns)
    for ctx in contexts:
        eventually(lambda ctx=ctx: grouped(ctx) == {C0: pods[C0]}, what=f"one group in {ctx}")


def test_conformance_headless_statefulset_dns(
    controllers: Controllers,
    kubectl: Kubectl,
    contexts: list[str],
    namespace: str,
    mesh: MeshState,
) -> None:
    """conformance/headless_service_dns.go: a headless Service over a StatefulSet. Every
    cluster's MCS slices carry the pods' hostnames; <hostname>.<cluster>.<svc>... answers
    that pod's address, <svc>... all ready addresses, and SRV one record per pod."""
    ns = namespace
    kubectl(C0, "apply", "-f", "-", stdin=service(ns, headless=True))
    kubectl(C0, "apply", "-f", "-", stdin=statefulset(ns, replicas=2))
    kubectl(C0, "apply", "-f", "-", stdin=export(ns))
    wait_running(kubectl, C0, ns, 2)
    pods = kubectl.json(C0, "get", "pods", "-n", ns, "-l", "app=hello")["items"]
    v4 = {
        p["metadata"]["name"]: next(i["ip"] for i in p["status"]["podIPs"] if ":" not in i["ip"])
        for p in pods
    }
    assert sorted(v4) == ["hello-0", "hello-1"]
    fqdn = f"hello.{ns}.svc.clusterset.local"
    for ctx in contexts:

        def hostnames(ctx: str = ctx) -> dict[str, str]:
            out = {}
            for s in mcs_slices(kubectl, ctx, ns):
                if s["addressType"] != "IPv4":
                    continue
                for e in s.get("endpoints") or []:
                    assert e.get("conditions", {}).get("ready") is not False
                    out[e.get("hostname", "")] = e["addresses"][0]
            return out

        eventually(lambda h=hostnames: h() == v4, what=f"hostnames in {ctx}'s MCS slices")
        for host, ip in v4.items():
            eventually(
                lambda ctx=ctx, host=host, ip=ip: (
                    records(ask(mesh, ctx, f"{host}.{C0}.{fqdn}", "A"), "A") == {ip}
                ),
                what=f"{host}.{C0}.{fqdn} in {ctx}",
            )
        assert records(ask(mesh, ctx, fqdn, "A"), "A") == set(v4.values())
        srv = [r.split() for r in records(ask(mesh, ctx, fqdn, "SRV"), "SRV")]
        assert {int(port) for _, _, port, _ in srv} == {42}, srv
        for host in v4:
            assert any(target.startswith(f"{host}.") for *_, target in srv), (host, srv)
        assert ask(mesh, ctx, f"hello-2.{C0}.{fqdn}", "A").rcode() == dns.rcode.NXDOMAIN
