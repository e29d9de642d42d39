"""An independent oracle of what the controller should have written, and a reader of
what it did write, for the chaos and model-based tests.

The oracle is a plain function of the clusters' own objects (Namespaces, Services,
ServiceExports, the exporters' EndpointSlices): it does not use the controller's merge.
It covers the workloads these tests generate (ClusterIP Services with identical ports,
so no conflicts): for every key exported by at least one cluster, every cluster whose
namespace exists holds one ServiceImport of ours listing exactly the exporting
clusters, one derived Service of ours, and EndpointSlices of ours holding exactly the
exporters' endpoint addresses by source cluster; nothing else of ours exists.

A Terminating namespace (being deleted) gets no imports (the API server refuses new
objects in it; what of ours is left there goes with it, so it is not checked), but
the exports still in it count while they exist: the controller merges every export
it sees, and kube-controller-manager's namespace controller deletes them within
seconds (``mcs.runtime.controller.Member.namespace_exists`` only decides where imports go).
A *withdrawn* member (unreachable for longer than the controller's grace period)
counts as exporting nothing, and is not checked (``check``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tests.integration.conftest import Kubectl

MANAGED_BY = "app.kubernetes.io/managed-by"
OURS = "mcs-controller"
MCS_NAME = "multicluster.kubernetes.io/service-name"
SOURCE = "multicluster.kubernetes.io/source-cluster"
KUBE_NAME = "kubernetes.io/service-name"

Obj = dict[str, Any]


@dataclass
class ClusterState:
    """One cluster's objects in the namespaces under test (raw JSON). ``namespaces``:
    those that exist and are not Terminating; ``terminating``: those being deleted,
    of which only the cluster's own objects are read (exports, Services, slices)."""

    namespaces: set[str] = field(default_factory=set)
    terminating: set[str] = field(default_factory=set)
    services: dict[tuple[str, str], Obj] = field(default_factory=dict)
    exports: dict[tuple[str, str], Obj] = field(default_factory=dict)
    imports: dict[tuple[str, str], Obj] = field(default_factory=dict)
    slices: list[Obj] = field(default_factory=list)


def _ours(obj: Obj) -> bool:
    return bool((obj.get("metadata", {}).get("labels") or {}).get(MANAGED_BY) == OURS)


def _key(obj: Obj) -> tuple[str, str]:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


def read_cluster(kubectl: Kubectl, context: str, namespaces: set[str]) -> ClusterState:
    """The objects of ``namespaces`` in one cluster, read straight from its API server
    (one request per kind: with several namespaces, across all namespaces)."""
    st = ClusterState()
    listed = kubectl.json(context, "get", "namespaces")["items"]
    for n in listed:
        name = n["metadata"]["name"]
        if name in namespaces:
            terminating = n["status"].get("phase") == "Terminating"
            (st.terminating if terminating else st.namespaces).add(name)
    present = st.namespaces | st.terminating
    if not present:
        return st
    where = ["-n", next(iter(present))] if len(present) == 1 else ["--all-namespaces"]
    items = kubectl.json(
        context,
        "get",
        "services,serviceexports.multicluster.x-k8s.io,"
        "serviceimports.multicluster.x-k8s.io,endpointslices.discovery.k8s.io",
        *where,
    )["items"]
    for o in items:
        ns = o["metadata"]["namespace"]
        if ns not in present or (
            ns in st.terminating and (_ours(o) or o["kind"] == "ServiceImport")
        ):
            continue
        kind = o["kind"]
        if kind == "Service":
            st.services[_key(o)] = o
        elif kind == "ServiceExport":
            st.exports[_key(o)] = o
        elif kind == "ServiceImport":
            st.imports[_key(o)] = o
        elif kind == "EndpointSlice":
            st.slices.append(o)
    return st


def _addresses(slices: list[Obj]) -> list[str]:
    return [a for s in slices for e in s.get("endpoints") or [] for a in e.get("addresses") or []]


def expected_exporters(state: dict[str, ClusterState]) -> dict[tuple[str, str], set[str]]:
    """Key -> the clusters that export it validly (export + non-ExternalName Service)."""
    out: dict[tuple[str, str], set[str]] = {}
    for cluster, st in state.items():
        for key in st.exports:
            svc = st.services.get(key)
            if (
                key[0] in st.namespaces | st.terminating
                and svc is not None
                and not _ours(svc)
                and (svc.get("spec") or {}).get("type") != "ExternalName"
            ):
                out.setdefault(key, set()).add(cluster)
    return out


def check(state: dict[str, ClusterState], withdrawn: frozenset[str] = frozenset()) -> list[str]:
    """Every difference between what the controller wrote and what the oracle expects, as
    ``orphaned``/``duplicated``/``missing``/``wrong`` lines (empty: all correct).
    ``withdrawn`` clusters count as exporting nothing and are not checked."""
    problems: list[str] = []
    exporters = {k: v - withdrawn for k, v in expected_exporters(state).items()}
    exporters = {k: v for k, v in exporters.items() if v}
    source_addrs: dict[tuple[str, str, str], Counter[str]] = {}
    for cluster, st in state.items():
        for s in st.slices:
            labels = s["metadata"].get("labels") or {}
            if _ours(s) or KUBE_NAME not in labels:
                continue
            key = (s["metadata"]["namespace"], labels[KUBE_NAME])
            source_addrs.setdefault((*key, cluster), Counter()).update(set(_addresses([s])))
    for cluster, st in state.items():
        if cluster in withdrawn:
            continue
        # ServiceImports
        for key, imp in st.imports.items():
            if not _ours(imp):
                continue
            if key not in exporters:
                problems.append(f"orphaned: ServiceImport {key} in {cluster}")
                continue
            listed = [c["cluster"] for c in (imp.get("status") or {}).get("clusters") or []]
            if sorted(listed) != sorted(exporters[key]):
                problems.append(
                    f"wrong: ServiceImport {key} in {cluster} lists {sorted(listed)}, "
                    f"expected {sorted(exporters[key])}"
                )
        for key in exporters:
            if key[0] in st.namespaces and not _ours(st.imports.get(key) or {}):
                problems.append(f"missing: ServiceImport {key} in {cluster}")
        # derived Services
        derived = Counter(
            (k[0], (s["metadata"].get("labels") or {}).get(MCS_NAME))
            for k, s in st.services.items()
            if _ours(s)
        )
        for key, n in derived.items():
            if key not in exporters:
                problems.append(f"orphaned: derived Service of {key} in {cluster}")
            elif n > 1:
                problems.append(f"duplicated: {n} derived Services of {key} in {cluster}")
        for key in exporters:
            if key[0] in st.namespaces and key not in derived:
                problems.append(f"missing: derived Service of {key} in {cluster}")
        # EndpointSlices
        got: dict[tuple[str, str, str], Counter[str]] = {}
        for s in st.slices:
            if not _ours(s):
                continue
            labels = s["metadata"].get("labels") or {}
            key = (s["metadata"]["namespace"], labels.get(MCS_NAME, "?"))
            got.setdefault((*key, labels.get(SOURCE, "?")), Counter()).update(_addresses([s]))
        for (ns, name, src), addrs in got.items():
            if (ns, name) not in exporters or src not in exporters[(ns, name)]:
                problems.append(f"orphaned: slices of {ns}/{name} from {src} in {cluster}")
                continue
            want = source_addrs.get((ns, name, src), Counter())
            if any(n > 1 for n in addrs.values()):
                problems.append(f"duplicated: endpoints of {ns}/{name} from {src} in {cluster}")
            if set(addrs) != set(want):
                problems.append(
                    f"wrong: endpoints of {ns}/{name} from {src} in {cluster}: "
                    f"{sorted(addrs)} != {sorted(want)}"
                )
        for (ns, name), srcs in exporters.items():
            if ns not in st.namespaces:
                continue
            for src in srcs:
                if source_addrs.get((ns, name, src)) and (ns, name, src) not in got:
                    problems.append(f"missing: slices of {ns}/{name} from {src} in {cluster}")
    return problems
