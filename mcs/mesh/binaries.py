"""Where the control-plane binaries come from.

``KUBEBUILDER_ASSETS`` (envtest's convention: a folder holding ``kube-apiserver``
and ``etcd``) wins when set. Otherwise the binaries are built from their Go modules
through the Go module proxy into a cache outside the repository,
``$MCS_CACHE_DIR`` or ``~/.cache/mcs/bin/k<kube>-e<etcd>/``, and reused from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TextIO

KUBE_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
COREDNS_VERSION = "1.14.7"  # newest 1.14.x on the module proxy; MCS is native since 1.12.2


class BinariesUnavailable(RuntimeError):
    """The binaries are neither given nor buildable; the message says what to do."""


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    coredns: Path | None = None


def cache_dir() -> Path:
    base = os.environ.get("MCS_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mcs"
    )
    return Path(base) / "bin" / f"k{KUBE_VERSION}-e{ETCD_VERSION}"


def coredns_path() -> Path:
    """Where the build puts CoreDNS: one folder per version, the executable named ``coredns``
    (``mcs mesh down`` recognises its processes by that name)."""
    return cache_dir() / f"coredns-v{COREDNS_VERSION}" / "coredns"


def _from_assets() -> Binaries | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return None
    folder = Path(assets)
    found = Binaries(folder / "kube-apiserver", folder / "etcd", _present(folder / "coredns"))
    missing = [str(p) for p in (found.kube_apiserver, found.etcd) if not os.access(p, os.X_OK)]
    if missing:
        raise BinariesUnavailable(
            f"KUBEBUILDER_ASSETS={assets} lacks executable {', '.join(missing)}"
        )
    return found


def _present(path: Path) -> Path | None:
    return path if os.access(path, os.X_OK) else None


def find(*, coredns: bool = False) -> Binaries | None:
    """The binaries if they are already at hand, else None."""
    given = _from_assets()
    if given is not None and not given.coredns and coredns and _present(coredns_path()):
        given = Binaries(given.kube_apiserver, given.etcd, coredns_path())
    if given is not None and (given.coredns or not coredns):
        return given
    out = cache_dir()
    bins = Binaries(out / "kube-apiserver", out / "etcd", _present(coredns_path()))
    if _present(bins.kube_apiserver) and _present(bins.etcd) and (bins.coredns or not coredns):
        return bins
    return None


def ensure(*, coredns: bool = False, log: TextIO = sys.stderr) -> Binaries:
    """Return the binaries, building what is missing (progress on ``log``)."""
    ready = find(coredns=coredns)
    if ready is not None:
        return ready
    if shutil.which("go") is None:
        raise BinariesUnavailable(
            "kube-apiserver/etcd are not built yet and 'go' is not on PATH. Install Go (1.24+) "
            "so mcs can build them from the Go module proxy, or set KUBEBUILDER_ASSETS to a "
            "folder holding kube-apiserver and etcd."
        )
    out = cache_dir()
    script = resources.files("mcs.mesh").joinpath("build-binaries.sh")
    args = ["bash", str(script), str(out), KUBE_VERSION, ETCD_VERSION]
    if coredns:
        args += [str(resources.files("mcs.mesh").joinpath("coredns")), COREDNS_VERSION]
    print(f"[mcs build] building into {out} (cold build: about 15-25 min on 2 cores)", file=log)
    started = time.monotonic()
    proc = subprocess.run(args, check=False)
    if proc.returncode != 0:
        raise BinariesUnavailable(
            f"building the control-plane binaries failed (exit {proc.returncode}, command: "
            f"{' '.join(args)}); see the output above. Alternatively set KUBEBUILDER_ASSETS to a "
            "folder holding kube-apiserver and etcd."
        )
    elapsed = time.monotonic() - started
    print(f"[mcs build] done in {elapsed:.0f}s: binaries in {out}", file=log)
    built = find(coredns=coredns)
    if built is None:
        raise BinariesUnavailable(f"the build finished but {out} lacks the binaries")
    return built
