"""The Kubernetes names mcs reads and writes: API groups, kinds, labels, the one ``Obj``
type, and what makes an object ours. Pure: every other module takes these from here.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

Obj = Mapping[str, Any]
"""A Kubernetes object as decoded JSON (never a kubernetes_asyncio model)."""

Key = tuple[str, str]
"""``(namespace, name)``; the namespace is ``""`` for cluster-scoped objects. The work
queue's key is the ``(namespace, name)`` of a service."""

GROUP = "multicluster.x-k8s.io"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"

# Ownership: the field manager of our applies, and the label on every object we write.
FIELD_MANAGER = "mcs-controller"
MANAGED_BY = "app.kubernetes.io/managed-by"

# The version of the merge rules (`mcs.core.merge.MERGE_RULES`) an instance computed a
# ServiceImport with, stamped on it: per-cluster instances compare theirs with it.
MERGE_RULES_ANNOTATION = "mcs-controller.dev/merge-rules"

# KEP-1645's labels and annotation.
SERVICE_NAME = "multicluster.kubernetes.io/service-name"
SOURCE_CLUSTER = "multicluster.kubernetes.io/source-cluster"
DERIVED_SERVICE = "multicluster.kubernetes.io/derived-service"

# EndpointSlices: the Service a slice belongs to, and the controller that manages it.
KUBE_SERVICE_NAME = "kubernetes.io/service-name"
ENDPOINTSLICE_MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
CONTROLLER_NAME = "mcs-controller.dev"
LEGACY_CONTROLLER_NAMES = ("mcs-controller.multicluster.x-k8s.io",)
"""The EndpointSlice managed-by values of earlier releases (up to 0.1, under the
``x-k8s.io`` domain, which is reserved for Kubernetes SIG projects). A slice with one of
them *and* our ownership label is ours: it is adopted in place, its label rewritten by
the next apply (same name, same uid, no gap). Never a source of endpoints."""
CONTROLLER_NAMES = (CONTROLLER_NAME, *LEGACY_CONTROLLER_NAMES)


@dataclass(frozen=True, slots=True)
class ResourceKind:
    """Where a kind lives in the API: ``group`` is ``""`` for the core group."""

    group: str
    version: str
    plural: str
    namespaced: bool = True
    label_selector: str | None = None

    @property
    def name(self) -> str:
        """``plural`` or ``plural.group``, as kubectl names it (for logs and metrics)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None) -> str:
        """The collection URL path, across all namespaces unless one is given."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            if not self.namespaced:
                raise ValueError(f"{self.name} is cluster-scoped")
            base += f"/namespaces/{quote(namespace, safe='')}"
        return f"{base}/{self.plural}"


SERVICE_EXPORTS = ResourceKind(GROUP, VERSION, "serviceexports")
SERVICE_IMPORTS = ResourceKind(GROUP, VERSION, "serviceimports")
SERVICES = ResourceKind("", "v1", "services")
ENDPOINT_SLICES = ResourceKind("discovery.k8s.io", "v1", "endpointslices")
NAMESPACES = ResourceKind("", "v1", "namespaces", namespaced=False)
EVENTS = ResourceKind("", "v1", "events")
KINDS = {
    k.plural: k
    for k in (SERVICE_EXPORTS, SERVICE_IMPORTS, SERVICES, ENDPOINT_SLICES, NAMESPACES, EVENTS)
}
"""Every kind mcs reads or writes, by plural."""


def key_of(obj: Obj) -> Key:
    """``(namespace, name)`` of an object."""
    meta = obj.get("metadata") or {}
    return (meta.get("namespace") or "", meta["name"])


def labels_of(obj: Obj | None) -> Mapping[str, Any]:
    """An object's labels; empty for a missing or malformed ``metadata.labels``."""
    meta = (obj or {}).get("metadata")
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    return labels if isinstance(labels, Mapping) else {}


def owned(obj: Obj | None) -> bool:
    """True when ``obj`` carries our ownership label (the only objects we change or delete)."""
    return bool(labels_of(obj).get(MANAGED_BY) == FIELD_MANAGER)


def managed_by_us(obj: Obj) -> bool:
    """True for an EndpointSlice this controller manages (by its EndpointSlice managed-by:
    ours, or a `LEGACY_CONTROLLER_NAMES` one on a slice that also carries our ownership
    label, which is adopted)."""
    manager = labels_of(obj).get(ENDPOINTSLICE_MANAGED_BY)
    return manager == CONTROLLER_NAME or (manager in LEGACY_CONTROLLER_NAMES and owned(obj))


def mcs_slice(obj: Obj) -> bool:
    """True for an EndpointSlice with any managed-by value mcs ever used
    (`CONTROLLER_NAMES`), ours or another instance's: never a source of endpoints."""
    return labels_of(obj).get(ENDPOINTSLICE_MANAGED_BY) in CONTROLLER_NAMES


def import_slice_key(obj: Obj) -> Key | None:
    """``(namespace, import name)`` of one of our import slices (by its MCS
    service-name label); None for any other slice."""
    value = labels_of(obj).get(SERVICE_NAME)
    namespace = (obj.get("metadata") or {}).get("namespace")
    if not (managed_by_us(obj) and isinstance(value, str) and value):
        return None
    return (namespace, value) if isinstance(namespace, str) else None


def global_slice_key(obj: Obj) -> Key | None:
    """``(namespace, Service name)`` of one of our global-service slices (ours, attached
    to a Service, without the MCS service-name label), else None."""
    labels = labels_of(obj)
    service = labels.get(KUBE_SERVICE_NAME)
    if not managed_by_us(obj) or SERVICE_NAME in labels or not isinstance(service, str):
        return None
    return (str((obj.get("metadata") or {}).get("namespace")), service)


@functools.lru_cache(maxsize=1 << 16)
def derived_name(namespace: str, name: str) -> str:
    """``derived-`` + 10 chars of base32hex(sha256("ns/name")), lower case, as mcs-api's
    (cached: a reconcile asks it several times, and base32 is pure Python)."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().lower()[:10]
