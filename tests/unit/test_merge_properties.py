"""Property tests for mcs.core.merge over random sets of 1-6 exports.

The strategies draw from small value pools on purpose, so that clashes (same port
name, same number, equal timestamps, disjoint IP families) are common rather than
astronomically rare. The conditions are checked against the condition schema of
the ServiceExport CRD in crds/, not against our own model's validators.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcs.core.merge import CONFLICT_REASONS, MergeResult, export_conditions, merge
from mcs.core.model import ExportRecord, ImportSpec, InvalidExport, Port

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

ports = st.builds(
    Port,
    name=st.sampled_from(["", "http", "tcp", "udp"]),
    protocol=st.sampled_from(["TCP", "UDP", "SCTP"]),
    port=st.sampled_from([42, 43, 80]),
    app_protocol=st.sampled_from([None, "http", "h2c"]),
)
# A Service never repeats a port name or a (protocol, port), so neither do records.
port_lists = st.lists(
    ports, max_size=4, unique_by=(lambda p: p.name, lambda p: (p.protocol, p.port))
).map(tuple)
string_maps = st.dictionaries(
    st.sampled_from(["a", "b"]), st.sampled_from(["1", "2", "x" * 20000]), max_size=2
)


FIELDS: dict[str, st.SearchStrategy[Any]] = {
    # Few distinct seconds, so equal timestamps (and the tie-break) are frequent.
    "created": st.integers(0, 3).map(lambda s: T0 + timedelta(seconds=s)),
    "ports": port_lists,
    "type": st.sampled_from(["ClusterSetIP", "Headless"]),
    "session_affinity": st.sampled_from(["None", "ClientIP"]),
    "session_affinity_timeout": st.sampled_from([None, 42, 10800]),
    "ip_families": st.sampled_from([(), ("IPv4",), ("IPv6",), ("IPv4", "IPv6"), ("IPv6", "IPv4")]),
    "internal_traffic_policy": st.sampled_from([None, "Cluster", "Local"]),
    "traffic_distribution": st.sampled_from([None, "PreferClose"]),
    "exported_labels": string_maps,
    "exported_annotations": string_maps,
}


def records(cluster: str) -> st.SearchStrategy[ExportRecord]:
    return st.fixed_dictionaries(FIELDS).map(lambda f: ExportRecord(cluster=cluster, **f))


@st.composite
def export_sets(draw: st.DrawFn, min_size: int = 1) -> list[ExportRecord]:
    """1-6 exports, each a template with some fields redrawn (often few), so that sets
    differing in exactly one field are common."""
    clusters = draw(
        st.lists(
            st.sampled_from(["c1", "c2", "c10", "B", "a", "cluster-x"]),
            min_size=min_size,
            max_size=6,
            unique=True,
        )
    )
    template = draw(records("template"))
    exports = []
    for cluster in clusters:
        changed = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True))
        update = {field: draw(FIELDS[field]) for field in changed}
        exports.append(template.model_copy(update={**update, "cluster": cluster}))
    return exports


def expected_reasons(exports: list[ExportRecord], winner: ExportRecord) -> set[str]:
    """The conflict reasons the rules in mcs.core.merge's docstring call for, written
    independently of its code: a reason is due iff two exports differ in its field."""

    def differ(value: Callable[[ExportRecord], object]) -> bool:
        return len({repr(value(r)) for r in exports}) > 1

    same_affinity = [r for r in exports if r.session_affinity == winner.session_affinity]
    due = {
        "PortConflict": differ(lambda r: sorted(r.ports, key=repr)),
        "TypeConflict": differ(lambda r: r.type),
        "SessionAffinityConflict": winner.type == "ClusterSetIP"
        and differ(lambda r: r.session_affinity),
        "SessionAffinityConfigConflict": winner.type == "ClusterSetIP"
        and len({r.session_affinity_timeout for r in same_affinity}) > 1,
        "AnnotationsConflict": differ(lambda r: sorted(r.exported_annotations.items())),
        "LabelsConflict": differ(lambda r: sorted(r.exported_labels.items())),
        "InternalTrafficPolicyConflict": differ(lambda r: r.internal_traffic_policy or "Cluster"),
        "TrafficDistributionConflict": differ(lambda r: r.traffic_distribution),
        "IPFamilyConflict": any(
            a.ip_families and b.ip_families and not set(a.ip_families) & set(b.ip_families)
            for a in exports
            for b in exports
        ),
    }
    return {reason for reason, is_due in due.items() if is_due}


def _condition_schemas() -> list[dict[str, Any]]:
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "serviceexports.yaml").read_text())
    return [
        v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]["items"]
        for v in crd["spec"]["versions"]
    ]


CONDITION_SCHEMAS = _condition_schemas()
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def assert_schema_valid(condition: dict[str, Any]) -> None:
    """Check one condition against every served version's schema (the keywords it uses)."""
    for schema in CONDITION_SCHEMAS:
        assert set(schema["required"]) <= condition.keys()
        assert condition.keys() <= schema["properties"].keys()
        for key, value in condition.items():
            rule = schema["properties"][key]
            if rule["type"] == "string":
                assert isinstance(value, str)
                assert rule.get("minLength", 0) <= len(value) <= rule.get("maxLength", len(value))
                if "pattern" in rule:
                    assert re.search(rule["pattern"], value), (key, value)
                if "enum" in rule:
                    assert value in rule["enum"]
                if rule.get("format") == "date-time":
                    assert RFC3339.fullmatch(value)
            else:
                assert rule["type"] == "integer"
                assert isinstance(value, int)
                assert value >= rule.get("minimum", value)


def condition(conditions: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = (c for c in conditions if c["type"] == kind)
    return found


@given(exports=export_sets(), data=st.data())
def test_result_is_independent_of_input_order(exports: list[ExportRecord], data: Any) -> None:
    """Every instance computes the same import, whatever order its caches return."""
    shuffled = data.draw(st.permutations(exports))
    assert merge(shuffled) == merge(exports)


@given(record=records("c1"))
def test_single_export_merges_to_itself(record: ExportRecord) -> None:
    """One export is imported as it is, with Conflict=False."""
    result = merge([record])
    clusterset_ip = record.type == "ClusterSetIP"
    assert result.spec == ImportSpec(
        type=record.type,
        ports=record.ports,
        session_affinity=record.session_affinity if clusterset_ip else None,
        session_affinity_timeout=record.session_affinity_timeout if clusterset_ip else None,
        ip_families=record.ip_families,
        internal_traffic_policy=record.internal_traffic_policy,
        traffic_distribution=record.traffic_distribution,
        labels=record.exported_labels,
        annotations=record.exported_annotations,
    )
    assert (result.winner, result.clusters, result.conflicts) == ("c1", ("c1",), ())
    assert result.exposed_ports == {"c1": record.ports}
    assert condition(export_conditions(result, [], T0), "Conflict")["status"] == "False"


@given(exports=export_sets())
def test_oldest_ports_always_present_and_result_has_no_duplicates(
    exports: list[ExportRecord],
) -> None:
    """The winner's ports are kept exactly; names and (protocol, port) stay unique."""
    result = merge(exports)
    winner = min(exports, key=lambda r: (r.created, r.cluster.encode()))
    assert result.winner == winner.cluster
    assert set(winner.ports) <= set(result.spec.ports)
    names = [p.name for p in result.spec.ports]
    numbers = [(p.protocol, p.port) for p in result.spec.ports]
    assert len(set(names)) == len(names)
    assert len(set(numbers)) == len(numbers)
    # The union: every port of every export is in the result, or clashes with one that is.
    for record in exports:
        for port in record.ports:
            assert port.name in names or (port.protocol, port.port) in numbers
    for cluster, exposed in result.exposed_ports.items():
        (own,) = (r.ports for r in exports if r.cluster == cluster)
        assert {(p.name, p.protocol, p.port) for p in exposed} <= {
            (p.name, p.protocol, p.port) for p in own
        }


@given(exports=export_sets(min_size=2))
def test_any_difference_is_a_conflict_on_every_export(exports: list[ExportRecord]) -> None:
    """Two exports that differ in a global property give Conflict=True, with that
    field's reason, on every export; exports that agree give Conflict=False."""
    result = merge(exports)
    winner = next(r for r in exports if r.cluster == result.winner)
    due = expected_reasons(exports, winner)
    reasons = [c.reason for c in result.conflicts]
    assert set(reasons) == due
    assert reasons == [r for r in CONFLICT_REASONS if r in due]
    # The conditions depend on the merge result alone, so every export gets the same.
    conflict = condition(export_conditions(result, [], T0), "Conflict")
    assert conflict["status"] == ("True" if due else "False")
    assert conflict["reason"] == (",".join(reasons) or "NoConflicts")
    assert all(result.winner not in c.clusters for c in result.conflicts)


def expected_families(exports: list[ExportRecord]) -> tuple[str, ...]:
    """The IP families the design calls for: the oldest export's that has any, in its
    order, narrowed by each later export (oldest first) sharing at least one of them;
    an export sharing none is left out (and is an IPFamilyConflict)."""
    families: tuple[str, ...] = ()
    for r in sorted(exports, key=lambda r: (r.created, r.cluster.encode())):
        if not r.ip_families:
            continue
        if not families:
            families = r.ip_families
        elif set(families) & set(r.ip_families):
            families = tuple(f for f in families if f in r.ip_families)
    return families


@given(exports=export_sets(min_size=2))
def test_the_oldest_export_decides_the_import(exports: list[ExportRecord]) -> None:
    """With several exports, the import takes the oldest one's type, session affinity
    (with its timeout; neither for a Headless import), traffic policies and exported
    metadata, and the IP families of the intersection rule; every exporting cluster is
    listed, oldest first."""
    result = merge(exports)
    ordered = sorted(exports, key=lambda r: (r.created, r.cluster.encode()))
    winner = ordered[0]
    spec = result.spec
    assert result.clusters == tuple(r.cluster for r in ordered)
    assert spec.type == winner.type
    if winner.type == "ClusterSetIP":
        assert spec.session_affinity == winner.session_affinity
        assert spec.session_affinity_timeout == winner.session_affinity_timeout
    else:
        assert (spec.session_affinity, spec.session_affinity_timeout) == (None, None)
    assert spec.internal_traffic_policy == winner.internal_traffic_policy
    assert spec.traffic_distribution == winner.traffic_distribution
    assert (spec.labels, spec.annotations) == (
        winner.exported_labels,
        winner.exported_annotations,
    )
    assert spec.ip_families == expected_families(exports)


outcomes: st.SearchStrategy[MergeResult | InvalidExport] = st.one_of(
    export_sets().map(merge),
    st.builds(
        InvalidExport,
        cluster=st.just("c1"),
        reason=st.sampled_from(["NoService", "InvalidServiceType"]),
        message=st.text(max_size=30) | st.just("é" * 40000),
    ),
)
previous_conditions = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["Valid", "Ready", "Conflict", "example.com/Other"]),
            "status": st.sampled_from(["True", "False", "Unknown"]),
            "reason": st.sampled_from(["Valid", "Exported", "PortConflict", "Whatever"]),
            "message": st.text(max_size=20),
            "lastTransitionTime": st.sampled_from(["2025-12-31T23:59:59Z", "2026-01-01T00:00:00Z"]),
        }
    ),
    max_size=4,
    unique_by=lambda c: c["type"],
)


@given(
    outcome=outcomes,
    previous=previous_conditions,
    seconds=st.integers(0, 10**6),
    generation=st.none() | st.integers(0, 2**63 - 1),
)
def test_conditions_satisfy_the_crd_schema(
    outcome: MergeResult | InvalidExport,
    previous: list[dict[str, Any]],
    seconds: int,
    generation: int | None,
) -> None:
    """Whatever the merge decides, the API server accepts the conditions."""
    now = T0 + timedelta(seconds=seconds, microseconds=123)
    conditions = export_conditions(outcome, previous, now, generation)
    types = [c["type"] for c in conditions]
    assert len(set(types)) == len(types)
    valid = isinstance(outcome, MergeResult)
    expected = {"Valid", "Ready", "Conflict"} if valid else {"Valid", "Ready"}
    assert {"Valid", "Ready", "Conflict"} & set(types) == expected
    for c in conditions:
        assert_schema_valid(c)
    # Other controllers' conditions pass through untouched.
    assert [c for c in conditions if c["type"].startswith("example.com/")] == [
        c for c in previous if c["type"].startswith("example.com/")
    ]


@given(
    first=outcomes,
    second=outcomes,
    seconds=st.integers(1, 10**6),
)
def test_transition_time_kept_while_status_unchanged(
    first: MergeResult | InvalidExport, second: MergeResult | InvalidExport, seconds: int
) -> None:
    """lastTransitionTime moves only when a condition's status moves; a repeat is a no-op."""
    later = T0 + timedelta(seconds=seconds)
    before = export_conditions(first, [], T0)
    after = export_conditions(second, before, later)
    for c in after:
        old = [b for b in before if b["type"] == c["type"]]
        unchanged = bool(old) and old[0]["status"] == c["status"]
        expected = "2026-01-02T03:04:05Z" if unchanged else later.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert c["lastTransitionTime"] == expected
    assert export_conditions(second, after, later + timedelta(hours=1)) == after
