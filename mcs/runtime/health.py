"""Member health: when a member counts as unreachable, and when its exports are withdrawn.

A member is *unreachable* while its last ``failure_threshold`` (2) health probes
failed (``GET /readyz``, each bounded by ``probe_timeout``; this catches a frozen API
server whose watches look alive) or one of its watches is down
(``Informer.connected``; this catches a refused or reset connection at once). One slow
answer from a busy API server is not enough: like a kubelet probe's
``failureThreshold``, it takes consecutive failures. It is unreachable *since* the
start of the first of those failed probes or the first failed watch request,
whichever is earlier, so the threshold does not delay a withdrawal.

A member that stays unreachable for ``grace`` seconds is *withdrawn*: the controller
treats it as if it had exported nothing (its views are empty), so imports elsewhere
drop it from ``status.clusters``, its EndpointSlices are deleted from every other
cluster, conflicts are recomputed, and an import it alone exported is deleted. A
member also starts withdrawn and *joins* once its cluster id is known, every one of
its caches has listed and it is reachable. A withdrawn member that is reachable again
(and whose watches are connected, so its caches are current) *returns*.

Withdrawal and return are logged, counted in ``mcs_member_withdrawn{cluster}``
(1 while withdrawn) and ``mcs_member_withdrawals_total{cluster}``, and reported to
``on_change`` (the controller queues the member's keys once: one reconcile per
affected key). The affected ServiceImports get a ``Ready`` reason naming the member
and an Event on the transition (`mcs.core.imports.desired_import_status`,
`mcs.core.events.withdrawal_event`).

Why a grace period: a member's API server can be unreachable while its pods serve
traffic (a control-plane upgrade, an etcd leader election, a network blip between
control planes); withdrawing at once would drop healthy backends. The default (60 s,
``DEFAULT_GRACE``) outlasts a kube-apiserver restart and is close to
kube-controller-manager's ``--node-monitor-grace-period`` (50 s), after which the
endpoints of an unreachable node turn not-ready.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import aiohttp
import structlog
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client import Counter, Gauge

from mcs.core.model import format_time
from mcs.runtime import kubeapi
from mcs.runtime.observability import REGISTRY

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

    from mcs.runtime.informer import Informer

log = structlog.get_logger(__name__)

DEFAULT_GRACE = 60.0

MEMBER_WITHDRAWN = Gauge(
    "mcs_member_withdrawn",
    "1 while a member's exports are withdrawn from the merge (unreachable for longer "
    "than --member-grace, or not joined yet), else 0.",
    ["cluster"],
    registry=REGISTRY,
)
MEMBER_WITHDRAWALS = Counter(
    "mcs_member_withdrawals",
    "Times a member was withdrawn after being unreachable for --member-grace seconds.",
    ["cluster"],
    registry=REGISTRY,
)


class MemberUnreachable(RuntimeError):
    """A local member was not written to because it is unreachable (the key is retried)."""


class HealthMember(Protocol):
    """What health needs of a member (``mcs.runtime.controller.Member`` has it)."""

    @property
    def context(self) -> str: ...

    @property
    def cluster_id(self) -> str: ...

    @property
    def api(self) -> ApiClient: ...

    @property
    def informers(self) -> Sequence[Informer]: ...


M = TypeVar("M", bound=HealthMember)


@dataclass
class MemberState:
    withdrawn: bool = True  # until joined
    joined_once: bool = False
    id_pending: bool = False
    probe_failures: int = 0  # consecutive
    probe_failed_since: float | None = None  # monotonic start of the first of them
    last_error: str | None = None
    withdrawn_since: str | None = None  # wall clock, for messages (stable per withdrawal)


async def probe(api: ApiClient, limit: float) -> None:
    """``GET /readyz`` of the member's API server within ``limit`` seconds; raises
    when it does not answer 200 (``/readyz`` is readable by every user: the
    ``system:public-info-viewer`` role)."""
    status, text = await kubeapi.request(api, "GET", "/readyz", accept="*/*", time_limit=limit)
    if status != 200:
        raise ApiException(status=status, reason=text[:200])


class MemberHealth(Generic[M]):
    """Tracks the health of every member and withdraws/returns them (see the module doc).

    ``resolve_id(member)`` reads a member's cluster id and returns the member with it
    (members are immutable: the caller replaces its own, and this tracker keeps the new
    one); members listed in ``pending`` (by context) have none yet: their probe is that
    read, and they join only once it succeeded.
    ``on_change(member, withdrawn)`` is called on every join, withdrawal and return.
    """

    def __init__(
        self,
        members: Sequence[M],
        *,
        grace: float = DEFAULT_GRACE,
        on_change: Callable[[M, bool], None] = lambda m, w: None,
        resolve_id: Callable[[M], Awaitable[M]] | None = None,
        pending: Iterable[str] = (),
        probe_period: float = 1.0,
        probe_timeout: float = 2.0,
        failure_threshold: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if grace < 0:
            raise ValueError(f"grace must be >= 0, got {grace}")
        self.members = list(members)
        self.grace = grace
        self.probe_period = probe_period
        self.probe_timeout = probe_timeout
        self.failure_threshold = max(1, failure_threshold)
        self._on_change = on_change
        self._resolve_id = resolve_id
        self._clock = clock
        pending = set(pending)
        self._state = {m.context: MemberState(id_pending=m.context in pending) for m in members}
        self._down = {m.context: asyncio.Event() for m in members}  # set while unreachable
        for m in members:
            MEMBER_WITHDRAWN.labels(cluster=m.cluster_id).set(1)

    # ------------------------------------------------------------------ reading

    def withdrawn(self, m: M) -> bool:
        return self._state[m.context].withdrawn

    def withdrawn_since(self, m: M) -> str | None:
        return self._state[m.context].withdrawn_since

    def joined_all(self) -> bool:
        return not any(s.withdrawn for s in self._state.values())

    def unreachable_since(self, m: M) -> float | None:
        """Monotonic time since which ``m`` is unreachable, or None while it is reachable."""
        st = self._state[m.context]
        times = []
        if st.probe_failed_since is not None and st.probe_failures >= self.failure_threshold:
            times.append(st.probe_failed_since)
        for i in m.informers:
            if not i.connected and i.has_synced():
                times.append(i.disconnected_since if i.disconnected_since is not None else 0.0)
        return min(times) if times else None

    async def until_unreachable(self, m: M) -> None:
        """Return once ``m`` counts as unreachable (at once if it does now); seen within
        a probe's outcome, or ``evaluate``'s tick for a watch that went down."""
        await self._down[m.context].wait()

    def _note_reachability(self, m: M, since: float | None) -> None:
        """Keep ``until_unreachable``'s event in step with ``since`` (``unreachable_since``)."""
        if since is None:
            self._down[m.context].clear()
        else:
            self._down[m.context].set()

    def describe(self) -> list[str]:
        """One line per member that is not part of the merge (for /readyz and logs)."""
        out = []
        now = self._clock()
        for m in self.members:
            st = self._state[m.context]
            if not st.withdrawn:
                continue
            if st.id_pending:
                why = "cluster id not read yet"
            elif not all(i.has_synced() for i in m.informers):
                why = "caches not listed yet"
            else:
                since = self.unreachable_since(m)
                why = f"unreachable for {now - since:.0f}s" if since is not None else "rejoining"
            verb = "withdrawn" if st.joined_once else "not joined"
            err = f" ({st.last_error})" if st.last_error else ""
            out.append(f"member {m.context} {verb}: {why}{err}")
        return out

    # --------------------------------------------------------------- deciding

    def evaluate(self) -> None:
        """Withdraw, join or return members as their state says (see the module doc)."""
        now = self._clock()
        for m in self.members:
            st = self._state[m.context]
            since = self.unreachable_since(m)
            self._note_reachability(m, since)
            if not st.withdrawn:
                if since is not None and now - since >= self.grace:
                    self._withdraw(m, st, now - since)
                continue
            if st.id_pending or since is not None:
                continue
            if not all(i.has_synced() and i.connected for i in m.informers):
                continue
            clash = [
                o.context
                for o in self.members
                if o is not m and o.cluster_id == m.cluster_id and not self.withdrawn(o)
            ]
            if clash:
                st.last_error = f"cluster id {m.cluster_id!r} is also the id of {clash}"
                continue
            self._join(m, st)

    def _withdraw(self, m: M, st: MemberState, unreachable_for: float) -> None:
        st.withdrawn = True
        st.withdrawn_since = format_time(datetime.now(UTC))
        MEMBER_WITHDRAWN.labels(cluster=m.cluster_id).set(1)
        MEMBER_WITHDRAWALS.labels(cluster=m.cluster_id).inc()
        log.warning(
            "member withdrawn: unreachable for longer than the grace period",
            cluster=m.cluster_id,
            context=m.context,
            unreachable_for=round(unreachable_for, 1),
            grace=self.grace,
            error=st.last_error or self._informer_error(m),
        )
        self._on_change(m, True)

    def _join(self, m: M, st: MemberState) -> None:
        st.withdrawn = False
        st.withdrawn_since = None
        st.last_error = None
        MEMBER_WITHDRAWN.labels(cluster=m.cluster_id).set(0)
        log.info(
            "member returned" if st.joined_once else "member joined",
            cluster=m.cluster_id,
            context=m.context,
        )
        st.joined_once = True
        self._on_change(m, False)

    @staticmethod
    def _informer_error(m: HealthMember) -> str | None:
        return next((i.last_error for i in m.informers if i.last_error), None)

    # ------------------------------------------------------------------ running

    async def run(self, tick: float = 0.5) -> None:
        """Probe every member and evaluate every ``tick`` seconds, until cancelled."""
        async with asyncio.TaskGroup() as tg:
            for m in self.members:
                tg.create_task(self._probe_loop(m.context), name=f"probe {m.context}")
            while True:
                self.evaluate()
                await asyncio.sleep(tick)

    def _member(self, context: str) -> M:
        return next(m for m in self.members if m.context == context)

    async def _probe_loop(self, context: str) -> None:
        st = self._state[context]
        while True:
            m = self._member(context)
            started = self._clock()
            try:
                if st.id_pending and self._resolve_id is not None:
                    async with asyncio.timeout(self.probe_timeout * 5):
                        new = await self._resolve_id(m)
                    if new.cluster_id != m.cluster_id:
                        MEMBER_WITHDRAWN.remove(m.cluster_id)
                        MEMBER_WITHDRAWN.labels(cluster=new.cluster_id).set(1)
                    self.members = [new if o.context == context else o for o in self.members]
                    st.id_pending = False
                    log.info("member cluster id read", context=context, cluster=new.cluster_id)
                else:
                    await probe(m.api, self.probe_timeout)
            except (ApiException, OSError, TimeoutError, aiohttp.ClientError, ValueError) as e:
                self.record_probe(
                    context, started, f"health probe failed: {str(e) or type(e).__name__}"
                )
            else:
                self.record_probe(context, started, None)
            await asyncio.sleep(max(0.0, self.probe_period - (self._clock() - started)))

    def record_probe(self, context: str, started: float, error: str | None) -> None:
        """The outcome of one probe of ``context`` that started at ``started``
        (monotonic): ``error`` is why it failed, None when it succeeded."""
        st = self._state[context]
        if error is None:
            if st.probe_failures >= self.failure_threshold:
                log.info("member reachable again", context=context)
            st.probe_failures = 0
            st.probe_failed_since = None
            if not st.withdrawn:
                st.last_error = None
        else:
            if st.probe_failures == 0:
                st.probe_failed_since = started
            st.probe_failures += 1
            st.last_error = error
            if st.probe_failures == self.failure_threshold:
                log.warning("member unreachable", context=context, error=error)
        m = self._member(context)
        self._note_reachability(m, self.unreachable_since(m))
