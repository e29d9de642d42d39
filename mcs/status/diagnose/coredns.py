"""CoreDNS answers ``clusterset.local`` (KEP-1645's DNS) only when its Corefile's
``kubernetes`` plugin has ``multicluster clusterset.local`` and its ServiceAccount may
list and watch ServiceImports; the second is asked of the API server itself
(SubjectAccessReview as that ServiceAccount)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

from mcs.core.api import GROUP
from mcs.status.diagnose.findings import Finding, ok, problem, unknown
from mcs.status.diagnose.kube import get, post

CHECK = "coredns"
ZONE = "clusterset.local"
VERBS = ("list", "watch")


@dataclass(frozen=True)
class Where:
    namespace: str = "kube-system"
    configmap: str = "coredns"
    deployment: str = "coredns"
    service_account: str = "coredns"


def _strip_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def kubernetes_blocks(corefile: str) -> list[tuple[list[str], str]]:
    """The ``kubernetes`` plugin entries of a Corefile: (its zones, the text of its block)."""
    text = _strip_comments(corefile)
    out = []
    for m in re.finditer(r"^\s*kubernetes\b([^\n{]*)(\{)?", text, re.MULTILINE):
        zones = m.group(1).split()
        body = ""
        if m.group(2):
            depth, i = 1, m.end()
            while i < len(text) and depth:
                depth += {"{": 1, "}": -1}.get(text[i], 0)
                i += 1
            body = text[m.end() : i - 1]
        out.append((zones, body))
    return out


def _zone(name: str) -> str:
    return name.rstrip(".").lower()


def decide_corefile(w: Where, corefile: str | None) -> Finding:
    subject = f"configmap/{w.configmap}"
    snippet = f"kubernetes cluster.local {ZONE} {{ multicluster {ZONE} }}"
    fix = (
        f"kubectl -n {w.namespace} edit configmap {w.configmap}: make the kubernetes plugin "
        f"read `{snippet}` (CoreDNS 1.12.2 or later), then restart CoreDNS"
    )
    if corefile is None:
        return unknown(
            CHECK,
            subject,
            f'no ConfigMap "{w.configmap}" with a Corefile in "{w.namespace}": cannot check '
            "CoreDNS's configuration",
            "pass --coredns-namespace/--coredns-configmap where your cluster keeps it",
        )
    blocks = kubernetes_blocks(corefile)
    if not blocks:
        return problem(CHECK, subject, "the Corefile has no kubernetes plugin", fix)
    for zones, body in blocks:
        multicluster = [
            line.split()[1:] for line in body.splitlines() if line.split()[:1] == ["multicluster"]
        ]
        if any(ZONE in map(_zone, z) for z in multicluster):
            if ZONE not in map(_zone, zones) and "." not in zones:
                return problem(
                    CHECK,
                    subject,
                    f"multicluster {ZONE} is set but the kubernetes plugin is not authoritative "
                    f"for {ZONE} (its zones: {' '.join(zones) or 'the server block'})",
                    fix,
                )
            return ok(CHECK, subject, f"the kubernetes plugin serves {ZONE} (multicluster)")
    return problem(
        CHECK, subject, f"the Corefile does not serve {ZONE}: no multicluster {ZONE} option", fix
    )


def review(w: Where, verb: str) -> dict[str, Any]:
    """A SubjectAccessReview: may CoreDNS's ServiceAccount ``verb`` ServiceImports?"""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": f"system:serviceaccount:{w.namespace}:{w.service_account}",
            "groups": [
                "system:serviceaccounts",
                f"system:serviceaccounts:{w.namespace}",
                "system:authenticated",
            ],
            "resourceAttributes": {"group": GROUP, "resource": "serviceimports", "verb": verb},
        },
    }


def decide_rbac(w: Where, allowed: dict[str, bool]) -> Finding:
    subject = f"serviceaccount/{w.service_account}"
    denied = [v for v in VERBS if not allowed.get(v)]
    if denied:
        return problem(
            CHECK,
            subject,
            f"{w.namespace}/{w.service_account} may not {' or '.join(denied)} serviceimports: "
            f"CoreDNS cannot answer {ZONE}",
            f"add the rule {{apiGroups: [{GROUP}], resources: [serviceimports], verbs: "
            f"[list, watch]}} to the ClusterRole bound to {w.namespace}/{w.service_account} "
            "(system:coredns on kubeadm clusters)",
        )
    return ok(CHECK, subject, f"may {' and '.join(VERBS)} serviceimports")


def service_account(deployment: dict[str, Any] | None, default: str) -> str:
    spec = (((deployment or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    return str(spec.get("serviceAccountName") or default)


async def check(
    api: ApiClient, w: Where, time_limit: float, *, account_given: bool
) -> list[Finding]:
    cm = await get(api, f"/api/v1/namespaces/{w.namespace}/configmaps/{w.configmap}", time_limit)
    corefile = ((cm or {}).get("data") or {}).get("Corefile")
    findings = [decide_corefile(w, corefile)]
    if not account_given:
        deployment = await get(
            api, f"/apis/apps/v1/namespaces/{w.namespace}/deployments/{w.deployment}", time_limit
        )
        w = Where(
            w.namespace, w.configmap, w.deployment, service_account(deployment, w.service_account)
        )
    path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    allowed = {
        verb: bool(
            ((await post(api, path, review(w, verb), time_limit)).get("status") or {}).get(
                "allowed"
            )
        )
        for verb in VERBS
    }
    findings.append(decide_rbac(w, allowed))
    return findings
