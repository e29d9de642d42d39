"""Unit and property tests for mcs.core.endpoints: the EndpointSlices of one import."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcs.core.api import (
    CONTROLLER_NAME,
    ENDPOINTSLICE_MANAGED_BY,
    FIELD_MANAGER,
    KUBE_SERVICE_NAME,
    MANAGED_BY,
    SERVICE_NAME,
    SOURCE_CLUSTER,
    derived_name,
    managed_by_us,
)
from mcs.core.api import import_slice_key as slice_key
from mcs.core.endpoints import (
    MAX_ENDPOINTS_PER_SLICE,
    desired_slices,
    source_cluster,
    transform,
)
from mcs.core.imports import derived_port_name
from mcs.core.merge import MergeResult, merge
from mcs.core.model import ExportRecord, Port

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NS, NAME = "demo", "hello"
DERIVED = derived_name(NS, NAME)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def merged_of(*clusters: tuple[str, Sequence[Port]], headless: bool = False) -> MergeResult:
    """Merge of exports from `clusters`, oldest first, each with the given ports."""
    return merge(
        ExportRecord(
            cluster=cluster,
            created=T0 + timedelta(seconds=i),
            ports=tuple(ports),
            type="Headless" if headless else "ClusterSetIP",
            ip_families=("IPv4",),
        )
        for i, (cluster, ports) in enumerate(clusters)
    )


def endpoint(address: str, **fields: Any) -> dict[str, Any]:
    return {"addresses": [address], "conditions": {"ready": True}, **fields}


def source(
    endpoints: Sequence[dict[str, Any]],
    ports: Sequence[tuple[str, int] | tuple[str, int, str]] = (("tcp", 42),),
    address_type: str = "IPv4",
    name: str = "hello-abcde",
) -> dict[str, Any]:
    """A source cluster's EndpointSlice of Service `hello`, as the default controller makes it."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": NS,
            "resourceVersion": "123",
            "labels": {
                KUBE_SERVICE_NAME: NAME,
                ENDPOINTSLICE_MANAGED_BY: "endpointslice-controller.k8s.io",
                "app": "hello",
            },
        },
        "addressType": address_type,
        "endpoints": list(endpoints),
        "ports": [
            {"name": p[0], "port": p[1], "protocol": p[2] if len(p) > 2 else "TCP"} for p in ports
        ],
    }


def addresses_of(slices: Sequence[dict[str, Any]], cluster: str) -> list[str]:
    return [
        a
        for s in slices
        if s["metadata"]["labels"][SOURCE_CLUSTER] == cluster
        for e in s["endpoints"]
        for a in e["addresses"]
    ]


TCP42 = Port(name="tcp", port=42)


# --- grouping, labels, names ------------------------------------------------------------


def test_one_set_per_source_cluster_and_address_type() -> None:
    merged = merged_of(("c1", [TCP42]), ("c2", [TCP42]))
    sources = {
        "c1": [
            source([endpoint("10.1.0.1")]),
            source([endpoint("fd00::1")], address_type="IPv6", name="hello-v6"),
        ],
        "c2": [source([endpoint("10.2.0.1"), endpoint("10.2.0.2")])],
    }
    slices = desired_slices(NS, NAME, merged, sources, DERIVED)
    got = sorted(
        (s["metadata"]["labels"][SOURCE_CLUSTER], s["addressType"], len(s["endpoints"]))
        for s in slices
    )
    assert got == [("c1", "IPv4", 1), ("c1", "IPv6", 1), ("c2", "IPv4", 2)]
    assert len({s["metadata"]["name"] for s in slices}) == 3
    for s in slices:
        assert s["apiVersion"] == "discovery.k8s.io/v1"
        assert s["kind"] == "EndpointSlice"
        assert s["metadata"]["namespace"] == NS
        assert s["ports"] == [{"name": "tcp", "protocol": "TCP", "port": 42}]


def test_labels_of_a_clusterset_ip_import() -> None:
    merged = merged_of(("c1", [TCP42]))
    [s] = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.1.0.1")])]}, DERIVED)
    assert s["metadata"]["labels"] == {
        SERVICE_NAME: NAME,
        SOURCE_CLUSTER: "c1",
        KUBE_SERVICE_NAME: DERIVED,
        ENDPOINTSLICE_MANAGED_BY: CONTROLLER_NAME,
        MANAGED_BY: FIELD_MANAGER,
    }
    assert SERVICE_NAME == "multicluster.kubernetes.io/service-name"
    assert CONTROLLER_NAME != "endpointslice-controller.k8s.io"
    assert managed_by_us(s)


def test_headless_slices_do_not_name_a_service() -> None:
    merged = merged_of(("c1", [TCP42]), headless=True)
    [s] = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.1.0.1")])]}, None)
    assert KUBE_SERVICE_NAME not in s["metadata"]["labels"]
    assert s["metadata"]["labels"][SOURCE_CLUSTER] == "c1"


def test_chunks_of_at_most_100_endpoints_with_stable_names() -> None:
    merged = merged_of(("c1", [TCP42]))
    eps = [endpoint(f"10.1.{i // 256}.{i % 256}") for i in range(250)]
    sources = {"c1": [source(eps[:90], name="a"), source(eps[90:200], name="b"), source(eps[200:])]}
    slices = desired_slices(NS, NAME, merged, sources, DERIVED)
    assert [len(s["endpoints"]) for s in slices] == [100, 100, 50]
    names = [s["metadata"]["name"] for s in slices]
    stem = names[0][: -len("-0")]
    assert names == [f"{stem}-0", f"{stem}-1", f"{stem}-2"]
    assert re.fullmatch(rf"{NAME}-[0-9a-v]{{10}}", stem)
    flat = [e["addresses"][0] for s in slices for e in s["endpoints"]]
    assert flat == sorted(flat) and len(set(flat)) == 250
    assert MAX_ENDPOINTS_PER_SLICE == 100


def test_identical_input_gives_byte_identical_output_whatever_the_order() -> None:
    merged = merged_of(("c1", [TCP42]), ("c2", [TCP42]))
    a = source([endpoint("10.1.0.2"), endpoint("10.1.0.1", hostname="h1")], name="a")
    b = source([endpoint("10.1.0.3", conditions={"ready": False})], name="b")
    c = source([endpoint("10.2.0.1")])
    first = desired_slices(NS, NAME, merged, {"c1": [a, b], "c2": [c]}, DERIVED)
    b_reversed = {**b, "endpoints": b["endpoints"][::-1]}
    a_reversed = {**a, "endpoints": a["endpoints"][::-1]}
    second = desired_slices(NS, NAME, merged, {"c2": [c], "c1": [b_reversed, a_reversed]}, DERIVED)
    assert json.dumps(first).encode() == json.dumps(second).encode()


def test_names_depend_on_cluster_address_type_and_ports_not_on_the_endpoints() -> None:
    merged = merged_of(("c1", [TCP42]), ("c2", [TCP42]))
    one = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.1.0.1")])]}, DERIVED)
    other = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.9.9.9")])]}, DERIVED)
    c2 = desired_slices(NS, NAME, merged, {"c2": [source([endpoint("10.1.0.1")])]}, DERIVED)
    assert one[0]["metadata"]["name"] == other[0]["metadata"]["name"]
    assert one[0]["metadata"]["name"] != c2[0]["metadata"]["name"]


def test_names_are_valid_dns_subdomains_even_for_long_import_names() -> None:
    long_name = "a" * 63
    merged = merged_of(("c" * 63, [TCP42]))
    [s] = desired_slices(NS, long_name, merged, {"c" * 63: [source([endpoint("10.0.0.1")])]}, None)
    name = s["metadata"]["name"]
    assert len(name) <= 253 and DNS_SUBDOMAIN.match(name)
    assert name.startswith(long_name + "-")


def test_only_clusters_of_the_merge_and_only_foreign_slices_are_copied() -> None:
    merged = merged_of(("c1", [TCP42]))
    ours = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.1.0.1")])]}, DERIVED)
    sources = {
        "c1": [source([endpoint("10.1.0.1")]), *ours],
        "c9": [source([endpoint("10.9.0.1")])],  # does not export
    }
    slices = desired_slices(NS, NAME, merged, sources, DERIVED)
    assert [addresses_of(slices, c) for c in ("c1", "c9")] == [["10.1.0.1"], []]


def test_a_cluster_without_slices_or_endpoints_gets_none() -> None:
    merged = merged_of(("c1", [TCP42]), ("c2", [TCP42]))
    assert desired_slices(NS, NAME, merged, {"c1": [source([])]}, DERIVED) == []


# --- ports ------------------------------------------------------------------------------


def test_case_20_same_port_name_other_number_the_newer_cluster_carries_no_port() -> None:
    """c1 (older) serves `tcp` 42; c2 serves `tcp` 4242 -> target 42. Port 42 must reach
    only c1's pods, so c2's endpoints must not carry a port named `tcp`."""
    merged = merged_of(("c1", [TCP42]), ("c2", [Port(name="tcp", port=4242)]))
    assert merged.spec.ports == (TCP42,)
    sources = {
        "c1": [source([endpoint("10.1.0.1")], ports=[("tcp", 42)])],
        "c2": [source([endpoint("10.2.0.1")], ports=[("tcp", 42)])],  # targetPort 42
    }
    slices = desired_slices(NS, NAME, merged, sources, DERIVED)
    assert addresses_of(slices, "c1") == ["10.1.0.1"]
    assert addresses_of(slices, "c2") == []
    assert all(s["ports"] == [{"name": "tcp", "protocol": "TCP", "port": 42}] for s in slices)


def test_case_20_headless_keeps_the_addresses_without_the_lost_port() -> None:
    merged = merged_of(("c1", [TCP42]), ("c2", [Port(name="tcp", port=4242)]), headless=True)
    sources = {
        "c1": [source([endpoint("10.1.0.1")], ports=[("tcp", 42)])],
        "c2": [source([endpoint("10.2.0.1")], ports=[("tcp", 42)])],
    }
    by_cluster = {
        s["metadata"]["labels"][SOURCE_CLUSTER]: s
        for s in desired_slices(NS, NAME, merged, sources, None)
    }
    assert by_cluster["c1"]["ports"] == [{"name": "tcp", "protocol": "TCP", "port": 42}]
    assert by_cluster["c2"]["ports"] == []
    assert addresses_of([by_cluster["c2"]], "c2") == ["10.2.0.1"]


def test_case_21_different_port_names_each_cluster_serves_its_own_port() -> None:
    """c1 `tcp` 42, c2 `tcp2` 4242 -> target 42: port 42 reaches c1 only, 4242 c2 only."""
    merged = merged_of(("c1", [TCP42]), ("c2", [Port(name="tcp2", port=4242)]))
    assert merged.spec.ports == (TCP42, Port(name="tcp2", port=4242))
    sources = {
        "c1": [source([endpoint("10.1.0.1")], ports=[("tcp", 42)])],
        "c2": [source([endpoint("10.2.0.1")], ports=[("tcp2", 42)])],
    }
    by_cluster = {
        s["metadata"]["labels"][SOURCE_CLUSTER]: s
        for s in desired_slices(NS, NAME, merged, sources, DERIVED)
    }
    assert by_cluster["c1"]["ports"] == [{"name": "tcp", "protocol": "TCP", "port": 42}]
    assert by_cluster["c2"]["ports"] == [{"name": "tcp2", "protocol": "TCP", "port": 42}]


def test_slice_ports_use_the_target_port_and_the_merged_order() -> None:
    http = Port(name="http", port=80, app_protocol="http")
    metrics = Port(name="metrics", port=9090)
    merged = merged_of(("c1", [http, metrics]))
    src = source([endpoint("10.1.0.1")], ports=[("metrics", 19090), ("http", 8080), ("x", 1)])
    [s] = desired_slices(NS, NAME, merged, {"c1": [src]}, DERIVED)
    assert s["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 8080, "appProtocol": "http"},
        {"name": "metrics", "protocol": "TCP", "port": 19090},
    ]


def test_a_port_matches_by_name_and_protocol() -> None:
    dns = Port(name="dns", protocol="UDP", port=53)
    merged = merged_of(("c1", [dns]))
    src = source([endpoint("10.1.0.1")], ports=[("dns", 5353, "TCP")])
    assert desired_slices(NS, NAME, merged, {"c1": [src]}, DERIVED) == []
    src = source([endpoint("10.1.0.1")], ports=[("dns", 5353, "UDP")])
    [s] = desired_slices(NS, NAME, merged, {"c1": [src]}, DERIVED)
    assert s["ports"] == [{"name": "dns", "protocol": "UDP", "port": 5353}]


def test_an_unnamed_port_among_several_is_named_as_on_the_derived_service() -> None:
    unnamed, named = Port(port=80), Port(name="admin", port=8443)
    src = source([endpoint("10.1.0.1")], ports=[("", 8080), ("admin", 9443)])
    [s] = desired_slices(NS, NAME, merged_of(("c1", [unnamed, named])), {"c1": [src]}, DERIVED)
    assert [p["name"] for p in s["ports"]] == ["tcp-80", "admin"]
    # Headless: no derived Service; the names stay those of the ServiceImport.
    merged = merged_of(("c1", [unnamed, named]), headless=True)
    [s] = desired_slices(NS, NAME, merged, {"c1": [src]}, None)
    assert [p["name"] for p in s["ports"]] == ["", "admin"]


def test_a_single_unnamed_port_stays_unnamed() -> None:
    src = source([endpoint("10.1.0.1")], ports=[("", 8080)])
    [s] = desired_slices(NS, NAME, merged_of(("c1", [Port(port=80)])), {"c1": [src]}, DERIVED)
    assert s["ports"] == [{"name": "", "protocol": "TCP", "port": 8080}]


def test_a_cluster_exposing_no_port_gets_slices_only_for_a_headless_import() -> None:
    # c2's only port lost its clash, so it exposes nothing.
    clusters = (("c1", [Port(port=80)]), ("c2", [Port(port=81)]))
    sources = {
        "c1": [source([endpoint("10.1.0.1")], ports=[("", 80)])],
        "c2": [source([endpoint("10.2.0.1")], ports=[("", 81)])],
    }
    clusterset = desired_slices(NS, NAME, merged_of(*clusters), sources, DERIVED)
    assert [addresses_of(clusterset, c) for c in ("c1", "c2")] == [["10.1.0.1"], []]
    headless = desired_slices(NS, NAME, merged_of(*clusters, headless=True), sources, None)
    assert [addresses_of(headless, c) for c in ("c1", "c2")] == [["10.1.0.1"], ["10.2.0.1"]]


def test_slices_with_different_target_ports_stay_apart() -> None:
    """A named targetPort can resolve to different numbers on different pods."""
    merged = merged_of(("c1", [Port(name="http", port=80)]))
    sources = {
        "c1": [
            source([endpoint("10.1.0.1")], ports=[("http", 8080)], name="a"),
            source([endpoint("10.1.0.2")], ports=[("http", 8081)], name="b"),
        ]
    }
    slices = desired_slices(NS, NAME, merged, sources, DERIVED)
    got = sorted((s["ports"][0]["port"], s["endpoints"][0]["addresses"][0]) for s in slices)
    assert got == [(8080, "10.1.0.1"), (8081, "10.1.0.2")]


# --- endpoints --------------------------------------------------------------------------


def test_endpoint_fields_kept_and_dropped() -> None:
    merged = merged_of(("c1", [TCP42]), headless=True)
    ep = {
        "addresses": ["10.1.0.7"],
        "conditions": {"ready": True, "serving": True, "terminating": False},
        "hostname": "web-0",
        "zone": "zone-a",
        "nodeName": "node-1",
        "targetRef": {"kind": "Pod", "name": "web-0", "namespace": NS, "uid": "u"},
        "hints": {"forZones": [{"name": "zone-a"}]},
        "deprecatedTopology": {"x": "y"},
    }
    [s] = desired_slices(NS, NAME, merged, {"c1": [source([ep])]}, None)
    assert s["endpoints"] == [
        {
            "addresses": ["10.1.0.7"],
            "conditions": {"ready": True, "serving": True, "terminating": False},
            "hostname": "web-0",
            "zone": "zone-a",
        }
    ]


def test_not_ready_endpoints_are_kept_with_ready_false() -> None:
    merged = merged_of(("c1", [TCP42]))
    eps = [
        endpoint("10.1.0.1", conditions={"ready": False, "serving": True, "terminating": True}),
        endpoint("10.1.0.2", conditions={}),
        {"addresses": ["10.1.0.3"]},
    ]
    [s] = desired_slices(NS, NAME, merged, {"c1": [source(eps)]}, DERIVED)
    assert [e["conditions"] for e in s["endpoints"]] == [
        {"ready": False, "serving": True, "terminating": True},
        {},
        {},
    ]


def test_an_endpoint_listed_twice_appears_once_the_readiest_copy() -> None:
    merged = merged_of(("c1", [TCP42]))
    sources = {
        "c1": [
            source([endpoint("10.1.0.1", conditions={"ready": False})], name="a"),
            source([endpoint("10.1.0.1"), endpoint("10.1.0.2")], name="b"),
        ]
    }
    [s] = desired_slices(NS, NAME, merged, sources, DERIVED)
    assert s["endpoints"] == [endpoint("10.1.0.1"), endpoint("10.1.0.2")]


def test_endpoints_without_addresses_are_dropped() -> None:
    merged = merged_of(("c1", [TCP42]))
    eps: list[dict[str, Any]] = [
        {"addresses": [], "conditions": {}},
        {"conditions": {}},
        endpoint("10.1.0.1"),
    ]
    [s] = desired_slices(NS, NAME, merged, {"c1": [source(eps)]}, DERIVED)
    assert s["endpoints"] == [endpoint("10.1.0.1")]


def test_fqdn_slices_follow_the_source() -> None:
    merged = merged_of(("c1", [TCP42]), headless=True)
    src = source([endpoint("db.example.com")], address_type="FQDN")
    [s] = desired_slices(NS, NAME, merged, {"c1": [src]}, None)
    assert s["addressType"] == "FQDN"
    assert s["endpoints"][0]["addresses"] == ["db.example.com"]


# --- helpers for the controller ---------------------------------------------------------


def test_source_cluster_and_slice_key() -> None:
    merged = merged_of(("c1", [TCP42]))
    [s] = desired_slices(NS, NAME, merged, {"c1": [source([endpoint("10.1.0.1")])]}, DERIVED)
    assert source_cluster(s) == "c1"
    assert slice_key(s) == (NS, NAME)
    plain = source([endpoint("10.1.0.1")])
    assert source_cluster(plain) is None
    assert slice_key(plain) is None
    assert not managed_by_us(plain)
    for broken in ({}, {"metadata": None}, {"metadata": {"labels": None}}):
        assert source_cluster(broken) is None
        assert slice_key(broken) is None


def test_transform_keeps_what_desired_slices_reads() -> None:
    merged = merged_of(("c1", [TCP42, Port(name="udp", protocol="UDP", port=53)]), headless=True)
    ep = endpoint("10.1.0.1", hostname="h", nodeName="n", targetRef={"name": "p"})
    raw = source([ep], ports=[("tcp", 4242), ("udp", 5353, "UDP")])
    trimmed = transform(raw)
    assert trimmed["metadata"] == {
        "name": "hello-abcde",
        "namespace": NS,
        "labels": {
            KUBE_SERVICE_NAME: NAME,
            ENDPOINTSLICE_MANAGED_BY: "endpointslice-controller.k8s.io",
        },
    }
    assert trimmed["endpoints"] == [endpoint("10.1.0.1", hostname="h", nodeName="n")]
    assert desired_slices(NS, NAME, merged, {"c1": [trimmed]}, None) == desired_slices(
        NS, NAME, merged, {"c1": [raw]}, None
    )


@pytest.mark.parametrize("headless", [False, True])
def test_an_up_to_date_slice_of_ours_trims_to_its_desired_form(headless: bool) -> None:
    merged = merged_of(("c1", [TCP42, Port(port=80)]), headless=headless)
    src = source([endpoint("10.1.0.1", zone="z")], ports=[("tcp", 42), ("", 8080)])
    derived = None if headless else DERIVED
    [want] = desired_slices(NS, NAME, merged, {"c1": [src]}, derived)
    observed = json.loads(json.dumps(want))
    observed["metadata"] |= {"uid": "u-1", "resourceVersion": "7", "generation": 2}
    trimmed = transform(observed)
    assert trimmed["metadata"].pop("uid") == "u-1"
    assert trimmed == want


def test_transform_never_raises() -> None:
    for odd in (
        {},
        {"metadata": None, "endpoints": None, "ports": None},
        {"endpoints": [None, 3, {"addresses": "x"}], "ports": [None, {"port": "http"}]},
    ):
        out = transform(odd)
        assert out["kind"] == "EndpointSlice"


# --- properties -------------------------------------------------------------------------

CLUSTERS = ("c1", "c2", "c3")
merged_ports = st.lists(
    st.builds(
        Port,
        name=st.sampled_from(["", "http", "tcp"]),
        protocol=st.sampled_from(["TCP", "UDP"]),
        port=st.sampled_from([42, 80]),
    ),
    max_size=3,
    unique_by=(lambda p: p.name, lambda p: (p.protocol, p.port)),
)
conditions = st.fixed_dictionaries(
    {}, optional={c: st.booleans() for c in ("ready", "serving", "terminating")}
)


def _address(i: int, family: str) -> str:
    return f"10.0.{i // 250}.{i % 250}" if family == "IPv4" else f"fd00:10::{i:x}"


# An endpoint as (index, conditions, hostname); its address depends on its slice's family.
one_endpoint = st.tuples(st.integers(0, 400), conditions, st.sampled_from([None, "web-0", "web-1"]))
# A few endpoints drawn one by one, and often a run of 90-260 more (with one set of
# conditions): groups of more than 100 endpoints, which are cut into several slices.
source_endpoints = st.builds(
    lambda few, run: few + run,
    st.lists(one_endpoint, max_size=20),
    st.one_of(
        st.just([]),
        st.builds(
            lambda start, count, c: [(i, c, None) for i in range(start, start + count)],
            st.integers(0, 400),
            st.integers(90, 260),
            conditions,
        ),
    ),
)


def _slice(endpoints: list[tuple[int, Any, str | None]], ports: Any, family: str) -> Any:
    return source(
        [
            {"addresses": [_address(i, family)], "conditions": c} | ({"hostname": h} if h else {})
            for i, c, h in endpoints
        ],
        ports=ports,
        address_type=family,
    )


source_slices = st.lists(
    st.builds(
        _slice,
        source_endpoints,
        st.lists(
            st.tuples(st.sampled_from(["", "http", "tcp"]), st.sampled_from([42, 80, 8080])),
            max_size=3,
            unique_by=lambda p: p[0],
        ),
        st.sampled_from(["IPv4", "IPv6"]),
    ),
    max_size=3,
)


@given(
    st.dictionaries(st.sampled_from(CLUSTERS), merged_ports, min_size=1),
    st.dictionaries(st.sampled_from(CLUSTERS), source_slices),
    st.booleans(),
    st.randoms(use_true_random=False),
)
def test_properties(
    exports: dict[str, list[Port]],
    sources: dict[str, list[dict[str, Any]]],
    headless: bool,
    rnd: Any,
) -> None:
    merged = merged_of(*exports.items(), headless=headless)
    derived = None if headless else DERIVED
    slices = desired_slices(NS, NAME, merged, sources, derived)

    names = [s["metadata"]["name"] for s in slices]
    assert names == sorted(names) and len(set(names)) == len(names)
    for s in slices:
        assert 1 <= len(s["endpoints"]) <= MAX_ENDPOINTS_PER_SLICE
        assert len(s["metadata"]["name"]) <= 253 and DNS_SUBDOMAIN.match(s["metadata"]["name"])
        cluster = s["metadata"]["labels"][SOURCE_CLUSTER]
        assert cluster in merged.clusters
        exposed = merged.exposed_ports[cluster]
        # Only the cluster's exposed ports, by name and protocol, in merged order.
        allowed = [
            (p.name if headless else derived_port_name(p, len(merged.spec.ports)), p.protocol)
            for p in exposed
        ]
        got = [(p["name"], p["protocol"]) for p in s["ports"]]
        assert got == [a for a in allowed if a in got]
        assert headless or s["ports"]

    # Every address of a source slice that keeps a port (any, when headless) appears
    # exactly once per group of equal ports, and nothing else appears.
    for cluster in merged.clusters:
        expected: dict[str, set[str]] = {}
        for src in sources.get(cluster, []):
            kept = {(p["name"], p["protocol"]) for p in src["ports"]} & {
                (p.name, p.protocol) for p in merged.exposed_ports[cluster]
            }
            if not kept and not headless:
                continue
            for e in src["endpoints"]:
                expected.setdefault(e["addresses"][0], set())
        assert set(addresses_of(slices, cluster)) == set(expected)
    groups: dict[tuple[str, str, str], list[str]] = {}
    for s in slices:
        group = (s["metadata"]["labels"][SOURCE_CLUSTER], s["addressType"], json.dumps(s["ports"]))
        groups.setdefault(group, []).extend(e["addresses"][0] for e in s["endpoints"])
    for addresses in groups.values():
        assert len(addresses) == len(set(addresses))
    # A group is cut into full slices of 100 and one last with the rest.
    by_group: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for s in slices:
        group = (s["metadata"]["labels"][SOURCE_CLUSTER], s["addressType"], json.dumps(s["ports"]))
        by_group.setdefault(group, []).append(s)
    for (_, family, _), chunks in by_group.items():
        sizes = [len(c["endpoints"]) for c in chunks]
        assert all(n == MAX_ENDPOINTS_PER_SLICE for n in sizes[:-1]), sizes
        for c in chunks:
            assert all((":" in e["addresses"][0]) == (family == "IPv6") for e in c["endpoints"])

    # Deterministic, whatever the order of clusters, slices and endpoints.
    shuffled: dict[str, list[dict[str, Any]]] = {}
    for cluster in rnd.sample(list(sources), len(sources)):
        items = [
            {**s, "endpoints": rnd.sample(s["endpoints"], len(s["endpoints"]))}
            for s in sources[cluster]
        ]
        shuffled[cluster] = rnd.sample(items, len(items))
    again = desired_slices(NS, NAME, merged, shuffled, derived)
    assert json.dumps(again) == json.dumps(slices)
    # And the same on the informer's trimmed slices.
    trimmed = {c: [transform(s) for s in v] for c, v in sources.items()}
    assert desired_slices(NS, NAME, merged, trimmed, derived) == slices


# --- node names and topology hints --------------------------------------------------------


def test_node_names_only_for_the_local_clusters_own_endpoints() -> None:
    """internalTrafficPolicy: Local on the derived Service reaches the node's own pods:
    the local cluster's endpoints keep their nodeName, remote ones lose it."""
    merged = merged_of(("c1", [TCP42]), ("c2", [TCP42]))
    sources = {
        "c1": [source([endpoint("10.1.0.1", nodeName="n1")])],
        "c2": [source([endpoint("10.2.0.1", nodeName="n1")])],
    }
    slices = desired_slices(NS, NAME, merged, sources, DERIVED, "c1")
    nodes = {
        s["metadata"]["labels"][SOURCE_CLUSTER]: [e.get("nodeName") for e in s["endpoints"]]
        for s in slices
    }
    assert nodes == {"c1": ["n1"], "c2": [None]}
    assert all(
        "nodeName" not in e
        for s in desired_slices(NS, NAME, merged, sources, DERIVED)
        for e in s["endpoints"]
    )


def test_zone_hints_with_a_traffic_distribution_only() -> None:
    """Every endpoint with a zone gets hints for its own zone when the import asks for
    topology-aware routing (kube-proxy needs hints on every ready endpoint); the
    source's own hints are not copied."""
    ep = endpoint(
        "10.1.0.1", zone="z1", hints={"forZones": [{"name": "z9"}], "forNodes": [{"name": "n"}]}
    )
    plain = merged_of(("c1", [TCP42]))
    [s] = desired_slices(NS, NAME, plain, {"c1": [source([ep])]}, DERIVED)
    assert "hints" not in s["endpoints"][0]
    spec = plain.spec.model_copy(update={"traffic_distribution": "PreferSameZone"})
    zoned = plain.model_copy(update={"spec": spec})
    [s] = desired_slices(NS, NAME, zoned, {"c1": [source([ep, endpoint("10.1.0.2")])]}, DERIVED)
    assert [e.get("hints") for e in s["endpoints"]] == [{"forZones": [{"name": "z1"}]}, None]
    # Our own slice, cached through transform, reads back as written: no rewrite.
    assert transform(s)["endpoints"] == s["endpoints"]
