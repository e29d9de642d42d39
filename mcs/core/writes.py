"""The writes one local cluster needs for one key, in order: pure functions, no I/O.

The reconcile of a key reads the cached views of every member, evaluates the merge
once (``mcs.core.plan.evaluate``), then asks this module, for each local cluster, for the
ordered writes that make the cluster hold what it should, and hands them to the
writer. No write result is read back except one: the ClusterIPs the API server gives
the derived Service, which become the ServiceImport's ``spec.ips``.

So a plan has two rounds:

1. ``derived``: the writes of the derived Service (a delete when its primary IP
   family must change, then an apply). Empty when the cached derived Service is
   already right, or for a Headless import.
2. ``then(derived)``: given the derived Service as the server returned it (or as
   cached), the ServiceImport (written once, with its IPs), its status, the
   imported EndpointSlices, and the export's status (plus a conflict Event).

The fewest writes: a new ClusterSetIP export costs, in each cluster, one apply of
the derived Service, one of the ServiceImport and one status patch of the
ServiceImport; plus one status patch of the export in its own cluster, and one
apply per EndpointSlice. That is the floor: the import cannot carry its IPs before
the derived Service has them, and status is its own subresource. The derived
Service has no ownerReference to its import: that would need the import's uid
first, hence a second write of one of the two; the controller deletes derived
Services itself (the import's removal, and any derived Service of ours whose key is
no longer exported, found through its ``multicluster.kubernetes.io/service-name``
label on every resync), so the API server's garbage collector has nothing to add.
A steady state gives empty plans.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from mcs.core import endpoints, plan
from mcs.core.merge import MergeResult
from mcs.runtime import health

__all__ = ["KeyState", "LocalState", "Plan", "Write", "plan_local", "slice_writes"]

Obj = Mapping[str, Any]

Verb = Literal["apply", "delete", "status", "create"]


@dataclass(frozen=True, slots=True)
class Write:
    """One API write: ``apply`` (server-side apply of ``obj``), ``delete`` (of the
    observed ``obj``, uid precondition), ``status`` (merge patch of ``status`` on
    ``obj``'s status subresource) or ``create`` (``obj``, existing is fine)."""

    verb: Verb
    resource: str
    obj: Obj
    status: Obj | None = None


@dataclass(frozen=True, slots=True)
class KeyState:
    """What the whole clusterset says about one key (the same for every local cluster)."""

    namespace: str
    name: str
    evaluation: plan.Evaluation
    sources: Mapping[str, Sequence[Obj]]
    """Each exporting cluster's own EndpointSlices of the Service."""
    blocked: str | None
    """Why the import cannot be written in some cluster (an unowned import or derived
    Service), or None."""
    now: datetime
    withdrawn: Sequence[tuple[str, str | None]] = ()
    """The withdrawn members (``mcs.runtime.health``) that export the key: (cluster id, since)."""


@dataclass(frozen=True, slots=True)
class LocalState:
    """What one local cluster holds for the key."""

    view: plan.ClusterView
    imported_slices: Sequence[Obj]
    """Our EndpointSlices of this import in this cluster."""
    slice_named: Callable[[str], Obj | None]
    """Any EndpointSlice of the namespace by name (to leave one that is not ours alone)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The writes of one local cluster for one key: ``derived`` first, then ``then(...)``
    with the derived Service those writes produced (or ``derived_observed`` if none)."""

    derived: tuple[Write, ...]
    then: Callable[[Obj | None], tuple[Write, ...]] = field(repr=False)
    derived_observed: Obj | None = None
    warnings: tuple[str, ...] = ()


class DerivedServiceInTheWay(RuntimeError):
    """A Service with the derived Service's name exists and is not ours."""


def plan_local(key: KeyState, local: LocalState) -> Plan:
    """The ordered writes that make one local cluster hold what it should for the key."""
    view = local.view
    ns, name = key.namespace, key.name
    evaluation = key.evaluation
    merged = evaluation.merged if view.takes_part else None
    ours = view.service_import is None or plan.owned(view.service_import)
    derived_writes: list[Write] = []
    derived = view.derived
    want_derived: dict[str, Any] | None = None
    if merged is not None and ours:
        want_derived = plan.desired_derived_service(ns, name, merged)
        if want_derived is not None:
            if derived is not None and not plan.owned(derived):
                raise DerivedServiceInTheWay(
                    f'Service "{ns}/{want_derived["metadata"]["name"]}" exists and is not ours'
                )
            if derived is not None and _family_switch(derived, want_derived):
                derived_writes.append(Write("delete", "services", derived))
                derived = None
            if plan.derived_service_changed(want_derived, derived):
                derived_writes.append(Write("apply", "services", want_derived))
    slice_writes, warnings = _slice_writes(key, local, merged)

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

    return Plan(tuple(derived_writes), then, derived, tuple(warnings))


def _ours(view: plan.ClusterView) -> list[tuple[str, Obj]]:
    """The import and derived Service of ours that this cluster holds."""
    found = [("serviceimports", view.service_import), ("services", view.derived)]
    return [(r, o) for r, o in found if o is not None and plan.owned(o)]


def _import_writes(
    key: KeyState, view: plan.ClusterView, merged: MergeResult, derived: Obj | None
) -> list[Write]:
    observed = view.service_import
    desired = plan.desired_import(key.namespace, key.name, merged, derived)
    out: list[Write] = []
    if plan.import_changed(
        desired, observed, plan.applied_keys(observed) if observed else (set(), set())
    ):
        out.append(Write("apply", "serviceimports", desired))
    # The status follows the spec just written (its IPs decide Ready), and keeps the
    # previous conditions' transition times.
    previous = (observed or {}).get("status", {}).get("conditions") or []
    status = plan.desired_import_status(merged, desired, previous, key.now)
    status = health.annotate_import_status(status, key.withdrawn)
    if observed is None or _status_differs(status, observed.get("status") or {}):
        out.append(Write("status", "serviceimports", desired, status))
        event = health.withdrawal_event(
            observed or desired, previous, status["conditions"], view.cluster, key.now
        )
        if event is not None:
            out.append(Write("create", "events", event))
    return out


def _slice_writes(
    key: KeyState, local: LocalState, merged: MergeResult | None
) -> tuple[list[Write], list[str]]:
    ns, name = key.namespace, key.name
    desired: list[dict[str, Any]] = []
    if merged is not None:
        derived = plan.derived_name(ns, name) if merged.spec.type == "ClusterSetIP" else None
        desired = endpoints.desired_slices(ns, name, merged, key.sources, derived)
    return slice_writes(local.imported_slices, desired, local.slice_named)


def slice_writes(
    observed: Sequence[Obj], desired: Sequence[Obj], slice_named: Callable[[str], Obj | None]
) -> tuple[list[Write], list[str]]:
    """The writes that turn our ``observed`` slices into the ``desired`` ones: apply
    what is new or differs (by name), delete what is no longer desired; a desired name
    taken by a slice that is not ours is left alone (a warning is returned instead)."""
    have_by_name = {s["metadata"]["name"]: s for s in observed}
    out: list[Write] = []
    warnings: list[str] = []
    for want in desired:
        meta = want["metadata"]
        have = have_by_name.pop(meta["name"], None)
        if have is None and slice_named(meta["name"]) is not None:
            warnings.append(
                f'EndpointSlice "{meta["namespace"]}/{meta["name"]}" is in the way and not ours'
            )
            continue
        if have is None or _without_uid(have) != want:
            out.append(Write("apply", "endpointslices", want))
    out += [Write("delete", "endpointslices", stale) for stale in have_by_name.values()]
    return out, warnings


def _export_writes(key: KeyState, view: plan.ClusterView) -> list[Write]:
    conditions = plan.export_status(key.evaluation, view, key.now, key.blocked)
    if view.export is None or conditions is None:
        return []
    previous = view.export.get("status", {}).get("conditions") or []
    if conditions == previous:
        return []
    out = [Write("status", "serviceexports", view.export, {"conditions": conditions})]
    event = plan.conflict_event(view.export, previous, conditions, view.cluster, key.now)
    if event is not None:
        out.append(Write("create", "events", event))
    return out


def _without_uid(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k != "uid"}
    return {**obj, "metadata": meta}


def _family_switch(observed: Obj, desired: Obj) -> bool:
    """A derived Service whose primary IP family must change cannot be updated, only replaced."""
    want = desired["spec"].get("ipFamilies")
    have = observed.get("spec", {}).get("ipFamilies")
    return bool(want and have and want[0] != have[0])


def _status_differs(desired: Obj, observed: Obj) -> bool:
    def strip(conds: Sequence[Obj]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds]

    return desired["clusters"] != observed.get("clusters") or strip(desired["conditions"]) != strip(
        observed.get("conditions") or []
    )
