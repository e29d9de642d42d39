"""The ``mcs`` command line: ``mcs mesh ...`` (a local clusterset), ``mcs run`` (the controller)."""

from __future__ import annotations

import argparse
import asyncio
import errno
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from mcs.run import add_run_parser
from mcs.status import add_status_parser

if TYPE_CHECKING:
    from mcs.mesh.mesh import Mesh

# The default of ``--dir``; mcs.mesh.mesh.DEFAULT_DIR, spelled here so that the controller
# (and its image, without the ``mesh`` extra) need not import the mesh tooling.
DEFAULT_DIR = Path(".mcs-mesh")


class MeshToolingMissing(RuntimeError):
    """``mcs mesh`` needs the ``mesh`` extra (cryptography, dnspython)."""


def _mesh(folder: Path) -> Mesh:
    from mcs.mesh.mesh import Mesh

    return Mesh(folder)


def _mesh_command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``fn`` with the mesh tooling imported first (a one-line error without the extra)
    and its errors, whose messages say what to do, as one line."""

    def command(args: argparse.Namespace) -> int:
        try:
            from mcs.mesh.binaries import BinariesUnavailable
            from mcs.mesh.mesh import MeshError
        except ImportError as e:
            raise MeshToolingMissing(
                f"`mcs mesh` needs the mesh extra ({e.name} is missing): pip install 'mcs[mesh]'"
            ) from None
        try:
            return fn(args)
        except (MeshError, BinariesUnavailable) as e:
            print(f"mcs: {e}", file=sys.stderr)
            return 1

    return command


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _mesh_up(args: argparse.Namespace) -> int:
    mesh = _mesh(args.dir)
    started = time.monotonic()
    detach = not args.foreground
    state = asyncio.run(mesh.up(args.clusters, detach=detach, dns=args.dns))
    took = time.monotonic() - started
    names = ", ".join(m.name for m in state.members)
    print(f"mesh up in {took:.1f}s: etcd + {len(state.members)} kube-apiservers ({names})")
    for m in state.members:
        dns = f", DNS 127.0.0.1:{m.dns_port}" if m.dns_port else ""
        print(f"  {m.name}: {m.server} (services {m.service_cidr}{dns})")
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
    rows = [("etcd", state.etcd.pid, f"127.0.0.1:{state.etcd.port}")]
    for m in state.members:
        rows.append((m.name, m.pid, m.server))
        if m.dns_pid:
            rows.append((f"{m.name}-dns", m.dns_pid, f"127.0.0.1:{m.dns_port} (udp/tcp)"))
    for name, pid, where in rows:
        up = pid in alive
        ok &= up
        print(f"{name:10} {'running' if up else 'STOPPED':8} pid {pid:<8} {where}")
    print(f"kubeconfig: {state.kubeconfig}")
    return 0 if ok else 1


def _mesh_build(args: argparse.Namespace) -> int:
    from mcs.mesh import binaries

    bins = binaries.ensure(coredns=args.dns)
    print(f"kube-apiserver: {bins.kube_apiserver}\netcd: {bins.etcd}")
    if bins.coredns:
        print(f"coredns: {bins.coredns}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcs", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    mesh = sub.add_parser("mesh", help="a local clusterset of real kube-apiservers")
    msub = mesh.add_subparsers(dest="mesh_command", required=True)
    for name, fn, text in [
        ("up", _mesh_up, "start etcd and N kube-apiservers"),
        ("down", _mesh_down, "stop the mesh and remove its state"),
        ("status", _mesh_status, "say what runs"),
        ("build", _mesh_build, "only build (or find) the binaries"),
    ]:
        p = msub.add_parser(name, help=text)
        p.set_defaults(func=_mesh_command(fn))
        p.add_argument(
            "--dir", type=Path, default=DEFAULT_DIR, help="state directory (default .mcs-mesh)"
        )
        if name in ("up", "build"):
            p.add_argument("--dns", action="store_true", help="also CoreDNS for clusterset.local")
        if name == "up":
            p.add_argument(
                "--clusters", type=int, default=2, help="number of member clusters (default 2)"
            )
            p.add_argument(
                "--foreground", action="store_true", help="stay attached; Ctrl-C stops the mesh"
            )

    add_run_parser(sub)
    add_status_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _raise_exit)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MeshToolingMissing as e:
        print(f"mcs: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
        print(f"mcs {args.command}: {address_in_use(e, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def address_in_use(e: OSError, args: argparse.Namespace) -> str:
    """One line for a listener whose port is taken, naming the flag that sets it."""
    flags = [f for f in ("health_addr", "metrics_addr") if getattr(args, f, None)]
    port = next((p for p in _ports(str(e)) if p), None)
    named = [f for f in flags if port is not None and str(getattr(args, f)).endswith(f":{port}")]
    flag = "--" + (named or flags or ["health_addr"])[0].replace("_", "-")
    where = f"port {port}" if port is not None else "an address"
    return (
        f"cannot listen on {where}: it is already in use (another mcs run?); "
        f"choose a free one with {flag} HOST:PORT, or {flag} 0 to turn that listener off"
    )


def _ports(text: str) -> list[int]:
    """The ports in an ``OSError`` of a bind: ``... on address ('0.0.0.0', 8081): ...``."""
    return [int(p) for p in re.findall(r"[,:] ?(\d{1,5})\)", text)]


if __name__ == "__main__":
    sys.exit(main())
