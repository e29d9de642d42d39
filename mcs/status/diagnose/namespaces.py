"""Namespace-policy surprises: a ServiceExport in a namespace the controller leaves out
of the clusterset (its deny-list, ``--exclude-namespaces``, or a namespace not opted in
under ``--namespace-opt-in`` or annotated ``clustermesh.cilium.io/global: "false"``).
Such an export is never imported anywhere; checked in every member that could be read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.core.api import GROUP
from mcs.core.namespaces import GLOBAL_NAMESPACE, NamespacePolicy
from mcs.status.diagnose.controller import Settings
from mcs.status.diagnose.findings import Finding, ok, problem
from mcs.status.diagnose.kube import get

CHECK = "namespace"


def policy(s: Settings, controller_namespace: str) -> NamespacePolicy:
    return NamespacePolicy.build(
        s.exclude_namespaces, controller_namespace, opt_in=s.namespace_opt_in
    )


def decide(
    p: NamespacePolicy,
    cluster: str,
    exports: Iterable[dict[str, Any]],
    namespaces: dict[str, dict[str, Any]],
) -> list[Finding]:
    """One problem per exported namespace that takes no part (with the exports in it),
    or one ok for the member."""
    left_out: dict[str, list[str]] = {}
    for e in exports:
        meta = e.get("metadata") or {}
        ns = str(meta.get("namespace"))
        if p.exclusion(ns, namespaces.get(ns), cluster) is not None:
            left_out.setdefault(ns, []).append(str(meta.get("name")))
    if not left_out:
        return [ok(CHECK, f"member/{cluster}", "every exported namespace takes part")]
    out = []
    for ns, names in sorted(left_out.items()):
        why = p.exclusion(ns, namespaces.get(ns), cluster)
        assert why is not None
        if why.reason == "NamespaceExcluded":
            fix = (
                f"export from another namespace, or drop {ns} from the controller's "
                "--exclude-namespaces (the built-in ones and its own namespace always stay out)"
            )
        else:
            fix = (
                f"kubectl --context {cluster} annotate namespace {ns} "
                f"{GLOBAL_NAMESPACE}=true --overwrite"
            )
        out.append(
            problem(
                CHECK,
                f"member/{cluster}",
                f"{len(names)} ServiceExport(s) in {ns} ({', '.join(sorted(names)[:3])}"
                f"{', ...' if len(names) > 3 else ''}) are never imported: {why.reason}",
                fix,
            )
        )
    return out


async def check(
    api: ApiClient, p: NamespacePolicy, cluster: str, time_limit: float
) -> list[Finding]:
    exports = await get(api, f"/apis/{GROUP}/v1beta1/serviceexports", time_limit) or {}
    items = list(exports.get("items") or [])
    wanted = {str((e.get("metadata") or {}).get("namespace")) for e in items}
    listed = await get(api, "/api/v1/namespaces", time_limit) if wanted else {}
    namespaces = {
        str((n.get("metadata") or {}).get("name")): n for n in (listed or {}).get("items") or []
    }
    return decide(p, cluster, items, namespaces)
