"""The MCS CRDs: installed, established, and serving the versions in use.

mcs reads and writes v1beta1 (the storage version); CoreDNS's ``multicluster`` plugin
reads ServiceImports as v1alpha1, so both must be served."""

from __future__ import annotations

from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.core.api import GROUP
from mcs.status.diagnose.findings import Finding, ok, problem
from mcs.status.diagnose.kube import get

CHECK = "crd"
CRDS = (f"serviceexports.{GROUP}", f"serviceimports.{GROUP}")
SERVED = ("v1alpha1", "v1beta1")
STORAGE = "v1beta1"
INSTALL = "kubectl apply -k crds/ (from the mcs release) in this cluster"


def decide(name: str, crd: dict[str, Any] | None) -> Finding:
    """The verdict on CRD ``name`` (None: not installed)."""
    if crd is None:
        return problem(CHECK, name, "not installed", INSTALL)
    conditions = {
        c.get("type"): c.get("status") for c in (crd.get("status") or {}).get("conditions") or []
    }
    if conditions.get("Established") != "True":
        return problem(
            CHECK,
            name,
            "not established (the API server does not serve it yet)",
            f"kubectl get crd {name} -o yaml: read its conditions (NamesAccepted, Established)",
        )
    versions = {v.get("name"): v for v in (crd.get("spec") or {}).get("versions") or []}
    missing = [v for v in SERVED if not (versions.get(v) or {}).get("served")]
    if missing:
        return problem(
            CHECK,
            name,
            f"does not serve {', '.join(missing)} (mcs uses v1beta1, CoreDNS reads v1alpha1)",
            f"re-apply the CRDs of this mcs release: {INSTALL}",
        )
    if not (versions.get(STORAGE) or {}).get("storage"):
        storage = next((n for n, v in versions.items() if v.get("storage")), "none")
        return problem(
            CHECK,
            name,
            f"stores {storage}, not {STORAGE}",
            f"re-apply the CRDs of this mcs release: {INSTALL}",
        )
    return ok(CHECK, name, f"established, serves {', '.join(sorted(versions))}")


async def check(api: ApiClient, time_limit: float) -> list[Finding]:
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    return [decide(name, await get(api, f"{base}/{name}", time_limit)) for name in CRDS]
