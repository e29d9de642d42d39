"""What a mesh is: its processes, members and ports (``state.json``), and its error.

Plain data, no processes started here (:mod:`mcs_mesh.processes` starts and stops them).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


class MeshError(RuntimeError):
    """A mesh cannot be started or stopped; the message says why."""


@dataclass
class Proc:
    name: str
    pid: int
    port: int
    log: str
    #: where it listens when not on the host's loopback (a dataplane node's namespace)
    where: str = ""


@dataclass
class Member:
    name: str
    port: int
    pid: int
    service_cidr: str
    dns_port: int | None = None
    dns_pid: int | None = None
    pod_cidr: str = ""
    nodes: int = 0
    #: kube-controller-manager, kube-scheduler and kwok when the mesh runs workloads
    components: list[Proc] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass
class MeshState:
    dir: str
    etcd: Proc
    members: list[Member] = field(default_factory=list)
    detached: bool = True
    started_at: float = field(default_factory=time.time)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.dir) / "kubeconfig"

    def save(self) -> None:
        (Path(self.dir) / "state.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> MeshState | None:
        path = directory / "state.json"
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(
            dir=raw["dir"],
            etcd=Proc(**raw["etcd"]),
            members=[
                Member(**{**m, "components": [Proc(**c) for c in m.get("components", [])]})
                for m in raw["members"]
            ],
            detached=raw.get("detached", True),
            started_at=raw.get("started_at", 0.0),
        )

    def pids(self) -> list[int]:
        out = [self.etcd.pid]
        for m in self.members:
            out.append(m.pid)
            if m.dns_pid:
                out.append(m.dns_pid)
            out.extend(c.pid for c in m.components)
        return out
