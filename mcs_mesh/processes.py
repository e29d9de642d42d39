"""Starting a mesh's processes, and knowing them again: every process is started with
arguments that name the mesh's directory (or the dataplane's run directory), which is
how ``stop_pids`` recognises its own and never signals a recycled pid."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def mesh_id(directory: Path) -> str:
    """Six hex digits naming this mesh's namespaces, cgroups and run directory."""
    return hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:6]


def run_dir(directory: Path) -> Path:
    """Sockets and containerd state (short paths: Unix sockets allow 107 bytes)."""
    return Path("/run") / f"mcs-{mesh_id(directory)}"


#: executables a dataplane runs (teardown signals only these, never a shell or a test)
DATAPLANE_EXECUTABLES = {
    "containerd",
    "containerd-shim-runc-v2",
    "kubelet",
    "kube-proxy",
    "socat",
    "runc",
    "nsenter",
    "coredns",
}


def is_dataplane_process(argv: list[str]) -> bool:
    """One of :data:`DATAPLANE_EXECUTABLES`, or the egress proxy (whose argv[0] is python)."""
    return Path(argv[0]).name in DATAPLANE_EXECUTABLES or "mcs_mesh.egress" in argv[1:3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_OUR_EXECUTABLES = {
    "etcd",
    "kube-apiserver",
    "coredns",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
}


def owns(pid: int, directory: Path) -> bool:
    """True when ``pid`` is a live process of the mesh in ``directory`` (one of
    ``_OUR_EXECUTABLES``) or an ``mcs run`` against it."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    if is_dataplane_process(argv):
        needles = [str(directory), str(run_dir(directory))]
        return any(n in arg for arg in argv[1:] for n in needles)
    if Path(argv[0]).name not in _OUR_EXECUTABLES and not _is_controller(argv):
        return False
    return any(str(directory) in arg for arg in argv[1:])


def _is_controller(argv: list[str]) -> bool:
    """``mcs run`` (console script or ``python -m mcs``): a controller on this mesh
    (its ``--kubeconfig`` names the mesh directory) is stopped with it."""
    return "run" in argv[1:4] and any(Path(a).name in ("mcs",) for a in argv[:3])


def mesh_rss_mib(pid: int) -> int:
    """Resident memory of ``pid`` in MiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError):
        pass
    return 0


def die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it when its parent dies. (SIGTERM would
    start kube-apiserver's graceful shutdown, which can take a minute.)"""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(
    args: list[str], log: Path, detach: bool, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if detach else die_with_parent,
            env=env,
        )


def stop_pids(pids: list[int], directory: Path, grace: float = 10.0) -> None:
    """SIGTERM our processes among ``pids``, then SIGKILL what is left after ``grace``."""
    mine = [p for p in pids if owns(p, directory)]
    for pid in mine:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(owns(p, directory) for p in mine):
        _reap()
        time.sleep(0.1)
    for pid in mine:
        if owns(pid, directory):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _reap()


def _reap() -> None:
    """Collect exited children of this process so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
