"""The ``mcs status`` command: flags, one report or a live one (``--watch``), exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from rich.live import Live

from mcs.runtime.members import (
    ConfigError,
    add_member_arguments,
    member_contexts,
    parse_cluster_ids,
)
from mcs.status.collect import DEFAULT_TIMEOUT, Snapshot, collect
from mcs.status.render import console, render, renderable, write
from mcs.status.report import exit_code, summarize


def add_status_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``mcs status``; its ``func`` returns the exit code."""
    p = sub.add_parser(
        "status",
        help="report the clusterset: members, controllers, exports, imports, conflicts",
        description="Read every member cluster and report its reachability, the "
        "exported services, their imports and conflicts. Reads only.",
    )
    p.set_defaults(func=_status)
    add_member_arguments(p)
    p.add_argument(
        "-n",
        "--namespace",
        default=None,
        help="only this namespace (default: all namespaces)",
    )
    p.add_argument(
        "--controller",
        action="append",
        default=[],
        metavar="URL",
        help="a controller's health address, e.g. http://127.0.0.1:8081, to report "
        "whether its /readyz is ready; repeatable",
    )
    p.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text")
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
        type=float,
        default=DEFAULT_TIMEOUT,
        help=f"seconds allowed to read each member and controller (default {DEFAULT_TIMEOUT:g})",
    )


def _status(args: argparse.Namespace) -> int:
    try:
        contexts = member_contexts(args.kubeconfig, args.contexts)
        cluster_ids = parse_cluster_ids(args.cluster_id)
    except ConfigError as e:
        print(f"mcs status: {e}", file=sys.stderr)
        return 2
    if args.watch and args.output != "text":
        print("mcs status: --watch draws text only; drop --output or --watch", file=sys.stderr)
        return 2
    color = use_color(args.output, args.no_color)
    read = _reader(args, contexts, cluster_ids)
    if args.watch:
        asyncio.run(_watch(read, args.interval, color))
    report = summarize(asyncio.run(read()))
    if args.output == "text":
        write(renderable(report), color)
    else:
        sys.stdout.write(render(report, args.output, color))
    return exit_code(report, args.fail_on)


def use_color(output: str, no_color: bool) -> bool:
    """Colour only for text on a terminal, unless ``--no-color`` or ``NO_COLOR``
    (https://no-color.org: set to anything non-empty)."""
    return (
        output == "text" and not no_color and not os.environ.get("NO_COLOR") and sys.stdout.isatty()
    )


Reader = Callable[[], Coroutine[Any, Any, Snapshot]]


def _reader(
    args: argparse.Namespace, contexts: Sequence[str], cluster_ids: dict[str, str]
) -> Reader:
    async def read() -> Snapshot:
        return await collect(
            args.kubeconfig,
            contexts,
            cluster_ids,
            namespace=args.namespace,
            controllers=args.controller,
            time_limit=args.timeout,
        )

    return read


async def _watch(read: Reader, interval: float, color: bool) -> None:
    """Redraw the report in place every ``interval`` seconds; only Ctrl-C (exit 130)
    or SIGTERM ends it."""
    report = summarize(await read())
    with Live(renderable(report), console=console(color=color), auto_refresh=False) as live:
        while True:
            await asyncio.sleep(interval)
            live.update(renderable(summarize(await read())), refresh=True)
