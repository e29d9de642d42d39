"""The merge: many clusters' exports of one service in, one ServiceImport spec out.

Pure code: no I/O, no clock (the caller passes ``now``), no logging. `merge` is a
deterministic function of the *set* of records, so every instance of the
controller, in any cluster, computes the same ServiceImport and the same Conflict
condition, whatever order its caches return the exports in.

Rules (KEP-1645 first; Cilium's behaviour where the KEP is silent; our own choices
marked as such):

* **Priority.** Records are ordered by ServiceExport creationTimestamp, oldest
  first, ties broken by cluster id compared byte-wise (`ExportRecord.priority`).
  The first record is the *winner*. At most one record per cluster.
* **Global properties.** The winner decides type, sessionAffinity, the clientIP
  timeout, internalTrafficPolicy, trafficDistribution and the exported labels and
  annotations; they are copied as the winner has them. Every other record that
  differs from the winner raises the matching conflict reason. When comparing, an
  absent internalTrafficPolicy counts as ``Cluster``, and label/annotation maps
  must be equal as whole maps.
* **Session affinity** (our choice). A Headless import has no session affinity
  (the API ignores it there), so when the winner is Headless neither affinity
  field is copied or compared. The timeout is compared only between records that
  agree with the winner on sessionAffinity: the API server sets the timeout
  exactly when affinity is ClientIP, so a different affinity already explains a
  different timeout and is reported once, as SessionAffinityConflict.
* **Ports.** Merged by name, then by (protocol, port), walking the records oldest
  first and each record's ports in its own order. A port whose name is taken by an
  older port with another (protocol, port) is dropped; a port whose (protocol,
  port) is taken by an older port keeps the older port's name and appProtocol.
  The result is the union, in first-seen order, and never holds two ports with one
  name or one (protocol, port). A record whose *set* of ports (name, protocol,
  port, appProtocol) differs from the winner's raises PortConflict, which is the
  same as "differs from the merged list" (KEP-1645, "Service Port"). Our choice:
  the same ports listed in another order are **not** a conflict (Cilium compares
  ordered lists). Every problem is reported, not just the first.
* **IP families** (Cilium's rule). Records with no families (old peers) are
  ignored. Starting from the oldest remaining record's families, in its order, each
  later record's families are intersected in; a record that shares no family with
  the running intersection is left out of it and raises IPFamilyConflict. A record
  with *more* families than the result is not a conflict: every backend serves all
  families of the import, so no client reaches only some backends, which is the
  case the KEP requires to be flagged.
* **Conflict reasons** are reported in this fixed order and joined by commas:
  PortConflict, TypeConflict, SessionAffinityConflict,
  SessionAffinityConfigConflict, AnnotationsConflict, LabelsConflict,
  InternalTrafficPolicyConflict, TrafficDistributionConflict, IPFamilyConflict.
  One Conflict condition, identical on every constituent export, names the fields,
  how many clusters disagree (distinct clusters over all fields / all exports), the
  winning cluster, and then one detail per field.

What the caller does with records the IP-family rule leaves out (for example,
whether their endpoints are imported) is not decided here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from mcs.core.model import Condition, ExportRecord, ImportSpec, InvalidExport, Port, parse_time

MERGE_RULES = "1"
"""The version of the rules above. Raise it with any change that can make two releases
compute a different import or Conflict condition from the same exports: instances of
different merge rules in one clusterset must not both write (`mcs.core.plan`'s skew
check compares it with the one each peer stamps on its ServiceImports)."""

# The order in which conflicts are reported and their reasons joined.
CONFLICT_REASONS = (
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

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# (reason, field as named in messages, the value compared) for the fields the winner
# decides outright, in report order. Ports and IP families have their own rules.
_WINNER_FIELDS: tuple[tuple[str, str, Callable[[ExportRecord], object]], ...] = (
    ("TypeConflict", "type", lambda r: r.type),
    ("SessionAffinityConflict", "sessionAffinity", lambda r: r.session_affinity),
    (
        "SessionAffinityConfigConflict",
        "sessionAffinityConfig",
        lambda r: r.session_affinity_timeout,
    ),
    ("AnnotationsConflict", "annotations", lambda r: r.exported_annotations),
    ("LabelsConflict", "labels", lambda r: r.exported_labels),
    (
        "InternalTrafficPolicyConflict",
        "internalTrafficPolicy",
        lambda r: r.internal_traffic_policy or "Cluster",
    ),
    ("TrafficDistributionConflict", "trafficDistribution", lambda r: r.traffic_distribution),
)
_AFFINITY_REASONS = frozenset({"SessionAffinityConflict", "SessionAffinityConfigConflict"})

_VALID_MESSAGE = "The Service exists and its type can be exported."
_READY_MESSAGE = "The Service is exported to the clusterset."
_NO_CONFLICTS_MESSAGE = "No conflicts: every constituent export agrees with the oldest one."


class Conflict(BaseModel):
    """One field on which some exports disagree with the winner.

    `clusters` never holds the winner: for ports they are the clusters whose port
    set differs from the winner's, for IP families the ones left out of the
    intersection. `detail` is a human sentence without the final period.
    """

    model_config = _FROZEN

    reason: str
    field: str
    clusters: tuple[str, ...]
    detail: str


class MergeResult(BaseModel):
    """Everything the merge decides for one service.

    `clusters` lists every constituent export's cluster, oldest first (the order
    for ``ServiceImport.status.clusters``). `exposed_ports` maps each of them to
    the merged ports, as they appear in ``spec.ports``, that its own Service really
    serves (same name, protocol and number), so that traffic to a conflicting port
    reaches only clusters that expose it (KEP-1645, "Service Port").
    """

    model_config = _FROZEN

    spec: ImportSpec
    winner: str
    clusters: tuple[str, ...]
    conflicts: tuple[Conflict, ...]
    exposed_ports: dict[str, tuple[Port, ...]]

    @property
    def conflict_reason(self) -> str | None:
        """The Conflict condition's reason, e.g. ``PortConflict,TypeConflict``."""
        return ",".join(c.reason for c in self.conflicts) or None

    def conflict_message(self) -> str:
        """The Conflict condition's message; the same for every constituent export."""
        if not self.conflicts:
            return _NO_CONFLICTS_MESSAGE
        fields = ", ".join(c.field for c in self.conflicts)
        disagree = len({cluster for c in self.conflicts for cluster in c.clusters})
        head = (
            f"Conflicting {fields}: {disagree}/{len(self.clusters)} clusters disagree; "
            f'using values from the oldest export, in cluster "{self.winner}".'
        )
        return " ".join([head, *(f"{c.detail}." for c in self.conflicts)])


def merge(records: Iterable[ExportRecord]) -> MergeResult:
    """Merge the valid exports of one service. Raises ``ValueError`` if there are
    none, or if two records come from the same cluster."""
    ordered = sorted(records, key=ExportRecord.priority)
    if not ordered:
        raise ValueError("merge needs at least one export")
    clusters = tuple(r.cluster for r in ordered)
    if len(set(clusters)) != len(clusters):
        raise ValueError(f"more than one export per cluster: {clusters}")
    winner = ordered[0]

    ports, port_conflict = _merge_ports(ordered)
    families, family_conflict = _intersect_families(ordered)
    found = [port_conflict, *_winner_field_conflicts(ordered), family_conflict]
    conflicts = sorted(
        (c for c in found if c is not None), key=lambda c: CONFLICT_REASONS.index(c.reason)
    )

    affinity = winner.type == "ClusterSetIP"
    spec = ImportSpec(
        type=winner.type,
        ports=ports,
        session_affinity=winner.session_affinity if affinity else None,
        session_affinity_timeout=winner.session_affinity_timeout if affinity else None,
        ip_families=families,
        internal_traffic_policy=winner.internal_traffic_policy,
        traffic_distribution=winner.traffic_distribution,
        labels=winner.exported_labels,
        annotations=winner.exported_annotations,
    )
    return MergeResult(
        spec=spec,
        winner=winner.cluster,
        clusters=clusters,
        conflicts=tuple(conflicts),
        exposed_ports={r.cluster: _exposed(ports, r) for r in ordered},
    )


def _port_id(port: Port) -> tuple[str, str, int]:
    """What makes a Service really serve a merged port (appProtocol aside)."""
    return (port.name, port.protocol, port.port)


def _exposed(merged: Sequence[Port], record: ExportRecord) -> tuple[Port, ...]:
    own = {_port_id(p) for p in record.ports}
    return tuple(p for p in merged if _port_id(p) in own)


def _merge_ports(ordered: Sequence[ExportRecord]) -> tuple[tuple[Port, ...], Conflict | None]:
    merged: list[Port] = []
    by_name: dict[str, tuple[Port, str]] = {}
    by_number: dict[tuple[str, int], tuple[Port, str]] = {}
    details: list[str] = []
    # (merged port, cluster) pairs already explained by a clash detail, so the
    # "not exposed" pass below does not report them twice.
    explained: set[tuple[Port, str]] = set()

    for record in ordered:
        cluster = record.cluster
        for port in record.ports:
            number = (port.protocol, port.port)
            if port.name in by_name:
                kept, owner = by_name[port.name]
                if (kept.protocol, kept.port) != number:
                    details.append(
                        f'port "{port.name}": cluster "{cluster}" has {port.port}/{port.protocol}, '
                        f'kept {kept.port}/{kept.protocol} from "{owner}"'
                    )
                    explained.add((kept, cluster))
                    continue
            elif number in by_number:
                kept, owner = by_number[number]
                details.append(
                    f'port {port.port}/{port.protocol}: cluster "{cluster}" names it '
                    f'"{port.name}", kept "{kept.name}" from "{owner}"'
                )
                explained.add((kept, cluster))
            else:
                merged.append(port)
                by_name[port.name] = by_number[number] = (port, cluster)
                continue
            # The same port as an older one, up to appProtocol.
            if kept.app_protocol != port.app_protocol:
                details.append(
                    f'port "{kept.name}" {kept.port}/{kept.protocol}: cluster "{cluster}" has '
                    f'{_show_app_protocol(port)}, kept {_show_app_protocol(kept)} from "{owner}"'
                )

    served = {r.cluster: {_port_id(p) for p in r.ports} for r in ordered}
    for port in merged:
        missing = [
            cluster
            for cluster, ids in served.items()
            if _port_id(port) not in ids and (port, cluster) not in explained
        ]
        if missing:
            details.append(
                f'port "{port.name}" {port.port}/{port.protocol}: '
                f"not exposed by {_show_clusters(missing)}"
            )

    winner_ports = set(ordered[0].ports)
    disagree = tuple(r.cluster for r in ordered[1:] if set(r.ports) != winner_ports)
    conflict = None
    if disagree:
        conflict = Conflict(
            reason="PortConflict", field="ports", clusters=disagree, detail="; ".join(details)
        )
    return tuple(merged), conflict


def _winner_field_conflicts(ordered: Sequence[ExportRecord]) -> list[Conflict]:
    winner, others = ordered[0], ordered[1:]
    conflicts = []
    for reason, field, value in _WINNER_FIELDS:
        if reason in _AFFINITY_REASONS and winner.type == "Headless":
            continue
        compared = others
        if reason == "SessionAffinityConfigConflict":
            compared = [r for r in others if r.session_affinity == winner.session_affinity]
        by_value: dict[str, list[str]] = {}
        for record in compared:
            if value(record) != value(winner):
                by_value.setdefault(_show(value(record)), []).append(record.cluster)
        if by_value:
            has = ", ".join(
                f"{_show_clusters(clusters)} {'has' if len(clusters) == 1 else 'have'} {shown}"
                for shown, clusters in by_value.items()
            )
            conflicts.append(
                Conflict(
                    reason=reason,
                    field=field,
                    clusters=tuple(c for cs in by_value.values() for c in cs),
                    detail=f'{field}: {has}, kept {_show(value(winner))} from "{winner.cluster}"',
                )
            )
    return conflicts


def _intersect_families(
    ordered: Sequence[ExportRecord],
) -> tuple[tuple[str, ...], Conflict | None]:
    families: tuple[str, ...] | None = None
    skipped: list[ExportRecord] = []
    for record in ordered:
        if not record.ip_families:
            continue
        if families is None:
            families = record.ip_families
            continue
        common = tuple(f for f in families if f in record.ip_families)
        if common:
            families = common
        else:
            skipped.append(record)
    if not skipped:
        return families or (), None
    detail = "; ".join(
        f'ipFamilies: cluster "{r.cluster}" has {_show(list(r.ip_families))}, '
        f"sharing no family with the others, and is left out of the intersection"
        for r in skipped
    )
    conflict = Conflict(
        reason="IPFamilyConflict",
        field="ipFamilies",
        clusters=tuple(r.cluster for r in skipped),
        detail=detail,
    )
    return families or (), conflict


def _show(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _show_app_protocol(port: Port) -> str:
    return "no appProtocol" if port.app_protocol is None else f'appProtocol "{port.app_protocol}"'


def _show_clusters(clusters: Sequence[str]) -> str:
    noun = "cluster" if len(clusters) == 1 else "clusters"
    return f"{noun} " + ", ".join(f'"{c}"' for c in clusters)


def export_conditions(
    outcome: MergeResult | InvalidExport,
    previous: Sequence[Mapping[str, Any]],
    now: datetime,
    generation: int | None = None,
    ready: tuple[bool, str, str] | None = None,
) -> list[dict[str, Any]]:
    """The status conditions (API dicts) for one constituent ServiceExport.

    `outcome` is the service's merge result, or this export's `InvalidExport`.

    * Valid export: ``Valid=True/Valid``, ``Ready=True/Exported`` and
      ``Conflict=True/<reasons>`` or ``Conflict=False/NoConflicts``. `ready`, as
      ``(status, reason, message)``, replaces the Ready condition, for example
      ``(False, "Failed", "...")`` when the ServiceImport cannot be written.
    * Invalid export: ``Valid=False/<reason>``, ``Ready=False/Pending`` and no
      Conflict condition; `ready` is ignored, since invalidity says more.

    Like ``meta.SetStatusCondition``: a condition keeps its lastTransitionTime from
    `previous` while its status is unchanged, updated conditions stay where they
    were in the list, new ones are appended, and conditions of other types are
    kept untouched. `generation` becomes observedGeneration. Raises
    ``pydantic.ValidationError`` if a `ready` reason breaks the CRD schema.
    """
    wanted: list[tuple[str, bool, str, str]]
    if isinstance(outcome, InvalidExport):
        wanted = [
            ("Valid", False, outcome.reason, outcome.message),
            ("Ready", False, "Pending", f"ServiceExport is not valid: {outcome.message}"),
        ]
    else:
        wanted = [
            ("Valid", True, "Valid", _VALID_MESSAGE),
            ("Ready", *(ready or (True, "Exported", _READY_MESSAGE))),
            (
                "Conflict",
                bool(outcome.conflicts),
                outcome.conflict_reason or "NoConflicts",
                outcome.conflict_message(),
            ),
        ]

    new: dict[str, dict[str, Any]] = {}
    for type_, is_true, reason, message in wanted:
        status = "True" if is_true else "False"
        new[type_] = Condition(
            type=type_,
            status=status,
            reason=reason,
            message=message,
            last_transition_time=_transition_time(previous, type_, status, now),
            observed_generation=generation,
        ).to_api()

    ours = {"Valid", "Ready", "Conflict"}
    conditions = []
    for condition in previous:
        kind = condition.get("type")
        if kind not in ours:
            conditions.append(dict(condition))
        elif kind in new:
            conditions.append(new.pop(kind))
        # else: a Conflict on an invalid export, or a duplicate; dropped.
    conditions.extend(new.values())
    return conditions


def _transition_time(
    previous: Sequence[Mapping[str, Any]], type_: str, status: str, now: datetime
) -> datetime:
    for condition in previous:
        if condition.get("type") == type_:
            if condition.get("status") == status:
                try:
                    return parse_time(condition["lastTransitionTime"])
                except (KeyError, TypeError, ValueError):
                    pass  # malformed: treat as a fresh transition
            break
    return now
