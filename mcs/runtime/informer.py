"""List+watch caches: one ``Informer`` per resource kind per cluster.

An informer keeps an in-memory copy of every object of one kind in one cluster
and tells the controller when it changes. Its contract is client-go's
(``tools/cache/shared_informer.go``):

* The cache is **eventually consistent** with the API server. The states it
  shows for one object are a *subsequence* of the object's real states (some
  may be skipped), and there is no ordering between different objects.
* Identity is ``(namespace, name)``; the UID is not part of it, so a delete and
  re-create seen across a relist looks like a modification.
* After a relist (410 Gone, or an error that may have lost events) the cache is
  replaced and the *difference* is reported as synthetic events, so no change
  is lost; a deletion found that way carries the last known state, which may be
  stale (client-go's ``DeletedFinalStateUnknown``).
* Handlers run inline in the informer's task and must be quick: map the event
  to work-queue keys and return. Reconciles read the cache, not the event.
* The cache is **indexed** (client-go's ``Indexer``): by namespace always, and by
  whatever ``indexers`` the caller names (a label's value, the key an object
  belongs to). Indexes are updated with every change, so a lookup costs what it
  returns, never a scan of the whole cache.

Why not ``kubernetes_asyncio.watch.Watch``: it creates a second ``ApiClient``
(an aiohttp session) per stream that must be closed, deserialises every event
into model objects (slow, and we keep raw dicts), retries a 410 once with the
same stale resourceVersion, and retries silently without ``timeout_seconds``.
Reading the stream ourselves over ``ApiClient.call_api(..., _preload_content=False)``
is a few lines, uses the caller's client and its auth, and leaves every retry
decision here. It also works the same for core, discovery and custom resources
(``CustomObjectsApi`` cannot address the core group: it always builds
``/apis/{group}/...``).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import random
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import aiohttp
import structlog
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.api import Key, Obj, ResourceKind, key_of
from mcs.runtime.observability import LIST_PAGES_SHRUNK, OBJECTS_TOO_LARGE, WATCH_RESTARTS

__all__ = [
    "EventHandler",
    "EventType",
    "IndexFunc",
    "Informer",
    "Store",
    "Transform",
    "label_index",
    "strip_managed_fields",
]

EventType = Literal["ADDED", "MODIFIED", "DELETED"]

EventHandler = Callable[[EventType, Obj | None, Obj | None], None]
"""``(type, old, new)``: ``old`` is None for ADDED, ``new`` is None for DELETED."""

Transform = Callable[[Obj], Obj]
"""Trims a raw object to what the controller needs before it is cached."""

IndexFunc = Callable[[Obj], Iterable[Hashable]]
"""The values an object is indexed under (none, one or several); must not raise."""

log = structlog.get_logger(__name__)

# Memory bounds: what one member's API server (or a tenant in it) can make this process
# hold. A list page is read up to MAX_PAGE_BYTES before it is decoded (decoded JSON
# takes several times its text); a larger one is asked again with half the limit, down
# to one object. An object larger than MAX_OBJECT_BYTES once trimmed is left out of the
# cache (as if absent), logged and counted (``mcs_objects_too_large_total``).
MAX_PAGE_BYTES = 16 * 2**20
MAX_OBJECT_BYTES = 2**20
PAGE_SIZES = {"endpointslices": 100, "services": 250, "serviceexports": 250}
"""List page sizes by plural (others: DEFAULT_PAGE_SIZE): EndpointSlices hold up to
1,000 endpoints each, Services and exports carry users' labels and annotations."""
DEFAULT_PAGE_SIZE = 500


class ObjectTooLarge(ValueError):
    """An object over the per-object byte cap (`Store.upsert` with ``max_bytes``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes once trimmed, more than the cap of {limit}")
        self.size = size


class PageTooLarge(ValueError):
    """A list page of one object still over the page byte cap."""


def strip_managed_fields(obj: Obj) -> Obj:
    """Drop ``metadata.managedFields`` (often most of an object's size), in place."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def label_index(label: str) -> IndexFunc:
    """Index by ``(namespace, value of label)`` for objects that carry ``label``."""

    def values(obj: Obj) -> tuple[Hashable, ...]:
        meta = obj.get("metadata") or {}
        value = (meta.get("labels") or {}).get(label)
        return ((meta.get("namespace") or "", value),) if isinstance(value, str) else ()

    return values


class Store:
    """Objects by key, with indexes kept up to date on every change (client-go's
    ``ThreadSafeStore`` with ``Indexers``, without the threads).

    Every store has the index ``"namespace"``. Each index maps a value to the keys
    of the objects indexed under it, in insertion order; the values each key was
    indexed under are remembered, so an update or delete never recomputes the old
    object's values (an index function may read fields a transform later drops).

    Objects are kept as their JSON text and decoded on each read: a cached object
    costs under a third of its decoded dicts (the caches of 10,000 exports on 3
    clusters: about 110 MiB instead of 360), and no reader can change the cache by
    changing what it got. Objects must be JSON data (dicts, lists, strings, numbers,
    booleans, None): a tuple would come back as a list and compare unequal.

    A relist fills a new store (``empty_like``) page by page and swaps it in;
    ``changes_from`` says what changed, decoding only what did.
    """

    NAMESPACE = "namespace"

    def __init__(self, indexers: Mapping[str, IndexFunc] | None = None) -> None:
        if indexers and self.NAMESPACE in indexers:
            raise ValueError(f"index {self.NAMESPACE!r} is built in")
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._objects: dict[Key, str] = {}
        self._by_ns: dict[str, dict[Key, None]] = {}
        self._indices: dict[str, dict[Hashable, dict[Key, None]]] = {n: {} for n in self._indexers}
        self._indexed: dict[str, dict[Key, tuple[Hashable, ...]]] = {n: {} for n in self._indexers}

    # ------------------------------------------------------------- reading

    def get(self, key: Key) -> Obj | None:
        text = self._objects.get(key)
        return None if text is None else _decode(text)

    def __len__(self) -> int:
        return len(self._objects)

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __iter__(self) -> Iterator[Key]:
        return iter(self._objects)

    def items(self) -> Iterator[tuple[Key, Obj]]:
        for key, text in self._objects.items():
            yield key, _decode(text)

    def in_namespace(self, namespace: str) -> builtins.list[Obj]:
        """The objects of one namespace (``""``: cluster-scoped)."""
        return [_decode(self._objects[k]) for k in self._by_ns.get(namespace, ())]

    def keys_in_namespace(self, namespace: str) -> builtins.list[Key]:
        return builtins.list(self._by_ns.get(namespace, ()))

    def by_index(self, index: str, value: Hashable) -> builtins.list[Obj]:
        """The objects indexed under ``value`` in ``index`` (client-go's ``ByIndex``)."""
        return [_decode(self._objects[k]) for k in self._indices[index].get(value, ())]

    def count(self, index: str, value: Hashable) -> int:
        """How many objects are indexed under ``value`` in ``index`` (none is decoded)."""
        return len(self._indices[index].get(value, ()))

    def index_values(self, index: str) -> builtins.list[Hashable]:
        """Every value of ``index`` that some object is indexed under (``ListIndexFuncValues``)."""
        return builtins.list(self._indices[index])

    def values_of(self, index: str, key: Key) -> tuple[Hashable, ...]:
        """The values the object at ``key`` is indexed under in ``index``."""
        return self._indexed[index].get(key, ())

    # ------------------------------------------------------------- writing

    def upsert(self, key: Key, obj: Obj, *, max_bytes: int | None = None) -> Obj | None:
        """Store ``obj`` at ``key``; returns the object it replaced. With ``max_bytes``,
        an object whose text is longer raises ``ObjectTooLarge`` and nothing changes."""
        text = _encode(obj)
        if max_bytes is not None and len(text) > max_bytes:
            raise ObjectTooLarge(len(text), max_bytes)
        old = self._objects.get(key)
        self._objects[key] = text
        if old is None:
            self._by_ns.setdefault(key[0], {})[key] = None
        self._reindex(key, obj)
        return None if old is None else _decode(old)

    def delete(self, key: Key) -> Obj | None:
        """Remove the object at ``key``; returns it (None if there was none)."""
        old = self._objects.pop(key, None)
        if old is None:
            return None
        _discard(self._by_ns, key[0], key)
        self._reindex(key, None)
        return _decode(old)

    def empty_like(self) -> Store:
        """A new, empty store with the same indexes (a relist fills one, then swaps it in)."""
        return Store(self._indexers)

    def changes_from(self, old: Store) -> Iterator[tuple[EventType, Obj | None, Obj | None]]:
        """What turned ``old`` into this store, as watch events would say it: a DELETED
        for each key only ``old`` has, then an ADDED or MODIFIED for each key whose
        object is new or different. Compares the stored texts, so an unchanged object
        (the most of a relist) is never decoded."""
        for key, text in old._objects.items():
            if key not in self._objects:
                yield "DELETED", _decode(text), None
        for key, text in self._objects.items():
            before = old._objects.get(key)
            if before is None:
                yield "ADDED", None, _decode(text)
            elif before != text:
                was, now = _decode(before), _decode(text)
                if was != now:  # not only a different order of the same keys
                    yield "MODIFIED", was, now

    def _reindex(self, key: Key, obj: Obj | None) -> None:
        for name, func in self._indexers.items():
            index, indexed = self._indices[name], self._indexed[name]
            before = indexed.get(key, ())
            after = tuple(dict.fromkeys(func(obj))) if obj is not None else ()
            if before == after:
                continue
            for value in before:
                if value not in after:
                    _discard(index, value, key)
            for value in after:
                if value not in before:
                    index.setdefault(value, {})[key] = None
            if after:
                indexed[key] = after
            else:
                indexed.pop(key, None)


def _encode(obj: Obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _decode(text: str) -> Obj:
    return cast(Obj, json.loads(text))


def _discard(index: dict[Any, dict[Key, None]], value: Hashable, key: Key) -> None:
    keys = index.get(value)
    if keys is not None:
        keys.pop(key, None)
        if not keys:
            del index[value]


class Informer:
    """A list+watch cache of one resource kind in one cluster.

    ``start()`` spawns the one task that lists, then watches from the list's
    resourceVersion with bookmarks, resuming from the last resourceVersion seen
    (bookmarks included) whenever the server ends the stream
    (``watch_timeout``, ~5 min) or the connection breaks. ``synced`` is set
    once the first list has been applied; nothing should be decided from the
    cache before that.

    Error handling (all inside the task, which never ends by itself):

    * **410 Gone** (HTTP status, watch ERROR event, or an expired list
      ``continue`` token): relist at once, replace the cache and emit the
      difference. A second 410 in a row waits for backoff first.
    * **Transport errors** (connection refused/reset, a stall longer than
      ``watch_timeout + stall_grace`` with no byte received, caught both by the
      client's ``sock_read`` timeout and an outer ``asyncio.timeout``): back
      off, then watch again from the last resourceVersion.
    * **Anything else** (4xx/5xx answers, ERROR events, undecodable data):
      back off, then relist.

    Backoff is exponential with jitter, from ``backoff_base`` to
    ``backoff_cap`` seconds, and is reset by any event received. Each restart
    is counted in ``mcs_watch_restarts_total{cluster,resource,reason}`` (reason
    ``gone``, ``stalled`` or ``error``), logged with ``cluster``/``resource``
    bound, and reflected in ``connected``, ``last_error`` and
    ``disconnected_since`` (``time.monotonic()`` of the first failure since the
    last successful request; None while connected), which a caller can use for
    an unreachable member's grace period.

    Events: ``on_event(type, old, new)`` is called after the cache was updated,
    for every change of the *transformed* object. An update whose transformed
    object equals the cached one is not reported, so a transform that drops
    ``resourceVersion`` and status also drops no-op updates. Exceptions from
    ``on_event`` are logged and swallowed; the cache stays updated.

    Resource handling: ``stop()`` cancels and awaits the task and closes the
    response in flight. The ``ApiClient`` belongs to the caller, who closes it
    after ``stop()``. Objects returned by ``get``/``list`` are decoded afresh from
    the cache on each call (see `Store`): a reader may keep or change them.

    Args:
        api_client: the cluster's client (auth, host, TLS).
        cluster: the cluster's name, for logs, metrics and the caller.
        kind: what to list and watch (with an optional label selector).
        on_event: change callback, or None to only cache.
        transform: trims each object before caching (must not raise); it gets
            the whole decoded object, which it may modify. Without a
            transform, ``managedFields`` are dropped (often most of an object).
        indexers: named index functions over the *transformed* objects, for
            ``by_index`` (the ``"namespace"`` index is always there).
        namespace: restrict to one namespace (None: all namespaces).
        watch_timeout: server-side ``timeoutSeconds`` of each watch request.
        stall_grace: how much longer than ``watch_timeout`` a silent stream is
            trusted before it counts as stalled.
        page_size: ``limit`` of each list page (default: by kind, `PAGE_SIZES`).
        max_page_bytes: bytes of one list page read before it is decoded; a larger
            page is asked again with half the limit (default `MAX_PAGE_BYTES`).
        max_object_bytes: bytes of one object once trimmed; a larger one is left out
            of the cache (default `MAX_OBJECT_BYTES`).
        initial_watch_resource_version: test hook: watch from this
            resourceVersion (e.g. ``"1"``) after the first list instead of the
            list's, to force the 410 path against a real API server.
    """

    def __init__(
        self,
        api_client: ApiClient,
        *,
        cluster: str,
        kind: ResourceKind,
        on_event: EventHandler | None = None,
        transform: Transform | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
        namespace: str | None = None,
        watch_timeout: int = 300,
        stall_grace: float = 30.0,
        page_size: int | None = None,
        max_page_bytes: int | None = None,
        max_object_bytes: int | None = None,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        initial_watch_resource_version: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.kind = kind
        self.synced = asyncio.Event()
        self.connected = False
        self.last_error: str | None = None
        self.disconnected_since: float | None = None
        self.relists = 0
        self._api = api_client
        self._on_event = on_event
        self._transform = transform
        self._path = kind.path(namespace)
        self._watch_timeout = watch_timeout
        self._stall_after = watch_timeout + stall_grace
        self._page_size = page_size or PAGE_SIZES.get(kind.plural, DEFAULT_PAGE_SIZE)
        self._max_page_bytes = max_page_bytes or MAX_PAGE_BYTES
        self._max_object_bytes = max_object_bytes or MAX_OBJECT_BYTES
        self._connect_timeout = connect_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._initial_watch_rv = initial_watch_resource_version
        self._cache = Store(indexers)
        self._own: dict[Key, _OwnWrites] = {}  # objects we write, until the watch catches up
        self._rv: str | None = None  # where the next watch starts; None: relist first
        self._failures = 0  # consecutive, reset by any event
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- reading

    def has_synced(self) -> bool:
        """True once the first list has been applied to the cache."""
        return self.synced.is_set()

    @property
    def resource_version(self) -> str | None:
        """The resourceVersion the next watch would start from."""
        return self._rv

    def get(self, namespace: str, name: str) -> Obj | None:
        """The cached object, or None. Use ``""`` as namespace for cluster-scoped kinds."""
        return self._cache.get((namespace, name))

    def keys(self, namespace: str | None = None) -> builtins.list[Key]:
        """Every cached key, or those of one namespace (through the namespace index)."""
        if namespace is None:
            return builtins.list(self._cache)
        return self._cache.keys_in_namespace(namespace)

    def __len__(self) -> int:
        return len(self._cache)

    def by_index(self, index: str, value: Hashable) -> builtins.list[Obj]:
        """The cached objects indexed under ``value`` by the indexer named ``index``."""
        return self._cache.by_index(index, value)

    def count(self, index: str, value: Hashable) -> int:
        """How many cached objects are indexed under ``value`` by ``index``."""
        return self._cache.count(index, value)

    def index_values(self, index: str) -> builtins.list[Hashable]:
        """Every value some cached object is indexed under by ``index``."""
        return self._cache.index_values(index)

    def values_of(self, index: str, key: Key) -> tuple[Hashable, ...]:
        """The values the cached object at ``key`` is indexed under by ``index``."""
        return self._cache.values_of(index, key)

    async def write_through(self, key: Key, write: Awaitable[Obj | None]) -> Obj | None:
        """Await ``write``, a write of ours to the object at ``key``, and return the
        server's answer (the object written, or None).

        The answer goes into the cache at once (client-go's ``MutationCache``), so that
        a reconcile that runs before the watch delivers it does not repeat the write;
        no event is emitted for it, nor for its watch event, whichever comes first: the
        writer knows what it wrote. Watch events of the object that arrive while the
        write is in flight are held until it ends, then reported as one change if any
        of them was not ours (someone else's write, a deletion, or our write failed).
        An event older than an answer already cached leaves the cache as it is, and
        is reported if it was not ours: our write may have overtaken a change that
        the reconcile which made it did not see."""
        own = self._own.setdefault(key, _OwnWrites())
        own.in_flight += 1
        answer = None
        try:
            answer = await write
            return answer
        finally:
            own.in_flight -= 1
            self._answered(key, own, answer)

    def _answered(self, key: Key, own: _OwnWrites, answer: Obj | None) -> None:
        rv = None if answer is None else _int_rv(answer)
        if rv is not None and rv in own.held:
            own.held.discard(rv)  # its watch event came first: ours, not a change
        elif answer is not None and rv is not None and not own.deleted and own.older(rv):
            new = self._trim(answer)
            if self._cache.upsert(key, new) != new:
                own.answered.add(rv)  # else its event, if any, changes nothing either
            own.cached_rv = rv
        if own.in_flight:
            return
        if own.held:
            self._emit_change(key, own.before)
        own.held.clear()
        own.before, own.deleted = None, False
        if not own.answered:
            del self._own[key]

    def _emit_change(self, key: Key, before: Obj | None) -> None:
        """Report what changed at ``key`` since ``before``, as one event."""
        now = self._cache.get(key)
        if before is None and now is not None:
            self._emit("ADDED", None, now)
        elif before is not None and now is None:
            self._emit("DELETED", before, None)
        elif before is not None and now is not None:
            self._emit("MODIFIED", before, now)

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the list+watch task. Call from a running event loop, once."""
        if self._task is not None:
            raise RuntimeError(f"informer {self.kind.name} in {self.cluster} already started")
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"informer {self.kind.name} in {self.cluster}"
        )

    async def stop(self) -> None:
        """Cancel the task and wait for it. Idempotent; the cache stays readable."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # we are being cancelled ourselves: do not swallow it
        finally:
            self.connected = False

    # ------------------------------------------------------------------- loop

    async def _run(self) -> None:
        while True:
            try:
                if self._rv is None:
                    await self._relist()
                    if self._initial_watch_rv is not None:
                        self._rv, self._initial_watch_rv = self._initial_watch_rv, None
                await self._watch()
            except Exception as exc:  # every failure is retried; see the class docstring
                delay = self._record_failure(exc)
                if delay > 0:
                    await asyncio.sleep(delay)

    def _record_failure(self, exc: Exception) -> float:
        """Classify a failure, decide relist vs. re-watch, and return the delay."""
        self._failures += 1
        self.last_error = _describe(exc)
        backoff = min(self._backoff_cap, self._backoff_base * 2.0 ** min(self._failures - 1, 32))
        delay = backoff * random.uniform(0.5, 1.0)
        bound = log.bind(cluster=self.cluster, resource=self.kind.name)
        if isinstance(exc, ApiException) and exc.status == 410:
            reason = "gone"
            self._rv = None
            delay = 0.0 if self._failures == 1 else delay
            bound.info(
                "resource version expired, relisting", error=self.last_error, delay=round(delay, 3)
            )
        else:
            self.connected = False
            if self.disconnected_since is None:
                self.disconnected_since = time.monotonic()
            if isinstance(exc, TimeoutError):
                reason = "stalled"  # keep the resourceVersion: resume the watch
            elif isinstance(exc, aiohttp.ClientError | OSError):
                reason = "error"  # transport: resume the watch
            else:
                reason = "error"
                self._rv = None  # the server said no, or we could not read it: relist
            bound.warning(
                "list/watch failed, retrying",
                error=self.last_error,
                reason=reason,
                attempt=self._failures,
                delay=round(delay, 3),
                relist=self._rv is None,
                exc_info=not isinstance(exc, ApiException | aiohttp.ClientError | OSError),
            )
        WATCH_RESTARTS.labels(cluster=self.cluster, resource=self.kind.name, reason=reason).inc()
        return delay

    # ------------------------------------------------------------------- list

    async def _relist(self) -> None:
        """List everything into a new cache, swap it in and emit what changed."""
        fresh, rv = await self._list()
        old, self._cache = self._cache, fresh
        self._own = {k: own for k, own in self._own.items() if own.in_flight}
        for own in self._own.values():
            own.forget()
        self._rv = rv
        self.relists += 1
        for etype, before, after in fresh.changes_from(old):
            self._emit(etype, before, after)
        self.synced.set()
        log.info(
            "listed",
            cluster=self.cluster,
            resource=self.kind.name,
            objects=len(fresh),
            resource_version=rv,
            relists=self.relists,
        )

    async def _list(self) -> tuple[Store, str]:
        """All objects (paginated) in a new store, and the list's resourceVersion. Each
        page is trimmed and stored (as text) as it arrives, so a relist holds one page
        of decoded objects beside the two caches, never the whole list."""
        limit = self._page_size
        params = {"limit": str(limit)}
        if self.kind.label_selector:
            params["labelSelector"] = self.kind.label_selector
        timeout = aiohttp.ClientTimeout(sock_connect=self._connect_timeout, sock_read=60)
        fresh = self._cache.empty_like()
        while True:
            params["limit"] = str(limit)
            response = await self._request(params, timeout)
            try:
                raw = await _read_at_most(response, self._max_page_bytes)
            finally:
                response.release()
            if raw is None:
                if limit == 1:
                    raise PageTooLarge(
                        f"one {self.kind.name} is more than {self._max_page_bytes} bytes"
                    )
                limit = max(1, limit // 2)
                LIST_PAGES_SHRUNK.labels(cluster=self.cluster, resource=self.kind.name).inc()
                log.warning(
                    "list page over the byte cap; asking for fewer objects",
                    cluster=self.cluster,
                    resource=self.kind.name,
                    max_page_bytes=self._max_page_bytes,
                    limit=limit,
                )
                continue
            body = json.loads(raw)
            del raw
            # List items carry no kind/apiVersion; watch events do. Make them alike.
            kind = str(body.get("kind", "")).removesuffix("List")
            api_version = body.get("apiVersion")
            for item in body.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                key = key_of(item)
                try:
                    fresh.upsert(key, self._trim(item), max_bytes=self._max_object_bytes)
                except ObjectTooLarge as e:
                    self._too_large(key, e)
            meta = body.get("metadata") or {}
            if not meta.get("continue"):
                return fresh, str(meta["resourceVersion"])
            params["continue"] = meta["continue"]
            del body  # the next page replaces this one

    # ------------------------------------------------------------------ watch

    async def _watch(self) -> None:
        """One watch request from ``self._rv``, until the server ends it."""
        assert self._rv is not None
        params = {
            "watch": "true",
            "resourceVersion": self._rv,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._watch_timeout),
        }
        if self.kind.label_selector:
            params["labelSelector"] = self.kind.label_selector
        # The server ends the stream after timeoutSeconds and sends bookmarks
        # meanwhile; a stream silent for longer is stuck (kubernetes_asyncio
        # #360): the socket read timeout and the outer watchdog both catch it.
        timeout = aiohttp.ClientTimeout(
            sock_connect=self._connect_timeout, sock_read=self._stall_after
        )
        async with asyncio.timeout(self._stall_after + self._connect_timeout):
            response = await self._request(params, timeout)
            try:
                while line := await response.content.readline():
                    if line.strip():
                        self._apply(json.loads(line))
            finally:
                response.close()
        self._failures = 0

    def _apply(self, event: Obj) -> None:
        """Apply one watch event to the cache and report it."""
        etype = event.get("type")
        obj: Obj = event.get("object") or {}
        if etype == "ERROR":
            raise ApiException(status=obj.get("code"), reason=_status_reason(obj))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if etype in ("ADDED", "MODIFIED"):
            key = key_of(obj)
            own = self._own.get(key)
            if own is None:
                self._store(key, self._trim(obj), report=True)
            else:
                self._apply_own(key, own, obj)
        elif etype == "DELETED":
            key = key_of(obj)
            old = self._cache.delete(key)
            own = self._own.get(key)
            if own is not None:
                own.forget()
                if not own.in_flight:
                    del self._own[key]
            self._emit("DELETED", old if old is not None else self._trim(obj), None)
        elif etype != "BOOKMARK":
            log.warning(
                "unknown watch event", cluster=self.cluster, resource=self.kind.name, type=etype
            )
        if rv:
            self._rv = str(rv)
        self._failures = 0

    def _apply_own(self, key: Key, own: _OwnWrites, obj: Obj) -> None:
        """An ADDED or MODIFIED event of an object we write (see ``write_through``)."""
        rv = _int_rv(obj)
        if rv is not None and (rv in own.answered or rv == own.cached_rv):
            own.answered.discard(rv)  # our write, watched: the cache holds it already
            if not own.answered and not own.in_flight:
                del self._own[key]
            return
        if rv is None or own.older(rv):
            cached = self._store(key, self._trim(obj), report=not own.in_flight)
            own.cached_rv = rv
        else:
            cached = self._cache.get(key)
            if not own.in_flight:
                # Someone else's write that ours overtook: the cache keeps our newer
                # answer, and the key is looked at again.
                self._emit("MODIFIED", cached, cached)
        if own.in_flight:
            if not own.held:
                own.before = cached
            own.held.add(rv if rv is not None else -1)

    def _store(self, key: Key, new: Obj, *, report: bool) -> Obj | None:
        """Cache ``new`` at ``key``; report the change (if ``report`` and there is one).
        Returns the object it replaced. An object over the per-object cap is left out:
        the key is dropped from the cache (reported as a deletion)."""
        try:
            old = self._cache.upsert(key, new, max_bytes=self._max_object_bytes)
        except ObjectTooLarge as e:
            self._too_large(key, e)
            old = self._cache.delete(key)
            if report and old is not None:
                self._emit("DELETED", old, None)
            return old
        if report and old != new:
            self._emit("ADDED" if old is None else "MODIFIED", old, new)
        return old

    def _too_large(self, key: Key, error: ObjectTooLarge) -> None:
        OBJECTS_TOO_LARGE.labels(cluster=self.cluster, resource=self.kind.name).inc()
        log.warning(
            "object too large; left out of the cache",
            cluster=self.cluster,
            resource=self.kind.name,
            namespace=key[0],
            name=key[1],
            size=error.size,
            max_object_bytes=self._max_object_bytes,
        )

    def _trim(self, obj: Obj) -> Obj:
        return strip_managed_fields(obj) if self._transform is None else self._transform(obj)

    def _emit(self, etype: EventType, old: Obj | None, new: Obj | None) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(etype, old, new)
        except Exception:
            obj = new if new is not None else old
            log.exception(
                "event handler failed",
                cluster=self.cluster,
                resource=self.kind.name,
                event=etype,
                key=key_of(obj) if obj else None,
            )

    # ------------------------------------------------------------------- HTTP

    async def _request(
        self, params: dict[str, str], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """GET the collection; the caller releases the response. Non-200 raises
        ``ApiException`` with the Status's code, reason and message."""
        response: aiohttp.ClientResponse = await self._api.call_api(
            self._path,
            "GET",
            query_params=builtins.list(params.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=client_timeout,
        )
        if response.status == 200:
            self.connected = True
            self.last_error = None
            self.disconnected_since = None
            return response
        try:
            text = await response.text()
        finally:
            response.release()
        try:
            reason = _status_reason(json.loads(text))
        except (ValueError, AttributeError):
            reason = response.reason or text[:200]
        raise ApiException(status=response.status, reason=reason)


@dataclass(slots=True)
class _OwnWrites:
    """Our writes to one object whose watch events have not all been seen."""

    in_flight: int = 0
    answered: set[int] = field(default_factory=set)  # written, cached, not yet watched
    held: set[int] = field(default_factory=set)  # watched during a write, not yet explained
    before: Obj | None = None  # the cached object when the first held event came
    deleted: bool = False  # deleted or relisted during a write: do not cache its answer
    # The resourceVersion of the cached object, once an answer or an event since the
    # first write set it (cached objects need not keep theirs: see mcs.core.cachefields).
    # Until then the cache holds a state older than any write or event still to come.
    cached_rv: int | None = None

    def older(self, rv: int) -> bool:
        """True if the cached object is older than ``rv``."""
        return self.cached_rv is None or self.cached_rv < rv

    def forget(self) -> None:
        """Forget all but the count of writes in flight, after a deletion or a relist
        (both reported already): their answers, older than that, are not cached."""
        self.answered.clear()
        self.held.clear()
        self.before, self.deleted, self.cached_rv = None, True, None


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or None as soon as it is longer than ``limit`` bytes (the rest unread)."""
    length = response.content_length
    if length is not None and length > limit:
        return None
    chunks: builtins.list[bytes] = []
    size = 0
    while chunk := await response.content.read(2**16):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _int_rv(obj: Obj) -> int | None:
    """The object's resourceVersion as an integer (what etcd gives), or None."""
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or "")
    except ValueError:
        return None


def _describe(exc: Exception) -> str:
    """A one-line description of a failure, for logs and ``last_error``."""
    if isinstance(exc, ApiException):
        return f"HTTP {exc.status}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _status_reason(status: Obj) -> str:
    """``Reason: message`` of a ``Status`` object."""
    return f"{status.get('reason')}: {status.get('message')}"
