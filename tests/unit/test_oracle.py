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
    check,
    expected_exporters,
)

NS, NAME = "ns", "web"
KEY = (NS, NAME)


def _meta(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": NS, "labels": labels or {}}


def exporter(st: ClusterState, addr: str) -> ClusterState:
    """``st`` exporting ``ns/web`` with one endpoint ``addr``."""
    st.services[KEY] = {"kind": "Service", "metadata": _meta(NAME), "spec": {}}
    st.exports[KEY] = {"kind": "ServiceExport", "metadata": _meta(NAME)}
    st.slices.append(
        {
            "kind": "EndpointSlice",
            "metadata": _meta(f"{NAME}-src", {KUBE_NAME: NAME}),
            "endpoints": [{"addresses": [addr]}],
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
        "status": {"clusters": [{"cluster": c} for c in sources]},
    }
    derived = ("ns", "derived-x")
    st.services[derived] = {
        "kind": "Service",
        "metadata": _meta("derived-x", ours | {MCS_NAME: NAME}),
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
