"""``kubectl mcs diagnose`` through the real kubectl against the session mesh, with the
controller installed in cluster1 as a user would (its Deployment from manifests/, run
by kwok; its Secret ``mcs-remote-kubeconfigs`` holding ServiceAccount tokens made by
hack/make-remote-kubeconfig.sh; a real ``mcs run --leader-elect`` holding its Lease) and
CoreDNS's ConfigMap and RBAC as kubeadm lays them out.

A healthy mesh exits 0. Then, each found with its fix and exit code 1: a member the
controller cannot reach (its Secret names an address where no API server listens, while
the user's own kubeconfig still reaches that member), an expired token in the
controller's Secret, a Secret without a key the Deployment requires, CoreDNS's
ServiceAccount without the right to read ServiceImports, and an export in a namespace
the controller leaves out."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcs_mesh.dns import corefile
from mcs_mesh.state import MeshState
from tests.integration.accounts import (
    MANIFESTS,
    SCRIPT,
    SYSTEM_NS,
    ServiceAccounts,
    in_cluster_context,
    kubectl_path,
    merge,
)
from tests.integration.conftest import Controllers, Kubectl, eventually, free_port
from tests.integration.mcs_objects import export, service

C1, C2, C3 = "cluster1", "cluster2", "cluster3"
SECRET = "mcs-remote-kubeconfigs"
# more than diagnose's 7 days of warning: a healthy Secret's tokens must not warn
TOKEN_DURATION = "720h"
COREDNS_RBAC = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
  - apiGroups: [multicluster.x-k8s.io]
    resources: [serviceimports]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
  - {kind: ServiceAccount, name: coredns, namespace: kube-system}
"""


def _reader(mesh: MeshState, ctx: str, workdir: Path) -> Path:
    """``ctx``'s read-only context from hack/make-remote-kubeconfig.sh (a TokenRequest
    token of mcs-remote-reader, valid for TOKEN_DURATION)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(mesh.kubeconfig),
        "KUBECTL": kubectl_path(),
        "TOKEN_DURATION": TOKEN_DURATION,
    }
    proc = subprocess.run(
        [str(SCRIPT), ctx], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = workdir / f"{ctx}-reader.yaml"
    out.write_text(proc.stdout)
    return out


@pytest.fixture(scope="module")
def secret_kubeconfig(
    mesh: MeshState, accounts: ServiceAccounts, kubectl: Kubectl, tmp_path_factory: Any
) -> Path:
    """What cluster1's controller mounts in per-cluster mode: itself as mcs-controller
    (the in-cluster context, with local stand-ins for the Pod's files), the others as
    their mcs-remote-reader."""
    work = tmp_path_factory.mktemp("diagnose")
    token = kubectl(
        C1, "create", "token", "mcs-controller", "-n", SYSTEM_NS, "--duration", TOKEN_DURATION
    ).stdout.strip()
    own = in_cluster_context(mesh, C1, token, work)
    return merge([own, _reader(mesh, C2, work), _reader(mesh, C3, work)], work / "kubeconfig")


def _put_secret(kubectl: Kubectl, kubeconfig: str, *, mode: bool = True) -> None:
    """The controller's Secret, made anew (with the key ``mode`` the Deployment requires,
    unless ``mode`` is false)."""
    data = {"kubeconfig": kubeconfig, "local-context": C1}
    if mode:
        data["mode"] = "per-cluster"
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET, "namespace": SYSTEM_NS},
        "stringData": data,
    }
    kubectl(C1, "-n", SYSTEM_NS, "delete", "secret", SECRET, "--ignore-not-found")
    kubectl(C1, "create", "-f", "-", stdin=json.dumps(body))


@pytest.fixture(scope="module")
def installed(
    mesh: MeshState, kubectl: Kubectl, secret_kubeconfig: Path, tmp_path_factory: Any
) -> Iterator[Controllers]:
    """cluster1 with the controller installed and running, and CoreDNS's objects."""
    _put_secret(kubectl, secret_kubeconfig.read_text())
    kubectl(C1, "apply", "-f", str(MANIFESTS / "deployment.yaml"))
    conf = corefile(mesh.kubeconfig, C1, 53, 8181)
    kubectl(
        C1, "-n", "kube-system", "create", "configmap", "coredns", f"--from-literal=Corefile={conf}"
    )
    kubectl(C1, "apply", "-f", "-", stdin=COREDNS_RBAC)
    ctl = Controllers("per-cluster", secret_kubeconfig, tmp_path_factory.mktemp("ctl-diagnose"))
    try:
        ctl.start(C1, "--mode", "per-cluster", "--local", C1, "--leader-elect")
        eventually(
            lambda: (
                kubectl.json(C1, "-n", SYSTEM_NS, "get", "deployment", "mcs-controller")[
                    "status"
                ].get("availableReplicas")
                == 2
            ),
            timeout=120,
            what="the Deployment's replicas available (kwok)",
        )
        yield ctl
    finally:
        codes = ctl.stop_all()
        kubectl(C1, "-n", SYSTEM_NS, "delete", "deployment/mcs-controller", f"secret/{SECRET}")
        kubectl(C1, "-n", "kube-system", "delete", "configmap", "coredns")
        kubectl(C1, "delete", "-f", "-", stdin=COREDNS_RBAC)
        assert set(codes.values()) <= {0}, codes


def _diagnose(mesh: MeshState, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_path(), "mcs", "diagnose", "--kubeconfig", str(mesh.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _findings(mesh: MeshState) -> tuple[int, list[dict[str, str]]]:
    proc = _diagnose(mesh, "--context", C1, "-o", "json")
    assert proc.returncode in (0, 1, 2), proc.stderr
    data = json.loads(proc.stdout)
    assert data["exitCode"] == proc.returncode
    return proc.returncode, data["findings"]


def test_healthy_mesh_exits_0(mesh: MeshState, installed: Controllers) -> None:
    code, findings = _findings(mesh)
    bad = [f for f in findings if f["status"] != "ok"]
    assert (code, bad) == (0, [])
    subjects = {(f["check"], f["subject"]) for f in findings}
    for ctx in (C1, C2, C3):
        assert ("member", f"member/{ctx}") in subjects
        assert ("credentials", f"member/{ctx}") in subjects
        assert ("namespace", f"member/{ctx}") in subjects
    for want in [
        ("crd", "serviceimports.multicluster.x-k8s.io"),
        ("admission", "validatingadmissionpolicy/mcs-controller-writes"),
        ("controller", "deployment/mcs-controller"),
        ("controller", "lease/mcs-controller"),
        ("coredns", "configmap/coredns"),
        ("coredns", "serviceaccount/coredns"),
    ]:
        assert want in subjects, (want, sorted(subjects))
    reached = {f["subject"]: f["message"] for f in findings if f["check"] == "member"}
    assert all("controller's credentials" in m for m in reached.values()), reached
    text = _diagnose(mesh, "--context", C1)
    assert text.returncode == 0 and "0 problems" in text.stdout, text.stdout


def _expired_token() -> str:
    def part(d: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    claims = {"sub": "system:serviceaccount:mcs-system:mcs-remote-reader", "exp": 1_600_000_000}
    return f"{part({'alg': 'RS256', 'kid': 'x'})}.{part(claims)}.c2lnbmF0dXJl"


def test_broken_member_expired_token_missing_coredns_rbac(
    mesh: MeshState,
    installed: Controllers,
    kubectl: Kubectl,
    secret_kubeconfig: Path,
    namespace: str,
) -> None:
    config = yaml.safe_load(secret_kubeconfig.read_text())
    # cluster2: the controller's Secret names an address where no API server listens
    # (the user's own kubeconfig still reaches cluster2: diagnose must not use it)
    cluster2 = next(c for c in config["clusters"] if c["name"] == C2)
    cluster2["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    # cluster3: a token that expired in 2020
    context3 = next(c for c in config["contexts"] if c["name"] == C3)["context"]
    user3 = next(u for u in config["users"] if u["name"] == context3["user"])
    user3["user"]["token"] = _expired_token()
    # and without the key "mode", which the Deployment reads (its Pods could not start)
    _put_secret(kubectl, yaml.safe_dump(config), mode=False)
    kubectl(C1, "delete", "clusterrolebinding", "system:coredns")
    # an export in a namespace that cluster1 marks as not global
    kubectl(C1, "annotate", "namespace", namespace, "clustermesh.cilium.io/global=false")
    kubectl(C1, "apply", "-f", "-", stdin=service(namespace))
    kubectl(C1, "apply", "-f", "-", stdin=export(namespace))
    try:
        assert kubectl(C2, "get", "--raw", "/readyz").stdout == "ok"
        code, findings = _findings(mesh)
        problems = {(f["check"], f["subject"]): f for f in findings if f["status"] != "ok"}
        assert code == 1
        down = problems[("member", f"member/{C2}")]
        assert down["message"].startswith(f"cannot reach {cluster2['cluster']['server']}")
        assert "reachable from the controller's cluster" in down["fix"]
        expired = problems[("credentials", f"member/{C3}")]
        assert "expired at 2020-09-13T12:26:40Z" in expired["message"]
        assert f"make-remote-kubeconfig.sh {C3}" in expired["fix"]
        assert "401" in problems[("member", f"member/{C3}")]["message"]
        rbac = problems[("coredns", "serviceaccount/coredns")]
        assert "may not list or watch serviceimports" in rbac["message"]
        assert "multicluster.x-k8s.io" in rbac["fix"]
        left_out = problems[("namespace", f"member/{C1}")]
        assert namespace in left_out["message"] and "NamespaceNotGlobal" in left_out["message"]
        assert f"annotate namespace {namespace}" in left_out["fix"]
        keys = problems[("controller", f"secret/{SECRET}")]
        assert "lacks key(s) mode" in keys["message"] and "mode" in keys["fix"]
        assert set(problems) == {
            ("controller", f"secret/{SECRET}"),
            ("member", f"member/{C2}"),
            ("member", f"member/{C3}"),
            ("credentials", f"member/{C3}"),
            ("coredns", "serviceaccount/coredns"),
            ("namespace", f"member/{C1}"),
        }, sorted(problems)
        # the text output: one line per problem, with its fix
        text = _diagnose(mesh, "--context", C1, "--problems-only")
        assert text.returncode == 1
        lines = text.stdout.splitlines()
        assert len(lines) == len(problems) + 1, text.stdout
        assert all(" -- fix: " in line for line in lines[:-1]), text.stdout
    finally:
        _put_secret(kubectl, secret_kubeconfig.read_text())
        kubectl(C1, "apply", "-f", "-", stdin=COREDNS_RBAC)
