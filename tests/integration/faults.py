"""Fault injection for the fault suite: freeze (SIGSTOP), thaw, kill (SIGKILL) and restart
a member's real kube-apiserver, start a second API server of the same cluster, and run
``mcs run`` without waiting for it to be ready.

A restarted API server is the same binary with the same arguments (so the same port,
certificates and etcd prefix: the cluster's data stays); the mesh's state is updated
with its new pid, and ``mcs mesh down`` finds it by its command line as before.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from mcs_mesh.processes import free_port, spawn
from mcs_mesh.state import Member, MeshState
from tests.integration.conftest import API_SERVER_RESTARTS, Controllers, Kubectl, eventually


def argv_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")


@dataclass
class ApiServer:
    """One member's kube-apiserver, as the fault tests drive it."""

    mesh: MeshState
    member: Member
    kubectl: Kubectl
    window: list[float] = field(default_factory=lambda: [0.0, 0.0])  # down or starting

    def freeze(self) -> None:
        os.kill(self.member.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.member.pid, signal.SIGCONT)

    def kill(self) -> list[str]:
        """SIGKILL it; returns its command line (for ``restart``)."""
        self.window = [time.time(), math.inf]  # closed by restart()
        API_SERVER_RESTARTS.append(self.window)
        argv = argv_of(self.member.pid)
        os.kill(self.member.pid, signal.SIGCONT)  # harmless if it was not frozen
        os.kill(self.member.pid, signal.SIGKILL)
        _wait_gone(self.member.pid)
        return argv

    def restart(self, argv: list[str]) -> None:
        """Start it again with ``argv`` and wait until it is ready."""
        self.spawn(argv)
        try:
            eventually(self.started, timeout=120, interval=0.5, what=f"{self.member.name} ready")
        except AssertionError as e:
            raise AssertionError(f"{e}; log:\n{self._log_tail(30)}") from None

    def spawn(self, argv: list[str]) -> None:
        """Start it again with ``argv``, without waiting (``started`` says when it is
        ready). Call it from the main thread: the mesh's processes die with the thread
        that started them (PR_SET_PDEATHSIG)."""
        self._argv = argv
        self._attempts = getattr(self, "_attempts", 0) + 1
        log = self._log()
        self._log_start = log.stat().st_size if log.exists() else 0
        self._proc = spawn(argv, log, detach=False)
        self.member.pid = self._proc.pid
        self.mesh.save()

    def started(self) -> bool:
        """True once the server ``spawn`` started is ready. Its port is an ephemeral
        one (the mesh picks free ports), so while it was down another socket may have
        taken the port: then it exits with "address already in use", and is started
        again (by the caller's thread)."""
        if self._proc.poll() is None:
            if not self.ready():
                return False
            self.window[1] = time.time() + 15  # its authorizer may lag /readyz (seconds, loaded)
            return True
        with self._log().open(errors="replace") as f:
            f.seek(self._log_start)
            said = f.read()
        if "address already in use" not in said:
            code = self._proc.returncode
            raise RuntimeError(f"{self.member.name} exited ({code}):\n{said[-3000:]}")
        if self._attempts >= 20:
            raise RuntimeError(f"{self.member.name}: its port stayed taken")
        time.sleep(1)
        self.spawn(self._argv)
        return False

    def _log(self) -> Path:
        return Path(self.mesh.dir) / "logs" / f"{self.member.name}.log"

    def _log_tail(self, lines: int) -> str:
        return "\n".join(self._log().read_text(errors="replace").splitlines()[-lines:])

    def ready(self) -> bool:
        out = self.kubectl(self.member.name, "get", "--raw", "/readyz", check=False)
        return out.returncode == 0

    def wait_ready(self, timeout: float = 90) -> None:
        def ok() -> bool:
            out = self.kubectl(self.member.name, "get", "--raw", "/readyz", check=False)
            return out.returncode == 0

        eventually(ok, timeout=timeout, interval=0.5, what=f"{self.member.name} ready")

    @contextmanager
    def frozen(self) -> Iterator[None]:
        self.freeze()
        try:
            yield
        finally:
            self.thaw()


def _wait_gone(pid: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} did not die")


@contextmanager
def second_apiserver(
    mesh: MeshState, member: Member
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """Another kube-apiserver of ``member``'s cluster (same etcd prefix) on a new port,
    as in an HA control plane; yields ``(port, process)`` and kills it afterwards."""
    port = free_port()
    argv = [
        f"--secure-port={port}" if a.startswith("--secure-port=") else a
        for a in argv_of(member.pid)
    ]
    log = Path(mesh.dir) / "logs" / f"{member.name}-b.log"
    proc = spawn(argv, log, detach=False)
    try:
        yield port, proc
    finally:
        proc.kill()  # SIGKILL ends a frozen process too, without running what it holds
        proc.wait(timeout=30)


def kubeconfig_with_server(src: Path, dst: Path, context: str, port: int) -> Path:
    """A copy of ``src`` whose ``context`` talks to ``https://127.0.0.1:<port>``."""
    cfg: dict[str, Any] = yaml.safe_load(src.read_text())
    cluster = next(c["context"]["cluster"] for c in cfg["contexts"] if c["name"] == context)
    for c in cfg["clusters"]:
        if c["name"] == cluster:
            c["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dst.write_text(yaml.safe_dump(cfg))
    dst.chmod(0o600)
    return dst


def spawn_controller(ctl: Controllers, name: str, *extra: str) -> None:
    """Start ``mcs run`` like ``Controllers.start`` without waiting for /readyz."""
    ctl.spawn(name, *extra)


def log_events(ctl: Controllers, name: str) -> list[dict[str, Any]]:
    """The JSON log lines of controller ``name``."""
    out = []
    for line in (ctl.logdir / f"{name}.log").read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def log_time(event: dict[str, Any]) -> float:
    """The wall-clock time of a JSON log line of ``log_events``."""
    return datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).timestamp()


def seed_for(test: str) -> int:
    """A random seed for ``test``, printed (pytest shows it on failure); the environment
    variable ``MCS_CHAOS_SEED`` replays a run."""
    seed = int(os.environ.get("MCS_CHAOS_SEED") or random.randrange(2**32))
    print(f"{test}: seed {seed} (replay with MCS_CHAOS_SEED={seed})")
    return seed
