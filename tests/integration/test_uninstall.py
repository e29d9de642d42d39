"""``kubectl mcs uninstall`` against the mesh, through the real kubectl: with a central
controller converged on an export (imports, derived Services, import slices in every
member) and a global Service (remote backends attached to users' Services), then
stopped, uninstall leaves nothing labelled managed-by mcs-controller in any member,
keeps every ServiceExport and user Service and the CRDs, refuses ``--delete-crds``
while exports exist, and a second run does nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from mcs_mesh.state import MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually, kubectl_path
from tests.integration.helpers import ADDRS, C1, C2, GLOBAL, NAME, behind, deploy, expect
from tests.integration.mcs_objects import export, get_import, service, source_slice

OURS = "app.kubernetes.io/managed-by=mcs-controller"
CRDS = ("serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io")


def _uninstall(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_path(), "mcs", "uninstall", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _ours(kubectl: Kubectl, ctx: str) -> list[str]:
    """Every object labelled managed-by mcs-controller in the cluster, as kind/ns/name."""
    items: list[dict[str, Any]] = kubectl.json(
        ctx, "get", "serviceimports,services,endpointslices", "-A", "-l", OURS
    )["items"]
    return sorted(
        f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items
    )


def _names(kubectl: Kubectl, ctx: str, resource: str, ns: str) -> set[str]:
    items = kubectl.json(ctx, "get", resource, "-n", ns)["items"]
    return {o["metadata"]["name"] for o in items}


def test_uninstall_removes_ours_and_keeps_users_objects(
    accounts: ServiceAccounts,
    contexts: list[str],
    mesh: MeshState,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    ctl = Controllers("central", accounts, tmp_path)
    ctl.start_all(contexts, "--resync-period", "5")
    try:
        for ctx, addr in ((C1, "10.1.0.9"), (C2, "10.2.0.9")):
            kubectl(ctx, "apply", "-f", "-", stdin=service(namespace))
            kubectl(ctx, "apply", "-f", "-", stdin=source_slice(namespace, "hello", [addr]))
            kubectl(ctx, "apply", "-f", "-", stdin=export(namespace))
        deploy(kubectl, namespace, {C1: {GLOBAL: "true"}, C2: {GLOBAL: "true"}})
        both = ADDRS[C1] | ADDRS[C2]
        expect(kubectl, namespace, {C1: both, C2: both}, timeout=60)
        for ctx in (C1, C2):
            eventually(
                lambda ctx=ctx: ((get_import(kubectl, ctx, namespace) or {}).get("spec") or {}).get(
                    "ips"
                ),
                timeout=60,
                what=f"the import of hello in {ctx} with its IPs",
            )
    finally:
        codes = ctl.stop_all()
    assert codes == dict.fromkeys(codes, 0)
    written = {ctx: _ours(kubectl, ctx) for ctx in contexts}
    for ctx in (C1, C2):
        kinds = {entry.split("/")[0] for entry in written[ctx]}
        assert kinds == {"ServiceImport", "Service", "EndpointSlice"}, written[ctx]
    users = {ctx: _names(kubectl, ctx, "services", namespace) for ctx in (C1, C2)}
    users = {
        ctx: {n for n in names if not n.startswith("derived-")} for ctx, names in users.items()
    }
    assert users == {C1: {"hello", NAME}, C2: {"hello", NAME}}

    # --dry-run lists everything and changes nothing
    dry = _uninstall(mesh.kubeconfig, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    for ctx in (C1, C2):
        listed = [line for line in dry.stdout.splitlines() if line.startswith(f"{ctx}: would")]
        assert len(listed) == len(written[ctx]), dry.stdout
    assert {ctx: _ours(kubectl, ctx) for ctx in contexts} == written

    # --delete-crds is refused while users' exports exist; the rest of cluster1's goes
    out = _uninstall(mesh.kubeconfig, "--delete-crds", "--context", C1)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"{C1}: CRDs kept: 1 ServiceExport(s) exist" in out.stdout, out.stdout
    assert "global Service" in out.stdout and "derived Service" in out.stdout, out.stdout
    assert _ours(kubectl, C1) == []
    assert _ours(kubectl, C2) == written[C2], "--context: that member only"

    # every member
    out = _uninstall(mesh.kubeconfig)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{C1}: nothing of mcs left" in out.stdout, out.stdout
    assert out.stdout.count(f"{C2}: deleted ") == len(written[C2]), out.stdout
    for ctx in contexts:
        assert _ours(kubectl, ctx) == [], ctx
        for crd in CRDS:
            kubectl(ctx, "get", "crd", crd)  # still there
    for ctx in (C1, C2):
        assert _names(kubectl, ctx, "serviceexports", namespace) == {"hello"}
        assert _names(kubectl, ctx, "services", namespace) == {"hello", NAME}
        # users' Services are back to their own endpoints only
        assert behind(kubectl, ctx, namespace) == ADDRS[ctx]

    # a second run is a no-op
    again = _uninstall(mesh.kubeconfig)
    assert again.returncode == 0, again.stdout + again.stderr
    for ctx in contexts:
        assert f"{ctx}: nothing of mcs left" in again.stdout, again.stdout
    assert "deleted" not in again.stdout
