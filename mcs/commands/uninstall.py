"""``kubectl mcs uninstall``: remove what mcs wrote, keep what users made.

In every member cluster (every context of the kubeconfig, ``--contexts`` to name some,
``--context`` for one) it deletes the objects the controller writes, and only those
carrying ``app.kubernetes.io/managed-by: mcs-controller``:

1. the global-service EndpointSlices attached to users' Services (first: they send the
   users' traffic to remote pods),
2. the EndpointSlices of imports,
3. the ServiceImports,
4. the derived Services (``derived-*``: they hold ClusterIPs).

Every ServiceExport and every Service not written by mcs stays. The CRDs stay unless
``--delete-crds`` (then the ServiceExport and ServiceImport CRDs go, refused while any
ServiceExport, or any ServiceImport mcs did not write, exists, unless ``--force``; the
ClusterProperty CRD always stays: it holds the cluster id, shared with other MCS
implementations). A running controller writes its objects back: stop it first
(``kubectl delete -k manifests/`` keeps the CRDs); uninstall refuses while the
Deployment ``mcs-controller`` has replicas, unless ``--force``.

``--dry-run`` lists what would go and changes nothing. A second run finds nothing to do.
Planning is pure (`plan_context`); the shell lists, prints and deletes.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.api import (
    ENDPOINT_SLICES,
    FIELD_MANAGER,
    GROUP,
    MANAGED_BY,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    SERVICES,
    Obj,
    ResourceKind,
    global_slice_key,
    owned,
)
from mcs.runtime.kubeapi import new_client, request_json
from mcs.runtime.members import member_contexts

SELECTOR = f"{MANAGED_BY}={FIELD_MANAGER}"
"""The label every object mcs writes carries, and the only objects uninstall deletes."""

CRDS = (f"serviceexports.{GROUP}", f"serviceimports.{GROUP}")
"""The CRDs ``--delete-crds`` removes (the ClusterProperty CRD stays: the cluster id)."""

CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CALL_TIMEOUT = 15.0
PAGE = 500


@dataclass(frozen=True, slots=True)
class Deletion:
    """One object to delete: its kind (plural, as kubectl names it), namespace and name."""

    kind: ResourceKind
    namespace: str
    name: str
    what: str

    def path(self) -> str:
        if not self.namespace:
            return f"{CRD_PATH}/{self.name}"
        return f"{self.kind.path(self.namespace)}/{self.name}"

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind.name} {where}{self.name} ({self.what})"


CRD_KIND = ResourceKind("apiextensions.k8s.io", "v1", "customresourcedefinitions", False)


@dataclass(frozen=True, slots=True)
class Listed:
    """What one cluster holds (lists filtered by our label, and every export)."""

    imports: Sequence[Obj] = ()
    """ServiceImports (every one: those not ours block --delete-crds)."""
    services: Sequence[Obj] = ()
    """Services carrying our label."""
    slices: Sequence[Obj] = ()
    """EndpointSlices carrying our label."""
    exports: Sequence[Obj] = ()
    crds: Sequence[str] = ()
    """Which of `CRDS` exist."""


@dataclass(frozen=True, slots=True)
class ContextPlan:
    """What uninstall does in one cluster, in order, and what it keeps."""

    deletions: tuple[Deletion, ...]
    kept_exports: int
    kept_imports: int
    refused: str | None = None
    """Why the CRDs are not deleted although asked (the rest is done)."""
    notes: tuple[str, ...] = field(default=())


def _meta(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def plan_context(listed: Listed, *, delete_crds: bool, force: bool) -> ContextPlan:
    """The ordered deletions for one cluster (pure). Only objects with our managed-by
    label are ever planned, whatever the lists hold; ServiceExports never are."""
    global_slices = [s for s in listed.slices if owned(s) and global_slice_key(s) is not None]
    import_slices = [s for s in listed.slices if owned(s) and global_slice_key(s) is None]
    ours_imports = [i for i in listed.imports if owned(i)]
    others = [i for i in listed.imports if not owned(i)]
    derived = [s for s in listed.services if owned(s)]
    deletions: list[Deletion] = []
    for objs, kind, what in (
        (global_slices, ENDPOINT_SLICES, "remote backends of a global Service"),
        (import_slices, ENDPOINT_SLICES, "endpoints of an import"),
        (ours_imports, SERVICE_IMPORTS, "import"),
        (derived, SERVICES, "derived Service"),
    ):
        deletions += [Deletion(kind, *_meta(o), what) for o in sorted(objs, key=_meta)]
    refused = None
    if delete_crds and listed.crds:
        blockers = []
        if listed.exports:
            blockers.append(f"{len(listed.exports)} ServiceExport(s) exist (users' objects)")
        if others:
            blockers.append(f"{len(others)} ServiceImport(s) not written by mcs exist")
        if blockers and not force:
            refused = (
                f"CRDs kept: {' and '.join(blockers)}; deleting the CRDs would delete them "
                "too. Delete those first, or pass --force"
            )
        else:
            deletions += [Deletion(CRD_KIND, "", name, "CRD") for name in sorted(listed.crds)]
    return ContextPlan(
        tuple(deletions),
        kept_exports=0 if delete_crds and refused is None else len(listed.exports),
        kept_imports=len(others) if refused is not None or not delete_crds else 0,
        refused=refused,
    )


# ------------------------------------------------------------------------ the shell


async def _call(api: ApiClient, method: str, path: str, **kw: Any) -> dict[str, Any]:
    async with asyncio.timeout(CALL_TIMEOUT + 5):
        return await request_json(api, method, path, time_limit=CALL_TIMEOUT, **kw)


async def _list(
    api: ApiClient, kind: ResourceKind, namespace: str | None, selector: str | None
) -> list[Obj]:
    """Every object of ``kind`` (page by page); [] when the API has no such resource."""
    out: list[Obj] = []
    query: dict[str, str] = {"limit": str(PAGE)}
    if selector:
        query["labelSelector"] = selector
    while True:
        try:
            page = await _call(api, "GET", kind.path(namespace), query=query)
        except ApiException as e:
            if e.status == 404:  # the CRD is not installed
                return []
            raise
        out += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return out
        query["continue"] = token


async def list_cluster(api: ApiClient, namespace: str | None) -> Listed:
    crds = []
    for name in CRDS:
        try:
            await _call(api, "GET", f"{CRD_PATH}/{name}")
            crds.append(name)
        except ApiException as e:
            if e.status != 404:
                raise
    return Listed(
        imports=await _list(api, SERVICE_IMPORTS, namespace, None),
        services=await _list(api, SERVICES, namespace, SELECTOR),
        slices=await _list(api, ENDPOINT_SLICES, namespace, SELECTOR),
        exports=await _list(api, SERVICE_EXPORTS, namespace, None),
        crds=crds,
    )


async def controller_running(api: ApiClient, namespace: str) -> bool:
    """True while Deployment ``mcs-controller`` in ``namespace`` asks for replicas."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/mcs-controller"
    try:
        deploy = await _call(api, "GET", path)
    except ApiException as e:
        if e.status in (403, 404):
            return False
        raise
    return int((deploy.get("spec") or {}).get("replicas", 1) or 0) > 0


async def delete(api: ApiClient, d: Deletion) -> bool:
    """Delete one object; False when it was already gone (a second run is a no-op)."""
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    try:
        await _call(api, "DELETE", d.path(), body=body)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def add_uninstall_parser(sub: Any, flags: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "uninstall",
        parents=[flags],
        help="remove what mcs wrote (imports, derived Services, slices); keep users' exports",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--contexts",
        default="",
        help="comma-separated member contexts (default: every context of the kubeconfig; "
        "--context: that one only)",
    )
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    p.add_argument(
        "--delete-crds",
        action="store_true",
        help="also delete the ServiceExport and ServiceImport CRDs (kept by default)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="delete the CRDs although ServiceExports exist; go on while the controller runs",
    )
    p.add_argument(
        "--controller-namespace",
        default="mcs-system",
        help="where the Deployment mcs-controller runs (default mcs-system)",
    )


def _lines(context: str, plan: ContextPlan, dry_run: bool, done: Iterable[bool]) -> list[str]:
    out = []
    verb = "would delete" if dry_run else "deleted"
    for d, deleted in zip(plan.deletions, done, strict=True):
        out.append(f"{context}: {verb if deleted else 'already gone'} {d}")
    if not plan.deletions:
        out.append(f"{context}: nothing of mcs left")
    if plan.refused:
        out.append(f"{context}: {plan.refused}")
    kept = f"{context}: kept {plan.kept_exports} ServiceExport(s) and every user Service"
    if plan.kept_imports:
        kept += f", {plan.kept_imports} ServiceImport(s) not written by mcs"
    out.append(kept)
    return out


async def uninstall(args: argparse.Namespace) -> int:
    """Uninstall in each chosen context, one after another; 1 when any was refused."""
    contexts = (
        member_contexts(args.kubeconfig, args.context)
        if args.context
        else member_contexts(args.kubeconfig, args.contexts)
    )
    code = 0
    for context in contexts:
        api = await new_client(args.kubeconfig, context)
        try:
            if not args.force and await controller_running(api, args.controller_namespace):
                print(
                    f"{context}: Deployment {args.controller_namespace}/mcs-controller is "
                    "running and would write everything back: delete it first "
                    "(kubectl delete -k manifests/ keeps the CRDs and exports), or --force"
                )
                code = 1
                continue
            listed = await list_cluster(api, args.namespace)
            plan = plan_context(listed, delete_crds=args.delete_crds, force=args.force)
            if args.dry_run:
                done = [True] * len(plan.deletions)
            else:
                done = [await delete(api, d) for d in plan.deletions]
            for line in _lines(context, plan, args.dry_run, done):
                print(line)
            if plan.refused:
                code = 1
        finally:
            await api.close()
    return code


def counts(plan: ContextPlan) -> Mapping[str, int]:
    """How many deletions of each kind (for tests and summaries)."""
    out: dict[str, int] = {}
    for d in plan.deletions:
        out[d.what] = out.get(d.what, 0) + 1
    return out
