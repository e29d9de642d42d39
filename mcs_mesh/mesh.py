"""``mcs mesh``: one etcd and N member clusters on loopback, one kubeconfig.

Each member is a kube-apiserver and, unless ``workloads=False``, the
kube-controller-manager, kube-scheduler and kwok nodes of :mod:`mcs_mesh.workloads`;
with ``dns=True`` also a CoreDNS (:mod:`mcs_mesh.dns`).

The state of a mesh lives in one directory (``.mcs-mesh/`` by default): the PKI,
etcd's data, the logs, ``state.json`` (what runs, with pids and ports) and
``kubeconfig`` (contexts ``cluster1`` ... ``clusterN``); :mod:`mcs_mesh.state` holds it,
:mod:`mcs_mesh.processes` starts the processes with arguments that name this
directory, which is how ``down`` and the stale-state check recognise their own
processes and never signal a recycled pid.

Ownership: ``up(detach=True)`` (the CLI) leaves the processes running in their own
session until ``mcs mesh down``; ``detach=False`` (the test harness, ``--foreground``)
ties them to the calling process with ``PR_SET_PDEATHSIG`` so that they die with it
even when it is killed.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from mcs_mesh import binaries
from mcs_mesh.certs import Pki, create_pki
from mcs_mesh.processes import free_port, owns, spawn, stop_pids
from mcs_mesh.state import Member, MeshError, MeshState, Proc

DEFAULT_DIR = Path(".mcs-mesh")
CRD_DIR = Path(__file__).resolve().parents[1] / "crds"


def kubeconfig_dict(state: MeshState, pki: Pki) -> dict[str, Any]:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": m.name,
                "cluster": {"server": m.server, "certificate-authority-data": b64(pki.ca_cert)},
            }
            for m in state.members
        ],
        "users": [
            {
                "name": "mcs-admin",
                "user": {
                    "client-certificate-data": b64(pki.admin_cert),
                    "client-key-data": b64(pki.admin_key),
                },
            }
        ],
        "contexts": [
            {"name": m.name, "context": {"cluster": m.name, "user": "mcs-admin"}}
            for m in state.members
        ],
        "current-context": state.members[0].name if state.members else "",
    }


def _ssl(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
    return ctx


async def _wait_http(
    url: str,
    ctx: ssl.SSLContext | None,
    proc: subprocess.Popen[bytes] | None,
    log: Path,
    within: float,
) -> None:
    deadline = time.monotonic() + within
    last = "no answer"
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]  # noqa: ASYNC240 - failure path
                raise MeshError(f"{proc.args!r} exited with {proc.returncode}; log {log}:\n{tail}")
            try:
                async with http.get(
                    url, ssl=ctx if ctx else False, timeout=aiohttp.ClientTimeout(total=2)
                ) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except (aiohttp.ClientError, TimeoutError) as e:
                last = repr(e)
            await asyncio.sleep(0.2)
    raise MeshError(f"{url} not ready after {within:.0f}s ({last}); see {log}")


class Mesh:
    """Start, stop and describe the mesh whose state lives in ``directory``."""

    def __init__(self, directory: Path = DEFAULT_DIR, say: Callable[[str], None] = print) -> None:
        self.dir = directory.resolve()
        self.say = say

    def state(self) -> MeshState | None:
        return MeshState.load(self.dir)

    def running(self) -> list[int]:
        st = self.state()
        return [p for p in st.pids() if owns(p, self.dir)] if st else []

    def _clear_stale(self) -> None:
        if not self.dir.exists():
            return
        alive = self.running()
        if alive:
            raise MeshError(
                f"a mesh is already running in {self.dir} (pids {alive}); "
                f"run 'mcs mesh down --dir {self.dir}' first"
            )
        from mcs_mesh import dataplane

        dataplane.teardown(self.dir)
        leftovers = [p for p in _pids_mentioning(self.dir)]
        if leftovers:
            self.say(f"stopping {len(leftovers)} leftover processes of a killed mesh in {self.dir}")
            stop_pids(leftovers, self.dir)
        self.say(f"removing stale mesh state in {self.dir}")
        shutil.rmtree(self.dir)

    async def up(
        self,
        clusters: int = 2,
        *,
        detach: bool = True,
        dns: bool = False,
        workloads: bool = True,
        nodes: int | None = None,
        dataplane: bool = False,
    ) -> MeshState:
        """Start the mesh: etcd, per member a kube-apiserver, and with ``workloads`` (the
        default) kube-controller-manager, kube-scheduler and kwok with ``nodes`` Nodes
        (default 2).
        With ``dataplane`` each member gets one real node instead of kwok's
        (:mod:`mcs_mesh.dataplane`)."""
        if nodes is None:
            nodes = 1 if dataplane else 2
        if dataplane and not 1 <= nodes <= 9:
            raise MeshError("--nodes must be between 1 and 9 with --dataplane")
        if not 1 <= clusters <= 9:
            raise MeshError("--clusters must be between 1 and 9")
        if workloads and not 1 <= nodes <= 250:
            raise MeshError("--nodes must be between 1 and 250")
        self._clear_stale()
        bins = binaries.ensure(coredns=dns or dataplane, workloads=workloads)
        node_bins = binaries.ensure_node() if dataplane else None
        self.dir.mkdir(parents=True)
        names = [f"cluster{i}" for i in range(1, clusters + 1)]
        pki = create_pki(self.dir / "pki", names)
        logs = self.dir / "logs"
        logs.mkdir()
        started: list[subprocess.Popen[bytes]] = []
        extra: list[str] = []
        if dataplane:
            from mcs_mesh import dataplane as dp

            extra = dp.apiserver_args(self.dir, pki)
        try:
            ep, pp = free_port(), free_port()
            etcd_log = logs / "etcd.log"
            etcd = spawn(
                [
                    str(bins.etcd),
                    "--name",
                    "mcs-etcd",
                    "--data-dir",
                    str(self.dir / "etcd"),
                    "--listen-client-urls",
                    f"http://127.0.0.1:{ep}",
                    "--advertise-client-urls",
                    f"http://127.0.0.1:{ep}",
                    "--listen-peer-urls",
                    f"http://127.0.0.1:{pp}",
                    "--initial-advertise-peer-urls",
                    f"http://127.0.0.1:{pp}",
                    "--initial-cluster",
                    f"mcs-etcd=http://127.0.0.1:{pp}",
                    "--unsafe-no-fsync",
                    "--log-level",
                    "warn",
                ],
                etcd_log,
                detach,
            )
            started.append(etcd)
            state = MeshState(
                dir=str(self.dir), etcd=Proc("etcd", etcd.pid, ep, str(etcd_log)), detached=detach
            )
            state.save()
            await _wait_http(f"http://127.0.0.1:{ep}/health", None, etcd, etcd_log, 30)

            procs: list[tuple[Member, subprocess.Popen[bytes], Path]] = []
            for i, name in enumerate(names, start=1):
                port = free_port()
                cidr = f"10.{100 + i}.0.0/16,fd00:10:{100 + i}::/108"
                log = logs / f"{name}.log"
                proc = spawn(
                    self._apiserver_args(bins.kube_apiserver, pki, name, port, ep, cidr) + extra,
                    log,
                    detach,
                )
                started.append(proc)
                member = Member(name, port, proc.pid, cidr)
                state.members.append(member)
                procs.append((member, proc, log))
            state.save()
            ctx = _ssl(pki)
            await asyncio.gather(
                *(_wait_http(f"{m.server}/readyz", ctx, p, log, 90) for m, p, log in procs)
            )
            state.kubeconfig.write_text(
                yaml.safe_dump(kubeconfig_dict(state, pki), sort_keys=False)
            )
            state.kubeconfig.chmod(0o600)
            await asyncio.gather(*(self._bootstrap(state, m.name) for m in state.members))
            if workloads:
                started += await self._start_workloads(
                    bins, pki, state, nodes, detach, kwok=not dataplane
                )
            if node_bins is not None:
                started += await self._start_dataplane(
                    node_bins, pki, state, detach, workloads, bins.coredns, nodes
                )
            if dns:
                from mcs_mesh.dns import start_dns

                for m in state.members:
                    started.append(start_dns(bins, state, m, detach))
            return state
        except BaseException:
            stop_pids([p.pid for p in started], self.dir, grace=5)
            if dataplane:
                from mcs_mesh import dataplane as dp

                dp.teardown(self.dir)
            raise

    async def _start_dataplane(
        self,
        node_bins: binaries.NodeBinaries,
        pki: Pki,
        state: MeshState,
        detach: bool,
        workloads: bool,
        coredns: Path | None,
        nodes: int = 1,
    ) -> list[subprocess.Popen[bytes]]:
        """Per member one real node (:mod:`mcs_mesh.dataplane`), recorded as components."""
        from mcs_mesh import dataplane as dp

        started: list[dp.Started] = []
        try:
            await dp.start(
                self.dir,
                [(m.name, m.port) for m in state.members],
                pki,
                node_bins,
                lambda args, log, env: spawn(args, log, detach, env),
                started,
                coredns,
                nodes,
            )
            await dp.wait_nodes_ready(
                state.kubeconfig,
                [m.name for m in state.members],
                started,
                service_account=workloads,
                nodes=nodes,
            )
        finally:
            by_name = {m.name: m for m in state.members}
            for s in started:
                by_name[s.member].components.append(
                    Proc(s.name, s.proc.pid, 0, str(s.log), where=s.where)
                )
            state.save()
        return [s.proc for s in started]

    def _apiserver_args(
        self, exe: Path, pki: Pki, name: str, port: int, etcd_port: int, cidr: str
    ) -> list[str]:
        return [
            str(exe),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            f"--etcd-prefix=/mcs-mesh/{name}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.dir / 'pki' / name}",
            f"--tls-cert-file={pki.serving_cert(name)}",
            f"--tls-private-key-file={pki.serving_key(name)}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=RBAC",
            f"--service-account-issuer=https://127.0.0.1:{port}/",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--service-cluster-ip-range={cidr}",
            # TaintNodesByCondition taints a new Node not-ready until the node-lifecycle
            # controller lifts it; the mesh runs no such controller: kwok's Nodes are Ready
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=0",
        ]

    async def _start_workloads(
        self,
        bins: binaries.Binaries,
        pki: Pki,
        state: MeshState,
        nodes: int,
        detach: bool,
        *,
        kwok: bool = True,
    ) -> list[subprocess.Popen[bytes]]:
        """kube-controller-manager, kube-scheduler and kwok for every member, then its Nodes
        (without ``kwok``: only the first two; a dataplane brings real nodes)."""
        from mcs_mesh import workloads as wl

        started: list[subprocess.Popen[bytes]] = []
        waits = []
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # self-signed serving certs of /healthz
        try:
            for index, m in enumerate(state.members, start=1):
                v4, v6 = wl.pod_cidrs(index)
                m.pod_cidr, m.nodes = f"{v4},{v6}", nodes
                kubeconfigs = wl.write_kubeconfigs(self.dir, pki, m.name, m.server)
                ports = {c: free_port() for c in wl.COMPONENTS}
                cmds = wl.commands(bins, self.dir, pki, m.name, kubeconfigs, ports)
                urls = wl.health_urls(ports)
                for component, args in cmds.items():
                    if component == "kwok" and not kwok:
                        continue
                    log = self.dir / "logs" / f"{m.name}-{component}.log"
                    proc = spawn(args, log, detach)
                    started.append(proc)
                    m.components.append(Proc(component, proc.pid, ports[component], str(log)))
                    waits.append(_wait_http(urls[component], ctx, proc, log, 60))
            state.save()
            await asyncio.gather(*waits)
            if not kwok:
                return started
            await asyncio.gather(
                *(
                    wl.create_nodes(
                        state.kubeconfig,
                        m.name,
                        index,
                        nodes,
                        self.dir / "logs" / f"{m.name}-kube-controller-manager.log",
                    )
                    for index, m in enumerate(state.members, start=1)
                )
            )
        except BaseException:
            stop_pids([p.pid for p in started], self.dir, grace=5)
            raise
        return started

    async def _bootstrap(self, state: MeshState, context: str) -> None:
        """Install the CRDs, wait for them, and create the cluster-id ClusterProperty."""
        from mcs_mesh.bootstrap import bootstrap_cluster

        await bootstrap_cluster(state.kubeconfig, context, CRD_DIR, cluster_id=context)

    def down(self) -> bool:
        """Stop everything this mesh started and remove its state. False if there was none."""
        if not self.dir.exists():
            return False
        from mcs_mesh import dataplane

        # a dataplane first (its nodes, pods, namespaces, mounts and cgroups); then every
        # process of the mesh, which names its directory (state.json may be missing or
        # stale after a killed run), so the scan finds them all
        try:
            left = dataplane.teardown(self.dir)
        finally:
            stop_pids(_pids_mentioning(self.dir), self.dir)
        if left:
            # keep the state directory: the next down or up tries again
            raise MeshError(f"mcs mesh down left {len(left)} things behind: {', '.join(left[:8])}")
        shutil.rmtree(self.dir, ignore_errors=True)
        return True


def _pids_mentioning(directory: Path) -> list[int]:
    """Every live process whose command line names ``directory`` (killed runs leave these)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and owns(int(entry.name), directory):
            out.append(int(entry.name))
    return out
