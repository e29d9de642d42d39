"""``mcs status``: the clusterset as one report (members, controllers, exported services).

Like ``cilium clustermesh status``, for the Multi-Cluster Services API. It only
reads; it never writes to a cluster.

The module is a functional core in a thin shell, like the controller:

* ``collect`` (I/O) reads every member cluster concurrently, each within one
  deadline (``time_limit``, seconds), and each controller's ``/readyz``; it returns a
  `Snapshot` of plain API dicts. A member that cannot be read is recorded with
  the error, never raised. Every ``ApiClient`` it opens is closed.
* ``summarize`` (pure) turns a `Snapshot` into a `Report`. It decides each
  service's merge with the controller's own pure code (``mcs.plan.evaluate``), so
  the winner, the conflict reasons and the message are exactly what a controller
  with the same cluster ids writes. It also compares that verdict with the
  conditions the controller has written on each ServiceExport (``in_sync``).
* ``render_text`` (pure) formats a `Report` for a terminal; ``render`` also
  gives JSON or YAML; ``exit_code`` (pure) applies ``--fail-on``.

JSON / YAML structure (``Report.model_dump(mode="json")``; keys are stable, lists
are ordered as described, absent values are ``null``)::

    {
      "members": [                      # in --contexts / kubeconfig order
        {"context": "cluster1", "cluster_id": "cluster1",
         "server": "https://127.0.0.1:6443",
         "reachable": true,             # false: a read failed or timed out
         "error": null,                 # why not reachable, or a reachable member's
                                        # misconfiguration (invalid/duplicate cluster id)
         "server_version": "v1.36.3",
         "exports": 1, "imports": 1}    # counts (in --namespace); null when unreachable
      ],
      "controllers": [                  # one per --controller, in the given order
        {"url": "http://127.0.0.1:8081", "reachable": true, "ready": false,
         "reason": "caches not synced: cluster1/exports"}   # "ok" when ready
      ],
      "services": [                     # sorted by namespace, name
        {"namespace": "demo", "name": "web",
         "state": "conflict",           # worst of: invalid, conflict, missing, pending,
                                        # ok; "unexported" = imports but no export
         "winner": "cluster1",          # cluster id of the oldest valid export, or null
         "exports": [                   # oldest first (creationTimestamp, then cluster id)
           {"cluster": "cluster1", "context": "cluster1",
            "created": "2026-01-02T03:04:05Z",
            "state": "conflict",        # ok | conflict | invalid (as the merge decides)
            "reason": "PortConflict",   # conflict reasons joined by ",", or the invalid
                                        # reason (NoService, InvalidServiceType), or null
            "message": null,            # why the export is invalid, else null
            "winner": true,
            "conditions": {             # as written on the ServiceExport; types absent
              "Valid": {"status": "True", "reason": "Valid", "message": "..."},
              "Ready": {...}, "Conflict": {...}},
            "in_sync": true}            # Valid and Conflict say what the merge decides
         ],
         "imports": [                   # members in order; only members with an import
                                        # when the service is not (validly) exported
           {"cluster": "cluster2", "context": "cluster2",
            "state": "present",         # present | missing (namespace exists, no import)
                                        # | no-namespace | unknown (member unreachable)
                                        # | unexpected (an import but no valid export)
            "type": "ClusterSetIP", "ips": ["10.102.0.10"],
            "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                       "app_protocol": null}],
            "clusters": ["cluster1", "cluster2"]}   # the import's status.clusters
         ],
         "conflict": {                  # null when the valid exports agree
           "reasons": ["PortConflict"], "fields": ["ports"], "winner": "cluster1",
           "clusters": ["cluster2"],    # the clusters that disagree with the winner
           "message": "Conflicting ports: 1/2 clusters disagree; ..."},
         "unknown": ["cluster3"]}       # contexts not read: their exports are unknown
      ],
      "summary": {"members": 2, "unreachable": 0, "member_errors": 0,
                  "services": 1, "conflicts": 1,   # services in conflict
                  "invalid": 0,                    # invalid ServiceExports
                  "missing_imports": 0, "pending": 0,   # exports not in_sync
                  "controllers_not_ready": 0}
    }

Exit codes: 0, or 1 when ``--fail-on`` finds a problem, 2 when the configuration
cannot work (kubeconfig, contexts, ``--cluster-id``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, TypeVar

import aiohttp
import yaml
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import BaseModel, ConfigDict

from mcs.controller import SERVICE_EXPORTS, SERVICE_IMPORTS
from mcs.informer import NAMESPACES, SERVICES, Obj, ResourceKind
from mcs.kubeapi import request_json
from mcs.members import (
    ConfigError,
    add_member_arguments,
    member_contexts,
    parse_cluster_ids,
    resolve_cluster_id,
)
from mcs.merge import MergeResult, export_conditions
from mcs.model import InvalidExport, parse_time
from mcs.plan import ClusterView, Evaluation, evaluate

__all__ = [
    "ConditionReport",
    "ConflictReport",
    "ControllerReport",
    "ControllerSnapshot",
    "ExportReport",
    "ImportReport",
    "MemberReport",
    "MemberSnapshot",
    "PortReport",
    "Report",
    "ServiceReport",
    "Snapshot",
    "Summary",
    "add_status_parser",
    "collect",
    "exit_code",
    "render",
    "render_text",
    "summarize",
]

FailOn = Literal["unreachable", "conflict", "any", "never"]
Output = Literal["text", "json", "yaml"]

DEFAULT_TIMEOUT = 5.0
_PAGE = 500

# --------------------------------------------------------------------------- snapshot (input)


@dataclass(frozen=True)
class MemberSnapshot:
    """What was read from one member cluster.

    ``reachable`` is False when a read failed or the deadline passed; ``error`` then
    says which read and why, and the object lists are empty. A reachable member may
    still carry an ``error`` (its ClusterProperty holds an invalid cluster id, in
    which case ``cluster_id`` is the context name). Objects are API dicts; the lists
    hold only what is in the namespace asked for (all namespaces by default), and
    ``namespaces`` the names of the namespaces that exist among them.
    """

    context: str
    cluster_id: str
    server: str = ""
    reachable: bool = True
    error: str | None = None
    server_version: str | None = None
    namespaces: frozenset[str] = frozenset()
    exports: tuple[Obj, ...] = ()
    services: tuple[Obj, ...] = ()
    imports: tuple[Obj, ...] = ()


@dataclass(frozen=True)
class ControllerSnapshot:
    """One controller's ``/readyz`` answer: the HTTP status and body, or
    ``status=None`` and the connection error as ``text``."""

    url: str
    status: int | None
    text: str


@dataclass(frozen=True)
class Snapshot:
    """Everything ``summarize`` needs; members in the order to report them."""

    members: tuple[MemberSnapshot, ...]
    controllers: tuple[ControllerSnapshot, ...] = field(default=())


# --------------------------------------------------------------------------- report (output)

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class MemberReport(BaseModel):
    model_config = _FROZEN

    context: str
    cluster_id: str
    server: str
    reachable: bool
    error: str | None
    server_version: str | None
    exports: int | None
    imports: int | None


class ControllerReport(BaseModel):
    model_config = _FROZEN

    url: str
    reachable: bool
    ready: bool
    reason: str


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


class Report(BaseModel):
    """The whole status; ``model_dump(mode="json")`` is the documented JSON structure."""

    model_config = _FROZEN

    members: list[MemberReport]
    controllers: list[ControllerReport]
    services: list[ServiceReport]
    summary: Summary


# --------------------------------------------------------------------------- summarize (pure)

# Only the condition types and fields compared for ``in_sync``: Ready may rightly
# differ (the writer sets it to Failed when an object it does not own is in the way).
_COMPARED = ("Valid", "Conflict")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def summarize(snapshot: Snapshot) -> Report:
    """The report for ``snapshot``. Pure and total: never raises on what an API
    server can return, whatever the members hold.

    Members whose cluster id repeats an earlier member's get an ``error`` and take
    no part in the services (the merge allows one export per cluster). Services are
    every ``(namespace, name)`` with a ServiceExport or a ServiceImport in a
    readable member.
    """
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
            )
        )
    used = {m.context for m in usable}
    unknown = [m.context for m in snapshot.members if m.context not in used]

    keys: set[tuple[str, str]] = set()
    for m in usable:
        keys.update(_key(o) for o in (*m.exports, *m.imports))
    indexed = [_Indexed.of(m) for m in usable]
    services = [_service(ns, name, indexed, snapshot.members, unknown) for ns, name in sorted(keys)]
    controllers = [_controller(c) for c in snapshot.controllers]

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
    )
    return Report(members=members, controllers=controllers, services=services, summary=summary)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


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
            {_key(o): o for o in m.exports},
            {_key(o): o for o in m.services},
            {_key(o): o for o in m.imports},
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

    ``unreachable``: a member is unreachable or misconfigured (member errors).
    ``conflict``: a service is in conflict. ``any``: either. ``never``: always 0.
    Invalid exports, missing imports, pending conditions and controllers that are
    not ready are reported but never fail the command.
    """
    s = report.summary
    unreachable = s.unreachable + s.member_errors > 0
    conflict = s.conflicts > 0
    failed = {
        "unreachable": unreachable,
        "conflict": conflict,
        "any": unreachable or conflict,
        "never": False,
    }[fail_on]
    return 1 if failed else 0


# --------------------------------------------------------------------------- render (pure)

_RESET = "\x1b[0m"
_GREEN, _YELLOW, _RED, _BOLD, _DIM = "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[1m", "\x1b[2m"


class _Paint:
    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and code and text else text


def _table(rows: Sequence[Sequence[tuple[str, str]]], paint: _Paint, indent: str) -> list[str]:
    """Aligned columns; each cell is (text, colour code). Rows may be shorter than
    others; padding stays outside the colour so that widths ignore the escapes."""
    columns = max(len(row) for row in rows)
    widths = [max(len(row[i][0]) for row in rows if i < len(row)) for i in range(columns)]
    lines = []
    for row in rows:
        line = indent
        for i, (text, code) in enumerate(row):
            line += paint(text, code) + " " * (widths[i] - len(text) + 2)
        lines.append(line.rstrip())
    return lines


_SERVICE_COLOUR = {
    "ok": _GREEN,
    "conflict": _YELLOW,
    "invalid": _RED,
    "missing": _RED,
    "pending": _YELLOW,
    "unexported": _YELLOW,
}
_IMPORT_COLOUR = {
    "present": _GREEN,
    "missing": _RED,
    "no-namespace": _DIM,
    "unknown": _RED,
    "unexpected": _YELLOW,
}


def render_text(report: Report, color: bool) -> str:
    """The human form of ``report``: members, controllers, services, summary.

    With ``color`` the states are ANSI-coloured: green ok, yellow conflict (and
    pending or unexpected), red unreachable, invalid or missing. Without it the
    text holds no escape sequence. Ends with a newline.
    """
    paint = _Paint(color)
    out: list[str] = [paint(f"Members ({len(report.members)})", _BOLD)]
    if report.members:
        rows = [[(h, "") for h in ("CONTEXT", "CLUSTER ID", "STATUS", "VERSION", "EXPORTS")]]
        rows[0] += [("IMPORTS", ""), ("SERVER", "")]
        notes: list[str] = []
        for m in report.members:
            status, code = ("ok", _GREEN) if m.reachable else ("unreachable", _RED)
            if m.reachable and m.error:
                status, code = "error", _RED
            rows.append(
                [
                    (m.context, ""),
                    (m.cluster_id, ""),
                    (status, code),
                    (m.server_version or "-", ""),
                    (_count(m.exports), ""),
                    (_count(m.imports), ""),
                    (m.server or "-", ""),
                ]
            )
            if m.error:
                notes.append(paint(f"  {m.context}: {m.error}", _RED))
        out += _table(rows, paint, "  ")
        out += notes

    if report.controllers:
        out += ["", paint(f"Controllers ({len(report.controllers)})", _BOLD)]
        rows = []
        for c in report.controllers:
            if c.ready:
                rows.append([(c.url, ""), ("ready", _GREEN), (c.reason, "")])
            elif c.reachable:
                rows.append([(c.url, ""), ("not ready", _YELLOW), (c.reason, "")])
            else:
                rows.append([(c.url, ""), ("unreachable", _RED), (c.reason, "")])
        out += _table(rows, paint, "  ")

    out += ["", paint(f"Services ({len(report.services)})", _BOLD)]
    if not report.services:
        out.append("  no exported services")
    for s in report.services:
        out += _render_service(s, paint)

    n = report.summary
    parts = [
        (f"{n.members} members", ""),
        (f"{n.unreachable} unreachable", _RED if n.unreachable else ""),
        (f"{n.member_errors} member errors", _RED if n.member_errors else ""),
        (f"{n.services} services", ""),
        (f"{n.conflicts} in conflict", _YELLOW if n.conflicts else ""),
        (f"{n.invalid} invalid exports", _RED if n.invalid else ""),
        (f"{n.missing_imports} missing imports", _RED if n.missing_imports else ""),
        (f"{n.pending} pending", _YELLOW if n.pending else ""),
    ]
    if report.controllers:
        parts.append(
            (
                f"{n.controllers_not_ready} controllers not ready",
                _YELLOW if n.controllers_not_ready else "",
            )
        )
    out += ["", paint("Summary: ", _BOLD) + ", ".join(paint(t, c) for t, c in parts)]
    return "\n".join(out) + "\n"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _render_service(s: ServiceReport, paint: _Paint) -> list[str]:
    head = f"  {s.namespace}/{s.name}  " + paint(s.state, _SERVICE_COLOUR[s.state])
    if s.conflict is not None:
        head += "  " + paint(",".join(s.conflict.reasons), _YELLOW)
    if s.winner is not None:
        head += f"  winner {s.winner}"
    out = [head]
    if s.exports:
        out.append("    exports (oldest first):")
        rows = []
        for e in s.exports:
            code = {"ok": _GREEN, "conflict": _YELLOW, "invalid": _RED}[e.state]
            state = e.state if e.reason is None else f"{e.state} {e.reason}"
            # In sync, Valid and Conflict repeat the state column: statuses suffice.
            conditions = " ".join(
                f"{t}={c.status}"
                + ("" if e.in_sync and (t != "Ready" or c.status == "True") else f"/{c.reason}")
                for t, c in e.conditions.items()
                if t in ("Valid", "Ready", "Conflict")
            )
            sync = "" if e.in_sync else "(not reconciled yet)"
            rows.append(
                [
                    (e.cluster, ""),
                    (e.created or "-", ""),
                    ("winner" if e.winner else "", ""),
                    (state, code),
                    (conditions or "no conditions", "" if conditions else _DIM),
                    (sync, _YELLOW),
                ]
            )
        out += _table(rows, paint, "      ")
        for e in s.exports:
            if e.message:
                out.append(paint(f"      {e.cluster}: {e.message}", _RED))
    if s.imports:
        out.append("    imports:")
        rows = []
        for i in s.imports:
            if i.state in ("present", "unexpected"):
                ports = ", ".join(_port(p) for p in i.ports) or "no ports"
                what = [
                    (i.type or "-", ""),
                    (", ".join(i.ips) or "-", ""),
                    (ports, ""),
                    (f"from {', '.join(i.clusters)}" if i.clusters else "", ""),
                ]
                if i.state == "unexpected":
                    what.append(("(no valid export)", _YELLOW))
            else:
                what = [(i.state, _IMPORT_COLOUR[i.state])]
            rows.append([(i.cluster, ""), *what])
        out += _table(rows, paint, "      ")
    if s.conflict is not None:
        out.append("    conflict: " + paint(s.conflict.message, _YELLOW))
    if s.unknown:
        out.append(paint(f"    exports unknown in: {', '.join(s.unknown)}", _RED))
    return out


def _port(p: PortReport) -> str:
    number = f"{p.port}/{p.protocol}"
    text = f"{p.name}:{number}" if p.name else number
    return f"{text} ({p.app_protocol})" if p.app_protocol else text


def render(report: Report, output: Output, color: bool = False) -> str:
    """``report`` as ``text`` (see `render_text`), ``json`` or ``yaml`` (the
    structure in the module docstring); always ends with a newline."""
    if output == "text":
        return render_text(report, color)
    data = report.model_dump(mode="json")
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


# --------------------------------------------------------------------------- collect (I/O)

T = TypeVar("T")


class _ReadFailed(Exception):
    """One read of a member failed; the message names the read and the cause."""


async def collect(
    kubeconfig: str,
    contexts: Sequence[str],
    cluster_ids: Mapping[str, str],
    namespace: str | None = None,
    controllers: Sequence[str] = (),
    time_limit: float = DEFAULT_TIMEOUT,
) -> Snapshot:
    """Read every member (``contexts`` of ``kubeconfig``) and every controller
    concurrently. Reads only; each member and each controller gets ``time_limit``
    seconds in all. ``cluster_ids`` are the ``--cluster-id`` overrides (context ->
    id, already validated). ``namespace`` limits exports, services, imports and
    namespaces to one namespace. Never raises for a member or a controller that
    cannot be read: the snapshot records the error.
    """
    members, ctls = await asyncio.gather(
        asyncio.gather(
            *(_read_member(kubeconfig, ctx, cluster_ids, namespace, time_limit) for ctx in contexts)
        ),
        asyncio.gather(*(_read_controller(url, time_limit) for url in controllers)),
    )
    return Snapshot(members=tuple(members), controllers=tuple(ctls))


async def _read_member(
    kubeconfig: str,
    context: str,
    cluster_ids: Mapping[str, str],
    namespace: str | None,
    time_limit: float,
) -> MemberSnapshot:
    fallback_id = cluster_ids.get(context, context)
    try:
        api = await config.new_client_from_config(
            config_file=kubeconfig, context=context, persist_config=False
        )
    except Exception as e:  # a broken context (missing cert file, bad server URL, ...)
        return MemberSnapshot(
            context, fallback_id, reachable=False, error=f"kubeconfig: {_describe(e)}"
        )
    server = str(api.configuration.host)
    try:
        async with asyncio.timeout(time_limit):
            # First a probe, so an unreachable server is reported as such (by the
            # first read), then the rest concurrently.
            version = await _guard("version", _get(api, "/version"))
            async with asyncio.TaskGroup() as tg:
                cid = tg.create_task(
                    _guard("cluster id", _cluster_id(api, context, dict(cluster_ids)))
                )
                nss = tg.create_task(_guard("namespaces", _list(api, NAMESPACES, namespace)))
                exports = tg.create_task(
                    _guard("serviceexports", _list(api, SERVICE_EXPORTS, namespace))
                )
                services = tg.create_task(_guard("services", _list(api, SERVICES, namespace)))
                imports = tg.create_task(
                    _guard("serviceimports", _list(api, SERVICE_IMPORTS, namespace))
                )
    except TimeoutError:
        error = f"no answer within {time_limit:g}s"
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=error)
    except _ReadFailed as e:
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=str(e))
    except ExceptionGroup as group:  # the first read that failed; the others were cancelled
        error = str(group.exceptions[0])
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=error)
    finally:
        await api.close()
    cluster_id, id_error = cid.result()
    return MemberSnapshot(
        context=context,
        cluster_id=cluster_id,
        server=server,
        error=id_error,
        server_version=str(version.get("gitVersion") or "") or None,
        namespaces=frozenset(_key(o)[1] for o in nss.result()),
        exports=tuple(exports.result()),
        services=tuple(services.result()),
        imports=tuple(imports.result()),
    )


async def _guard(what: str, aw: Awaitable[T]) -> T:
    """``await aw``, turning a failure into `_ReadFailed` naming ``what`` was read."""
    try:
        return await aw
    except Exception as e:
        hint = ""
        if (
            isinstance(e, ApiException)
            and e.status == 404
            and what in ("serviceexports", "serviceimports")
        ):
            hint = " (are the MCS CRDs installed?)"
        raise _ReadFailed(f"{what}: {_describe(e)}{hint}") from e


async def _cluster_id(
    api: ApiClient, context: str, overrides: dict[str, str]
) -> tuple[str, str | None]:
    """The member's id as ``mcs run`` resolves it, and an error if it is not valid."""
    try:
        return await resolve_cluster_id(api, context, overrides), None
    except ConfigError as e:
        return context, f"{e}; shown as {context!r}, and `mcs run` would refuse it"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _get(api: ApiClient, path: str, params: Mapping[str, str] | None = None) -> Obj:
    return await request_json(api, "GET", path, query=params)


async def _list(api: ApiClient, kind: ResourceKind, namespace: str | None) -> list[Obj]:
    """Every object of ``kind`` (in ``namespace`` if given), following ``continue``."""
    params: dict[str, str] = {"limit": str(_PAGE)}
    if namespace is not None and kind.namespaced:
        path = kind.path(namespace)
    else:
        path = kind.path()
        if namespace is not None:  # the namespace itself, for NAMESPACES
            params["fieldSelector"] = f"metadata.name={namespace}"
    items: list[Obj] = []
    while True:
        page = await _get(api, path, params)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        params["continue"] = token


async def _read_controller(url: str, time_limit: float) -> ControllerSnapshot:
    """GET ``url``/readyz; a controller's health server answers 200 ``ok`` or 503
    ``not ready: <reason>``."""
    target = url.rstrip("/") + "/readyz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=time_limit)) as session,
            session.get(target) as response,
        ):
            return ControllerSnapshot(url, response.status, await response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return ControllerSnapshot(url, None, _describe(e))


# --------------------------------------------------------------------------- the command


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mcs status``; its ``func`` returns the exit code."""
    p = sub.add_parser(
        "status",
        help="report the clusterset: members, controllers, exports, imports, conflicts",
        description="Read every member cluster and report its reachability, the "
        "exported services, their imports and conflicts. Reads only.",
    )
    p.set_defaults(func=_status)
    add_member_arguments(p)
    p.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="only this namespace (default: all namespaces)",
    )
    p.add_argument(
        "--controller",
        action="append",
        default=[],
        metavar="URL",
        help="a controller's health address, e.g. http://127.0.0.1:8081, to report "
        "whether its /readyz is ready; repeatable",
    )
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
    p.add_argument(
        "--fail-on",
        choices=["unreachable", "conflict", "any", "never"],
        default="any",
        help="exit 1 when a member is unreachable or misconfigured (unreachable), a "
        "service is in conflict (conflict), either (any, the default), or never",
    )
    p.add_argument("--no-color", action="store_true", help="no ANSI colours in text output")
    p.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds allowed to read each member and controller (default {DEFAULT_TIMEOUT:g})",
    )


def _status(args: argparse.Namespace) -> int:
    try:
        contexts = member_contexts(args.kubeconfig, args.contexts)
        cluster_ids = parse_cluster_ids(args.cluster_id)
    except ConfigError as e:
        print(f"mcs status: {e}", file=sys.stderr)
        return 2
    snapshot = asyncio.run(
        collect(
            args.kubeconfig,
            contexts,
            cluster_ids,
            namespace=args.namespace,
            controllers=args.controller,
            time_limit=args.timeout,
        )
    )
    report = summarize(snapshot)
    color = (
        args.output == "text"
        and not args.no_color
        and "NO_COLOR" not in os.environ
        and sys.stdout.isatty()
    )
    sys.stdout.write(render(report, args.output, color))
    return exit_code(report, args.fail_on)
