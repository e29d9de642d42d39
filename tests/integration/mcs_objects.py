"""Manifests and kubectl look-ups shared by the controller tests (the conformance
fixtures of mcs-api's ``conformance/k8s_objects.go``, written as YAML)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Kubectl, eventually

MCS_NAME = "multicluster.kubernetes.io/service-name"
SOURCE = "multicluster.kubernetes.io/source-cluster"
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"

HELLO_PORTS: list[dict[str, Any]] = [
    {"name": "tcp", "port": 42, "protocol": "TCP"},
    {"name": "udp", "port": 42, "protocol": "UDP"},
]


def service(
    ns: str,
    name: str = "hello",
    *,
    ports: list[dict[str, Any]] | None = None,
    headless: bool = False,
    external: bool = False,
    spec: dict[str, Any] | None = None,
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"dummy-svc": "true"},
            "annotations": {"dummy-svc": "true"},
        },
        "spec": {
            "selector": {"app": name},
            "ports": ports if ports is not None else HELLO_PORTS,
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
            "ipFamilyPolicy": "PreferDualStack",
        },
    }
    if headless:
        body["spec"]["clusterIP"] = "None"
    if external:
        body["spec"] = {"type": "ExternalName", "externalName": "example.com"}
    body["spec"].update(spec or {})
    return json.dumps(body)


def export(ns: str, name: str = "hello", spec: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "apiVersion": "multicluster.x-k8s.io/v1alpha1",
            "kind": "ServiceExport",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": {"dummy-svcexport": "true"},
                "annotations": {"dummy-svcexport": "true"},
            },
            "spec": spec or {},
        }
    )


def get_import(kubectl: Kubectl, ctx: str, ns: str, name: str = "hello") -> dict[str, Any] | None:
    out = kubectl(ctx, "get", "serviceimports", name, "-n", ns, "-o", "json", "--ignore-not-found")
    return json.loads(out.stdout) if out.stdout.strip() else None


def get_export(kubectl: Kubectl, ctx: str, ns: str, name: str = "hello") -> dict[str, Any]:
    result: dict[str, Any] = kubectl.json(ctx, "get", "serviceexports", name, "-n", ns)
    return result


def condition(obj: dict[str, Any] | None, ctype: str) -> dict[str, Any] | None:
    for c in (obj or {}).get("status", {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def condition_status(
    kubectl: Kubectl, ctx: str, ns: str, ctype: str, name: str = "hello"
) -> str | None:
    cond = condition(get_export(kubectl, ctx, ns, name), ctype)
    return cond["status"] if cond else None


def deployment(ns: str, name: str = "hello", replicas: int = 2) -> str:
    """conformance's helloDeployment: pods labelled ``app: <name>`` (kwok runs them)."""
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "hello-tcp", "image": "alpine/socat"}]},
                },
            },
        }
    )


def statefulset(ns: str, name: str = "hello", replicas: int = 2) -> str:
    """conformance's newStatefulSet: pods ``<name>-0..`` with hostnames under Service ``name``."""
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "serviceName": name,
                "replicas": replicas,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "hello-tcp", "image": "alpine/socat"}]},
                },
            },
        }
    )


def running_pod_ips(kubectl: Kubectl, ctx: str, ns: str, app: str = "hello") -> set[str]:
    """Every IP (both families) of the Running, Ready, not deleting pods labelled ``app``."""
    pods = kubectl.json(ctx, "get", "pods", "-n", ns, "-l", f"app={app}")["items"]
    out: set[str] = set()
    for pod in pods:
        status = pod.get("status", {})
        ready = any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
        deleting = "deletionTimestamp" in pod["metadata"]
        if status.get("phase") == "Running" and ready and not deleting:
            out |= {p["ip"] for p in status.get("podIPs") or []}
    return out


def wait_running(kubectl: Kubectl, ctx: str, ns: str, pods: int, app: str = "hello") -> set[str]:
    """The IPs of ``app``'s pods in ``ctx`` once exactly ``pods`` run (two IPs each)."""

    def check() -> set[str]:
        ips = running_pod_ips(kubectl, ctx, ns, app)
        return ips if len(ips) == 2 * pods else set()

    return set(eventually(check, timeout=60, what=f"{pods} running {app} pods in {ctx}"))


def source_slice(
    ns: str,
    name: str,
    addresses: list[str],
    *,
    ports: list[dict[str, Any]] | None = None,
    ready: bool = True,
    hostnames: list[str] | None = None,
    family: str = "IPv4",
    suffix: str = "a",
) -> str:
    return json.dumps(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-{suffix}",
                "namespace": ns,
                "labels": {"kubernetes.io/service-name": name, MANAGED_BY: "test.example"},
            },
            "addressType": family,
            "endpoints": [
                {
                    "addresses": [a],
                    "conditions": {"ready": ready},
                    **({"hostname": hostnames[i]} if hostnames else {}),
                }
                for i, a in enumerate(addresses)
            ],
            "ports": ports
            if ports is not None
            else [
                {"name": "tcp", "port": 42, "protocol": "TCP"},
                {"name": "udp", "port": 42, "protocol": "UDP"},
            ],
        }
    )


def mcs_slices(kubectl: Kubectl, ctx: str, ns: str, name: str = "hello") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        ctx, "get", "endpointslices", "-n", ns, "-l", f"{MCS_NAME}={name}"
    )["items"]
    return items


def by_source(slices: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for s in slices:
        out.setdefault(s["metadata"]["labels"][SOURCE], []).append(s)
    return out


def addresses(slices: list[dict[str, Any]], ready_only: bool = False) -> set[str]:
    return {
        a
        for s in slices
        for e in s.get("endpoints") or []
        if not ready_only or e.get("conditions", {}).get("ready")
        for a in e["addresses"]
    }
