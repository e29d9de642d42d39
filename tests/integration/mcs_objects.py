"""Manifests and kubectl look-ups shared by the controller tests (the conformance
fixtures of mcs-api's ``conformance/k8s_objects.go``, written as YAML)."""

from __future__ import annotations

import json
from typing import Any

from tests.integration.conftest import Kubectl

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
