"""Scenario tests for mcs.core.merge: Cilium's conflict matrix, the conformance cases, and
the rules the KEP leaves to the implementation. Scenarios are data; each test checks
the ServiceImport spec and the ServiceExport conditions written out in full."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mcs.core.merge import Conflict, MergeResult, export_conditions, merge
from mcs.core.model import ExportRecord, InvalidExport, Port, record_from_objects

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OLDER = NOW - timedelta(days=1)
NEWER = NOW + timedelta(days=1)
LATER = NOW + timedelta(minutes=5)

VALID = {
    "type": "Valid",
    "status": "True",
    "reason": "Valid",
    "message": "The Service exists and its type can be exported.",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
}
READY = {
    "type": "Ready",
    "status": "True",
    "reason": "Exported",
    "message": "The Service is exported to the clusterset.",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
}
NO_CONFLICT = {
    "type": "Conflict",
    "status": "False",
    "reason": "NoConflicts",
    "message": "No conflicts: every constituent export agrees with the oldest one.",
    "lastTransitionTime": "2026-01-02T03:04:05Z",
}


def conflict_condition(reason: str, message: str) -> dict[str, Any]:
    return {**NO_CONFLICT, "status": "True", "reason": reason, "message": message}


def rec(cluster: str, created: datetime, **fields: Any) -> ExportRecord:
    """A ClusterSetIP export of one TCP port "myport" 4242, with `fields` changed."""
    base: dict[str, Any] = {
        "cluster": cluster,
        "created": created,
        "ports": (Port(name="myport", port=4242),),
        "type": "ClusterSetIP",
        "ip_families": ("IPv4",),
    }
    return ExportRecord(**{**base, **fields})


def imported(result: MergeResult) -> dict[str, Any]:
    """What lands on the ServiceImport: spec, plus labels/annotations when any."""
    out: dict[str, Any] = {"spec": result.spec.to_api()}
    if result.spec.labels:
        out["labels"] = result.spec.labels
    if result.spec.annotations:
        out["annotations"] = result.spec.annotations
    return out


def tcp(name: str, port: int, **extra: Any) -> dict[str, Any]:
    api = {"name": name, "protocol": "TCP", "port": port, **extra}
    return api if name else {k: v for k, v in api.items() if k != "name"}


def clusterset_ip(*ports: dict[str, Any], **spec: Any) -> dict[str, Any]:
    """The spec dict of a ClusterSetIP import built from `rec` defaults."""
    return {
        "spec": {
            "ports": list(ports),
            "type": "ClusterSetIP",
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            **spec,
        }
    }


MYPORT = tcp("myport", 4242)


# --- Cilium's conflict matrix (cilium-mcs.md §1.8) -----------------------------------


@dataclass(frozen=True)
class Row:
    """One row of the matrix: the local and remote records differ only in `local`/`remote`."""

    id: str
    local: dict[str, Any]
    remote: dict[str, Any]
    reason: str
    field: str
    if_remote_older: dict[str, Any]  # what is imported when the remote export wins
    detail_if_remote_older: str
    if_local_older: dict[str, Any]
    detail_if_local_older: str


MATRIX = [
    Row(
        id="conflict-type",
        local={},
        remote={"type": "Headless"},
        reason="TypeConflict",
        field="type",
        if_remote_older={"spec": {"ports": [MYPORT], "type": "Headless", "ipFamilies": ["IPv4"]}},
        detail_if_remote_older=(
            'type: cluster "local" has "ClusterSetIP", kept "Headless" from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT),
        detail_if_local_older=(
            'type: cluster "remote" has "Headless", kept "ClusterSetIP" from "local"'
        ),
    ),
    Row(
        id="conflict-port-name",
        local={"ports": (Port(name="", port=4242),)},
        remote={"ports": (Port(name="remote", port=4242),)},
        reason="PortConflict",
        field="ports",
        if_remote_older=clusterset_ip(tcp("remote", 4242)),
        detail_if_remote_older=(
            'port 4242/TCP: cluster "local" names it "", kept "remote" from "remote"'
        ),
        if_local_older=clusterset_ip(tcp("", 4242)),
        detail_if_local_older=(
            'port 4242/TCP: cluster "remote" names it "remote", kept "" from "local"'
        ),
    ),
    Row(
        id="conflict-port-appprotocol",
        local={},
        remote={"ports": (Port(name="myport", port=4242, app_protocol="something-else"),)},
        reason="PortConflict",
        field="ports",
        if_remote_older=clusterset_ip(tcp("myport", 4242, appProtocol="something-else")),
        detail_if_remote_older=(
            'port "myport" 4242/TCP: cluster "local" has no appProtocol, '
            'kept appProtocol "something-else" from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT),
        detail_if_local_older=(
            'port "myport" 4242/TCP: cluster "remote" has appProtocol "something-else", '
            'kept no appProtocol from "local"'
        ),
    ),
    Row(
        id="conflict-duplicated-port-name",
        local={},
        remote={"ports": (Port(name="myport", port=4243),)},
        reason="PortConflict",
        field="ports",
        if_remote_older=clusterset_ip(tcp("myport", 4243)),
        detail_if_remote_older=(
            'port "myport": cluster "local" has 4242/TCP, kept 4243/TCP from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT),
        detail_if_local_older=(
            'port "myport": cluster "remote" has 4243/TCP, kept 4242/TCP from "local"'
        ),
    ),
    Row(
        id="conflict-port-union-1",
        local={"ports": (Port(name="myport1", port=4242),)},
        remote={"ports": (Port(name="myport1", port=4242), Port(name="myport2", port=4243))},
        reason="PortConflict",
        field="ports",
        if_remote_older=clusterset_ip(tcp("myport1", 4242), tcp("myport2", 4243)),
        detail_if_remote_older='port "myport2" 4243/TCP: not exposed by cluster "local"',
        if_local_older=clusterset_ip(tcp("myport1", 4242), tcp("myport2", 4243)),
        detail_if_local_older='port "myport2" 4243/TCP: not exposed by cluster "local"',
    ),
    Row(
        id="conflict-port-union-2",
        local={"ports": (Port(name="myport1", port=4242), Port(name="myport2", port=4243))},
        remote={"ports": (Port(name="myport1", port=4242),)},
        reason="PortConflict",
        field="ports",
        if_remote_older=clusterset_ip(tcp("myport1", 4242), tcp("myport2", 4243)),
        detail_if_remote_older='port "myport2" 4243/TCP: not exposed by cluster "remote"',
        if_local_older=clusterset_ip(tcp("myport1", 4242), tcp("myport2", 4243)),
        detail_if_local_older='port "myport2" 4243/TCP: not exposed by cluster "remote"',
    ),
    Row(
        id="conflict-session-affinity",
        local={"session_affinity": "None"},
        remote={"session_affinity": "ClientIP"},
        reason="SessionAffinityConflict",
        field="sessionAffinity",
        if_remote_older=clusterset_ip(MYPORT, sessionAffinity="ClientIP"),
        detail_if_remote_older=(
            'sessionAffinity: cluster "local" has "None", kept "ClientIP" from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT),
        detail_if_local_older=(
            'sessionAffinity: cluster "remote" has "ClientIP", kept "None" from "local"'
        ),
    ),
    Row(
        id="conflict-session-affinity-config",
        local={"session_affinity": "ClientIP", "session_affinity_timeout": 4242},
        remote={"session_affinity": "ClientIP", "session_affinity_timeout": 42},
        reason="SessionAffinityConfigConflict",
        field="sessionAffinityConfig",
        if_remote_older=clusterset_ip(
            MYPORT,
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 42}},
        ),
        detail_if_remote_older=(
            'sessionAffinityConfig: cluster "local" has 4242, kept 42 from "remote"'
        ),
        if_local_older=clusterset_ip(
            MYPORT,
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 4242}},
        ),
        detail_if_local_older=(
            'sessionAffinityConfig: cluster "remote" has 42, kept 4242 from "local"'
        ),
    ),
    Row(
        id="conflict-annotations",
        local={"exported_annotations": {"example.com/sync": "true"}},
        remote={"exported_annotations": {"example.com/sync": "true", "example.com/lb-l7": "true"}},
        reason="AnnotationsConflict",
        field="annotations",
        if_remote_older={
            **clusterset_ip(MYPORT),
            "annotations": {"example.com/sync": "true", "example.com/lb-l7": "true"},
        },
        detail_if_remote_older=(
            'annotations: cluster "local" has {"example.com/sync": "true"}, kept '
            '{"example.com/lb-l7": "true", "example.com/sync": "true"} from "remote"'
        ),
        if_local_older={**clusterset_ip(MYPORT), "annotations": {"example.com/sync": "true"}},
        detail_if_local_older=(
            'annotations: cluster "remote" has {"example.com/lb-l7": "true", '
            '"example.com/sync": "true"}, kept {"example.com/sync": "true"} from "local"'
        ),
    ),
    Row(
        id="conflict-labels",
        local={"exported_labels": {"my-label": "true"}},
        remote={"exported_labels": {"my-label": "true", "my-label2": "true"}},
        reason="LabelsConflict",
        field="labels",
        if_remote_older={
            **clusterset_ip(MYPORT),
            "labels": {"my-label": "true", "my-label2": "true"},
        },
        detail_if_remote_older=(
            'labels: cluster "local" has {"my-label": "true"}, kept '
            '{"my-label": "true", "my-label2": "true"} from "remote"'
        ),
        if_local_older={**clusterset_ip(MYPORT), "labels": {"my-label": "true"}},
        detail_if_local_older=(
            'labels: cluster "remote" has {"my-label": "true", "my-label2": "true"}, kept '
            '{"my-label": "true"} from "local"'
        ),
    ),
    Row(
        id="conflict-internal-traffic-policy",
        local={"internal_traffic_policy": "Local"},
        remote={},
        reason="InternalTrafficPolicyConflict",
        field="internalTrafficPolicy",
        if_remote_older=clusterset_ip(MYPORT),
        detail_if_remote_older=(
            'internalTrafficPolicy: cluster "local" has "Local", kept "Cluster" from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT, internalTrafficPolicy="Local"),
        detail_if_local_older=(
            'internalTrafficPolicy: cluster "remote" has "Cluster", kept "Local" from "local"'
        ),
    ),
    Row(
        id="conflict-traffic-distribution",
        local={"traffic_distribution": "PreferClose"},
        remote={},
        reason="TrafficDistributionConflict",
        field="trafficDistribution",
        if_remote_older=clusterset_ip(MYPORT),
        detail_if_remote_older=(
            'trafficDistribution: cluster "local" has "PreferClose", kept unset from "remote"'
        ),
        if_local_older=clusterset_ip(MYPORT, trafficDistribution="PreferClose"),
        detail_if_local_older=(
            'trafficDistribution: cluster "remote" has unset, kept "PreferClose" from "local"'
        ),
    ),
]


@pytest.mark.parametrize("remote_older", [True, False], ids=["remote-older", "local-older"])
@pytest.mark.parametrize("row", MATRIX, ids=[row.id for row in MATRIX])
def test_conflict_matrix(row: Row, remote_older: bool) -> None:
    """The oldest export wins the field, and both exports get the same Conflict=True."""
    local = rec("local", NOW, **row.local)
    remote = rec("remote", OLDER if remote_older else NEWER, **row.remote)
    winner, other = ("remote", "local") if remote_older else ("local", "remote")
    expected = row.if_remote_older if remote_older else row.if_local_older
    detail = row.detail_if_remote_older if remote_older else row.detail_if_local_older

    result = merge([local, remote])

    assert imported(result) == expected
    assert (result.winner, result.clusters) == (winner, (winner, other))
    assert result.conflicts == (
        Conflict(reason=row.reason, field=row.field, clusters=(other,), detail=detail),
    )
    message = (
        f"Conflicting {row.field}: 1/2 clusters disagree; using values from the oldest "
        f'export, in cluster "{winner}". {detail}.'
    )
    # Every constituent export, winner included, carries the same conditions.
    assert export_conditions(result, [], NOW) == [
        VALID,
        READY,
        conflict_condition(row.reason, message),
    ]


# --- conformance cases (mcs-api-spec.md §5.3) ----------------------------------------


def conformance_objects(
    created: str, *, labels: str = "", **spec: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The conformance suite's ServiceExport and Service `hello`, as the API returns
    them, with Service `spec` fields replaced and exported labels/annotations set to
    `labels` when given."""
    export: dict[str, Any] = {
        "apiVersion": "multicluster.x-k8s.io/v1beta1",
        "kind": "ServiceExport",
        "metadata": {
            "name": "hello",
            "namespace": "mcs-conformance-x7k2p",
            "creationTimestamp": created,
            "generation": 1,
            "labels": {"dummy-svcexport": "true"},
            "annotations": {"dummy-svcexport": "true"},
        },
    }
    if labels:
        export["spec"] = {
            "exportedLabels": {"dummy-exported-label": labels},
            "exportedAnnotations": {"dummy-exported-annotation": labels},
        }
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "hello",
            "namespace": "mcs-conformance-x7k2p",
            "creationTimestamp": created,
            "labels": {"dummy-svc": "true"},
            "annotations": {"dummy-svc": "true"},
        },
        "spec": {
            "selector": {"app": "hello"},
            "type": "ClusterIP",
            "clusterIP": "10.96.0.42",
            "clusterIPs": ["10.96.0.42"],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "PreferDualStack",
            "internalTrafficPolicy": "Cluster",
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
            "ports": [
                {"name": "tcp", "protocol": "TCP", "port": 42, "targetPort": 42},
                {"name": "udp", "protocol": "UDP", "port": 42, "targetPort": 42},
            ],
        },
    }
    service["spec"].update(copy.deepcopy(spec))
    return export, service


HELLO_TCP = {"name": "tcp", "protocol": "TCP", "port": 42}
HELLO_UDP = {"name": "udp", "protocol": "UDP", "port": 42}
HELLO_SPEC = {
    "ports": [HELLO_TCP, HELLO_UDP],
    "type": "ClusterSetIP",
    "sessionAffinity": "ClientIP",
    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
    "ipFamilies": ["IPv4"],
    "internalTrafficPolicy": "Cluster",
}
HEAD = 'using values from the oldest export, in cluster "c0".'

CONFORMANCE = [
    pytest.param(
        {},
        None,
        {"spec": HELLO_SPEC},
        NO_CONFLICT,
        id="9-ports-match-the-service",
    ),
    pytest.param(
        {"labels": "c0"},
        {"labels": "c1"},
        {
            "spec": HELLO_SPEC,
            "labels": {"dummy-exported-label": "c0"},
            "annotations": {"dummy-exported-annotation": "c0"},
        },
        conflict_condition(
            "AnnotationsConflict,LabelsConflict",
            f"Conflicting annotations, labels: 1/2 clusters disagree; {HEAD} "
            'annotations: cluster "c1" has {"dummy-exported-annotation": "c1"}, '
            'kept {"dummy-exported-annotation": "c0"} from "c0". '
            'labels: cluster "c1" has {"dummy-exported-label": "c1"}, '
            'kept {"dummy-exported-label": "c0"} from "c0".',
        ),
        id="3-conflicting-exported-labels",
    ),
    pytest.param(
        {},
        {
            "ports": [
                {"name": "tcp", "protocol": "TCP", "port": 42},
                {"name": "stcp", "protocol": "SCTP", "port": 142},
            ]
        },
        {
            "spec": {
                **HELLO_SPEC,
                "ports": [HELLO_TCP, HELLO_UDP, {"name": "stcp", "protocol": "SCTP", "port": 142}],
            }
        },
        conflict_condition(
            "PortConflict",
            f"Conflicting ports: 1/2 clusters disagree; {HEAD} "
            'port "udp" 42/UDP: not exposed by cluster "c1"; '
            'port "stcp" 142/SCTP: not exposed by cluster "c0".',
        ),
        id="10-port-union-is-a-conflict",
    ),
    pytest.param(
        {},
        {
            "ports": [
                {"name": "tcp", "protocol": "TCP", "port": 43},
                {"name": "udp", "protocol": "UDP", "port": 42},
            ]
        },
        {"spec": HELLO_SPEC},
        conflict_condition(
            "PortConflict",
            f"Conflicting ports: 1/2 clusters disagree; {HEAD} "
            'port "tcp": cluster "c1" has 43/TCP, kept 42/TCP from "c0".',
        ),
        id="11-same-port-name-other-number",
    ),
    pytest.param(
        {},
        {"clusterIP": "None", "clusterIPs": ["None"]},
        {"spec": HELLO_SPEC},
        conflict_condition(
            "TypeConflict",
            f"Conflicting type: 1/2 clusters disagree; {HEAD} "
            'type: cluster "c1" has "Headless", kept "ClusterSetIP" from "c0".',
        ),
        id="15-conflicting-headlessness",
    ),
]


@pytest.mark.parametrize(("c0", "c1", "expected", "conflict"), CONFORMANCE)
def test_conformance_case(
    c0: dict[str, Any],
    c1: dict[str, Any] | None,
    expected: dict[str, Any],
    conflict: dict[str, Any],
) -> None:
    """c0 exports first; c1 (when present) exports the changed Service two seconds later."""
    exports = [("c0", conformance_objects("2026-01-02T03:04:05Z", **c0))]
    if c1 is not None:
        exports.append(("c1", conformance_objects("2026-01-02T03:04:07Z", **c1)))
    records = [record_from_objects(cluster, export, svc) for cluster, (export, svc) in exports]
    assert all(isinstance(r, ExportRecord) for r in records)

    result = merge(r for r in records if isinstance(r, ExportRecord))

    assert imported(result) == expected
    assert result.spec.to_api(ips=["10.128.0.7"])["ips"] == ["10.128.0.7"]
    assert export_conditions(result, [], NOW) == [VALID, READY, conflict]


# --- ordering ------------------------------------------------------------------------


def test_no_exports_is_an_error() -> None:
    """There is nothing to import without an export; the caller deletes the import."""
    with pytest.raises(ValueError, match="at least one"):
        merge([])


def test_two_records_from_one_cluster_is_an_error() -> None:
    """One cluster has at most one export of a service, so duplicates are a bug upstream."""
    with pytest.raises(ValueError, match="per cluster"):
        merge([rec("c1", NOW), rec("c1", OLDER)])


def test_equal_timestamps_are_ordered_by_cluster_id_bytewise() -> None:
    """Ties break on the cluster id compared byte-wise, as Cilium does."""
    result = merge(
        rec(c, NOW, type="Headless" if c == "B" else "ClusterSetIP")
        for c in ["c2", "a", "c10", "B"]
    )
    assert result.clusters == ("B", "a", "c10", "c2")
    assert result.winner == "B"
    assert result.spec.type == "Headless"


def test_age_beats_cluster_id() -> None:
    """Only equal timestamps fall back to the cluster id."""
    result = merge([rec("a", NOW), rec("z", NOW - timedelta(seconds=1))])
    assert result.clusters == ("z", "a")


# --- IP families ---------------------------------------------------------------------

V4, V6 = "IPv4", "IPv6"


@pytest.mark.parametrize(
    ("families", "expected", "skipped"),
    [
        pytest.param([(V4, V6), (V6, V4)], (V4, V6), (), id="same-families-other-order"),
        pytest.param([(), ()], (), (), id="no-families-anywhere"),
        pytest.param([(), (V4, V6), (V4,)], (V4,), (), id="oldest-has-none"),
        pytest.param([(V6,), (), (V4, V6)], (V6,), (), id="superset-is-no-conflict"),
        pytest.param([(V4,), (V6,)], (V4,), ("c2",), id="nothing-in-common"),
        pytest.param([(V4, V6), (V4,), (V6,)], (V4,), ("c3",), id="nothing-left-in-common"),
    ],
)
def test_ip_families_intersect(
    families: list[tuple[str, ...]], expected: tuple[str, ...], skipped: tuple[str, ...]
) -> None:
    """Cilium's TestIntersectIPFamilies table: intersect, skip a record with nothing in common."""
    records = [
        rec(f"c{i}", NOW + timedelta(seconds=i), ip_families=f)
        for i, f in enumerate(families, start=1)
    ]
    result = merge(records)
    assert result.spec.ip_families == expected
    assert [c.clusters for c in result.conflicts if c.reason == "IPFamilyConflict"] == (
        [skipped] if skipped else []
    )


def test_ip_family_conflict_message() -> None:
    """The detail names the left-out cluster and its families."""
    result = merge([rec("c1", NOW, ip_families=(V4,)), rec("c2", NEWER, ip_families=(V6,))])
    assert result.conflict_reason == "IPFamilyConflict"
    assert result.conflict_message() == (
        "Conflicting ipFamilies: 1/2 clusters disagree; using values from the oldest export, in "
        'cluster "c1". ipFamilies: cluster "c2" has ["IPv6"], sharing no family with the others, '
        "and is left out of the intersection."
    )


# --- session affinity and other global fields ----------------------------------------


def test_headless_winner_ignores_session_affinity() -> None:
    """Affinity means nothing for Headless: not copied, not compared."""
    result = merge(
        [
            rec(
                "c1",
                OLDER,
                type="Headless",
                session_affinity="ClientIP",
                session_affinity_timeout=5,
            ),
            rec("c2", NOW, type="Headless"),
        ]
    )
    assert result.conflicts == ()
    assert (result.spec.session_affinity, result.spec.session_affinity_timeout) == (None, None)


def test_clustersetip_winner_compares_affinity_of_headless_members() -> None:
    """A ClusterSetIP import has affinity, so every member's affinity counts."""
    result = merge([rec("c1", OLDER), rec("c2", NOW, type="Headless", session_affinity="ClientIP")])
    assert result.conflict_reason == "TypeConflict,SessionAffinityConflict"


def test_affinity_timeout_is_compared_only_when_affinity_agrees() -> None:
    """The API sets the timeout exactly when affinity is ClientIP: report the cause once."""
    client_ip = {"session_affinity": "ClientIP", "session_affinity_timeout": 10800}
    result = merge([rec("c1", OLDER, **client_ip), rec("c2", NOW), rec("c3", NEWER, **client_ip)])
    assert result.conflict_reason == "SessionAffinityConflict"
    assert result.conflicts[0].clusters == ("c2",)


def test_unset_internal_traffic_policy_equals_cluster() -> None:
    """Absent ITP is the API default Cluster; the spec keeps the winner's own spelling."""
    result = merge([rec("c1", OLDER), rec("c2", NOW, internal_traffic_policy="Cluster")])
    assert result.conflicts == ()
    assert result.spec.internal_traffic_policy is None


def test_message_counts_distinct_clusters_and_groups_equal_values() -> None:
    """N counts clusters disagreeing on any field; clusters with one value share a detail."""
    labels = {"exported_labels": {"team": "red"}}
    result = merge(
        [
            rec("c1", OLDER),
            rec("c2", NOW, type="Headless", **labels),
            rec("c3", NEWER, **labels),
            rec("c4", NEWER),
        ]
    )
    assert result.conflict_reason == "TypeConflict,LabelsConflict"
    assert result.conflict_message() == (
        "Conflicting type, labels: 2/4 clusters disagree; using values from the oldest export, "
        'in cluster "c1". type: cluster "c2" has "Headless", kept "ClusterSetIP" from "c1". '
        'labels: clusters "c2", "c3" have {"team": "red"}, kept {} from "c1".'
    )


def test_huge_conflict_message_is_truncated_to_the_crd_limit() -> None:
    """Annotation values can be far longer than a condition message may be."""
    result = merge(
        [
            rec("c1", OLDER),
            rec("c2", NOW, exported_annotations={"a": "x" * 20000}),
            rec("c3", NEWER, exported_annotations={"a": "y" * 20000}),
        ]
    )
    message = export_conditions(result, [], NOW)[2]["message"]
    assert len(message) == 32768
    assert message.startswith("Conflicting annotations: 2/3 clusters disagree;")
    assert message.endswith("… (truncated)")


# --- ports ---------------------------------------------------------------------------


def test_same_ports_in_another_order_are_no_conflict() -> None:
    """Ports compare as sets; the import lists them in the winner's order."""
    a, b = Port(name="a", port=1), Port(name="b", port=2)
    result = merge([rec("c1", OLDER, ports=(b, a)), rec("c2", NOW, ports=(a, b))])
    assert result.conflicts == ()
    assert result.spec.ports == (b, a)


def test_every_port_problem_is_reported_and_exposure_is_exact() -> None:
    """All clashes are listed, and each cluster exposes only the merged ports it serves."""
    tcp42, udp42 = Port(name="tcp", port=42), Port(name="udp", protocol="UDP", port=42)
    result = merge(
        [
            rec("c3", NEWER, ports=(Port(name="web", port=42, app_protocol="http"),)),
            rec("c1", OLDER, ports=(tcp42, udp42)),
            rec("c2", NOW, ports=(Port(name="tcp", port=43), udp42)),
        ]
    )
    assert result.spec.ports == (tcp42, udp42)
    assert result.conflicts == (
        Conflict(
            reason="PortConflict",
            field="ports",
            clusters=("c2", "c3"),
            detail=(
                'port "tcp": cluster "c2" has 43/TCP, kept 42/TCP from "c1"; '
                'port 42/TCP: cluster "c3" names it "web", kept "tcp" from "c1"; '
                'port "tcp" 42/TCP: cluster "c3" has appProtocol "http", '
                'kept no appProtocol from "c1"; '
                'port "udp" 42/UDP: not exposed by cluster "c3"'
            ),
        ),
    )
    assert result.exposed_ports == {"c1": (tcp42, udp42), "c2": (udp42,), "c3": ()}


def test_unnamed_ports_clash_by_name() -> None:
    """The empty name is a name: a second unnamed port with another number is dropped."""
    result = merge(
        [rec("c1", OLDER, ports=(Port(port=80),)), rec("c2", NOW, ports=(Port(port=81),))]
    )
    assert result.spec.ports == (Port(port=80),)
    assert result.conflicts[0].detail == 'port "": cluster "c2" has 81/TCP, kept 80/TCP from "c1"'
    assert result.exposed_ports == {"c1": (Port(port=80),), "c2": ()}


def test_same_number_other_protocol_is_another_port_only_with_another_name() -> None:
    """53/TCP and 53/UDP are distinct ports, but they cannot share a name."""
    dns_udp = Port(name="dns", protocol="UDP", port=53)
    dns_tcp = Port(name="dns-tcp", protocol="TCP", port=53)
    result = merge(
        [
            rec("c1", OLDER, ports=(dns_udp,)),
            rec("c2", NOW, ports=(dns_udp, dns_tcp)),
            rec("c3", NEWER, ports=(Port(name="dns", protocol="TCP", port=53),)),
        ]
    )
    assert result.spec.ports == (dns_udp, dns_tcp)
    assert result.conflicts[0].clusters == ("c2", "c3")
    assert result.exposed_ports["c3"] == ()


# --- export_conditions ---------------------------------------------------------------

CUSTOM = {
    "type": "example.com/Audited",
    "status": "True",
    "reason": "Seen",
    "message": "kept as is",
    "lastTransitionTime": "2025-06-01T00:00:00Z",
}


def test_invalid_export_conditions() -> None:
    """Valid=False with the reason, Ready=False/Pending, Conflict removed, others kept."""
    invalid = InvalidExport(cluster="c1", reason="NoService", message='Service "d/f" not found.')
    previous = [CUSTOM, VALID, READY, NO_CONFLICT]
    assert export_conditions(invalid, previous, LATER, generation=2) == [
        CUSTOM,
        {
            "type": "Valid",
            "status": "False",
            "reason": "NoService",
            "message": 'Service "d/f" not found.',
            "lastTransitionTime": "2026-01-02T03:09:05Z",
            "observedGeneration": 2,
        },
        {
            "type": "Ready",
            "status": "False",
            "reason": "Pending",
            "message": 'ServiceExport is not valid: Service "d/f" not found.',
            "lastTransitionTime": "2026-01-02T03:09:05Z",
            "observedGeneration": 2,
        },
    ]


def test_ready_override() -> None:
    """The controller can report a failed import through Ready."""
    failed = (
        False,
        "Failed",
        "ServiceImport default/foo in cluster c2 exists and is not managed by mcs-controller",
    )
    conditions = export_conditions(merge([rec("c1", NOW)]), [], NOW, ready=failed)
    assert conditions == [
        VALID,
        {**READY, "status": "False", "reason": "Failed", "message": failed[2]},
        NO_CONFLICT,
    ]


def test_transition_time_changes_only_with_status() -> None:
    """Same status keeps the old time even if reason/message change; a flip takes `now`."""
    no_conflict = export_conditions(merge([rec("c1", OLDER)]), [], NOW)
    assert export_conditions(merge([rec("c1", OLDER)]), no_conflict, LATER) == no_conflict

    conflicted = merge([rec("c1", OLDER), rec("c2", NOW, type="Headless")])
    after = export_conditions(conflicted, no_conflict, LATER)
    assert [c["lastTransitionTime"] for c in after] == [
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:04:05Z",
        "2026-01-02T03:09:05Z",
    ]
    more = merge([rec("c1", OLDER), rec("c2", NOW, type="Headless", exported_labels={"a": "b"})])
    again = export_conditions(more, after, LATER + timedelta(hours=1))
    assert again[2]["lastTransitionTime"] == "2026-01-02T03:09:05Z"
    assert again[2]["reason"] == "TypeConflict,LabelsConflict"


def test_conditions_keep_their_place_and_new_ones_are_appended() -> None:
    """Like meta.SetStatusCondition, so an unchanged list compares equal."""
    previous = [{**NO_CONFLICT}, CUSTOM]
    assert export_conditions(merge([rec("c1", OLDER)]), previous, NOW) == [
        NO_CONFLICT,
        CUSTOM,
        VALID,
        READY,
    ]


def test_malformed_previous_time_counts_as_a_new_transition() -> None:
    """A previous condition we cannot parse is not trusted."""
    previous = [{**VALID, "lastTransitionTime": "yesterday"}, {**READY}]
    del previous[1]["lastTransitionTime"]
    result = export_conditions(merge([rec("c1", OLDER)]), previous, LATER)
    assert [c["lastTransitionTime"] for c in result] == ["2026-01-02T03:09:05Z"] * 3
