"""Leader election on a ``coordination.k8s.io/v1`` Lease, client-go style.

Only the leader writes; a standby keeps its caches warm and takes over once the
leader has stopped renewing for ``lease_duration`` seconds. Expiry is judged on
the *local* monotonic clock from the moment the standby last saw the lease record
change (client-go's ``observedTime``), so clock skew between processes does not
matter. Every update is guarded by the lease's resourceVersion: of two candidates
racing for an expired lease, one gets a 409 and stays standby.

A leader that fails to renew within ``renew_deadline`` raises ``LeadershipLost``;
the process should then exit (and be restarted) rather than keep writing.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

log = structlog.get_logger(__name__)


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
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self._api = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = False
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0

    async def acquire(self) -> None:
        """Return once this instance holds the lease."""
        while True:  # polling a remote record: there is no local event to wait on
            try:
                if await self._try_acquire_or_renew():
                    break
            except (ApiException, OSError, TimeoutError) as e:
                log.warning("lease acquisition failed", error=str(e))
            await asyncio.sleep(self.retry_period)
        self.leading = True
        log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)

    async def keep(self) -> None:
        """Renew the lease every ``retry_period`` while leading; raise ``LeadershipLost``."""
        last_renew = time.monotonic()
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                renewed = await self._try_acquire_or_renew()
            except (ApiException, OSError, TimeoutError) as e:
                log.warning("lease renewal failed", error=str(e))
                renewed = False
            if renewed:
                last_renew = time.monotonic()
            elif time.monotonic() - last_renew > self.renew_deadline:
                self.leading = False
                raise LeadershipLost(f"lease {self.namespace}/{self.name} not renewed in time")

    async def release(self) -> None:
        """Give the lease up on a clean shutdown, so a standby need not wait for expiry."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.lease_duration_seconds = 1
                await self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except (ApiException, OSError) as e:
            log.warning("could not release the lease", error=str(e))

    async def _try_acquire_or_renew(self) -> bool:
        now = datetime.now(UTC)
        spec: dict[str, Any] = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": _micro_time(now),
        }
        try:
            lease = await self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            body = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {**spec, "acquireTime": _micro_time(now), "leaseTransitions": 0},
            }
            try:
                await self._api.create_namespaced_lease(self.namespace, body)
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
            await self._api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        return True
