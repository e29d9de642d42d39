"""``Informer.write_through``: the controller's own writes are cached when answered and
never reported as changes, whichever of the answer and the watch event comes first;
every change that was not ours is reported, once."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.core.api import SERVICES, Obj
from mcs.runtime.informer import Informer

KEY = ("a", "x")


def _svc(rv: int, port: int) -> Obj:
    return {
        "metadata": {"namespace": "a", "name": "x", "resourceVersion": str(rv)},
        "spec": {"port": port},
    }


def _without_resource_version(obj: Obj) -> Obj:
    """Like the controller's caches (mcs.core.cachefields): no resourceVersion is kept."""
    return {"metadata": {"name": obj["metadata"]["name"]}, "spec": obj["spec"]}


class Harness:
    """An informer fed by hand (no server), and the events it reported."""

    def __init__(self, keep_rv: bool = False) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.informer = Informer(
            None,  # no request is made: events are fed by hand
            cluster="c1",
            kind=SERVICES,
            on_event=lambda t, old, new: self.seen.append((t, _port(new or old))),
            transform=None if keep_rv else _without_resource_version,
        )

    def watch(self, etype: str, obj: Obj) -> None:
        self.informer._apply({"type": etype, "object": obj})

    async def begin(self) -> tuple[asyncio.Future[Obj | None], asyncio.Task[Obj | None]]:
        """A write of ours, in flight once this returns; resolve the future with the
        server's answer."""
        answer: asyncio.Future[Obj | None] = asyncio.get_running_loop().create_future()
        task = asyncio.ensure_future(self.informer.write_through(KEY, answer))
        await asyncio.sleep(0)  # write_through runs up to its await
        return answer, task

    def port(self) -> int | None:
        return _port(self.informer.get(*KEY))

    def settled(self) -> bool:
        return not self.informer._own


@pytest.fixture(params=[False, True], ids=["as-cached", "with-resource-version"])
def h(request: pytest.FixtureRequest) -> Harness:
    return Harness(keep_rv=request.param)


def _port(obj: Obj | None) -> int | None:
    return None if obj is None else obj["spec"]["port"]


async def _answer(
    pending: tuple[asyncio.Future[Obj | None], asyncio.Task[Obj | None]], obj: Obj | None
) -> None:
    future, task = pending
    future.set_result(obj)
    await task


async def test_the_answer_is_cached_and_its_event_is_not_reported(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    await _answer(await h.begin(), _svc(7, 3))
    assert h.port() == 3 and not h.settled()
    h.watch("MODIFIED", _svc(7, 3))
    assert h.seen == [("ADDED", 1)] and h.settled()


async def test_an_event_that_comes_before_the_answer_is_not_reported(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    pending = await h.begin()
    h.watch("MODIFIED", _svc(7, 3))  # our write, watched before the answer
    assert h.port() == 3
    await _answer(pending, _svc(7, 3))
    assert h.seen == [("ADDED", 1)] and h.settled()


async def test_two_writes_answered_before_either_event(h: Harness) -> None:
    await _answer(await h.begin(), _svc(6, 2))  # e.g. an apply, then its status
    await _answer(await h.begin(), _svc(7, 3))
    h.watch("ADDED", _svc(6, 2))
    assert h.port() == 3  # never back to an older state
    h.watch("MODIFIED", _svc(7, 3))
    assert h.seen == [] and h.settled() and h.port() == 3


async def test_someone_elses_change_during_our_write_is_reported_once_it_ends(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    pending = await h.begin()
    h.watch("MODIFIED", _svc(6, 2))  # not ours
    h.watch("MODIFIED", _svc(7, 3))  # ours
    assert h.seen == [("ADDED", 1)]  # held while the write is in flight
    await _answer(pending, _svc(7, 3))
    assert h.seen == [("ADDED", 1), ("MODIFIED", 3)] and h.settled()


async def test_a_change_our_answer_overtook_is_reported_and_the_cache_stays_newer(
    h: Harness,
) -> None:
    h.watch("ADDED", _svc(5, 1))
    await _answer(await h.begin(), _svc(7, 3))
    h.watch("MODIFIED", _svc(6, 2))  # someone else's, before ours: its event comes late
    assert h.seen == [("ADDED", 1), ("MODIFIED", 3)] and h.port() == 3
    h.watch("MODIFIED", _svc(7, 3))
    h.watch("MODIFIED", _svc(8, 4))
    assert h.seen[2:] == [("MODIFIED", 4)] and h.settled()


async def test_a_failed_write_reports_what_was_held(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    future, task = await h.begin()
    h.watch("MODIFIED", _svc(6, 2))
    future.set_exception(TimeoutError())
    with pytest.raises(TimeoutError):
        await task
    assert h.seen == [("ADDED", 1), ("MODIFIED", 2)] and h.settled()


async def test_a_deletion_during_our_write_is_not_undone_by_the_answer(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    pending = await h.begin()
    h.watch("MODIFIED", _svc(6, 2))  # not ours
    h.watch("MODIFIED", _svc(7, 3))  # ours
    h.watch("DELETED", _svc(8, 3))  # reported at once, and only once
    await _answer(pending, _svc(7, 3))
    assert h.informer.get(*KEY) is None
    assert h.seen == [("ADDED", 1), ("DELETED", 3)] and h.settled()


async def test_a_write_that_changes_nothing_leaves_nothing_behind(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    await _answer(await h.begin(), _svc(5, 1))  # same resourceVersion: no event will come
    assert h.settled() and h.seen == [("ADDED", 1)]


async def test_a_relist_during_our_write_keeps_the_answer_out_of_the_cache(h: Harness) -> None:
    h.watch("ADDED", _svc(5, 1))
    pending = await h.begin()
    h.informer._cache = h.informer._cache.empty_like()  # what a relist finding nothing does
    for own in h.informer._own.values():
        own.forget()
    await _answer(pending, _svc(7, 3))
    assert h.informer.get(*KEY) is None and h.settled()


# Our writes (answer first, or watch event first) and someone else's, with the watch
# lagging behind by up to ``lag`` events. Whatever the order, the cache ends on the newest
# state, nothing is left behind, and the delivery of someone else's change is followed by
# a report; our own writes alone are never reported.
STEP = st.sampled_from(["ours", "ours-event-first", "theirs"])


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8), lag=st.integers(0, 3), keep_rv=st.booleans())
def test_every_change_but_ours_is_reported(steps: list[str], lag: int, keep_rv: bool) -> None:
    async def scenario() -> None:
        h = Harness(keep_rv)
        h.watch("ADDED", _svc(1, 1))
        theirs: set[int] = set()
        backlog: list[Obj] = []  # watch events not yet delivered, in order
        delivered_theirs_at = None  # len(h.seen) when their last change was delivered

        def deliver(keep: int) -> None:
            nonlocal delivered_theirs_at
            while len(backlog) > keep:
                obj = backlog.pop(0)
                if int(obj["metadata"]["resourceVersion"]) in theirs:
                    delivered_theirs_at = len(h.seen)
                h.watch("MODIFIED", obj)

        for rv, step in enumerate(steps, start=2):
            obj = _svc(rv, rv)
            if step == "theirs":
                theirs.add(rv)
                backlog.append(obj)
            elif step == "ours":
                await _answer(await h.begin(), obj)
                backlog.append(obj)
            else:
                pending = await h.begin()
                backlog.append(obj)
                deliver(0)
                await _answer(pending, obj)
            deliver(lag)
        deliver(0)
        assert h.port() == len(steps) + 1 and h.settled()
        if delivered_theirs_at is None:
            assert h.seen == [("ADDED", 1)]
        else:
            assert len(h.seen) > delivered_theirs_at

    asyncio.run(scenario())
