"""``kubectl mcs diagnose``'s flags and entry point (registered by
``mcs.commands.kubectl_plugin``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.status.diagnose import coredns
from mcs.status.diagnose.findings import EXIT_UNCHECKED, exit_code, render
from mcs.status.diagnose.kube import describe_error
from mcs.status.diagnose.runner import AREAS, EXPECTED_ERRORS, Options, diagnose

#: each request's limit when ``--request-timeout`` (kubectl's flag) is not given
DEFAULT_REQUEST_TIMEOUT = 10.0


def add_diagnose_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diagnose",
        parents=parents,
        help="check the installation and every member as the controller sees it",
        description="Checks the CRDs, the admission policy, the controller's Deployment, "
        "Secret and Lease, each member of the controller's Secret (with its credentials "
        "and their expiry), CoreDNS's multicluster configuration and RBAC, and exports "
        "the namespace policy leaves out. One line per finding, with its fix. Exit code: "
        "0 all ok, 1 problems found, 2 some checks could not be made. Run it against the "
        "cluster where the controller runs (per-cluster mode: once per member).",
    )
    p.add_argument(
        "--controller-namespace",
        default="mcs-system",
        help="where the controller runs (default mcs-system)",
    )
    p.add_argument("--coredns-namespace", default="kube-system", help="default kube-system")
    p.add_argument(
        "--coredns-configmap", default="coredns", help="holding the Corefile (default coredns)"
    )
    p.add_argument(
        "--coredns-service-account",
        default=None,
        help="CoreDNS's ServiceAccount (default: the coredns Deployment's, else coredns)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=AREAS,
        help="an area not to check; repeatable",
    )
    p.add_argument(
        "--problems-only", action="store_true", help="text output: leave out the ok lines"
    )


async def run(
    args: argparse.Namespace, connect: Callable[[], Awaitable[ApiClient]], context: str
) -> int:
    """Diagnose through ``context``; ``connect`` makes its client (the plugin's kubeconfig
    and kubectl flags: lists, ``--as``, ``--cluster``, ``--user``)."""
    opts = Options(
        controller_namespace=args.controller_namespace,
        timeout=getattr(args, "request_timeout", None) or DEFAULT_REQUEST_TIMEOUT,
        coredns=coredns.Where(
            namespace=args.coredns_namespace,
            configmap=args.coredns_configmap,
            service_account=args.coredns_service_account or "coredns",
        ),
        coredns_account_given=args.coredns_service_account is not None,
        skip=frozenset(args.skip),
    )
    try:
        api = await connect()
    except Exception as e:  # an unreadable kubeconfig or context
        print(f"error: cannot load context {context!r}: {describe_error(e)}", file=sys.stderr)
        return EXIT_UNCHECKED
    try:
        findings = await diagnose(api, context, opts)
    except EXPECTED_ERRORS as e:
        print(f"error: cannot check context {context!r}: {describe_error(e)}", file=sys.stderr)
        return EXIT_UNCHECKED
    finally:
        await api.close()
    sys.stdout.write(render(findings, args.output, only_problems=args.problems_only))
    return exit_code(findings)
