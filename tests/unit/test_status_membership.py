"""``mcs status`` / ``kubectl mcs``: kubeconfig lists, kubectl's flags, the controller's
Secret and metrics, membership, and the report at 80 columns."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcs.commands.kubectl_plugin import parse_args
from mcs.core.durations import parse as parse_duration
from mcs.core.merge import export_conditions
from mcs.core.plan import ClusterView, evaluate
from mcs.runtime.members import ConfigError
from mcs.status import MemberSnapshot, Snapshot, exit_code, render_text, summarize
from mcs.status.controllers import (
    Installation,
    PodView,
    SecretMember,
    members_of,
    parse_metrics,
    parse_secret,
)
from mcs.status.kubeconfig import (
    ClientFlags,
    Kubeconfig,
    kubeconfig_paths,
    load_kubeconfig,
    merge_kubeconfigs,
)

SNAPSHOTS = Path(__file__).parent / "snapshots"

# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 5.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("5s", 5.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("1h2m3s", 3723.0),
        ("1.5m", 90.0),
    ],
)
def test_go_durations_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5x", "1m 2s", "-1s", "5s3", "m5"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s", "ms"])),
        min_size=1,
        max_size=4,
    )
)
def test_duration_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    text = "".join(f"{n}{u}" for n, u in parts)
    assert parse_duration(text) == pytest.approx(sum(n * unit[u] for n, u in parts))


# --------------------------------------------------------------------------- kubeconfig lists


def _config(name: str, server: str, current: str | None = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server, **extra}}],
        "users": [{"name": name, "user": {"token": f"token-{name}"}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
    }
    if current:
        doc["current-context"] = current
    return doc


def test_kubeconfig_list_merges_as_kubectl_does(tmp_path: Path) -> None:
    """The first file naming a context (cluster, user) or the current context wins;
    relative file paths are relative to their file."""
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a.yaml", tmp_path / "b" / "b.yaml"
    a.write_text(yaml.safe_dump(_config("one", "https://a:1", current="one")))
    second = _config("two", "https://b:2", current="two", **{"certificate-authority": "ca.crt"})
    second["clusters"].append({"name": "one", "cluster": {"server": "https://shadowed:9"}})
    b.write_text(yaml.safe_dump(second))
    merged = load_kubeconfig(kubeconfig_paths(f"{a}{os.pathsep}{tmp_path / 'gone'}{os.pathsep}{b}"))
    assert [c["name"] for c in merged["contexts"]] == ["one", "two"]
    assert merged["current-context"] == "one"
    servers = {c["name"]: c["cluster"]["server"] for c in merged["clusters"]}
    assert servers == {"one": "https://a:1", "two": "https://b:2"}
    two = next(c for c in merged["clusters"] if c["name"] == "two")
    assert two["cluster"]["certificate-authority"] == str(tmp_path / "b" / "ca.crt")


def test_kubeconfig_from_the_environment_list(tmp_path: Path, monkeypatch: Any) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text(yaml.safe_dump(_config("one", "https://a:1")))
    b.write_text(yaml.safe_dump(_config("two", "https://b:2", current="two")))
    monkeypatch.setenv("KUBECONFIG", f"{a}{os.pathsep}{b}")
    kc = Kubeconfig.load(ClientFlags())
    assert (kc.contexts, kc.current, kc.server("one")) == (["one", "two"], "two", "https://a:1")


def test_kubeconfig_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        Kubeconfig.load(ClientFlags(kubeconfig=str(tmp_path / "none")))
    path = tmp_path / "k"
    path.write_text(yaml.safe_dump(_config("one", "https://a:1")))
    with pytest.raises(ConfigError, match="context 'x' is not in the kubeconfig"):
        Kubeconfig.load(ClientFlags(kubeconfig=str(path), context="x"))
    with pytest.raises(ConfigError, match="user 'nobody' is not in the kubeconfig"):
        Kubeconfig.load(ClientFlags(kubeconfig=str(path), user="nobody"))


def test_cluster_and_user_flags_replace_the_contexts(tmp_path: Path) -> None:
    merged = merge_kubeconfigs(
        [
            (tmp_path / "a", _config("one", "https://a:1")),
            (tmp_path / "b", _config("two", "https://b:2")),
        ]
    )
    kc = Kubeconfig(merged, ClientFlags(cluster="two", user="two"))
    assert kc.context("one") == {"cluster": "two", "user": "two"}
    assert kc.server("one") == "https://b:2"
    written = yaml.safe_load(Path(kc.path).read_text())
    assert written["contexts"][0]["context"] == {"cluster": "two", "user": "two"}
    assert oct(os.stat(kc.path).st_mode & 0o777) == "0o600"


async def test_impersonation_headers(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(yaml.safe_dump(_config("one", "https://127.0.0.1:1", current="one")))
    kc = Kubeconfig.load(
        ClientFlags(kubeconfig=str(path), as_user="jane", as_groups=("dev", "ops"))
    )
    api = await kc.client("one")
    try:
        headers = api.rest_client.pool_manager.headers
        assert headers.getall("Impersonate-User") == ["jane"]
        assert headers.getall("Impersonate-Group") == ["dev", "ops"]
    finally:
        await api.close()


# --------------------------------------------------------------------------- kubectl's flags


def test_kubectl_flags_anywhere() -> None:
    args = parse_args(
        [
            "--as",
            "jane",
            "status",
            "--as-group",
            "dev",
            "--cluster",
            "c",
            "--user",
            "u",
            "--request-timeout",
            "1m",
            "-A",
            "--as-group",
            "ops",
            "-o",
            "wide",
        ]
    )
    assert (args.as_user, args.as_groups, args.cluster, args.user) == (
        "jane",
        ["dev", "ops"],
        "c",
        "u",
    )
    assert (args.request_timeout, args.all_namespaces, args.output) == (60.0, True, "wide")
    args = parse_args(["explain", "web", "--request-timeout", "7", "--context", "c2"])
    assert (args.request_timeout, args.context, args.output) == (7.0, "c2", "table")


def test_output_text_is_a_deprecated_table(capsys: Any) -> None:
    assert parse_args(["status", "-o", "text"]).output == "table"
    assert "-o text is deprecated" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["status", "-o", "jsonpath"])


def test_export_timeout_takes_a_duration() -> None:
    assert parse_args(["export", "web", "--timeout", "2m"]).timeout == 120.0


# ----------------------------------------------------------------- the controller's Secret


def _secret(**data: str) -> dict[str, Any]:
    return {
        "data": {
            k.replace("_", "-"): base64.b64encode(v.encode()).decode() for k, v in data.items()
        }
    }


IN_CLUSTER = {
    "clusters": [
        {"name": "c1", "cluster": {"server": "https://kubernetes.default.svc"}},
        {"name": "c2", "cluster": {"server": "https://c2.example:6443"}},
    ],
    "contexts": [
        {"name": "prod-eu", "context": {"cluster": "c1", "user": "u"}},
        {"name": "prod-us", "context": {"cluster": "c2", "user": "u"}},
    ],
}


def test_parse_secret() -> None:
    kubeconfig = yaml.safe_dump(IN_CLUSTER)
    mode, local, members, error = parse_secret(
        _secret(kubeconfig=kubeconfig, local_context="prod-eu", mode="per-cluster")
    )
    assert (mode, local, error) == ("per-cluster", "prod-eu", None)
    assert members == (
        SecretMember("prod-eu", "https://kubernetes.default.svc"),
        SecretMember("prod-us", "https://c2.example:6443"),
    )
    assert parse_secret(_secret(kubeconfig=kubeconfig, local_context=""))[0] == "central"
    assert parse_secret(_secret(kubeconfig=kubeconfig, local_context="prod-eu"))[0] == "per-cluster"
    assert parse_secret(_secret(local_context="x"))[3] == "the Secret has no key kubeconfig"


def test_members_are_matched_to_the_laptops_contexts() -> None:
    """By name, else by server, else (the in-cluster context) the context the controller
    was found through; the laptop's other contexts are not members."""
    _, local, members, _ = parse_secret(_secret(kubeconfig=yaml.safe_dump(IN_CLUSTER)))
    extra = SecretMember("prod-ap", "https://ap.example:6443")
    inst = Installation(
        "gke-eu", "mcs-system", "mcs-controller", "per-cluster", local, (*members, extra)
    )
    laptop = {"gke-eu": "https://35.1.2.3", "us": "https://c2.example:6443/", "lab": "https://lab"}
    got = members_of([inst], laptop)
    assert [(m.name, m.context) for m in got] == [
        ("prod-eu", "gke-eu"),
        ("prod-us", "us"),
        ("prod-ap", None),
    ]


def test_parse_metrics() -> None:
    text = (
        "# TYPE mcs_cluster_connected gauge\n"
        'mcs_cluster_connected{cluster="a"} 1.0\n'
        'mcs_cluster_connected{cluster="b"} 0.0\n'
        "# TYPE mcs_member_withdrawn gauge\n"
        'mcs_member_withdrawn{cluster="b"} 1.0\n'
        'mcs_member_withdrawn{cluster="a"} 0.0\n'
        "mcs_ready 1.0\n"
    )
    assert parse_metrics(text) == ({"a": True, "b": False}, {"a": False, "b": True})
    assert parse_metrics("not { prometheus") == ({}, {})


# --------------------------------------------------------------------------- the report


EU, US, AP = "prod-eu-west-1-primary", "prod-us-east-2-secondary", "staging-ap-southeast-1"
NS, NAME = "payments", "checkout-api"
NOW = datetime(2026, 3, 4, tzinfo=UTC)


def _svc(port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": NAME, "namespace": NS},
        "spec": {"ports": [{"name": "https", "port": port, "protocol": "TCP"}]},
    }


def _exp(created: str) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": NS, "creationTimestamp": created}}


def _realistic() -> Snapshot:
    """Three members with long ids, reached through GKE/EKS-style context names; the
    controller (2 Pods in per-cluster mode) has withdrawn one the laptop reaches; the
    exports conflict on ports."""
    raw = {
        EU: ("2026-03-01T10:00:00Z", 443),
        US: ("2026-03-02T10:00:00Z", 8443),
        AP: ("2026-03-03T10:00:00Z", 443),
    }
    views = [ClusterView(c, True, _exp(t), _svc(p)) for c, (t, p) in raw.items()]
    ev = evaluate(views)
    assert ev.merged is not None
    members = []
    contexts = {
        EU: f"gke_acme-prod_europe-west1_{EU}",
        US: f"arn:aws:eks:us-east-2:123456789012:cluster/{US}",
        AP: AP,
    }
    for c, (t, p) in raw.items():
        export = {**_exp(t), "status": {"conditions": export_conditions(ev.merged, [], NOW)}}
        imp = {
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "type": "ClusterSetIP",
                "ips": ["10.96.200.17", "fd00:10:96::c8"],
                "ports": [
                    {"name": "https", "port": 443, "protocol": "TCP", "appProtocol": "https"}
                ],
            },
            "status": {"clusters": [{"cluster": x} for x in raw]},
        }
        members.append(
            MemberSnapshot(
                context=contexts[c],
                cluster_id=c,
                server=f"https://{c}.k8s.example.com:6443",
                server_version="v1.36.3",
                namespaces=frozenset({NS}),
                exports=(export,),
                services=(_svc(p),),
                imports=(imp,),
            )
        )
    pod = PodView(
        "mcs-controller-7d9f8b6c5d-x2x4q",
        "Running",
        True,
        False,
        f"member {AP} withdrawn: unreachable for 75s (HTTP 401: Unauthorized)",
        connected={EU: True, US: True, AP: False},
        withdrawn={EU: False, US: False, AP: True},
    )
    standby = PodView(
        "mcs-controller-7d9f8b6c5d-q8w7z",
        "Running",
        False,
        True,
        "ok",
        connected={EU: True, US: True, AP: True},
        withdrawn={},
    )
    inst = Installation(
        contexts[EU],
        "mcs-system",
        "mcs-controller",
        "per-cluster",
        EU,
        tuple(SecretMember(c, "") for c in raw),
        (pod, standby),
    )
    return Snapshot(members=tuple(members), installations=(inst,), source="controller")


def test_a_peer_the_controller_cannot_reach_does_not_look_healthy() -> None:
    report = summarize(_realistic())
    ap = next(m for m in report.members if m.cluster_id == AP)
    assert (ap.reachable, ap.controller_view) == (True, "withdrawn")
    assert report.summary.unreachable == 0
    assert report.summary.unreachable_by_controller == 1
    assert exit_code(report, "unreachable") == 1
    leader = report.controllers[0]
    assert (leader.leader, leader.ready, leader.members[AP]) == (True, False, "withdrawn")


def test_status_at_80_columns_cuts_no_identifier() -> None:
    """The realistic status drawn for an 80-column terminal: every line fits, and every
    cluster id, context, type and state is there whole (no ``…``). To accept a
    deliberate change: ``MCS_UPDATE_SNAPSHOTS=1 pytest tests/unit/test_status_membership.py``."""
    report = summarize(_realistic())
    text = render_text(report, color=False, width=80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for word in (
        EU,
        US,
        AP,
        "ClusterSetIP",
        "withdrawn",
        "unreachable by a controller",
        f"{NS}/{NAME}",
        "mcs-controller-7d9f8b6c5d-x2x4q",
        "PortConflict",
    ):
        assert re.search(re.escape(word), text), word
    # The contexts are the first column to go at 80 columns; -o wide has them.
    wide = render_text(report, color=False, wide=True)
    for ctx in (m.context for m in report.members):
        assert ctx in wide, ctx
    golden = SNAPSHOTS / "status-80-columns.txt"
    if os.environ.get("MCS_UPDATE_SNAPSHOTS"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_wide_shows_every_column() -> None:
    report = summarize(_realistic())
    wide = render_text(report, color=False, wide=True)
    narrow = render_text(report, color=False)
    for word in (
        "SERVER",
        "VERSION",
        "v1.36.3",
        f"https://{EU}.k8s.example.com:6443",
        "2026-03-01T10:00:00Z",
    ):
        assert word in wide and word not in narrow, word
