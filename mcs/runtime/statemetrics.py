"""Metrics of the controller's state, computed when ``/metrics`` is scraped.

The alerts in ``manifests/monitoring/`` need to know whether the caches are synced,
whether this instance leads and how many ServiceExports are in conflict or invalid.
Those are states, not events, so they are read from the controller at scrape time
(a ``prometheus_client`` custom collector) instead of being kept up to date at every
change:

* ``mcs_ready``: 1 when ``/readyz`` answers ok (every cache has listed), else 0.
* ``leader_election_master_status{name}``: client-go's name, 1 while this instance holds
  the Lease ``name``, else 0 (a standby); absent without ``--leader-elect`` (as in
  controller-runtime: one instance, which always writes).
* ``mcs_serviceexports{cluster, condition}``: ServiceExports in the caches of each
  local cluster whose condition says ``conflict`` (Conflict=True) or ``invalid``
  (Valid=False), as the controller last wrote them.
* ``mcs_serviceexport_conflicts{cluster, reason}``: of those in conflict, how many name
  each reason of ``mcs.core.merge.CONFLICT_REASONS`` (an export in conflict on ports and
  type counts under both).

A scrape decodes nothing: the exports' caches index each export under the states it
is in (``export_states``, index ``BY_STATE``), and a scrape counts the index. A
scrape that decoded every export was 10 MiB of the controller's peak memory while
3,000 exports converged (memray), and grew with the exports.

`samples` is pure; `ControllerMetrics` reads a running controller.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcs.core.api import Obj
from mcs.core.merge import CONFLICT_REASONS
from mcs.runtime.observability import REGISTRY


class _Leading(Protocol):
    leading: bool
    name: str


def _condition(obj: Obj, type_: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == type_:
            return c
    return None


def _status(obj: Obj, type_: str) -> str | None:
    c = _condition(obj, type_)
    return None if c is None else str(c.get("status"))


BY_STATE = "export-state"
STATES = ("conflict", "invalid")
REASON_STATES = {r: f"conflict:{r}" for r in CONFLICT_REASONS}
"""The index value of an export in conflict for each reason."""


def export_states(obj: Obj) -> tuple[str, ...]:
    """What an export's conditions say, among ``STATES`` and ``REASON_STATES``'s values
    (an index function)."""
    states = []
    conflict = _condition(obj, "Conflict")
    if conflict is not None and str(conflict.get("status")) == "True":
        states.append("conflict")
        reasons = str(conflict.get("reason") or "").split(",")
        states.extend(REASON_STATES[r] for r in CONFLICT_REASONS if r in reasons)
    if _status(obj, "Valid") == "False":
        states.append("invalid")
    return tuple(states)


def samples(
    ready: bool, leader: tuple[str, bool] | None, exports: Mapping[str, Mapping[str, int]]
) -> list[GaugeMetricFamily]:
    """The metric families for a controller that is ``ready`` (or not), with ``leader``
    ``(lease name, leading)`` (None without leader election), and
    ``exports[cluster][state]`` ServiceExports in each state per local cluster id."""
    ready_m = GaugeMetricFamily(
        "mcs_ready", "1 when /readyz answers ok (every cache has listed), else 0."
    )
    ready_m.add_metric([], 1.0 if ready else 0.0)
    leader_m = GaugeMetricFamily(
        "leader_election_master_status",
        "1 while this instance holds the leader-election Lease name, else 0 (a standby).",
        labels=["name"],
    )
    if leader is not None:
        leader_m.add_metric([leader[0]], 1.0 if leader[1] else 0.0)
    exports_m = GaugeMetricFamily(
        "mcs_serviceexports",
        "ServiceExports of a local cluster by what their conditions say: conflict "
        "(Conflict=True) or invalid (Valid=False).",
        labels=["cluster", "condition"],
    )
    reasons_m = GaugeMetricFamily(
        "mcs_serviceexport_conflicts",
        "ServiceExports of a local cluster in conflict (Conflict=True) by each reason "
        "their condition names (PortConflict, TypeConflict, ...).",
        labels=["cluster", "reason"],
    )
    for cluster, counts in sorted(exports.items()):
        for state in STATES:
            exports_m.add_metric([cluster, state], float(counts.get(state, 0)))
        for reason, state in REASON_STATES.items():
            reasons_m.add_metric([cluster, reason], float(counts.get(state, 0)))
    return [ready_m, leader_m, exports_m, reasons_m]


class ControllerMetrics(Collector):
    """Reads ``controller`` (a ``mcs.runtime.controller.Controller``) and ``elector`` (a
    ``LeaderElector`` or None) at each scrape."""

    def __init__(self, controller: Any, elector: _Leading | None) -> None:
        self._controller = controller
        self._elector = elector

    def describe(self) -> Iterator[Metric]:
        """The families without reading the controller (the registry asks at register)."""
        yield from samples(False, None, {})

    def collect(self) -> Iterator[Metric]:
        c = self._controller
        exports = {
            m.cluster_id: {
                s: m.exports.count(BY_STATE, s) for s in (*STATES, *REASON_STATES.values())
            }
            for m in c.members
            if m.local
        }
        e = self._elector
        yield from samples(c.ready() is None, None if e is None else (e.name, e.leading), exports)


@asynccontextmanager
async def registered(controller: Any, elector: _Leading | None) -> AsyncIterator[None]:
    """Serve the state metrics of ``controller`` on ``/metrics`` while inside."""
    collector = ControllerMetrics(controller, elector)
    REGISTRY.register(collector)
    try:
        yield
    finally:
        REGISTRY.unregister(collector)
