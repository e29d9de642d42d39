"""Credentials that change: re-read the kubeconfig and the files it names, without a restart.

Short-lived credentials are the norm: a projected ServiceAccount token (``tokenFile``)
is rotated by the kubelet every hour or so, a remote kubeconfig Secret is replaced by
its owner (the mounted file changes in place; not with ``subPath`` mounts, which
Kubernetes never updates), client certificates are renewed. kubernetes_asyncio reads
a kubeconfig once, so ``CredentialReloader`` re-loads every member's context every
``period`` seconds and, when something changed,

* a new bearer token is swapped into the client's configuration (the next request
  uses it; nothing is interrupted);
* a new server, CA or client certificate needs a new TLS context: the client gets a
  new configuration and connection pool, and the old pool is closed (requests in
  flight on it, such as watches, fail and are retried by their owners on the new one).

A kubeconfig that cannot be read (half-written, a context gone), or that now sets
``insecure-skip-tls-verify`` (refused as at start-up unless
``--allow-insecure-skip-tls-verify``), is logged and the clients keep what they have.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient

from mcs.runtime import kubeapi
from mcs.runtime.members import check_remote_context, check_tls

log = structlog.get_logger(__name__)

_TLS_FIELDS = ("host", "verify_ssl", "tls_server_name", "proxy")
_TLS_FILES = ("ssl_ca_cert", "cert_file", "key_file")


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def tls_material(cfg: Any) -> tuple[Any, ...]:
    """What a client's TLS connection pool is built from (contents, not temp-file names)."""
    return tuple(getattr(cfg, f, None) for f in _TLS_FIELDS) + tuple(
        _read(getattr(cfg, f, None)) for f in _TLS_FILES
    )


def token(cfg: Any) -> str | None:
    value = (getattr(cfg, "api_key", None) or {}).get("BearerToken")
    return str(value) if value is not None else None


async def refresh(
    api: ApiClient,
    kubeconfig: str,
    context: str,
    allow_insecure: bool = False,
    *,
    remote: bool = False,
) -> str | None:
    """Re-read ``context`` and update ``api`` if its credentials changed: returns
    ``"token"``, ``"tls"`` (new connection pool) or None (unchanged). Raises
    ``ConfigError`` (``api`` unchanged) when the context now skips TLS verification
    and ``allow_insecure`` is false, or, for a ``remote`` member's context, when it
    now uses what `check_remote_context` refuses (checked before the file is loaded)."""
    if remote:
        check_remote_context(kubeconfig, context)
    fresh = await kubeapi.load_config(kubeconfig, context)
    check_tls(fresh, context, allow_insecure)
    current = api.configuration
    if tls_material(fresh) != tls_material(current):
        old = api.rest_client
        api.configuration = fresh
        api.rest_client = kubeapi.rest_client(fresh)
        await old.close()
        return "tls"
    if token(fresh) != token(current):
        current.api_key = dict(fresh.api_key)
        current.api_key_prefix = dict(fresh.api_key_prefix)
        return "token"
    return None


class CredentialReloader:
    """Re-reads ``kubeconfig`` for every client in ``clients`` (by context) every
    ``period`` seconds while entered (``async with``); ``period <= 0`` disables it.
    ``allow_insecure``: accept a context that sets ``insecure-skip-tls-verify``.
    ``remote``: the contexts of remote members, checked (`check_remote_context`) before
    each re-read."""

    def __init__(
        self,
        kubeconfig: str,
        clients: dict[str, ApiClient],
        period: float,
        allow_insecure: bool = False,
        remote: Collection[str] = (),
    ) -> None:
        self.kubeconfig = kubeconfig
        self.clients = clients
        self.period = period
        self.allow_insecure = allow_insecure
        self.remote = frozenset(remote)
        self.reloads = 0
        self._task: asyncio.Task[None] | None = None

    async def check(self) -> None:
        """One pass over every client (exposed for tests)."""
        for context, api in self.clients.items():
            try:
                changed = await refresh(
                    api,
                    self.kubeconfig,
                    context,
                    self.allow_insecure,
                    remote=context in self.remote,
                )
            except Exception as e:  # a bad file must not stop the controller
                log.warning(
                    "cannot re-read credentials; keeping the current ones",
                    context=context,
                    kubeconfig=self.kubeconfig,
                    error=str(e) or type(e).__name__,
                )
                continue
            if changed is not None:
                self.reloads += 1
                log.info("credentials reloaded", context=context, changed=changed)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.check()

    async def __aenter__(self) -> CredentialReloader:
        if self.period > 0:
            self._task = asyncio.create_task(self._loop(), name="credential reloader")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
