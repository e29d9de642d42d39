"""Reads for the checks: every call bounded by the diagnose's request timeout."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime.kubeapi import request_json


async def get(api: ApiClient, path: str, time_limit: float) -> dict[str, Any] | None:
    """The object at ``path``, None when it does not exist (404); other errors raise."""
    try:
        return await request_json(api, "GET", path, time_limit=time_limit)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def post(
    api: ApiClient, path: str, body: dict[str, Any], time_limit: float
) -> dict[str, Any]:
    return await request_json(api, "POST", path, body=body, time_limit=time_limit)


def describe_error(e: BaseException) -> str:
    """One line for a failed request."""
    if isinstance(e, ApiException):
        return f"HTTP {e.status}: {e.reason}"
    if isinstance(e, TimeoutError):
        return "no answer in time"
    return str(e) or type(e).__name__
