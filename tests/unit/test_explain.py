"""``kubectl mcs explain`` without a cluster: the verdict on one cluster's export."""

from __future__ import annotations

from typing import Any

from mcs.core.explain import explain

NS, NAME = "demo", "web"


def _export(created: str, **spec: Any) -> dict[str, Any]:
    meta = {"namespace": NS, "name": NAME, "creationTimestamp": created}
    return {"metadata": meta, "spec": spec}


def _service(port: int, **spec: Any) -> dict[str, Any]:
    ports = [{"name": "http", "protocol": "TCP", "port": port}]
    return {"metadata": {"namespace": NS, "name": NAME}, "spec": {"ports": ports, **spec}}


OLD, NEW = "2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z"


def test_the_loser_sees_each_field_with_both_values_and_what_to_change() -> None:
    members = [
        ("c2", _export(NEW), _service(8080, clusterIP="None")),
        ("c1", _export(OLD), _service(80, sessionAffinity="None")),
        ("c3", None, _service(80)),
    ]
    e = explain(NS, NAME, "c2", members)
    assert (e.state, e.winner, e.winner_created, e.created) == ("conflict", "c1", OLD, NEW)
    assert e.clusters == ["c1", "c2"]
    assert [(c.reason, c.field, c.cluster, c.value, c.winner_value) for c in e.conflicts] == [
        ("PortConflict", "ports", "c2", "http:8080/TCP", "http:80/TCP"),
        ("TypeConflict", "type", "c2", "Headless", "ClusterSetIP"),
    ]
    assert e.conflicts[0].change == (
        'in cluster "c2", set the Service\'s spec.ports to http:80/TCP (as in "c1")'
    )


def test_the_winner_sees_who_disagrees() -> None:
    members = [
        ("c1", _export(OLD, exportedLabels={"tier": "web"}), _service(80)),
        ("c2", _export(NEW), _service(80)),
    ]
    e = explain(NS, NAME, "c1", members)
    assert (e.state, e.winner, e.losers) == ("conflict", "c1", ["c2"])
    [c] = e.conflicts
    assert (c.field, c.cluster, c.value, c.winner_value) == ("labels", "c2", "none", "tier=web")
    assert "spec.exportedLabels" in c.change


def test_agreeing_invalid_and_absent_exports() -> None:
    ok = [("c1", _export(OLD), _service(80)), ("c2", _export(NEW), _service(80))]
    assert explain(NS, NAME, "c2", ok).state == "ok"
    assert explain(NS, NAME, "c2", ok).conflicts == []
    missing = explain(
        NS, NAME, "c2", [("c1", _export(OLD), _service(80)), ("c2", _export(NEW), None)]
    )
    assert (missing.state, missing.reason, missing.winner) == ("invalid", "NoService", "c1")
    assert (
        missing.message is not None and "create it or delete this ServiceExport" in missing.message
    )
    absent = explain(NS, NAME, "c3", ok)
    assert (absent.state, absent.winner) == ("not-exported", "c1")
