"""What an import is in one local cluster: the ServiceImport, its status and the
derived Service, as plain API dicts. Pure functions, no I/O.

Order of writes for a ClusterSetIP import (`mcs.core.plan`): the derived Service
first, then the ServiceImport once, with the derived Service's ClusterIPs as
``spec.ips`` and ``spec.ipFamilies``, then the import's status. The derived
Service has no ownerReference (it would need the import's uid, hence a second
write); the controller deletes derived Services itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from mcs.core.api import (
    API_VERSION,
    DERIVED_SERVICE,
    FIELD_MANAGER,
    MANAGED_BY,
    MERGE_RULES_ANNOTATION,
    SERVICE_NAME,
    Obj,
    derived_name,
)
from mcs.core.events import WITHDRAWN_REASON
from mcs.core.merge import MERGE_RULES, MergeResult
from mcs.core.model import Port, format_time

__all__ = [
    "derived_port_name",
    "desired_derived_service",
    "desired_import",
    "desired_import_status",
]


def _meta(
    namespace: str, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {**labels, MANAGED_BY: FIELD_MANAGER},
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def desired_import(
    namespace: str, name: str, merged: MergeResult, derived: Obj | None
) -> dict[str, Any]:
    """The ServiceImport (metadata and spec) for one local cluster.

    For a ClusterSetIP import the IPs and families are those the cluster gave the
    derived Service; until it has them the import carries the merged families and no IPs.
    """
    spec = merged.spec
    ips: list[str] = []
    body_spec = spec.to_api()
    annotations = {**spec.annotations, MERGE_RULES_ANNOTATION: MERGE_RULES}
    if spec.type == "ClusterSetIP":
        annotations[DERIVED_SERVICE] = derived_name(namespace, name)
        dspec = (derived or {}).get("spec", {})
        ips = [ip for ip in dspec.get("clusterIPs") or [] if ip and ip != "None"]
        if ips:
            body_spec = spec.to_api(ips=ips)
            body_spec["ipFamilies"] = list(dspec.get("ipFamilies") or [])[: len(ips)]
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceImport",
        "metadata": _meta(namespace, name, spec.labels, annotations),
        "spec": body_spec,
    }


def desired_import_status(
    merged: MergeResult,
    service_import: Obj,
    previous: Sequence[Obj],
    now: datetime,
    withdrawn: Sequence[tuple[str, str | None]] = (),
) -> dict[str, Any]:
    """ServiceImport ``status``: the constituent clusters (oldest first) and a Ready
    condition. ``withdrawn`` are the withdrawn members that export it (cluster id,
    withdrawn since): Ready's reason is then ``MemberWithdrawn`` and its message names them.
    """
    spec = service_import.get("spec", {})
    if merged.spec.type == "Headless" or spec.get("ips"):
        ready = ("True", "Ready", "ServiceImport is ready")
    else:
        ready = ("False", "Pending", "Waiting for the derived Service to get its cluster IPs")
    if withdrawn:
        names = ", ".join(f"{c} (since {since})" if since else c for c, since in withdrawn)
        message = f"Exports of unreachable member(s) withdrawn: {names}. {ready[2]}"
        ready = (ready[0], WITHDRAWN_REASON, message)
    old = next((c for c in previous if c.get("type") == "Ready"), {})
    since = old.get("lastTransitionTime") if old.get("status") == ready[0] else None
    cond = {
        "type": "Ready",
        "status": ready[0],
        "reason": ready[1],
        "message": ready[2],
        "lastTransitionTime": since or format_time(now),
    }
    return {"clusters": [{"cluster": c} for c in merged.clusters], "conditions": [cond]}


def desired_derived_service(
    namespace: str, name: str, merged: MergeResult
) -> dict[str, Any] | None:
    """The selector-less derived Service of a ClusterSetIP import; None for Headless.

    It has no ownerReference to the import: see the module docstring."""
    spec = merged.spec
    if spec.type != "ClusterSetIP":
        return None
    # The exported labels and annotations too (as Cilium's derived Service has them).
    labels = {**spec.labels, SERVICE_NAME: name}
    meta = _meta(namespace, derived_name(namespace, name), labels, spec.annotations)
    svc_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "ports": [p.to_api() | {"name": derived_port_name(p, len(spec.ports))} for p in spec.ports],
    }
    if spec.ip_families:
        svc_spec["ipFamilies"] = list(spec.ip_families)
        svc_spec["ipFamilyPolicy"] = (
            "PreferDualStack" if len(spec.ip_families) > 1 else "SingleStack"
        )
    # The import's policies, for kube-proxy on the clusterset IP (the oldest export's).
    if spec.internal_traffic_policy is not None:
        svc_spec["internalTrafficPolicy"] = spec.internal_traffic_policy
    if spec.traffic_distribution is not None:
        svc_spec["trafficDistribution"] = spec.traffic_distribution
    if spec.session_affinity == "ClientIP":
        svc_spec["sessionAffinity"] = "ClientIP"
        if spec.session_affinity_timeout is not None:
            svc_spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": spec.session_affinity_timeout}
            }
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": svc_spec}


def derived_port_name(port: Port, count: int) -> str:
    """The port's name on the derived Service: a Service with several ports needs every
    one named, so an unnamed port among others becomes ``<protocol>-<port>``."""
    if port.name or count == 1:
        return port.name
    return f"{port.protocol.lower()}-{port.port}"
