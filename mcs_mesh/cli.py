"""``mcs mesh up|down|status|build``: the local clusterset on the command line.

Only the standard library is imported here: the mesh tooling (``mcs_mesh.mesh``, which
needs the ``mesh`` extra) is imported when a ``mesh`` command runs, so the controller's
image, which leaves the extra out, still parses ``mcs`` arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mcs_mesh.mesh import Mesh

# mcs_mesh.mesh.DEFAULT_DIR, spelled here so that parsing needs no mesh tooling
DEFAULT_DIR = Path(".mcs-mesh")
Command = Callable[[argparse.Namespace], int]


def _mesh(folder: Path) -> Mesh:
    from mcs_mesh.mesh import Mesh

    return Mesh(folder)


def _rss_mib(pid: int) -> int:
    from mcs_mesh.processes import mesh_rss_mib

    return mesh_rss_mib(pid)


def _mesh_up(args: argparse.Namespace) -> int:
    mesh = _mesh(args.dir)
    started = time.monotonic()
    detach = not args.foreground
    state = asyncio.run(
        mesh.up(
            args.clusters,
            detach=detach,
            dns=args.dns,
            workloads=not args.no_workloads,
            nodes=args.nodes,
            dataplane=args.dataplane,
        )
    )
    took = time.monotonic() - started
    names = ", ".join(m.name for m in state.members)
    per_member = "kube-apiserver, kube-controller-manager, kube-scheduler, kwok"
    if args.no_workloads:
        per_member = "kube-apiserver"
    if args.dataplane:
        per_member = (
            "kube-apiserver, kube-controller-manager, kube-scheduler and one node "
            "(containerd, kubelet, kube-proxy)"
        )
    print(f"mesh up in {took:.1f}s: etcd + {len(state.members)} members ({names}) of {per_member}")
    for m in state.members:
        dns = f", DNS 127.0.0.1:{m.dns_port}" if m.dns_port else ""
        kind = "real" if args.dataplane else "kwok"
        pods = f", pods {m.pod_cidr} on {m.nodes} {kind} nodes" if m.components else ""
        print(f"  {m.name}: {m.server} (services {m.service_cidr}{pods}{dns})")
    if state.members and state.members[0].dns_port:
        m = state.members[0]
        print(f"query DNS: dig @127.0.0.1 -p {m.dns_port} <svc>.<ns>.svc.clusterset.local")
    print(f"kubeconfig: {state.kubeconfig}")
    print(f"export KUBECONFIG={state.kubeconfig}")
    if detach:
        print(f"stop it with: mcs mesh down --dir {args.dir}")
        return 0
    print("running in the foreground; Ctrl-C stops the mesh")
    try:
        signal.pause()
    finally:
        mesh.down()
    return 0


def _mesh_down(args: argparse.Namespace) -> int:
    if _mesh(args.dir).down():
        print(f"mesh in {args.dir} stopped and removed")
    else:
        print(f"no mesh in {args.dir}")
    return 0


def _mesh_status(args: argparse.Namespace) -> int:
    mesh = _mesh(args.dir)
    state = mesh.state()
    if state is None:
        print(f"no mesh in {args.dir}")
        return 1
    alive = set(mesh.running())
    ok = True
    print(f"{'PROCESS':34} {'STATE':8} {'PID':>8} {'RSS':>8}  WHERE")
    print(f"{'etcd':34} {_proc_line(state.etcd.pid, alive)}  127.0.0.1:{state.etcd.port}")
    ok &= state.etcd.pid in alive
    for m in state.members:
        rows = [(f"{m.name} kube-apiserver", m.pid, m.server)]
        rows += [
            (f"{m.name} {c.name}", c.pid, c.where or f"127.0.0.1:{c.port}") for c in m.components
        ]
        if m.dns_pid:
            rows.append((f"{m.name} coredns", m.dns_pid, f"127.0.0.1:{m.dns_port} (udp/tcp)"))
        for name, pid, where in rows:
            ok &= pid in alive
            print(f"{name:34} {_proc_line(pid, alive)}  {where}")
        total = sum(_rss_mib(pid) for _, pid, _ in rows)
        print(f"{m.name + ' total':34} {'':8} {'':>8} {total:>5} MiB")
    if any(c.where for m in state.members for c in m.components):
        from mcs_mesh.dataplane import usage

        print(usage(Path(state.dir), state.pids()))
    print(f"kubeconfig: {state.kubeconfig}")
    return 0 if ok else 1


def _proc_line(pid: int, alive: set[int]) -> str:
    up = pid in alive
    rss = f"{_rss_mib(pid)} MiB" if up else "-"
    return f"{'running' if up else 'STOPPED':8} {pid:>8} {rss:>8}"


def _mesh_build(args: argparse.Namespace) -> int:
    from mcs_mesh import binaries

    bins = binaries.ensure(coredns=args.dns, workloads=not args.no_workloads)
    found: dict[str, Any] = dict(vars(bins))
    if args.dataplane:
        found.update(vars(binaries.ensure_node()))
    for name, path in found.items():
        if path is not None:
            print(f"{name.replace('_', '-')}: {path}")
    return 0


def _mesh_load(args: argparse.Namespace) -> int:
    from mcs_mesh.dataplane import load

    archive = args.archive.resolve()
    if not archive.is_file():
        print(f"no such archive: {archive}")
        return 2
    for node in load(args.dir, archive):
        print(f"loaded {archive.name} into {node}")
    return 0


def add_mesh_parser(sub: Any, wrap: Callable[[Command], Command] = lambda fn: fn) -> None:
    """Add ``mesh`` and its subcommands to the ``mcs`` subparsers ``sub``; ``wrap`` turns
    each command into what runs (``mcs.commands.cli`` turns mesh errors into one line)."""
    mesh = sub.add_parser("mesh", help="a local clusterset: real control planes, kwok nodes")
    msub = mesh.add_subparsers(dest="mesh_command", required=True)
    for name, fn, text in [
        ("up", _mesh_up, "start etcd and N member clusters"),
        ("down", _mesh_down, "stop the mesh and remove its state"),
        ("status", _mesh_status, "say what runs"),
        ("build", _mesh_build, "only build (or find) the binaries"),
        ("load", _mesh_load, "import an image archive into every dataplane node"),
    ]:
        p = msub.add_parser(name, help=text)
        p.set_defaults(func=wrap(fn))
        p.add_argument(
            "--dir", type=Path, default=DEFAULT_DIR, help="state directory (default .mcs-mesh)"
        )
        if name == "load":
            p.add_argument(
                "archive", type=Path, help="a docker or OCI image archive (docker save, ...)"
            )
        if name in ("up", "build"):
            p.add_argument(
                "--dataplane",
                action="store_true",
                help="real nodes: containerd, runc, CNI, kubelet and kube-proxy per member",
            )
            p.add_argument("--dns", action="store_true", help="also CoreDNS for clusterset.local")
            p.add_argument(
                "--no-workloads",
                action="store_true",
                help="only kube-apiservers: no controller-manager, scheduler or kwok nodes",
            )
        if name == "up":
            p.add_argument(
                "--clusters", type=int, default=2, help="number of member clusters (default 2)"
            )
            p.add_argument(
                "--nodes",
                type=int,
                default=None,
                help="nodes per cluster (default 2 kwok nodes; 1 real node with --dataplane)",
            )
            p.add_argument(
                "--foreground", action="store_true", help="stay attached; Ctrl-C stops the mesh"
            )
