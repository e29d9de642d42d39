"""mcs.core.globalsvc: Cilium's annotations, who gets what, affinity, ports, slices, status."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcs.core import api, events, globalsvc
from mcs.core.api import CONTROLLER_NAME
from mcs.core.endpoints import transform
from mcs.core.globalsvc import (
    AFFINITY,
    AFFINITY_ALIAS,
    GLOBAL,
    GLOBAL_ALIAS,
    SHARED,
    SHARED_ALIAS,
    SYNC_SLICES,
    Side,
    match_ports,
    parse,
    plan_cluster,
    remote_wanted,
    uses,
)
from mcs.status.global_services import status_rows

NS, NAME = "ns", "rebel-base"
PORTS = [{"name": "http", "protocol": "TCP", "port": 80}]


# --- annotations: pkg/annotation/clustermesh_test.go, case for case ------------------------


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, False),
        ({GLOBAL: "True"}, True),
        ({GLOBAL: "false"}, False),
        ({GLOBAL: ""}, False),
        ({GLOBAL_ALIAS: "True"}, True),
        ({GLOBAL: "yes"}, False),
        ({GLOBAL: "TRUE", GLOBAL_ALIAS: "false"}, True),  # the new name wins
        ({GLOBAL: "false", GLOBAL_ALIAS: "true"}, False),
    ],
)
def test_global(annotations: dict[str, str], expected: bool) -> None:
    assert parse(annotations).is_global is expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, False),
        ({GLOBAL: "true"}, True),
        ({SHARED: "true"}, False),
        ({GLOBAL: "true", SHARED: "True"}, True),
        ({GLOBAL: "true", SHARED: "false"}, False),
        ({GLOBAL: "true", SHARED_ALIAS: "false"}, False),
        ({GLOBAL: "true", SHARED: ""}, False),
        ({GLOBAL_ALIAS: "true", SHARED_ALIAS: "TRUE"}, True),
    ],
)
def test_shared(annotations: dict[str, str], expected: bool) -> None:
    assert parse(annotations).shared is expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({GLOBAL: "true", AFFINITY: "local"}, "local"),
        ({GLOBAL: "true", AFFINITY: "remote"}, "remote"),
        ({GLOBAL: "true", AFFINITY_ALIAS: "local"}, "local"),
        ({AFFINITY: "remote"}, ""),
        ({}, ""),
        ({GLOBAL: "true", AFFINITY: "Local"}, "local"),
        # cilium/cilium#46623: "none" and unknown values are no preference, not a blackhole.
        ({GLOBAL: "true", AFFINITY: "none"}, ""),
        ({GLOBAL: "true", AFFINITY: "nearest"}, ""),
    ],
)
def test_affinity(annotations: dict[str, str], expected: str) -> None:
    assert parse(annotations).affinity == expected


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({GLOBAL: "true"}, True),
        ({GLOBAL: "true", SYNC_SLICES: "TRUE"}, True),
        ({GLOBAL: "true", SYNC_SLICES: "false"}, False),
    ],
)
def test_sync_slices(annotations: dict[str, str], expected: bool) -> None:
    assert parse(annotations).sync_slices is expected


# --- helpers -----------------------------------------------------------------------------


def service(
    *,
    is_global: bool = True,
    shared: bool | None = None,
    affinity: str | None = None,
    ports: list[dict[str, Any]] | None = None,
    headless: bool = False,
    legacy: bool = False,
) -> dict[str, Any]:
    ann: dict[str, str] = {}
    if is_global:
        ann[GLOBAL_ALIAS if legacy else GLOBAL] = "true"
    if shared is not None:
        ann[SHARED_ALIAS if legacy else SHARED] = str(shared).lower()
    if affinity is not None:
        ann[AFFINITY_ALIAS if legacy else AFFINITY] = affinity
    spec: dict[str, Any] = {"ports": PORTS if ports is None else ports}
    if headless:
        spec["clusterIP"] = "None"
    return {
        "metadata": {"name": NAME, "namespace": NS, "uid": "u-1", "annotations": ann},
        "spec": spec,
    }


def kube_slice(
    addresses: list[str],
    *,
    ready: bool = True,
    ports: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    suffix: str = "x",
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{NAME}-{suffix}",
            "namespace": NS,
            "labels": {
                "kubernetes.io/service-name": NAME,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": ready},
                "nodeName": "node-1",
                "targetRef": {"kind": "Pod", "name": f"p{i}"},
                **({"hostname": hostnames[i]} if hostnames else {}),
            }
            for i, a in enumerate(addresses)
        ],
        "ports": [{"name": "http", "protocol": "TCP", "port": 8080}] if ports is None else ports,
    }


def addresses_by_source(slices: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for s in slices:
        src = s["metadata"]["labels"]["multicluster.kubernetes.io/source-cluster"]
        out.setdefault(src, set()).update(a for e in s["endpoints"] for a in e["addresses"])
    return out


def side(cluster: str, svc: dict[str, Any] | None, *addresses: str, **kw: Any) -> Side:
    slices = [kube_slice(list(addresses), suffix=cluster)] if addresses else []
    return Side(cluster, svc, kw.pop("namespace_ok", True), slices)


def used(clusters: list[Side]) -> dict[str, set[str]]:
    """For every cluster: the remote clusters whose backends it gets slices of."""
    return {
        c.cluster: set(
            addresses_by_source(
                plan_cluster(NS, NAME, c, [o for o in clusters if o is not c]).slices
            )
        )
        for c in clusters
    }


# --- who gets what: the tutorial's flowchart ---------------------------------------------


@pytest.mark.parametrize(
    ("g1", "g2", "s1", "s2", "c1_uses", "c2_uses"),
    [
        (True, True, True, True, {"c2"}, {"c1"}),
        (True, True, True, False, set(), {"c1"}),
        (True, True, False, True, {"c2"}, set()),
        (True, True, False, False, set(), set()),
        (True, False, True, True, set(), set()),
        (False, True, True, True, set(), set()),
        (False, False, True, True, set(), set()),
    ],
)
def test_flowchart_two_clusters(
    g1: bool, g2: bool, s1: bool, s2: bool, c1_uses: set[str], c2_uses: set[str]
) -> None:
    c1 = side("c1", service(is_global=g1, shared=s1), "10.1.0.1")
    c2 = side("c2", service(is_global=g2, shared=s2), "10.2.0.1")
    assert used([c1, c2]) == {"c1": c1_uses, "c2": c2_uses}


def test_flowchart_three_clusters_every_combination() -> None:
    """Every (global, shared) assignment over three clusters, against the rule."""
    for flags in itertools.product([True, False], repeat=6):
        sides = [
            side(f"c{i}", service(is_global=flags[2 * i], shared=flags[2 * i + 1]), f"10.{i}.0.1")
            for i in range(3)
        ]
        expected = {
            c.cluster: {
                r.cluster
                for r in sides
                if r is not c
                and flags[2 * int(c.cluster[1])]
                and flags[2 * int(r.cluster[1])]
                # shared only matters where global
                and flags[2 * int(r.cluster[1]) + 1]
            }
            for c in sides
        }
        assert used(sides) == expected, flags


def test_third_cluster_not_global_and_missing_service() -> None:
    c1 = side("c1", service(), "10.1.0.1")
    c2 = side("c2", service(), "10.2.0.1")
    c3 = side("c3", service(is_global=False), "10.3.0.1")
    c4 = side("c4", None, "10.4.0.1")  # slices without a Service: nothing to offer
    assert used([c1, c2, c3, c4]) == {"c1": {"c2"}, "c2": {"c1"}, "c3": set(), "c4": set()}


def test_legacy_names() -> None:
    c1 = side("c1", service(legacy=True), "10.1.0.1")
    c2 = side("c2", service(legacy=True, shared=False), "10.2.0.1")
    assert used([c1, c2]) == {"c1": set(), "c2": {"c1"}}


def test_namespace_not_taking_part_neither_offers_nor_receives() -> None:
    c1 = side("c1", service(), "10.1.0.1")
    c2 = side("c2", service(), "10.2.0.1", namespace_ok=False)
    c3 = side("c3", service(), "10.3.0.1")
    assert used([c1, c2, c3]) == {"c1": {"c3"}, "c2": set(), "c3": {"c1"}}


def test_external_name_neither_offers_nor_receives() -> None:
    ext = service()
    ext["spec"] = {"type": "ExternalName", "externalName": "example.com"}
    c1 = side("c1", service(), "10.1.0.1")
    c2 = side("c2", ext, "10.2.0.1")
    assert used([c1, c2]) == {"c1": set(), "c2": set()}


def test_sync_slices_false_receives_nothing_but_still_offers() -> None:
    svc = service()
    svc["metadata"]["annotations"][SYNC_SLICES] = "false"
    c1 = side("c1", svc, "10.1.0.1")
    c2 = side("c2", service(), "10.2.0.1")
    assert used([c1, c2]) == {"c1": set(), "c2": {"c1"}}


@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans(), st.booleans(), st.booleans()),
        min_size=1,
        max_size=5,
    )
)
def test_uses_is_the_rule(flags: list[tuple[bool, bool, bool, bool]]) -> None:
    """For any N: C uses R iff S exists, is global and the namespace takes part in
    both, and R shares."""
    sides = [
        Side(f"c{i}", service(is_global=g, shared=s) if present else None, ns_ok)
        for i, (present, g, s, ns_ok) in enumerate(flags)
    ]
    for c, r in itertools.product(sides, sides):
        fc, fr = flags[int(c.cluster[1:])], flags[int(r.cluster[1:])]
        expected = c is not r and all(fc[:2]) and fc[3] and all(fr) and fr[3]
        assert uses(c, r) is expected


# --- affinity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("affinity", "local_ready", "expected"),
    [("", 0, True), ("", 3, True), ("local", 0, True), ("local", 1, False), ("remote", 5, True)],
)
def test_remote_wanted(affinity: globalsvc.Affinity, local_ready: int, expected: bool) -> None:
    assert remote_wanted(affinity, local_ready) is expected


def test_affinity_local_failover_and_failback() -> None:
    remote = side("c2", service(), "10.2.0.1")

    def plan(ready: bool, addresses: list[str]) -> globalsvc.ClusterPlan:
        local = Side("c1", service(affinity="local"), True, [kube_slice(addresses, ready=ready)])
        return plan_cluster(NS, NAME, local, [remote])

    healthy = plan(True, ["10.1.0.1"])
    assert healthy.slices == [] and healthy.held_back == ("c2",)
    for down in (plan(False, ["10.1.0.1"]), plan(True, [])):  # not ready, or gone
        assert addresses_by_source(down.slices) == {"c2": {"10.2.0.1"}}
        assert down.used == ("c2",) and down.held_back == ()
    assert plan(True, ["10.1.0.1"]).slices == []


def test_affinity_remote_is_reported_not_pretended() -> None:
    local = side("c1", service(affinity="remote"), "10.1.0.1")
    remote = side("c2", service(), "10.2.0.1")
    planned = plan_cluster(NS, NAME, local, [remote])
    assert addresses_by_source(planned.slices) == {"c2": {"10.2.0.1"}}
    assert [n.reason for n in planned.notes] == ["AffinityRemoteNotEnforced"]
    assert "kube-proxy balances over local and remote" in planned.notes[0].message


def test_unknown_affinity_is_no_preference_with_a_warning() -> None:
    local = side("c1", service(affinity="nearest"), "10.1.0.1")
    planned = plan_cluster(NS, NAME, local, [side("c2", service(), "10.2.0.1")])
    assert addresses_by_source(planned.slices) == {"c2": {"10.2.0.1"}}
    assert [(n.reason, n.type) for n in planned.notes] == [("AffinityIgnored", "Warning")]
    none = plan_cluster(
        NS, NAME, side("c1", service(affinity="none")), [side("c2", service(), "10.2.0.1")]
    )
    assert none.notes == () and none.used == ("c2",)


# --- ports -------------------------------------------------------------------------------


def test_ports_matched_by_name_with_the_remote_number() -> None:
    local_ports = [
        {"name": "http", "protocol": "TCP", "port": 80, "appProtocol": "http"},
        {"name": "dns", "protocol": "UDP", "port": 53},
        {"name": "only-here", "protocol": "TCP", "port": 9},
    ]
    remote = [
        {"name": "dns", "protocol": "UDP", "port": 5353},
        {"name": "http", "protocol": "TCP", "port": 8080},
        {"name": "only-there", "protocol": "TCP", "port": 7},
        {"name": "dns", "protocol": "TCP", "port": 5353},  # same name, other protocol
    ]
    assert match_ports(local_ports, remote) == [
        {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
        {"name": "dns", "protocol": "UDP", "port": 5353},
    ]


def test_unnamed_single_port() -> None:
    assert match_ports(
        [{"port": 80, "protocol": "TCP"}], [{"name": "", "protocol": "TCP", "port": 8080}]
    ) == [{"name": "", "protocol": "TCP", "port": 8080}]
    assert match_ports([{"name": "a", "port": 80}], [{"port": 8080}]) == []


def test_no_matching_port_no_slice_unless_headless() -> None:
    other = [{"name": "grpc", "protocol": "TCP", "port": 9000}]
    remote = Side("c2", service(), True, [kube_slice(["10.2.0.1"], ports=other)])
    assert plan_cluster(NS, NAME, side("c1", service()), [remote]).slices == []
    headless = plan_cluster(NS, NAME, side("c1", service(headless=True)), [remote])
    assert [s["ports"] for s in headless.slices] == [[]]


@given(
    st.lists(
        st.tuples(st.sampled_from(["", "a", "b"]), st.sampled_from(["TCP", "UDP"])),
        unique=True,
        max_size=4,
    ),
    st.lists(
        st.tuples(
            st.sampled_from(["", "a", "b", "c"]),
            st.sampled_from(["TCP", "UDP"]),
            st.integers(1, 3),
        ),
        max_size=5,
    ),
)
def test_matched_ports_are_the_local_ones(
    local: list[tuple[str, str]], remote: list[tuple[str, str, int]]
) -> None:
    local_ports = [{"name": n, "protocol": p, "port": 80} for n, p in local]
    remote_ports = [{"name": n, "protocol": p, "port": x} for n, p, x in remote]
    out = match_ports(local_ports, remote_ports)
    assert [(p["name"], p["protocol"]) for p in out] == [
        (n, p) for n, p in local if any((rn, rp) == (n, p) for rn, rp, _ in remote)
    ]
    first = {}
    for n, p, x in remote:
        first.setdefault((n, p), x)
    assert all(p["port"] == first[(p["name"], p["protocol"])] for p in out)


# --- slices ------------------------------------------------------------------------------


def test_slice_shape_labels_and_endpoints() -> None:
    remote = Side("c2", service(), True, [kube_slice(["10.2.0.2", "10.2.0.1"], ready=False)])
    (s,) = plan_cluster(NS, NAME, side("c1", service()), [remote]).slices
    assert s["metadata"]["labels"] == {
        "kubernetes.io/service-name": NAME,
        "multicluster.kubernetes.io/source-cluster": "c2",
        "endpointslice.kubernetes.io/managed-by": CONTROLLER_NAME,
        "app.kubernetes.io/managed-by": "mcs-controller",
    }
    assert "multicluster.kubernetes.io/service-name" not in s["metadata"]["labels"]
    assert s["endpoints"] == [
        {"addresses": ["10.2.0.1"], "conditions": {"ready": False}},
        {"addresses": ["10.2.0.2"], "conditions": {"ready": False}},
    ]
    assert s["ports"] == [{"name": "http", "protocol": "TCP", "port": 8080}]
    assert api.global_slice_key(s) == (NS, NAME)
    # What the informer caches of a written slice compares equal: no write at steady state.
    assert transform(s) == s


def test_slices_are_chunked_and_stable() -> None:
    many = [f"10.2.{i // 250}.{i % 250 + 1}" for i in range(250)]
    remote = Side("c2", service(), True, [kube_slice(many)])
    reordered = Side("c2", service(), True, [kube_slice(list(reversed(many)))])
    a = plan_cluster(NS, NAME, side("c1", service()), [remote]).slices
    b = plan_cluster(NS, NAME, side("c1", service()), [reordered]).slices
    assert a == b
    assert [len(s["endpoints"]) for s in a] == [100, 100, 50]
    assert len({s["metadata"]["name"] for s in a}) == 3


def test_our_own_slices_are_never_a_source() -> None:
    ours = plan_cluster(
        NS, NAME, side("c1", service()), [side("c2", service(), "10.2.0.1")]
    ).slices[0]
    remote = Side("c3", service(), True, [ours])
    assert plan_cluster(NS, NAME, side("c4", service()), [remote]).slices == []


def test_hostname_clash_first_cluster_keeps_it() -> None:
    svc = service(headless=True)
    local = Side("c1", svc, True, [kube_slice(["10.1.0.1"], hostnames=["web-0"])])
    c2 = Side("c2", svc, True, [kube_slice(["10.2.0.1", "10.2.0.2"], hostnames=["web-0", "x"])])
    c3 = Side("c3", svc, True, [kube_slice(["10.3.0.1"], hostnames=["web-0"])])
    planned = plan_cluster(NS, NAME, local, [c3, c2])
    hosts = {
        a: e.get("hostname") for s in planned.slices for e in s["endpoints"] for a in e["addresses"]
    }
    assert hosts == {"10.2.0.1": None, "10.2.0.2": "x", "10.3.0.1": None}
    (note,) = planned.notes
    assert note.reason == "HostnameClash" and note.type == "Warning"
    assert "c1, c2, c3" in note.message and "those of c1 only" in note.message


def test_service_event_is_named_by_uid_and_note() -> None:
    note = ("Warning", "HostnameClash", "m")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    a = events.service_event(service(), note, "c1", now)
    b = events.service_event(service(), note, "c1", datetime(2026, 2, 1, tzinfo=UTC))
    assert a["metadata"]["name"] == b["metadata"]["name"]
    assert a["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Service",
        "name": NAME,
        "namespace": NS,
        "uid": "u-1",
    }
    assert a["reason"] == "HostnameClash" and a["type"] == "Warning"


# --- status rows -------------------------------------------------------------------------


def test_status_rows_count_backends_per_cluster() -> None:
    svc = {c: service(shared=(c != "c3")) for c in ("c1", "c2", "c3")}
    local = {c: kube_slice([f"10.{i}.0.1", f"10.{i}.0.2"], suffix=c) for i, c in enumerate(svc)}
    sides = {c: Side(c, svc[c], True, [local[c]]) for c in svc}
    slices = {
        c: [local[c], *plan_cluster(NS, NAME, sides[c], [sides[k] for k in svc if k != c]).slices]
        for c in svc
    }
    plain = {
        "metadata": {"name": "plain", "namespace": NS, "annotations": {}},
        "spec": {"ports": PORTS},
    }
    rows = status_rows({c: [svc[c], plain] for c in svc}, slices)
    assert [(r.cluster, r.name, r.is_global, r.shared) for r in rows] == [
        ("c1", NAME, True, True),
        ("c2", NAME, True, True),
        ("c3", NAME, True, False),
    ]
    assert rows[0].backends == {"c1": 2, "c2": 2}  # c3 does not share
    assert rows[2].backends == {"c3": 2, "c1": 2, "c2": 2}


def test_status_rows_affinity_and_exclusion() -> None:
    svc1 = service(affinity="local")
    s1 = kube_slice(["10.1.0.1"], suffix="c1")
    s2 = kube_slice(["10.2.0.1"], suffix="c2")
    rows = status_rows(
        {"c1": [svc1], "c2": [service()], "c3": [service()]},
        {"c1": [s1], "c2": [s2], "c3": []},
        excluded={"c3": [NS]},
    )
    assert rows[0].affinity == "local" and rows[0].held_back == ("c2",)
    assert rows[0].backends == {"c1": 1}
    assert rows[2].notes and "does not take part" in rows[2].notes[0]


def test_the_api_server_service_never_receives() -> None:
    local, remote = side("c1", service()), side("c2", service(), "10.2.0.1")
    assert plan_cluster("default", "kubernetes", local, [remote]).slices == []
    assert plan_cluster("default", NAME, local, [remote]).slices != []


def test_remote_endpoints_get_zone_hints_when_the_local_service_is_topology_aware() -> None:
    """kube-proxy routes by zone only when every ready endpoint has hints: remote slices
    must not switch a topology-aware local Service's routing off."""
    remote = kube_slice(["10.2.0.1", "10.2.0.2"], suffix="c2")
    remote["endpoints"][0]["zone"] = "zone-a"
    local_svc = service()
    local_svc["spec"]["trafficDistribution"] = "PreferSameZone"
    for svc, hinted in ((service(), False), (local_svc, True)):
        planned = plan_cluster(NS, NAME, Side("c1", svc), [Side("c2", service(), True, [remote])])
        eps = [e for s in planned.slices for e in s["endpoints"]]
        assert [e.get("hints") for e in eps] == (
            [{"forZones": [{"name": "zone-a"}]}, None] if hinted else [None, None]
        )
        assert all("nodeName" not in e for e in eps)
    annotated = service()
    annotated["metadata"]["annotations"]["service.kubernetes.io/topology-mode"] = "Auto"
    assert Side("c1", annotated).topology_aware


def test_sync_endpoint_slices_off_receives_nothing_and_says_so() -> None:
    """Cilium keeps balancing to remote backends in eBPF with
    global-sync-endpoint-slices=false; mcs cannot, and warns instead of failing silently."""
    svc = service()
    svc["metadata"]["annotations"][SYNC_SLICES] = "false"
    planned = plan_cluster(NS, NAME, side("c1", svc), [side("c2", service(), "10.2.0.1")])
    assert planned.slices == []
    (note,) = planned.notes
    assert note.reason == "EndpointSliceSyncDisabled" and note.type == "Warning"
    assert "1 remote cluster(s)" in note.message
