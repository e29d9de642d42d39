"""Unit tests for mcs.runtime.health: when a member joins, is withdrawn and returns, and what
the affected ServiceImports show. A fake clock and fake informers drive the state."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from mcs.runtime.health import MemberHealth

GRACE = 10.0


@dataclass
class FakeInformer:
    connected: bool = True
    synced: bool = True
    disconnected_since: float | None = None
    last_error: str | None = None

    def has_synced(self) -> bool:
        return self.synced


@dataclass
class FakeMember:
    context: str
    cluster_id: str = ""
    api: Any = None
    informers: tuple[Any, ...] = field(default_factory=lambda: (FakeInformer(),))

    def __post_init__(self) -> None:
        self.cluster_id = self.cluster_id or self.context

    @property
    def informer(self) -> FakeInformer:
        return self.informers[0]  # type: ignore[no-any-return]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def setup(
    n: int = 2, pending: tuple[str, ...] = ()
) -> tuple[MemberHealth[FakeMember], list[FakeMember], Clock, list[tuple[str, bool]]]:
    members = [FakeMember(f"c{i}") for i in range(1, n + 1)]
    clock = Clock()
    changes: list[tuple[str, bool]] = []
    h = MemberHealth(
        members,
        grace=GRACE,
        clock=clock,
        pending=pending,
        on_change=lambda m, w: changes.append((m.context, w)),
    )
    return h, members, clock, changes


def test_members_start_withdrawn_and_join_once_listed_and_connected() -> None:
    h, (a, b), _, changes = setup()
    b.informer.synced = False
    h.evaluate()
    assert changes == [("c1", False)]
    assert not h.withdrawn(a) and h.withdrawn(b) and not h.joined_all()
    assert any("c2 not joined: caches not listed yet" in line for line in h.describe())
    b.informer.synced = True
    h.evaluate()
    h.evaluate()
    assert changes == [("c1", False), ("c2", False)] and h.joined_all()


def test_withdrawn_exactly_after_the_grace_period_then_returns() -> None:
    h, (a, _), clock, changes = setup()
    h.evaluate()
    changes.clear()
    a.informer.connected = False
    a.informer.disconnected_since = clock.now
    clock.now += GRACE - 0.01
    h.evaluate()
    assert changes == [] and not h.withdrawn(a)
    clock.now += 0.02
    h.evaluate()
    assert changes == [("c1", True)] and h.withdrawn(a)
    assert h.withdrawn_since(a) is not None
    h.evaluate()
    assert changes == [("c1", True)], "a withdrawal is reported once"
    a.informer.connected = True
    a.informer.disconnected_since = None
    h.evaluate()
    assert changes == [("c1", True), ("c1", False)] and not h.withdrawn(a)


def test_a_blip_shorter_than_the_grace_changes_nothing() -> None:
    h, (a, _), clock, changes = setup()
    h.evaluate()
    changes.clear()
    for _ in range(5):
        a.informer.connected = False
        a.informer.disconnected_since = clock.now
        clock.now += GRACE / 2
        h.evaluate()
        a.informer.connected = True
        a.informer.disconnected_since = None
        h.evaluate()
    assert changes == []


def test_a_member_whose_cluster_id_is_pending_does_not_join() -> None:
    h, _, _, changes = setup(pending=("c2",))
    h.evaluate()
    assert changes == [("c1", False)]
    assert h.describe() == ["member c2 not joined: cluster id not read yet"]


@dataclass(frozen=True)
class FrozenMember:
    context: str
    cluster_id: str
    api: Any = None
    informers: tuple[Any, ...] = field(default_factory=lambda: (FakeInformer(),))


async def test_a_pending_member_is_replaced_by_the_one_with_its_cluster_id() -> None:
    """Members are immutable (``mcs.runtime.controller.Member``): reading the id of a pending
    member hands back a new one, which the tracker keeps and reports on joining."""
    members = [FrozenMember("c1", "c1"), FrozenMember("ctx2", "ctx2")]
    changes: list[tuple[str, str, bool]] = []

    async def resolve(m: FrozenMember) -> FrozenMember:
        return dataclasses.replace(m, cluster_id="real2")

    h = MemberHealth(
        members,
        grace=GRACE,
        pending=("ctx2",),
        resolve_id=resolve,
        on_change=lambda m, w: changes.append((m.context, m.cluster_id, w)),
    )
    h.evaluate()
    assert changes == [("c1", "c1", False)]
    probe = asyncio.create_task(h._probe_loop("ctx2"))
    try:
        async with asyncio.timeout(5):
            while not changes[1:]:
                await asyncio.sleep(0.01)
                h.evaluate()
    finally:
        probe.cancel()
        await asyncio.gather(probe, return_exceptions=True)
    assert changes[1:] == [("ctx2", "real2", False)]
    assert [m.cluster_id for m in h.members] == ["c1", "real2"]
    assert members[1].cluster_id == "ctx2"  # the original is untouched


def test_a_clashing_cluster_id_keeps_the_member_out() -> None:
    h, (_, b), _, changes = setup()
    b.cluster_id = "c1"
    h.evaluate()
    assert changes == [("c1", False)] and h.withdrawn(b)
    assert "also the id of" in h.describe()[0]


def test_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError):
        MemberHealth([], grace=-1)


def test_one_failed_probe_is_not_unreachable_two_are_since_the_first() -> None:
    """A single slow answer of a busy API server changes nothing; consecutive failed
    probes make the member unreachable since the first of them, so the grace runs
    from there; a success in between starts the count again."""
    h, (_, b), clock, changes = setup()
    h.evaluate()
    start = clock.now
    h.record_probe("c2", start, "health probe failed: TimeoutError")
    clock.now += 3
    assert h.unreachable_since(b) is None
    h.record_probe("c2", clock.now, None)  # answered: the count starts again
    clock.now += 1
    h.record_probe("c2", clock.now, "health probe failed: TimeoutError")
    assert h.unreachable_since(b) is None
    first = clock.now
    clock.now += 2
    h.record_probe("c2", clock.now, "health probe failed: TimeoutError")
    assert h.unreachable_since(b) == first
    clock.now = first + GRACE - 0.1
    h.evaluate()
    assert not h.withdrawn(b)
    clock.now = first + GRACE
    h.evaluate()
    assert h.withdrawn(b) and changes[-1] == ("c2", True)
    assert "health probe failed" in h.describe()[0]


async def test_until_unreachable_wakes_when_the_member_counts_as_unreachable() -> None:
    """What cancels a member's hung writes: it returns once the probes say unreachable,
    at once while they do, and waits again after the member answered."""
    h, (_, b), clock, _ = setup()
    h.evaluate()
    waiter = asyncio.create_task(h.until_unreachable(b))
    h.record_probe("c2", clock.now, "health probe failed: TimeoutError")
    await asyncio.sleep(0)
    assert not waiter.done()  # one failed probe is not enough
    h.record_probe("c2", clock.now, "health probe failed: TimeoutError")
    await asyncio.wait_for(waiter, 5)
    await asyncio.wait_for(h.until_unreachable(b), 5)  # at once while unreachable
    h.record_probe("c2", clock.now, None)
    again = asyncio.create_task(h.until_unreachable(b))
    await asyncio.sleep(0.01)
    assert not again.done()
    b.informer.connected, b.informer.disconnected_since = False, clock.now
    h.evaluate()  # a watch that went down is seen on the next tick
    await asyncio.wait_for(again, 5)
