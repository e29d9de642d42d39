"""One JSON request to an API server over a kubernetes_asyncio ``ApiClient``.

The generated API methods turn answers into model objects we do not use and return
``None`` for an apply that creates (HTTP 201); ``call_api`` with
``_preload_content=False`` gives the raw answer, whose status we check here.

Every request is bounded: kubernetes_asyncio's default client timeout is unlimited,
so a server that accepts the connection and then hangs (SIGSTOP, a stuck proxy)
would block the caller forever. ``CALL_TIMEOUT`` bounds the whole request, answer
included; a caller may pass a shorter one (the leader bounds its writes by the time
its lease is still its own). A request that times out raises ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

CALL_TIMEOUT = 30.0
"""Seconds one API call may take, answer included (client-go's default is none; its
leader election bounds each renew by the renew deadline; ours bounds everything)."""


async def request(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    accept: str = "application/json",
    content_type: str = "application/json",
    time_limit: float = CALL_TIMEOUT,
) -> tuple[int, str]:
    """Send the request and return the answer's ``(HTTP status, text)``, whatever the
    status. No answer within ``time_limit`` seconds raises ``TimeoutError`` (the
    connection is dropped)."""
    if time_limit <= 0:
        raise TimeoutError(f"{method} {path}: no time left to send it")
    async with asyncio.timeout(time_limit):
        response: aiohttp.ClientResponse = await api.call_api(
            path,
            method,
            query_params=list((query or {}).items()),
            header_params={"Accept": accept, "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=time_limit),
        )
        try:
            return response.status, await response.text()
        finally:
            response.release()


async def request_json(
    api: ApiClient,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    body: Any = None,
    content_type: str = "application/json",
    time_limit: float = CALL_TIMEOUT,
) -> dict[str, Any]:
    """Send the request and return the decoded JSON answer (``{}`` when empty).

    An answer of 300 or more raises ``ApiException`` with the HTTP status and, as
    reason, the Status's ``reason: message`` (or the start of the body). No answer
    within ``time_limit`` seconds raises ``TimeoutError`` (the connection is dropped)."""
    status, text = await request(
        api,
        method,
        path,
        query=query,
        body=body,
        content_type=content_type,
        time_limit=time_limit,
    )
    if status >= 300:
        try:
            answer = json.loads(text)
            reason = f"{answer.get('reason')}: {answer.get('message')}"
        except (ValueError, AttributeError):
            reason = text[:500]
        raise ApiException(status=status, reason=reason)
    out: dict[str, Any] = json.loads(text) if text else {}
    return out
