"""Run every check against the cluster of the user's context (where the controller
runs) and the members of the controller's Secret. A check that fails unexpectedly
becomes an ``unknown`` finding: one broken area never hides the others."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.namespaces import NamespacePolicy
from mcs.status.diagnose import admission, controller, coredns, crds, credentials, namespaces, reach
from mcs.status.diagnose import members as membership
from mcs.status.diagnose.findings import Finding, problem, unknown
from mcs.status.diagnose.kube import describe_error

EXPECTED_ERRORS = (ApiException, OSError, aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class Options:
    controller_namespace: str = "mcs-system"
    timeout: float = 10.0  # seconds per request
    coredns: coredns.Where = field(default_factory=coredns.Where)
    coredns_account_given: bool = False
    skip: frozenset[str] = frozenset()  # areas not to check


AREAS = ("crds", "admission", "controller", "members", "coredns", "namespaces")


async def _guard(area: str, run: Callable[[], Awaitable[list[Finding]]]) -> list[Finding]:
    try:
        return await run()
    except EXPECTED_ERRORS as e:
        return [unknown(area, "-", f"could not check: {describe_error(e)}")]


async def diagnose(
    api: ApiClient, context: str, opts: Options, now: datetime | None = None
) -> list[Finding]:
    """Every finding, in the order of `AREAS`. ``api``: the user's connection to the
    cluster of the controller (context ``context``)."""
    now = now or datetime.now(UTC)
    t = opts.timeout
    out: list[Finding] = []
    if "crds" not in opts.skip:
        out += await _guard("crd", lambda: crds.check(api, t))
    if "admission" not in opts.skip:
        out += await _guard("admission", lambda: admission.check(api, t))
    settings: controller.Settings | None = None
    secret = None
    try:
        found, settings, secret = await controller.check(api, opts.controller_namespace, t, now)
        if "controller" not in opts.skip:
            out += found
    except EXPECTED_ERRORS as e:
        out.append(unknown("controller", "-", f"could not check: {describe_error(e)}"))
    reached: list[reach.Reached] = []
    try:
        if "members" not in opts.skip or "namespaces" not in opts.skip:
            reached, found = await _members(api, secret, opts, now)
            if "members" not in opts.skip:
                out += found
        if "coredns" not in opts.skip:
            out += await _guard(
                "coredns",
                lambda: coredns.check(
                    api, opts.coredns, t, account_given=opts.coredns_account_given
                ),
            )
        if "namespaces" not in opts.skip:
            p = namespaces.policy(settings or controller.Settings(), opts.controller_namespace)
            targets = [
                (r.member.context, r.api) for r in reached if r.finding.status == "ok" and r.api
            ]
            if not reached:  # no Secret to read: the user's own cluster at least
                targets = [(context, api)]
            for name, member_api in targets:
                out += await _guard("namespace", _bind(namespaces.check, member_api, p, name, t))
    finally:
        await reach.close(reached)
    return out


def _bind(
    f: Callable[[ApiClient, NamespacePolicy, str, float], Awaitable[list[Finding]]],
    *args: Any,
) -> Callable[[], Awaitable[list[Finding]]]:
    return lambda: f(*args)


async def _members(
    api: ApiClient,
    secret: dict[str, object] | None,
    opts: Options,
    now: datetime,
) -> tuple[list[reach.Reached], list[Finding]]:
    if secret is None:
        return [], []  # reported by the controller check
    try:
        configured = membership.parse(secret)
    except membership.SecretError as e:
        return [], [
            problem(
                "member",
                f"secret/{controller.SECRET}",
                str(e),
                "fix the Secret (manifests/remote-kubeconfigs.example.yaml)",
            )
        ]
    path = configured.write()
    try:
        reached = [
            await reach.reach(configured, m, path, api, opts.timeout) for m in configured.members
        ]
        found: list[Finding] = []
        for r in reached:
            found.append(r.finding)
            found += credentials.check(r.member, now, Path(path).parent)
        return reached, found
    finally:
        path.unlink(missing_ok=True)
        path.parent.rmdir()
