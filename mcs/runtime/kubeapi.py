"""One JSON request to an API server over a kubernetes_asyncio ``ApiClient``.

The generated API methods turn answers into model objects we do not use and return
``None`` for an apply that creates (HTTP 201); ``call_api`` with
``_preload_content=False`` gives the raw answer, whose status we check here.

Every request is bounded: kubernetes_asyncio's default client timeout is unlimited,
so a server that accepts the connection and then hangs (SIGSTOP, a stuck proxy)
would block the caller forever. ``CALL_TIMEOUT`` bounds the whole request, answer
included; a caller may pass a shorter one (the leader bounds its writes by the time
its lease is still its own). A request that times out raises ``TimeoutError``.

Every client comes from ``new_client`` (or ``rest_client``, for a new connection
pool), which looks nothing up in the environment per request: kubernetes_asyncio's
aiohttp session trusts the environment, and then every request reads ``~/.netrc`` in
one worker thread and the proxy variables in another. Each of those two hops comes
back through the event loop, and on a busy loop waits its turn behind everything
else there (measured with 10,000 exports: about a quarter of the controller's CPU
samples were in those look-ups and their threads). The proxy is looked up once
instead, for the configured server, as kubectl does (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``; a kubeconfig's ``proxy-url`` wins); ``~/.netrc`` is not read (kubectl
does not read it either: credentials come from the kubeconfig).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.client.rest import RESTClientObject

CALL_TIMEOUT = 30.0
"""Seconds one API call may take, answer included (client-go's default is none; its
leader election bounds each renew by the renew deadline; ours bounds everything)."""


READ_BUFFER = 2**21
"""aiohttp's read buffer of a client's session, as kubernetes_asyncio sets it (a watch
event of a large object would not fit the default)."""


CERT_DIR_PREFIX = "mcs-certs-"
_cert_dir: str | None = None


def cert_dir(base: str | None = None) -> str:
    """This process's directory for the certificate and key files kubernetes_asyncio
    writes from a kubeconfig's ``*-data`` fields (it cleans them only at a clean exit).

    The first call removes the directories of processes that are gone, and a directory
    of this process id left by an earlier incarnation (a container's process is often
    pid 1 every time), so files left by a SIGKILL or an OOM kill do not pile up in a
    memory-backed ``/tmp``; then it creates this one (mode 0700), removed at exit."""
    global _cert_dir
    if _cert_dir is not None:
        return _cert_dir
    root = base or tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for entry in os.scandir(root):
            pid = entry.name.removeprefix(CERT_DIR_PREFIX)
            if entry.name == pid or not pid.isdigit() or not entry.is_dir(follow_symlinks=False):
                continue
            if int(pid) == os.getpid() or not _alive(int(pid)):
                shutil.rmtree(entry.path, ignore_errors=True)
    path = os.path.join(root, f"{CERT_DIR_PREFIX}{os.getpid()}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    atexit.register(shutil.rmtree, path, True)
    _cert_dir = path
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def load_config(kubeconfig: str, context: str) -> Configuration:
    """A fresh client configuration of ``context`` (reads every file it names; the
    certificates of ``*-data`` fields go to `cert_dir`)."""
    cfg = type.__call__(Configuration)  # as kubernetes_asyncio does: no shared default
    await config.load_kube_config(
        config_file=kubeconfig,
        context=context,
        client_configuration=cfg,
        persist_config=False,
        temp_file_path=cert_dir(),
    )
    return cfg


async def new_client(kubeconfig: str, context: str) -> ApiClient:
    """A client of ``context`` in ``kubeconfig`` (every file it names is read now)."""
    cfg = await load_config(kubeconfig, context)
    api = ApiClient(cfg)
    _without_env_lookups(api.rest_client, cfg)
    return api


def rest_client(cfg: Configuration) -> RESTClientObject:
    """A new connection pool for ``cfg`` (``ApiClient.rest_client``), as ``new_client``'s."""
    return _without_env_lookups(RESTClientObject(cfg), cfg)


def proxy_from_env(server: str) -> str | None:
    """The proxy the environment names for ``server`` (a URL), None when there is none
    or ``NO_PROXY`` covers it: the look-up aiohttp makes per request, made once."""
    url = urllib.parse.urlsplit(server)
    if not url.hostname or urllib.request.proxy_bypass(url.hostname):
        return None
    return urllib.request.getproxies().get(url.scheme)


def _without_env_lookups(rest: RESTClientObject, cfg: Configuration) -> RESTClientObject:
    """Give ``rest`` a session over the same connection pool that does not trust the
    environment, and the environment's proxy (unless the configuration names one)."""
    if not rest.proxy and (proxy := proxy_from_env(cfg.host)):
        rest.proxy = proxy
    trusting = rest.pool_manager
    rest.pool_manager = aiohttp.ClientSession(
        connector=trusting.connector, trust_env=False, read_bufsize=READ_BUFFER
    )
    trusting.detach()  # the pool is the new session's now
    return rest


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
