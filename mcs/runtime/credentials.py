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

When each credential expires (``mcs_member_credential_expiry_timestamp_seconds{member}``)
is read from the credential itself at start and at every re-read: a bearer token's JWT
``exp`` claim, a client certificate's ``notAfter`` (`credential_expiry`). The certificate
is read with a few lines of DER instead of ``cryptography``, which the controller's
image leaves out (tests/integration/test_image.py); tests check it against certificates
``cryptography`` writes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import structlog
from kubernetes_asyncio.client import ApiClient

from mcs.runtime import kubeapi
from mcs.runtime.members import check_remote_context, check_tls
from mcs.runtime.observability import MEMBER_CREDENTIAL_EXPIRY

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


def token_expiry(value: str) -> float | None:
    """The ``exp`` claim (seconds since the epoch) of a bearer token that is a JWT
    (``"Bearer "`` prefix allowed), else None. The signature is not checked: the token is
    our own credential, read only to say when it stops working."""
    parts = value.removeprefix("Bearer ").strip().split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:  # binascii.Error, UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


def _der(data: bytes, at: int) -> tuple[int, int, int]:
    """``(tag, start, end)`` of the content of the DER element at ``at``."""
    if at + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length, at = data[at], data[at + 1], at + 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or at + n > len(data):
            raise ValueError("bad DER length")
        length, at = int.from_bytes(data[at : at + n], "big"), at + n
    if at + length > len(data):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _asn1_time(tag: int, text: str) -> float:
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ: 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError(f"not a time: tag {tag:#x}")
    return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC).timestamp()


def certificate_not_after(pem: bytes) -> float | None:
    """``notAfter`` (seconds since the epoch) of the first certificate in ``pem``, or None
    when there is none or it cannot be read (RFC 5280: Certificate ::= SEQUENCE {
    tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
    validity SEQUENCE { notBefore, notAfter }, ... }, ... })."""
    found = _PEM_CERT.search(pem)
    if found is None:
        return None
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
        _, cert, _ = _der(der, 0)
        _, at, _ = _der(der, cert)  # tbsCertificate
        tag, _, end = _der(der, at)
        if tag == 0xA0:  # explicit version
            at = end
        for _ in range(3):  # serialNumber, signature, issuer
            at = _der(der, at)[2]
        _, validity, _ = _der(der, at)
        not_before_end = _der(der, validity)[2]
        tag, start, end = _der(der, not_before_end)
        return _asn1_time(tag, der[start:end].decode("ascii"))
    except (ValueError, IndexError):
        return None


def credential_expiry(cfg: Any) -> float | None:
    """When the credential of a client configuration expires: the earlier of its bearer
    token's JWT ``exp`` and its client certificate's ``notAfter``; None when neither is
    known (an opaque token, an exec plugin, no credential)."""
    value = token(cfg)
    cert = _read(getattr(cfg, "cert_file", None))
    known = [
        t
        for t in (
            token_expiry(value) if value else None,
            certificate_not_after(cert) if cert else None,
        )
        if t is not None
    ]
    return min(known) if known else None


def record_expiry(member: str, cfg: Any) -> None:
    """Set ``mcs_member_credential_expiry_timestamp_seconds{member}`` from ``cfg``, or
    remove the series when the expiry is unknown."""
    expiry = credential_expiry(cfg)
    if expiry is not None:
        MEMBER_CREDENTIAL_EXPIRY.labels(member=member).set(expiry)
    else:
        with contextlib.suppress(KeyError):
            MEMBER_CREDENTIAL_EXPIRY.remove(member)


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
    each re-read. Records each member's credential expiry on entering and after each
    successful re-read (`record_expiry`)."""

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
            record_expiry(context, api.configuration)
            if changed is not None:
                self.reloads += 1
                log.info("credentials reloaded", context=context, changed=changed)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.check()

    async def __aenter__(self) -> CredentialReloader:
        for context, api in self.clients.items():
            record_expiry(context, api.configuration)
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
