"""The only place that writes to a cluster: server-side apply of what the plan
wants, status patches, and guarded deletes. Every write is counted in
``mcs_api_writes_total{cluster,verb,resource}``.

Deletes carry a ``uid`` precondition: the object removed is exactly the one the
caller saw (and checked for our ownership label), never a replacement.

At most ``max_in_flight`` writes per cluster are sent at once; more wait their turn.
Each HTTP/1.1 request in flight holds its own TLS connection (about 300 KiB of
buffers), so many workers writing to every cluster at once cost memory without
making the API servers any faster. Turns go by the lane of the key a write is for
(``mcs.runtime.workqueue.current_lane``), then first come first served, and while users'
writes are in flight the others hold only a few slots (``Slots``): the writes of a
new export neither queue behind those of a backlog of EndpointSlice changes nor share
the API server with all of them.

Every write is bounded in time (``mcs.runtime.kubeapi.CALL_TIMEOUT``) and, under leader
election, by ``budget()``: the seconds for which this process is still sure to hold
the lease. With no budget left the write is not sent (``NotLeading``); a write in
flight is abandoned when the budget runs out, so a deposed leader stops writing
before a standby can take the lease. A write that fails or times out raises, and the
work queue retries its key.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import quote

import structlog
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.api import FIELD_MANAGER, KINDS, Obj
from mcs.runtime.kubeapi import CALL_TIMEOUT, request_json
from mcs.runtime.observability import API_WRITE_DURATION, API_WRITE_WAIT, API_WRITES
from mcs.runtime.workqueue import Lane, current_lane

APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"

log = structlog.get_logger(__name__)


MAX_IN_FLIGHT = 16  # writes sent at once to one cluster (``--max-writes-in-flight``)


class NotLeading(RuntimeError):
    """A write was refused because this process may no longer hold the lease."""


def unlimited() -> float:
    return math.inf


class Slots:
    """At most ``n`` writes in flight to one cluster, the writes of urgent keys first.

    A freed slot goes to the waiting write of the earliest lane, the earliest of
    those first. While a write of an ``URGENT`` key holds or waits for a slot, the
    writes of other keys may hold at most ``n // 4`` (at least one): what is
    already in flight is not cut short, but the API server soon serves the user's
    writes beside a few others instead of beside ``n`` of a backlog. The others
    still progress while users write.
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._others_beside_urgent = max(1, n // 4)
        self._held = 0
        self._others_held = 0
        self._urgent = 0  # urgent writes holding or waiting
        self._waiting: list[tuple[Lane, int, asyncio.Future[None]]] = []  # a heap
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def hold(self, lane: Lane) -> AsyncIterator[None]:
        await self._acquire(lane)
        try:
            yield
        finally:
            self._release(lane)

    def _may_take(self, lane: Lane) -> bool:
        if self._held >= self._n:
            return False
        if lane is Lane.URGENT or self._urgent == 0:
            return True
        return self._others_held < self._others_beside_urgent

    def _take(self, lane: Lane) -> None:
        self._held += 1
        if lane is not Lane.URGENT:
            self._others_held += 1

    async def _acquire(self, lane: Lane) -> None:
        if lane is Lane.URGENT:
            self._urgent += 1
        # Nobody who waits could take a slot now (each change that might let one is
        # followed by _hand_out), and waiters of an earlier lane are never blocked: so
        # one that may take a slot jumps no queue.
        if self._may_take(lane):
            self._take(lane)
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (lane, next(self._arrivals), turn))
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._release(lane)  # handed a slot, but cancelled before taking it
            else:
                turn.cancel()  # left in the heap, skipped by _hand_out
                if lane is Lane.URGENT:  # it waited as every slot was held: none is freed
                    self._urgent -= 1
            raise

    def _release(self, lane: Lane) -> None:
        self._held -= 1
        if lane is Lane.URGENT:
            self._urgent -= 1
        else:
            self._others_held -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Hand free slots to the first waiters that may take them (the heap's order:
        if its first may not, no later one may)."""
        while self._waiting:
            lane, _, turn = self._waiting[0]
            if turn.done():
                heapq.heappop(self._waiting)  # cancelled
            elif self._may_take(lane):
                heapq.heappop(self._waiting)
                self._take(lane)
                turn.set_result(None)
            else:
                return


class Writer:
    """Writes to one cluster through its ``ApiClient`` (owned by the caller).

    Requests go through ``ApiClient.call_api`` with raw JSON in and out: the
    generated API methods return ``None`` for an apply that creates (HTTP 201)
    and would turn answers into model objects we do not use.
    """

    def __init__(
        self,
        api: ApiClient,
        cluster: str,
        budget: Callable[[], float] = unlimited,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.cluster = cluster
        self.budget = budget
        self._api = api
        self._slots = Slots(max_in_flight)

    async def _call(
        self,
        method: str,
        plural: str,
        obj: Mapping[str, Any],
        body: Any,
        subresource: str = "",
        content_type: str = APPLY,
        **query: str,
    ) -> Obj:
        meta = obj["metadata"]
        path = KINDS[plural].path(meta["namespace"])
        if method != "POST":
            path += f"/{quote(meta['name'], safe='')}{subresource}"
        lane = current_lane.get()
        labels = {"cluster": self.cluster, "lane": lane.name.lower()}
        asked = time.monotonic()
        async with self._slots.hold(lane):
            API_WRITE_WAIT.labels(**labels).observe(time.monotonic() - asked)
            budget = self.budget()  # read once a slot is ours: the wait used some of it
            if budget <= 0:
                raise NotLeading(
                    f"not writing {plural} {meta.get('namespace')}/{meta.get('name')} "
                    f"to {self.cluster}: the lease may have passed to another instance"
                )
            API_WRITES.labels(
                cluster=self.cluster, verb=method.lower() + subresource, resource=plural
            ).inc()
            log.debug(
                "write",
                cluster=self.cluster,
                verb=method,
                resource=plural,
                namespace=meta.get("namespace"),
                name=meta.get("name"),
            )
            sent = time.monotonic()
            try:
                return await request_json(
                    self._api,
                    method,
                    path,
                    query=query,
                    body=body,
                    content_type=content_type,
                    time_limit=min(CALL_TIMEOUT, budget),
                )
            finally:
                API_WRITE_DURATION.labels(**labels).observe(time.monotonic() - sent)

    async def apply(self, plural: str, obj: Obj) -> Obj:
        """Server-side apply of a whole object as field manager ``mcs-controller``."""
        return await self._call("PATCH", plural, obj, obj, fieldManager=FIELD_MANAGER, force="true")

    async def create(self, plural: str, obj: Obj) -> None:
        """Create ``obj``; one that exists already (same name) is left as it is."""
        try:
            await self._call("POST", plural, obj, obj, content_type="application/json")
        except ApiException as e:
            if e.status != 409:
                raise

    async def patch_status(self, plural: str, obj: Mapping[str, Any], status: Obj) -> Obj:
        """JSON merge patch of ``status`` through the status subresource.

        Not guarded by resourceVersion: the controller is the only writer of these
        statuses (leader election keeps it one process), and the cached object it
        would take the version from may lag behind its own last write."""
        meta = {"name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"]}
        return await self._call(
            "PATCH",
            plural,
            obj,
            {"metadata": meta, "status": status},
            "/status",
            MERGE,
            fieldManager=FIELD_MANAGER,
        )

    async def delete(self, plural: str, obj: Mapping[str, Any]) -> None:
        """Delete ``obj`` if it is still the same object (uid precondition); gone is fine."""
        opts = {"preconditions": {"uid": obj["metadata"]["uid"]}}
        try:
            await self._call("DELETE", plural, obj, opts, content_type="application/json")
        except ApiException as e:
            if e.status != 404:
                raise
