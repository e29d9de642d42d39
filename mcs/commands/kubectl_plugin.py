"""``kubectl mcs``: the Multi-Cluster Services API from kubectl (a kubectl plugin).

kubectl runs any ``kubectl-<name>`` on PATH for ``kubectl <name> ...`` and passes it
every argument after the name, so this command reads kubectl's flags itself:
``--kubeconfig`` (default ``$KUBECONFIG``, which may list files as ``a:b``, else
``~/.kube/config``), ``--context`` (default: the kubeconfig's current context),
``--cluster``, ``--user``, ``--as``, ``--as-group``, ``--request-timeout`` (``5s``, ``1m``;
bare numbers are seconds), ``-n/--namespace`` (default: the context's namespace, else
``default``), ``-A/--all-namespaces`` and ``-o/--output`` (table, wide, json, yaml;
``text`` is a deprecated name of table). They may come before or after the subcommand.

* ``status``: the clusterset, as ``mcs status``: the members the controller is
  configured with (found through ``--context``, else every context), every context
  only with ``--all-contexts`` or when no controller is found; all namespaces unless
  ``-n``.
* ``export SVC``: create the ServiceExport of Service SVC, wait (``--timeout``)
  until the controller has set its conditions, and print them.
* ``unexport SVC``: delete the ServiceExport.
* ``explain SVC``: why this cluster's export of SVC is in conflict or invalid: the
  winner, each conflicting property with both values, and what to change. The other
  exports are read from the clusterset's members, as ``status`` finds them.
* ``join CTX1 CTX2 ...``: join clusters into a clusterset (``mcs/commands/join.py``).
* ``diagnose``: check the installation and each member as the controller sees it
  (docs/diagnose.md; exit 0 ok, 1 problems, 2 not checked).
* ``uninstall``: delete what mcs wrote in every member, keep users' exports and
  Services (``mcs.commands.uninstall``).

Exit codes: 0; 1 when the request failed (not found, no conditions in time, API
error); 2 when the configuration cannot work (kubeconfig, context, flags).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from mcs.commands import join
from mcs.commands.uninstall import add_uninstall_parser, uninstall
from mcs.commands.version import version_text
from mcs.core.api import API_VERSION, GROUP, VERSION, Obj
from mcs.core.durations import arg as duration_arg
from mcs.core.explain import Explanation, explain
from mcs.runtime.kubeapi import request_json
from mcs.runtime.members import ConfigError, parse_cluster_ids
from mcs.status.cli import add_status_parser, output_format, use_color
from mcs.status.collect import DEFAULT_TIMEOUT
from mcs.status.controllers import CONTROLLER_NAMESPACE
from mcs.status.diagnose.cli import add_diagnose_parser
from mcs.status.diagnose.cli import run as diagnose
from mcs.status.discover import Options, snapshot
from mcs.status.kubeconfig import ClientFlags, Kubeconfig, add_client_flags
from mcs.status.render import write

PROG = "kubectl mcs"
RESOURCE = f"serviceexports.{GROUP}"
# kubectl's flags, accepted before or after the subcommand, and their defaults.
_KUBECTL_DEFAULTS: dict[str, Any] = {
    "kubeconfig": os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config"),
    "context": None,
    "namespace": None,
    "all_namespaces": False,
    "output": "table",
    "cluster": None,
    "user": None,
    "as_user": None,
    "as_groups": [],
    "request_timeout": None,
}


class Failed(Exception):
    """The request failed; the message is the one line to print."""


# --------------------------------------------------------------------------- flags


def _kubectl_flags() -> argparse.ArgumentParser:
    """kubectl's flags as a parent parser whose values are set only when given, so that
    they can stand before the subcommand or after it (`main` fills in the defaults)."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument(
        "--kubeconfig", help="path to the kubeconfig (default $KUBECONFIG, else ~/.kube/config)"
    )
    p.add_argument("--context", help="kubeconfig context (default: the current)")
    p.add_argument("-n", "--namespace", help="default: the context's")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace (status)")
    p.add_argument(
        "-o",
        "--output",
        choices=["table", "wide", "json", "yaml", "text"],
        help="default: table (text: deprecated name of table)",
    )
    add_client_flags(p, suppress=True)
    return p


def build_parser() -> argparse.ArgumentParser:
    flags = _kubectl_flags()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[flags],
    )
    parser.add_argument("--version", action="version", version=version_text(PROG))
    sub = parser.add_subparsers(dest="command", required=True)
    add_status_parser(sub)
    status = sub.choices["status"]
    # mcs status has kubectl's flags itself: set only when given, like the others.
    for action in status._actions:
        if action.dest in _KUBECTL_DEFAULTS:
            action.default = argparse.SUPPRESS

    export = sub.add_parser(
        "export", parents=[flags], help="export a Service and show the controller's verdict"
    )
    export.add_argument("service", help="the Service (and ServiceExport) name")
    export.add_argument(
        "--timeout",
        type=duration_arg,
        default=30.0,
        help="how long to wait for the controller's conditions, e.g. 30s or 2m "
        "(default 30s; 0 = do not wait)",
    )
    unexport = sub.add_parser("unexport", parents=[flags], help="delete a ServiceExport")
    unexport.add_argument("service")
    why = sub.add_parser("explain", parents=[flags], help="why an export is in conflict or invalid")
    why.add_argument("service")
    why.add_argument(
        "--contexts",
        default="",
        help="comma-separated member contexts (default: the members the controller is "
        "configured with)",
    )
    why.add_argument(
        "--all-contexts",
        action="store_true",
        help="every context of the kubeconfig is a member",
    )
    why.add_argument(
        "--controller-namespace",
        default=CONTROLLER_NAMESPACE,
        help=f"where the controller runs (default {CONTROLLER_NAMESPACE})",
    )
    why.add_argument(
        "--cluster-id",
        action="append",
        default=[],
        metavar="CONTEXT=ID",
        help="override a member's cluster id, as for mcs run; repeatable",
    )
    why.add_argument(
        "--timeout", type=duration_arg, default=None, help="deprecated: --request-timeout"
    )
    join.add_parser(sub)
    add_diagnose_parser(sub, [flags])
    add_uninstall_parser(sub, flags)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The plugin's arguments, kubectl's flags defaulted where none was given."""
    args = build_parser().parse_args(argv)
    for dest, default in _KUBECTL_DEFAULTS.items():
        if not hasattr(args, dest):
            setattr(args, dest, default)
    args.output = output_format(args.output, PROG)
    return args


# --------------------------------------------------------------------------- commands


class Target:
    """The context and namespace a command acts in, from the kubeconfig and the flags."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kc = Kubeconfig.load(ClientFlags.of(args))  # one-line errors
        current = self.kc.current
        if not current:
            raise ConfigError("the kubeconfig has no current context: pass --context")
        if current not in self.kc.contexts:
            raise ConfigError(f"the current context {current!r} is not in the kubeconfig")
        self.context: str = current
        self.namespace: str = args.namespace or self.kc.namespace(current) or "default"
        self.time_limit: float = args.request_timeout or DEFAULT_TIMEOUT

    async def client(self) -> ApiClient:
        return await self.kc.client(self.context)

    def where(self) -> str:
        return f'in namespace "{self.namespace}" (context "{self.context}")'


def _path(namespace: str, name: str | None = None) -> str:
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/serviceexports"
    return f"{base}/{name}" if name else base


async def _request(api: ApiClient, method: str, path: str, body: Any = None) -> Obj:
    async with asyncio.timeout(15):
        return await request_json(api, method, path, body=body)


async def _export(args: argparse.Namespace, t: Target) -> int:
    name = args.service
    api = await t.client()
    try:
        try:
            await _request(api, "GET", f"/api/v1/namespaces/{t.namespace}/services/{name}")
        except ApiException as e:
            if e.status != 404:
                raise
            print(
                f'warning: no Service "{name}" {t.where()}: the export will be invalid '
                "(NoService) until it exists",
                file=sys.stderr,
            )
        body = {
            "apiVersion": API_VERSION,
            "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": t.namespace},
        }
        verb = "created"
        try:
            await _request(api, "POST", _path(t.namespace), body)
        except ApiException as e:
            if e.status != 409:
                raise
            verb = "unchanged (already exported)"
        if args.output == "table":
            print(f"{RESOURCE}/{name} {verb}")
        export = await _request(api, "GET", _path(t.namespace, name))
        if args.timeout > 0:
            export = await _wait_for_conditions(api, t, name, args.timeout)
    finally:
        await api.close()
    if args.output not in ("table", "wide"):
        sys.stdout.write(_dump(export, args.output))
        return 0
    conditions = _conditions(export)
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
    for h in ("TYPE", "STATUS", "REASON", "MESSAGE"):
        table.add_column(h)
    for c in conditions:
        bad = (c.get("type") == "Conflict") == (c.get("status") == "True")
        table.add_row(
            str(c.get("type")),
            Text(str(c.get("status")), style="yellow" if bad else "green"),
            str(c.get("reason", "")),
            str(c.get("message", "")),
        )
    if conditions:
        write(table, use_color("table", False))
    if any(c.get("type") == "Conflict" and c.get("status") == "True" for c in conditions):
        print(f"the export is in conflict: kubectl mcs explain {name} -n {t.namespace}")
    return 0


async def _wait_for_conditions(api: ApiClient, t: Target, name: str, within: float) -> Obj:
    """The ServiceExport once the controller has written Valid (and, when valid,
    Conflict); `Failed` after ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                export = await _request(api, "GET", _path(t.namespace, name))
                types = {c.get("type"): c.get("status") for c in _conditions(export)}
                if types.get("Valid") == "False" or {"Valid", "Conflict"} <= types.keys():
                    return export
                await asyncio.sleep(0.5)  # polling one object: a watch would cost more here
    except TimeoutError:
        raise Failed(
            f"no controller set the conditions of serviceexport/{name} within {within:g}s: "
            "is mcs run running for this cluster? (or raise --timeout)"
        ) from None


def _conditions(obj: Obj) -> list[dict[str, Any]]:
    return [c for c in (obj.get("status") or {}).get("conditions") or [] if isinstance(c, dict)]


async def _unexport(args: argparse.Namespace, t: Target) -> int:
    api = await t.client()
    try:
        await _request(api, "DELETE", _path(t.namespace, args.service))
    except ApiException as e:
        if e.status == 404:
            raise Failed(f'serviceexport "{args.service}" not found {t.where()}') from None
        raise
    finally:
        await api.close()
    print(f'{RESOURCE} "{args.service}" deleted')
    return 0


async def _explain(args: argparse.Namespace, t: Target) -> int:
    contexts = [c for c in args.contexts.split(",") if c]
    for c in contexts:
        if c not in t.kc.contexts:
            raise ConfigError(f"context {c!r} is not in the kubeconfig: change --contexts")
    limit = args.timeout or t.time_limit
    opts = Options(
        contexts=contexts,
        all_contexts=args.all_contexts,
        controller_namespace=args.controller_namespace,
        namespace=t.namespace,
        cluster_ids=parse_cluster_ids(args.cluster_id),
        time_limit=limit,
    )
    async with asyncio.timeout(2 * limit + 1):
        snap = await snapshot(t.kc, opts)
    members = {m.context for m in snap.members if m.context}
    if t.context not in members:
        raise ConfigError(
            f"context {t.context!r} is not a member of the clusterset "
            f"(members: {', '.join(sorted(members)) or 'none'}): change --context, or "
            "--all-contexts to count every context of the kubeconfig"
        )
    this = next(m for m in snap.members if m.context == t.context)
    if not this.reachable:
        raise Failed(f'cannot read context "{t.context}": {this.error}')
    members_ = [
        (m.cluster_id, _named(m.exports, args.service), _named(m.services, args.service))
        for m in snap.members
        if m.reachable
    ]
    verdict = explain(t.namespace, args.service, this.cluster_id, members_)
    unread = {m.context or m.cluster_id: m.error or "" for m in snap.members if not m.reachable}
    if args.output not in ("table", "wide"):
        data = {**verdict.model_dump(mode="json"), "unreadable": unread}
        sys.stdout.write(_dump(data, args.output))
    else:
        _print_explanation(verdict, t, unread)
    return 0


def _named(objs: Sequence[Obj], name: str) -> Obj | None:
    return next((o for o in objs if (o.get("metadata") or {}).get("name") == name), None)


def _print_explanation(e: Explanation, t: Target, unread: dict[str, str]) -> None:
    parts: list[RenderableType] = []
    subject = f"{e.namespace}/{e.name} in cluster {e.cluster} (context {t.context})"
    if e.state == "not-exported":
        more = f"; it is exported by {', '.join(e.clusters)}" if e.clusters else ""
        parts.append(Text(f"{subject}: not exported here{more}"))
    elif e.state == "invalid":
        parts.append(Text(f"{subject}: invalid ({e.reason})", style="red"))
        parts.append(Text(f"what to change: {e.message}"))
    else:
        winner = "this cluster" if e.winner == e.cluster else f"cluster {e.winner}"
        parts.append(
            Text(
                f"{subject}: {e.state}; winner: {winner}, the oldest export "
                f"(exported {e.winner_created}; this one {e.created})"
            )
        )
        parts.append(Text(f"exporting clusters, oldest first: {', '.join(e.clusters)}"))
        if e.conflicts:
            table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 2, 0, 0))
            for h in ("FIELD", "CLUSTER", "ITS VALUE", f"WINNER ({e.winner})", "REASON"):
                table.add_column(h)
            for c in e.conflicts:
                table.add_row(
                    c.field, c.cluster, Text(c.value, style="yellow"), c.winner_value, c.reason
                )
            parts += [table, Text("what to change:")]
            parts += [Text(f"  - {c.change}") for c in e.conflicts]
            if e.winner != e.cluster:
                parts.append(
                    Text(
                        f"  (or make this export the oldest: the ServiceExport in {e.winner} "
                        "wins while it exists)"
                    )
                )
        elif e.winner != e.cluster:
            parts.append(Text("no conflict: this export agrees with the winner"))
    for context, error in unread.items():
        parts.append(Text(f"note: context {context} could not be read ({error})", style="red"))
    write(Group(*parts), use_color("table", False))


def _dump(data: Any, output: str) -> str:
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


async def _diagnose(args: argparse.Namespace, t: Target) -> int:
    return await diagnose(args, t.client, t.context)


_COMMANDS = {"export": _export, "unexport": _unexport, "explain": _explain, "diagnose": _diagnose}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.command == "status":
            return int(args.func(args))
        if args.command == "join":
            return join.main(args)
        if args.command == "uninstall":
            return asyncio.run(uninstall(args))
        target = Target(args)
        return asyncio.run(_COMMANDS[args.command](args, target))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Failed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ApiException as e:
        print(f"error: HTTP {e.status}: {e.reason}", file=sys.stderr)
        return 1
    except (OSError, TimeoutError) as e:
        print(f"error: cannot reach the API server: {e or 'timed out'}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
