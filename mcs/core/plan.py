"""The one plan of a key: every member's view of one service in, every write out. Pure.

The shell reads, for one key ``(namespace, name)``, what each member cluster's caches
hold (`MemberView`: its ServiceExport, Service, Namespace, the ServiceImport and
derived Service already there, its own EndpointSlices and ours, and what member
health says of it) and calls `plan_key` once. The plan holds, for every local member
that can be written now, the ordered writes of everything mcs keeps there for the
key, and every Event; the shell carries it out and nothing else:

1. **Views.** A withdrawn member looks as if it had nothing (`mcs.core.health`'s
   verdict, made by the shell); a namespace that does not take part is excluded
   (`mcs.core.namespaces`).
2. **The merge** (`evaluate`): each valid export becomes a record, and the records
   are merged (`mcs.core.merge`); invalid ones get their reason.
3. **Trust**, once per member: its source EndpointSlices keep only the endpoints it
   may hand the others (`mcs.core.trust`); what is dropped is returned for the logs
   and metrics, and reported by an Event on the export of a local member.
4. **Per local member** (`ClusterPlan`): the derived Service first (`derived`), then,
   given the derived Service the server returned (`then`), the ServiceImport with its
   IPs, its status, the import's EndpointSlices (`mcs.core.endpoints`), the export's
   conditions, the global Service's EndpointSlices of remote backends
   (`mcs.core.globalsvc`), and the Events (`mcs.core.events`). Each write is only what
   differs from the caches (`mcs.core.writes`): a steady state plans no write.

**Version skew** (per-cluster mode: every instance must compute the same merge). Each
ServiceImport we write carries the version of our merge rules
(`MERGE_RULES_ANNOTATION`). While a *remote* member's ServiceImport of ours for the key
says another version (none: a release before 0.2.0), the key's results are held back in
every local member: no derived Service, import, slice or Conflict change; only our own
import is stamped with our version (so the peers see it and nobody waits on the other),
the export gets ``Ready=False/MergeRulesMismatch`` and a Warning Event, and
`KeyPlan.skew` names the peers for the log and the metric. Once every instance runs the
same rules, the stamps agree and the key is written as usual. Central mode has no remote
writer to disagree with.

No write result is read back except one: the ClusterIPs the API server gives the
derived Service, which become the ServiceImport's ``spec.ips``. So the fewest writes
for a new ClusterSetIP export are, in each cluster, one apply of the derived Service,
one of the ServiceImport and one status patch of it, one apply per EndpointSlice,
and the export's status patch in its own cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mcs.core import endpoints, events, globalsvc, imports, trust, writes
from mcs.core.api import (
    API_VERSION,
    FIELD_MANAGER,
    MANAGED_BY,
    MERGE_RULES_ANNOTATION,
    Obj,
    derived_name,
    labels_of,
    owned,
)
from mcs.core.merge import MERGE_RULES, MergeResult, export_conditions, merge
from mcs.core.model import ExportRecord, InvalidExport, record_from_objects
from mcs.core.namespaces import Exclusion, NamespacePolicy
from mcs.core.writes import Write

__all__ = [
    "ClusterPlan",
    "ClusterView",
    "Evaluation",
    "KeyPlan",
    "MemberView",
    "Policy",
    "evaluate",
    "export_status",
    "merge_rules_skew",
    "plan_key",
]


# ------------------------------------------------------------------ the merge's views


@dataclass(frozen=True)
class ClusterView:
    """What one member cluster shows for one key, as the merge sees it."""

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


def evaluate(
    views: Sequence[ClusterView], allowed_metadata: Sequence[str] | None = None
) -> Evaluation:
    """The merge of every valid export among ``views``, and why the others are invalid
    (``allowed_metadata``: `Policy.exported_metadata`)."""
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
        rec = record_from_objects(view.cluster, view.export, view.service, allowed_metadata)
        if isinstance(rec, InvalidExport):
            invalid[view.cluster] = rec
        else:
            records.append(rec)
    return Evaluation(merge(records) if records else None, invalid)


def export_status(
    evaluation: Evaluation,
    view: ClusterView,
    now: datetime,
    blocked: str | None = None,
    ready: tuple[bool, str, str] | None = None,
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
    ready = (False, "Failed", blocked) if blocked else ready
    return export_conditions(evaluation.merged, previous, now, generation, ready=ready)


# ------------------------------------------------------------------------ the plan


def _no_slice(_name: str) -> Obj | None:
    return None


@dataclass(frozen=True, slots=True)
class MemberView:
    """What one member's caches hold for one key, and what member health says of it."""

    cluster: str
    local: bool = False
    namespace: Obj | None = None
    """The Namespace object; None when there is none."""
    export: Obj | None = None
    service: Obj | None = None
    service_import: Obj | None = None
    derived: Obj | None = None
    source_slices: Sequence[Obj] = ()
    """The Service's own EndpointSlices (every manager's but ours)."""
    imported_slices: Sequence[Obj] = ()
    """Our EndpointSlices of the import (read for local members)."""
    global_slices: Sequence[Obj] = ()
    """Our EndpointSlices of remote backends attached to the Service (local members)."""
    slice_named: Callable[[str], Obj | None] = _no_slice
    """Any EndpointSlice of the namespace by name (to leave one that is not ours alone)."""
    withdrawn: bool = False
    withdrawn_since: str | None = None
    reachable: bool = True
    """False while a local member is unreachable: it is not written (the key is retried)."""


@dataclass(frozen=True, slots=True)
class Policy:
    """The controller's policies: which namespaces take part, which endpoints count."""

    namespaces: NamespacePolicy = field(default_factory=NamespacePolicy)
    endpoints: trust.EndpointPolicy = field(default_factory=trust.EndpointPolicy)
    #: patterns every exported label and annotation key must match (None: any key)
    exported_metadata: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    """The writes of one local cluster for one key: ``derived`` first, then
    ``then(derived Service as written)`` (``derived_observed`` when nothing was written).
    ``in_the_way`` says why the import could not be planned here (a Service that is not
    ours holds the derived Service's name): the rest is written, then the key fails."""

    cluster: str
    derived: tuple[Write, ...]
    then: Callable[[Obj | None], tuple[Write, ...]] = field(repr=False)
    derived_observed: Obj | None = None
    warnings: tuple[str, ...] = ()
    in_the_way: str | None = None


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Everything one reconcile of a key does: the writes of each local member that
    can be written now, and what the shell reports (logs, metrics)."""

    clusters: tuple[ClusterPlan, ...]
    dropped: Mapping[str, tuple[trust.DroppedEndpoint, ...]] = field(default_factory=dict)
    """Endpoints each member's slices lost to the trust policy (members with any)."""
    blocked: str | None = None
    """Objects not ours that stand in the way of the import, for the log."""
    unreachable: tuple[str, ...] = ()
    """Local members not written because they are unreachable: the key is retried."""
    skew: Mapping[str, str] = field(default_factory=dict)
    """Remote members whose import of the key says other merge rules (cluster -> their
    version, "none" before 0.2.0): the key's results are held back."""


def plan_key(
    namespace: str,
    name: str,
    members: Sequence[MemberView],
    now: datetime,
    policy: Policy | None = None,
) -> KeyPlan:
    """The plan of key ``namespace/name`` given every member's view (see the module doc)."""
    policy = policy or Policy()
    views = {m.cluster: _view(namespace, m, policy.namespaces) for m in members}
    evaluation = evaluate(list(views.values()), policy.exported_metadata)
    merged = evaluation.merged
    is_global = any(globalsvc.annotations_of(v.service).is_global for v in views.values())
    is_global = is_global or any(m.global_slices for m in members if m.local)
    trusted: dict[str, list[dict[str, Any]]] = {}
    dropped: dict[str, tuple[trust.DroppedEndpoint, ...]] = {}
    if merged is not None or is_global:
        for m in members:
            if not m.withdrawn:
                kept, lost = trust.filter_slices(m.cluster, m.source_slices, policy.endpoints)
                trusted[m.cluster] = kept
                if lost:
                    dropped[m.cluster] = tuple(lost)
    key = _Key(
        namespace,
        name,
        evaluation,
        views,
        trusted,
        _blocked(namespace, name, merged, views),
        now,
        tuple((m.cluster, m.withdrawn_since) for m in members if m.withdrawn and m.export),
    )
    written = [m for m in members if m.local and not m.withdrawn and m.reachable]
    skew = merge_rules_skew(members)
    if skew:
        unreachable = tuple(
            m.cluster for m in members if m.local and not m.withdrawn and not m.reachable
        )
        held = tuple(_held_back(key, m, skew) for m in written)
        return KeyPlan(held, dropped, key.blocked, unreachable, skew)
    clusters = []
    for m in written:
        cluster = _plan_cluster(key, m)
        if is_global:
            cluster = _with_global(key, m, cluster, members)
        if m.cluster in dropped and views[m.cluster].export is not None:
            event = events.dropped_event(
                views[m.cluster].export or {}, dropped[m.cluster], m.cluster, now
            )
            cluster = _then_also(cluster, (Write("create", "events", event),), ())
        clusters.append(cluster)
    unreachable = tuple(
        m.cluster for m in members if m.local and not m.withdrawn and not m.reachable
    )
    return KeyPlan(tuple(clusters), dropped, key.blocked, unreachable)


@dataclass(frozen=True, slots=True)
class _Key:
    """What the whole clusterset says about one key (the same for every local member)."""

    namespace: str
    name: str
    evaluation: Evaluation
    views: Mapping[str, ClusterView]
    sources: Mapping[str, Sequence[Obj]]
    """Each member's own EndpointSlices of the Service, trusted endpoints only."""
    blocked: str | None
    now: datetime
    withdrawn: Sequence[tuple[str, str | None]]
    """The withdrawn members that export the key: (cluster id, since)."""


def _view(namespace: str, m: MemberView, policy: NamespacePolicy) -> ClusterView:
    """``m``'s view for the merge: empty while it is withdrawn."""
    if m.withdrawn:
        return ClusterView(cluster=m.cluster, namespace_exists=False)
    return ClusterView(
        cluster=m.cluster,
        namespace_exists=m.namespace is not None
        and m.namespace.get("status", {}).get("phase") != "Terminating",
        export=m.export,
        service=m.service,
        service_import=m.service_import,
        derived=m.derived,
        exclusion=policy.exclusion(namespace, m.namespace, m.cluster),
    )


def _blocked(
    ns: str, name: str, merged: MergeResult | None, views: Mapping[str, ClusterView]
) -> str | None:
    """Why the import cannot be written in some cluster: objects not ours in the way."""
    if merged is None:
        return None
    clashes = [
        f'ServiceImport "{ns}/{name}" in cluster "{c}" was not created by mcs-controller '
        "(no app.kubernetes.io/managed-by=mcs-controller label); it is left untouched"
        for c, v in views.items()
        if v.takes_part and v.service_import is not None and not owned(v.service_import)
    ]
    if merged.spec.type == "ClusterSetIP":
        clashes += [
            f'Service "{ns}/{derived_name(ns, name)}" in cluster "{c}" was not created by '
            "mcs-controller (no app.kubernetes.io/managed-by=mcs-controller label) and "
            "holds the name of the derived Service; it is left untouched"
            for c, v in views.items()
            if v.takes_part and v.derived is not None and not owned(v.derived)
        ]
    return "; ".join(clashes) or None


def _plan_cluster(key: _Key, m: MemberView) -> ClusterPlan:
    """The import's writes in one local cluster: derived Service, import, slices, export."""
    view = key.views[m.cluster]
    ns, name = key.namespace, key.name
    merged = key.evaluation.merged if view.takes_part else None
    ours = view.service_import is None or owned(view.service_import)
    derived_writes: list[Write] = []
    derived = view.derived
    want_derived: dict[str, Any] | None = None
    if merged is not None and ours:
        want_derived = imports.desired_derived_service(ns, name, merged)
        if want_derived is not None:
            if derived is not None and not owned(derived):
                message = (
                    f'Service "{ns}/{want_derived["metadata"]["name"]}" exists and is not ours'
                )
                return ClusterPlan(m.cluster, (), lambda _: (), derived, (), message)
            if derived is not None and writes.family_switch(derived, want_derived):
                derived_writes.append(Write("delete", "services", derived))
                derived = None
            if writes.derived_service_changed(want_derived, derived):
                derived_writes.append(Write("apply", "services", want_derived))
    desired_slices: list[dict[str, Any]] = []
    if merged is not None:
        tag = derived_name(ns, name) if merged.spec.type == "ClusterSetIP" else None
        desired_slices = endpoints.desired_slices(ns, name, merged, key.sources, tag, m.cluster)
    slice_writes, warnings = writes.slice_writes(m.imported_slices, desired_slices, m.slice_named)

    def then(derived_now: Obj | None) -> tuple[Write, ...]:
        out: list[Write] = []
        if merged is None:  # not exported (any more), or no namespace here
            out += [Write("delete", r, o) for r, o in _ours(view)]
        elif ours:
            out += _import_writes(key, view, merged, derived_now)
            if want_derived is None:  # Headless (now): no derived Service
                out += [Write("delete", r, o) for r, o in _ours(view) if r == "services"]
        out += slice_writes
        out += _export_writes(key, view)
        return tuple(out)

    return ClusterPlan(m.cluster, tuple(derived_writes), then, derived, tuple(warnings))


def merge_rules_of(service_import: Obj | None) -> str | None:
    """The merge-rules version an import of ours was written with ("none": a release
    before the stamp); None for no import or one that is not ours."""
    if service_import is None or not owned(service_import):
        return None
    meta = service_import.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(MERGE_RULES_ANNOTATION)
    return str(value) if value else "none"


def merge_rules_skew(members: Sequence[MemberView]) -> dict[str, str]:
    """Remote, not withdrawn members whose import of ours says other merge rules."""
    found = {
        m.cluster: merge_rules_of(m.service_import)
        for m in members
        if not m.local and not m.withdrawn
    }
    return {c: v for c, v in found.items() if v is not None and v != MERGE_RULES}


def skew_message(skew: Mapping[str, str]) -> str:
    peers = ", ".join(f"{c} ({v})" for c, v in sorted(skew.items()))
    return (
        f"Not updated: this cluster's mcs computes the merge with rules version {MERGE_RULES}, "
        f"and the ServiceImports of cluster(s) {peers} were written with other rules; "
        "the last results stay until every member runs the same mcs release."
    )


def _held_back(key: _Key, m: MemberView, skew: Mapping[str, str]) -> ClusterPlan:
    """``m``'s writes while merge rules disagree: only our version stamped on our import,
    Ready=False on the export (Valid and Conflict kept as they were) and one Event."""
    view = key.views[m.cluster]
    out: list[Write] = []
    stamp = _stamped(view.service_import)
    if stamp is not None:
        out.append(Write("apply", "serviceimports", stamp))
    message = skew_message(skew)
    export = view.export
    if export is not None and key.evaluation.merged is not None:
        previous = export.get("status", {}).get("conditions") or []
        ready = (False, events.MERGE_RULES_MISMATCH, message)
        wanted = export_status(key.evaluation, view, key.now, ready=ready) or []
        kept = {c.get("type"): c for c in previous if c.get("type") in ("Valid", "Conflict")}
        conditions = [dict(kept.get(c.get("type"), c)) for c in wanted]
        if conditions != previous:
            out.append(Write("status", "serviceexports", export, {"conditions": conditions}))
            event = events.merge_rules_event(export, message, skew, m.cluster, key.now)
            out.append(Write("create", "events", event))
    writes_now = tuple(out)
    return ClusterPlan(m.cluster, (), lambda _: writes_now, view.derived)


def _stamped(observed: Obj | None) -> dict[str, Any] | None:
    """Our import as we last applied it (labels and annotations of our apply, spec as
    observed) with our merge-rules version; None when not ours or already stamped."""
    if merge_rules_of(observed) in (None, MERGE_RULES):
        return None
    assert observed is not None
    meta = observed.get("metadata") or {}
    label_keys, annotation_keys = writes.applied_keys(observed)
    annotations = meta.get("annotations") or {}
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceImport",
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "labels": {
                **{k: v for k, v in labels_of(observed).items() if k in label_keys},
                MANAGED_BY: FIELD_MANAGER,
            },
            "annotations": {
                **{k: v for k, v in annotations.items() if k in annotation_keys},
                MERGE_RULES_ANNOTATION: MERGE_RULES,
            },
        },
        "spec": dict(observed.get("spec") or {}),
    }


def _ours(view: ClusterView) -> list[tuple[str, Obj]]:
    """The import and derived Service of ours that this cluster holds."""
    found = [("serviceimports", view.service_import), ("services", view.derived)]
    return [(r, o) for r, o in found if o is not None and owned(o)]


def _import_writes(
    key: _Key, view: ClusterView, merged: MergeResult, derived: Obj | None
) -> list[Write]:
    observed = view.service_import
    desired = imports.desired_import(key.namespace, key.name, merged, derived)
    out: list[Write] = []
    if writes.import_changed(desired, observed):
        out.append(Write("apply", "serviceimports", desired))
    # The status follows the spec just written (its IPs decide Ready), and keeps the
    # previous conditions' transition times.
    previous = (observed or {}).get("status", {}).get("conditions") or []
    status = imports.desired_import_status(merged, desired, previous, key.now, key.withdrawn)
    if observed is None or writes.status_differs(status, observed.get("status") or {}):
        out.append(Write("status", "serviceimports", desired, status))
        event = events.withdrawal_event(
            observed or desired, previous, status["conditions"], view.cluster, key.now
        )
        if event is not None:
            out.append(Write("create", "events", event))
    return out


def _export_writes(key: _Key, view: ClusterView) -> list[Write]:
    conditions = export_status(key.evaluation, view, key.now, key.blocked)
    if view.export is None or conditions is None:
        return []
    previous = view.export.get("status", {}).get("conditions") or []
    if conditions == previous:
        return []
    out = [Write("status", "serviceexports", view.export, {"conditions": conditions})]
    event = events.conflict_event(view.export, previous, conditions, view.cluster, key.now)
    if event is not None:
        out.append(Write("create", "events", event))
    return out


def _with_global(
    key: _Key, m: MemberView, cluster: ClusterPlan, members: Sequence[MemberView]
) -> ClusterPlan:
    """``cluster`` plus the global Service's remote backends in ``m`` and its notes."""
    sides = {
        o.cluster: globalsvc.Side(
            o.cluster,
            key.views[o.cluster].service,
            key.views[o.cluster].takes_part,
            # Remote endpoints pass the endpoint trust policy, as for imports.
            m.source_slices if o is m else key.sources.get(o.cluster, ()),
        )
        for o in members
    }
    local = sides.pop(m.cluster)
    planned = globalsvc.plan_cluster(key.namespace, key.name, local, list(sides.values()))
    slice_writes, warnings = writes.slice_writes(m.global_slices, planned.slices, m.slice_named)
    notes: tuple[Write, ...] = ()
    if local.service is not None:
        notes = tuple(
            Write(
                "create",
                "events",
                events.service_event(
                    local.service, (n.type, n.reason, n.message), m.cluster, key.now
                ),
            )
            for n in planned.notes
        )
    return _then_also(cluster, (*slice_writes, *notes), tuple(warnings))


def _then_also(
    cluster: ClusterPlan, more: tuple[Write, ...], warnings: tuple[str, ...]
) -> ClusterPlan:
    """``cluster`` with ``more`` writes after its own."""
    if not more and not warnings:
        return cluster
    before = cluster.then
    return ClusterPlan(
        cluster.cluster,
        cluster.derived,
        lambda derived: (*before(derived), *more),
        cluster.derived_observed,
        cluster.warnings + warnings,
        cluster.in_the_way,
    )
