"""Where the control-plane binaries come from.

``KUBEBUILDER_ASSETS`` (envtest's convention: a folder holding ``kube-apiserver``
and ``etcd``) wins for what it holds. Everything else is built from its Go module
through the Go module proxy into a cache outside the repository,
``$MCS_CACHE_DIR`` or ``~/.cache/mcs/bin/k<kube>-e<etcd>/``, and reused from there:
kube-apiserver and etcd always; CoreDNS for ``--dns``; kube-controller-manager,
kube-scheduler and kwok for a mesh with workloads (the default).

A build shows one line per binary (:mod:`mcs_mesh.progress`); Go's own output goes
to ``<cache>/logs/build-<binary>.log``, whose path is printed when a build fails.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

from mcs_mesh.host import require_packages
from mcs_mesh.progress import BuildFailed, Target, build_all

KUBE_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
COREDNS_VERSION = "1.14.7"  # newest 1.14.x on the module proxy; MCS is native since 1.12.2
KWOK_VERSION = "0.8.0"  # newest sigs.k8s.io/kwok on the module proxy (client-go v0.36)
# the node binaries of a dataplane mesh (mcs_mesh.dataplane); kubelet and kube-proxy
# are KUBE_VERSION, from the same wrapper module as kube-apiserver
CONTAINERD_VERSION = "2.4.2"  # Kubernetes 1.36 needs containerd 2.x
RUNC_VERSION = "1.5.3"
CNI_PLUGINS_VERSION = "1.10.0"
MCS_CURL_VERSION = "1"  # mcs_mesh/images/curl, ours


class BinariesUnavailable(RuntimeError):
    """The binaries are neither given nor buildable; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    coredns: Path | None = None
    kube_controller_manager: Path | None = None
    kube_scheduler: Path | None = None
    kwok: Path | None = None

    @property
    def workloads(self) -> bool:
        """True when the binaries for Deployments, scheduling and simulated nodes are here."""
        return None not in (self.kube_controller_manager, self.kube_scheduler, self.kwok)


def cache_dir() -> Path:
    base = os.environ.get("MCS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcs"
    )
    return Path(base) / "bin" / f"k{KUBE_VERSION}-e{ETCD_VERSION}"


def coredns_path() -> Path:
    """Where the build puts CoreDNS: one folder per version, the executable named ``coredns``
    (``mcs mesh down`` recognises its processes by that name)."""
    return cache_dir() / f"coredns-v{COREDNS_VERSION}" / "coredns"


def kwok_path() -> Path:
    return cache_dir() / f"kwok-v{KWOK_VERSION}" / "kwok"


def targets(*, coredns: bool, workloads: bool) -> list[Target]:
    """The binaries a mesh needs, in build order (kube-* share one wrapper module)."""
    out = cache_dir()
    want = [
        Target("etcd", ETCD_VERSION, _given("etcd") or out / "etcd"),
        Target("kube-apiserver", KUBE_VERSION, _given("kube-apiserver") or out / "kube-apiserver"),
    ]
    if workloads:
        for name in ("kube-controller-manager", "kube-scheduler"):
            want.append(Target(name, KUBE_VERSION, _given(name) or out / name))
    if coredns:
        want.append(Target("coredns", COREDNS_VERSION, _given("coredns") or coredns_path()))
    if workloads:
        want.append(Target("kwok", KWOK_VERSION, _given("kwok") or kwok_path()))
    return want


@dataclass(frozen=True)
class NodeBinaries:
    """What a dataplane node runs: kubelet, kube-proxy, containerd (its folder also holds
    ``containerd-shim-runc-v2`` and ``ctr``), runc, the CNI plugins' folder, and
    ``mcs-curl`` for the example images."""

    kubelet: Path
    kube_proxy: Path
    containerd: Path
    runc: Path
    cni_bin: Path
    curl: Path

    @property
    def bin_dirs(self) -> list[Path]:
        """Folders a node's processes need on PATH (containerd finds its shim and runc there)."""
        return sorted({self.containerd.parent, self.runc.parent})


def node_targets() -> list[Target]:
    """The dataplane's extra binaries, in build order (kubelet after kube-apiserver)."""
    out = cache_dir()
    node = out / "node"
    own = Path(str(resources.files("mcs_mesh").joinpath("images").joinpath("curl")))
    return [
        Target("kubelet", KUBE_VERSION, out / "kubelet"),
        Target("kube-proxy", KUBE_VERSION, out / "kube-proxy"),
        Target(
            "containerd", CONTAINERD_VERSION, node / f"containerd-v{CONTAINERD_VERSION}/containerd"
        ),
        Target("runc", RUNC_VERSION, node / f"runc-v{RUNC_VERSION}/runc"),
        Target(
            "cni-plugins", CNI_PLUGINS_VERSION, node / f"cni-v{CNI_PLUGINS_VERSION}/cni-plugins"
        ),
        Target("mcs-curl", MCS_CURL_VERSION, node / f"mcs-curl-v{MCS_CURL_VERSION}/mcs-curl", own),
    ]


def _node_collect() -> NodeBinaries | None:
    t = {x.name: x.path for x in node_targets()}
    if any(_present(p) is None for p in t.values()):
        return None
    return NodeBinaries(
        kubelet=t["kubelet"],
        kube_proxy=t["kube-proxy"],
        containerd=t["containerd"],
        runc=t["runc"],
        cni_bin=t["cni-plugins"].parent,
        curl=t["mcs-curl"],
    )


def ensure_node(log: TextIO = sys.stderr) -> NodeBinaries:
    """The dataplane's node binaries, building what is missing (Go module proxy; runc
    needs gcc and libseccomp-dev, installed with apt-get when missing and run as root)."""
    ready = _node_collect()
    if ready is not None:
        return ready
    if shutil.which("go") is None:
        raise BinariesUnavailable(
            "the dataplane's node binaries (kubelet, kube-proxy, containerd, runc, CNI "
            "plugins) are not built yet and 'go' is not on PATH: install Go 1.26+"
        )

    require_packages({"gcc": "gcc", "/usr/include/seccomp.h": "libseccomp-dev"})
    script = resources.files("mcs_mesh").joinpath("build-binaries.sh")
    try:
        build_all(
            node_targets(),
            script=Path(str(script)),
            coredns_src=Path(str(resources.files("mcs_mesh").joinpath("coredns"))),
            cache=cache_dir(),
            out=log,
        )
    except BuildFailed as e:
        raise BinariesUnavailable(str(e)) from None
    built = _node_collect()
    if built is None:
        raise BinariesUnavailable(f"the build finished but {cache_dir()} lacks node binaries")
    return built


def _given(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    return _present(Path(assets) / name) if assets else None


def _present(path: Path) -> Path | None:
    return path if os.access(path, os.X_OK) else None


def _check_assets() -> None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return
    missing = [str(Path(assets) / n) for n in ("kube-apiserver", "etcd") if not _given(n)]
    if missing:
        raise BinariesUnavailable(
            f"KUBEBUILDER_ASSETS={assets} lacks executable {', '.join(missing)}"
        )


def _collect(found: dict[str, Path]) -> Binaries:
    return Binaries(
        kube_apiserver=found["kube-apiserver"],
        etcd=found["etcd"],
        coredns=found.get("coredns"),
        kube_controller_manager=found.get("kube-controller-manager"),
        kube_scheduler=found.get("kube-scheduler"),
        kwok=found.get("kwok"),
    )


def find(*, coredns: bool = False, workloads: bool = False) -> Binaries | None:
    """The binaries if they are all at hand, else None."""
    _check_assets()
    want = targets(coredns=coredns, workloads=workloads)
    if any(_present(t.path) is None for t in want):
        return None
    return _collect({t.name: t.path for t in want})


def ensure(*, coredns: bool = False, workloads: bool = False, log: TextIO = sys.stderr) -> Binaries:
    """Return the binaries, building what is missing (one progress line per binary on ``log``)."""
    ready = find(coredns=coredns, workloads=workloads)
    if ready is not None:
        return ready
    if shutil.which("go") is None:
        raise BinariesUnavailable(
            "the control-plane binaries are not built yet and 'go' is not on PATH. Install Go "
            "(1.26+) so mcs can build them from the Go module proxy, or set KUBEBUILDER_ASSETS "
            "to a folder holding kube-apiserver and etcd."
        )

    script = resources.files("mcs_mesh").joinpath("build-binaries.sh")
    coredns_src = resources.files("mcs_mesh").joinpath("coredns")
    try:
        build_all(
            targets(coredns=coredns, workloads=workloads),
            script=Path(str(script)),
            coredns_src=Path(str(coredns_src)),
            cache=cache_dir(),
            out=log,
        )
    except BuildFailed as e:
        raise BinariesUnavailable(
            f"{e}. Alternatively set KUBEBUILDER_ASSETS to a folder holding kube-apiserver "
            "and etcd."
        ) from None
    built = find(coredns=coredns, workloads=workloads)
    if built is None:
        raise BinariesUnavailable(f"the build finished but {cache_dir()} lacks binaries")
    return built
