"""What tests running the chart's controller on the host share (test_helm, test_join,
test_install_e2e): Helm built by hack/helm.sh, ``mcs run``'s command line from an
installed Deployment and its members Secret, the controller as a host process, and a
joined Secret's kubeconfig made usable outside a Pod."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mcs.commands.joinplan import SA_DIR
from mcs_mesh.processes import die_with_parent
from mcs_mesh.state import MeshState
from tests.integration.conftest import (
    _CONTROLLER_LOGS,
    READY_TIMEOUT,
    Kubectl,
    _http_ok,
    eventually,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]
NS = "mcs-system"


def helm_path() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "helm.sh")],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"helm is missing and could not be built (hack/helm.sh): {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


def host_argv(kc: Kubectl, ctx: str, workdir: Path) -> tuple[list[str], int, dict[str, str]]:
    """`mcs run`'s command line from the Deployment and members Secret installed in
    ``ctx``, as the Pod would run it; the listeners on free loopback ports, the
    kubeconfig in a file of ``workdir``. Returns (argv, health port, environment)."""
    dep = kc.json(ctx, "-n", NS, "get", "deployment", "mcs-controller")
    container = dep["spec"]["template"]["spec"]["containers"][0]
    mount = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}["kubeconfigs"]
    secret = kc.json(ctx, "-n", NS, "get", "secret", mount["secret"]["secretName"])
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    kubeconfig = workdir / f"{ctx}-mounted-kubeconfig"
    kubeconfig.write_text(data[mount["secret"]["items"][0]["key"]])
    kubeconfig.chmod(0o600)
    env: dict[str, str] = {}
    for e in container["env"]:
        source = e["valueFrom"]
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.namespace"
            env[e["name"]] = dep["metadata"]["namespace"]
        else:
            ref = source["secretKeyRef"]
            if ref["key"] in data:
                env[e["name"]] = data[ref["key"]]
            else:
                assert ref.get("optional"), f"{ref} missing from the Secret"
    metrics, health = free_port(), free_port()
    argv = [sys.executable, "-m", "mcs"]
    for arg in container["args"]:
        for name, value in env.items():
            arg = arg.replace(f"$({name})", value)
        flag, eq, value = arg.partition("=")
        if flag == "--kubeconfig":
            assert value == "/etc/mcs/kubeconfig"
            value = str(kubeconfig)
        elif flag == "--metrics-bind-address":
            value = f"127.0.0.1:{metrics}"
        elif flag == "--health-probe-bind-address":
            value = f"127.0.0.1:{health}"
        argv.append(flag + eq + value)
    # MCS_MEMBER_CIDRS is read from the environment (mcs run --member-cidrs' default)
    return argv, health, {k: v for k, v in env.items() if k == "MCS_MEMBER_CIDRS"}


@contextlib.contextmanager
def controller(argv: list[str], health: int, env: dict[str, str], log: Path) -> Iterator[None]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
            preexec_fn=die_with_parent,  # a killed pytest leaves no controller behind
        )
    _CONTROLLER_LOGS.setdefault(log, 0)  # conftest checks it for refused requests

    def ready() -> bool:
        assert proc.poll() is None, f"mcs run exited: {log.read_text()[-3000:]}"
        return _http_ok(f"http://127.0.0.1:{health}/readyz")

    try:
        eventually(ready, timeout=READY_TIMEOUT, interval=0.5, what=f"{argv} ready")
        yield
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def host_kubeconfig(mesh: MeshState, text: str, workdir: Path, local_token: str = "") -> Path:
    """The Secret's kubeconfig as the controller would mount it, run on the host: the
    in-cluster context (per-cluster mode) gets the member's address, CA and a token of
    ``mcs-controller`` in place of the Pod's files (what the kubelet would provide)."""
    cfg = yaml.safe_load(text)
    admin = yaml.safe_load(mesh.kubeconfig.read_text())
    servers = {c["name"]: c["cluster"] for c in admin["clusters"]}
    for c, u in zip(cfg["clusters"], cfg["users"], strict=True):
        if u["user"].get("tokenFile") == f"{SA_DIR}/token":
            ca = workdir / f"{c['name']}-ca.crt"
            ca.write_bytes(base64.b64decode(servers[c["name"]]["certificate-authority-data"]))
            token = workdir / f"{c['name']}-token"
            token.write_text(local_token)
            c["cluster"] = {
                "server": servers[c["name"]]["server"],
                "certificate-authority": str(ca),
            }
            u["user"] = {"tokenFile": str(token)}
    path = workdir / f"kubeconfig-{len(list(workdir.iterdir()))}"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path
