"""Report (pure): the `Report` models (the documented JSON/YAML structure),
``summarize`` (a `Snapshot` into a `Report`) and ``exit_code`` (``--fail-on``).

``summarize`` decides each service's merge with the controller's own pure code
(``mcs.core.plan.evaluate``), so the winner, the conflict reasons and the message are
exactly what a controller with the same cluster ids writes. It also compares that
verdict with the conditions written on each ServiceExport (``in_sync``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

import mcs
from mcs.core.api import Obj
from mcs.core.merge import MergeResult, export_conditions
from mcs.core.model import InvalidExport, parse_time
from mcs.core.namespaces import NamespacePolicy
from mcs.core.plan import ClusterView, Evaluation, evaluate
from mcs.status.collect import ControllerSnapshot, MemberSnapshot, Snapshot, key_of
from mcs.status.controllers import Installation, PodView
from mcs.status.global_services import status_rows

FailOn = Literal["unreachable", "conflict", "any", "never"]

# --------------------------------------------------------------------------- report (output)

_FROZEN = ConfigDict(frozen=True, extra="forbid")


ControllerView = Literal["connected", "disconnected", "withdrawn"]


class MemberReport(BaseModel):
    """One member. ``controller_view`` is the worst that any controller Pod found says
    of it (``withdrawn``: out of the merge; ``disconnected``: its watches are down;
    ``connected``), None when no controller says anything of it."""

    model_config = _FROZEN

    context: str
    cluster_id: str
    server: str
    reachable: bool
    error: str | None
    server_version: str | None
    exports: int | None
    imports: int | None
    controller_view: ControllerView | None = None


class ControllerReport(BaseModel):
    """A controller: a ``--controller`` URL, or a Pod found in a cluster (``url`` is
    then ``CONTEXT/NAMESPACE/POD``), with its view of each member by cluster id."""

    model_config = _FROZEN

    url: str
    reachable: bool
    ready: bool
    reason: str
    context: str | None = None
    pod: str | None = None
    mode: str | None = None
    leader: bool | None = None
    members: dict[str, ControllerView] = {}


class MembershipReport(BaseModel):
    """Where the members come from: ``controller`` (the Secret of each controller in
    ``controllers``), ``kubeconfig`` (every context) or ``contexts`` (``--contexts``);
    ``note`` says why when it is not the controller's configuration."""

    model_config = _FROZEN

    source: str
    controllers: list[str]
    note: str | None


class ConditionReport(BaseModel):
    model_config = _FROZEN

    status: str
    reason: str
    message: str


class ExportReport(BaseModel):
    model_config = _FROZEN

    cluster: str
    context: str
    created: str | None
    state: Literal["ok", "conflict", "invalid"]
    reason: str | None
    message: str | None
    winner: bool
    conditions: dict[str, ConditionReport]
    in_sync: bool


class PortReport(BaseModel):
    model_config = _FROZEN

    name: str
    protocol: str
    port: int | None
    app_protocol: str | None


ImportState = Literal["present", "missing", "no-namespace", "unknown", "unexpected"]


class ImportReport(BaseModel):
    model_config = _FROZEN

    cluster: str
    context: str
    state: ImportState
    type: str | None = None
    ips: list[str] = []
    ports: list[PortReport] = []
    clusters: list[str] = []


class ConflictReport(BaseModel):
    model_config = _FROZEN

    reasons: list[str]
    fields: list[str]
    winner: str
    clusters: list[str]
    message: str


ServiceState = Literal["ok", "conflict", "invalid", "missing", "pending", "unexported"]


class ServiceReport(BaseModel):
    model_config = _FROZEN

    namespace: str
    name: str
    state: ServiceState
    winner: str | None
    exports: list[ExportReport]
    imports: list[ImportReport]
    conflict: ConflictReport | None
    unknown: list[str]


class Summary(BaseModel):
    model_config = _FROZEN

    members: int
    unreachable: int
    member_errors: int
    services: int
    conflicts: int
    invalid: int
    missing_imports: int
    pending: int
    controllers_not_ready: int
    unreachable_by_controller: int = 0


class GlobalServiceReport(BaseModel):
    """One global Service (``service.cilium.io/global``) in one cluster.

    ``backends`` counts the ready endpoints this cluster's Service balances over,
    by source cluster (its own included); ``held_back`` are clusters whose
    backends affinity keeps out right now; ``notes`` what the controller says of it
    (Events on the Service).
    """

    model_config = _FROZEN

    cluster: str
    namespace: str
    name: str
    is_global: bool
    shared: bool
    affinity: str
    backends: dict[str, int]
    held_back: list[str]
    notes: list[str]


class Report(BaseModel):
    """The whole status; ``model_dump(mode="json")`` is the documented JSON structure.
    ``global_services`` was added after the first version: readers of the older
    structure see one more key and nothing else changed."""

    model_config = _FROZEN

    members: list[MemberReport]
    controllers: list[ControllerReport]
    services: list[ServiceReport]
    summary: Summary
    global_services: list[GlobalServiceReport] = []
    version: str = mcs.__version__
    """The mcs release that made the report (``mcs --version``)."""
    membership: MembershipReport | None = None


# --------------------------------------------------------------------------- summarize (pure)

# Only the condition types and fields compared for ``in_sync``: Ready may rightly
# differ (the writer sets it to Failed when an object it does not own is in the way).
_COMPARED = ("Valid", "Conflict")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def summarize(snapshot: Snapshot, policy: NamespacePolicy | None = None) -> Report:
    """The report for ``snapshot``. Pure and total: never raises on what an API
    server can return, whatever the members hold.

    Members whose cluster id repeats an earlier member's get an ``error`` and take
    no part in the services (the merge allows one export per cluster). Services are
    every ``(namespace, name)`` with a ServiceExport or a ServiceImport in a
    readable member. Global Services are judged under the namespace ``policy``
    (default: the controller's default policy).
    """
    policy = policy or NamespacePolicy()
    controllers = [_controller(c) for c in snapshot.controllers]
    controllers += [_pod(i, p) for i in snapshot.installations for p in i.pods]
    members: list[MemberReport] = []
    usable: list[MemberSnapshot] = []
    owner: dict[str, str] = {}
    for m in snapshot.members:
        error = m.error
        if m.reachable:
            if m.cluster_id in owner:
                error = (
                    f'cluster id "{m.cluster_id}" is also the id of context '
                    f'"{owner[m.cluster_id]}"; this member is left out'
                )
            else:
                owner[m.cluster_id] = m.context
                usable.append(m)
        members.append(
            MemberReport(
                context=m.context,
                cluster_id=m.cluster_id,
                server=m.server,
                reachable=m.reachable,
                error=error,
                server_version=m.server_version,
                exports=len(m.exports) if m.reachable else None,
                imports=len(m.imports) if m.reachable else None,
                controller_view=_worst(c.members.get(m.cluster_id) for c in controllers),
            )
        )
    used = {m.context for m in usable}
    unknown = [m.context for m in snapshot.members if m.context not in used]

    keys: set[tuple[str, str]] = set()
    for m in usable:
        keys.update(key_of(o) for o in (*m.exports, *m.imports))
    indexed = [_Indexed.of(m) for m in usable]
    services = [_service(ns, name, indexed, snapshot.members, unknown) for ns, name in sorted(keys)]

    summary = Summary(
        members=len(members),
        unreachable=sum(not m.reachable for m in members),
        member_errors=sum(m.reachable and m.error is not None for m in members),
        services=len(services),
        conflicts=sum(s.conflict is not None for s in services),
        invalid=sum(e.state == "invalid" for s in services for e in s.exports),
        missing_imports=sum(i.state == "missing" for s in services for i in s.imports),
        pending=sum(not e.in_sync for s in services for e in s.exports),
        controllers_not_ready=sum(not c.ready for c in controllers),
        unreachable_by_controller=sum(
            m.controller_view in ("disconnected", "withdrawn") for m in members
        ),
    )
    return Report(
        members=members,
        controllers=controllers,
        services=services,
        summary=summary,
        global_services=_global_services(usable, policy),
        membership=MembershipReport(
            source=snapshot.source,
            controllers=[
                f"{i.context}/{i.namespace}/{i.deployment}" for i in snapshot.installations
            ],
            note=snapshot.note,
        ),
    )


_VIEW_ORDER: dict[str | None, int] = {None: 0, "connected": 1, "disconnected": 2, "withdrawn": 3}


def _worst(views: Iterable[ControllerView | None]) -> ControllerView | None:
    worst: ControllerView | None = None
    for v in views:
        if _VIEW_ORDER[v] > _VIEW_ORDER[worst]:
            worst = v
    return worst


def _pod(inst: Installation, pod: PodView) -> ControllerReport:
    """A controller Pod found in a cluster, and its view of each member."""
    members: dict[str, ControllerView] = {}
    for cluster in sorted({*pod.connected, *pod.withdrawn}):
        if pod.withdrawn.get(cluster):
            members[cluster] = "withdrawn"
        elif pod.connected.get(cluster) is False:
            members[cluster] = "disconnected"
        else:
            members[cluster] = "connected"
    return ControllerReport(
        url=f"{inst.context}/{inst.namespace}/{pod.name}",
        reachable=pod.ready is not None,
        ready=bool(pod.ready),
        reason=pod.reason,
        context=inst.context,
        pod=pod.name,
        mode=inst.mode or None,
        leader=pod.leader,
        members=members,
    )


def _global_services(
    members: Sequence[MemberSnapshot], policy: NamespacePolicy
) -> list[GlobalServiceReport]:
    """The global Services of the readable members, as the controller sees them
    (`mcs.status.global_services.status_rows`), under the namespace ``policy``."""
    rows = status_rows(
        services={m.cluster_id: m.services for m in members},
        slices={m.cluster_id: m.slices for m in members},
        excluded={
            m.cluster_id: policy.not_taking_part(m.namespace_objects, m.cluster_id) for m in members
        },
    )
    return [GlobalServiceReport.model_validate(dataclasses.asdict(r)) for r in rows]


@dataclass(frozen=True)
class _Indexed:
    """A readable member with its objects by key."""

    member: MemberSnapshot
    exports: dict[tuple[str, str], Obj]
    services: dict[tuple[str, str], Obj]
    imports: dict[tuple[str, str], Obj]

    @classmethod
    def of(cls, m: MemberSnapshot) -> _Indexed:
        return cls(
            m,
            {key_of(o): o for o in m.exports},
            {key_of(o): o for o in m.services},
            {key_of(o): o for o in m.imports},
        )


def _service(
    ns: str,
    name: str,
    members: Sequence[_Indexed],
    all_members: Sequence[MemberSnapshot],
    unknown: list[str],
) -> ServiceReport:
    key = (ns, name)
    views = [
        ClusterView(
            cluster=m.member.cluster_id,
            namespace_exists=ns in m.member.namespaces,
            export=m.exports.get(key),
            service=m.services.get(key),
        )
        for m in members
    ]
    evaluation = evaluate(views)
    merged = evaluation.merged

    exports = sorted(
        (
            _export_report(m, m.exports[key], evaluation)
            for m in members
            if m.exports.get(key) is not None
        ),
        key=_export_order,
    )

    by_context = {m.member.context: m for m in members}
    imports: list[ImportReport] = []
    for snap in all_members:
        indexed = by_context.get(snap.context)
        if indexed is None:
            if merged is not None:
                imports.append(
                    ImportReport(cluster=snap.cluster_id, context=snap.context, state="unknown")
                )
            continue
        imports.extend(_import_report(indexed, key, exported=merged is not None))

    conflict = None
    if merged is not None and merged.conflicts:
        conflict = ConflictReport(
            reasons=[c.reason for c in merged.conflicts],
            fields=[c.field for c in merged.conflicts],
            winner=merged.winner,
            clusters=sorted({c for conflict in merged.conflicts for c in conflict.clusters}),
            message=merged.conflict_message(),
        )

    state: ServiceState
    if not exports:
        state = "unexported"
    elif evaluation.invalid:
        state = "invalid"
    elif conflict is not None:
        state = "conflict"
    elif any(i.state == "missing" for i in imports):
        state = "missing"
    elif not all(e.in_sync for e in exports):
        state = "pending"
    else:
        state = "ok"
    return ServiceReport(
        namespace=ns,
        name=name,
        state=state,
        winner=merged.winner if merged is not None else None,
        exports=exports,
        imports=imports,
        conflict=conflict,
        unknown=unknown,
    )


def _export_order(e: ExportReport) -> tuple[datetime, str]:
    try:
        created = parse_time(e.created) if e.created else datetime.max.replace(tzinfo=UTC)
    except ValueError:
        created = datetime.max.replace(tzinfo=UTC)
    return (created, e.cluster)


def _export_report(m: _Indexed, export: Obj, evaluation: Evaluation) -> ExportReport:
    cluster = m.member.cluster_id
    outcome: MergeResult | InvalidExport | None = (
        evaluation.invalid.get(cluster) or evaluation.merged
    )
    assert outcome is not None  # an export is either invalid or part of the merge
    observed = {
        str(c.get("type")): ConditionReport(
            status=str(c.get("status", "")),
            reason=str(c.get("reason", "")),
            message=str(c.get("message", "")),
        )
        for c in (export.get("status") or {}).get("conditions") or []
        if isinstance(c, Mapping)
    }
    in_sync = _in_sync(outcome, observed)

    state: Literal["ok", "conflict", "invalid"]
    reason: str | None
    message: str | None = None
    if isinstance(outcome, InvalidExport):
        state, reason, message = "invalid", outcome.reason, outcome.message
    elif outcome.conflicts:
        state, reason = "conflict", outcome.conflict_reason
    else:
        state, reason = "ok", None
    created = (export.get("metadata") or {}).get("creationTimestamp")
    return ExportReport(
        cluster=cluster,
        context=m.member.context,
        created=str(created) if created else None,
        state=state,
        reason=reason,
        message=message,
        winner=evaluation.merged is not None and evaluation.merged.winner == cluster,
        conditions=observed,
        in_sync=in_sync,
    )


def _in_sync(outcome: MergeResult | InvalidExport, observed: Mapping[str, ConditionReport]) -> bool:
    """Whether the observed Valid and Conflict conditions have the status and reason
    the controller writes for ``outcome`` (an invalid export has no Conflict)."""
    expected = {
        c["type"]: (c["status"], c["reason"])
        for c in export_conditions(outcome, [], _EPOCH)
        if c["type"] in _COMPARED
    }
    for type_ in _COMPARED:
        seen = observed.get(type_)
        got = None if seen is None else (seen.status, seen.reason)
        if got != expected.get(type_):
            return False
    return True


def _import_report(m: _Indexed, key: tuple[str, str], exported: bool) -> list[ImportReport]:
    cluster, context = m.member.cluster_id, m.member.context
    imp = m.imports.get(key)
    if imp is None:
        if not exported:
            return []
        state: ImportState = "missing" if key[0] in m.member.namespaces else "no-namespace"
        return [ImportReport(cluster=cluster, context=context, state=state)]
    spec = imp.get("spec") or {}
    status = imp.get("status") or {}
    return [
        ImportReport(
            cluster=cluster,
            context=context,
            state="present" if exported else "unexpected",
            type=spec.get("type"),
            ips=[str(ip) for ip in spec.get("ips") or []],
            ports=[
                PortReport(
                    name=str(p.get("name") or ""),
                    protocol=str(p.get("protocol") or "TCP"),
                    port=p.get("port"),
                    app_protocol=p.get("appProtocol"),
                )
                for p in spec.get("ports") or []
            ],
            clusters=[str(c.get("cluster")) for c in status.get("clusters") or []],
        )
    ]


def _controller(c: ControllerSnapshot) -> ControllerReport:
    text = c.text.strip()
    if c.status is None:
        return ControllerReport(url=c.url, reachable=False, ready=False, reason=text)
    if c.status == 200:
        return ControllerReport(url=c.url, reachable=True, ready=True, reason=text or "ok")
    reason = text.removeprefix("not ready: ") if c.status == 503 else f"HTTP {c.status}: {text}"
    return ControllerReport(url=c.url, reachable=True, ready=False, reason=reason)


def exit_code(report: Report, fail_on: FailOn) -> int:
    """1 when ``fail_on`` finds a problem in ``report``, else 0.

    ``unreachable``: a member is unreachable (from here, or for a controller: its
    watches are down or it is withdrawn) or misconfigured (member errors).
    ``conflict``: a service is in conflict. ``any``: either. ``never``: always 0.
    Invalid exports, missing imports, pending conditions and controllers that are
    not ready are reported but never fail the command.
    """
    s = report.summary
    unreachable = s.unreachable + s.member_errors + s.unreachable_by_controller > 0
    conflict = s.conflicts > 0
    failed = {
        "unreachable": unreachable,
        "conflict": conflict,
        "any": unreachable or conflict,
        "never": False,
    }[fail_on]
    return 1 if failed else 0
