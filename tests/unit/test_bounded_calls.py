"""Every call is bounded: a request to a server that accepts and never answers fails in
time, a leader whose renewal hangs gives up at its renew deadline (not when the call
returns), and a writer with no lease budget left sends nothing.

The hanging server is a real TCP listener that reads and never answers, which is what a
SIGSTOPped API server looks like from the client's side."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime.health import probe
from mcs.runtime.kubeapi import request, request_json
from mcs.runtime.leader import LeaderElector, LeadershipLost
from mcs.runtime.workqueue import Lane, current_lane
from mcs.runtime.writer import NotLeading, Slots, Writer


@pytest.fixture
async def hanging_api() -> AsyncIterator[ApiClient]:
    connections: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = Configuration(host=f"http://127.0.0.1:{port}")
    api = ApiClient(cfg)
    try:
        yield api
    finally:
        await api.close()
        for w in connections:
            w.close()
        server.close()
        await server.wait_closed()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[ApiClient]:
    """A client of ``app``, served on a free local port while inside."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    api = ApiClient(Configuration(host=f"http://127.0.0.1:{port}"))
    try:
        yield api
    finally:
        await api.close()
        await runner.cleanup()


async def test_a_request_to_a_hanging_server_times_out(hanging_api: ApiClient) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await request_json(hanging_api, "GET", "/api/v1/namespaces", time_limit=0.3)
    assert time.monotonic() - started < 1.0


async def test_a_probe_of_a_hanging_server_times_out(hanging_api: ApiClient) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await probe(hanging_api, 0.3)
    assert time.monotonic() - started < 1.0


async def test_readyz_answers_are_text() -> None:
    """/readyz answers text, not JSON: ``request`` gives any status and text; the probe
    passes on 200 and raises with the answer otherwise."""
    ready = {"ok": True}

    async def readyz(_request: web.Request) -> web.Response:
        if ready["ok"]:
            return web.Response(text="ok")
        return web.Response(status=500, text="[-]etcd failed: reason withheld")

    app = web.Application()
    app.router.add_get("/readyz", readyz)
    async with serving(app) as api:
        assert await request(api, "GET", "/readyz", accept="*/*") == (200, "ok")
        await probe(api, 2.0)
        ready["ok"] = False
        with pytest.raises(ApiException) as failed:
            await probe(api, 2.0)
        assert failed.value.status == 500 and "etcd failed" in str(failed.value.reason)


async def test_a_hung_write_fails_and_can_be_retried(hanging_api: ApiClient) -> None:
    writer = Writer(hanging_api, "c1", budget=lambda: 0.3)
    obj = {"metadata": {"name": "x", "namespace": "ns"}}
    for _ in range(2):  # the work queue retries the key: the second try is bounded too
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await writer.apply("serviceimports", obj)
        assert time.monotonic() - started < 1.0


async def test_no_write_without_lease_budget() -> None:
    class Unreachable:
        async def call_api(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("a write was sent")

    writer = Writer(Unreachable(), "c1", budget=lambda: 0.0)  # type: ignore[arg-type]
    with pytest.raises(NotLeading):
        await writer.apply("serviceimports", {"metadata": {"name": "x", "namespace": "ns"}})


async def test_a_hung_renewal_loses_the_lease_at_the_deadline(hanging_api: ApiClient) -> None:
    elector = LeaderElector(
        hanging_api,
        namespace="default",
        name="l",
        identity="me",
        lease_duration=1.5,
        renew_deadline=1.0,
        retry_period=0.2,
    )
    # as if a renewal had just succeeded; every further one hangs on the server
    elector.leading = True
    elector._valid_until = time.monotonic() + elector.renew_deadline
    assert 0.9 < elector.write_budget() <= 1.0
    started = time.monotonic()
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(elector.keep(), 5)
    took = time.monotonic() - started
    assert 0.9 < took < 1.3, f"gave up after {took:.2f}s, deadline 1.0s"
    assert elector.write_budget() <= 0
    assert not elector.leading


async def test_a_writer_sends_at_most_its_limit_of_writes_at_once() -> None:
    """Ten applies at once through a writer allowed three: the server never holds more
    than three, and all ten are carried out."""
    held: set[int] = set()
    most = 0
    release = asyncio.Event()

    async def apply(request: web.Request) -> web.Response:
        nonlocal most
        held.add(id(request))
        most = max(most, len(held))
        await release.wait()
        held.discard(id(request))
        return web.json_response({"metadata": {"name": request.match_info["name"]}})

    app = web.Application()
    app.router.add_patch("/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}", apply)
    async with serving(app) as api:
        writer = Writer(api, "c1", max_in_flight=3)
        try:
            writes = [
                asyncio.create_task(
                    writer.apply(
                        "serviceimports", {"metadata": {"name": f"s{i}", "namespace": "ns"}}
                    )
                )
                for i in range(10)
            ]
            async with asyncio.timeout(10):
                while len(held) < 3:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)  # time for any write that would break the limit
            assert len(held) == 3
            release.set()
            async with asyncio.timeout(10):
                done = await asyncio.gather(*writes)
            names = sorted(d["metadata"]["name"] for d in done)
            assert names == sorted(f"s{i}" for i in range(10))
            assert most == 3
        finally:
            release.set()


async def test_a_free_write_slot_goes_to_the_most_urgent_write_waiting() -> None:
    """One write slot, held; then writes for keys of every lane queue for it. Once it is
    freed, they reach the server urgent first, then change, then resync, each lane in
    the order it asked."""
    arrived: list[str] = []
    gate = asyncio.Semaphore(0)

    async def apply(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        arrived.append(name)
        await gate.acquire()
        return web.json_response({"metadata": {"name": name}})

    async def write(writer: Writer, name: str, lane: Lane) -> None:
        current_lane.set(lane)  # as run_workers does for the key this task reconciles
        await writer.apply("services", {"metadata": {"name": name, "namespace": "ns"}})

    app = web.Application()
    app.router.add_patch("/api/v1/namespaces/{ns}/services/{name}", apply)
    async with serving(app) as api:
        writer = Writer(api, "c1", max_in_flight=1)
        asked = [
            ("first", Lane.RESYNC),
            ("resync", Lane.RESYNC),
            ("change-1", Lane.CHANGE),
            ("urgent-1", Lane.URGENT),
            ("change-2", Lane.CHANGE),
            ("urgent-2", Lane.URGENT),
        ]
        tasks = []
        try:
            for name, lane in asked:
                tasks.append(asyncio.create_task(write(writer, name, lane)))
                async with asyncio.timeout(10):
                    while not arrived:  # the first holds the slot before the rest ask
                        await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # every other write is waiting for the slot
            assert arrived == ["first"]
            for _ in asked:
                gate.release()
            async with asyncio.timeout(10):
                await asyncio.gather(*tasks)
            assert arrived == ["first", "urgent-1", "urgent-2", "change-1", "change-2", "resync"]
        finally:
            for _ in asked:
                gate.release()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_cancelled_wait_for_a_slot_loses_no_slot() -> None:
    """Writes waiting for a slot are cancelled while they wait, or after they were
    handed a slot but before they ran: the slot passes on, none is lost or held twice,
    and the cancelled urgent write no longer holds the others back."""
    slots = Slots(4)
    holding = 0
    most = 0

    async def hold(lane: Lane, release: asyncio.Event | None = None) -> None:
        nonlocal holding, most
        async with slots.hold(lane):
            holding += 1
            most = max(most, holding)
            try:
                await (release.wait() if release else asyncio.sleep(0.01))
            finally:
                holding -= 1

    fillers_go = asyncio.Event()
    fillers = [asyncio.create_task(hold(Lane.CHANGE, fillers_go)) for _ in range(3)]
    await asyncio.sleep(0.01)
    owner = slots.hold(Lane.URGENT)
    await owner.__aenter__()  # every slot is held now
    cancelled_waiting = asyncio.create_task(hold(Lane.URGENT))
    handed_then_cancelled = asyncio.create_task(hold(Lane.CHANGE))
    last = asyncio.create_task(hold(Lane.RESYNC))
    await asyncio.sleep(0.01)  # all three wait
    cancelled_waiting.cancel()
    await asyncio.sleep(0.01)
    await owner.__aexit__(None, None, None)  # hands the slot on, without yielding
    handed_then_cancelled.cancel()  # before it could run
    async with asyncio.timeout(5):
        await last
    fillers_go.set()
    async with asyncio.timeout(5):
        await asyncio.gather(*fillers)
    for t in (cancelled_waiting, handed_then_cancelled):
        with pytest.raises(asyncio.CancelledError):
            await t
    assert most == 4 and holding == 0
    async with asyncio.timeout(5):  # every slot is free again, for any write
        all_in = asyncio.Event()
        held = [asyncio.create_task(hold(Lane.RESYNC, all_in)) for _ in range(4)]
        while holding < 4:
            await asyncio.sleep(0.01)
        all_in.set()
        await asyncio.gather(*held)


async def test_while_urgent_writes_are_in_flight_the_others_hold_a_quarter_of_the_slots() -> None:
    """Eight slots, all held by writes of other keys; an urgent write and three more of
    other keys wait. The urgent one gets the first freed slot; then the others get none
    while two (8 // 4) others or more hold one; once no urgent write is left, they take
    every free slot."""
    slots = Slots(8)
    holding: dict[str, asyncio.Event] = {}

    async def hold(name: str, lane: Lane) -> None:
        release = asyncio.Event()
        async with slots.hold(lane):
            holding[name] = release
            await release.wait()
            del holding[name]

    async def settle() -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    def free(name: str) -> None:
        holding[name].set()

    tasks = [asyncio.create_task(hold(f"old-{i}", Lane.CHANGE)) for i in range(8)]
    await settle()
    tasks.append(asyncio.create_task(hold("urgent", Lane.URGENT)))
    tasks += [asyncio.create_task(hold(f"new-{i}", Lane.RESYNC)) for i in range(3)]
    await settle()
    assert len(holding) == 8 and "urgent" not in holding
    try:
        free("old-0")
        await settle()
        assert "urgent" in holding
        for i in range(1, 6):  # down to two others beside the urgent write
            free(f"old-{i}")
            await settle()
            assert not any(name.startswith("new") for name in holding)
        assert sorted(holding) == ["old-6", "old-7", "urgent"]
        free("old-6")
        await settle()
        assert sorted(holding) == ["new-0", "old-7", "urgent"]
        free("old-7")
        await settle()
        assert sorted(holding) == ["new-0", "new-1", "urgent"]
        free("urgent")
        await settle()
        assert sorted(holding) == ["new-0", "new-1", "new-2"]
        for name in list(holding):
            free(name)
        async with asyncio.timeout(5):
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
