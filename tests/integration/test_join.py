"""``kubectl mcs join`` against the mesh (two of its members joined; cluster3 is the hub
of central mode): identities, tokens and member Secrets in each mode; controllers on the
host with the kubeconfig taken from the written Secret (so as the joined ServiceAccounts,
never the mesh's admin) import an export into the other member; a second join is a
no-op; ``--rotate`` replaces tokens near expiry; ``--dry-run`` writes nothing."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcs.commands.joinplan import token_expiry, token_subject
from mcs_mesh.state import MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.chart import host_kubeconfig
from tests.integration.conftest import (
    Controllers,
    Kubectl,
    assert_clean_exit,
    eventually,
    kubectl_path,
)
from tests.integration.mcs_objects import export, get_import, service

C1, C2, HUB = "cluster1", "cluster2", "cluster3"
SYSTEM = "mcs-system"
SECRET = "mcs-remote-kubeconfigs"


def join(mesh: MeshState, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``kubectl mcs join ARGS`` through the real kubectl, as the mesh's admin."""
    out = subprocess.run(
        [kubectl_path(), "mcs", "join", *args, "--kubeconfig", str(mesh.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check:
        assert out.returncode == 0, f"kubectl mcs join {args}: {out.stdout}{out.stderr}"
    return out


def secret(kubectl: Kubectl, ctx: str, ns: str = SYSTEM) -> dict[str, Any]:
    return dict(kubectl.json(ctx, "-n", ns, "get", "secret", SECRET))


def data(s: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in s["data"].items()}


def tokens(kubeconfig: str) -> dict[str, str]:
    cfg = yaml.safe_load(kubeconfig)
    return {u["name"]: u["user"]["token"] for u in cfg["users"] if "token" in u["user"]}


def export_hello(kubectl: Kubectl, ns: str) -> None:
    kubectl(C1, "apply", "-f", "-", stdin=service(ns))
    kubectl(C1, "apply", "-f", "-", stdin=export(ns))
    eventually(lambda: get_import(kubectl, C2, ns), timeout=60, what="the import in cluster2")


def test_dry_run_writes_nothing(mesh: MeshState, kubectl: Kubectl) -> None:
    out = join(mesh, C1, C2, "-n", "join-dry-run", "--dry-run")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "ClusterRoleBinding", "Secret"}
    assert "TokenRequest token of mcs-system/mcs-remote-reader" in out.stdout
    for ctx in (C1, C2):
        got = kubectl(ctx, "get", "namespace", "join-dry-run", check=False)
        assert got.returncode != 0 and "NotFound" in got.stderr

    # --server: the address the other members' controllers use
    out = join(mesh, C1, C2, "--server", f"{C2}=https://10.9.9.9:6443", "--dry-run")
    secrets = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Secret"]
    in_c1 = secrets[0]["stringData"]
    assert in_c1["local-context"] == C1
    clusters = yaml.safe_load(in_c1["kubeconfig"])["clusters"]
    assert {c["name"]: c["cluster"]["server"] for c in clusters}[C2] == "https://10.9.9.9:6443"


def test_join_per_cluster(
    mesh: MeshState,
    kubectl: Kubectl,
    accounts: ServiceAccounts,
    namespace: str,
    tmp_path: Path,
) -> None:
    # cluster2 has no id yet: join gives it one (its context name)
    kubectl(C2, "delete", "clusterproperty", "cluster.clusterset.k8s.io")
    out = join(mesh, C1, C2)
    assert (
        f"{C2}: clusterproperty cluster.clusterset.k8s.io created (cluster id {C2})" in out.stdout
    )
    assert kubectl.json(C2, "get", "clusterproperty", "cluster.clusterset.k8s.io")["spec"] == {
        "value": C2
    }
    for ctx, peer in ((C1, C2), (C2, C1)):
        assert f"{ctx}: serviceaccount {SYSTEM}/mcs-remote-reader" in out.stdout
        kubectl(ctx, "-n", SYSTEM, "get", "serviceaccount", "mcs-remote-reader")
        values = data(secret(kubectl, ctx))
        assert (values["local-context"], values["mode"]) == (ctx, "per-cluster")
        cfg = yaml.safe_load(values["kubeconfig"])
        assert [c["name"] for c in cfg["contexts"]] == [ctx, peer]
        (token,) = tokens(values["kubeconfig"]).values()
        assert token_subject(token) == f"system:serviceaccount:{SYSTEM}:mcs-remote-reader"
        # 720h asked (the mesh's API servers may cap it; then the expiry is sooner)
        assert token_expiry(token) is not None

    # a second join changes nothing
    before = {ctx: secret(kubectl, ctx)["metadata"]["resourceVersion"] for ctx in (C1, C2)}
    again = join(mesh, C1, C2).stdout.splitlines()
    assert again and all(line.rstrip().endswith(("unchanged", "left)")) for line in again), again
    assert {ctx: secret(kubectl, ctx)["metadata"]["resourceVersion"] for ctx in (C1, C2)} == before

    # one controller per member, each with its own Secret's kubeconfig
    ctls = []
    try:
        for ctx in (C1, C2):
            local = kubectl(
                ctx, "-n", SYSTEM, "create", "token", "mcs-controller", "--duration", "2h"
            ).stdout.strip()
            path = host_kubeconfig(mesh, data(secret(kubectl, ctx))["kubeconfig"], tmp_path, local)
            ctl = Controllers("per-cluster", path, tmp_path)
            ctls.append(ctl)
            ctl.start(ctx, "--local", ctx)
        export_hello(kubectl, namespace)
    finally:
        codes = {name: code for ctl in ctls for name, code in ctl.stop_all().items()}
    assert_clean_exit(codes)


def test_join_central_and_rotate(
    mesh: MeshState, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    args = (C1, C2, "--mode", "central", "--controller-context", HUB)
    out = join(mesh, *args)
    for ctx in (C1, C2):
        assert f"{ctx}: serviceaccount {SYSTEM}/mcs-central-writer" in out.stdout
    assert f"{HUB}: secret {SYSTEM}/{SECRET} " in out.stdout
    values = data(secret(kubectl, HUB))
    assert (values["local-context"], values["mode"]) == ("", "central")
    first = tokens(values["kubeconfig"])
    assert set(first) == {C1, C2}
    assert {token_subject(t) for t in first.values()} == {
        f"system:serviceaccount:{SYSTEM}:mcs-central-writer"
    }

    # a second join is a no-op
    rv = secret(kubectl, HUB)["metadata"]["resourceVersion"]
    again = join(mesh, *args).stdout.splitlines()
    assert all(line.rstrip().endswith(("unchanged", "left)")) for line in again), again
    assert secret(kubectl, HUB)["metadata"]["resourceVersion"] == rv

    # the central controller, with the hub's Secret: an export in cluster1 is imported in 2
    ctl = Controllers("central", host_kubeconfig(mesh, values["kubeconfig"], tmp_path), tmp_path)
    try:
        ctl.start("central")
        export_hello(kubectl, namespace)
    finally:
        codes = ctl.stop_all()
    assert_clean_exit(codes)

    # --rotate with the default threshold (a third of 720h): every token has more left
    out = join(mesh, *args, "--rotate")
    assert out.stdout.strip().endswith(
        "unchanged (every token has more than a third of its lifetime left)"
    )
    assert tokens(data(secret(kubectl, HUB))["kubeconfig"]) == first
    # a key join does not write (added by the operator) survives the joins
    cidrs = f"{C1}=10.1.0.0/16 {C2}=10.2.0.0/16"
    patch = json.dumps({"stringData": {"member-cidrs": cidrs}})
    kubectl(HUB, "-n", SYSTEM, "patch", "secret", SECRET, "-p", patch)
    # tokens with less than 1000h left are "near expiry" for this threshold: all re-issued
    out = join(mesh, *args, "--rotate", "--rotate-before", "1000h")
    assert data(secret(kubectl, HUB))["member-cidrs"] == cidrs
    assert f"{HUB}: secret {SYSTEM}/{SECRET} configured" in out.stdout
    assert out.stdout.count("new token of mcs-system/mcs-central-writer") == 2
    assert "serviceaccount" not in out.stdout  # --rotate touches only the tokens
    rotated = tokens(data(secret(kubectl, HUB))["kubeconfig"])
    assert set(rotated) == {C1, C2}
    for ctx in (C1, C2):
        assert rotated[ctx] != first[ctx]
        new, old = token_expiry(rotated[ctx]), token_expiry(first[ctx])
        assert new is not None and old is not None and new >= old


def test_rotate_needs_a_join_first(mesh: MeshState) -> None:
    out = join(mesh, C1, C2, "-n", "join-never", "--rotate", check=False)
    assert out.returncode == 1
    assert "secret join-never/mcs-remote-kubeconfigs not found: join without --rotate" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((C1,), "two or more contexts"),
        ((C1, C2, "--mode", "central"), "--controller-context"),
        ((C1, "no-such-context"), "not in"),
        ((C1, C2, "--token-duration", "5m"), "10m or more"),
        ((C1, C2, "--server", "cluster1"), "CTX=VALUE"),
        ((C1, C2, "--server", "cluster9=https://x"), "--server names cluster9, not among"),
    ],
)
def test_join_refuses(mesh: MeshState, args: tuple[str, ...], message: str) -> None:
    out = join(mesh, *args, "--dry-run", check=False)
    assert out.returncode == 2 and message in out.stderr, out.stderr
