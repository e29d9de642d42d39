"""The ``mcs status`` command: flags, one report or a live one (``--watch``), exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from rich.live import Live

from mcs.core.durations import arg as duration_arg
from mcs.runtime.members import ConfigError, add_member_arguments, parse_cluster_ids
from mcs.status.collect import DEFAULT_TIMEOUT, Snapshot
from mcs.status.controllers import CONTROLLER_NAMESPACE
from mcs.status.discover import Options, snapshot
from mcs.status.kubeconfig import ClientFlags, Kubeconfig, add_client_flags
from mcs.status.render import OUTPUTS, console, render, renderable, write
from mcs.status.report import exit_code, summarize


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mcs status``; its ``func`` returns the exit code."""
    p = sub.add_parser(
        "status",
        help="report the clusterset: members, controllers, exports, imports, conflicts",
        description="Find the controllers (their Deployment in --controller-namespace), "
        "read the members they are configured with (their Secret), and report each "
        "member's reachability from here and from the controllers, the exported "
        "services, their imports and conflicts. Reads only.",
    )
    p.set_defaults(func=_status)
    add_member_arguments(p)
    p.add_argument(
        "--context",
        default=None,
        help="find the controller through this context only (default: every context)",
    )
    p.add_argument(
        "--all-contexts",
        action="store_true",
        help="every context of the kubeconfig is a member, whatever the controllers say",
    )
    p.add_argument(
        "--controller-namespace",
        default=CONTROLLER_NAMESPACE,
        help=f"where the controller runs (default {CONTROLLER_NAMESPACE})",
    )
    add_client_flags(p)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="only this namespace (default: all namespaces)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="every namespace (the default)",
    )
    p.add_argument(
        "--controller",
        action="append",
        default=[],
        metavar="URL",
        help="a controller's health address, e.g. http://127.0.0.1:8081, to report "
        "whether its /readyz is ready; repeatable",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=[*OUTPUTS, "text"],
        default="table",
        help="table (80 columns, nothing cut), wide (every column), json or yaml; "
        "text is a deprecated name of table",
    )
    p.add_argument(
        "--fail-on",
        choices=["unreachable", "conflict", "any", "never"],
        default="any",
        help="exit 1 when a member is unreachable or misconfigured (unreachable), a "
        "service is in conflict (conflict), either (any, the default), or never",
    )
    p.add_argument(
        "--no-color",
        action="store_true",
        help="no colours in text output (also: NO_COLOR set, or output not a terminal)",
    )
    p.add_argument(
        "-w",
        "--watch",
        action="store_true",
        help="redraw the text report every --interval seconds until Ctrl-C",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between two reads with --watch (default 2)",
    )
    p.add_argument(
        "--timeout",
        type=duration_arg,
        default=None,
        help="deprecated: --request-timeout",
    )


def output_format(value: str, prog: str = "mcs status") -> str:
    """kubectl's output format for ``value``; ``text`` is the deprecated name of ``table``
    (a warning on stderr)."""
    if value == "text":
        print(f"{prog}: warning: -o text is deprecated, use -o table (or wide)", file=sys.stderr)
        return "table"
    return value


def _status(args: argparse.Namespace) -> int:
    args.output = output_format(args.output)
    try:
        kc = Kubeconfig.load(ClientFlags.of(args))
        cluster_ids = parse_cluster_ids(args.cluster_id)
        contexts = [c for c in args.contexts.split(",") if c]
        for c in contexts:
            if c not in kc.contexts:
                raise ConfigError(
                    f"context {c!r} is not in the kubeconfig (has {', '.join(kc.contexts)}): "
                    "change --contexts"
                )
    except ConfigError as e:
        print(f"mcs status: {e}", file=sys.stderr)
        return 2
    if args.watch and args.output not in ("table", "wide"):
        print("mcs status: --watch draws tables only; drop --output or --watch", file=sys.stderr)
        return 2
    wide = args.output == "wide"
    color = use_color(args.output, args.no_color)
    opts = Options(
        contexts=contexts,
        all_contexts=args.all_contexts,
        controller_namespace=args.controller_namespace,
        namespace=None if args.all_namespaces else args.namespace,
        controllers=args.controller,
        cluster_ids=cluster_ids,
        time_limit=args.request_timeout or args.timeout or DEFAULT_TIMEOUT,
    )
    read = _reader(kc, opts)
    if args.watch:
        asyncio.run(_watch(read, args.interval, color, wide))
    report = summarize(asyncio.run(read()))
    if args.output in ("table", "wide"):
        write(renderable(report, wide=wide), color)
    else:
        sys.stdout.write(render(report, args.output, color))
    return exit_code(report, args.fail_on)


def use_color(output: str, no_color: bool) -> bool:
    """Colour only for tables on a terminal, unless ``--no-color`` or ``NO_COLOR``
    (https://no-color.org: set to anything non-empty)."""
    return (
        output in ("table", "wide", "text")
        and not no_color
        and not os.environ.get("NO_COLOR")
        and sys.stdout.isatty()
    )


Reader = Callable[[], Coroutine[Any, Any, Snapshot]]


def _reader(kc: Kubeconfig, opts: Options) -> Reader:
    async def read() -> Snapshot:
        # Two phases (find the controllers, read the members), each within the limit.
        async with asyncio.timeout(2 * opts.time_limit + 1):
            return await snapshot(kc, opts)

    return read


async def _watch(read: Reader, interval: float, color: bool, wide: bool) -> None:
    """Redraw the report in place every ``interval`` seconds; only Ctrl-C (exit 130)
    or SIGTERM ends it."""
    report = summarize(await read())
    with Live(
        renderable(report, wide=wide), console=console(color=color), auto_refresh=False
    ) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(renderable(summarize(await read()), wide=wide), refresh=True)
