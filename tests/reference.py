"""Brute-force references for the controller's indexed look-ups: every cache scanned,
as the controller did before its indexes. The unit tests (`tests/unit/test_controller_keys.py`)
hold the indexes against them, and `bench/lookups.py` times both."""

from __future__ import annotations

from collections.abc import Iterable

from mcs.core import api, globalsvc
from mcs.core.api import Key, Obj, key_of
from mcs.runtime.cluster import Cluster
from mcs.runtime.informer import Informer


def cached(informer: Informer, namespace: str | None = None) -> list[Obj]:
    """Every object the informer holds (of one namespace), by scanning its keys."""
    return [o for k in informer.keys(namespace) if (o := informer.get(*k)) is not None]


def all_keys(members: Iterable[Cluster]) -> set[Key]:
    """Every key that may need work: exports, our objects' keys and global Services."""
    keys: set[Key] = set()
    for m in members:
        keys.update(m.exports.keys())
        services = cached(m.services)
        keys.update(key_of(o) for o in services if globalsvc.annotations_of(o).is_global)
        keys.update(key_of(o) for o in cached(m.imports) if api.owned(o))
        for o in services:
            labels = api.labels_of(o)
            if api.owned(o) and api.SERVICE_NAME in labels:
                keys.add((key_of(o)[0], labels[api.SERVICE_NAME]))
        for o in cached(m.slices):
            k = api.import_slice_key(o) or api.global_slice_key(o)
            if k:
                keys.add(k)
    return keys


def keys_in(members: Iterable[Cluster], namespace: str) -> list[Key]:
    """`all_keys` of one namespace, sorted."""
    return sorted(k for k in all_keys(members) if k[0] == namespace)


def source_slices(m: Cluster, namespace: str, service: str) -> list[Obj]:
    """The EndpointSlices of a Service that are not ours."""
    return [
        s
        for s in cached(m.slices, namespace)
        if api.labels_of(s).get(api.KUBE_SERVICE_NAME) == service and not api.managed_by_us(s)
    ]


def imported_slices(m: Cluster, namespace: str, name: str) -> list[Obj]:
    """Our EndpointSlices of an import."""
    return [s for s in cached(m.slices, namespace) if api.import_slice_key(s) == (namespace, name)]
