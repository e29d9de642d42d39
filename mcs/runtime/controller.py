"""The controller: caches of every member cluster in, minimal writes to the local ones out.

One `mcs.runtime.cluster.Cluster` per member of the clusterset, each with its
indexed informers; every event is mapped to the keys ``(namespace, name)`` of the
services it concerns and queued (what users write ahead of the rest:
``mcs.runtime.workqueue.Lane``). A worker reconciles a key: the view of *every* member
from the caches -> the one plan (`mcs.core.plan.plan_key`) -> for each *local* member
its writes, through the writer (`mcs.runtime.writer`). Central and per-cluster
deployments run this same code; they differ only in which members are local.

Nothing is decided before every cache has listed once (``ready``), or before
``member_grace`` seconds have passed: a member that has not joined by then is left
out (``mcs.runtime.health``) and joins when it comes up. A member unreachable for longer than
``member_grace`` is withdrawn: the merge sees it as empty (for imports and global
services alike). A periodic resync re-queues every known key; a steady state makes
no writes.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from mcs.core import plan, trust
from mcs.core.api import Key, Obj, key_of
from mcs.core.merge import MERGE_RULES
from mcs.core.namespaces import NamespacePolicy
from mcs.core.writes import Write
from mcs.runtime import health
from mcs.runtime.cluster import Cluster, MemberConfig
from mcs.runtime.leader import LeaderElector
from mcs.runtime.observability import (
    CLUSTER_CONNECTED,
    ENDPOINTS_DROPPED,
    MERGE_RULES_SKEW,
    RESYNCS,
)
from mcs.runtime.workqueue import Lane, WorkQueue, run_workers
from mcs.runtime.writer import MAX_IN_FLIGHT, Writer

log = structlog.get_logger(__name__)

POSTED_EVENTS = 1 << 16
"""How many Event names the controller remembers having posted (per process)."""


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
        exported_metadata: Sequence[str] | None = None,
        member_grace: float = health.DEFAULT_GRACE,
        resolve_id: Callable[[Cluster], Awaitable[str]] | None = None,
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
        self.workers = workers
        self.resync_period = resync_period
        self._clock = clock
        self.policy = plan.Policy(
            namespaces=namespace_policy or NamespacePolicy(),
            endpoints=endpoint_policy or trust.EndpointPolicy(),
            exported_metadata=None if exported_metadata is None else tuple(exported_metadata),
        )
        self._bound: tuple[tuple[tuple[str, str], ...], plan.Policy] | None = None
        # What mcs.core.trust last dropped from each (key, source cluster): logged on change.
        self._dropped: dict[tuple[Key, str], frozenset[str]] = {}
        # Keys held back by a merge-rules skew, with the peers' versions (plan.KeyPlan.skew).
        self._skewed: dict[Key, Mapping[str, str]] = {}
        # Events this process posted, by (cluster, name): a note that persists is posted once.
        self._posted: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
        self.members: tuple[Cluster, ...] = tuple(
            Cluster.build(c, self.queue.add, self.keys_in, watch_timeout) for c in members
        )
        # By context: a member's cluster id can still change (read after start-up).
        self._writers = {
            m.context: Writer(m.api, m.cluster_id, max_in_flight=max_writes_in_flight)
            for m in self.members
            if m.local
        }
        self.drain_timeout = drain_timeout
        self._joined = asyncio.Event()
        self._resolve_id = resolve_id
        self.health: health.MemberHealth[Cluster] = health.MemberHealth(
            self.members,
            grace=member_grace,
            on_change=self._member_changed,
            resolve_id=self._read_id if resolve_id is not None else None,
            pending=pending_ids,
        )

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

    async def _read_id(self, m: Cluster) -> Cluster:
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

    def _member_changed(self, m: Cluster, withdrawn: bool) -> None:
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

    def _bound_policy(self) -> plan.Policy:
        """``self.policy`` with the endpoint ranges keyed by each member's current id:
        they belong to the member's context, never to the id it publishes (#29)."""
        ids = tuple((m.cluster_id, m.context) for m in self.members)
        if self._bound is None or self._bound[0] != ids:
            endpoints = self.policy.endpoints.for_clusters(dict(ids))
            self._bound = (ids, dataclasses.replace(self.policy, endpoints=endpoints))
        return self._bound[1]

    async def reconcile(self, key: Key) -> None:
        """Views -> the plan (`mcs.core.plan.plan_key`) -> writes, for one key.

        The plan is made once from the cached views of every member; then each local
        cluster's writes are carried out, the clusters concurrently: a failure in one
        does not stop the others (the key is retried as a whole)."""
        views = self._views(key)
        planned = plan.plan_key(*key, views, self._clock(), self._bound_policy())
        self._report(key, planned)
        local = {m.cluster_id: m for m in self.members if m.local}
        results = await asyncio.gather(
            *(
                self._while_reachable(local[c.cluster], self._carry_out(c))
                for c in planned.clusters
            ),
            return_exceptions=True,
        )
        failed = [
            (c.cluster, r)
            for c, r in zip(planned.clusters, results, strict=True)
            if isinstance(r, BaseException)
        ]
        for cluster, error in failed[1:]:  # the first is raised: the worker logs it
            log.warning(
                "reconcile failed in cluster",
                cluster=cluster,
                error=f"{type(error).__name__}: {error}",
            )
        if failed:
            cluster, error = failed[0]
            error.add_note(f"in cluster {cluster}")
            raise error
        if planned.unreachable:
            raise health.MemberUnreachable(
                f"not written to unreachable {', '.join(planned.unreachable)}"
            )

    def _views(self, key: Key) -> list[plan.MemberView]:
        """Every member's view of ``key``, with what member health says of it."""
        out = []
        for m in self.members:
            withdrawn = self.health.withdrawn(m)
            out.append(
                dataclasses.replace(
                    m.view(*key),
                    withdrawn=withdrawn,
                    withdrawn_since=self.health.withdrawn_since(m) if withdrawn else None,
                    reachable=self.health.unreachable_since(m) is None,
                )
            )
        return out

    def _report(self, key: Key, planned: plan.KeyPlan) -> None:
        """Log what the plan leaves untouched, and count endpoints newly dropped."""
        if planned.blocked:
            log.warning("unowned object in the way", detail=planned.blocked)
        self._report_skew(key, planned.skew)
        for m in self.members:
            lost = planned.dropped.get(m.cluster_id, ())
            seen = frozenset(f"{d.slice}: {d}" for d in lost)
            before = self._dropped.pop((key, m.cluster_id), frozenset())
            if seen:
                self._dropped[(key, m.cluster_id)] = seen
            if seen == before:
                continue
            for d in lost:
                if f"{d.slice}: {d}" not in before:
                    ENDPOINTS_DROPPED.labels(cluster=m.cluster_id, reason=d.reason).inc()
            if seen:
                log.warning(
                    "endpoints not imported",
                    source_cluster=m.cluster_id,
                    namespace=key[0],
                    service=key[1],
                    dropped=sorted(seen),
                )

    def _report_skew(self, key: Key, skew: Mapping[str, str]) -> None:
        """Log a merge-rules skew when it appears, changes or ends, and keep the gauge."""
        before = self._skewed.pop(key, {})
        if skew:
            self._skewed[key] = dict(skew)
        if dict(skew) == dict(before):
            return
        for peer in {*before, *skew}:
            MERGE_RULES_SKEW.labels(peer_cluster=peer).set(
                sum(peer in s for s in self._skewed.values())
            )
        if skew:
            log.warning(
                "merge rules differ from a peer's: results held back",
                namespace=key[0],
                service=key[1],
                merge_rules=MERGE_RULES,
                peers=dict(skew),
            )
        else:
            log.info("merge rules agree again", namespace=key[0], service=key[1])

    async def _while_reachable(self, m: Cluster, writes: Coroutine[Any, Any, None]) -> None:
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

    async def _carry_out(self, p: plan.ClusterPlan) -> None:
        """The writes of one local cluster, in order: the derived Service's first, then
        the rest, planned with the derived Service the server returned."""
        m = next(m for m in self.members if m.cluster_id == p.cluster)
        with structlog.contextvars.bound_contextvars(cluster=m.cluster_id):
            for warning in p.warnings:
                log.warning("left untouched", detail=warning)
            derived = p.derived_observed
            for w in p.derived:
                derived = await self._write(m, w)
            for w in p.then(derived):
                await self._write(m, w)
        if p.in_the_way is not None:
            raise DerivedServiceInTheWay(p.in_the_way)

    async def _write(self, m: Cluster, w: Write) -> Obj | None:
        """One planned write, through the member's cache of the resource when it has one
        (``Informer.write_through``): the server's answer is cached at once, so a
        reconcile that runs before the watch delivers it does not repeat the write, and
        the write's own watch event does not queue the key again. Returns that answer
        (None for a delete or a create). An Event this process already posted is not
        posted again."""
        writer = self._writers[m.context]
        obj = dict(w.obj)
        if w.verb == "create":
            posted = (m.cluster_id, str(obj["metadata"]["name"]))
            if posted in self._posted:
                return None
            await writer.create(w.resource, obj)
            self._posted[posted] = None
            if len(self._posted) > POSTED_EVENTS:
                self._posted.popitem(last=False)
            return None
        if w.verb == "delete":
            await writer.delete(w.resource, obj)
            return None
        call: Coroutine[Any, Any, Obj | None]
        if w.verb == "status":
            assert w.status is not None
            call = writer.patch_status(w.resource, obj, dict(w.status))
        else:
            call = writer.apply(w.resource, obj)
        cache = m.cache_of(w.resource)
        return await (call if cache is None else cache.write_through(key_of(obj), call))


class DerivedServiceInTheWay(RuntimeError):
    """A Service with the derived Service's name exists in a cluster and is not ours."""


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
