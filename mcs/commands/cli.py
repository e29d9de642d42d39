"""The ``mcs`` command line: ``mcs mesh ...`` (a local clusterset), ``mcs run`` (the controller)."""

from __future__ import annotations

import argparse
import errno
import re
import signal
import sys
from collections.abc import Callable
from types import FrameType

from mcs.commands.run import add_run_parser
from mcs.commands.version import version_text
from mcs.status import add_status_parser


class MeshToolingMissing(RuntimeError):
    """``mcs mesh`` needs the ``mesh`` extra (cryptography, dnspython)."""


def _mesh_command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """``fn`` with the mesh tooling imported first (a one-line error without the extra)
    and its errors, whose messages say what to do, as one line."""

    def command(args: argparse.Namespace) -> int:
        try:
            from mcs_mesh.binaries import BinariesUnavailable
            from mcs_mesh.state import MeshError
        except ImportError as e:
            raise MeshToolingMissing(
                f"`mcs mesh` needs the mesh extra ({e.name} is missing): "
                "pip install 'mcs-controller[mesh]' (or pipx install 'mcs-controller[mesh]')"
            ) from None
        try:
            return fn(args)
        except (MeshError, BinariesUnavailable) as e:
            print(f"mcs: {e}", file=sys.stderr)
            return 1

    return command


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mcs", description=__doc__)
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True)

    try:
        from mcs_mesh.cli import add_mesh_parser
    except ImportError:  # the controller's image leaves the local clusterset out
        mesh = sub.add_parser("mesh", help="a local clusterset (not installed here)")
        mesh.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
        mesh.set_defaults(func=_mesh_command(lambda args: 0))
    else:
        add_mesh_parser(sub, _mesh_command)
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
    flags = [
        f for f in ("health_probe_bind_address", "metrics_bind_address") if getattr(args, f, None)
    ]
    port = next((p for p in _ports(str(e)) if p), None)
    named = [f for f in flags if port is not None and str(getattr(args, f)).endswith(f":{port}")]
    flag = "--" + (named or flags or ["health_probe_bind_address"])[0].replace("_", "-")
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
