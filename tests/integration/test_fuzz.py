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


# kubectl apply -o name prints what it applied as <resource>/<name>
RESOURCE = {
    "Service": "service",
    "ServiceExport": "serviceexport.multicluster.x-k8s.io",
    "EndpointSlice": "endpointslice.discovery.k8s.io",
}


def _apply_each(kubectl: Kubectl, ctx: str, items: list[Obj]) -> tuple[list[Obj], list[Obj]]:
    """Apply a batch; the API server refuses what is invalid. Returns the objects it
    accepted and those it refused, from kubectl's result for each object: accepted ones
    are printed by name, refused ones are named in an error (an object it says nothing
    about fails the test: kubectl did not send it)."""
    proc = kubectl(
        ctx,
        "apply",
        "--server-side",
        "--force-conflicts",
        "-o",
        "name",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        check=False,
    )
    applied = set(proc.stdout.split())
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    accepted, refused, unknown = [], [], []
    for item in items:
        name = item["metadata"]["name"]
        if f"{RESOURCE[item['kind']]}/{name}" in applied:
            accepted.append(item)
        elif any(f'"{name}"' in line or f"/{name}" in line for line in errors):
            refused.append(item)
        else:
            unknown.append(f"{item['kind']} {name}")
    assert not unknown, (
        f"kubectl in {ctx} neither applied nor refused {len(unknown)} objects "
        f"({unknown[:5]}); it said:\n{proc.stderr[-2000:]}"
    )
    return accepted, refused


def expected_valid(export: Obj, service: Obj | None) -> set[tuple[str, str]]:
    """The ``Valid`` conditions (status, reason) an export may have, stated from the
    objects alone: no Service is ``NoService``, an ExternalName one
    ``InvalidServiceType``; otherwise valid, unless it asks to export labels or
    annotations (the fuzz makes many of them invalid): then possibly
    ``InvalidExportedMetadata``."""
    if service is None:
        return {("False", "NoService")}
    if (service.get("spec") or {}).get("type") == "ExternalName":
        return {("False", "InvalidServiceType")}
    spec = export.get("spec") or {}
    if spec.get("exportedLabels") or spec.get("exportedAnnotations"):
        return {("True", "Valid"), ("False", "InvalidExportedMetadata")}
    return {("True", "Valid")}


def _listed(kubectl: Kubectl, ctx: str, resource: str, ns: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in kubectl.json(ctx, "get", resource, "-n", ns)["items"]}


def _valid_problems(kubectl: Kubectl, ns: str, seen: dict[str, int]) -> list[str]:
    """Every export whose ``Valid`` condition is not what its objects call for (and every
    cluster missing the ServiceImport of a validly exported key); counts the reasons
    seen into ``seen``."""
    problems: list[str] = []
    seen.clear()
    valid_keys: set[str] = set()
    imports: dict[str, dict[str, Obj]] = {}
    for ctx in CLUSTERS:
        services = _listed(kubectl, ctx, "services", ns)
        imports[ctx] = _listed(kubectl, ctx, "serviceimports.multicluster.x-k8s.io", ns)
        for name, e in _listed(kubectl, ctx, "serviceexports.multicluster.x-k8s.io", ns).items():
            conds = {c["type"]: c for c in (e.get("status") or {}).get("conditions") or []}
            valid = conds.get("Valid") or {}
            got = (valid.get("status"), valid.get("reason"))
            want = expected_valid(e, services.get(name))
            if got not in want or not valid.get("message"):
                problems.append(f"{ctx}/{name}: Valid {got}, expected one of {sorted(want)}")
                continue
            seen[got[1]] = seen.get(got[1], 0) + 1
            if got[0] == "True":
                valid_keys.add(name)
    for ctx in CLUSTERS:
        missing = sorted(valid_keys - set(imports[ctx]))
        if missing:
            problems.append(
                f"{ctx}: no ServiceImport of {len(missing)} valid exports: {missing[:5]}"
            )
    return problems


def test_fuzz_bad_input(
    accounts: ServiceAccounts, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    rng = random.Random(seed_for("test_fuzz_bad_input"))
    total = int(os.environ.get("MCS_FUZZ_OBJECTS", "1000"))
    assert total >= 100, f"MCS_FUZZ_OBJECTS={total}: too few objects to test anything"
    gen = Gen(rng, namespace)
    ctl = Controllers("central", accounts, tmp_path)
    generated = 0
    accepted: dict[str, int] = {kind: 0 for kind in RESOURCE}
    refused: dict[str, int] = {kind: 0 for kind in RESOURCE}
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
                ok, no = _apply_each(kubectl, ctx, items)
                generated += len(items)
                for item in ok:
                    accepted[item["kind"]] += 1
                for item in no:
                    refused[item["kind"]] += 1
            assert ctl.procs["central"].poll() is None, ctl.log_tail("central")
        # the fuzz must have reached the controller: objects of every kind accepted
        # (and, being a fuzz, some refused)
        assert all(accepted.values()), f"accepted {accepted}, refused {refused}: nothing to test"
        assert any(refused.values()), f"accepted {accepted}, refused nothing: not a fuzz"
        seen: dict[str, int] = {}
        deadline = time.monotonic() + 120
        while True:
            unclear = _valid_problems(kubectl, namespace, seen)
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
            f"test_fuzz_bad_input: {generated} objects generated; accepted by the API "
            f"servers {accepted}, refused {refused}; Valid reasons {seen}; "
            f"{len(unclear)} exports without the right condition, {len(rejected)} writes rejected"
        )
        assert not unclear, (
            f"{len(unclear)} exports without the right Valid condition:\n" + "\n".join(unclear[:20])
        )
        for reason in ("Valid", "NoService", "InvalidServiceType"):
            assert seen.get(reason), f"no export ended {reason}: {seen}; the fuzz missed a case"
        assert not rejected, "writes rejected by the API server:\n" + "\n".join(
            (str(e.get("exception", "")) + str(e.get("error", "")))[-600:] for e in rejected[:5]
        )
    finally:
        codes = {name: ctl.stop(name) for name in list(ctl.procs)}
    assert codes == {"central": 0}, f"exit codes on SIGTERM: {codes}"
