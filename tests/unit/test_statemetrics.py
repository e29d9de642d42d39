"""The state metrics the alerts use, as Prometheus reads them from /metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from mcs.runtime.informer import Store
from mcs.runtime.statemetrics import BY_STATE, REASON_STATES, STATES, export_states, samples


def _export(valid: str, conflict: str | None, reason: str = "NoConflicts") -> dict[str, Any]:
    conditions = [{"type": "Valid", "status": valid}]
    if conflict is not None:
        conditions.append({"type": "Conflict", "status": conflict, "reason": reason})
    return {"metadata": {"name": "x"}, "status": {"conditions": conditions}}


class _Fixed(Collector):
    def __init__(self, *args: Any) -> None:
        self.args = args

    def collect(self) -> Any:
        return samples(*self.args)


def _exposition(*args: Any) -> list[str]:
    registry = CollectorRegistry()
    registry.register(_Fixed(*args))
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def _counts(*exports: dict[str, Any]) -> dict[str, int]:
    """What a scrape reads: the exports counted through a cache's state index."""
    store = Store({BY_STATE: export_states})
    for i, obj in enumerate(exports):
        store.upsert(("ns", str(i)), obj)
    return {s: store.count(BY_STATE, s) for s in (*STATES, *REASON_STATES.values())}


def test_exposition() -> None:
    exports = {
        "c2": _counts(
            _export("True", "True", "PortConflict,TypeConflict"),
            _export("True", "False", "PortConflict"),
            _export("False", None),
            _export("False", "True", "TypeConflict"),
        ),
        "c1": _counts(),
    }
    lines = _exposition(True, ("mcs-controller", False), exports)
    assert [x for x in lines if x.startswith('mcs_serviceexport_conflicts{cluster="c2"')] == [
        f'mcs_serviceexport_conflicts{{cluster="c2",reason="{r}"}} {n}'
        for r, n in [
            ("PortConflict", "1.0"),
            ("TypeConflict", "2.0"),
            ("SessionAffinityConflict", "0.0"),
            ("SessionAffinityConfigConflict", "0.0"),
            ("AnnotationsConflict", "0.0"),
            ("LabelsConflict", "0.0"),
            ("InternalTrafficPolicyConflict", "0.0"),
            ("TrafficDistributionConflict", "0.0"),
            ("IPFamilyConflict", "0.0"),
        ]
    ]
    assert lines[:6] == [
        "mcs_ready 1.0",
        'leader_election_master_status{name="mcs-controller"} 0.0',
        'mcs_serviceexports{cluster="c1",condition="conflict"} 0.0',
        'mcs_serviceexports{cluster="c1",condition="invalid"} 0.0',
        'mcs_serviceexports{cluster="c2",condition="conflict"} 2.0',
        'mcs_serviceexports{cluster="c2",condition="invalid"} 2.0',
    ]
    assert _exposition(False, ("lease", True), {})[:2] == [
        "mcs_ready 0.0",
        'leader_election_master_status{name="lease"} 1.0',
    ]
    # without leader election, as controller-runtime: no leader_election_master_status
    assert not any(s.startswith("leader_election") for s in _exposition(True, None, {}))


def test_the_state_index_follows_an_export_that_changes() -> None:
    store = Store({BY_STATE: export_states})
    store.upsert(("ns", "a"), _export("True", "True"))
    assert store.count(BY_STATE, "conflict") == 1
    store.upsert(("ns", "a"), _export("False", "False"))
    assert (store.count(BY_STATE, "conflict"), store.count(BY_STATE, "invalid")) == (0, 1)
    store.delete(("ns", "a"))
    assert store.count(BY_STATE, "invalid") == 0
