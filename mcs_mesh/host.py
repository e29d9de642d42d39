"""Debian packages a dataplane mesh needs on the host, installed when missing.

Each requirement is a command on PATH (``iptables``) or an absolute path
(``/usr/include/seccomp.h``) with the Debian package that provides it. As root on a
machine with ``apt-get``, what is missing is installed (``apt-get update`` once, then
``apt-get install``); anywhere else :class:`HostToolMissing` names the packages, so a
run never goes on without them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from mcs_mesh.state import MeshError

#: what ``mcs mesh up --dataplane`` runs on the host, and its Debian package
DATAPLANE_TOOLS = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "socat": "socat",
    "conntrack": "conntrack",
    "/bin/busybox": "busybox-static",
}


class HostToolMissing(MeshError):
    """A tool is missing and cannot be installed here; the message names the packages."""


def _present(what: str) -> bool:
    if what.startswith("/"):
        return os.path.exists(what)
    return shutil.which(what) is not None


def _static_busybox() -> bool:
    """Debian's ``busybox`` package is dynamically linked; images need ``busybox-static``."""
    try:
        out = subprocess.run(
            ["file", "-L", "/bin/busybox"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return os.path.exists("/bin/busybox")
    return "statically linked" in out or "static-pie" in out or not out


def missing(tools: dict[str, str]) -> list[str]:
    """The Debian packages of ``tools`` that are not here (sorted, each once)."""
    out = {pkg for what, pkg in tools.items() if not _present(what)}
    if "/bin/busybox" in tools and _present("/bin/busybox") and not _static_busybox():
        out.add(tools["/bin/busybox"])
    return sorted(out)


def require_packages(tools: dict[str, str]) -> None:
    """Install the Debian packages of the missing ``tools``, or raise naming them."""
    pkgs = missing(tools)
    if not pkgs:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise HostToolMissing(
            f"missing {', '.join(pkgs)}: install them (apt-get install {' '.join(pkgs)})"
        )
    print(f"[mcs mesh] installing Debian packages: {' '.join(pkgs)}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *pkgs]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            raise HostToolMissing(
                f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}"
            )
    still = missing(tools)
    if still:
        raise HostToolMissing(f"still missing after apt-get install: {', '.join(still)}")
