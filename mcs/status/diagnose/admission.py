"""The admission policy that narrows the controller's writes (manifests/admission):
ValidatingAdmissionPolicy is GA from Kubernetes 1.30; the policy and a binding that
denies must both exist."""

from __future__ import annotations

import re
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.status.diagnose.findings import Finding, ok, problem, unknown
from mcs.status.diagnose.kube import get

CHECK = "admission"
POLICY = "mcs-controller-writes"
MINIMUM = (1, 30)
APPLY = "kubectl apply -k manifests/admission"
_BASE = "/apis/admissionregistration.k8s.io/v1"


def server_version(version: dict[str, Any]) -> tuple[int, int] | None:
    """(major, minor) of a ``/version`` answer; minors such as ``30+`` count as 30."""
    try:
        major = int(re.sub(r"\D", "", str(version.get("major", ""))))
        minor = int(re.sub(r"\D", "", str(version.get("minor", ""))))
    except ValueError:
        match = re.match(r"v?(\d+)\.(\d+)", str(version.get("gitVersion", "")))
        return (int(match[1]), int(match[2])) if match else None
    return major, minor


def decide_version(version: dict[str, Any]) -> Finding:
    found = server_version(version)
    subject = "kubernetes-version"
    if found is None:
        return unknown(CHECK, subject, f"cannot read the server version from {version}")
    text = str(version.get("gitVersion") or f"{found[0]}.{found[1]}")
    if found < MINIMUM:
        return problem(
            CHECK,
            subject,
            f"Kubernetes {text}: ValidatingAdmissionPolicy needs 1.30 or later, so the "
            "controller's writes are not narrowed to its own objects",
            "upgrade the cluster to Kubernetes 1.30 or later",
        )
    return ok(CHECK, subject, f"Kubernetes {text} (1.30 or later)")


def decide_policy(policy: dict[str, Any] | None, bindings: list[dict[str, Any]]) -> Finding:
    subject = f"validatingadmissionpolicy/{POLICY}"
    if policy is None:
        return problem(CHECK, subject, "not installed", APPLY)
    binding = [b for b in bindings if (b.get("spec") or {}).get("policyName") == POLICY]
    if not binding:
        return problem(CHECK, subject, "installed but not bound: it checks nothing", APPLY)
    if not any("Deny" in ((b.get("spec") or {}).get("validationActions") or []) for b in binding):
        names = ", ".join(str((b.get("metadata") or {}).get("name")) for b in binding)
        return problem(
            CHECK,
            subject,
            f"bound ({names}) without validationActions Deny: violations are let through",
            APPLY,
        )
    return ok(CHECK, subject, "installed and bound (Deny)")


async def check(api: ApiClient, time_limit: float) -> list[Finding]:
    version = await get(api, "/version", time_limit) or {}
    findings = [decide_version(version)]
    if findings[0].status == "problem":
        return findings  # the admission API is not there to ask
    policy = await get(api, f"{_BASE}/validatingadmissionpolicies/{POLICY}", time_limit)
    bindings = await get(api, f"{_BASE}/validatingadmissionpolicybindings", time_limit) or {}
    findings.append(decide_policy(policy, list(bindings.get("items") or [])))
    return findings
