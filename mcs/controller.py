"""The controller: caches of every member cluster in, minimal writes to the local ones out.

One ``Member`` per cluster of the clusterset, each with its informers
(ServiceExports, Services, Namespaces, ServiceImports). Every event is mapped to
the key ``(namespace, name)`` of the service it concerns and queued; a worker
reconciles the key by reading the caches of *all* members, planning what each
*local* member should hold (``mcs.plan``) and writing only the difference
(``mcs.writer``). Central and per-cluster deployments run this same code; they
differ only in which members are local.

Nothing is decided before every cache has listed once (``ready``). A periodic
resync re-queues every known key; a steady state makes no writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient

from mcs import cachefields, endpoints, globalsvc, plan, trust
from mcs.informer import (
    ENDPOINT_SLICES,
    NAMESPACES,
    SERVICES,
    Informer,
    Key,
    Obj,
    ResourceKind,
    key_of,
)
from mcs.leader import LeaderElector
from mcs.merge import MergeResult
from mcs.model import format_time
from mcs.namespaces import NamespacePolicy
from mcs.observability import CLUSTER_CONNECTED, ENDPOINTS_DROPPED, RESYNCS, WORKQUEUE_DEPTH
from mcs.workqueue import WorkQueue, run_workers
from mcs.writer import Writer

SERVICE_EXPORTS = ResourceKind(plan.GROUP, plan.VERSION, "serviceexports")
SERVICE_IMPORTS = ResourceKind(plan.GROUP, plan.VERSION, "serviceimports")

log = structlog.get_logger(__name__)


def _slim(obj: Obj, keep_managed_fields: bool = False) -> Obj:
    """Keep metadata, spec and status; drop managedFields unless asked (imports need them)."""
    meta = dict(obj.get("metadata") or {})
    if not keep_managed_fields:
        meta.pop("managedFields", None)
    return {"metadata": meta, "spec": obj.get("spec") or {}, "status": obj.get("status") or {}}


def _slim_with_fields(obj: Obj) -> Obj:
    return _slim(obj, keep_managed_fields=True)


@dataclass
class Member:
    """One cluster of the clusterset as the controller sees it."""

    context: str
    cluster_id: str
    api: ApiClient
    local: bool
    informers: dict[str, Informer] = field(default_factory=dict)

    @property
    def exports(self) -> Informer:
        return self.informers["exports"]

    @property
    def services(self) -> Informer:
        return self.informers["services"]

    @property
    def imports(self) -> Informer:
        return self.informers["imports"]

    @property
    def slices(self) -> Informer:
        return self.informers["slices"]

    def source_slices(self, ns: str, service: str) -> list[Obj]:
        """The EndpointSlices of Service ``ns/service`` that are not ours (the exporter's)."""
        return [
            s
            for s in self.slices.list(ns)
            if s["metadata"].get("labels", {}).get(endpoints.KUBE_SERVICE_NAME) == service
            and not endpoints.managed_by_us(s)
        ]

    def imported_slices(self, ns: str, name: str) -> list[Obj]:
        """Our EndpointSlices of the import ``ns/name``."""
        return [
            s
            for s in self.slices.list(ns)
            if endpoints.managed_by_us(s) and endpoints.slice_key(s) == (ns, name)
        ]

    def namespace_exists(self, ns: str) -> bool:
        obj = self.informers["namespaces"].get("", ns)
        return obj is not None and obj.get("status", {}).get("phase") != "Terminating"

    def view(self, ns: str, name: str) -> plan.ClusterView:
        return plan.ClusterView(
            cluster=self.cluster_id,
            namespace_exists=self.namespace_exists(ns),
            export=self.exports.get(ns, name),
            service=self.services.get(ns, name),
            service_import=self.imports.get(ns, name),
            derived=self.services.get(ns, plan.derived_name(ns, name)),
        )

    def connected(self) -> bool:
        return all(i.connected for i in self.informers.values())


class Controller:
    """Reconciles every exported service of the clusterset into the local members."""

    def __init__(
        self,
        members: list[Member],
        *,
        workers: int = 4,
        resync_period: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch_timeout: int = 300,
        endpoint_policy: trust.EndpointPolicy | None = None,
        namespace_policy: NamespacePolicy | None = None,
    ) -> None:
        ids = [m.cluster_id for m in members]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cluster ids must be unique, got {ids}")
        self.members = members
        self.queue: WorkQueue[Key] = WorkQueue()
        WORKQUEUE_DEPTH.set_function(lambda: len(self.queue))
        self.workers = workers
        self.resync_period = resync_period
        self._clock = clock
        self.endpoint_policy = endpoint_policy or trust.EndpointPolicy()
        # What mcs.trust last dropped from each (key, source cluster): reported on change.
        self._dropped: dict[tuple[Key, str], frozenset[str]] = {}
        self.namespace_policy = namespace_policy or NamespacePolicy()
        # Events already posted about global Services: (cluster, ns, name, reason) -> name.
        self._noted: dict[tuple[str, str, str, str], str] = {}
        for m in members:
            make = functools.partial(self._informer, m, watch_timeout=watch_timeout)
            m.informers = {
                "exports": make(SERVICE_EXPORTS, cachefields.export, lambda o: [key_of(o)]),
                "services": make(SERVICES, cachefields.service, self._service_keys),
                "imports": make(SERVICE_IMPORTS, _slim_with_fields, lambda o: [key_of(o)]),
                "slices": make(ENDPOINT_SLICES, endpoints.transform, self._slice_keys),
                "namespaces": make(
                    NAMESPACES, cachefields.namespace, lambda o: self.keys_in(o["metadata"]["name"])
                ),
            }
        self._writers = {m.cluster_id: Writer(m.api, m.cluster_id) for m in members if m.local}

    def _informer(
        self,
        m: Member,
        kind: ResourceKind,
        transform: Callable[[Obj], Obj],
        keys: Callable[[Obj], list[Key]],
        *,
        watch_timeout: int,
    ) -> Informer:
        """An informer of ``kind`` in ``m`` that queues the keys ``keys`` maps a change to
        (of the old and the new object: a change can move an object between keys)."""

        def on_event(_type: str, old: Obj | None, new: Obj | None) -> None:
            for obj in (old, new):
                if obj is not None:
                    for key in keys(obj):
                        self.queue.add(key)

        return Informer(
            m.api,
            cluster=m.context,
            kind=kind,
            on_event=on_event,
            transform=transform,
            watch_timeout=watch_timeout,
        )

    # ------------------------------------------------------------------ keys

    @staticmethod
    def _service_keys(svc: Obj) -> list[Key]:
        ns, name = key_of(svc)
        labels = svc.get("metadata", {}).get("labels") or {}
        if plan.owned(svc) and plan.SERVICE_NAME in labels:
            return [(ns, labels[plan.SERVICE_NAME])]
        return [(ns, name)]

    @staticmethod
    def _slice_keys(eps: Obj) -> list[Key]:
        if endpoints.managed_by_us(eps):
            key = endpoints.slice_key(eps) or globalsvc.global_slice_key(eps)
            return [key] if key else []
        service = eps["metadata"].get("labels", {}).get(endpoints.KUBE_SERVICE_NAME)
        return [(eps["metadata"]["namespace"], service)] if service else []

    def keys_in(self, namespace: str) -> list[Key]:
        return [k for k in self.all_keys() if k[0] == namespace]

    def all_keys(self) -> set[Key]:
        """Every key that may need work: exported anywhere, or imported by us anywhere."""
        keys: set[Key] = set()
        for m in self.members:
            keys.update(m.exports.keys())
            keys.update(
                key_of(o) for o in m.services.list() if globalsvc.annotations_of(o).is_global
            )
            keys.update(key_of(o) for o in m.imports.list() if plan.owned(o))
            keys.update(
                k for o in m.services.list() if plan.owned(o) for k in self._service_keys(o)
            )
            keys.update(
                k
                for o in m.slices.list()
                if endpoints.managed_by_us(o)
                for k in self._slice_keys(o)
            )
        return keys

    # ------------------------------------------------------------- lifecycle

    def ready(self) -> str | None:
        """None when ready (every cache has listed), else why not (for /readyz)."""
        waiting = [
            f"{m.context}/{n}"
            for m in self.members
            for n, i in m.informers.items()
            if not i.has_synced()
        ]
        return f"caches not synced: {', '.join(waiting)}" if waiting else None

    async def run(self, stop: asyncio.Event, elector: LeaderElector | None = None) -> None:
        """Run until ``stop`` is set; then drain the current reconciles and stop every task.

        With an ``elector``, the caches are filled at once (a standby is ready to take
        over) but nothing is reconciled before this instance holds the lease; losing
        it raises ``LeadershipLost`` (in an ``ExceptionGroup``) after stopping the workers.
        """
        for m in self.members:
            for informer in m.informers.values():
                informer.start()
        try:
            if not await _unless_stopped(self._wait_synced(), stop):
                return
            log.info(
                "caches synced",
                clusters=[m.cluster_id for m in self.members],
                local=[m.cluster_id for m in self.members if m.local],
            )
            if elector is not None:
                log.info("waiting to become leader", identity=elector.identity)
                if not await _unless_stopped(elector.acquire(), stop):
                    return
            try:
                async with asyncio.TaskGroup() as tg:
                    workers = run_workers(self.queue, self.reconcile, concurrency=self.workers)
                    tg.create_task(workers, name="workers")
                    background = [tg.create_task(self._resync_loop(), name="resync")]
                    if elector is not None:
                        background.append(tg.create_task(elector.keep(), name="lease"))
                    await stop.wait()
                    log.info("stopping: draining the work queue")
                    for task in background:
                        task.cancel()
                    self.queue.shutdown()
            finally:
                if elector is not None:
                    await elector.release()
        finally:
            for m in self.members:
                for informer in m.informers.values():
                    await informer.stop()

    async def _wait_synced(self) -> None:
        await asyncio.gather(*(i.synced.wait() for m in self.members for i in m.informers.values()))

    async def _resync_loop(self) -> None:
        while True:
            for m in self.members:
                CLUSTER_CONNECTED.labels(cluster=m.cluster_id).set(1 if m.connected() else 0)
            for key in self.all_keys():
                self.queue.add(key)
            RESYNCS.inc()
            await asyncio.sleep(self.resync_period)

    # ------------------------------------------------------------- reconcile

    async def reconcile(self, key: Key) -> None:
        ns, name = key
        views = {m.cluster_id: self._view(m, ns, name) for m in self.members}
        evaluation = plan.evaluate(list(views.values()))
        now = self._clock()
        blocked = None
        if evaluation.merged is not None:
            clashes = [
                f'ServiceImport "{ns}/{name}" in cluster "{c}" was not created by mcs-controller '
                f"(no {plan.MANAGED_BY}={plan.FIELD_MANAGER} label); it is left untouched"
                for c, v in views.items()
                if v.takes_part
                and v.service_import is not None
                and not plan.owned(v.service_import)
            ]
            if clashes:
                blocked = "; ".join(clashes)
                log.warning("unowned ServiceImport in the way", detail=blocked)
        # The local clusters are independent: write to them concurrently, and let a
        # failure in one not stop the others (the key is retried as a whole).
        results = await asyncio.gather(
            *(
                self._reconcile_member(m, key, views[m.cluster_id], evaluation, blocked, now)
                for m in self.members
                if m.local
            ),
            *(self._sync_global(m, key, views, now) for m in self.members if m.local),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _reconcile_member(
        self,
        m: Member,
        key: Key,
        view: plan.ClusterView,
        evaluation: plan.Evaluation,
        blocked: str | None,
        now: datetime,
    ) -> None:
        ns, name = key
        writer = self._writers[m.cluster_id]
        with structlog.contextvars.bound_contextvars(cluster=m.cluster_id):
            merged = evaluation.merged if view.takes_part else None
            if merged is not None:
                if view.service_import is None or plan.owned(view.service_import):
                    await self._write_import(writer, view, ns, name, merged, now)
            else:
                await self._remove_import(writer, view)
            await self._sync_slices(writer, m, ns, name, merged)
            conditions = plan.export_status(evaluation, view, now, blocked)
            if view.export is not None and conditions is not None:
                previous = view.export.get("status", {}).get("conditions") or []
                if conditions != previous:
                    await writer.patch_status(
                        "serviceexports", view.export, {"conditions": conditions}
                    )
                    event = plan.conflict_event(
                        view.export, previous, conditions, m.cluster_id, now
                    )
                    if event is not None:
                        await writer.create("events", event)

    async def _write_import(
        self,
        writer: Writer,
        view: plan.ClusterView,
        ns: str,
        name: str,
        merged: MergeResult,
        now: datetime,
    ) -> None:
        observed = view.service_import
        desired = plan.desired_import(ns, name, merged, view.derived)
        if plan.import_changed(
            desired, observed, plan.applied_keys(observed) if observed else (set(), set())
        ):
            observed = await writer.apply("serviceimports", desired)
        assert observed is not None
        derived = view.derived
        if merged.spec.type == "ClusterSetIP":
            want = plan.desired_derived_service(ns, name, merged, observed)
            assert want is not None
            if derived is not None and not plan.owned(derived):
                raise RuntimeError(
                    f'Service "{ns}/{want["metadata"]["name"]}" exists and is not ours'
                )
            if derived is not None and _family_switch(derived, want):
                await writer.delete("services", derived)
                derived = None
            if plan.derived_service_changed(want, derived):
                derived = await writer.apply("services", want)
            again = plan.desired_import(ns, name, merged, derived)
            if again != desired:
                observed = await writer.apply("serviceimports", again)
        elif derived is not None and plan.owned(derived):
            await writer.delete("services", derived)
        status = plan.desired_import_status(
            merged, observed, observed.get("status", {}).get("conditions") or [], now
        )
        if _status_differs(status, observed.get("status") or {}):
            await writer.patch_status("serviceimports", observed, status)

    def _view(self, m: Member, ns: str, name: str) -> plan.ClusterView:
        namespace = m.informers["namespaces"].get("", ns)
        exclusion = self.namespace_policy.exclusion(ns, namespace, m.cluster_id)
        return dataclasses.replace(m.view(ns, name), exclusion=exclusion)

    async def _sync_global(
        self,
        member: Member,
        key: Key,
        views: dict[str, plan.ClusterView],
        now: datetime,
    ) -> None:
        """Make ``member`` hold exactly the remote backends of global Service ``key``
        (`mcs.globalsvc`), and tell the user what they should know about it."""
        ns, name = key
        writer = self._writers[member.cluster_id]
        observed = {
            s["metadata"]["name"]: s
            for s in member.slices.list(ns)
            if globalsvc.global_slice_key(s) == key
        }
        if not observed and not any(
            globalsvc.annotations_of(v.service).is_global for v in views.values()
        ):
            return  # not a global Service anywhere: the common case, one scan
        sides = {
            m.cluster_id: globalsvc.Side(
                m.cluster_id,
                views[m.cluster_id].service,
                views[m.cluster_id].takes_part,
                # Remote endpoints pass the endpoint trust policy, as for imports.
                m.source_slices(ns, name) if m is member else await self._trusted_sources(m, key),
            )
            for m in self.members
        }
        local = sides.pop(member.cluster_id)
        planned = globalsvc.plan_cluster(ns, name, local, list(sides.values()))
        with structlog.contextvars.bound_contextvars(cluster=member.cluster_id):
            await self._write_slices(writer, member, ns, observed, planned.slices)
            service = local.service
            for note in planned.notes if service is not None else ():
                assert service is not None
                noted = (member.cluster_id, ns, name, note.reason)
                event = globalsvc.service_event(service, note, member.cluster_id, now)
                if self._noted.get(noted) != event["metadata"]["name"]:
                    log.info("global service note", service=f"{ns}/{name}", reason=note.reason)
                    await writer.create("events", event)
                    self._noted[noted] = event["metadata"]["name"]

    async def _sync_slices(
        self, writer: Writer, member: Member, ns: str, name: str, merged: MergeResult | None
    ) -> None:
        """Make ``member`` hold exactly the EndpointSlices the import should have."""
        observed = {s["metadata"]["name"]: s for s in member.imported_slices(ns, name)}
        desired: list[Obj] = []
        if merged is None:
            for m in self.members:
                self._dropped.pop(((ns, name), m.cluster_id), None)
        else:
            sources = {
                m.cluster_id: await self._trusted_sources(m, (ns, name)) for m in self.members
            }
            derived = plan.derived_name(ns, name) if merged.spec.type == "ClusterSetIP" else None
            desired = endpoints.desired_slices(ns, name, merged, sources, derived)
        await self._write_slices(writer, member, ns, observed, desired)

    @staticmethod
    async def _write_slices(
        writer: Writer, member: Member, ns: str, observed: dict[str, Obj], desired: list[Obj]
    ) -> None:
        """Apply the ``desired`` slices that differ from ``observed`` (by name), and
        delete the ``observed`` ones no longer desired."""
        observed = dict(observed)
        for want in desired:
            slice_name = want["metadata"]["name"]
            have = observed.pop(slice_name, None)
            if have is None and member.slices.get(ns, slice_name) is not None:
                log.warning(
                    "EndpointSlice in the way is not ours; left untouched", slice=slice_name
                )
                continue
            if have is None or _without_uid(have) != want:
                await writer.apply("endpointslices", want)
        for stale in observed.values():
            await writer.delete("endpointslices", stale)

    async def _trusted_sources(self, m: Member, key: Key) -> list[Obj]:
        """``m``'s source slices of ``key`` with only the endpoints `mcs.trust` lets
        through. A change in what is dropped is logged and counted, and reported by an
        Event on ``m``'s ServiceExport when ``m`` is local (its own controller tells it)."""
        kept, dropped = trust.filter_slices(
            m.cluster_id, m.source_slices(*key), self.endpoint_policy
        )
        seen = frozenset(f"{d.slice}: {d}" for d in dropped)
        before = self._dropped.get((key, m.cluster_id), frozenset())
        if seen == before:
            return kept
        # Recorded before the Event is sent (other local members run concurrently), and
        # put back if sending fails, so that the retry reports it again.
        if seen:
            self._dropped[(key, m.cluster_id)] = seen
        else:
            self._dropped.pop((key, m.cluster_id), None)
        for d in dropped:
            if f"{d.slice}: {d}" not in before:
                ENDPOINTS_DROPPED.labels(cluster=m.cluster_id, reason=d.reason).inc()
        if dropped:
            log.warning(
                "endpoints not imported",
                source_cluster=m.cluster_id,
                namespace=key[0],
                service=key[1],
                dropped=sorted(seen),
            )
        export = m.exports.get(*key)
        writer = self._writers.get(m.cluster_id)
        if dropped and export is not None and writer is not None:
            event = trust.dropped_event(export, dropped, m.cluster_id, format_time(self._clock()))
            try:
                await writer.create("events", event)
            except BaseException:
                self._dropped[(key, m.cluster_id)] = before
                raise
        return kept

    async def _remove_import(self, writer: Writer, view: plan.ClusterView) -> None:
        if view.service_import is not None and plan.owned(view.service_import):
            await writer.delete("serviceimports", view.service_import)
        if view.derived is not None and plan.owned(view.derived):
            await writer.delete("services", view.derived)


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Await ``work`` unless ``stop`` is set first (then cancel it): True if it finished."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopping):
            t.cancel()
    if task.done() and not task.cancelled():
        task.result()  # re-raise its failure
        return True
    return False


def _without_uid(obj: Obj) -> Obj:
    meta = {k: v for k, v in obj["metadata"].items() if k != "uid"}
    return {**obj, "metadata": meta}


def _family_switch(observed: plan.Obj, desired: plan.Obj) -> bool:
    """A derived Service whose primary IP family must change cannot be updated, only replaced."""
    want = desired["spec"].get("ipFamilies")
    have = observed.get("spec", {}).get("ipFamilies")
    return bool(want and have and want[0] != have[0])


def _status_differs(desired: dict[str, Any], observed: dict[str, Any]) -> bool:
    def strip(conds: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(c.get("type"), c.get("status"), c.get("reason"), c.get("message")) for c in conds]

    return desired["clusters"] != observed.get("clusters") or strip(desired["conditions"]) != strip(
        observed.get("conditions") or []
    )
