"""One member cluster as the controller sees it: its configuration and its indexed caches.

A `Cluster` holds one informer per kind (ServiceExports, Services, ServiceImports,
EndpointSlices, Namespaces). Every event is mapped to the keys ``(namespace, name)``
of the services it concerns (`keys_of_*`) and handed to the controller's queue, in
``Lane.URGENT`` for what users write (ServiceExports and Services, when not ours).
No path run per event or per reconcile scans a whole cache: lookups go through the
indexes, and `view` reads one key's objects for the plan (`mcs.core.plan.MemberView`).

Indexes (maintained by the informers on every event):

* every cache: by namespace (``Informer.keys(ns)``);
* ``services`` and ``slices``: ``BY_MCS_SERVICE``, ``(ns, value)`` of the label
  ``multicluster.kubernetes.io/service-name``;
* ``slices``: ``BY_KUBE_SERVICE``, ``(ns, value)`` of ``kubernetes.io/service-name``;
* ``imports``, ``services``, ``slices``: ``BY_OWNED_KEY``, the key an object of ours
  belongs to;
* ``services``: ``BY_GLOBAL_SERVICE``, the key of a global Service;
* ``exports``: ``statemetrics.BY_STATE``, what its conditions say (for ``/metrics``).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from kubernetes_asyncio.client import ApiClient

from mcs.core import cachefields, endpoints, globalsvc
from mcs.core.api import (
    ENDPOINT_SLICES,
    KUBE_SERVICE_NAME,
    NAMESPACES,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    SERVICE_NAME,
    SERVICES,
    Key,
    Obj,
    ResourceKind,
    derived_name,
    global_slice_key,
    import_slice_key,
    key_of,
    labels_of,
    managed_by_us,
    mcs_slice,
    owned,
)
from mcs.core.plan import MemberView
from mcs.runtime import statemetrics
from mcs.runtime.informer import IndexFunc, Informer, Transform, label_index
from mcs.runtime.workqueue import Lane

__all__ = ["Cluster", "MemberConfig", "keys_of_service", "keys_of_slice"]

BY_KUBE_SERVICE = KUBE_SERVICE_NAME
BY_MCS_SERVICE = SERVICE_NAME
BY_OWNED_KEY = "owned-key"
BY_GLOBAL_SERVICE = "global-service"

Enqueue = Callable[[Key, Lane], None]


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A member cluster as configured: how to reach it, its id, whether we write to it."""

    context: str
    cluster_id: str
    api: ApiClient
    local: bool


def keys_of_service(svc: Obj) -> list[Key]:
    """A Service concerns its own key, or, when it is our derived Service, its import's."""
    ns, name = key_of(svc)
    labels = labels_of(svc)
    if owned(svc) and SERVICE_NAME in labels:
        return [(ns, labels[SERVICE_NAME])]
    return [(ns, name)]


def keys_of_slice(eps: Obj) -> list[Key]:
    """An EndpointSlice concerns its Service's key, or, when ours, its import's or
    global Service's."""
    if managed_by_us(eps):
        return _owned_slice_keys(eps)
    service = labels_of(eps).get(KUBE_SERVICE_NAME)
    return [(eps["metadata"]["namespace"], service)] if isinstance(service, str) else []


def _owned_service_keys(svc: Obj) -> list[Key]:
    labels = labels_of(svc)
    return [(key_of(svc)[0], labels[SERVICE_NAME])] if owned(svc) and SERVICE_NAME in labels else []


def _owned_slice_keys(eps: Obj) -> list[Key]:
    key = import_slice_key(eps) or global_slice_key(eps)
    return [key] if key else []


def _global_service_keys(svc: Obj) -> list[Key]:
    return [key_of(svc)] if globalsvc.annotations_of(svc).is_global else []


def _owned_import_keys(imp: Obj) -> list[Key]:
    return [key_of(imp)] if owned(imp) else []


def _own_key(obj: Obj) -> list[Key]:
    return [key_of(obj)]


def _as_key(value: Hashable) -> Key:
    return cast(Key, value)  # BY_OWNED_KEY values are keys


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster of the clusterset: its configuration and one indexed cache per kind.
    Built whole by `build` and never changed (a new cluster id makes a new one)."""

    context: str
    cluster_id: str
    api: ApiClient
    local: bool
    exports: Informer
    services: Informer
    imports: Informer
    slices: Informer
    namespaces: Informer

    @classmethod
    def build(
        cls,
        c: MemberConfig,
        enqueue: Enqueue,
        keys_in: Callable[[str], Iterable[Key]],
        watch_timeout: int,
    ) -> Cluster:
        """The cluster of ``c`` with its informers, each handing the keys an event
        concerns to ``enqueue``; a Namespace event concerns ``keys_in(namespace)``."""

        def informer(
            kind: ResourceKind,
            transform: Transform,
            keys: Callable[[Obj], list[Key]],
            indexers: Mapping[str, IndexFunc] | None = None,
            lane: Lane = Lane.CHANGE,
        ) -> Informer:
            # A change can move an object between keys: the old and the new one's keys.
            # What users write goes in ``lane``; our own objects in ``Lane.CHANGE``.
            def on_event(_type: str, old: Obj | None, new: Obj | None) -> None:
                for obj in (old, new):
                    if obj is not None:
                        in_lane = Lane.CHANGE if owned(obj) else lane
                        for key in keys(obj):
                            enqueue(key, in_lane)

            return Informer(
                c.api,
                cluster=c.context,
                kind=kind,
                on_event=on_event,
                transform=transform,
                indexers=indexers,
                watch_timeout=watch_timeout,
            )

        return cls(
            context=c.context,
            cluster_id=c.cluster_id,
            api=c.api,
            local=c.local,
            exports=informer(
                SERVICE_EXPORTS,
                cachefields.export,
                _own_key,
                {statemetrics.BY_STATE: statemetrics.export_states},
                Lane.URGENT,
            ),
            services=informer(
                SERVICES,
                cachefields.service,
                keys_of_service,
                {
                    BY_OWNED_KEY: _owned_service_keys,
                    BY_MCS_SERVICE: label_index(BY_MCS_SERVICE),
                    BY_GLOBAL_SERVICE: _global_service_keys,
                },
                Lane.URGENT,
            ),
            imports=informer(
                SERVICE_IMPORTS,
                cachefields.service_import,
                _own_key,
                {BY_OWNED_KEY: _owned_import_keys},
            ),
            slices=informer(
                ENDPOINT_SLICES,
                endpoints.transform,
                keys_of_slice,
                {
                    BY_OWNED_KEY: _owned_slice_keys,
                    BY_MCS_SERVICE: label_index(BY_MCS_SERVICE),
                    BY_KUBE_SERVICE: label_index(BY_KUBE_SERVICE),
                },
            ),
            namespaces=informer(
                NAMESPACES, cachefields.namespace, lambda o: list(keys_in(o["metadata"]["name"]))
            ),
        )

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.exports, self.services, self.imports, self.slices, self.namespaces)

    def keys(self, namespace: str | None = None) -> set[Key]:
        """The keys this cluster's caches say may need work, of one namespace or all:
        its exports, the keys our objects belong to, and its global Services."""
        out: set[Key] = set(self.exports.keys(namespace))
        indexes = [(i, BY_OWNED_KEY) for i in (self.imports, self.services, self.slices)]
        for informer, index in [*indexes, (self.services, BY_GLOBAL_SERVICE)]:
            if namespace is None:
                out.update(_as_key(v) for v in informer.index_values(index))
            else:
                for k in informer.keys(namespace):
                    out.update(_as_key(v) for v in informer.values_of(index, k))
        return out

    def cache_of(self, resource: str) -> Informer | None:
        """The cache of an API resource (plural) we write, None for one we do not cache."""
        return {
            "serviceexports": self.exports,
            "services": self.services,
            "serviceimports": self.imports,
            "endpointslices": self.slices,
        }.get(resource)

    def view(self, ns: str, name: str) -> MemberView:
        """What this cluster's caches hold for key ``ns/name`` (health is the caller's):
        through the indexes, never a scan. A remote member's own slices of ours are not
        read (nothing is written there)."""
        derived = derived_name(ns, name)
        of_service = self.slices.by_index(BY_KUBE_SERVICE, (ns, name))
        of_import = self.slices.by_index(BY_MCS_SERVICE, (ns, name)) if self.local else []
        return MemberView(
            cluster=self.cluster_id,
            local=self.local,
            namespace=self.namespaces.get("", ns),
            export=self.exports.get(ns, name),
            service=self.services.get(ns, name),
            service_import=self.imports.get(ns, name),
            derived=self.services.get(ns, derived),
            slice_named=lambda slice_name: self.slices.get(ns, slice_name),
            source_slices=[s for s in of_service if not mcs_slice(s)],
            imported_slices=[s for s in of_import if managed_by_us(s)],
            global_slices=[s for s in of_service if global_slice_key(s) == (ns, name)]
            if self.local
            else [],
        )

    def connected(self) -> bool:
        return all(i.connected for i in self.informers)
