"""The controller's Deployment (running, and every Secret key it needs present) and its
leader-election Lease (held, and renewed recently)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.status.diagnose.findings import Finding, ok, problem
from mcs.status.diagnose.kube import get

CHECK = "controller"
DEPLOYMENT = "mcs-controller"
SECRET = "mcs-remote-kubeconfigs"
# the flags' current names and the deprecated ones they replace
_LEASE_NAME = ("--leader-elect-resource-name", "--leader-elect-lease-name")
_LEASE_NAMESPACE = ("--leader-elect-resource-namespace", "--leader-elect-namespace")


@dataclass(frozen=True)
class Settings:
    """What the Deployment's arguments tell the other checks."""

    leader_elect: bool = False
    lease_name: str = "mcs-controller"
    lease_namespace: str = ""
    exclude_namespaces: tuple[str, ...] = ()
    namespace_opt_in: bool = False
    secret_keys: tuple[str, ...] = field(default=())  # keys of the Secret it must have


def settings(deployment: dict[str, Any]) -> Settings:
    """The controller's settings from its Deployment (its container's ``args``, with
    ``$(POD_NAMESPACE)`` as the Deployment's namespace)."""
    namespace = str((deployment.get("metadata") or {}).get("namespace") or "")
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = spec.get("containers") or [{}]
    container = containers[0]
    args = [
        str(a).replace("$(POD_NAMESPACE)", namespace)
        for a in [*(container.get("command") or []), *(container.get("args") or [])]
    ]
    values: dict[str, str] = {}
    flags: set[str] = set()
    for i, arg in enumerate(args):
        if not arg.startswith("--"):
            continue
        name, sep, value = arg.partition("=")
        flags.add(name)
        if sep:
            values[name] = value
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            values[name] = args[i + 1]

    def first(names: tuple[str, ...], default: str) -> str:
        return next((values[n] for n in names if n in values), default)

    keys = tuple(
        sorted(
            {
                str(ref.get("key"))
                for c in containers
                for env in c.get("env") or []
                if (ref := ((env.get("valueFrom") or {}).get("secretKeyRef") or {}))
                and ref.get("name") == SECRET
                and not ref.get("optional")
            }
        )
    )
    exclude = tuple(
        n.strip() for n in values.get("--exclude-namespaces", "").split(",") if n.strip()
    )
    return Settings(
        leader_elect="--leader-elect" in flags,
        lease_name=first(_LEASE_NAME, "mcs-controller"),
        lease_namespace=first(_LEASE_NAMESPACE, namespace or "mcs-system"),
        exclude_namespaces=exclude,
        namespace_opt_in="--namespace-opt-in" in flags,
        secret_keys=keys,
    )


def decide_deployment(namespace: str, deployment: dict[str, Any] | None) -> Finding:
    subject = f"deployment/{DEPLOYMENT}"
    if deployment is None:
        return problem(
            CHECK,
            subject,
            f'not found in namespace "{namespace}"',
            "kubectl apply -k manifests/ (or pass --controller-namespace where it runs)",
        )
    status = deployment.get("status") or {}
    want = int((deployment.get("spec") or {}).get("replicas", 1) or 0)
    available = int(status.get("availableReplicas") or 0)
    see = (
        f"kubectl -n {namespace} describe deployment {DEPLOYMENT}; "
        f"kubectl -n {namespace} logs deployment/{DEPLOYMENT}"
    )
    if want == 0:
        return problem(
            CHECK,
            subject,
            "scaled to 0 replicas",
            f"kubectl -n {namespace} scale deployment {DEPLOYMENT} --replicas=2",
        )
    if available == 0:
        return problem(CHECK, subject, f"0 of {want} replicas available", see)
    if available < want:
        return problem(CHECK, subject, f"{available} of {want} replicas available", see)
    return ok(CHECK, subject, f"{available} of {want} replicas available")


def decide_secret_keys(
    namespace: str, keys: tuple[str, ...], secret: dict[str, Any] | None
) -> Finding:
    """Every key of the Secret that the Deployment reads without ``optional`` exists (a
    missing one keeps the controller's Pods from starting: CreateContainerConfigError)."""
    subject = f"secret/{SECRET}"
    if secret is None:
        return problem(
            CHECK,
            subject,
            f'not found in namespace "{namespace}": the controller has no members',
            "create it (manifests/README.md; hack/make-remote-kubeconfig.sh prints each "
            "member's context)",
        )
    have = set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())
    missing = [k for k in keys if k not in have]
    if missing:
        return problem(
            CHECK,
            subject,
            f"lacks key(s) {', '.join(missing)} that the Deployment reads: its Pods cannot "
            "start (CreateContainerConfigError)",
            f"kubectl -n {namespace} edit secret {SECRET}: add "
            + ", ".join(missing)
            + " (manifests/remote-kubeconfigs.example.yaml)",
        )
    return ok(CHECK, subject, f"has {', '.join(sorted(have))}")


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def decide_lease(s: Settings, lease: dict[str, Any] | None, now: datetime) -> Finding:
    """The Lease is held and its holder renewed it within its lease duration."""
    subject = f"lease/{s.lease_name}"
    where = f'namespace "{s.lease_namespace}"'
    logs = f"kubectl -n {s.lease_namespace} logs deployment/{DEPLOYMENT}"
    if lease is None:
        return problem(
            CHECK,
            subject,
            f"not found in {where}: no replica has become leader, so nothing is written",
            f"{logs} (leader election errors, RBAC on coordination.k8s.io leases)",
        )
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity")
    if not holder:
        return problem(
            CHECK,
            subject,
            "held by no one: no replica is writing",
            f"{logs} (is any replica running?)",
        )
    renewed = _time(spec.get("renewTime") or spec.get("acquireTime"))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if renewed is None:
        return problem(CHECK, subject, f"held by {holder}, never renewed", logs)
    age = (now - renewed).total_seconds()
    if age > duration:
        return problem(
            CHECK,
            subject,
            f"held by {holder}, last renewed {age:.0f}s ago (lease duration {duration:.0f}s): "
            "the leader is gone or stuck; a standby takes over only if one is running",
            f"{logs}; kubectl -n {s.lease_namespace} get pods "
            f"-l app.kubernetes.io/name={DEPLOYMENT}",
        )
    return ok(CHECK, subject, f"held by {holder}, renewed {max(age, 0):.0f}s ago")


async def check(
    api: ApiClient, namespace: str, time_limit: float, now: datetime
) -> tuple[list[Finding], Settings | None, dict[str, Any] | None]:
    """The findings, the controller's settings (None without a Deployment) and its Secret."""
    deployment = await get(
        api, f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}", time_limit
    )
    secret = await get(api, f"/api/v1/namespaces/{namespace}/secrets/{SECRET}", time_limit)
    findings = [decide_deployment(namespace, deployment)]
    s = settings(deployment) if deployment is not None else None
    findings.append(decide_secret_keys(namespace, s.secret_keys if s else (), secret))
    if s is not None and s.leader_elect:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{s.lease_namespace}/leases/{s.lease_name}"
        findings.append(decide_lease(s, await get(api, path, time_limit), now))
    return findings, s, secret
