"""``mcs status`` and ``kubectl mcs`` take the members from the controller's Secret, not
from the kubeconfig: a mesh of three clusters whose controller (a Deployment and its
Secret in cluster1) names two members; the third context, and a broken fourth one
joined through ``KUBECONFIG=a:b``, are unrelated: they show as no member, change no
exit code and no winner of ``explain``. ``--all-contexts`` takes every context."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from mcs_mesh.state import MeshState
from tests.integration.conftest import Kubectl, eventually
from tests.integration.mcs_objects import export, service

C1, C2, C3 = "cluster1", "cluster2", "cluster3"


def _run(env_kubeconfig: str, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": env_kubeconfig, "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", *argv],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )


def _controller(ns: str, members: list[str], servers: dict[str, str], replicas: int = 0) -> str:
    """The controller's Deployment (by default no replicas: only its configuration is
    read) and Secret, as the manifests make them, in namespace ``ns``."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": m,
                "cluster": {"server": "https://kubernetes.default.svc" if m == C1 else servers[m]},
            }
            for m in members
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": m, "context": {"cluster": m, "user": "u"}} for m in members],
    }

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mcs-remote-kubeconfigs", "namespace": ns},
        "data": {
            "kubeconfig": b64(yaml.safe_dump(kubeconfig)),
            "local-context": b64(C1),
            "mode": b64("per-cluster"),
        },
    }
    labels = {"app.kubernetes.io/name": "mcs-controller"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mcs-controller", "namespace": ns, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "controller",
                            "image": "mcs:latest",
                            "args": [
                                "run",
                                "--mode=$(MCS_MODE)",
                                "--kubeconfig=/etc/mcs/kubeconfig",
                                "--leader-elect-resource-name=mcs-test",
                            ],
                            "ports": [
                                {"name": "metrics", "containerPort": 9080},
                                {"name": "health", "containerPort": 9081},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "kubeconfigs", "secret": {"secretName": "mcs-remote-kubeconfigs"}}
                    ],
                },
            },
        },
    }
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": [secret, deployment]})


def test_members_come_from_the_controllers_secret(
    mesh: MeshState, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    servers = {m.name: str(m.server) for m in mesh.members}
    kubectl(C1, "apply", "-f", "-", stdin=_controller(namespace, [C1, C2], servers))
    # cluster3 (no member) exports first, with other ports: were it a member, it would
    # be the winner and the others in conflict.
    kubectl(C3, "apply", "-f", "-", stdin=service(namespace, ports=[{"port": 43, "name": "x"}]))
    kubectl(C3, "apply", "-f", "-", stdin=export(namespace))
    time.sleep(1.1)  # creationTimestamps have one-second resolution
    kubectl(C2, "apply", "-f", "-", stdin=service(namespace))
    kubectl(C2, "apply", "-f", "-", stdin=export(namespace))

    broken = tmp_path / "unrelated.yaml"
    broken.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "lab", "user": {"token": "t"}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "lab"}}],
            }
        )
    )
    only_mesh = str(mesh.kubeconfig)
    with_lab = f"{mesh.kubeconfig}{os.pathsep}{broken}"
    flags = ["-n", namespace, "--controller-namespace", namespace, "--request-timeout", "5s"]

    for kubeconfig in (only_mesh, with_lab):
        out = _run(kubeconfig, "mcs", "status", *flags, "-o", "json")
        assert out.returncode == 0, out.stdout + out.stderr
        report: dict[str, Any] = json.loads(out.stdout)
        assert [m["context"] for m in report["members"]] == [C1, C2]
        assert all(m["reachable"] for m in report["members"])
        assert report["membership"]["source"] == "controller"
        assert report["membership"]["controllers"] == [f"{C1}/{namespace}/mcs-controller"]
        [svc] = report["services"]
        assert (svc["winner"], svc["conflict"]) == (C2, None)

    # --all-contexts: every context is a member; cluster3's older export wins
    out = _run(only_mesh, "mcs", "status", *flags, "-o", "json", "--all-contexts")
    report = json.loads(out.stdout)
    assert [m["context"] for m in report["members"]] == [C1, C2, C3]
    assert report["services"][0]["winner"] == C3
    assert out.returncode == 1  # the conflict cluster3 brings
    out = _run(with_lab, "mcs", "status", *flags, "-o", "json", "--all-contexts")
    assert [m["context"] for m in json.loads(out.stdout)["members"]] == [C1, C2, C3, "lab"]

    # the table says where the members come from
    text = _run(with_lab, "mcs", "status", *flags)
    assert text.returncode == 0, text.stderr
    assert f"as configured in {C1}/{namespace}/mcs-controller" in text.stdout
    assert "lab" not in text.stdout and C3 not in text.stdout

    # kubectl mcs explain: the winner among the members only, even with KUBECONFIG=a:b
    ctl = ["mcs.commands.kubectl_plugin", "explain", "hello", "--context", C2, "-n", namespace]
    out = _run(with_lab, *ctl, "-o", "json", "--controller-namespace", namespace)
    assert out.returncode == 0, out.stderr
    verdict = json.loads(out.stdout)
    assert (verdict["state"], verdict["winner"], verdict["unreadable"]) == ("ok", C2, {})
    out = _run(with_lab, *ctl, "-o", "json", "--controller-namespace", namespace, "--all-contexts")
    verdict = json.loads(out.stdout)
    assert (verdict["state"], verdict["winner"]) == ("conflict", C3)
    assert list(verdict["unreadable"]) == ["lab"]


def test_no_controller_falls_back_to_every_context_and_says_so(mesh: MeshState) -> None:
    out = _run(
        str(mesh.kubeconfig),
        "mcs",
        "status",
        "--controller-namespace",
        "no-such-namespace",
        "-o",
        "json",
        "-n",
        "default",
    )
    report = json.loads(out.stdout)
    assert [m["context"] for m in report["members"]] == [C1, C2, C3]
    assert report["membership"]["source"] == "kubeconfig"
    assert "no controller found" in report["membership"]["note"]


def test_controller_pods_and_the_lease_holder_are_found(
    mesh: MeshState, kubectl: Kubectl, namespace: str
) -> None:
    """A Pod of the controller (run by the mesh's kwok node: it answers nothing) is
    found with its role from the Lease; its /readyz cannot be read through the API
    server's proxy, which the report says rather than calling it ready."""
    servers = {m.name: str(m.server) for m in mesh.members}
    kubectl(C1, "apply", "-f", "-", stdin=_controller(namespace, [C1, C2], servers, replicas=1))

    def pod() -> str | None:
        out = kubectl(
            C1, "get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].metadata.name}"
        ).stdout.split()
        return out[0] if out else None

    name = eventually(pod, what="the controller's Pod")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "mcs-test", "namespace": namespace},
        "spec": {"holderIdentity": f"{name}_1", "leaseDurationSeconds": 15},
    }
    kubectl(C1, "apply", "-f", "-", stdin=json.dumps(lease))
    flags = ["-n", namespace, "--controller-namespace", namespace, "--request-timeout", "3s"]

    def found() -> dict[str, Any] | None:
        out = _run(str(mesh.kubeconfig), "mcs", "status", *flags, "-o", "json")
        report: dict[str, Any] = json.loads(out.stdout)
        pods = [c for c in report["controllers"] if c["pod"] == name]
        return pods[0] if pods and "pod is Pending" not in pods[0]["reason"] else None

    ctl = eventually(found, what="the controller's Pod in the report", timeout=60)
    lease_now = kubectl(C1, "get", "lease", "mcs-test", "-n", namespace, "-o", "json").stdout
    assert (ctl["context"], ctl["leader"], ctl["mode"]) == (C1, True, "per-cluster"), (
        ctl,
        lease_now,
    )
    assert ctl["url"] == f"{C1}/{namespace}/{name}"
    assert (ctl["reachable"], ctl["ready"]) == (False, False)
    assert "/readyz through the API server" in ctl["reason"], ctl
