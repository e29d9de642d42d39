"""Collect (I/O): read every member cluster and every controller into a `Snapshot`.

Each member is read concurrently within one deadline (``time_limit``, seconds), and
each controller's ``/readyz``. A member that cannot be read is recorded with the
error, never raised. Every ``ApiClient`` opened here is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.api import (
    ENDPOINT_SLICES,
    NAMESPACES,
    SERVICE_EXPORTS,
    SERVICE_IMPORTS,
    SERVICES,
    Obj,
    ResourceKind,
)
from mcs.runtime.kubeapi import new_client, request_json
from mcs.runtime.members import ConfigError, read_cluster_id, validate_cluster_id
from mcs.status.controllers import Installation

DEFAULT_TIMEOUT = 5.0
_PAGE = 500

# --------------------------------------------------------------------------- snapshot (input)


@dataclass(frozen=True)
class MemberSnapshot:
    """What was read from one member cluster.

    ``reachable`` is False when a read failed or the deadline passed; ``error`` then
    says which read and why, and the object lists are empty. A reachable member may
    still carry an ``error`` (its ClusterProperty holds an invalid cluster id, in
    which case ``cluster_id`` is the context name). Objects are API dicts; the lists
    hold only what is in the namespace asked for (all namespaces by default), and
    ``namespaces`` the names of the namespaces that exist among them
    (``namespace_objects`` the Namespace objects themselves, for the namespace
    policy). ``slices`` are the EndpointSlices, read for the global services.
    """

    context: str
    cluster_id: str
    server: str = ""
    reachable: bool = True
    error: str | None = None
    server_version: str | None = None
    namespaces: frozenset[str] = frozenset()
    exports: tuple[Obj, ...] = ()
    services: tuple[Obj, ...] = ()
    imports: tuple[Obj, ...] = ()
    namespace_objects: tuple[Obj, ...] = ()
    slices: tuple[Obj, ...] = ()


@dataclass(frozen=True)
class ControllerSnapshot:
    """One controller's ``/readyz`` answer: the HTTP status and body, or
    ``status=None`` and the connection error as ``text``."""

    url: str
    status: int | None
    text: str


@dataclass(frozen=True)
class Snapshot:
    """Everything ``summarize`` needs; members in the order to report them.

    ``source`` says where the members came from: ``controller`` (the Secrets of the
    ``installations`` found), ``kubeconfig`` (every context, or ``--contexts``), with
    ``note`` saying why when it is worth saying (no controller was found)."""

    members: tuple[MemberSnapshot, ...]
    controllers: tuple[ControllerSnapshot, ...] = field(default=())
    installations: tuple[Installation, ...] = field(default=())
    source: str = "kubeconfig"
    note: str | None = None


T = TypeVar("T")


class _ReadFailed(Exception):
    """One read of a member failed; the message names the read and the cause."""


async def collect(
    kubeconfig: str,
    contexts: Sequence[str],
    cluster_ids: Mapping[str, str],
    namespace: str | None = None,
    controllers: Sequence[str] = (),
    time_limit: float = DEFAULT_TIMEOUT,
    *,
    default_ids: Mapping[str, str] | None = None,
    connect: Connect | None = None,
) -> Snapshot:
    """Read every member (``contexts`` of ``kubeconfig``) and every controller
    concurrently. Reads only; each member and each controller gets ``time_limit``
    seconds in all. ``cluster_ids`` are the ``--cluster-id`` overrides (context ->
    id, already validated). ``namespace`` limits exports, services, imports and
    namespaces to one namespace. Never raises for a member or a controller that
    cannot be read: the snapshot records the error. ``default_ids`` (context -> id) are
    the ids of members whose ClusterProperty names none (default: the context name);
    ``connect`` opens a client of a context (default: ``new_client`` of ``kubeconfig``).
    """
    opener = connect or (lambda ctx: new_client(kubeconfig, ctx))
    defaults = dict(default_ids or {})
    members, ctls = await asyncio.gather(
        asyncio.gather(
            *(
                _read_member(opener, ctx, cluster_ids, defaults, namespace, time_limit)
                for ctx in contexts
            )
        ),
        asyncio.gather(*(_read_controller(url, time_limit) for url in controllers)),
    )
    return Snapshot(members=tuple(members), controllers=tuple(ctls))


Connect = Callable[[str], Awaitable[ApiClient]]


async def _read_member(
    connect: Connect,
    context: str,
    cluster_ids: Mapping[str, str],
    defaults: Mapping[str, str],
    namespace: str | None,
    time_limit: float,
) -> MemberSnapshot:
    fallback_id = cluster_ids.get(context) or defaults.get(context) or context
    try:
        api = await connect(context)
    except Exception as e:  # a broken context (missing cert file, bad server URL, ...)
        return MemberSnapshot(
            context, fallback_id, reachable=False, error=f"kubeconfig: {_describe(e)}"
        )
    server = str(api.configuration.host)
    try:
        async with asyncio.timeout(time_limit):
            # First a probe, so an unreachable server is reported as such (by the
            # first read), then the rest concurrently.
            version = await _guard("version", _get(api, "/version"))
            async with asyncio.TaskGroup() as tg:
                cid = tg.create_task(
                    _guard("cluster id", _cluster_id(api, context, cluster_ids, fallback_id))
                )
                nss = tg.create_task(_guard("namespaces", _list(api, NAMESPACES, namespace)))
                exports = tg.create_task(
                    _guard("serviceexports", _list(api, SERVICE_EXPORTS, namespace))
                )
                services = tg.create_task(_guard("services", _list(api, SERVICES, namespace)))
                imports = tg.create_task(
                    _guard("serviceimports", _list(api, SERVICE_IMPORTS, namespace))
                )
                slices = tg.create_task(
                    _guard("endpointslices", _list(api, ENDPOINT_SLICES, namespace))
                )
    except TimeoutError:
        error = f"no answer within {time_limit:g}s"
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=error)
    except _ReadFailed as e:
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=str(e))
    except ExceptionGroup as group:  # the first read that failed; the others were cancelled
        error = str(group.exceptions[0])
        return MemberSnapshot(context, fallback_id, server, reachable=False, error=error)
    finally:
        await api.close()
    cluster_id, id_error = cid.result()
    return MemberSnapshot(
        context=context,
        cluster_id=cluster_id,
        server=server,
        error=id_error,
        server_version=str(version.get("gitVersion") or "") or None,
        namespaces=frozenset(key_of(o)[1] for o in nss.result()),
        exports=tuple(exports.result()),
        services=tuple(services.result()),
        imports=tuple(imports.result()),
        namespace_objects=tuple(nss.result()),
        slices=tuple(slices.result()),
    )


async def _guard(what: str, aw: Awaitable[T]) -> T:
    """``await aw``, turning a failure into `_ReadFailed` naming ``what`` was read."""
    try:
        return await aw
    except Exception as e:
        hint = ""
        if (
            isinstance(e, ApiException)
            and e.status == 404
            and what in ("serviceexports", "serviceimports")
        ):
            hint = " (are the MCS CRDs installed?)"
        raise _ReadFailed(f"{what}: {_describe(e)}{hint}") from e


async def _cluster_id(
    api: ApiClient, context: str, overrides: Mapping[str, str], fallback: str
) -> tuple[str, str | None]:
    """The member's id as ``mcs run`` resolves it (its override, else its
    ClusterProperty, else ``fallback``: the context name the controller knows it by),
    and an error if it is not valid."""
    try:
        cid = overrides.get(context) or await read_cluster_id(api) or fallback
        return validate_cluster_id(cid), None
    except ConfigError as e:
        return context, f"{e}; shown as {context!r}, and `mcs run` would refuse it"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


async def _get(api: ApiClient, path: str, params: Mapping[str, str] | None = None) -> Obj:
    return await request_json(api, "GET", path, query=params)


async def _list(api: ApiClient, kind: ResourceKind, namespace: str | None) -> list[Obj]:
    """Every object of ``kind`` (in ``namespace`` if given), following ``continue``."""
    params: dict[str, str] = {"limit": str(_PAGE)}
    if namespace is not None and kind.namespaced:
        path = kind.path(namespace)
    else:
        path = kind.path()
        if namespace is not None:  # the namespace itself, for NAMESPACES
            params["fieldSelector"] = f"metadata.name={namespace}"
    items: list[Obj] = []
    while True:
        page = await _get(api, path, params)
        items += page.get("items") or []
        token = (page.get("metadata") or {}).get("continue")
        if not token:
            return items
        params["continue"] = token


async def _read_controller(url: str, time_limit: float) -> ControllerSnapshot:
    """GET ``url``/readyz; a controller's health server answers 200 ``ok`` or 503
    ``not ready: <reason>``."""
    target = url.rstrip("/") + "/readyz"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=time_limit)) as session,
            session.get(target) as response,
        ):
            return ControllerSnapshot(url, response.status, await response.text())
    except (aiohttp.ClientError, TimeoutError, ValueError) as e:
        return ControllerSnapshot(url, None, _describe(e))


def key_of(obj: Obj) -> tuple[str, str]:
    """``(namespace, name)`` of an API object."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
