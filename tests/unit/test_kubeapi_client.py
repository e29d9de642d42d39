"""The clients ``mcs.runtime.kubeapi.new_client`` makes: no request goes through a worker
thread (kubernetes_asyncio's own client sends two per request, to read ``~/.netrc``
and the proxy variables), and the environment's proxy is still used, looked up once.

The servers are real local HTTP listeners; the API server behind a proxy is an
address nothing answers on (TEST-NET-1), so only the proxy can answer for it."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration

from mcs.runtime.kubeapi import new_client, proxy_from_env, request_json

UNANSWERED = "http://192.0.2.1:6443"  # TEST-NET-1: never routed


class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting what it is given."""

    def __init__(self) -> None:
        super().__init__(max_workers=2)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


@asynccontextmanager
async def answering(answer: dict[str, str]) -> AsyncIterator[str]:
    """A local HTTP server that answers ``answer`` to every request; yields its URL."""

    async def handle(_request: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def kubeconfig(tmp_path: Path, server: str, **cluster: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server, **cluster}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c1", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c1",
            }
        )
    )
    return str(path)


def test_requests_go_through_no_worker_thread(tmp_path: Path) -> None:
    """Three requests of a ``new_client`` leave the loop's executor untouched; the same
    three of kubernetes_asyncio's own client use it (what this test would catch). On a
    loop of its own: the executor it counts with must not outlive it."""

    async def three_requests_each() -> int:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)  # shut down by asyncio.run
        async with answering({"kind": "APIVersions"}) as server:
            async with await new_client(kubeconfig(tmp_path, server), "c1") as api:
                for _ in range(3):
                    assert await request_json(api, "GET", "/api") == {"kind": "APIVersions"}
            assert executor.submitted == 0
            async with ApiClient(Configuration(host=server)) as trusting:
                for _ in range(3):
                    await request_json(trusting, "GET", "/api")
        return executor.submitted

    assert asyncio.run(three_requests_each()) >= 3


async def test_the_environment_proxy_carries_the_requests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    async with answering({"kind": "Status", "via": "proxy"}) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        async with await new_client(kubeconfig(tmp_path, UNANSWERED), "c1") as api:
            answer = await request_json(api, "GET", "/api", time_limit=5)
    assert answer == {"kind": "Status", "via": "proxy"}


def test_no_proxy_and_the_kubeconfig_proxy_win_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "api.internal")
    assert proxy_from_env("https://k8s.example:6443") == "http://proxy.example:3128"
    assert proxy_from_env("https://api.internal:6443") is None
    assert proxy_from_env("http://k8s.example:6443") is None, "HTTPS_PROXY is for https only"


async def test_a_kubeconfig_proxy_url_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://from-env.example:3128")
    path = kubeconfig(tmp_path, UNANSWERED, **{"proxy-url": "http://from-kubeconfig.example:8080"})
    async with await new_client(path, "c1") as api:
        assert api.rest_client.proxy == "http://from-kubeconfig.example:8080"
