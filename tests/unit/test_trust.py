"""mcs.core.trust: which endpoints and which exported metadata a member may hand to the others."""

from __future__ import annotations

import argparse
import ipaddress
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio.client import Configuration

from mcs.commands.run import add_run_parser, endpoint_policy
from mcs.core import api, events, trust
from mcs.core.model import ExportRecord, InvalidExport, record_from_objects
from mcs.runtime.members import ConfigError, check_tls

NO_RANGES = trust.EndpointPolicy()


def slice_(
    addresses: list[Any], address_type: str = "IPv4", manager: str | None = None, **ep: Any
) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": "web"}
    if manager is not None:
        labels[api.ENDPOINTSLICE_MANAGED_BY] = manager
    return {
        "metadata": {"name": "web-abc", "namespace": "ns", "labels": labels},
        "addressType": address_type,
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}, **ep} for a in addresses],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def kept_addresses(kept: dict[str, Any] | None) -> list[str]:
    assert kept is not None
    return [a for ep in kept["endpoints"] for a in ep["addresses"]]


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "address_type"),
    [
        ("10.1.2.3", "IPv4"),
        ("192.168.0.1", "IPv4"),
        ("8.8.8.8", "IPv4"),
        ("fd00::1", "IPv6"),
        ("2001:db8::5", "IPv6"),
        ("db-0.example.com", "FQDN"),
        ("db-0.example.com.", "FQDN"),
    ],
)
def test_addresses_the_api_accepts_are_kept(address: str, address_type: str) -> None:
    assert trust.address_problem(address, address_type) is None


@pytest.mark.parametrize(
    ("address", "address_type", "words"),
    [
        ("127.0.0.1", "IPv4", "loopback"),
        ("127.8.9.10", "IPv4", "loopback"),
        ("::1", "IPv6", "loopback"),
        ("169.254.169.254", "IPv4", "link-local"),  # cloud metadata service
        ("fe80::1", "IPv6", "link-local"),
        ("0.0.0.0", "IPv4", "unspecified"),
        ("::", "IPv6", "unspecified"),
        ("224.0.0.1", "IPv4", "multicast"),
        ("239.1.1.1", "IPv4", "multicast"),
        ("ff02::1", "IPv6", "multicast"),
        ("10.0.0.256", "IPv4", "not an IP"),
        ("010.0.0.1", "IPv4", "not an IP"),  # leading zeros: ambiguous, refused
        ("10.0.0.1 ", "IPv4", "not an IP"),
        ("", "IPv4", "not an IP"),
        ("fd00::1", "IPv4", "not an IPv4"),
        ("10.0.0.1", "IPv6", "not an IPv6"),
        ("::ffff:10.0.0.1", "IPv6", "plain"),
        ("fe80::1%eth0", "IPv6", "plain"),
        ("localhost", "FQDN", "fully qualified"),
        ("Db.example.com", "FQDN", "fully qualified"),
        ("a_b.example.com", "FQDN", "fully qualified"),
        (42, "IPv4", "not a string"),
    ],
)
def test_addresses_the_api_refuses_are_dropped(address: Any, address_type: str, words: str) -> None:
    problem = trust.address_problem(address, address_type)
    assert problem is not None
    reason, detail = problem
    assert reason == "invalid"
    assert words in detail


def test_member_ranges() -> None:
    nets = (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("fd00:1::/64"))
    assert trust.address_problem("10.1.200.3", "IPv4", nets) is None
    assert trust.address_problem("fd00:1::9", "IPv6", nets) is None
    outside = trust.address_problem("10.2.0.1", "IPv4", nets)
    assert outside is not None and outside[0] == "outside-cidrs"
    assert "10.1.0.0/16" in outside[1]
    assert trust.address_problem("fd00:2::1", "IPv6", nets) is not None
    # no range of the family: nothing of that family is allowed
    only_v4 = (ipaddress.ip_network("10.1.0.0/16"),)
    assert trust.address_problem("fd00:1::9", "IPv6", only_v4) is not None
    fqdn = trust.address_problem("db.example.com", "FQDN", nets)
    assert fqdn is not None and fqdn[0] == "fqdn-not-allowed"
    # validity comes first: a loopback address inside a (silly) range is still refused
    assert trust.address_problem("127.0.0.1", "IPv4", (ipaddress.ip_network("127.0.0.0/8"),))


# --------------------------------------------------------------------------- slices


def test_one_bad_endpoint_does_not_sink_the_slice() -> None:
    policy = trust.EndpointPolicy(cidrs={"c1": (ipaddress.ip_network("10.1.0.0/16"),)})
    source = slice_(["10.1.0.5", "10.9.9.9", "127.0.0.1", "10.1.0.6"])
    kept, dropped = trust.check_slice("c1", source, policy)
    assert kept_addresses(kept) == ["10.1.0.5", "10.1.0.6"]
    assert [(d.addresses, d.reason) for d in dropped] == [
        (("10.9.9.9",), "outside-cidrs"),
        (("127.0.0.1",), "invalid"),
    ]
    assert all(d.cluster == "c1" and d.slice == "web-abc" for d in dropped)
    assert len(source["endpoints"]) == 4  # the input is not changed
    # ranges are per member: c2 has none, so only API validity applies to it
    kept, dropped = trust.check_slice("c2", source, policy)
    assert kept_addresses(kept) == ["10.1.0.5", "10.9.9.9", "10.1.0.6"]
    assert [d.addresses for d in dropped] == [("127.0.0.1",)]


def test_endpoint_shape_is_checked() -> None:
    source = slice_(["10.0.0.1"])
    source["endpoints"] += [
        {"addresses": []},
        {"addresses": ["10.0.0.2"] * 101},
        {"addresses": ["10.0.0.3"], "hostname": "Not_A_Label"},
        {"addresses": ["10.0.0.4"], "hostname": "db-0"},
        "junk",
    ]
    kept, dropped = trust.check_slice("c1", source, NO_RANGES)
    assert kept_addresses(kept) == ["10.0.0.1", "10.0.0.4"]
    assert len(dropped) == 4 and {d.reason for d in dropped} == {"invalid"}


@pytest.mark.parametrize(
    ("manager", "counts"),
    [
        (None, True),  # hand-made slices of a selector-less Service
        ("endpointslice-controller.k8s.io", True),
        ("endpointslicemirroring-controller.k8s.io", True),
        ("some-other-controller.example.com", True),
        (api.CONTROLLER_NAME, False),  # ours: imported already
        ("endpointslice-mesh-controller.cilium.io", False),  # Cilium's remote backends
    ],
)
def test_default_source_managers(manager: str | None, counts: bool) -> None:
    kept, dropped = trust.check_slice("c1", slice_(["10.0.0.1"], manager=manager), NO_RANGES)
    assert (kept is not None) is counts
    assert dropped == []


def test_configured_source_managers() -> None:
    policy = trust.EndpointPolicy(managers=("endpointslice-controller.k8s.io", ""))
    assert policy.counts("endpointslice-controller.k8s.io")
    assert policy.counts("")
    assert not policy.counts("endpointslicemirroring-controller.k8s.io")
    # ours never counts, whatever the configuration
    assert not trust.EndpointPolicy(managers=("*",), ignored_managers=()).counts(
        api.CONTROLLER_NAME
    )
    assert api.CONTROLLER_NAME == api.CONTROLLER_NAME


def test_unknown_address_type_does_not_count() -> None:
    kept, dropped = trust.check_slice("c1", slice_(["10.0.0.1"], address_type="IPv5"), NO_RANGES)
    assert kept is None and dropped == []


RANGES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))
# Any address or text, and many inside the member's ranges: most of those must be kept.
ips = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
    st.text(max_size=20),
    st.ip_addresses(network=RANGES[0]).map(str),
    st.ip_addresses(network=RANGES[1]).map(str),
)


def usable(address: str, address_type: str) -> bool:
    """The rule of the module's docstring, stated again: an IP address of the slice's
    family, plain (no IPv4-mapped IPv6, no zone), neither unspecified, loopback,
    link-local nor multicast, inside one of the member's ranges."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if f"IPv{ip.version}" != address_type:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped or ip.scope_id):
        return False
    if ip.is_unspecified or ip.is_loopback or ip.is_link_local or ip.is_multicast:
        return False
    return any(ip in net for net in RANGES if net.version == ip.version)


@given(st.lists(ips, max_size=12), st.sampled_from(["IPv4", "IPv6"]))
def test_kept_and_dropped_partition_the_endpoints(addresses: list[str], address_type: str) -> None:
    """Every address is kept or dropped; exactly the usable ones are kept (so dropping
    everything fails, and so does keeping one outside the ranges)."""
    policy = trust.EndpointPolicy(cidrs={"c1": RANGES})
    kept, dropped = trust.check_slice("c1", slice_(addresses, address_type), policy)
    got = kept_addresses(kept)
    assert sorted(got + [a for d in dropped for a in d.addresses]) == sorted(addresses)
    assert sorted(got) == sorted(a for a in addresses if usable(a, address_type))


@given(st.ip_addresses(v=4))
def test_usable_ipv4_inside_the_range_is_kept(ip: ipaddress.IPv4Address) -> None:
    usable = not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)
    policy = trust.EndpointPolicy(cidrs={"c1": (ipaddress.ip_network("0.0.0.0/0"),)})
    kept, _ = trust.check_slice("c1", slice_([str(ip)]), policy)
    assert kept_addresses(kept) == ([str(ip)] if usable else [])


@given(st.ip_addresses(v=6))
def test_usable_ipv6_inside_the_range_is_kept(ip: ipaddress.IPv6Address) -> None:
    usable = not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.ipv4_mapped is not None
    )
    policy = trust.EndpointPolicy(cidrs={"c1": (ipaddress.ip_network("::/0"),)})
    kept, _ = trust.check_slice("c1", slice_([str(ip)], "IPv6"), policy)
    assert kept_addresses(kept) == ([str(ip)] if usable else [])


def test_filter_slices_and_event() -> None:
    policy = trust.EndpointPolicy(cidrs={"c1": (ipaddress.ip_network("10.1.0.0/16"),)})
    sources = [
        slice_(["10.1.0.1", "10.2.0.1"]),
        slice_(["10.1.0.9"], manager=api.CONTROLLER_NAME),
    ]
    kept, dropped = trust.filter_slices("c1", sources, policy)
    assert [kept_addresses(k) for k in kept] == [["10.1.0.1"]]
    export = {"metadata": {"name": "web", "namespace": "ns", "uid": "u1"}}
    event = events.dropped_event(export, dropped, "c1", datetime(2026, 1, 1, tzinfo=UTC))
    assert event["involvedObject"]["kind"] == "ServiceExport"
    assert event["reason"] == "EndpointsDropped" and event["type"] == "Warning"
    assert "10.2.0.1" in event["message"] and "10.1.0.0/16" in event["message"]
    again = events.dropped_event(
        export, list(reversed(dropped)), "c2", datetime(2026, 1, 2, tzinfo=UTC)
    )
    assert again["metadata"]["name"] == event["metadata"]["name"]  # same set, same Event


def test_parse_member_cidrs() -> None:
    got = trust.parse_member_cidrs(["c1=10.1.0.0/16,fd00::/64", "c2=10.2.0.0/16; c1=10.3.0.0/16"])
    assert {k: [str(n) for n in v] for k, v in got.items()} == {
        "c1": ["10.1.0.0/16", "fd00::/64", "10.3.0.0/16"],
        "c2": ["10.2.0.0/16"],
    }
    assert trust.parse_member_cidrs(["", "  "]) == {}
    for bad in ("c1", "=10.0.0.0/8", "c1=", "c1=10.0.0.1/8", "c1=banana"):
        with pytest.raises(ValueError, match="--member-cidrs"):
            trust.parse_member_cidrs([bad])


# --------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("labels", "annotations"),
    [
        ({}, {}),
        (None, None),
        ({"app": "web", "example.com/tier": "front-end", "x": ""}, {}),
        ({}, {"example.com/owner": "team a, with spaces & symbols", "Note": "x" * 5000}),
        ({"a" * 63: "b" * 63}, {}),
    ],
)
def test_metadata_the_api_accepts(labels: Any, annotations: Any) -> None:
    assert trust.metadata_problems(labels, annotations) == []


@pytest.mark.parametrize(
    ("labels", "annotations", "words"),
    [
        ({"kubernetes.io/hostname": "x"}, {}, 'prefix "kubernetes.io" is reserved'),
        ({"topology.kubernetes.io/zone": "x"}, {}, "reserved"),
        ({}, {"k8s.io/x": "y"}, "reserved"),
        ({}, {"Node.K8s.IO/x": "y"}, "reserved"),
        ({}, {"multicluster.kubernetes.io/service-name": "y"}, "reserved"),
        ({"bad key": "x"}, {}, "name part"),
        ({"-x": "x"}, {}, "name part"),
        ({"a" * 64: "x"}, {}, "63 characters"),
        ({"/x": "x"}, {}, "prefix part"),
        ({"Example.com/x": "x"}, {}, "prefix part"),
        ({"x": "a b"}, {}, "label value"),
        ({"x": "a" * 64}, {}, "63 characters"),
        ({"x": "-a"}, {}, "label value"),
        ({"x": 1}, {}, "strings"),
        ("nope", {}, "not a map"),
        ({}, {"big": "x" * (trust.TOTAL_ANNOTATION_SIZE + 1)}, "the API's 262144"),
        ({}, {"big": "x" * trust.MAX_EXPORTED_METADATA}, "every member"),
    ],
)
def test_metadata_the_api_or_mcs_refuses(labels: Any, annotations: Any, words: str) -> None:
    problems = trust.metadata_problems(labels, annotations)
    assert problems and any(words in p for p in problems), problems


_qualified = st.from_regex(r"[a-z0-9]([-a-z0-9_.]{0,20}[a-z0-9])?", fullmatch=True)


@given(st.dictionaries(_qualified, _qualified, max_size=5))
def test_generated_valid_labels_pass(labels: dict[str, str]) -> None:
    assert trust.metadata_problems(labels, labels) == []


def _export(labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "ns", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"exportedLabels": labels},
    }


def test_export_with_reserved_label_is_invalid() -> None:
    service = {"spec": {"ports": [{"port": 80}]}}
    rec = record_from_objects("c1", _export({"kubernetes.io/evil": "x"}), service)
    assert isinstance(rec, InvalidExport)
    assert rec.reason == "InvalidExportedMetadata"
    assert '"kubernetes.io/evil"' in rec.message and '"ns/web"' in rec.message
    ok = record_from_objects("c1", _export({"tier": "front"}), service)
    assert isinstance(ok, ExportRecord)
    assert ok.exported_labels == {"tier": "front"}
    assert ok.created == datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- TLS


def test_insecure_skip_tls_verify_is_refused_unless_allowed() -> None:
    conf = Configuration(host="https://example.invalid")
    conf.verify_ssl = False
    with pytest.raises(ConfigError, match="insecure-skip-tls-verify"):
        check_tls(conf, "c2", allow_insecure=False)
    check_tls(conf, "c2", allow_insecure=True)
    check_tls(Configuration(host="https://example.invalid"), "c2", allow_insecure=False)


def test_run_flags_make_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*args: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_run_parser(parser.add_subparsers())
        return parser.parse_args(["run", *args])

    monkeypatch.setenv("MCS_MEMBER_CIDRS", "c1=10.1.0.0/16 c2=10.2.0.0/16")
    policy = endpoint_policy(parse("--member-cidrs", "c3=10.3.0.0/16"))
    assert sorted(policy.cidrs) == ["c1", "c2", "c3"]
    assert policy.managers == ("*",)
    assert policy.ignored_managers == trust.DEFAULT_IGNORED_MANAGERS
    monkeypatch.delenv("MCS_MEMBER_CIDRS")
    args = parse("--source-slice-managers", "endpointslice-controller.k8s.io,")
    policy = endpoint_policy(args)
    assert policy.cidrs == {}
    assert policy.counts("") and not policy.counts("other")
    assert not parse().allow_insecure_skip_tls_verify
    with pytest.raises(ConfigError, match="c1=banana"):
        endpoint_policy(parse("--member-cidrs", "c1=banana"))


def test_exported_metadata_allow_list() -> None:
    """--exported-metadata-allow: every exported key must match a pattern; a key outside
    it makes the export invalid with a reason that names the key and the patterns; no
    list means any key (outside the reserved domains)."""
    allowed = ("example.com/*", "tier")
    ok = {"example.com/team": "a", "tier": "db"}
    assert trust.metadata_problems(ok, {"example.com/owner": "b"}, allowed) == []
    (problem,) = trust.metadata_problems(ok, {"argocd.argoproj.io/instance": "x"}, allowed)
    assert '"argocd.argoproj.io/instance"' in problem and "example.com/*, tier" in problem
    assert trust.metadata_problems({"argocd.argoproj.io/instance": "x"}, None) == []
    assert trust.metadata_problems({"tier": "db"}, None, ()) != [], "an empty list allows none"
    service = {"spec": {"ports": [{"port": 80}]}}
    rec = record_from_objects("c1", _export({"app": "web"}), service, allowed)
    assert isinstance(rec, InvalidExport) and rec.reason == "InvalidExportedMetadata"
    assert isinstance(
        record_from_objects("c1", _export({"tier": "db"}), service, allowed), ExportRecord
    )


def test_exported_metadata_allow_flag() -> None:
    from mcs.commands.cli import build_parser
    from mcs.commands.run import exported_metadata

    def parsed(*argv: str) -> tuple[str, ...] | None:
        return exported_metadata(build_parser().parse_args(["run", *argv]))

    assert parsed() is None
    assert parsed("--exported-metadata-allow", "example.com/*, tier") == ("example.com/*", "tier")
    assert parsed("--exported-metadata-allow", "") == ()
