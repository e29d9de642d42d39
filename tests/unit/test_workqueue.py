"""Unit tests for mcs.runtime.workqueue: client-go queue semantics, backoff and workers."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.runtime.observability import REGISTRY
from mcs.runtime.workqueue import (
    ExponentialBackoff,
    Lane,
    TerminalError,
    WorkQueue,
    current_lane,
    run_workers,
)

Key = tuple[str, str]
A: Key = ("ns", "a")
B: Key = ("ns", "b")
C: Key = ("ns", "c")


async def take(queue: WorkQueue[Key], within: float = 10) -> Key | None:
    return await asyncio.wait_for(queue.get(), within)


async def test_adds_before_processing_collapse_into_one() -> None:
    """A key added many times while waiting is handed out once, in FIFO order."""
    queue: WorkQueue[Key] = WorkQueue()
    for key in (A, B, A, A, C, B):
        queue.add(key)
    assert len(queue) == 3
    assert [await take(queue) for _ in range(3)] == [A, B, C]
    assert len(queue) == 0
    queue.shutdown()


async def test_key_in_flight_is_not_handed_out_again() -> None:
    """A key being processed is never given to a second worker."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A)
    assert await take(queue) == A
    queue.add(A)
    assert len(queue) == 0
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not second.done()
    queue.done(A)
    assert await asyncio.wait_for(second, 10) == A
    queue.done(A)
    queue.shutdown()


async def test_readd_during_processing_runs_again_once_after_done() -> None:
    """Adds during processing collapse into one re-run after done()."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A)
    assert await take(queue) == A
    queue.add(A)
    queue.add(A)
    queue.add(B)
    queue.done(A)
    assert [await take(queue), await take(queue)] == [B, A]
    queue.done(A)
    queue.done(B)
    assert len(queue) == 0
    queue.shutdown()


async def test_lanes_hand_out_urgent_then_changes_then_resync() -> None:
    """Keys come out lane by lane (URGENT, CHANGE, RESYNC), each lane in the order its keys
    entered it, even keys added later; a waiting key added in an earlier lane moves there
    (to its end) and is handed out once; adding it in a later lane changes nothing."""
    queue: WorkQueue[Key] = WorkQueue()
    D: Key = ("ns", "d")
    E: Key = ("ns", "e")
    for key in (A, B, C):
        queue.add(key, Lane.RESYNC)
    queue.add(D)
    queue.add(B)  # an event for B: ahead of the resync, behind D
    queue.add(B, Lane.RESYNC)  # no-op: B already waits earlier
    queue.add(E, Lane.URGENT)
    queue.add(D, Lane.URGENT)  # D moves behind E
    queue.add(D)  # no-op
    assert len(queue) == 5
    assert [await take(queue) for _ in range(5)] == [E, D, B, A, C]
    assert len(queue) == 0
    for key in (A, B, C, D, E):
        queue.done(key)
    assert len(queue) == 0
    queue.shutdown()


async def test_readd_in_flight_runs_again_in_the_earliest_lane_asked() -> None:
    """A key re-added while in flight waits, after done(), in the earliest lane it was
    re-added in: a resync does not jump ahead of changes, an export does."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A)
    assert await take(queue) == A
    queue.add(A, Lane.RESYNC)
    queue.add(B)
    queue.done(A)
    assert [await take(queue), await take(queue)] == [B, A]
    queue.done(B)
    queue.add(C)
    queue.add(A, Lane.RESYNC)
    queue.add(A, Lane.URGENT)
    queue.done(A)
    assert [await take(queue), await take(queue)] == [A, C]
    queue.shutdown()


async def test_a_key_back_in_a_lane_it_left_waits_at_its_new_place() -> None:
    """A key that moved out of a lane, ran, and was added to that lane again waits behind
    the keys that were there before it came back (not at its old, stale place)."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A, Lane.RESYNC)
    queue.add(B, Lane.RESYNC)
    queue.add(A)  # A leaves RESYNC
    assert await take(queue) == A
    queue.done(A)
    queue.add(A, Lane.RESYNC)
    assert [await take(queue), await take(queue)] == [B, A]
    queue.shutdown()


async def test_a_lane_never_reached_does_not_grow() -> None:
    """Keys that keep moving out of a lane nobody reaches leave no pile of stale entries."""
    queue: WorkQueue[Key] = WorkQueue()
    keys = [("ns", str(i)) for i in range(100)]
    for _ in range(50):
        for key in keys:
            queue.add(key, Lane.RESYNC)
        for key in keys:
            queue.add(key)  # an event: the key moves out of RESYNC
        for _ in keys:
            got = await take(queue)
            assert got is not None
            queue.done(got)
    assert len(queue) == 0
    assert sum(map(len, queue._lanes)) <= 2 * len(keys)
    queue.shutdown()


async def test_done_without_readd_does_not_requeue() -> None:
    """done() on a key nobody re-added leaves the queue empty."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A)
    assert await take(queue) == A
    queue.done(A)
    assert len(queue) == 0
    queue.shutdown()


def test_backoff_doubles_from_base_and_is_capped() -> None:
    """Delays are base * 2**failures, capped; keys are independent."""
    backoff: ExponentialBackoff[Key] = ExponentialBackoff(base=0.005, cap=0.1)
    delays = [backoff.next_delay(A) for _ in range(8)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.1, 0.1, 0.1])
    assert backoff.failures(A) == 8
    assert backoff.next_delay(B) == pytest.approx(0.005)


def test_backoff_survives_huge_failure_counts() -> None:
    """Thousands of failures still give the cap, not an OverflowError."""
    backoff: ExponentialBackoff[Key] = ExponentialBackoff(base=0.005, cap=30.0)
    for _ in range(2000):
        delay = backoff.next_delay(A)
    assert delay == 30.0


def test_forget_resets_backoff() -> None:
    """After forget() the next delay is the base delay again."""
    backoff: ExponentialBackoff[Key] = ExponentialBackoff(base=0.005, cap=1.0)
    for _ in range(5):
        backoff.next_delay(A)
    backoff.forget(A)
    assert backoff.failures(A) == 0
    assert backoff.next_delay(A) == pytest.approx(0.005)


async def test_add_rate_limited_waits_for_backoff_and_forget_resets() -> None:
    """Rate-limited adds arrive after the growing per-key delay; forget resets it."""
    loop = asyncio.get_running_loop()
    queue: WorkQueue[Key] = WorkQueue(backoff=ExponentialBackoff(base=0.02, cap=1.0))
    for expected in (0.02, 0.04):
        start = loop.time()
        queue.add_rate_limited(A)
        assert len(queue) == 0
        assert await take(queue) == A
        assert loop.time() - start >= expected * 0.9
        queue.done(A)
    assert queue.num_requeues(A) == 2
    queue.forget(A)
    assert queue.num_requeues(A) == 0
    queue.shutdown()


async def test_add_after_delays_and_keeps_the_earlier_deadline() -> None:
    """A delayed key arrives after its delay; a second, earlier add_after wins."""
    loop = asyncio.get_running_loop()
    queue: WorkQueue[Key] = WorkQueue()
    start = loop.time()
    queue.add_after(A, 5.0)
    queue.add_after(A, 0.03)
    queue.add_after(A, 1.0)  # later than the pending deadline: ignored
    assert len(queue) == 0
    assert await take(queue) == A
    elapsed = loop.time() - start
    assert 0.025 <= elapsed < 0.9  # the 1 s add was ignored, the 5 s one replaced
    queue.done(A)
    queue.shutdown()


async def test_add_after_of_waiting_key_is_processed_once() -> None:
    """A key that is both queued and delayed is processed once per add."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add(A)
    queue.add_after(A, 0.02)
    assert await take(queue) == A
    queue.done(A)
    assert await take(queue) == A  # the timer fired after the first run
    queue.done(A)
    with pytest.raises(TimeoutError):
        await take(queue, within=0.05)
    queue.shutdown()


async def test_add_after_zero_adds_at_once() -> None:
    """A non-positive delay is a plain add."""
    queue: WorkQueue[Key] = WorkQueue()
    queue.add_after(A, 0)
    assert len(queue) == 1
    queue.shutdown()


async def test_shutdown_wakes_waiters_and_cancels_timers() -> None:
    """shutdown() makes pending and later get() return None and drops timers and adds."""
    queue: WorkQueue[Key] = WorkQueue()
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    queue.add_after(B, 0.01)
    await asyncio.sleep(0)
    queue.shutdown()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 10) == [None, None, None]
    queue.add(A)
    assert len(queue) == 0
    await asyncio.sleep(0.03)
    assert await take(queue) is None
    assert "delayed=0" in repr(queue)


async def test_cancelled_getter_does_not_lose_a_key() -> None:
    """A waiter cancelled after being woken passes the wake-up to another waiter."""
    queue: WorkQueue[Key] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add(A)  # wakes `first`
    first.cancel()
    assert await asyncio.wait_for(second, 10) == A
    with pytest.raises(asyncio.CancelledError):
        await first
    queue.shutdown()


async def test_workers_bounded_concurrency_and_one_key_at_a_time() -> None:
    """At most `concurrency` handlers run at once and never two for the same key."""
    queue: WorkQueue[Key] = WorkQueue()
    running: set[Key] = set()
    peak = 0
    calls: list[Key] = []
    overlaps: list[Key] = []

    async def handler(key: Key) -> None:
        nonlocal peak
        if key in running:  # an assert here would be caught and retried by the worker
            overlaps.append(key)
        running.add(key)
        peak = max(peak, len(running))
        calls.append(key)
        await asyncio.sleep(0.01)
        running.discard(key)

    keys = [("ns", f"k{i}") for i in range(10)]
    workers = asyncio.create_task(run_workers(queue, handler, concurrency=3))
    for key in keys:
        queue.add(key)
    await asyncio.sleep(0.005)
    for key in keys:  # re-adds while many are in flight
        queue.add(key)
    for _ in range(100):  # idle: nothing in flight and nothing queued
        await asyncio.sleep(0.01)
        if not running and len(queue) == 0:
            break
    queue.shutdown()
    await asyncio.wait_for(workers, 10)
    assert overlaps == []
    assert peak == 3
    assert sorted(set(calls)) == sorted(keys)
    assert len(calls) <= 20  # each key at most twice: once, and once for the re-add


async def test_workers_retry_failures_with_backoff_then_forget() -> None:
    """A failing key is retried with backoff; success forgets the failure count."""
    queue: WorkQueue[Key] = WorkQueue(backoff=ExponentialBackoff(base=0.005, cap=0.05))
    attempts: list[Key] = []
    done = asyncio.Event()

    async def handler(key: Key) -> None:
        attempts.append(key)
        if len(attempts) < 3:
            raise RuntimeError("boom")
        done.set()

    errors = ("controller_runtime_reconcile_errors_total", {"controller": "mcs"})
    before = REGISTRY.get_sample_value(*errors) or 0.0
    workers = asyncio.create_task(run_workers(queue, handler, concurrency=2))
    queue.add(A)
    await asyncio.wait_for(done.wait(), 10)
    await asyncio.sleep(0)  # let the worker finish bookkeeping
    assert attempts == [A, A, A]
    assert queue.num_requeues(A) == 0
    assert REGISTRY.get_sample_value(*errors) == before + 2
    queue.shutdown()
    await asyncio.wait_for(workers, 10)


async def test_workers_terminal_error_is_not_retried_and_requeue_after_is() -> None:
    """TerminalError drops the key; a returned delay processes it again later."""
    queue: WorkQueue[Key] = WorkQueue()
    calls: list[Key] = []
    again = asyncio.Event()

    async def handler(key: Key) -> float | None:
        calls.append(key)
        if key == A:
            raise TerminalError("unknown cluster")
        if calls.count(B) == 2:
            again.set()
        return 0.02 if calls.count(B) == 1 else None

    workers = asyncio.create_task(run_workers(queue, handler, concurrency=1))
    queue.add(A)
    queue.add(B)
    # An event, not a fixed sleep: logging A's traceback may take a while on a busy machine.
    await asyncio.wait_for(again.wait(), 5)
    await asyncio.sleep(0.1)  # room for a wrong third call of B, or a retry of A
    queue.shutdown()
    await asyncio.wait_for(workers, 10)
    assert calls == [A, B, B]
    assert queue.num_requeues(A) == 0


async def test_a_reconcile_and_the_tasks_it_starts_know_the_lane_of_their_key() -> None:
    """``current_lane`` is the lane the worker took the key from, in the handler and in
    the tasks it starts (so that its writes go by it), and its wait in that lane is
    observed in ``mcs_workqueue_wait_seconds``; outside a reconcile it is ``CHANGE``."""
    queue: WorkQueue[Key] = WorkQueue()
    seen: dict[Key, tuple[Lane, Lane]] = {}
    all_seen = asyncio.Event()

    async def lane_in_a_task() -> Lane:
        return current_lane.get()

    async def handler(key: Key) -> None:
        inner = asyncio.create_task(lane_in_a_task())
        seen[key] = (current_lane.get(), await inner)
        if len(seen) == 3:
            all_seen.set()

    def waited(lane: Lane) -> float:
        labels = {"lane": lane.name.lower()}
        return REGISTRY.get_sample_value("mcs_workqueue_wait_seconds_count", labels) or 0.0

    before = {lane: waited(lane) for lane in Lane}
    queue.add(A, Lane.RESYNC)
    queue.add(B, Lane.URGENT)
    queue.add(C)
    workers = asyncio.create_task(run_workers(queue, handler, concurrency=2))
    await asyncio.wait_for(all_seen.wait(), 10)
    queue.shutdown()
    await asyncio.wait_for(workers, 10)
    assert seen == {
        A: (Lane.RESYNC, Lane.RESYNC),
        B: (Lane.URGENT, Lane.URGENT),
        C: (Lane.CHANGE, Lane.CHANGE),
    }
    assert {lane: waited(lane) - before[lane] for lane in Lane} == {lane: 1 for lane in Lane}
    assert current_lane.get() == Lane.CHANGE


async def test_cancelling_run_workers_cancels_handlers() -> None:
    """Cancelling the runner interrupts in-flight handlers and leaves no task behind."""
    queue: WorkQueue[Key] = WorkQueue()
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def handler(key: Key) -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    workers = asyncio.create_task(run_workers(queue, handler, concurrency=2))
    queue.add(A)
    await asyncio.wait_for(started.wait(), 10)
    workers.cancel()
    with pytest.raises(asyncio.CancelledError):
        await workers
    assert cancelled.is_set()
    queue.shutdown()
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and "worker" in t.get_name()] == []


async def test_run_workers_rejects_zero_concurrency() -> None:
    """concurrency must be positive."""
    queue: WorkQueue[Key] = WorkQueue()
    with pytest.raises(ValueError):
        await run_workers(queue, lambda key: asyncio.sleep(0), concurrency=0)
    queue.shutdown()


async def test_workers_let_other_tasks_run_between_keys() -> None:
    """Reconciles that never await (a resync that writes nothing) must not hold the
    event loop for the whole queue: watches, probes and lease renewals run between keys."""
    queue: WorkQueue[Key] = WorkQueue()
    for i in range(200):
        queue.add(("ns", f"k{i}"))
    order: list[str] = []

    async def handler(key: Key) -> None:
        order.append("key")
        if len(order) >= 200 + order.count("tick"):
            queue.shutdown()

    async def ticker() -> None:
        while True:
            order.append("tick")
            await asyncio.sleep(0)

    tick = asyncio.create_task(ticker())
    await asyncio.wait_for(run_workers(queue, handler, concurrency=4), 5)
    tick.cancel()
    first, last = order.index("key"), len(order) - order[::-1].index("key")
    assert order[first:last].count("tick") >= 200 / 4 - 1


async def test_beside_an_urgent_key_only_so_many_others_are_in_flight() -> None:
    """With ``beside_urgent=2``: while an urgent key is in flight, a third key of a later
    lane waits for one of the two to be done; another urgent key does not wait; once no
    urgent key is in flight, the later lanes are handed out freely again."""
    queue: WorkQueue[Key] = WorkQueue(beside_urgent=2)
    others = [("ns", f"c{i}") for i in range(5)]
    queue.add(A, Lane.URGENT)
    for key in others:
        queue.add(key)
    assert [await take(queue) for _ in range(3)] == [A, *others[:2]]
    third = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not third.done(), "two keys beside an urgent one are in flight"
    queue.add(B, Lane.URGENT)
    assert await asyncio.wait_for(third, 10) == B, "an urgent key does not wait"
    third = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not third.done()
    queue.done(others[0])
    assert await asyncio.wait_for(third, 10) == others[2]
    fourth = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not fourth.done()
    queue.done(A)
    await asyncio.sleep(0.01)
    assert not fourth.done(), "B is still in flight"
    queue.done(B)
    assert await asyncio.wait_for(fourth, 10) == others[3]
    assert await take(queue) == others[4], "no urgent key in flight: no limit"
    queue.shutdown()


async def test_workers_run_few_other_keys_beside_an_urgent_one() -> None:
    """8 workers, ``beside_urgent=1``: while the urgent key's reconcile runs, at most one
    other key is reconciled at once; before and after it, up to 8."""
    queue: WorkQueue[Key] = WorkQueue(beside_urgent=1)
    urgent_running = asyncio.Event()
    release = asyncio.Event()
    running: set[Key] = set()
    most_beside = most_alone = 0

    async def handler(key: Key) -> None:
        nonlocal most_beside, most_alone
        if key == A:
            urgent_running.set()
            await release.wait()
            urgent_running.clear()
            return
        running.add(key)
        if urgent_running.is_set():
            most_beside = max(most_beside, len(running))
        else:
            most_alone = max(most_alone, len(running))
        await asyncio.sleep(0.005)
        running.discard(key)

    for i in range(40):
        queue.add(("ns", f"c{i}"))
    queue.add(A, Lane.URGENT)
    workers = asyncio.create_task(run_workers(queue, handler, concurrency=8))
    await asyncio.wait_for(urgent_running.wait(), 10)
    for i in range(40, 80):
        queue.add(("ns", f"c{i}"))
    await asyncio.sleep(0.2)
    release.set()
    await asyncio.sleep(0.2)
    queue.shutdown()
    await asyncio.wait_for(workers, 10)
    assert most_beside == 1
    assert most_alone == 7 or most_alone == 8


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([*Lane, "get", "done"]), st.sampled_from([A, B, C])),
        max_size=40,
    ),
    st.sampled_from([None, 1]),
)
async def test_queue_against_a_model(
    ops: list[tuple[Lane | str, Key]], beside_urgent: int | None
) -> None:
    """Random adds (in any lane), gets and dones against a plain model: each waiting key
    is handed out once, never while in flight, lane by lane and in each lane in the order
    keys entered it, re-runs in the earliest lane asked, and nothing is lost; with
    ``beside_urgent``, a get waits while an urgent key and that many others are in
    flight and no urgent key waits."""
    queue: WorkQueue[Key] = WorkQueue(beside_urgent=beside_urgent)
    lanes: list[list[Key]] = [[] for _ in Lane]  # the model: waiting keys, in order
    flight: dict[Key, Lane] = {}  # in flight, and the lane each was taken from
    rerun: dict[Key, Lane] = {}  # re-added while in flight, and the earliest lane asked

    def waiting() -> list[Key]:
        return [key for lane in lanes for key in lane]

    def finish(key: Key) -> None:
        del flight[key]
        queue.done(key)
        if key in rerun:
            lanes[rerun.pop(key)].append(key)

    def held_back() -> bool:
        urgent = sum(lane is Lane.URGENT for lane in flight.values())
        return (
            beside_urgent is not None
            and urgent > 0
            and not lanes[Lane.URGENT]
            and len(flight) - urgent >= beside_urgent
        )

    for op, key in ops:
        if isinstance(op, Lane):
            if key in flight:
                rerun[key] = min(op, rerun.get(key, op))
            else:
                now = next((lane for lane in Lane if key in lanes[lane]), None)
                if now is None or op < now:
                    if now is not None:
                        lanes[now].remove(key)
                    lanes[op].append(key)
            queue.add(key, op)
        elif op == "get" and waiting() and held_back():
            getter = asyncio.create_task(queue.get())
            await asyncio.sleep(0)
            assert not getter.done()
            getter.cancel()
            await asyncio.gather(getter, return_exceptions=True)
        elif op == "get" and waiting():
            want = waiting()[0]
            taken_from = next(lane for lane in Lane if want in lanes[lane])
            lanes[taken_from].remove(want)
            assert await take(queue) == want
            flight[want] = taken_from
        elif op == "done" and key in flight:
            finish(key)
        assert len(queue) == len(waiting())
        assert queue.waiting() == {lane: len(lanes[lane]) for lane in Lane}
    for key in list(flight):
        finish(key)
    for want in waiting():
        assert await take(queue) == want
        queue.done(want)
    queue.shutdown()
