"""Unit tests of the fault suite's oracle (tests/integration/oracle.py): its rules for
namespaces that exist in some clusters only, Terminating namespaces and withdrawn
members, on hand-built cluster states."""

from __future__ import annotations

from typing import Any

from tests.integration.oracle import (
    KUBE_NAME,
    MANAGED_BY,
    MCS_NAME,
    OURS,
    SOURCE,
    ClusterState,
    Export,
    check,
    expected_exporters,
    expected_merge,
)

NS, NAME = "ns", "web"
KEY = (NS, NAME)


def _meta(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": NS, "labels": labels or {}}


PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}]
VALID = [
    {"type": "Valid", "status": "True", "reason": "Valid"},
    {"type": "Conflict", "status": "False", "reason": "NoConflicts"},
]


def exporter(st: ClusterState, addr: str, created: str = "2026-01-01T00:00:00Z") -> ClusterState:
    """``st`` exporting ``ns/web`` with one endpoint ``addr`` (and the conditions of an
    export without conflicts)."""
    st.services[KEY] = {"kind": "Service", "metadata": _meta(NAME), "spec": {"ports": PORTS}}
    st.exports[KEY] = {
        "kind": "ServiceExport",
        "metadata": _meta(NAME) | {"creationTimestamp": created},
        "status": {"conditions": VALID},
    }
    st.slices.append(
        {
            "kind": "EndpointSlice",
            "metadata": _meta(f"{NAME}-src", {KUBE_NAME: NAME}),
            "endpoints": [{"addresses": [addr]}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        }
    )
    return st


def imported(st: ClusterState, sources: dict[str, str]) -> ClusterState:
    """``st`` holding what the controller writes for ``ns/web``: the import listing the
    ``sources`` (cluster -> endpoint address), the derived Service, one slice each."""
    ours = {MANAGED_BY: OURS}
    st.imports[KEY] = {
        "kind": "ServiceImport",
        "metadata": _meta(NAME, ours),
        "spec": {
            "type": "ClusterSetIP",
            "ports": PORTS,
            "ips": ["10.0.0.9"],
            "sessionAffinity": "None",
        },
        "status": {"clusters": [{"cluster": c} for c in sources]},
    }
    derived = ("ns", "derived-x")
    st.services[derived] = {
        "kind": "Service",
        "metadata": _meta("derived-x", ours | {MCS_NAME: NAME}),
        "spec": {"ports": PORTS, "clusterIPs": ["10.0.0.9"]},
    }
    for src, addr in sources.items():
        labels = ours | {MCS_NAME: NAME, SOURCE: src, KUBE_NAME: "derived-x"}
        st.slices.append(
            {
                "kind": "EndpointSlice",
                "metadata": _meta(f"{NAME}-{src}", labels),
                "endpoints": [{"addresses": [addr]}],
            }
        )
    return st


def test_imports_only_where_the_namespace_exists() -> None:
    state = {
        "a": imported(exporter(ClusterState(namespaces={NS}), "10.1.0.1"), {"a": "10.1.0.1"}),
        "b": ClusterState(),  # no namespace: nothing expected, nothing missing
    }
    assert check(state) == []
    state["b"].namespaces.add(NS)
    assert check(state) == [
        f"missing: ServiceImport {KEY} in b",
        f"missing: derived Service of {KEY} in b",
        f"missing: slices of {NS}/{NAME} from a in b",
    ]


def test_a_terminating_namespace_exports_while_its_exports_exist() -> None:
    """As the controller does: the exports of a namespace being deleted still count
    (the namespace controller deletes them), but it gets no imports, and what of ours
    is left in it is not checked (read_cluster does not keep it)."""
    a = exporter(ClusterState(terminating={NS}), "10.1.0.1")
    b = imported(ClusterState(namespaces={NS}), {"a": "10.1.0.1"})
    assert expected_exporters({"a": a, "b": b}) == {KEY: {"a"}}
    assert check({"a": a, "b": b}) == []
    gone = ClusterState(terminating={NS})  # the namespace controller deleted the export
    assert check({"a": gone, "b": b}) == [
        f"orphaned: ServiceImport {KEY} in b",
        f"orphaned: derived Service of {KEY} in b",
        f"orphaned: slices of {NS}/{NAME} from a in b",
    ]


def test_a_withdrawn_member_exports_nothing_and_is_not_checked() -> None:
    both = {"a": "10.1.0.1", "b": "10.2.0.1"}
    a = ClusterState()  # frozen: not read
    b = imported(exporter(ClusterState(namespaces={NS}), "10.2.0.1"), both)
    c = imported(ClusterState(namespaces={NS}), both)
    problems = check({"a": a, "b": b, "c": c}, frozenset({"a"}))
    assert f"wrong: ServiceImport {KEY} in c lists ['a', 'b'], expected ['b']" in problems
    assert f"orphaned: slices of {NS}/{NAME} from a in c" in problems
    assert not [p for p in problems if p.endswith(" in a")]
    only_b = {"b": "10.2.0.1"}
    b = imported(exporter(ClusterState(namespaces={NS}), "10.2.0.1"), only_b)
    c = imported(ClusterState(namespaces={NS}), only_b)
    assert check({"a": a, "b": b, "c": c}, frozenset({"a"})) == []
    # a key that only the withdrawn member exported has no import anywhere else
    alone = imported(ClusterState(namespaces={NS}), {"a": "10.1.0.1"})
    assert f"orphaned: ServiceImport {KEY} in c" in check({"a": a, "c": alone}, frozenset({"a"}))


# --------------------------------------------------------------------------- the merge


def _export(cluster: str, created: str = "2026-01-01T00:00:00Z", **kw: Any) -> Export:
    fields: dict[str, Any] = {
        "cluster": cluster,
        "created": created,
        "ports": (("http", "TCP", 80, None),),
        "headless": False,
        "affinity": "None",
        "timeout": None,
        "families": ("IPv4",),
        "traffic_policy": "Cluster",
        "distribution": None,
        "labels": (),
        "annotations": (),
    }
    return Export(**(fields | kw))


def test_the_oldest_export_decides_and_ties_go_to_the_smaller_cluster_id() -> None:
    a = _export("a", "2026-01-01T00:00:02Z", traffic_policy="Local")
    b = _export("b", "2026-01-01T00:00:01Z")
    c = _export("c", "2026-01-01T00:00:01Z", distribution="PreferClose")
    merged = expected_merge([a, c, b])
    assert merged.clusters == ["b", "c", "a"]
    assert (merged.traffic_policy, merged.distribution) == ("Cluster", None)
    assert merged.reasons == ["InternalTrafficPolicyConflict", "TrafficDistributionConflict"]


def test_ports_are_the_union_and_the_older_port_wins_a_clash() -> None:
    old = _export("b", "2026-01-01T00:00:01Z", ports=(("http", "TCP", 80, None),))
    new = _export(
        "a",
        "2026-01-01T00:00:02Z",
        ports=(("http", "TCP", 81, None), ("metrics", "TCP", 9090, None), ("web", "TCP", 80, None)),
    )
    merged = expected_merge([new, old])
    assert merged.ports == [("http", "TCP", 80, None), ("metrics", "TCP", 9090, None)]
    assert merged.reasons == ["PortConflict"]
    assert merged.exposed == {"b": {("http", "TCP")}, "a": {("metrics", "TCP")}}
    # the same ports in another order are no conflict; another appProtocol is one
    swapped = _export("a", ports=(("metrics", "TCP", 9090, None), ("http", "TCP", 80, None)))
    both = _export("b", ports=(("http", "TCP", 80, None), ("metrics", "TCP", 9090, None)))
    assert expected_merge([swapped, both]).reasons == []
    app = _export("b", ports=(("http", "TCP", 80, "http"),))
    assert expected_merge([_export("a"), app]).reasons == ["PortConflict"]


def test_session_affinity_is_compared_only_for_a_cluster_set_ip_winner() -> None:
    clientip = _export("b", affinity="ClientIP", timeout=10)
    assert expected_merge([_export("a"), clientip]).reasons == ["SessionAffinityConflict"]
    longer = _export("c", affinity="ClientIP", timeout=20)
    assert expected_merge([clientip, longer]).reasons == ["SessionAffinityConfigConflict"]
    merged = expected_merge([_export("a", headless=True), clientip])
    assert merged.reasons == ["TypeConflict"]
    assert (merged.headless, merged.affinity, merged.timeout) == (True, None, None)


def test_ip_families_narrow_and_one_sharing_none_conflicts() -> None:
    dual = _export("a", "2026-01-01T00:00:01Z", families=("IPv4", "IPv6"))
    v6 = _export("b", "2026-01-01T00:00:02Z", families=("IPv6",))
    v4 = _export("c", "2026-01-01T00:00:03Z", families=("IPv4",))
    assert expected_merge([dual, v6]).families == ["IPv6"]
    assert expected_merge([dual, v6]).reasons == []
    merged = expected_merge([dual, v6, v4])
    assert (merged.families, merged.reasons) == (["IPv6"], ["IPFamilyConflict"])


def test_reasons_are_joined_in_the_fixed_order() -> None:
    other = _export(
        "b",
        ports=(("http", "TCP", 81, None),),
        headless=True,
        families=("IPv6",),
        labels=(("k", "v"),),
        annotations=(("k", "v"),),
    )
    assert expected_merge([_export("a"), other]).reasons == [
        "PortConflict",
        "TypeConflict",
        "AnnotationsConflict",
        "LabelsConflict",
        "IPFamilyConflict",
    ]


# --------------------------------------------------------------------------- check


def test_check_reports_a_wrong_spec_and_wrong_conditions() -> None:
    a = imported(exporter(ClusterState(namespaces={NS}), "10.1.0.1"), {"a": "10.1.0.1"})
    assert check({"a": a}) == []
    a.imports[KEY]["spec"]["ports"] = [{"name": "http", "port": 81, "protocol": "TCP"}]
    a.exports[KEY]["status"]["conditions"] = [
        {"type": "Valid", "status": "True", "reason": "Valid"},
        {"type": "Conflict", "status": "True", "reason": "PortConflict"},
    ]
    problems = check({"a": a})
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"wrong: ServiceImport {KEY} in a: ports")
    assert problems[1].startswith(f"wrong: ServiceExport {KEY} in a: Conflict ('True', 'Port")
    a.services[("ns", "derived-x")]["spec"]["clusterIPs"] = ["10.0.0.8"]
    assert f"wrong: ServiceImport {KEY} in a: ips ['10.0.0.9'], the derived Service has" in (
        " ".join(check({"a": a}))
    )


def test_an_invalid_export_has_its_reason_and_no_conflict_condition() -> None:
    a = ClusterState(namespaces={NS})
    a.exports[KEY] = {"kind": "ServiceExport", "metadata": _meta(NAME), "status": {}}
    assert check({"a": a}) == [
        f"wrong: ServiceExport {KEY} in a: Valid (None, None), expected ('False', 'NoService')"
    ]
    a.services[KEY] = {"metadata": _meta(NAME), "spec": {"type": "ExternalName"}}
    a.exports[KEY]["status"] = {
        "conditions": [{"type": "Valid", "status": "False", "reason": "InvalidServiceType"}]
    }
    assert check({"a": a}) == []


def test_a_headless_import_has_no_derived_service_and_takes_every_endpoint() -> None:
    a = imported(exporter(ClusterState(namespaces={NS}), "10.1.0.1"), {"a": "10.1.0.1"})
    a.services[KEY]["spec"]["clusterIP"] = "None"
    a.imports[KEY]["spec"] = {"type": "Headless", "ports": PORTS}
    a.slices[0]["ports"] = []  # a source slice without ports: still imported
    assert check({"a": a}) == [f"orphaned: derived Service of {KEY} in a"]
    del a.services[("ns", "derived-x")]
    assert check({"a": a}) == []


def test_endpoints_of_a_cluster_serving_no_port_are_not_imported() -> None:
    a = exporter(ClusterState(namespaces={NS}), "10.1.0.1", "2026-01-01T00:00:01Z")
    b = exporter(ClusterState(namespaces={NS}), "10.2.0.1", "2026-01-01T00:00:02Z")
    b.services[KEY]["spec"]["ports"] = [{"name": "http", "port": 81, "protocol": "TCP"}]
    conflict = [VALID[0], {"type": "Conflict", "status": "True", "reason": "PortConflict"}]
    for st in (a, b):
        st.exports[KEY]["status"]["conditions"] = conflict
        imported(st, {"a": "10.1.0.1"})  # b's http is 81, the import's 80: b serves nothing
        st.imports[KEY]["status"]["clusters"].append({"cluster": "b"})
    assert check({"a": a, "b": b}) == []
    imported(a, {"a": "10.1.0.1", "b": "10.2.0.1"})
    assert f"orphaned: slices of {NS}/{NAME} from b in a" not in check({"a": a, "b": b})
    assert any(
        p.startswith(f"wrong: endpoints of {NS}/{NAME} from b in a")
        for p in check({"a": a, "b": b})
    )


def test_readiness_of_endpoints_is_checked() -> None:
    a = imported(exporter(ClusterState(namespaces={NS}), "10.1.0.1"), {"a": "10.1.0.1"})
    a.slices[0]["endpoints"][0]["conditions"] = {"ready": False}
    assert check({"a": a}) == [
        f"wrong: endpoints of {NS}/{NAME} from a in a: [('10.1.0.1', True)] != "
        "[('10.1.0.1', False)]"
    ]
