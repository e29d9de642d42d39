"""Trust boundaries, second pass (#29): what a member may offer is bound to the member as
the operator configured it (its kubeconfig context), never to an id it publishes; an id
clash leaves both members out instead of stopping the controller; and the rest of the
second pass (metadata addresses, namespaces, remote kubeconfigs, malformed exports)."""

from __future__ import annotations

import argparse
import ipaddress
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.commands import run as run_cmd
from mcs.commands.run import add_run_parser, bind_endpoint_policy, build_members, endpoint_policy
from mcs.core import plan, trust
from mcs.core.model import ExportRecord, InvalidExport, record_from_objects
from mcs.runtime.controller import Controller
from mcs.runtime.credentials import CredentialReloader, refresh
from mcs.runtime.kubeapi import new_client
from mcs.runtime.members import ClusterIds, ConfigError, check_remote_context, provisional_id


def parse(*args: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers())
    return parser.parse_args(["run", *args])


def slice_(*addresses: str, address_type: str = "IPv4") -> dict[str, Any]:
    return {
        "metadata": {"name": "web-abc", "namespace": "ns", "labels": {}},
        "addressType": address_type,
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
    }


def kept(cluster: str, source: dict[str, Any], policy: trust.EndpointPolicy) -> list[str]:
    out, _ = trust.check_slice(cluster, source, policy)
    assert out is not None
    return [a for ep in out["endpoints"] for a in ep["addresses"]]


@pytest.fixture(autouse=True)
def _no_env_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCS_MEMBER_CIDRS", raising=False)


# --------------------------------------------------------------------------- ranges


def test_ranges_stay_with_the_context_whatever_id_the_member_publishes() -> None:
    """Reproduction of #29: with ``c1=10.1.0.0/16``, member c1 renames itself
    ``c1-renamed`` in its ClusterProperty; its 8.8.8.8 must still be refused."""
    policy = bind_endpoint_policy(
        endpoint_policy(parse("--member-cidrs", "c1=10.1.0.0/16")), ["c1", "c2"], {}
    )
    mine = policy.for_member("c1", "c1-renamed")
    assert kept("c1-renamed", slice_("10.1.0.5", "8.8.8.8"), mine) == ["10.1.0.5"]
    # and a member cannot take another's ranges by taking its name: c2 claims "c1"
    theirs = policy.for_member("c2", "c1")
    assert kept("c1", slice_("10.1.0.5"), theirs) == []


def test_the_controller_binds_the_ranges_to_each_members_current_id() -> None:
    """What the controller hands the planner (`EndpointPolicy.for_clusters`, by the
    members' current ids): the ranges of each member's context."""
    policy = bind_endpoint_policy(
        endpoint_policy(parse("--member-cidrs", "c1=10.1.0.0/16")), ["c1", "c2"], {}
    )
    bound = policy.for_clusters({"c1-renamed": "c1", "c2": "c2"})
    assert kept("c1-renamed", slice_("10.1.0.5", "8.8.8.8"), bound) == ["10.1.0.5"]
    assert kept("c2", slice_("10.1.0.5"), bound) == []  # no ranges: nothing
    assert kept("c1", slice_("10.1.0.5"), bound) == []  # the old id is no member now
    assert trust.EndpointPolicy().for_clusters({"c1": "c1"}) == trust.EndpointPolicy()


def test_a_member_without_ranges_offers_nothing_once_ranges_are_in_use() -> None:
    policy = bind_endpoint_policy(
        endpoint_policy(parse("--member-cidrs", "c1=10.1.0.0/16")), ["c1", "c2"], {}
    )
    assert policy.ranges_in_use
    out, dropped = trust.check_slice("c2", slice_("10.2.0.1"), policy.for_member("c2", "c2"))
    assert out is not None and out["endpoints"] == []
    assert [d.reason for d in dropped] == ["no-ranges"]
    assert "no --member-cidrs entry" in str(dropped[0])
    # a policy that was never bound to a member offers nothing either (fails closed)
    assert kept("c1", slice_("10.1.0.5"), policy) == []
    # without any ranges, every member may use any (valid) address, as before
    free = bind_endpoint_policy(endpoint_policy(parse()), ["c1", "c2"], {})
    assert kept("c2", slice_("8.8.8.8"), free.for_member("c2", "c2")) == ["8.8.8.8"]


def test_a_name_that_is_no_member_is_refused() -> None:
    """A typo (or an id a member publishes) used to switch the check off silently."""
    with pytest.raises(ConfigError, match=r"'c1-typo'.*neither a member context"):
        bind_endpoint_policy(
            endpoint_policy(parse("--member-cidrs", "c1-typo=10.1.0.0/16")), ["c1", "c2"], {}
        )


def test_an_operator_configured_cluster_id_may_name_the_ranges() -> None:
    args = parse(
        "--member-cidrs", "east=10.1.0.0/16 ctx-b=10.2.0.0/16", "--cluster-id", "ctx-a=east"
    )
    policy = bind_endpoint_policy(endpoint_policy(args), ["ctx-a", "ctx-b"], {"ctx-a": "east"})
    assert {c: [str(n) for n in r] for c, r in policy.member_cidrs.items()} == {
        "ctx-a": ["10.1.0.0/16"],
        "ctx-b": ["10.2.0.0/16"],
    }
    # ambiguous: "ctx-b" is a context and the id the operator gave ctx-a
    with pytest.raises(ConfigError, match="more than one member"):
        bind_endpoint_policy(
            endpoint_policy(parse("--member-cidrs", "ctx-b=10.2.0.0/16")),
            ["ctx-a", "ctx-b"],
            {"ctx-a": "ctx-b"},
        )


def test_policy_is_described_for_the_start_up_log() -> None:
    policy = bind_endpoint_policy(
        endpoint_policy(parse("--member-cidrs", "c1=10.1.0.0/16")), ["c1", "c2"], {}
    )
    described = policy.describe()
    assert described["member_cidrs"] == {"c1": ["10.1.0.0/16"]}
    assert described["ranges_required"] is True
    assert "169.254.169.254" in described["metadata_addresses_denied"]


# --------------------------------------------------------------------------- ids


def test_cluster_ids_refuse_a_shared_id_to_every_claimant() -> None:
    ids = ClusterIds()
    ids.record("a", "x")
    ids.record("b", "x")
    for ctx in ("a", "b"):
        with pytest.raises(ConfigError, match=r"'x'.*left out"):
            ids.check(ctx)
    # b's admin fixes its ClusterProperty: both may join
    assert ids.claim("b", "y") == "y"
    assert ids.check("a") == "x"


def test_provisional_ids_are_unique_and_valid() -> None:
    assert provisional_id("c1", {"c2"}) == "c1"
    other = provisional_id("c1", {"c1"})
    assert other != "c1" and other.startswith("unresolved-")
    assert provisional_id("arn:aws:eks:x", set()).startswith("unresolved-")


def kubeconfig(path: Path, contexts: list[str]) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": c, "cluster": {"server": "https://127.0.0.1:1"}} for c in contexts
                ],
                "users": [{"name": c, "user": {"token": "t"}} for c in contexts],
                "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
                "current-context": contexts[0],
            }
        )
    )
    return path


async def test_an_id_clash_leaves_both_members_out_and_the_controller_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduction of #29: member c2 publishes c1's id. The controller used to raise
    ``ValueError`` ("cluster ids must be unique") at every start: a crash loop."""
    published = {"c1": "c1", "c2": "c1", "c3": "c3"}

    async def resolve(api: Any, ctx: str, overrides: dict[str, str]) -> str:
        return overrides.get(ctx) or published[ctx]

    monkeypatch.setattr(run_cmd, "resolve_cluster_id", resolve)
    path = kubeconfig(tmp_path / "kubeconfig", ["c1", "c2", "c3"])
    args = parse("--kubeconfig", str(path))
    ids = ClusterIds()
    members, pending = await build_members(args, ids)
    try:
        assert pending == {"c1", "c2"}
        assert len({m.cluster_id for m in members}) == 3
        assert next(m for m in members if m.context == "c3").cluster_id == "c3"
        Controller(members)  # used to raise ValueError
        with pytest.raises(ConfigError, match="left out"):
            ids.claim("c1", "c1")  # what the health tracker's retry gets while it lasts
        published["c2"] = "c2"
        assert ids.claim("c2", "c2") == "c2" and ids.claim("c1", "c1") == "c1"
    finally:
        for m in members:
            await m.api.close()


async def test_operator_configured_ids_that_clash_are_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def resolve(api: Any, ctx: str, overrides: dict[str, str]) -> str:
        return overrides[ctx]

    monkeypatch.setattr(run_cmd, "resolve_cluster_id", resolve)
    path = kubeconfig(tmp_path / "kubeconfig", ["c1", "c2"])
    args = parse("--kubeconfig", str(path), "--cluster-id", "c1=x", "--cluster-id", "c2=x")
    with pytest.raises(ConfigError, match="'x'"):
        await build_members(args)


# --------------------------------------------------------------------------- addresses


@pytest.mark.parametrize("address", ["fd00:ec2::254", "100.100.100.200", "169.254.169.254"])
def test_cloud_metadata_addresses_are_never_imported(address: str) -> None:
    family = "IPv6" if ":" in address else "IPv4"
    assert trust.address_problem(address, family) is not None
    wide = (ipaddress.ip_network("::/0" if family == "IPv6" else "0.0.0.0/0"),)
    problem = trust.address_problem(address, family, wide)
    assert problem is not None
    assert kept("c1", slice_(address, address_type=family), trust.EndpointPolicy()) == []


# --------------------------------------------------------------------------- kubeconfigs


def two_members(
    tmp_path: Path, remote_cluster: dict[str, Any], remote_user: dict[str, Any]
) -> Path:
    """A kubeconfig in its own directory (the mounted Secret): c1 is the local member,
    with the Pod's own token file outside that directory; c2 is a remote member."""
    secret = tmp_path / "secret"
    secret.mkdir(exist_ok=True)
    sa_token = tmp_path / "serviceaccount-token"
    sa_token.write_text("the pod's own token")
    path = secret / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c1", "cluster": {"server": "https://127.0.0.1:1"}},
                    {"name": "c2", "cluster": remote_cluster},
                ],
                "users": [
                    {"name": "c1", "user": {"tokenFile": str(sa_token)}},
                    {"name": "c2", "user": remote_user},
                ],
                "contexts": [
                    {"name": c, "context": {"cluster": c, "user": c}} for c in ("c1", "c2")
                ],
                "current-context": "c1",
            }
        )
    )
    return path


HTTPS = {"server": "https://127.0.0.1:1"}


async def members_of(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def resolve(api: Any, ctx: str, overrides: dict[str, str]) -> str:
        return ctx

    monkeypatch.setattr(run_cmd, "resolve_cluster_id", resolve)
    members, _ = await build_members(parse("--kubeconfig", str(path), "--local", "c1"))
    for m in members:
        await m.api.close()


async def test_a_remote_exec_credential_is_refused_before_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reproduction of #29: a peer's context with ``exec`` ran /bin/sh in the loader."""
    marker = tmp_path / "ran"
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "/bin/sh",
            "args": ["-c", f"touch {marker}; echo '{{}}'"],
            "interactiveMode": "Never",
        }
    }
    path = two_members(tmp_path, HTTPS, user)
    with pytest.raises(ConfigError, match=r"users\['c2'\]\.user\.exec is refused"):
        await members_of(path, monkeypatch)
    assert not marker.exists(), "the peer's program ran"


@pytest.mark.parametrize(
    ("cluster", "user", "field"),
    [
        ({"server": "http://127.0.0.1:1"}, {"token": "t"}, "cluster.server"),
        (HTTPS, {"auth-provider": {"name": "oidc", "config": {}}}, "user.auth-provider"),
        (HTTPS, {"tokenFile": "../serviceaccount-token"}, "user.tokenFile"),
        (HTTPS, {"client-certificate": "/etc/hostname", "token": "t"}, "user.client-certificate"),
        (
            {**HTTPS, "certificate-authority": "/etc/ssl/certs/../hostname"},
            {"token": "t"},
            "cluster.certificate-authority",
        ),
    ],
)
async def test_a_remote_context_is_refused_naming_the_field(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cluster: dict[str, Any],
    user: dict[str, Any],
    field: str,
) -> None:
    path = two_members(tmp_path, cluster, user)
    with pytest.raises(ConfigError, match=re.escape(field)):
        await members_of(path, monkeypatch)


async def test_remote_files_inside_the_secret_and_the_local_context_still_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = two_members(tmp_path, HTTPS, {"tokenFile": "c2-token"})
    (path.parent / "c2-token").write_text("peer token")
    await members_of(path, monkeypatch)  # c1's token file lies outside: it is local


async def test_the_reloader_refuses_an_exec_that_appears_later(tmp_path: Path) -> None:
    path = two_members(tmp_path, HTTPS, {"token": "t"})
    api = await new_client(str(path), "c2")
    try:
        marker = tmp_path / "ran"
        path.write_text(
            path.read_text().replace(
                "token: t",
                f"exec: {{apiVersion: client.authentication.k8s.io/v1, "
                f"command: /bin/sh, args: [-c, 'touch {marker}']}}",
            )
        )
        reloader = CredentialReloader(str(path), {"c2": api}, period=0, remote={"c2"})
        await reloader.check()
        assert not marker.exists() and reloader.reloads == 0
        with pytest.raises(ConfigError, match="exec"):
            await refresh(api, str(path), "c2", remote=True)
    finally:
        await api.close()


# --------------------------------------------------------------------------- forged exports

NOW = datetime(2026, 1, 2, tzinfo=UTC)
GOOD_SERVICE = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}


def forged_export(**meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", **meta}}


def test_an_export_without_creation_timestamp_is_invalid_not_an_exception() -> None:
    """Reproduction of #29: ``plan.evaluate`` raised KeyError on it, for every member,
    retried forever."""
    view = plan.ClusterView("c2", True, export=forged_export(), service=GOOD_SERVICE)
    good = plan.ClusterView(
        "c1",
        True,
        export=forged_export(creationTimestamp="2026-01-01T00:00:00Z"),
        service=GOOD_SERVICE,
    )
    evaluation = plan.evaluate([good, view])
    assert evaluation.merged is not None and list(evaluation.merged.clusters) == ["c1"]
    invalid = evaluation.invalid["c2"]
    assert invalid.reason == "MalformedObject"
    assert "metadata.creationTimestamp is missing" in invalid.message
    conditions = plan.export_status(evaluation, view, NOW)
    assert conditions is not None
    valid = next(c for c in conditions if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "MalformedObject")


@pytest.mark.parametrize(
    ("service_spec", "words"),
    [
        ({"ports": [{"port": "eighty"}]}, "spec.ports[0].port 'eighty'"),
        ({"ports": [{"name": "http"}]}, "spec.ports[0].port None"),
        ({"ports": [{"port": 80}, "x"]}, "spec.ports[1] is not an object"),
        ({"ports": {"port": 80}}, "spec.ports is not a list"),
        ({"ports": [{"port": 80, "protocol": 6}]}, "spec.ports[0].protocol"),
        ({"ports": [{"port": 80}], "ipFamilies": "IPv4"}, "spec.ipFamilies"),
        ({"ports": [{"port": 80}], "sessionAffinity": 3}, "wrong type"),
    ],
)
def test_a_malformed_service_is_invalid_naming_the_field(
    service_spec: dict[str, Any], words: str
) -> None:
    export = forged_export(creationTimestamp="2026-01-01T00:00:00Z")
    got = record_from_objects("c2", export, {"metadata": {}, "spec": service_spec})
    assert isinstance(got, InvalidExport) and got.reason == "MalformedObject"
    assert words in got.message


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
TIMESTAMPS = st.one_of(
    JSON,
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")),
    st.sampled_from(["2026-01-01", "2026-01-01T00:00:00", "not a time", ""]),
)
PORTS = st.one_of(
    JSON,
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "port": st.one_of(st.integers(), JSON),
                "name": JSON,
                "protocol": st.one_of(st.sampled_from(["TCP", "UDP"]), JSON),
                "appProtocol": JSON,
            },
        ),
        max_size=3,
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    meta=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {"name": st.just("web"), "namespace": st.just("ns")},
            optional={"creationTimestamp": TIMESTAMPS, "generation": JSON, "uid": JSON},
        ),
    ),
    export_spec=st.one_of(
        JSON,
        st.fixed_dictionaries({}, optional={"exportedLabels": JSON, "exportedAnnotations": JSON}),
    ),
    service_meta=JSON,
    service_spec=st.one_of(
        JSON,
        st.fixed_dictionaries(
            {},
            optional={
                "ports": PORTS,
                "type": st.one_of(st.just("ExternalName"), JSON),
                "clusterIP": st.one_of(st.just("None"), JSON),
                "sessionAffinity": JSON,
                "sessionAffinityConfig": JSON,
                "ipFamilies": JSON,
                "internalTrafficPolicy": JSON,
                "trafficDistribution": JSON,
            },
        ),
    ),
)
def test_forged_remote_exports_never_raise(
    meta: Any, export_spec: Any, service_meta: Any, service_spec: Any
) -> None:
    """Whatever a member's API server returns as its ServiceExport and Service, the
    merge gets a record or an invalid export with a reason, and the statuses and the
    import of a valid member next to it are still computed."""
    export = {"metadata": meta, "spec": export_spec}
    service = {"metadata": service_meta, "spec": service_spec}
    got = record_from_objects("c2", export, service)
    assert isinstance(got, ExportRecord | InvalidExport)
    good = plan.ClusterView(
        "c1",
        True,
        export=forged_export(creationTimestamp="2020-01-01T00:00:00Z"),
        service=GOOD_SERVICE,
    )
    forged = plan.ClusterView("c2", True, export=export, service=service)
    evaluation = plan.evaluate([good, forged])
    assert evaluation.merged is not None
    plan.export_status(evaluation, good, NOW)


def test_the_pods_own_token_goes_only_to_its_own_cluster(tmp_path: Path) -> None:
    """Central mode checks every context: a hub that is a member keeps its in-cluster
    context; the same token file towards any other server is refused."""
    sa_token = {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
    own = two_members(tmp_path, {"server": "https://kubernetes.default.svc"}, sa_token)
    check_remote_context(str(own), "c2")
    peer = two_members(tmp_path, HTTPS, sa_token)
    with pytest.raises(ConfigError, match=r"user\.tokenFile .* could send this Pod's own"):
        check_remote_context(str(peer), "c2")
