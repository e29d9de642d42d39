"""The diff: which writes turn what a cluster holds into what it should hold. Pure, no I/O.

`mcs.core.plan` decides what each local cluster should hold for a key; these functions
compare that with what the cluster's caches hold and return only the writes that
differ, so a steady state makes none:

* `import_changed`, `derived_service_changed`: whether the ServiceImport or the
  derived Service must be applied again (only the fields we set count, and a label or
  annotation our field manager applied that is no longer wanted);
* `status_differs`: whether the import's status must be patched (the transition time
  alone does not count);
* `family_switch`: a derived Service whose primary IP family changes cannot be
  updated, only deleted and created;
* `slice_writes`: apply what is new or differs, delete what is no longer wanted,
  leave a slice that is not ours alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcs.core.api import FIELD_MANAGER, Obj

__all__ = [
    "Write",
    "applied_keys",
    "derived_service_changed",
    "family_switch",
    "import_changed",
    "slice_writes",
    "status_differs",
]

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


def _without_uid(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k != "uid"}
    return {**obj, "metadata": meta}


def family_switch(observed: Obj, desired: Obj) -> bool:
    """A derived Service whose primary IP family must change cannot be updated, only replaced."""
    want = desired["spec"].get("ipFamilies")
    have = observed.get("spec", {}).get("ipFamilies")
    return bool(want and have and want[0] != have[0])


def status_differs(desired: Obj, observed: Obj) -> bool:
    def strip(conds: Sequence[Obj]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds]

    return desired["clusters"] != observed.get("clusters") or strip(desired["conditions"]) != strip(
        observed.get("conditions") or []
    )


def import_changed(desired: Obj, observed: Obj | None) -> bool:
    """Whether the ServiceImport must be (re)applied."""
    if observed is None:
        return True
    if dict(observed.get("spec", {})) != desired["spec"]:
        return True
    return _meta_changed(desired, observed)


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
    # Policies we set or stop setting (the API server defaults internalTrafficPolicy).
    if ospec.get("trafficDistribution") != dspec.get("trafficDistribution"):
        return True
    if ospec.get("internalTrafficPolicy", "Cluster") != dspec.get(
        "internalTrafficPolicy", "Cluster"
    ):
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
    """A desired label or annotation differs, or one our field manager applied last time
    (``managedFields``) is no longer desired: removing it takes an apply."""
    dmeta, ometa = desired["metadata"], observed.get("metadata", {})
    if any(ometa.get("labels", {}).get(k) != v for k, v in dmeta.get("labels", {}).items()):
        return True
    if any(
        ometa.get("annotations", {}).get(k) != v for k, v in dmeta.get("annotations", {}).items()
    ):
        return True
    labels, annotations = applied_keys(observed)
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
