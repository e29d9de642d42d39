"""The controller: caches of every member cluster in, minimal writes to the local ones out.

One ``Member`` per cluster of the clusterset, each with its indexed informers
(ServiceExports, Services, ServiceImports, EndpointSlices, Namespaces). Every event
is mapped to the key ``(namespace, name)`` of the service it concerns and queued (what
users write, ServiceExports and Services, ahead of the rest: ``mcs.runtime.workqueue.Lane``); a
worker reconciles the key: views of *all* members from the caches -> the merge
(``mcs.core.plan``) -> for each *local* member the ordered writes (``mcs.core.writes``) -> the
writer (``mcs.runtime.writer``). Central and per-cluster deployments run this same code;
they differ only in which members are local. No path run per event or per reconcile
scans a whole cache: lookups go through the informers' indexes.

Nothing is decided before every cache has listed once (``ready``), or before
``member_grace`` seconds have passed: a member that has not joined by then is left
out (``mcs.runtime.health``) and joins when it comes up. A member unreachable for longer than
``member_grace`` is withdrawn: the merge sees it as empty (for imports and global
services alike). A periodic resync re-queues every known key; a steady state makes
no writes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from kubernetes_asyncio.client import ApiClient

from mcs.core import cachefields, endpoints, globalsvc, plan, trust, writes
from mcs.core.model import format_time
from mcs.core.namespaces import NamespacePolicy
from mcs.runtime import health, statemetrics
from mcs.runtime.informer import (
    ENDPOINT_SLICES,
    NAMESPACES,
    SERVICES,
    IndexFunc,
    Informer,
    Key,
    Obj,
    ResourceKind,
    key_of,
    label_index,
)
from mcs.runtime.leader import LeaderElector
from mcs.runtime.observability import CLUSTER_CONNECTED, ENDPOINTS_DROPPED, RESYNCS, WORKQUEUE_DEPTH
from mcs.runtime.workqueue import Lane, WorkQueue, run_workers
from mcs.runtime.writer import MAX_IN_FLIGHT, Writer

SERVICE_EXPORTS = ResourceKind(plan.GROUP, plan.VERSION, "serviceexports")
SERVICE_IMPORTS = ResourceKind(plan.GROUP, plan.VERSION, "serviceimports")

log = structlog.get_logger(__name__)


# Index names (see ``Member``): the value of a label, within a namespace, and the
# work-queue key an object of ours belongs to.
BY_KUBE_SERVICE = endpoints.KUBE_SERVICE_NAME
BY_MCS_SERVICE = plan.SERVICE_NAME
BY_OWNED_KEY = "owned-key"
BY_GLOBAL_SERVICE = "global-service"


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A member cluster as configured: how to reach it, its id, whether we write to it."""

    context: str
    cluster_id: str
    api: ApiClient
    local: bool


@dataclass(frozen=True, slots=True)
class Member:
    """One cluster of the clusterset as the controller sees it: its configuration and
    one indexed cache per kind. Built whole by ``Controller`` and never changed.

    Indexes (all maintained by the informers on every event):

    * every cache: by namespace (``Informer.list(ns)``, ``keys(ns)``);
    * ``services`` and ``slices``: ``BY_MCS_SERVICE``, ``(ns, value)`` of the label
      ``multicluster.kubernetes.io/service-name``;
    * ``slices``: ``BY_KUBE_SERVICE``, ``(ns, value)`` of ``kubernetes.io/service-name``;
    * ``imports``, ``services``, ``slices``: ``BY_OWNED_KEY``, the key an object of
      ours (by its ownership labels) belongs to;
    * ``services``: ``BY_GLOBAL_SERVICE``, the key of a global Service (`mcs.core.globalsvc`);
    * ``exports``: ``statemetrics.BY_STATE``, what its conditions say (for ``/metrics``).
    """

    context: str
    cluster_id: str
    api: ApiClient
    local: bool
    exports: Informer
    services: Informer
    imports: Informer
    slices: Informer
    namespaces: Informer

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.exports, self.services, self.imports, self.slices, self.namespaces)

    def source_slices(self, ns: str, service: str) -> list[Obj]:
        """The EndpointSlices of Service ``ns/service`` that are not ours (the exporter's)."""
        return [
            s
            for s in self.slices.by_index(BY_KUBE_SERVICE, (ns, service))
            if not endpoints.managed_by_us(s)
        ]

    def imported_slices(self, ns: str, name: str) -> list[Obj]:
        """Our EndpointSlices of the import ``ns/name``."""
        return [
            s
            for s in self.slices.by_index(BY_MCS_SERVICE, (ns, name))
            if endpoints.managed_by_us(s)
        ]

    def global_slices(self, ns: str, service: str) -> list[Obj]:
        """Our global-service EndpointSlices of Service ``ns/service`` (`mcs.core.globalsvc`)."""
        return [
            s
            for s in self.slices.by_index(BY_KUBE_SERVICE, (ns, service))
            if globalsvc.global_slice_key(s) == (ns, service)
        ]

    def keys(self, namespace: str | None = None) -> set[Key]:
        """The keys this cluster's caches say may need work, of one namespace or all:
        its exports, the keys our objects belong to, and its global Services."""
        out: set[Key] = set(self.exports.keys(namespace))
        indexes = [(i, BY_OWNED_KEY) for i in (self.imports, self.services, self.slices)]
        for informer, index in [*indexes, (self.services, BY_GLOBAL_SERVICE)]:
            if namespace is None:
                out.update(_as_key(v) for v in informer.index_values(index))
            else:
                for k in informer.keys(namespace):
                    out.update(_as_key(v) for v in informer.values_of(index, k))
        return out

    def cache_of(self, resource: str) -> Informer | None:
        """The cache of an API resource (plural) we write, None for one we do not cache."""
        match resource:
            case "serviceexports":
                return self.exports
            case "services":
                return self.services
            case "serviceimports":
                return self.imports
            case "endpointslices":
                return self.slices
        return None

    def namespace_exists(self, ns: str) -> bool:
        obj = self.namespaces.get("", ns)
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
        return all(i.connected for i in self.informers)


def _as_key(value: Hashable) -> Key:
    return cast(Key, value)  # BY_OWNED_KEY values are keys


def _owned_service_keys(svc: Obj) -> list[Key]:
    labels = svc.get("metadata", {}).get("labels") or {}
    if plan.owned(svc) and plan.SERVICE_NAME in labels:
        return [(key_of(svc)[0], labels[plan.SERVICE_NAME])]
    return []


def _owned_slice_keys(eps: Obj) -> list[Key]:
    if not endpoints.managed_by_us(eps):
        return []
    key = endpoints.slice_key(eps) or globalsvc.global_slice_key(eps)
    return [key] if key else []


def _global_service_keys(svc: Obj) -> list[Key]:
    return [key_of(svc)] if globalsvc.annotations_of(svc).is_global else []


def _owned_import_keys(imp: Obj) -> list[Key]:
    return [key_of(imp)] if plan.owned(imp) else []


class Controller:
    """Reconciles every exported service of the clusterset into the local members."""

    def __init__(
        self,
        members: Sequence[MemberConfig],
        *,
        workers: int = 4,
        resync_period: float = 300.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        watch_timeout: int = 300,
        endpoint_policy: trust.EndpointPolicy | None = None,
        namespace_policy: NamespacePolicy | None = None,
        member_grace: float = health.DEFAULT_GRACE,
        resolve_id: Callable[[Member], Awaitable[str]] | None = None,
        pending_ids: Iterable[str] = (),
        drain_timeout: float = 10.0,
        max_writes_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        ids = [m.cluster_id for m in members]
        if len(set(ids)) != len(ids):
            raise ValueError(f"cluster ids must be unique, got {ids}")
        # Beside a user's change, a sixteenth of the workers (at least one) reconcile
        # the rest: a busy loop gives each running reconcile a turn per pass.
        self.queue: WorkQueue[Key] = WorkQueue(beside_urgent=max(1, workers // 16))
        WORKQUEUE_DEPTH.set_function(lambda: len(self.queue))
        self.workers = workers
        self.resync_period = resync_period
        self._clock = clock
        self.endpoint_policy = endpoint_policy or trust.EndpointPolicy()
        # What mcs.core.trust last dropped from each (key, source cluster): reported on change.
        self._dropped: dict[tuple[Key, str], frozenset[str]] = {}
        self.namespace_policy = namespace_policy or NamespacePolicy()
        # Events already posted about global Services: (cluster, ns, name, reason) -> name.
        self._noted: dict[tuple[str, str, str, str], str] = {}
        self._watch_timeout = watch_timeout
        self.members: tuple[Member, ...] = tuple(self._member(c) for c in members)
        # By context: a member's cluster id can still change (read after start-up).
        self._writers = {
            m.context: Writer(m.api, m.cluster_id, max_in_flight=max_writes_in_flight)
            for m in self.members
            if m.local
        }
        self.drain_timeout = drain_timeout
        self._joined = asyncio.Event()
        self._resolve_id = resolve_id
        self.health: health.MemberHealth[Member] = health.MemberHealth(
            self.members,
            grace=member_grace,
            on_change=self._member_changed,
            resolve_id=self._read_id if resolve_id is not None else None,
            pending=pending_ids,
        )

    def _member(self, c: MemberConfig) -> Member:
        make = functools.partial(self._informer, c)
        owned = {BY_OWNED_KEY: _owned_import_keys}
        return Member(
            context=c.context,
            cluster_id=c.cluster_id,
            api=c.api,
            local=c.local,
            exports=make(
                SERVICE_EXPORTS,
                cachefields.export,
                lambda o: [key_of(o)],
                {statemetrics.BY_STATE: statemetrics.export_states},
                Lane.URGENT,
            ),
            services=make(
                SERVICES,
                cachefields.service,
                self._service_keys,
                {
                    BY_OWNED_KEY: _owned_service_keys,
                    BY_MCS_SERVICE: label_index(BY_MCS_SERVICE),
                    BY_GLOBAL_SERVICE: _global_service_keys,
                },
                Lane.URGENT,
            ),
            imports=make(SERVICE_IMPORTS, cachefields.service_import, lambda o: [key_of(o)], owned),
            slices=make(
                ENDPOINT_SLICES,
                endpoints.transform,
                self._slice_keys,
                {
                    BY_OWNED_KEY: _owned_slice_keys,
                    BY_MCS_SERVICE: label_index(BY_MCS_SERVICE),
                    BY_KUBE_SERVICE: label_index(BY_KUBE_SERVICE),
                },
            ),
            namespaces=make(
                NAMESPACES, cachefields.namespace, lambda o: self.keys_in(o["metadata"]["name"])
            ),
        )

    def _informer(
        self,
        c: MemberConfig,
        kind: ResourceKind,
        transform: Callable[[Obj], Obj],
        keys: Callable[[Obj], list[Key]],
        indexers: Mapping[str, IndexFunc] | None = None,
        lane: Lane = Lane.CHANGE,
    ) -> Informer:
        """An informer of ``kind`` in ``c`` that queues the keys ``keys`` maps a change to
        (of the old and the new object: a change can move an object between keys), in
        ``lane`` unless the object is ours (then in ``Lane.CHANGE``). What users write goes
        in ``Lane.URGENT``: a new export is reconciled before a backlog of other
        controllers' objects (kube-controller-manager's EndpointSlices trail a bulk of new
        Services by minutes)."""

        def on_event(_type: str, old: Obj | None, new: Obj | None) -> None:
            for obj in (old, new):
                if obj is not None:
                    in_lane = Lane.CHANGE if plan.owned(obj) else lane
                    for key in keys(obj):
                        self.queue.add(key, in_lane)

        return Informer(
            c.api,
            cluster=c.context,
            kind=kind,
            on_event=on_event,
            transform=transform,
            indexers=indexers,
            watch_timeout=self._watch_timeout,
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
            return _owned_slice_keys(eps)
        service = eps["metadata"].get("labels", {}).get(endpoints.KUBE_SERVICE_NAME)
        return [(eps["metadata"]["namespace"], service)] if service else []

    def keys_in(self, namespace: str) -> list[Key]:
        """Every key of one namespace that may need work (through the namespace
        indexes: costs what the namespace holds, not what the clusterset holds)."""
        return sorted(set().union(*(m.keys(namespace) for m in self.members)))

    def all_keys(self) -> set[Key]:
        """Every key that may need work: exported anywhere, imported by us anywhere, or
        a global Service anywhere."""
        return set().union(*(m.keys() for m in self.members))

    # ------------------------------------------------------------- lifecycle

    def ready(self) -> str | None:
        """None when ready (every cache has listed), else why not (for /readyz)."""
        waiting = [
            f"{m.context}/{i.kind.name}"
            for m in self.members
            for i in m.informers
            if not i.has_synced()
        ]
        missing = self.health.describe()
        if missing:
            return "; ".join(missing)
        return f"caches not synced: {', '.join(waiting)}" if waiting else None

    async def _read_id(self, m: Member) -> Member:
        """Read the cluster id of a member that started without one, and replace the
        (immutable) member by one with that id; returns the new member."""
        assert self._resolve_id is not None
        cid = await self._resolve_id(m)
        if cid == m.cluster_id:
            return m
        new = dataclasses.replace(m, cluster_id=cid)
        self.members = tuple(new if o.context == m.context else o for o in self.members)
        if new.local:
            self._writers[new.context].cluster = cid
        return new

    def _member_changed(self, m: Member, withdrawn: bool) -> None:
        """A member joined, was withdrawn or returned: reconcile each key it bears on once."""
        if self.health.joined_all():
            self._joined.set()
        if not self._joined.is_set():
            return  # still starting: the first reconciles will cover it
        # Its keys (exports, global Services, ours); every key when it is local: its
        # imports were not written while it was out.
        for key in self.all_keys() if m.local else m.keys():
            self.queue.add(key)

    async def run(self, stop: asyncio.Event, elector: LeaderElector | None = None) -> None:
        """Run until ``stop`` is set; then drain the current reconciles and stop every task.

        With an ``elector``, the caches are filled at once (a standby is ready to take
        over) but nothing is reconciled before this instance holds the lease; losing
        it raises ``LeadershipLost`` (in an ``ExceptionGroup``) after stopping the workers.
        """
        for m in self.members:
            for informer in m.informers:
                informer.start()
        health_task = asyncio.create_task(self.health.run(), name="member health")
        try:
            if not await _unless_stopped(self._wait_joined(), stop):
                return
            self._joined.set()
            log.info(
                "caches synced",
                clusters=[m.cluster_id for m in self.members if not self.health.withdrawn(m)],
                local=[m.cluster_id for m in self.members if m.local],
                missing=self.health.describe(),
            )
            if elector is not None:
                log.info("waiting to become leader", identity=elector.identity)
                if not await _unless_stopped(elector.acquire(), stop):
                    return
                for writer in self._writers.values():
                    writer.budget = elector.write_budget
            try:
                async with asyncio.TaskGroup() as tg:
                    workers = run_workers(self.queue, self.reconcile, concurrency=self.workers)
                    worker_task = tg.create_task(workers, name="workers")
                    resync = tg.create_task(self._resync_loop(), name="resync")
                    lease = None
                    if elector is not None:
                        lease = tg.create_task(elector.keep(), name="lease")
                    await stop.wait()
                    # The lease is renewed while the workers finish their keys (bounded).
                    log.info("stopping: draining the work queue", timeout=self.drain_timeout)
                    resync.cancel()
                    self.queue.shutdown()
                    _, pending = await asyncio.wait({worker_task}, timeout=self.drain_timeout)
                    if pending:
                        log.warning("drain timed out; interrupting the reconciles in flight")
                        worker_task.cancel()
                    if lease is not None:
                        lease.cancel()
            finally:
                if elector is not None:
                    await elector.release()
        finally:
            health_task.cancel()
            (outcome,) = await asyncio.gather(health_task, return_exceptions=True)
            if isinstance(outcome, Exception):
                log.error("member health tracking failed", error=repr(outcome))
            for m in self.members:
                for informer in m.informers:
                    await informer.stop()

    async def _wait_joined(self) -> None:
        """Until every member has joined, or ``member_grace`` seconds (then go without)."""
        try:
            async with asyncio.timeout(self.health.grace):
                await self._joined.wait()
        except TimeoutError:
            log.warning("starting without some members", missing=self.health.describe())

    async def _resync_loop(self) -> None:
        while True:
            for m in self.members:
                CLUSTER_CONNECTED.labels(cluster=m.cluster_id).set(1 if m.connected() else 0)
            for key in self.all_keys():
                self.queue.add(key, Lane.RESYNC)  # behind every change
            RESYNCS.inc()
            await asyncio.sleep(self.resync_period)

    # ------------------------------------------------------------- reconcile

    async def reconcile(self, key: Key) -> None:
        """Views -> plan -> writes -> status, for one key in every local cluster.

        The merge is evaluated once from the cached views of every member; then each
        local cluster's ordered writes are planned (``mcs.core.writes.plan_local``) and
        written, the local clusters concurrently: a failure in one does not stop the
        others (the key is retried as a whole)."""
        ns, name = key
        views = {m.cluster_id: self._view(m, ns, name) for m in self.members}
        evaluation = plan.evaluate(list(views.values()))
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
            if evaluation.merged.spec.type == "ClusterSetIP":
                derived = plan.derived_name(ns, name)
                clashes += [
                    f'Service "{ns}/{derived}" in cluster "{c}" was not created by '
                    f"mcs-controller (no {plan.MANAGED_BY}={plan.FIELD_MANAGER} label) and "
                    "holds the name of the derived Service; it is left untouched"
                    for c, v in views.items()
                    if v.takes_part and v.derived is not None and not plan.owned(v.derived)
                ]
            if clashes:
                blocked = "; ".join(clashes)
                log.warning("unowned object in the way", detail=blocked)
        sources: dict[str, list[Obj]] = {}
        if evaluation.merged is None:
            for m in self.members:
                self._dropped.pop((key, m.cluster_id), None)
        else:
            sources = {
                m.cluster_id: await self._trusted_sources(m, key)
                for m in self.members
                if not self.health.withdrawn(m)
            }
        # What the imports' Ready condition says of withdrawn members that exported it.
        withdrawn = tuple(
            (m.cluster_id, self.health.withdrawn_since(m))
            for m in self.members
            if self.health.withdrawn(m) and m.exports.get(ns, name) is not None
        )
        state = writes.KeyState(
            ns, name, evaluation, sources, blocked, self._clock(), withdrawn=withdrawn
        )
        # A withdrawn member cannot be written to: it is reconciled when it returns. One
        # that is unreachable now is not tried either (a hung write would hold a worker
        # for the whole call timeout): the key is retried with backoff.
        local = [m for m in self.members if m.local and not self.health.withdrawn(m)]
        unreachable = [m.cluster_id for m in local if self.health.unreachable_since(m)]
        local = [m for m in local if m.cluster_id not in unreachable]
        plans: list[tuple[Member, writes.Plan]] = []
        failed: list[tuple[Member, BaseException]] = []
        for m in local:
            try:
                plans.append((m, writes.plan_local(state, self._local_state(m, views, key))))
            except writes.DerivedServiceInTheWay as e:
                failed.append((m, e))  # this cluster only: the others are still written
        results = await asyncio.gather(
            *(self._while_reachable(m, self._carry_out(m, p)) for m, p in plans),
            *(self._while_reachable(m, self._sync_global(m, key, views, state.now)) for m in local),
            return_exceptions=True,
        )
        done = [m for m, _ in plans] + local
        failed += [
            (m, r) for m, r in zip(done, results, strict=True) if isinstance(r, BaseException)
        ]
        for m, error in failed[1:]:  # the first is logged by the worker that retries the key
            log.warning(
                "reconcile failed in cluster",
                cluster=m.cluster_id,
                error=f"{type(error).__name__}: {error}",
            )
        if failed:
            m, error = failed[0]
            error.add_note(f"in cluster {m.cluster_id}")
            raise error
        if unreachable:
            raise health.MemberUnreachable(f"not written to unreachable {', '.join(unreachable)}")

    async def _while_reachable(self, m: Member, writes: Coroutine[Any, Any, None]) -> None:
        """Run ``m``'s writes of one reconcile, cancelled as soon as ``m`` counts as
        unreachable: a frozen API server would hold them for the whole call timeout, and
        the key's writes to every other cluster with them (the key is retried; a write
        the frozen server still carries out is rewritten alike then)."""
        task = asyncio.ensure_future(writes)
        down = asyncio.ensure_future(self.health.until_unreachable(m))
        try:
            await asyncio.wait((task, down), return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            raise health.MemberUnreachable(f"writes to {m.cluster_id} cancelled: unreachable")
        task.result()

    def _view(self, m: Member, ns: str, name: str) -> plan.ClusterView:
        """``m``'s view of a key; empty (as if it exported nothing and had no Service)
        while it is withdrawn, for imports and global services alike."""
        if self.health.withdrawn(m):
            return plan.ClusterView(cluster=m.cluster_id, namespace_exists=False)
        exclusion = self.namespace_policy.exclusion(ns, m.namespaces.get("", ns), m.cluster_id)
        return dataclasses.replace(m.view(ns, name), exclusion=exclusion)

    async def _sync_global(
        self,
        member: Member,
        key: Key,
        views: dict[str, plan.ClusterView],
        now: datetime,
    ) -> None:
        """Make ``member`` hold exactly the remote backends of global Service ``key``
        (`mcs.core.globalsvc`), and tell the user what they should know about it."""
        ns, name = key
        writer = self._writers[member.context]
        observed = member.global_slices(ns, name)
        if not observed and not any(
            globalsvc.annotations_of(v.service).is_global for v in views.values()
        ):
            return  # not a global Service anywhere: the common case
        sides = {
            m.cluster_id: globalsvc.Side(
                m.cluster_id,
                views[m.cluster_id].service,
                views[m.cluster_id].takes_part,
                # Remote endpoints pass the endpoint trust policy, as for imports; a
                # withdrawn member has none.
                []
                if self.health.withdrawn(m)
                else m.source_slices(ns, name)
                if m is member
                else await self._trusted_sources(m, key),
            )
            for m in self.members
        }
        local = sides.pop(member.cluster_id)
        planned = globalsvc.plan_cluster(ns, name, local, list(sides.values()))
        with structlog.contextvars.bound_contextvars(cluster=member.cluster_id):
            slice_writes, warnings = writes.slice_writes(
                observed, planned.slices, functools.partial(member.slices.get, ns)
            )
            for warning in warnings:
                log.warning("left untouched", detail=warning)
            for w in slice_writes:
                await _write(writer, member, w)
            service = local.service
            for note in planned.notes if service is not None else ():
                assert service is not None
                noted = (member.cluster_id, ns, name, note.reason)
                event = globalsvc.service_event(service, note, member.cluster_id, now)
                if self._noted.get(noted) != event["metadata"]["name"]:
                    log.info("global service note", service=f"{ns}/{name}", reason=note.reason)
                    await writer.create("events", event)
                    self._noted[noted] = event["metadata"]["name"]

    async def _trusted_sources(self, m: Member, key: Key) -> list[Obj]:
        """``m``'s source slices of ``key`` with only the endpoints `mcs.core.trust` lets
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
        writer = self._writers.get(m.context)
        if dropped and export is not None and writer is not None:
            event = trust.dropped_event(export, dropped, m.cluster_id, format_time(self._clock()))
            try:
                await writer.create("events", event)
            except BaseException:
                self._dropped[(key, m.cluster_id)] = before
                raise
        return kept

    @staticmethod
    def _local_state(
        m: Member, views: Mapping[str, plan.ClusterView], key: Key
    ) -> writes.LocalState:
        ns, name = key
        return writes.LocalState(
            views[m.cluster_id], m.imported_slices(ns, name), functools.partial(m.slices.get, ns)
        )

    async def _carry_out(self, m: Member, p: writes.Plan) -> None:
        """The writes of one local cluster, in order: the derived Service's first, then
        the rest, planned with the derived Service the server returned."""
        writer = self._writers[m.context]
        with structlog.contextvars.bound_contextvars(cluster=m.cluster_id):
            for warning in p.warnings:
                log.warning("left untouched", detail=warning)
            derived = p.derived_observed
            for w in p.derived:
                derived = await _write(writer, m, w)
            for w in p.then(derived):
                await _write(writer, m, w)


async def _write(writer: Writer, m: Member, w: writes.Write) -> Obj | None:
    """One planned write, through the member's cache of the resource when it has one
    (``Informer.write_through``): the server's answer is cached at once, so a reconcile
    that runs before the watch delivers it does not repeat the write, and the write's
    own watch event does not queue the key again. Returns that answer (None for a
    delete or a create)."""
    obj = dict(w.obj)
    call: Coroutine[Any, Any, Obj | None]
    if w.verb == "apply":
        call = writer.apply(w.resource, obj)
    elif w.verb == "status":
        assert w.status is not None
        call = writer.patch_status(w.resource, obj, dict(w.status))
    elif w.verb == "delete":
        call = writer.delete(w.resource, obj)
    else:
        call = writer.create(w.resource, obj)
    cache = m.cache_of(w.resource)
    if cache is None or w.verb in ("delete", "create"):
        return await call
    return await cache.write_through(key_of(obj), call)


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
