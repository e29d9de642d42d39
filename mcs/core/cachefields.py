"""What the informers keep of each object: only the fields the controller reads.

Every Service, ServiceExport and Namespace of every member is cached, and their
tenants choose how big they are (a Service's annotations alone may hold 256 KiB, its
selector and labels more). These transforms bound what one object costs the
controller to the fields it reads, whatever the tenant writes. EndpointSlices have
their own (`mcs.core.endpoints.transform`). ServiceImports are ours: they keep their
labels, annotations, spec and status, and of ``managedFields`` only the label and
annotation keys our apply owns (`mcs.core.writes.applied_keys`; the whole entries were half
of a cached import).

Dropping ``resourceVersion`` (and status the controller does not read) also means
an update that changes nothing kept here is no event.

**Reading a new field?** Add it here, or the cache will not have it: annotations
and labels are kept only by the prefixes and keys listed below.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mcs.core.api import (
    FIELD_MANAGER,
    KUBE_SERVICE_NAME,
    MANAGED_BY,
    SERVICE_NAME,
    SOURCE_CLUSTER,
    Obj,
    owned,
)
from mcs.core.writes import applied_keys

__all__ = ["KEPT_ANNOTATION_PREFIXES", "export", "namespace", "service", "service_import"]

# Annotations read by the controller (global services, namespace filter, our own).
KEPT_ANNOTATION_PREFIXES = (
    "service.cilium.io/",
    "io.cilium/",
    "clustermesh.cilium.io/",
    "multicluster.kubernetes.io/",
    "service.kubernetes.io/topology",
)
_SERVICE_LABELS = (MANAGED_BY, SERVICE_NAME, SOURCE_CLUSTER, KUBE_SERVICE_NAME)
_SERVICE_SPEC = (
    "type",
    "clusterIP",
    "clusterIPs",
    "ports",
    "sessionAffinity",
    "sessionAffinityConfig",
    "ipFamilies",
    "ipFamilyPolicy",
    "internalTrafficPolicy",
    "trafficDistribution",
    "publishNotReadyAddresses",
)
_META = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation")
_SERVICE_PORT = ("name", "protocol", "port", "targetPort", "appProtocol")


def service(obj: Obj) -> dict[str, Any]:
    """A Service: identity, our labels, the annotations of `KEPT_ANNOTATION_PREFIXES`
    (every label and annotation of a Service of ours, `_ours`), ownerReferences (uids of
    our derived Services' owners) and the spec fields the merge and the derived Service
    use (no selector, no status)."""
    meta = _mapping(obj.get("metadata"))
    spec = _mapping(obj.get("spec"))
    # Our derived Services carry exported labels and annotations: kept whole, as imports.
    out_meta = _ours(meta, obj) if owned(obj) else _meta(meta, labels=_SERVICE_LABELS)
    refs = meta.get("ownerReferences")
    if isinstance(refs, list) and refs:
        out_meta["ownerReferences"] = [
            {k: r[k] for k in ("apiVersion", "kind", "name", "uid") if k in r}
            for r in refs
            if isinstance(r, Mapping)
        ]
    out_spec = {k: spec[k] for k in _SERVICE_SPEC if k in spec}
    if isinstance(out_spec.get("ports"), list):
        out_spec["ports"] = [
            {k: p[k] for k in _SERVICE_PORT if k in p}
            for p in out_spec["ports"]
            if isinstance(p, Mapping)
        ]
    return {"metadata": out_meta, "spec": out_spec, "status": {}}


def export(obj: Obj) -> dict[str, Any]:
    """A ServiceExport: identity, spec (exported metadata included) and status."""
    return {
        "metadata": _meta(_mapping(obj.get("metadata")), labels=()),
        "spec": dict(_mapping(obj.get("spec"))),
        "status": dict(_mapping(obj.get("status"))),
    }


def service_import(obj: Obj) -> dict[str, Any]:
    """A ServiceImport: identity, every label and annotation, spec and status, and one
    ``managedFields`` entry naming the label and annotation keys of our last apply."""
    return {
        "metadata": _ours(_mapping(obj.get("metadata")), obj),
        "spec": dict(_mapping(obj.get("spec"))),
        "status": dict(_mapping(obj.get("status"))),
    }


def _ours(meta: Obj, obj: Obj) -> dict[str, Any]:
    """The metadata of an object we write: identity, every label and annotation, and one
    ``managedFields`` entry naming the label and annotation keys of our last apply (a key
    we applied and no longer want takes an apply to remove)."""
    out_meta: dict[str, Any] = {k: meta[k] for k in _META if k in meta}
    for field in ("labels", "annotations"):
        if value := _mapping(meta.get(field)):
            out_meta[field] = dict(value)
    applied: dict[str, dict[str, Any]] = {
        f"f:{field}": {f"f:{k}": {} for k in sorted(keys)}
        for field, keys in zip(("labels", "annotations"), applied_keys(obj), strict=True)
        if keys
    }
    if applied:
        fields = {"f:metadata": applied}
        out_meta["managedFields"] = [
            {"manager": FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields}
        ]
    return out_meta


def namespace(obj: Obj) -> dict[str, Any]:
    """A Namespace: name, uid, every label (namespace filters may use any), the
    annotations of `KEPT_ANNOTATION_PREFIXES`, and ``status.phase``."""
    meta = _mapping(obj.get("metadata"))
    out_meta = _meta(meta, labels=None)
    phase = _mapping(obj.get("status")).get("phase")
    return {"metadata": out_meta, "spec": {}, "status": {"phase": phase} if phase else {}}


def _meta(meta: Obj, labels: Iterable[str] | None) -> dict[str, Any]:
    """Identity fields, labels (all when ``labels`` is None, else those keys) and the
    kept annotations."""
    out: dict[str, Any] = {k: meta[k] for k in _META if k in meta}
    have = _mapping(meta.get("labels"))
    kept = dict(have) if labels is None else {k: have[k] for k in labels if k in have}
    if kept:
        out["labels"] = kept
    annotations = {
        k: v
        for k, v in _mapping(meta.get("annotations")).items()
        if isinstance(k, str) and k.startswith(KEPT_ANNOTATION_PREFIXES)
    }
    if annotations:
        out["annotations"] = annotations
    return out


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
