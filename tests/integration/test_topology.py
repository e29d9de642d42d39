"""What kube-proxy is told about the clusterset, on real API servers, in both modes: the
derived Service carries the import's traffic policies, topology hints survive remote
slices, and a global Service that opts out of slice sync says so."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import export, get_import

C1, C2 = "cluster1", "cluster2"
NAME = "zoned"
OURS = "mcs-controller.dev"
WANT = {  # every endpoint of the import, with hints of its own zone
    "10.1.0.1": {"forZones": [{"name": "zone-a"}]},
    "10.1.0.2": {"forZones": [{"name": "zone-a"}]},
    "10.2.0.1": {"forZones": [{"name": "zone-b"}]},
    "10.2.0.2": {"forZones": [{"name": "zone-b"}]},
}


def zoned_service(ns: str, spec: dict[str, Any], annotations: dict[str, str] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": ns, "annotations": annotations or {}},
            "spec": {"ports": [{"name": "http", "port": 80}], "selector": {"app": NAME}, **spec},
        }
    )


def zoned_pods(ns: str, prefix: str, zone: str) -> str:
    """The slice a cluster's own controller publishes, with zones and zone hints."""
    return json.dumps(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{NAME}-own",
                "namespace": ns,
                "labels": {
                    "kubernetes.io/service-name": NAME,
                    "endpointslice.kubernetes.io/managed-by": "test.example",
                },
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [f"{prefix}.{i}"],
                    "conditions": {"ready": True},
                    "zone": zone,
                    "nodeName": "node-1",
                    "hints": {"forZones": [{"name": zone}]},
                }
                for i in (1, 2)
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    )


def ours(kubectl: Kubectl, ctx: str, ns: str, label: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        ctx,
        "get",
        "endpointslices",
        "-n",
        ns,
        "-l",
        f"{label},endpointslice.kubernetes.io/managed-by={OURS}",
    )["items"]
    return items


def hints(slices: list[dict[str, Any]]) -> dict[str, Any]:
    return {a: e.get("hints") for s in slices for e in s["endpoints"] for a in e["addresses"]}


def test_derived_service_and_import_slices_carry_the_policies(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    policies = {"internalTrafficPolicy": "Local", "trafficDistribution": "PreferClose"}
    for ctx, prefix, zone in ((C1, "10.1.0", "zone-a"), (C2, "10.2.0", "zone-b")):
        kubectl(ctx, "apply", "-f", "-", stdin=zoned_service(namespace, policies))
        kubectl(ctx, "apply", "-f", "-", stdin=zoned_pods(namespace, prefix, zone))
        kubectl(ctx, "apply", "-f", "-", stdin=export(namespace, NAME))

    def derived(ctx: str) -> dict[str, Any] | None:
        imp = get_import(kubectl, ctx, namespace, NAME) or {}
        name = (imp.get("metadata", {}).get("annotations") or {}).get(
            "multicluster.kubernetes.io/derived-service"
        )
        if not name or not imp.get("spec", {}).get("ips"):
            return None
        svc: dict[str, Any] = kubectl.json(ctx, "get", "service", name, "-n", namespace)
        return svc

    for ctx in (C1, C2):
        eventually(lambda ctx=ctx: derived(ctx), what=f"derived Service in {ctx}")
        spec = (derived(ctx) or {})["spec"]
        assert spec["internalTrafficPolicy"] == "Local"
        assert spec["trafficDistribution"] == "PreferClose"
        label = f"multicluster.kubernetes.io/service-name={NAME}"
        eventually(lambda ctx=ctx, label=label: hints(ours(kubectl, ctx, namespace, label)) == WANT)
        # internalTrafficPolicy: Local reaches the node's own pods: its own endpoints
        # keep their node, remote ones do not name a node of this cluster.
        nodes = {
            a: e.get("nodeName")
            for s in ours(kubectl, ctx, namespace, label)
            for e in s["endpoints"]
            for a in e["addresses"]
        }
        own = "10.1.0" if ctx == C1 else "10.2.0"
        assert {a: n for a, n in nodes.items() if n} == {f"{own}.1": "node-1", f"{own}.2": "node-1"}

    # The policy goes: the derived Service loses it.
    for ctx in (C1, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=zoned_service(namespace, {}))
    for ctx in (C1, C2):
        eventually(
            lambda ctx=ctx: (
                (d := derived(ctx)) is not None and "trafficDistribution" not in d["spec"]
            ),
            what=f"trafficDistribution removed in {ctx}",
        )


def test_global_service_keeps_zone_routing_and_warns_without_slice_sync(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    glob = {"service.cilium.io/global": "true"}
    kubectl(
        C1,
        "apply",
        "-f",
        "-",
        stdin=zoned_service(namespace, {"trafficDistribution": "PreferClose"}, glob),
    )
    kubectl(C1, "apply", "-f", "-", stdin=zoned_pods(namespace, "10.1.0", "zone-a"))
    kubectl(C2, "apply", "-f", "-", stdin=zoned_service(namespace, {}, glob))
    kubectl(C2, "apply", "-f", "-", stdin=zoned_pods(namespace, "10.2.0", "zone-b"))
    label = f"kubernetes.io/service-name={NAME}"
    # Into the topology-aware cluster1, cluster2's endpoints come with zone hints ...
    eventually(
        lambda: (
            hints(ours(kubectl, C1, namespace, label))
            == {
                "10.2.0.1": {"forZones": [{"name": "zone-b"}]},
                "10.2.0.2": {"forZones": [{"name": "zone-b"}]},
            }
        ),
        what="remote endpoints with zone hints in cluster1",
    )
    # ... and into cluster2, which asks for no topology, without.
    eventually(
        lambda: hints(ours(kubectl, C2, namespace, label)) == {"10.1.0.1": None, "10.1.0.2": None},
        what="remote endpoints without hints in cluster2",
    )
    # cluster2 opts out of slice sync: no remote backends, and an Event says why.
    sync_off = {**glob, "service.cilium.io/global-sync-endpoint-slices": "false"}
    kubectl(C2, "apply", "-f", "-", stdin=zoned_service(namespace, {}, sync_off))
    eventually(
        lambda: ours(kubectl, C2, namespace, label) == [], what="no remote slice in cluster2"
    )

    def warned() -> bool:
        items = kubectl.json(
            C2, "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={NAME}"
        )["items"]
        return any(e["reason"] == "EndpointSliceSyncDisabled" for e in items)

    eventually(warned, what="EndpointSliceSyncDisabled Event in cluster2")
