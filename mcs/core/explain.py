"""Why an export lost (pure): ``kubectl mcs explain <svc>``.

From the objects of every member (each cluster's ServiceExport and Service of one
name) and the cluster asked about, `explain` says what the merge decided for that
cluster's export, with the controller's own pure code (``mcs.core.plan.evaluate``): the
winner (the oldest export, KEP-1645), and for each conflicting property the value
this cluster has, the value the winner has (which the ServiceImport uses) and what
to change so that the conflict goes away.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mcs.core.api import Obj
from mcs.core.merge import MergeResult
from mcs.core.model import ExportRecord, Port, format_time, record_from_objects
from mcs.core.plan import ClusterView, evaluate

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FieldConflict(BaseModel):
    """One property on which this cluster's export and the winner's disagree."""

    model_config = _FROZEN

    reason: str  # e.g. PortConflict
    field: str  # as the Conflict condition names it, e.g. ports
    cluster: str  # the cluster that disagrees with the winner
    value: str  # that cluster's value
    winner_value: str  # the winner's value, which the ServiceImport uses
    change: str  # what to change, in that cluster, to agree with the winner


class Explanation(BaseModel):
    """The verdict on one cluster's export of ``namespace/name``.

    ``state``: ``not-exported`` (no ServiceExport in this cluster), ``invalid``
    (``reason`` and ``message`` say why), ``ok`` (agrees with the winner, maybe is
    it), ``conflict`` (``conflicts`` lists the properties; when this cluster is the
    winner, they are the other clusters' differences, and ``losers`` names them).
    """

    model_config = _FROZEN

    namespace: str
    name: str
    cluster: str
    state: Literal["not-exported", "invalid", "ok", "conflict"]
    reason: str | None = None
    message: str | None = None
    winner: str | None = None
    winner_created: str | None = None
    created: str | None = None
    clusters: list[str] = []  # every valid export's cluster, oldest first
    losers: list[str] = []
    conflicts: list[FieldConflict] = []


Objects = tuple[str, Obj | None, Obj | None]
"""(cluster id, its ServiceExport or None, its Service or None) for one member."""


def explain(namespace: str, name: str, cluster: str, members: Sequence[Objects]) -> Explanation:
    """The verdict on ``cluster``'s export of ``namespace/name`` given every member's
    objects of that name (``cluster`` must be one of them to be exported)."""
    views = [
        ClusterView(cluster=c, namespace_exists=True, export=export, service=service)
        for c, export, service in members
    ]
    evaluation = evaluate(views)
    base = {"namespace": namespace, "name": name, "cluster": cluster}
    own = next((m for m in members if m[0] == cluster), None)
    if own is None or own[1] is None:
        return Explanation(**base, state="not-exported", **_winner(evaluation.merged, members))
    invalid = evaluation.invalid.get(cluster)
    if invalid is not None:
        return Explanation(
            **base,
            state="invalid",
            reason=invalid.reason,
            message=invalid.message,
            **_winner(evaluation.merged, members),
        )
    merged = evaluation.merged
    assert merged is not None  # this cluster's export is valid, so there is a merge
    records = {
        r.cluster: r
        for c, export, service in members
        if export is not None
        and isinstance(r := record_from_objects(c, export, service), ExportRecord)
    }
    mine, best = records[cluster], records[merged.winner]
    conflicts: list[FieldConflict] = []
    losers: list[str] = []
    for conflict in merged.conflicts:
        if cluster == merged.winner:
            losers += [c for c in conflict.clusters if c not in losers]
            for other in conflict.clusters:
                conflicts.append(_field(conflict.reason, conflict.field, records[other], best))
        elif cluster in conflict.clusters:
            conflicts.append(_field(conflict.reason, conflict.field, mine, best))
    return Explanation(
        **base,
        state="conflict" if conflicts else "ok",
        created=format_time(mine.created),
        losers=losers,
        conflicts=conflicts,
        **_winner(merged, members),
    )


def _winner(merged: MergeResult | None, members: Sequence[Objects]) -> dict[str, object]:
    if merged is None:
        return {}
    export = next(e for c, e, _ in members if c == merged.winner)
    assert export is not None
    created = (export.get("metadata") or {}).get("creationTimestamp")
    return {"winner": merged.winner, "winner_created": created, "clusters": list(merged.clusters)}


def _ports(r: ExportRecord) -> str:
    def one(p: Port) -> str:
        text = f"{p.name}:{p.port}/{p.protocol}" if p.name else f"{p.port}/{p.protocol}"
        return f"{text} ({p.app_protocol})" if p.app_protocol else text

    return ", ".join(one(p) for p in r.ports) or "none"


def _map(value: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "none"


# field -> (its value as shown, where it is set) for every field the merge compares.
_FIELDS: dict[str, tuple[Callable[[ExportRecord], str], str]] = {
    "ports": (_ports, "the Service's spec.ports"),
    "type": (
        lambda r: r.type,
        "the Service's spec.clusterIP (None makes it Headless; a new Service is needed)",
    ),
    "sessionAffinity": (lambda r: r.session_affinity, "the Service's spec.sessionAffinity"),
    "sessionAffinityConfig": (
        lambda r: str(r.session_affinity_timeout),
        "the Service's spec.sessionAffinityConfig.clientIP.timeoutSeconds",
    ),
    "annotations": (
        lambda r: _map(r.exported_annotations),
        "the ServiceExport's spec.exportedAnnotations",
    ),
    "labels": (lambda r: _map(r.exported_labels), "the ServiceExport's spec.exportedLabels"),
    "internalTrafficPolicy": (
        lambda r: r.internal_traffic_policy or "Cluster",
        "the Service's spec.internalTrafficPolicy",
    ),
    "trafficDistribution": (
        lambda r: r.traffic_distribution or "none",
        "the Service's spec.trafficDistribution",
    ),
    "ipFamilies": (lambda r: ", ".join(r.ip_families) or "none", "the Service's spec.ipFamilies"),
}


def _field(reason: str, field: str, loser: ExportRecord, winner: ExportRecord) -> FieldConflict:
    show, where = _FIELDS.get(field, (lambda r: "?", f"the Service's {field}"))
    theirs, ours = show(loser), show(winner)
    change = f'in cluster "{loser.cluster}", set {where} to {ours} (as in "{winner.cluster}")'
    return FieldConflict(
        reason=reason,
        field=field,
        cluster=loser.cluster,
        value=theirs,
        winner_value=ours,
        change=change,
    )
