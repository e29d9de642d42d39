"""Helpers shared by several integration test modules (so that no test module imports
another's): DNS questions to the mesh's CoreDNS, the mesh's processes, and the global
services' tutorial objects (Cilium's rebel-base)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rdatatype

from mcs_mesh.state import MeshState
from tests.integration.conftest import Kubectl, eventually

# --------------------------------------------------------------------------- DNS


def ask(mesh: MeshState, ctx: str, name: str, rdtype: str) -> dns.message.Message:
    member = next(m for m in mesh.members if m.name == ctx)
    assert member.dns_port, "the mesh runs CoreDNS"
    return dns.query.udp(
        dns.message.make_query(name, rdtype), "127.0.0.1", port=member.dns_port, timeout=2
    )


def records(answer: dns.message.Message, rdtype: str) -> set[str]:
    kind = dns.rdatatype.from_text(rdtype)
    return {r.to_text() for rrset in answer.answer if rrset.rdtype == kind for r in rrset}


# --------------------------------------------------------------------------- processes

MESH_EXECUTABLES = {
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "coredns",
}


def processes_naming(directory: Path) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        exe = Path(cmd.split(" ", 1)[0]).name
        if str(directory) in cmd and exe in MESH_EXECUTABLES:
            out.append(f"{entry.name}: {cmd[:120]}")
    return out


# --------------------------------------------------------------------------- global services

C1, C2, C3 = "cluster1", "cluster2", "cluster3"
NAME = "rebel-base"
GLOBAL = "service.cilium.io/global"
SHARED = "service.cilium.io/shared"
AFFINITY = "service.cilium.io/affinity"
OURS = "mcs-controller.dev"
ADDRS = {C1: {"10.1.0.1", "10.1.0.2"}, C2: {"10.2.0.1", "10.2.0.2"}, C3: {"10.3.0.1"}}


def rebel_base(ns: str, annotations: dict[str, str], *, headless: bool = False) -> str:
    """The tutorial's Service (one unnamed port 80)."""
    spec: dict[str, Any] = {"ports": [{"port": 80}], "selector": {"name": NAME}}
    if headless:
        spec["clusterIP"] = "None"
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": ns, "annotations": annotations},
            "spec": spec,
        }
    )


def pods(
    ns: str,
    addresses: set[str],
    *,
    ready: bool = True,
    hostnames: list[str] | None = None,
    name: str = NAME,
) -> str:
    """The EndpointSlice a cluster's own controller would publish for the Service."""
    return json.dumps(
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-local",
                "namespace": ns,
                "labels": {
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "test.example",
                },
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [a],
                    "conditions": {"ready": ready},
                    "nodeName": "node-1",
                    **({"hostname": hostnames[i]} if hostnames else {}),
                }
                for i, a in enumerate(sorted(addresses))
            ],
            "ports": [{"name": "", "port": 80, "protocol": "TCP"}],
        }
    )


def slices(kubectl: Kubectl, ctx: str, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(
        ctx, "get", "endpointslices", "-n", ns, "-l", f"kubernetes.io/service-name={NAME}"
    )["items"]
    return items


def global_slices(kubectl: Kubectl, ctx: str, ns: str) -> list[dict[str, Any]]:
    return [
        s
        for s in slices(kubectl, ctx, ns)
        if s["metadata"]["labels"].get("endpointslice.kubernetes.io/managed-by") == OURS
    ]


def behind(kubectl: Kubectl, ctx: str, ns: str) -> set[str]:
    """The ready addresses behind rebel-base in ``ctx`` (what kube-proxy would use)."""
    return {
        a
        for s in slices(kubectl, ctx, ns)
        for e in s.get("endpoints") or []
        if e.get("conditions", {}).get("ready", True)
        for a in e["addresses"]
    }


def expect(kubectl: Kubectl, ns: str, wanted: dict[str, set[str]], timeout: float = 20) -> None:
    """Every cluster of ``wanted`` converges to exactly its set of addresses."""
    for ctx, addrs in wanted.items():
        eventually(
            lambda ctx=ctx, addrs=addrs: behind(kubectl, ctx, ns) == addrs,
            timeout=timeout,
            what=f"{sorted(addrs)} behind {NAME} in {ctx}",
        )


def deploy(kubectl: Kubectl, ns: str, annotations: dict[str, dict[str, str]]) -> None:
    for ctx, ann in annotations.items():
        kubectl(ctx, "apply", "-f", "-", stdin=rebel_base(ns, ann))
        kubectl(ctx, "apply", "-f", "-", stdin=pods(ns, ADDRS[ctx]))
