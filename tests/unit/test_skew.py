"""Version skew in per-cluster mode: an instance holds a key's results back while a
peer's ServiceImport says other merge rules, stamps its own import so the peers see its
version, reports it on the export, and writes as usual once the versions agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcs.core import api, events, merge, plan
from mcs.core import imports as imports_module
from mcs.core.writes import Write

NOW = datetime(2026, 12, 6, 3, 0, 0, tzinfo=UTC)
NS = {"metadata": {"name": "demo"}}
PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}]
OLD_CONDITIONS = [
    {
        "type": "Valid",
        "status": "True",
        "reason": "Valid",
        "message": "v",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
    {
        "type": "Ready",
        "status": "True",
        "reason": "Exported",
        "message": "r",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
    {
        "type": "Conflict",
        "status": "True",
        "reason": "PortConflict",
        "message": "old rules",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    },
]


def _export(created: str) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "web",
            "namespace": "demo",
            "uid": "u1",
            "creationTimestamp": created,
            "generation": 1,
        },
        "spec": {},
        "status": {"conditions": OLD_CONDITIONS},
    }


def _service(port: int = 80) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {"ports": [{**PORTS[0], "port": port}]},
    }


def _import(rules: str | None, ours: bool = True) -> dict[str, Any]:
    annotations = (
        {"team": "a"} if rules is None else {"team": "a", api.MERGE_RULES_ANNOTATION: rules}
    )
    labels = {api.MANAGED_BY: api.FIELD_MANAGER} if ours else {}
    fields = {
        "f:metadata": {
            "f:labels": {f"f:{k}": {} for k in labels},
            "f:annotations": {f"f:{k}": {} for k in annotations},
        }
    }
    return {
        "metadata": {
            "name": "web",
            "namespace": "demo",
            "labels": labels,
            "annotations": annotations,
            "managedFields": [
                {"manager": api.FIELD_MANAGER, "operation": "Apply", "fieldsV1": fields}
            ],
        },
        "spec": {"type": "ClusterSetIP", "ports": PORTS, "ips": ["10.0.0.9"]},
    }


def _members(local_import: Any, remote_import: Any, **remote: Any) -> list[plan.MemberView]:
    return [
        plan.MemberView(
            "c1",
            local=True,
            namespace=NS,
            export=_export("2026-01-01T00:00:00Z"),
            service=_service(),
            service_import=local_import,
        ),
        plan.MemberView(
            "c2",
            namespace=NS,
            export=_export("2026-01-02T00:00:00Z"),
            service=_service(81),
            service_import=remote_import,
            **remote,
        ),
    ]


def _writes(p: plan.KeyPlan) -> list[Write]:
    (c,) = p.clusters
    return [*c.derived, *c.then(None)]


def test_a_peer_with_other_rules_holds_the_results_back() -> None:
    p = plan.plan_key("demo", "web", _members(_import(merge.MERGE_RULES), _import("0")), NOW)
    assert p.skew == {"c2": "0"}
    w = _writes(p)
    assert [(x.verb, x.resource) for x in w] == [
        ("status", "serviceexports"),
        ("create", "events"),
    ], "no derived Service, import or slice is written"
    conditions = {c["type"]: c for c in w[0].status["conditions"]}
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == events.MERGE_RULES_MISMATCH
    assert "c2 (0)" in conditions["Ready"]["message"]
    # the merge's own verdicts stay as the last agreed rules left them
    assert conditions["Conflict"] == OLD_CONDITIONS[2]
    assert conditions["Valid"] == OLD_CONDITIONS[0]
    assert w[1].obj["reason"] == events.MERGE_RULES_MISMATCH and w[1].obj["type"] == "Warning"


def test_an_unstamped_import_of_ours_is_an_older_release() -> None:
    p = plan.plan_key("demo", "web", _members(_import(merge.MERGE_RULES), _import(None)), NOW)
    assert p.skew == {"c2": "none"}


def test_held_back_still_stamps_our_own_import_with_its_spec_unchanged() -> None:
    own = _import(None)
    p = plan.plan_key("demo", "web", _members(own, _import("0")), NOW)
    stamp = _writes(p)[0]
    assert (stamp.verb, stamp.resource) == ("apply", "serviceimports")
    assert stamp.obj["spec"] == own["spec"]
    assert stamp.obj["metadata"]["annotations"] == {
        "team": "a",
        api.MERGE_RULES_ANNOTATION: merge.MERGE_RULES,
    }
    assert stamp.obj["metadata"]["labels"] == {api.MANAGED_BY: api.FIELD_MANAGER}


@pytest.mark.parametrize(
    ("remote_import", "remote"),
    [
        (None, {}),  # the peer holds no import (yet)
        ("same", {}),
        ("unowned", {}),  # another implementation's import is none of our business
        ("old", {"withdrawn": True}),  # a withdrawn member takes no part
        ("old", {"local": True}),  # central mode: this instance writes both
    ],
)
def test_no_skew(remote_import: str | None, remote: dict[str, Any]) -> None:
    imp = {
        None: None,
        "same": _import(merge.MERGE_RULES),
        "unowned": _import("0", ours=False),
        "old": _import("0"),
    }[remote_import]
    p = plan.plan_key("demo", "web", _members(_import(merge.MERGE_RULES), imp, **remote), NOW)
    assert p.skew == {}
    written = [w for c in p.clusters for w in (*c.derived, *c.then(None))]
    assert any(w.resource == "services" and w.verb == "apply" for w in written)


def test_an_upgrade_one_member_at_a_time_ends_with_both_writing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """c1 upgraded first (rules "2") holds back and stamps; c2 still on "1" sees "2" and
    holds back too (nobody writes a result the other would not); c2 upgraded sees "2" on
    c1's import: no skew, and c1 then sees c2's stamp: both write again. No deadlock."""
    imports = {"c1": _import("1"), "c2": _import("1")}

    def instance(me: str, rules: str) -> plan.KeyPlan:
        monkeypatch.setattr(plan, "MERGE_RULES", rules)
        monkeypatch.setattr(imports_module, "MERGE_RULES", rules)
        other = "c2" if me == "c1" else "c1"
        members = [
            plan.MemberView(
                me,
                local=True,
                namespace=NS,
                export=_export("2026-01-01T00:00:00Z"),
                service=_service(),
                service_import=imports[me],
            ),
            plan.MemberView(other, namespace=NS, service_import=imports[other]),
        ]
        p = plan.plan_key("demo", "web", members, NOW)
        for w in _writes(p):  # what the server would now hold
            if w.resource == "serviceimports" and w.verb == "apply":
                imports[me] = {**imports[me], "metadata": w.obj["metadata"]}
        return p

    assert instance("c1", "2").skew == {"c2": "1"}
    assert imports["c1"]["metadata"]["annotations"][api.MERGE_RULES_ANNOTATION] == "2"
    assert instance("c2", "1").skew == {"c1": "2"}
    assert instance("c2", "2").skew == {}
    assert imports["c2"]["metadata"]["annotations"][api.MERGE_RULES_ANNOTATION] == "2"
    assert instance("c1", "2").skew == {}


def test_the_controller_counts_held_back_services_per_peer() -> None:
    from types import SimpleNamespace

    from mcs.runtime.controller import Controller
    from mcs.runtime.observability import REGISTRY

    def gauge(peer: str) -> float | None:
        return REGISTRY.get_sample_value("mcs_merge_rules_skew", {"peer_cluster": peer})

    shell = SimpleNamespace(_skewed={})
    Controller._report_skew(shell, ("demo", "web"), {"c9": "0"})  # type: ignore[arg-type]
    Controller._report_skew(shell, ("demo", "api"), {"c9": "0"})  # type: ignore[arg-type]
    assert gauge("c9") == 2
    Controller._report_skew(shell, ("demo", "web"), {})  # type: ignore[arg-type]
    assert gauge("c9") == 1
    Controller._report_skew(shell, ("demo", "api"), {})  # type: ignore[arg-type]
    assert gauge("c9") == 0
