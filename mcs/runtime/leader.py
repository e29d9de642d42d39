"""Leader election on a ``coordination.k8s.io/v1`` Lease, client-go style.

Only the leader writes; a standby keeps its caches warm and takes over once the
leader has stopped renewing for ``lease_duration`` seconds. Expiry is judged on
the *local* monotonic clock from the moment the standby last saw the lease record
change (client-go's ``observedTime``), so clock skew between processes does not
matter. Every update is guarded by the lease's resourceVersion: of two candidates
racing for an expired lease, one gets a 409 and stays standby.

A leader that fails to renew within ``renew_deadline`` raises ``LeadershipLost``;
the process should then exit (and be restarted) rather than keep writing.

No write is *sent* after a standby could have taken over. A renewal that succeeds
keeps the lease ours until ``renew_deadline`` after the moment it was *sent* (a
standby waits ``lease_duration`` > ``renew_deadline`` from the moment it *saw* the
new record, which is later). ``write_budget()`` is the time left until then; the
writer refuses to start a write with no budget and bounds each write by it, and each
renewal is itself bounded by it, so a hung API server cannot keep a deposed leader
writing: client-go checks its deadline only between renew calls.

What this does not guarantee: a write sent inside the budget can still be committed by
the API server after the lease has passed, when the server (or the network) holds it
for longer than the gap between the renewal and the end of the budget. The budget
bounds what this process sends and how long it waits, not when a server applies it;
that would take fencing on the server side, which Kubernetes does not offer. A write
committed late is one the new leader's next reconcile sees and corrects.

The durations follow client-go's rules (``leaderelection.NewLeaderElector``):
``lease_duration > renew_deadline > 1.2 * retry_period`` (its ``JitterFactor``), and,
because the Lease records whole seconds, ``lease_duration`` is at least 1 s and is
written rounded *up* (a standby never waits less than the leader counts on).
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime.kubeapi import CALL_TIMEOUT

log = structlog.get_logger(__name__)


JITTER_FACTOR = 1.2
"""client-go's ``leaderelection.JitterFactor``: the renew deadline must exceed the retry
period by this factor."""


class LeadershipLost(RuntimeError):
    """The lease could not be renewed in time; another instance may lead now."""


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        if lease_duration < 1:
            raise ValueError(
                f"lease duration {lease_duration}s is under 1 s: the Lease records whole "
                "seconds, so a standby would take over at once"
            )
        if not lease_duration > renew_deadline:
            raise ValueError("the lease duration must be greater than the renew deadline")
        if not renew_deadline > JITTER_FACTOR * retry_period:
            raise ValueError(
                f"the renew deadline must be greater than {JITTER_FACTOR} times the retry period"
            )
        self._api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        # what the Lease records: whole seconds, never less than we count on
        self.lease_duration_seconds = math.ceil(lease_duration)
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = False
        self._valid_until = 0.0  # monotonic time until which the lease is surely ours
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    def write_budget(self) -> float:
        """Seconds for which this process surely still holds the lease (<= 0: stop writing)."""
        if not self.leading:
            return 0.0
        return self._valid_until - time.monotonic()

    async def _attempt(self, limit: float) -> bool:
        """One bounded acquire-or-renew; True if the lease is ours. Failures are logged."""
        sent = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                ok = await self._try_acquire_or_renew(limit)
        except (ApiException, OSError, TimeoutError, aiohttp.ClientError) as e:
            log.warning(
                "lease update failed",
                lease=f"{self.namespace}/{self.name}",
                error=str(e) or type(e).__name__,
            )
            return False
        if ok:
            self._valid_until = sent + self.renew_deadline
        return ok

    async def acquire(self) -> None:
        """Return once this instance holds the lease."""
        while True:  # polling a remote record: there is no local event to wait on
            if await self._attempt(min(CALL_TIMEOUT, self.renew_deadline)):
                break
            await asyncio.sleep(self.retry_period)
        self.leading = True
        log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)

    async def keep(self) -> None:
        """Renew the lease every ``retry_period`` while leading; raise ``LeadershipLost``
        as soon as the renew deadline has passed (not when a hung renewal returns)."""
        while True:
            left = self._valid_until - time.monotonic()
            await asyncio.sleep(max(0.0, min(self.retry_period, left)))
            left = self._valid_until - time.monotonic()
            if left > 0 and await self._attempt(left):
                continue
            if time.monotonic() >= self._valid_until:
                self.leading = False
                raise LeadershipLost(f"lease {self.namespace}/{self.name} not renewed in time")

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby need not wait for expiry."""
        if not self.leading:
            return
        self.leading = False
        limit = min(CALL_TIMEOUT, self.renew_deadline)
        try:
            async with asyncio.timeout(limit):
                lease = await self._api.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=limit
                )
                if lease.spec.holder_identity == self.identity:
                    lease.spec.holder_identity = None
                    lease.spec.lease_duration_seconds = 1
                    await self._api.replace_namespaced_lease(
                        self.name, self.namespace, lease, _request_timeout=limit
                    )
        except (ApiException, OSError, TimeoutError, aiohttp.ClientError) as e:
            log.warning("could not release the lease", error=str(e) or type(e).__name__)
        else:
            log.info("released the lease", lease=f"{self.namespace}/{self.name}")

    async def _try_acquire_or_renew(self, limit: float) -> bool:
        now = datetime.now(UTC)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_duration_seconds,
            "renewTime": _micro_time(now),
        }
        try:
            lease = await self._api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=limit
            )
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                await self._api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=limit
                )
            except ApiException as e2:
                if e2.status == 409:
                    return False
                raise
            return True
        s = lease.spec
        record = (s.holder_identity, s.renew_time, s.lease_duration_seconds)
        if record != self._observed:
            self._observed, self._observed_at = record, time.monotonic()
        holder = s.holder_identity
        expired = time.monotonic() - self._observed_at > (s.lease_duration_seconds or 0)
        if holder and holder != self.identity and not expired:
            return False
        transitions = s.lease_transitions or 0
        if holder != self.identity:
            spec["acquireTime"] = _micro_time(now)
            transitions += 1
        body = {
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "resourceVersion": lease.metadata.resource_version,
            },
            "spec": {
                **spec,
                "leaseTransitions": transitions,
                "acquireTime": spec.get("acquireTime") or _micro_time(s.acquire_time or now),
            },
        }
        try:
            await self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=limit
            )
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
