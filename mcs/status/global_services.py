"""Global Services as ``mcs status`` shows them: per cluster, who offers, who is used,
what affinity holds back and what the controller tells the user (`mcs.core.globalsvc`,
evaluated on the objects the status command read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from mcs.core.api import KUBE_SERVICE_NAME, SOURCE_CLUSTER, Obj, global_slice_key, mcs_slice
from mcs.core.globalsvc import Side, annotations_of, plan_cluster, ready_count

__all__ = ["StatusRow", "status_rows"]


@dataclass(frozen=True)
class StatusRow:
    """One global Service in one cluster, for ``mcs status``.

    ``backends`` maps a cluster id to the ready endpoints of that cluster the Service
    uses here (its own under this cluster's id, counted from kube's slices; remote
    ones from our slices). ``held_back`` are clusters that offer backends which
    affinity keeps out right now.
    """

    cluster: str
    namespace: str
    name: str
    is_global: bool
    shared: bool
    affinity: str
    backends: dict[str, int]
    held_back: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


def status_rows(
    services: Mapping[str, Sequence[Obj]],
    slices: Mapping[str, Sequence[Obj]],
    excluded: Mapping[str, Iterable[str]] | None = None,
) -> list[StatusRow]:
    """Rows for every Service that is global in at least one cluster, one per cluster
    that has it, sorted by (namespace, name, cluster).

    ``services`` and ``slices`` map a cluster id to all its Services and
    EndpointSlices; ``excluded`` maps a cluster id to the namespaces that do not
    take part there (`mcs.core.namespaces`). Counts are of what the slices hold now; the
    held-back clusters and notes are what the controller decides from the same data.
    """
    skip = {c: set(ns) for c, ns in (excluded or {}).items()}
    by_key: dict[tuple[str, str], dict[str, Obj]] = {}
    for cluster, svcs in services.items():
        for svc in svcs:
            meta = svc.get("metadata") or {}
            key = (str(meta.get("namespace")), str(meta.get("name")))
            by_key.setdefault(key, {})[cluster] = svc
    rows: list[StatusRow] = []
    for (ns, name), present in sorted(by_key.items()):
        if not any(annotations_of(s).is_global for s in present.values()):
            continue
        sides = {
            c: Side(
                c,
                svc,
                ns not in skip.get(c, set()),
                [
                    s
                    for s in slices.get(c, ())
                    if (s.get("metadata") or {}).get("namespace") == ns
                    and ((s.get("metadata") or {}).get("labels") or {}).get(KUBE_SERVICE_NAME)
                    == name
                    and not mcs_slice(s)
                ],
            )
            for c, svc in present.items()
        }
        for cluster in sorted(present):
            side = sides[cluster]
            ann = side.annotations
            backends = {cluster: ready_count(side.slices)}
            for s in slices.get(cluster, ()):
                if global_slice_key(s) == (ns, name):
                    source = str(s["metadata"]["labels"].get(SOURCE_CLUSTER, "?"))
                    backends[source] = backends.get(source, 0) + ready_count([s])
            planned = plan_cluster(ns, name, side, [v for c, v in sides.items() if c != cluster])
            notes = [n.message for n in planned.notes]
            if not side.namespace_ok:
                notes.append(f'namespace "{ns}" does not take part in the clusterset here')
            rows.append(
                StatusRow(
                    cluster=cluster,
                    namespace=ns,
                    name=name,
                    is_global=ann.is_global,
                    shared=ann.shared,
                    affinity=ann.affinity_value or "",
                    backends=backends,
                    held_back=planned.held_back,
                    notes=tuple(notes),
                )
            )
    return rows
