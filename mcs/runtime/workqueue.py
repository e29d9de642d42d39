"""A keyed work queue with client-go's semantics, and the workers that drain it.

The queue (after client-go ``util/workqueue``) is:

* **fair, in lanes**: a key waits in one of three lanes (``Lane``), and keys are
  handed out lane by lane, each lane in the order its keys entered it: ``URGENT``
  (what users write: a new ServiceExport must not wait behind 10,000 keys of
  another controller's EndpointSlices), then ``CHANGE`` (every other event), then
  ``RESYNC`` (the periodic resync, so that 10,000 resync keys never delay a change).
  Adding a waiting key in an earlier lane moves it there;
* **stingy**: a key added many times before it is processed is processed once,
  and a key is never handed to two workers at the same time;
* **re-entrant**: a key added *while* it is being processed is processed again
  after ``done(key)``, in the earliest lane it was added in meanwhile, so no change
  is ever lost;
* **urgent first, also in flight** (optional, ``beside_urgent``): while a key taken
  from ``URGENT`` is in flight, at most ``beside_urgent`` keys of the later lanes are
  in flight. A controller whose event loop is busy gives every ready task a turn in
  each pass, so a user's change took turns with 63 backlog reconciles at every step of
  its way (each watch event read, each write's answer); with fewer beside it, it takes
  turns with fewer. Keys already in flight run on; the later lanes keep going, fewer
  at once, until the urgent keys are done;
* **shut down** explicitly: waiters wake up and get ``None``.

Four structures carry this, each with one invariant:

* ``_lanes``: one deque of ``(key, ticket)`` entries per lane. An entry is live
  while ``_waiting[key]`` is its ticket; an entry left behind when its key moved to
  an earlier lane is stale and skipped (and dropped in bulk once a lane holds more
  stale entries than live ones, so a lane that is never reached cannot grow);
* ``_waiting``: the ticket of every key waiting in a lane (never in ``_processing``);
* ``_dirty``: every key that needs processing (waiting, or in flight and re-added
  meanwhile), with the earliest lane it was added in;
* ``_processing``: the keys handed out by ``get`` and not yet ``done``, with the
  lane each was taken from (``taken_from``). These may be in ``_dirty`` at the same
  time. ``_urgent_in_flight`` counts those taken from ``URGENT``.

``run_workers`` sets ``current_lane`` for each reconcile, so that what the reconcile
does downstream (its writes: ``mcs.runtime.writer``) can go ahead of the backlog too.

Delays (``add_after``) are ``loop.call_later`` timers, at most one per key
(an earlier deadline replaces a later one), all cancelled by ``shutdown``.
Per-key exponential backoff (``add_rate_limited``) counts failures until
``forget``. The queue is not thread-safe: use it from one event loop.

``run_workers`` is the retry policy, kept out of the reconcile as in client-go's
``handleErr`` and controller-runtime's ``reconcileHandler``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

import structlog

from mcs.runtime.observability import (
    CONTROLLER,
    PROPAGATION,
    RECONCILE_DURATION,
    RECONCILE_ERRORS,
    RECONCILES,
    TERMINAL_RECONCILE_ERRORS,
    WORKQUEUE_ADDS,
    WORKQUEUE_DEPTH,
    WORKQUEUE_LONGEST,
    WORKQUEUE_QUEUE_DURATION,
    WORKQUEUE_RETRIES,
    WORKQUEUE_UNFINISHED,
    WORKQUEUE_WAIT,
    WORKQUEUE_WORK_DURATION,
)

__all__ = [
    "ExponentialBackoff",
    "Handler",
    "Lane",
    "TerminalError",
    "WorkQueue",
    "current_lane",
    "run_workers",
]

K = TypeVar("K", bound=Hashable)

log = structlog.get_logger(__name__)


class ExponentialBackoff(Generic[K]):
    """Per-key exponential backoff: ``min(base * 2**failures, cap)`` seconds.

    ``next_delay(key)`` returns the delay for the key's next retry and counts
    one more failure; ``forget(key)`` resets the count (call it on success).
    With the defaults the delays are 5 ms, 10 ms, 20 ms, ... up to 30 s.
    Pure bookkeeping, no clock.
    """

    def __init__(self, *, base: float = 0.005, cap: float = 30.0) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._failures: dict[K, int] = {}

    def next_delay(self, key: K) -> float:
        """The delay before retrying ``key``; counts one failure."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        # Bound the exponent: 2**1100 does not convert to a float.
        return min(self.base * 2.0 ** min(failures, 64), self.cap)

    def failures(self, key: K) -> int:
        """How many failures of ``key`` have been counted since the last ``forget``."""
        return self._failures.get(key, 0)

    def forget(self, key: K) -> None:
        """Reset the failure count of ``key``."""
        self._failures.pop(key, None)


class Lane(enum.IntEnum):
    """Where an added key waits: every key of an earlier lane is handed out first."""

    URGENT = 0
    """What users write (ServiceExports, Services): the changes someone waits for."""
    CHANGE = 1
    """Every other event: other controllers' objects, our own, other clusters'."""
    RESYNC = 2
    """The periodic resync: a safety net, behind every change."""


current_lane: ContextVar[Lane] = ContextVar("current_lane", default=Lane.CHANGE)
"""The lane of the key the running task reconciles (set by ``run_workers``; tasks the
reconcile starts inherit it). Outside a reconcile: ``CHANGE``."""


class WorkQueue(Generic[K]):
    """Keys in three FIFO lanes (``Lane``). A key is never handed to two workers at once;
    adding a key that is already waiting is a no-op (or moves it to an earlier lane);
    adding one that is in flight re-runs it after ``done(key)``.

    Every key obtained from ``get()`` must be passed to ``done()`` exactly once,
    whatever the outcome (``run_workers`` does this). After ``shutdown()``,
    ``get()`` returns ``None`` at once (keys still queued are not handed out),
    adds are ignored, and pending timers are cancelled; keys in flight may
    still be passed to ``done``.

    With ``beside_urgent``, ``get()`` hands out a key of a later lane only while fewer
    than that many are in flight beside an urgent one (see the module docstring).

    Metrics: client-go's ``workqueue_*`` (depth, adds, queue and work duration, retries,
    unfinished work, longest-running processor), labelled ``name`` and ``controller``
    with ``name`` as controller-runtime does; the gauges are read at scrape time from the
    queue most recently created under that name.

    Resource handling: the only resources are ``call_later`` timers, all
    cancelled by ``shutdown()``; call it when the queue is no longer needed.
    """

    def __init__(
        self,
        *,
        backoff: ExponentialBackoff[K] | None = None,
        beside_urgent: int | None = None,
        name: str = CONTROLLER,
    ) -> None:
        if beside_urgent is not None and beside_urgent < 1:
            raise ValueError(f"beside_urgent must be at least 1, got {beside_urgent}")
        self.name = name
        labels = {"name": name, "controller": name}
        self._adds = WORKQUEUE_ADDS.labels(**labels)
        self._retries = WORKQUEUE_RETRIES.labels(**labels)
        self._queue_duration = WORKQUEUE_QUEUE_DURATION.labels(**labels)
        self._work_duration = WORKQUEUE_WORK_DURATION.labels(**labels)
        WORKQUEUE_DEPTH.labels(**labels).set_function(lambda: len(self._waiting))
        WORKQUEUE_UNFINISHED.labels(**labels).set_function(self.unfinished_work)
        WORKQUEUE_LONGEST.labels(**labels).set_function(self.longest_running)
        self._started: dict[K, float] = {}  # when each key in flight was taken
        self._added: dict[K, float] = {}  # when each dirty key became dirty
        self._added_in_flight: dict[K, float] = {}  # the same, for each key in flight
        self._beside_urgent = beside_urgent
        self._lanes = tuple(collections.deque[tuple[K, int]]() for _ in Lane)
        self._stale = [0 for _ in Lane]
        self._waiting: dict[K, int] = {}
        self._dirty: dict[K, Lane] = {}
        self._since: dict[K, float] = {}  # when each waiting key entered its lane
        self._processing: dict[K, Lane] = {}
        self._urgent_in_flight = 0
        self._tickets = itertools.count()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._backoff: ExponentialBackoff[K] = backoff or ExponentialBackoff()
        self._shutting_down = False

    # ------------------------------------------------------------------ adding

    def add(self, key: K, lane: Lane = Lane.CHANGE) -> None:
        """Mark ``key`` as needing processing, in ``lane``. Idempotent while it waits in
        ``lane`` or an earlier one; a key waiting in a later lane moves to the end of
        ``lane`` (a key in flight runs again after ``done``, in the earliest lane asked)."""
        if self._shutting_down:
            return
        asked = self._dirty.get(key)
        if asked is not None and asked <= lane:
            return
        self._dirty[key] = lane
        if asked is None:
            self._adds.inc()
            self._added[key] = time.monotonic()
        if key in self._processing:
            return  # done() queues it
        self._enter(key, lane)
        if asked is not None:
            self._left(asked)  # its entry there is stale now
        self._wake_takers()

    def _enter(self, key: K, lane: Lane) -> None:
        ticket = next(self._tickets)
        self._waiting[key] = ticket
        self._since[key] = time.monotonic()
        self._lanes[lane].append((key, ticket))

    def _left(self, lane: Lane) -> None:
        """A key waiting in ``lane`` has moved to an earlier one; drop the stale entries
        once they outnumber the live ones (amortised O(1) per move)."""
        self._stale[lane] += 1
        entries = self._lanes[lane]
        if 2 * self._stale[lane] > len(entries):
            live = [(k, t) for k, t in entries if self._waiting.get(k) == t]
            entries.clear()
            entries.extend(live)
            self._stale[lane] = 0

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` after ``delay`` seconds (at once if ``delay <= 0``).

        A key already waiting for a timer keeps the earlier of the two
        deadlines; a key added earlier is still processed only once.
        """
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= when:
                return
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: K) -> None:
        del self._timers[key]
        self.add(key)

    def add_rate_limited(self, key: K) -> None:
        """Add ``key`` after its backoff delay, and count one more failure."""
        self._retries.inc()
        self.add_after(key, self._backoff.next_delay(key))

    def forget(self, key: K) -> None:
        """Reset the backoff of ``key`` (after a success or a terminal failure).

        Does not cancel a pending delayed add.
        """
        self._backoff.forget(key)

    def num_requeues(self, key: K) -> int:
        """Failures of ``key`` since its last ``forget``."""
        return self._backoff.failures(key)

    # ----------------------------------------------------------------- taking

    async def get(self) -> K | None:
        """Wait for the next key and mark it as being processed.

        Returns ``None`` once the queue is shut down. Cancel-safe: a key is
        never lost when the waiting task is cancelled.
        """
        while not self._may_take():
            if self._shutting_down:
                return None
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                # We were woken for a key we will not take: pass the wake-up on.
                if not getter.cancelled():
                    self._wake_takers()
                raise
        if self._shutting_down:
            return None
        key, lane = self._next()
        del self._waiting[key], self._dirty[key]
        now = time.monotonic()
        waited = now - self._since.pop(key)
        WORKQUEUE_WAIT.labels(lane=lane.name.lower()).observe(waited)
        self._queue_duration.observe(waited)
        self._processing[key] = lane
        self._started[key] = now
        self._added_in_flight[key] = self._added.pop(key, now)
        if lane is Lane.URGENT:
            self._urgent_in_flight += 1
        return key

    def _may_take(self) -> bool:
        """Whether a ``get`` may take a key now."""
        return self._takers() > 0

    def _takers(self) -> int:
        """How many ``get``s may take a key now: one per waiting key, but while an urgent
        key is in flight, one per waiting urgent key and per free place beside it
        (``beside_urgent``)."""
        if self._beside_urgent is None or not self._urgent_in_flight:
            return len(self._waiting)
        beside = len(self._processing) - self._urgent_in_flight
        urgent = len(self._lanes[Lane.URGENT]) - self._stale[Lane.URGENT]
        free = max(0, self._beside_urgent - beside)
        return min(len(self._waiting), urgent + free)

    def _next(self) -> tuple[K, Lane]:
        """Take the first live entry of the earliest lane (one exists: ``_waiting``)."""
        for lane, entries in zip(Lane, self._lanes, strict=True):
            while entries:
                key, ticket = entries.popleft()
                if self._waiting.get(key) == ticket:
                    return key, lane
                self._stale[lane] -= 1
        raise AssertionError("a waiting key has no entry in any lane")

    def added_at(self, key: K) -> float:
        """When ``key`` (in flight) was added (``time.monotonic``): the add that made it
        need processing this time."""
        return self._added_in_flight[key]

    def taken_from(self, key: K) -> Lane:
        """The lane ``key`` (in flight: from ``get``, not yet ``done``) was taken from."""
        return self._processing[key]

    def done(self, key: K) -> None:
        """Mark ``key`` as processed; re-queue it if it was added meanwhile."""
        if self._processing.pop(key, None) is Lane.URGENT:
            self._urgent_in_flight -= 1
        started = self._started.pop(key, None)
        if started is not None:
            self._work_duration.observe(time.monotonic() - started)
        self._added_in_flight.pop(key, None)
        lane = self._dirty.get(key)
        if lane is not None and not self._shutting_down:
            self._enter(key, lane)
        self._wake_takers()

    def _wake_takers(self) -> None:
        """Wake as many waiting getters as may take a key now (one woken for a key
        another took first waits again)."""
        wanted = self._takers()
        while self._getters and wanted > 0:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                wanted -= 1

    # -------------------------------------------------------------- lifecycle

    def shutdown(self) -> None:
        """Stop handing out keys: wake every waiter (they get ``None``), drop
        later adds and cancel pending timers. Idempotent."""
        self._shutting_down = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    @property
    def shutting_down(self) -> bool:
        """True after ``shutdown()``."""
        return self._shutting_down

    def unfinished_work(self) -> float:
        """Seconds of work in flight: the sum over keys taken and not yet done."""
        now = time.monotonic()
        return sum(now - t for t in self._started.values())

    def longest_running(self) -> float:
        """Seconds the key longest in flight has been processed (0 when none is)."""
        return time.monotonic() - min(self._started.values()) if self._started else 0.0

    def waiting(self) -> dict[Lane, int]:
        """Keys waiting to be handed out, per lane."""
        return {lane: len(e) - s for lane, e, s in zip(Lane, self._lanes, self._stale, strict=True)}

    def __len__(self) -> int:
        """Keys waiting to be handed out (not in flight, not delayed)."""
        return len(self._waiting)

    def __repr__(self) -> str:
        waiting = " ".join(f"{lane.name.lower()}={n}" for lane, n in self.waiting().items())
        return (
            f"<WorkQueue {waiting} "
            f"processing={len(self._processing)} "
            f"delayed={len(self._timers)} shutting_down={self._shutting_down}>"
        )


# --------------------------------------------------------------------- workers


class TerminalError(Exception):
    """Raised by a handler when retrying cannot help (e.g. a key naming an
    unknown cluster): the failure is logged and the key is not retried."""


Handler = Callable[[K], Awaitable[float | None]]
"""Processes one key. Returns ``None``, or a delay in seconds after which the key
should be processed again (a known future moment, not a poll); raises to retry
with backoff, or ``TerminalError`` to give up on this key."""


def _key_context(key: Hashable) -> dict[str, Any]:
    """Log context for a key: ``namespace``/``name`` for ``(ns, name)`` keys."""
    if isinstance(key, tuple) and len(key) == 2 and all(isinstance(p, str) for p in key):
        return {"namespace": key[0], "name": key[1]}
    return {"key": key}


async def _worker(queue: WorkQueue[K], handler: Handler[K]) -> None:
    while (key := await queue.get()) is not None:
        with structlog.contextvars.bound_contextvars(
            **_key_context(key), reconcile_id=uuid.uuid4().hex[:12]
        ):
            started = time.perf_counter()
            token = current_lane.set(queue.taken_from(key))
            try:
                requeue_after = await handler(key)
            except TerminalError:
                RECONCILES.labels(controller=queue.name, result="error").inc()
                RECONCILE_ERRORS.labels(controller=queue.name).inc()
                TERMINAL_RECONCILE_ERRORS.labels(controller=queue.name).inc()
                log.exception("reconcile failed, not retrying")
                queue.forget(key)
            except Exception:
                RECONCILES.labels(controller=queue.name, result="error").inc()
                RECONCILE_ERRORS.labels(controller=queue.name).inc()
                log.exception("reconcile failed, will retry", retries=queue.num_requeues(key))
                queue.add_rate_limited(key)
            else:
                result = "success" if requeue_after is None else "requeue_after"
                PROPAGATION.labels(lane=queue.taken_from(key).name.lower()).observe(
                    time.monotonic() - queue.added_at(key)
                )
                RECONCILES.labels(controller=queue.name, result=result).inc()
                queue.forget(key)
                if requeue_after is not None:
                    queue.add_after(key, requeue_after)
            finally:
                current_lane.reset(token)
                RECONCILE_DURATION.labels(controller=queue.name).observe(
                    time.perf_counter() - started
                )
                queue.done(key)
        # A reconcile that writes nothing never awaits, and ``get`` does not either
        # while keys are queued: without this, a resync of 10,000 keys held the event
        # loop for seconds (watches, health probes and lease renewals starved).
        await asyncio.sleep(0)


async def run_workers(queue: WorkQueue[K], handler: Handler[K], *, concurrency: int) -> None:
    """Process keys from ``queue`` with ``concurrency`` worker tasks until the queue
    is shut down.

    Each worker takes a key, calls ``handler(key)`` and then, as the outcome says:

    * success: ``forget`` the key's backoff, and ``add_after`` if the handler
      returned a delay;
    * ``TerminalError``: log it, ``forget``, no retry;
    * any other ``Exception``: log it, ``add_rate_limited`` (retry with backoff).

    and always ``done(key)``. Logs are bound to ``namespace``/``name`` (or
    ``key``) and a fresh ``reconcile_id``; the outcome and duration go to
    controller-runtime's ``controller_runtime_reconcile_*`` metrics (label
    ``controller``: the queue's name).

    Shutdown: after ``queue.shutdown()`` each worker finishes its current key
    and exits, and this function returns. Cancelling it cancels every worker
    (interrupting the handlers) and waits for them. The workers live in a
    ``TaskGroup``; none outlives this call.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    async with asyncio.TaskGroup() as tg:
        for i in range(concurrency):
            tg.create_task(_worker(queue, handler), name=f"worker-{i}")
