"""An independent oracle of what the controller should have written, and a reader of
what it did write, for the chaos and model-based tests.

The oracle is a plain function of the clusters' own objects (Namespaces, Services,
ServiceExports, the exporters' EndpointSlices): it does not use the controller's merge,
but states the design's rules (``/DESIGN.md``, "The merge") again, as simply as it can
(``expected_merge``). For every key exported by at least one cluster, every cluster whose
namespace exists holds one ServiceImport of ours listing exactly the exporting clusters,
with the merged type, ports, session affinity, IP families and traffic policies (and,
for a ClusterSetIP import, the IPs of its one derived Service of ours); EndpointSlices of
ours holding exactly the exporters' endpoint addresses (and readiness) by source
cluster, for the sources that serve one of the import's ports; every export carries the
right ``Valid`` and ``Conflict`` conditions; nothing else of ours exists.

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


# the Conflict condition's reasons, in the order they are joined (DESIGN.md: "in a
# fixed order"; KEP-1645 names them)
REASONS = (
    "PortConflict",
    "TypeConflict",
    "SessionAffinityConflict",
    "SessionAffinityConfigConflict",
    "AnnotationsConflict",
    "LabelsConflict",
    "InternalTrafficPolicyConflict",
    "TrafficDistributionConflict",
    "IPFamilyConflict",
)

Port = tuple[str, str, int, str | None]  # name, protocol, port, appProtocol


def _port(p: Obj) -> Port:
    return (p.get("name") or "", p.get("protocol") or "TCP", p["port"], p.get("appProtocol"))


@dataclass(frozen=True)
class Export:
    """What the merge reads of one cluster's valid export (its ServiceExport and Service)."""

    cluster: str
    created: str  # the ServiceExport's creationTimestamp (RFC 3339, sorts as text)
    ports: tuple[Port, ...]
    headless: bool
    affinity: str
    timeout: int | None
    families: tuple[str, ...]
    traffic_policy: str
    distribution: str | None
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]


def export_of(cluster: str, export: Obj, service: Obj) -> Export:
    spec = service.get("spec") or {}
    espec = export.get("spec") or {}
    return Export(
        cluster=cluster,
        created=export["metadata"]["creationTimestamp"],
        ports=tuple(_port(p) for p in spec.get("ports") or []),
        headless=spec.get("clusterIP") == "None",
        affinity=spec.get("sessionAffinity") or "None",
        timeout=((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds"
        ),
        families=tuple(spec.get("ipFamilies") or ()),
        traffic_policy=spec.get("internalTrafficPolicy") or "Cluster",
        distribution=spec.get("trafficDistribution"),
        labels=tuple(sorted((espec.get("exportedLabels") or {}).items())),
        annotations=tuple(sorted((espec.get("exportedAnnotations") or {}).items())),
    )


@dataclass
class Merged:
    """What the clusterset's import of one key should be (``expected_merge``)."""

    clusters: list[str]  # oldest first
    headless: bool
    ports: list[Port]
    affinity: str | None  # None for a Headless import (and so the timeout)
    timeout: int | None
    families: list[str]
    traffic_policy: str
    distribution: str | None
    reasons: list[str]  # the Conflict reasons, in REASONS order
    exposed: dict[str, set[tuple[str, str]]]  # cluster -> (name, protocol) of ports it serves


def expected_merge(exports: list[Export]) -> Merged:
    """The design's merge, stated plainly: the oldest export (ties: the smaller cluster
    id) decides everything; ports are the union, a port whose name or (protocol, port)
    an older one already has being left out; an export differing from the oldest in its
    set of ports, type, session affinity (timeout: compared only when the affinity is
    the same; neither when the oldest is Headless), label or annotation maps, traffic
    policy (unset is ``Cluster``) or distribution is a conflict of that kind; the IP
    families are the oldest's, narrowed by each later export sharing one of them, one
    sharing none being an IPFamilyConflict."""
    ordered = sorted(exports, key=lambda e: (e.created, e.cluster))
    first, rest = ordered[0], ordered[1:]
    ports: list[Port] = []
    for e in ordered:
        for p in e.ports:
            if all(p[0] != q[0] and (p[1], p[2]) != (q[1], q[2]) for q in ports):
                ports.append(p)
    reasons = set()
    if any(set(e.ports) != set(first.ports) for e in rest):
        reasons.add("PortConflict")
    if any(e.headless != first.headless for e in rest):
        reasons.add("TypeConflict")
    if not first.headless:
        if any(e.affinity != first.affinity for e in rest):
            reasons.add("SessionAffinityConflict")
        if any(e.affinity == first.affinity and e.timeout != first.timeout for e in rest):
            reasons.add("SessionAffinityConfigConflict")
    if any(e.annotations != first.annotations for e in rest):
        reasons.add("AnnotationsConflict")
    if any(e.labels != first.labels for e in rest):
        reasons.add("LabelsConflict")
    if any(e.traffic_policy != first.traffic_policy for e in rest):
        reasons.add("InternalTrafficPolicyConflict")
    if any(e.distribution != first.distribution for e in rest):
        reasons.add("TrafficDistributionConflict")
    families: list[str] | None = None
    for e in ordered:
        if not e.families:
            continue
        if families is None:
            families = list(e.families)
        elif set(families) & set(e.families):
            families = [f for f in families if f in e.families]
        else:
            reasons.add("IPFamilyConflict")
    exposed = {
        e.cluster: {(p[0], p[1]) for p in ports if (p[0], p[1], p[2]) in {q[:3] for q in e.ports}}
        for e in ordered
    }
    return Merged(
        clusters=[e.cluster for e in ordered],
        headless=first.headless,
        ports=ports,
        affinity=None if first.headless else first.affinity,
        timeout=None if first.headless else first.timeout,
        families=families or [],
        traffic_policy=first.traffic_policy,
        distribution=first.distribution,
        reasons=[r for r in REASONS if r in reasons],
        exposed=exposed,
    )


def _invalid_reason(st: ClusterState, key: tuple[str, str]) -> str | None:
    """Why a cluster's export of ``key`` takes no part in the merge, or None if it does."""
    svc = st.services.get(key)
    if svc is None or _ours(svc):
        return "NoService"
    if (svc.get("spec") or {}).get("type") == "ExternalName":
        return "InvalidServiceType"
    return None


def expected_exporters(state: dict[str, ClusterState]) -> dict[tuple[str, str], set[str]]:
    """Key -> the clusters that export it validly (export + non-ExternalName Service)."""
    out: dict[tuple[str, str], set[str]] = {}
    for cluster, st in state.items():
        for key in st.exports:
            if key[0] in st.namespaces | st.terminating and _invalid_reason(st, key) is None:
                out.setdefault(key, set()).add(cluster)
    return out


def _endpoints(slices: list[Obj]) -> dict[str, bool]:
    """Address -> ready (an address listed twice: ready if either copy is)."""
    out: dict[str, bool] = {}
    for s in slices:
        for e in s.get("endpoints") or []:
            ready = (e.get("conditions") or {}).get("ready") is not False
            for a in e.get("addresses") or []:
                out[a] = out.get(a, False) or ready
    return out


def _serves(slice_: Obj, merged: Merged, cluster: str) -> bool:
    """Whether a source slice's endpoints are imported: a Headless import takes them
    all; a ClusterSetIP one those of slices with a port (by name and protocol) of the
    import that the source cluster's Service serves (same name, protocol and number)."""
    if merged.headless:
        return True
    ports = {(p.get("name") or "", p.get("protocol") or "TCP") for p in slice_.get("ports") or []}
    return bool(ports & merged.exposed.get(cluster, set()))


def _import_problems(imp: Obj, merged: Merged, derived: list[Obj]) -> list[str]:
    """How a ServiceImport's spec differs from the merge (and from its derived Service)."""
    spec = imp.get("spec") or {}
    got: dict[str, Any] = {
        "type": spec.get("type"),
        "ports": [_port(p) for p in spec.get("ports") or []],
        "sessionAffinity": spec.get("sessionAffinity"),
        "timeout": ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get(
            "timeoutSeconds"
        ),
        "ipFamilies": list(spec.get("ipFamilies") or []),
        "internalTrafficPolicy": spec.get("internalTrafficPolicy") or "Cluster",
        "trafficDistribution": spec.get("trafficDistribution"),
    }
    want: dict[str, Any] = {
        "type": "Headless" if merged.headless else "ClusterSetIP",
        "ports": merged.ports,
        "sessionAffinity": merged.affinity,
        "timeout": merged.timeout,
        "ipFamilies": merged.families,
        "internalTrafficPolicy": merged.traffic_policy,
        "trafficDistribution": merged.distribution,
    }
    out = [f"{k} {got[k]!r}, expected {want[k]!r}" for k in want if got[k] != want[k]]
    if not merged.headless and len(derived) == 1:
        dspec = derived[0].get("spec") or {}
        if list(spec.get("ips") or []) != list(dspec.get("clusterIPs") or []):
            out.append(f"ips {spec.get('ips')}, the derived Service has {dspec.get('clusterIPs')}")
        numbers = sorted((p.get("protocol") or "TCP", p["port"]) for p in dspec.get("ports") or [])
        if numbers != sorted((p[1], p[2]) for p in merged.ports):
            out.append(f"the derived Service serves {numbers}")
    return out


def _condition_problems(export: Obj, merged: Merged | None, invalid: str | None) -> list[str]:
    """How an export's Valid and Conflict conditions differ from what they should be."""
    conds = {c["type"]: c for c in (export.get("status") or {}).get("conditions") or []}

    def show(ctype: str) -> tuple[str | None, str | None]:
        c = conds.get(ctype) or {}
        return c.get("status"), c.get("reason")

    want: dict[str, tuple[str | None, str | None]]
    if invalid is not None:
        want = {"Valid": ("False", invalid), "Conflict": (None, None)}
    else:
        assert merged is not None
        reasons = ",".join(merged.reasons)
        want = {
            "Valid": ("True", "Valid"),
            "Conflict": ("True", reasons) if reasons else ("False", "NoConflicts"),
        }
    return [f"{t} {show(t)}, expected {w}" for t, w in want.items() if show(t) != w]


def expected_merges(
    state: dict[str, ClusterState], withdrawn: frozenset[str] = frozenset()
) -> dict[tuple[str, str], Merged]:
    """Key -> its merge, for every key some cluster (not ``withdrawn``) exports validly."""
    exporters = {k: v - withdrawn for k, v in expected_exporters(state).items()}
    return {
        key: expected_merge(
            [export_of(c, state[c].exports[key], state[c].services[key]) for c in clusters]
        )
        for key, clusters in exporters.items()
        if clusters
    }


def check(state: dict[str, ClusterState], withdrawn: frozenset[str] = frozenset()) -> list[str]:
    """Every difference between what the controller wrote and what the oracle expects, as
    ``orphaned``/``duplicated``/``missing``/``wrong`` lines (empty: all correct).
    ``withdrawn`` clusters count as exporting nothing and are not checked."""
    problems: list[str] = []
    merges = expected_merges(state, withdrawn)
    exporters = {k: set(m.clusters) for k, m in merges.items()}
    source_endpoints: dict[tuple[str, str, str], dict[str, bool]] = {}
    for cluster, st in state.items():
        for s in st.slices:
            labels = s["metadata"].get("labels") or {}
            if _ours(s) or KUBE_NAME not in labels:
                continue
            key = (s["metadata"]["namespace"], labels[KUBE_NAME])
            if key not in merges or not _serves(s, merges[key], cluster):
                continue
            eps = source_endpoints.setdefault((*key, cluster), {})
            for a, ready in _endpoints([s]).items():
                eps[a] = eps.get(a, False) or ready
    for cluster, st in state.items():
        if cluster in withdrawn:
            continue
        # derived Services
        derived: dict[tuple[str, str], list[Obj]] = {}
        for k, s in st.services.items():
            if _ours(s):
                of = (k[0], str((s["metadata"].get("labels") or {}).get(MCS_NAME)))
                derived.setdefault(of, []).append(s)
        # ServiceImports
        for key, imp in st.imports.items():
            if not _ours(imp):
                continue
            if key not in merges:
                problems.append(f"orphaned: ServiceImport {key} in {cluster}")
                continue
            listed = [c["cluster"] for c in (imp.get("status") or {}).get("clusters") or []]
            if sorted(listed) != sorted(exporters[key]):
                problems.append(
                    f"wrong: ServiceImport {key} in {cluster} lists {sorted(listed)}, "
                    f"expected {sorted(exporters[key])}"
                )
            for wrong in _import_problems(imp, merges[key], derived.get(key, [])):
                problems.append(f"wrong: ServiceImport {key} in {cluster}: {wrong}")
        for key in merges:
            if key[0] in st.namespaces and not _ours(st.imports.get(key) or {}):
                problems.append(f"missing: ServiceImport {key} in {cluster}")
        for key, svcs in derived.items():
            if key not in merges or merges[key].headless:
                problems.append(f"orphaned: derived Service of {key} in {cluster}")
            elif len(svcs) > 1:
                problems.append(f"duplicated: {len(svcs)} derived Services of {key} in {cluster}")
        for key, merged in merges.items():
            if key[0] in st.namespaces and not merged.headless and key not in derived:
                problems.append(f"missing: derived Service of {key} in {cluster}")
        # the exports' conditions
        for key, export in st.exports.items():
            if key[0] not in st.namespaces:
                continue
            invalid = _invalid_reason(st, key)
            for wrong in _condition_problems(export, merges.get(key), invalid):
                problems.append(f"wrong: ServiceExport {key} in {cluster}: {wrong}")
        # EndpointSlices
        got: dict[tuple[str, str, str], list[Obj]] = {}
        for s in st.slices:
            if not _ours(s):
                continue
            labels = s["metadata"].get("labels") or {}
            key = (s["metadata"]["namespace"], labels.get(MCS_NAME, "?"))
            got.setdefault((*key, labels.get(SOURCE, "?")), []).append(s)
        for (ns, name, src), slices in got.items():
            if (ns, name) not in exporters or src not in exporters[(ns, name)]:
                problems.append(f"orphaned: slices of {ns}/{name} from {src} in {cluster}")
                continue
            want = source_endpoints.get((ns, name, src), {})
            copies = Counter(
                a
                for s in slices
                for e in s.get("endpoints") or []
                for a in e.get("addresses") or []
            )
            if any(n > 1 for n in copies.values()):
                problems.append(f"duplicated: endpoints of {ns}/{name} from {src} in {cluster}")
            have = _endpoints(slices)
            if have != want:
                problems.append(
                    f"wrong: endpoints of {ns}/{name} from {src} in {cluster}: "
                    f"{sorted(have.items())} != {sorted(want.items())}"
                )
        for (ns, name), srcs in exporters.items():
            if ns not in st.namespaces:
                continue
            for src in srcs:
                if source_endpoints.get((ns, name, src)) and (ns, name, src) not in got:
                    problems.append(f"missing: slices of {ns}/{name} from {src} in {cluster}")
    return problems
