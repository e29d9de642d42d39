"""What should exist for one service ``(namespace, name)``: pure functions, no I/O.

The controller hands in what every member cluster shows for the key (its
ServiceExport, Service, namespace, and the ServiceImport and derived Service that
are already there) and gets back plain API dicts: the ServiceImport, its status,
the derived Service, and the conditions of each export. The writer compares these
with what it observed and sends only the difference.

Order of writes for a ClusterSetIP import (``mcs.core.writes``): the derived Service
first, then the ServiceImport once, with the derived Service's ClusterIPs as
``spec.ips`` and ``spec.ipFamilies``, then the import's status. The derived
Service has no ownerReference (it would need the import's uid, hence a second
write); the controller deletes derived Services itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcs.core.merge import MergeResult, export_conditions, merge
from mcs.core.model import ExportRecord, InvalidExport, Port, format_time, record_from_objects
from mcs.core.namespaces import Exclusion

GROUP = "multicluster.x-k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
FIELD_MANAGER = "mcs-controller"
MANAGED_BY = "app.kubernetes.io/managed-by"
SERVICE_NAME = "multicluster.kubernetes.io/service-name"
DERIVED_SERVICE = "multicluster.kubernetes.io/derived-service"

Obj = Mapping[str, Any]


def owned(obj: Obj | None) -> bool:
    """True when ``obj`` carries our ownership label (the only objects we change or delete)."""
    labels = (obj or {}).get("metadata", {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY) == FIELD_MANAGER)


@functools.lru_cache(maxsize=1 << 16)
def derived_name(namespace: str, name: str) -> str:
    """``derived-`` + 10 chars of base32hex(sha256("ns/name")), lower case, as mcs-api's
    (cached: a reconcile asks it several times, and base32 is pure Python)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().lower()[:10]


@dataclass(frozen=True)
class ClusterView:
    """What one member cluster shows for one key."""

    cluster: str
    namespace_exists: bool
    export: Obj | None = None
    service: Obj | None = None
    service_import: Obj | None = None
    derived: Obj | None = None
    # Why the namespace takes no part in this cluster (mcs.core.namespaces), or None.
    exclusion: Exclusion | None = None

    @property
    def takes_part(self) -> bool:
        """The namespace exists here and the namespace policy lets it take part."""
        return self.namespace_exists and self.exclusion is None


@dataclass(frozen=True)
class Evaluation:
    """The clusterset's verdict on one key: the merge of the valid exports, and the invalid ones."""

    merged: MergeResult | None
    invalid: dict[str, InvalidExport] = field(default_factory=dict)

    @property
    def exported(self) -> bool:
        return self.merged is not None


def evaluate(views: Sequence[ClusterView]) -> Evaluation:
    records: list[ExportRecord] = []
    invalid: dict[str, InvalidExport] = {}
    for view in views:
        if view.export is None:
            continue
        if view.exclusion is not None:
            invalid[view.cluster] = InvalidExport(
                cluster=view.cluster, reason=view.exclusion.reason, message=view.exclusion.message
            )
            continue
        rec = record_from_objects(view.cluster, view.export, view.service)
        if isinstance(rec, InvalidExport):
            invalid[view.cluster] = rec
        else:
            records.append(rec)
    return Evaluation(merge(records) if records else None, invalid)


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
    annotations = dict(spec.annotations)
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
    merged: MergeResult, service_import: Obj, previous: Sequence[Obj], now: datetime
) -> dict[str, Any]:
    """ServiceImport ``status``: the constituent clusters (oldest first) and a Ready condition."""
    spec = service_import.get("spec", {})
    if merged.spec.type == "Headless" or spec.get("ips"):
        ready = ("True", "Ready", "ServiceImport is ready")
    else:
        ready = ("False", "Pending", "Waiting for the derived Service to get its cluster IPs")
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
    meta = _meta(namespace, derived_name(namespace, name), {SERVICE_NAME: name}, {})
    svc_spec: dict[str, Any] = {
        "type": "ClusterIP",
        "ports": [p.to_api() | {"name": derived_port_name(p, len(spec.ports))} for p in spec.ports],
    }
    if spec.ip_families:
        svc_spec["ipFamilies"] = list(spec.ip_families)
        svc_spec["ipFamilyPolicy"] = (
            "PreferDualStack" if len(spec.ip_families) > 1 else "SingleStack"
        )
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


def export_status(
    evaluation: Evaluation, view: ClusterView, now: datetime, blocked: str | None = None
) -> list[dict[str, Any]] | None:
    """The conditions of the export in ``view``'s cluster, or None when it has no export.

    ``blocked`` is the message of a clash that stops the import being written (an
    object we do not own stands in the way); it turns Ready into False/Failed.
    """
    if view.export is None:
        return None
    previous = view.export.get("status", {}).get("conditions") or []
    generation = view.export.get("metadata", {}).get("generation")
    invalid = evaluation.invalid.get(view.cluster)
    if invalid is not None:
        return export_conditions(invalid, previous, now, generation)
    assert evaluation.merged is not None
    ready = (False, "Failed", blocked) if blocked else None
    return export_conditions(evaluation.merged, previous, now, generation, ready=ready)


def derived_service_changed(desired: Obj, observed: Obj | None) -> bool:
    """Whether the derived Service must be (re)applied."""
    if observed is None:
        return True
    ospec, dspec = observed.get("spec", {}), desired["spec"]
    if (ospec.get("clusterIP") == "None") or [_port_key(p) for p in ospec.get("ports", [])] != [
        _port_key(p) for p in dspec["ports"]
    ]:
        return True
    for key in ("sessionAffinity", "sessionAffinityConfig", "ipFamilyPolicy"):
        if key in dspec and ospec.get(key) != dspec[key]:
            return True
    if (
        "ipFamilies" in dspec
        and list(ospec.get("ipFamilies", [])) != dspec["ipFamilies"]
        and ospec.get("ipFamilyPolicy") != "PreferDualStack"
    ):
        return True
    return _meta_changed(desired, observed)


def _port_key(p: Obj) -> tuple[Any, ...]:
    return (p.get("name", ""), p.get("protocol", "TCP"), p.get("port"), p.get("appProtocol"))


def _meta_changed(desired: Obj, observed: Obj) -> bool:
    dmeta, ometa = desired["metadata"], observed.get("metadata", {})
    if any(ometa.get("labels", {}).get(k) != v for k, v in dmeta.get("labels", {}).items()):
        return True
    return any(
        ometa.get("annotations", {}).get(k) != v for k, v in dmeta.get("annotations", {}).items()
    )


def import_changed(
    desired: Obj, observed: Obj | None, owned_keys: tuple[set[str], set[str]] = (set(), set())
) -> bool:
    """Whether the ServiceImport must be (re)applied.

    ``owned_keys`` are the label and annotation keys our field manager applied last
    time; one of them that is no longer desired must be removed, which takes a write.
    """
    if observed is None:
        return True
    if dict(observed.get("spec", {})) != desired["spec"]:
        return True
    if _meta_changed(desired, observed):
        return True
    labels, annotations = owned_keys
    dmeta = desired["metadata"]
    return bool(
        labels - set(dmeta.get("labels", {})) or annotations - set(dmeta.get("annotations", {}))
    )


def applied_keys(obj: Obj, manager: str = FIELD_MANAGER) -> tuple[set[str], set[str]]:
    """Label and annotation keys that ``manager`` owns on ``obj`` (from managedFields)."""
    labels: set[str] = set()
    annotations: set[str] = set()
    for entry in obj.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("subresource"):
            continue
        meta = (entry.get("fieldsV1") or {}).get("f:metadata", {})
        labels |= {k[2:] for k in meta.get("f:labels", {}) if k.startswith("f:")}
        annotations |= {k[2:] for k in meta.get("f:annotations", {}) if k.startswith("f:")}
    return labels, annotations


def conflict_event(
    export: Obj, previous: Sequence[Obj], conditions: Sequence[Obj], cluster: str, now: datetime
) -> dict[str, Any] | None:
    """A core/v1 Event for an export whose Conflict condition appeared or cleared, else None.

    Its name is derived from the export's uid and the transition, so repeating the
    same transition (a retried reconcile, a restart) creates nothing new."""
    before = {c.get("type"): c.get("status") for c in previous}.get("Conflict", "False")
    after = next((c for c in conditions if c.get("type") == "Conflict"), None)
    if after is None or after.get("status") == before:
        return None
    meta = export["metadata"]
    appeared = after["status"] == "True"
    transition = f"{meta.get('uid')}/{after['status']}/{after.get('lastTransitionTime')}"
    return event(
        export,
        API_VERSION,
        "ServiceExport",
        transition,
        ("Warning", "ConflictDetected", after.get("message", ""))
        if appeared
        else ("Normal", "ConflictResolved", "No conflicts any more."),
        cluster,
        now,
    )


def event(
    obj: Obj,
    api_version: str,
    kind: str,
    identity: str,
    what: tuple[str, str, str],
    cluster: str,
    now: datetime,
) -> dict[str, Any]:
    """A core/v1 Event on ``obj``: ``what`` is (type, reason, message). Its name is
    derived from ``identity``, so creating the same Event again creates nothing new."""
    meta = obj["metadata"]
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    stamp = format_time(now)
    type_, reason, message = what
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{digest}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": api_version,
            "kind": kind,
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "source": {"component": FIELD_MANAGER},
        "reportingComponent": FIELD_MANAGER,
        "reportingInstance": cluster,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
