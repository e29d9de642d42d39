"""charts/mcs into a mesh of two members, in each mode: ``helm install``, the objects as
kubectl sees them, ``helm upgrade`` with changed values, the controller converging from
the installed configuration, ``helm uninstall`` keeping the CRDs and users' ServiceExports.

The mesh has no kubelet (no Pod runs), so the controller runs on the host exactly as the
installed Deployment says: its container's arguments as the API server returns them, the
``$(VAR)`` references resolved from the members Secret as installed, the kubeconfig the
Secret holds. Its identities are the ServiceAccounts the chart created (TokenRequest
tokens by hack/make-remote-kubeconfig.sh); its RBAC and admission policy are the chart's,
and a refused request (403) fails the test (conftest's ``_no_request_refused``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.binaries import Binaries
from mcs_mesh.mesh import Mesh
from mcs_mesh.state import MeshState
from tests.integration.accounts import in_cluster_context, merge, remote_context
from tests.integration.chart import controller, helm_path, host_argv
from tests.integration.conftest import Kubectl, eventually
from tests.integration.mcs_objects import export, service

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mcs"
NS = "mcs-system"
RELEASE = "mcs"
CHART_KINDS = [
    ("deployment", NS, "mcs-controller"),
    ("service", NS, "mcs-controller-metrics"),
    ("poddisruptionbudget", NS, "mcs-controller"),
    ("networkpolicy", NS, "mcs-controller"),
    ("serviceaccount", NS, "mcs-controller"),
    ("role", NS, "mcs-controller-leader-election"),
    ("rolebinding", NS, "mcs-controller-leader-election"),
    ("clusterrole", "", "mcs-controller-local"),
    ("clusterrolebinding", "", "mcs-controller-local"),
    ("validatingadmissionpolicy", "", "mcs-controller-writes"),
    ("validatingadmissionpolicybinding", "", "mcs-controller-writes"),
]
CRDS = [
    "serviceexports.multicluster.x-k8s.io",
    "serviceimports.multicluster.x-k8s.io",
    "clusterproperties.about.k8s.io",
]


class Helm:
    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        self.exe = helm_path()
        self.kubeconfig = kubeconfig
        self.workdir = workdir

    def __call__(self, ctx: str, *args: str, values: dict[str, Any] | None = None) -> str:
        cmd = [self.exe, "--kubeconfig", str(self.kubeconfig), "--kube-context", ctx, *args]
        if values is not None:
            path = self.workdir / f"values-{len(list(self.workdir.glob('values-*')))}.json"
            path.write_text(json.dumps(values))  # may hold tokens: the workdir is the test's
            path.chmod(0o600)
            cmd += ["--values", str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"helm {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout + proc.stderr

    def install(self, ctx: str, values: dict[str, Any]) -> str:
        # --take-ownership: the mesh created the CRDs (as kubectl apply -k crds/ would)
        return self(
            ctx,
            "install",
            RELEASE,
            str(CHART),
            "-n",
            NS,
            "--create-namespace",
            "--take-ownership",
            values=values,
        )

    def upgrade(self, ctx: str, values: dict[str, Any]) -> str:
        return self(ctx, "upgrade", RELEASE, str(CHART), "-n", NS, values=values)

    def uninstall(self, ctx: str) -> str:
        return self(ctx, "uninstall", RELEASE, "-n", NS)


@pytest.fixture(scope="module")
async def mesh2(
    binaries_ready: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MeshState]:
    """Two members: API servers only (no Pod runs anyway)."""
    m = Mesh(tmp_path_factory.mktemp("helm-mesh"), say=lambda s: None)
    state = await m.up(2, detach=False, dns=False, workloads=False)
    try:
        yield state
    finally:
        m.down()


@pytest.fixture(scope="module")
def kc(mesh2: MeshState) -> Kubectl:
    return Kubectl(mesh2.kubeconfig)


@pytest.fixture
def helm(mesh2: MeshState, tmp_path: Path) -> Helm:
    return Helm(mesh2.kubeconfig, tmp_path)


def members(mesh: MeshState) -> list[str]:
    return [m.name for m in mesh.members]


# --------------------------------------------------------------------------- the controller


# --------------------------------------------------------------------------- checks


def assert_installed(kc: Kubectl, ctx: str, wanted: list[tuple[str, str, str]]) -> None:
    for kind, ns, name in wanted:
        obj = kc.json(ctx, *(["-n", ns] if ns else []), "get", kind, name)
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/instance"] == RELEASE, (kind, name, labels)
        assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE


def assert_gone(kc: Kubectl, ctx: str, wanted: list[tuple[str, str, str]]) -> None:
    for kind, ns, name in wanted:
        proc = kc(ctx, *(["-n", ns] if ns else []), "get", kind, name, check=False)
        assert proc.returncode != 0 and "NotFound" in proc.stderr, (kind, name, proc.stdout)


def export_everywhere(kc: Kubectl, ctxs: list[str], ns: str) -> None:
    for ctx in ctxs:
        kc(ctx, "create", "namespace", ns)
        kc(ctx, "apply", "-f", "-", stdin=service(ns))
        kc(ctx, "apply", "-f", "-", stdin=export(ns))


def assert_imported(kc: Kubectl, ctxs: list[str], ns: str) -> None:
    def imported() -> bool:
        for ctx in ctxs:
            si = kc.json(ctx, "-n", ns, "get", "serviceimports.multicluster.x-k8s.io", "hello")
            clusters = {c["cluster"] for c in si["status"]["clusters"]}
            assert clusters == set(ctxs), (ctx, clusters)
            assert si["spec"]["ips"], si
            ex = kc.json(ctx, "-n", ns, "get", "serviceexports.multicluster.x-k8s.io", "hello")
            conditions = {c["type"]: c["status"] for c in ex["status"]["conditions"]}
            assert conditions["Valid"] == "True" and conditions["Conflict"] == "False", conditions
        return True

    eventually(imported, timeout=90, interval=0.5, what="hello imported in every member")


def assert_uninstalled_keeps_user_objects(
    kc: Kubectl, ctx: str, ns: str, out: str, wanted: list[tuple[str, str, str]]
) -> None:
    assert_gone(kc, ctx, wanted)
    for crd in CRDS:
        assert crd in out, f"helm uninstall did not report keeping {crd}: {out}"
        kc(ctx, "get", "crd", crd)
    kc(ctx, "-n", ns, "get", "serviceexports.multicluster.x-k8s.io", "hello")
    kc(ctx, "-n", ns, "get", "service", "hello")


# --------------------------------------------------------------------------- the tests


async def test_per_cluster(helm: Helm, kc: Kubectl, mesh2: MeshState, tmp_path: Path) -> None:
    ctxs = members(mesh2)
    # 1. install in every member, the members Secret to come (as `kubectl mcs join` makes it)
    for ctx in ctxs:
        helm.install(ctx, {"mode": "per-cluster", "members": {"existingSecret": "joined"}})
    for ctx in ctxs:
        assert_installed(kc, ctx, CHART_KINDS)
        assert_installed(kc, ctx, [("serviceaccount", NS, "mcs-remote-reader")])
        for crd in CRDS:
            obj = kc.json(ctx, "get", "crd", crd)
            assert obj["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

    # 2. upgrade: the members inline (tokens of the chart's ServiceAccounts), a Lease
    # name, more excluded namespaces, member CIDRs
    readers = {c: remote_context(mesh2, c, tmp_path) for c in ctxs}
    for ctx in ctxs:
        token = kc(
            ctx, "create", "token", "mcs-controller", "-n", NS, "--duration", "24h"
        ).stdout.strip()
        own = in_cluster_context(mesh2, ctx, token, tmp_path)
        kubeconfig = merge([own, *[readers[c] for c in ctxs if c != ctx]], tmp_path / ctx)
        values = {
            "mode": "per-cluster",
            "members": {"kubeconfig": kubeconfig.read_text(), "localContext": ctx},
            "leaderElection": {"resourceName": f"mcs-{ctx}"},
            "namespaces": {"exclude": ["legacy"]},
            "memberCIDRs": {c: ["10.0.0.0/8"] for c in ctxs},
        }
        helm.upgrade(ctx, values)
    for ctx in ctxs:
        assert_installed(kc, ctx, [("secret", NS, "mcs-remote-kubeconfigs")])
        role = kc.json(ctx, "-n", NS, "get", "role", "mcs-controller-leader-election")
        assert role["rules"][1]["resourceNames"] == [f"mcs-{ctx}"]
        args = kc.json(ctx, "-n", NS, "get", "deployment", "mcs-controller")["spec"]["template"][
            "spec"
        ]["containers"][0]["args"]
        assert f"--leader-elect-resource-name=mcs-{ctx}" in args
        assert "--exclude-namespaces=legacy" in args
        assert "--mode=$(MCS_MODE)" in args

    # 3. the controllers as installed converge
    ns = "helm-per-cluster"
    export_everywhere(kc, ctxs, ns)
    with contextlib.ExitStack() as stack:
        for ctx in ctxs:
            argv, health, env = host_argv(kc, ctx, tmp_path)
            assert f"--local={ctx}" in argv
            stack.enter_context(controller(argv, health, env, tmp_path / f"{ctx}.log"))
        assert_imported(kc, ctxs, ns)
        for ctx in ctxs:  # each holds the Lease the values named
            lease = kc.json(ctx, "-n", NS, "get", "lease", f"mcs-{ctx}")
            assert lease["spec"]["holderIdentity"]

    # 4. uninstall: the CRDs and the users' exports stay
    for ctx in ctxs:
        out = helm.uninstall(ctx)
        assert_uninstalled_keeps_user_objects(
            kc,
            ctx,
            ns,
            out,
            [*CHART_KINDS, ("secret", NS, "mcs-remote-kubeconfigs")],
        )


async def test_central(helm: Helm, kc: Kubectl, mesh2: MeshState, tmp_path: Path) -> None:
    hub, *others = ctxs = members(mesh2)
    # the hub runs the controller and is a member; the others only let it write
    writer = {"centralWriter": {"enabled": True}, "remoteReader": {"enabled": False}}
    helm.install(hub, {"mode": "central", "members": {"existingSecret": "joined"}, **writer})
    for ctx in others:
        helm.install(ctx, {"controller": {"enabled": False}, **writer})
    assert_installed(kc, hub, CHART_KINDS)
    writer_kinds = [
        ("serviceaccount", NS, "mcs-central-writer"),
        ("clusterrolebinding", "", "mcs-central-writer"),
        ("role", NS, "mcs-central-writer-leader-election"),
        ("clusterrole", "", "mcs-controller-local"),
        ("validatingadmissionpolicy", "", "mcs-controller-writes"),
    ]
    for ctx in ctxs:
        assert_installed(kc, ctx, writer_kinds)
    for ctx in others:
        assert_gone(kc, ctx, [("deployment", NS, "mcs-controller")])

    # upgrade the hub: the members inline, every member as mcs-central-writer
    kubeconfig = merge(
        [remote_context(mesh2, c, tmp_path, "mcs-central-writer") for c in ctxs],
        tmp_path / "central",
    )
    values = {"mode": "central", "members": {"kubeconfig": kubeconfig.read_text()}, **writer}
    helm.upgrade(hub, values)
    secret = kc.json(hub, "-n", NS, "get", "secret", "mcs-remote-kubeconfigs")["data"]
    assert base64.b64decode(secret["mode"]) == b"central"
    assert base64.b64decode(secret["local-context"]) == b""

    ns = "helm-central"
    export_everywhere(kc, ctxs, ns)
    argv, health, env = host_argv(kc, hub, tmp_path)
    assert "--local=" in argv
    with controller(argv, health, env, tmp_path / "central.log"):
        assert_imported(kc, ctxs, ns)

    for ctx in ctxs:
        out = helm.uninstall(ctx)
        gone = writer_kinds + (CHART_KINDS if ctx == hub else [])
        assert_uninstalled_keeps_user_objects(kc, ctx, ns, out, gone)
