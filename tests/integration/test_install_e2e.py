"""README.md's "Install on your clusters", run as written, in each mode, on a mesh of two
members and a hub (issue #32): the CRDs and the chart into every cluster, ``kubectl mcs
join``, the controller(s) as the installed Deployment says, an export in one member
imported in the other, ``helm upgrade`` with a changed value and the controller still
converging, then ``helm uninstall`` and ``kubectl mcs uninstall``: nothing labelled
managed-by mcs-controller left, every user's ServiceExport and Service and the CRDs kept.

The README's code blocks are the commands: the test takes them from README.md, puts the
mesh's context names in place of ``c1``, ``c2`` and ``hub`` and runs them with bash,
kubectl (with the kubectl-mcs plugin) and the Helm of hack/helm.sh on PATH. No Pod runs
(no kubelet), so the controllers run on the host with the installed Deployment's
arguments and the kubeconfig of the Secret join wrote (tests/integration/chart.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.binaries import Binaries
from mcs_mesh.mesh import Mesh
from mcs_mesh.state import MeshState
from tests.integration.accounts import kubectl_path
from tests.integration.chart import NS, ROOT, controller, helm_path, host_argv, host_kubeconfig
from tests.integration.conftest import Kubectl, eventually
from tests.integration.mcs_objects import export, get_import, service, source_slice

OURS = "app.kubernetes.io/managed-by=mcs-controller"
CRDS = ("serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io")
_FENCE = re.compile(r"^```sh\n(.*?)^```", re.M | re.S)


def readme_blocks() -> list[str]:
    """The shell blocks of README.md's "Install on your clusters" section."""
    text = (ROOT / "README.md").read_text()
    start = text.index("## Install on your clusters")
    end = text.index("\n## ", start + 1)
    return _FENCE.findall(text[start:end])


def readme_block(*words: str) -> str:
    (found,) = [b for b in readme_blocks() if all(w in b for w in words)]
    return found


def for_contexts(text: str, names: dict[str, str]) -> str:
    """``text`` with the README's context names (c1, c2, hub) replaced."""
    return re.sub(r"\b(c1|c2|hub)\b", lambda m: names.get(m[1], m[1]), text)


class Shell:
    """bash, as a user's: the mesh's kubeconfig, kubectl, kubectl-mcs and helm on PATH,
    in the checkout."""

    def __init__(self, kubeconfig: Path) -> None:
        dirs = {str(Path(p).parent) for p in (helm_path(), kubectl_path(), sys.executable)}
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PATH": os.pathsep.join([*sorted(dirs), os.environ.get("PATH", "")]),
        }

    def __call__(self, script: str) -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, f"{script}\n{proc.stdout}{proc.stderr}"
        return proc.stdout + proc.stderr

    def per_release(self, block: str, releases: list[str], names: dict[str, str]) -> None:
        """A block whose helm lines name c1 for "every cluster with the release"."""
        for line in block.replace("\\\n", " ").splitlines():
            if line.lstrip().startswith("helm "):
                for ctx in releases:
                    self(for_contexts(line, {"c1": ctx}))
            elif line.strip():
                self(for_contexts(line, names))


@pytest.fixture(scope="module")
async def mesh3(
    binaries_ready: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MeshState]:
    """Two members and a hub (central mode): API servers only."""
    m = Mesh(tmp_path_factory.mktemp("e2e-mesh"), say=lambda s: None)
    state = await m.up(3, detach=False, dns=False, workloads=False)
    try:
        yield state
    finally:
        m.down()


def ours(kc: Kubectl, ctx: str) -> list[str]:
    """Every object labelled managed-by mcs-controller in ``ctx``, as kind/ns/name."""
    items: list[dict[str, Any]] = kc.json(
        ctx, "get", "serviceimports,services,endpointslices", "-A", "-l", OURS
    )["items"]
    return sorted(
        f"{o['kind']}/{o['metadata']['namespace']}/{o['metadata']['name']}" for o in items
    )


@contextlib.contextmanager
def controllers(kc: Kubectl, mesh: MeshState, where: list[str], workdir: Path) -> Iterator[None]:
    """The controller of each of ``where`` as its installed Deployment runs it, with the
    kubeconfig of the Secret join wrote (the Pod's token file replaced by a token of the
    chart's ServiceAccount mcs-controller)."""
    with contextlib.ExitStack() as stack:
        for ctx in where:
            argv, health, env = host_argv(kc, ctx, workdir)
            (i,) = [n for n, a in enumerate(argv) if a.startswith("--kubeconfig=")]
            token = kc(ctx, "-n", NS, "create", "token", "mcs-controller", "--duration", "1h")
            mounted = Path(argv[i].partition("=")[2]).read_text()
            path = host_kubeconfig(mesh, mounted, workdir, token.stdout.strip())
            argv[i] = f"--kubeconfig={path}"
            log = workdir / f"{ctx}-{len(list(workdir.glob('*.log')))}.log"
            stack.enter_context(controller(argv, health, env, log))
        yield


def wait_imported(kc: Kubectl, ctx: str, ns: str, source: str) -> None:
    def imported() -> bool:
        si = get_import(kc, ctx, ns)
        if not si or not (si.get("spec") or {}).get("ips"):
            return False
        if {c["cluster"] for c in si["status"]["clusters"]} != {source}:
            return False
        return bool(kc.json(ctx, "-n", ns, "get", "endpointslices", "-l", OURS)["items"])

    eventually(imported, timeout=90, interval=0.5, what=f"{ns}/hello of {source} in {ctx}, sliced")


@pytest.mark.parametrize("mode", ["per-cluster", "central"])
def test_readme_install_upgrade_uninstall(mode: str, mesh3: MeshState, tmp_path: Path) -> None:
    kc = Kubectl(mesh3.kubeconfig)
    sh = Shell(mesh3.kubeconfig)
    c1, c2, hub = (m.name for m in mesh3.members)
    names = {"c1": c1, "c2": c2, "hub": hub}
    central = mode == "central"
    releases = [c1, c2, hub] if central else [c1, c2]
    running = [hub] if central else [c1, c2]

    # 1. install and join, as the README says
    install = readme_block("--mode central") if central else readme_block("mode=per-cluster")
    sh(for_contexts(install, names))
    for ctx in running:
        secret = kc.json(ctx, "-n", NS, "get", "secret", "mcs-remote-kubeconfigs")
        assert secret["data"]["mode"], secret

    # 2. a user's export in c1 (the namespace in both) is imported in c2
    ns, ns2 = f"e2e-{mode}", f"e2e-{mode}-after-upgrade"
    for n in (ns, ns2):
        for ctx in (c1, c2):
            kc(ctx, "create", "namespace", n)
    kc(c1, "apply", "-f", "-", stdin=service(ns))
    kc(c1, "apply", "-f", "-", stdin=source_slice(ns, "hello", ["10.1.0.9"]))  # no Pod runs
    kc(c1, "apply", "-f", "-", stdin=export(ns))
    with controllers(kc, mesh3, running, tmp_path):
        wait_imported(kc, c2, ns, c1)

    # 3. helm upgrade with a changed value; the controllers as now installed converge
    sh.per_release(readme_block("upgrade"), releases, names)
    for ctx in running:
        dep = kc.json(ctx, "-n", NS, "get", "deployment", "mcs-controller")
        assert (
            "--exclude-namespaces=legacy"
            in dep["spec"]["template"]["spec"]["containers"][0]["args"]
        )
    kc(c2, "apply", "-f", "-", stdin=service(ns2))
    kc(c2, "apply", "-f", "-", stdin=source_slice(ns2, "hello", ["10.2.0.9"]))
    kc(c2, "apply", "-f", "-", stdin=export(ns2))
    with controllers(kc, mesh3, running, tmp_path):
        wait_imported(kc, c1, ns2, c2)
        wait_imported(kc, c2, ns, c1)
    written = {ctx: ours(kc, ctx) for ctx in (c1, c2)}
    for ctx in (c1, c2):  # imports, derived Services and slices to remove
        kinds = {entry.split("/")[0] for entry in written[ctx]}
        assert kinds == {"ServiceImport", "Service", "EndpointSlice"}, written

    # 4. uninstall, as the README says (the controllers stopped with their Deployment)
    sh.per_release(readme_block("kubectl mcs uninstall"), releases, names)
    for ctx in (c1, c2, hub):
        assert ours(kc, ctx) == [], (ctx, written)
        gone = kc(ctx, "-n", NS, "get", "deployment", "mcs-controller", check=False)
        assert gone.returncode != 0 and "NotFound" in gone.stderr
    for ctx, n in ((c1, ns), (c2, ns2)):
        kc(ctx, "-n", n, "get", "serviceexports.multicluster.x-k8s.io", "hello")
        kc(ctx, "-n", n, "get", "service", "hello")
    for ctx in (c1, c2):
        for crd in CRDS:
            kc(ctx, "get", "crd", crd)
