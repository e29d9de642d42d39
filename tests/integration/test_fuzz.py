"""Fuzzing bad input against real API servers: >= 1,000 generated Services,
ServiceExports and EndpointSlices (names at length limits, 100+ ports, duplicate port
names, unknown protocols, every Service type, missing fields, huge label and annotation
maps, IPv6-only, ExternalName, selector-less, odd endpoints). What the API server
rejects never exists; what it accepts the controller must handle: no crash, no write
the API server rejects, a clear condition on every export.

``MCS_FUZZ_OBJECTS`` (default 1000) sets the size; the seed is printed
(``MCS_CHAOS_SEED`` replays it).
"""

from __future__ import annotations

import json
import os
import random
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl
from tests.integration.faults import log_events, seed_for

pytestmark = pytest.mark.faults

CLUSTERS = ["cluster1", "cluster2", "cluster3"]
Obj = dict[str, Any]


class Gen:
    def __init__(self, rng: random.Random, ns: str) -> None:
        self.rng, self.ns = rng, ns
        self.n = 0

    def name(self) -> str:
        """Mostly valid DNS-1035 labels, some at the 63-character limit."""
        self.n += 1
        base = f"f{self.n}-"
        r = self.rng.random()
        if r < 0.2:  # exactly 63 characters
            return base + "x" * (62 - len(base)) + "z"
        if r < 0.25:  # 64: the API server refuses it
            return base + "y" * (64 - len(base))
        return base + "".join(self.rng.choices(string.ascii_lowercase + string.digits, k=6))

    def ports(self) -> list[Obj]:
        r = self.rng.random()
        proto = ["TCP", "UDP", "SCTP"]
        if r < 0.1:  # 100+ ports
            count = self.rng.randint(100, 130)
            return [
                {"name": f"p{i}", "port": 1000 + i, "protocol": self.rng.choice(proto)}
                for i in range(count)
            ]
        if r < 0.2:  # duplicate names (refused)
            return [{"name": "dup", "port": 80}, {"name": "dup", "port": 81}]
        if r < 0.3:  # unknown protocol (refused)
            return [{"name": "x", "port": 80, "protocol": self.rng.choice(["HTTP", "tcp", "QUIC"])}]
        if r < 0.35:
            return []
        if r < 0.45:  # one unnamed port, odd numbers
            return [{"port": self.rng.choice([1, 65535, 0, 70000]), "protocol": "TCP"}]
        ports = []
        for i in range(self.rng.randint(1, 4)):
            p: Obj = {"name": f"n{i}", "port": self.rng.randint(1, 65535)}
            if self.rng.random() < 0.7:
                p["protocol"] = self.rng.choice(proto)
            if self.rng.random() < 0.2:
                p["appProtocol"] = self.rng.choice(["http", "kubernetes.io/h2c", "x" * 70])
            ports.append(p)
        return ports

    def metadata_map(self) -> dict[str, str]:
        r = self.rng.random()
        if r < 0.5:
            return {}
        if r < 0.7:  # huge
            return {f"k{i}.example.com/key-{i}": "v" * self.rng.randint(0, 63) for i in range(300)}
        keys = ["ok", "bad key", "UPPER", "a" * 64, "example.com/" + "b" * 63, "-lead", "x/y/z"]
        vals = ["", "ok", "has space", "c" * 64, "ünïcode", "-lead", "a" * 10000]
        return {self.rng.choice(keys): self.rng.choice(vals) for _ in range(self.rng.randint(1, 5))}

    def service(self, name: str) -> Obj:
        t = self.rng.choice(
            ["ClusterIP", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName", "Headless"]
        )
        spec: Obj = {"ports": self.ports()}
        if t == "Headless":
            spec["clusterIP"] = "None"
        elif t == "ExternalName":
            spec = {"type": "ExternalName", "externalName": "example.com"}
        else:
            spec["type"] = t
        if self.rng.random() < 0.5:
            spec["selector"] = {"app": name}
        r = self.rng.random()
        if r < 0.15:
            spec["ipFamilies"] = ["IPv6"]
            spec["ipFamilyPolicy"] = "SingleStack"
        elif r < 0.25:
            spec["ipFamilyPolicy"] = self.rng.choice(["PreferDualStack", "RequireDualStack"])
        if self.rng.random() < 0.2:
            spec["sessionAffinity"] = "ClientIP"
            spec["sessionAffinityConfig"] = {
                "clientIP": {"timeoutSeconds": self.rng.choice([1, 86400, 0, 90000])}
            }
        if self.rng.random() < 0.1:
            spec["internalTrafficPolicy"] = "Local"
        if self.rng.random() < 0.1:
            spec.pop("ports", None)
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": name,
                "namespace": self.ns,
                "labels": self.metadata_map(),
                "annotations": self.metadata_map(),
            },
            "spec": spec,
        }

    def export(self, name: str) -> Obj:
        spec: Obj = {}
        if self.rng.random() < 0.5:
            spec["exportedLabels"] = self.metadata_map()
        if self.rng.random() < 0.5:
            spec["exportedAnnotations"] = self.metadata_map()
        return {
            "apiVersion": "multicluster.x-k8s.io/v1beta1",
            "kind": "ServiceExport",
            "metadata": {"name": name, "namespace": self.ns},
            **({"spec": spec} if spec or self.rng.random() < 0.5 else {}),
        }

    def endpoint_slice(self, service: str) -> Obj:
        fam = self.rng.choice(["IPv4", "IPv4", "IPv6", "FQDN"])
        addrs = {
            "IPv4": ["10.9.0.1", "10.9.0.2", "999.1.1.1", "fd00::1"],
            "IPv6": ["fd00::1", "fd00::2", "10.0.0.1"],
            "FQDN": ["a.example.com", "bad name"],
        }[fam]
        endpoints = [
            {
                "addresses": [self.rng.choice(addrs)],
                **(
                    {"conditions": {"ready": self.rng.random() < 0.8}}
                    if self.rng.random() < 0.7
                    else {}
                ),
                **(
                    {"hostname": self.rng.choice(["h", "H_bad", "a" * 63])}
                    if self.rng.random() < 0.2
                    else {}
                ),
            }
            for _ in range(self.rng.randint(0, 5))
        ]
        ports = self.ports()
        return {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{service}-{self.rng.randrange(1000)}",
                "namespace": self.ns,
                "labels": {
                    "kubernetes.io/service-name": service,
                    "endpointslice.kubernetes.io/managed-by": "fuzz.example",
                },
            },
            "addressType": fam,
            "endpoints": endpoints,
            **({"ports": ports} if self.rng.random() < 0.9 else {}),
        }


def _apply_each(kubectl: Kubectl, ctx: str, items: list[Obj]) -> int:
    """Apply a batch; the API server refuses what is invalid. Returns how many exist."""
    kubectl(
        ctx,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        check=False,
    )
    return len(items)


def test_fuzz_bad_input(
    accounts: ServiceAccounts, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    rng = random.Random(seed_for("test_fuzz_bad_input"))
    total = int(os.environ.get("MCS_FUZZ_OBJECTS", "1000"))
    gen = Gen(rng, namespace)
    ctl = Controllers("central", accounts, tmp_path)
    generated = 0
    try:
        ctl.start("central", "--resync-period", "30")
        while generated < total:
            batch: dict[str, list[Obj]] = {c: [] for c in CLUSTERS}
            for _ in range(20):
                name = gen.name()
                for ctx in rng.sample(CLUSTERS, rng.randint(1, 3)):
                    kinds: list[Callable[[], Obj]] = [lambda n=name: gen.export(n)]
                    if rng.random() < 0.85:
                        kinds.append(lambda n=name: gen.service(n))
                    if rng.random() < 0.6:
                        kinds += [lambda n=name: gen.endpoint_slice(n)] * rng.randint(1, 3)
                    batch[ctx] += [k() for k in kinds]
            for ctx, items in batch.items():
                generated += _apply_each(kubectl, ctx, items)
            assert ctl.procs["central"].poll() is None, ctl.log_tail("central")
        exports = {
            ctx: kubectl.json(ctx, "get", "serviceexports.multicluster.x-k8s.io", "-n", namespace)[
                "items"
            ]
            for ctx in CLUSTERS
        }
        accepted = sum(len(v) for v in exports.values())
        deadline = time.monotonic() + 120
        while True:
            unclear = []
            for ctx in CLUSTERS:
                for e in kubectl.json(
                    ctx, "get", "serviceexports.multicluster.x-k8s.io", "-n", namespace
                )["items"]:
                    conds = {c["type"]: c for c in (e.get("status") or {}).get("conditions") or []}
                    valid = conds.get("Valid")
                    if not valid or not valid.get("reason") or not valid.get("message"):
                        unclear.append(f"{ctx}/{e['metadata']['name']}")
            if not unclear or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert ctl.procs["central"].poll() is None, "the controller died:\n" + ctl.log_tail(
            "central"
        )
        rejected = [
            e
            for e in log_events(ctl, "central")
            if e.get("event", "").startswith("reconcile failed")
            and any(
                f"({code})" in str(e.get("exception", "")) + str(e.get("error", ""))
                for code in (400, 422)
            )
        ]
        print(
            f"test_fuzz_bad_input: {generated} objects generated, {accepted} exports accepted "
            f"by the API servers, {len(unclear)} without a clear condition, "
            f"{len(rejected)} writes rejected"
        )
        assert not unclear, (
            f"{len(unclear)} exports without a clear Valid condition: {unclear[:20]}"
        )
        assert not rejected, "writes rejected by the API server:\n" + "\n".join(
            (str(e.get("exception", "")) + str(e.get("error", "")))[-600:] for e in rejected[:5]
        )
    finally:
        for name in list(ctl.procs):
            ctl.stop(name)
