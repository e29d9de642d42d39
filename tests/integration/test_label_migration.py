"""Upgrading from 0.1's label domain: EndpointSlices written with the managed-by value
``mcs-controller.multicluster.x-k8s.io`` are adopted in place by a controller that
writes ``mcs-controller.dev``: same names, same uids (no delete and create), no extra
slice, the endpoints behind every Service there throughout (no traffic gap), a slice
with the old value that lacks ``app.kubernetes.io/managed-by: mcs-controller`` left
alone, and a steady state that writes nothing.

The old objects are written as 0.1's controller wrote them: the slices a controller
wrote, re-applied server-side by field manager ``mcs-controller`` with 0.1's label value
(everything else of 0.1's slices is the same). The controllers run in both modes, as
the shipped ServiceAccounts under the shipped admission policy, which must let the
relabelling through (the suite fails on any 403)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, assert_clean_exit, eventually
from tests.integration.helpers import GLOBAL, rebel_base
from tests.integration.mcs_objects import (
    MANAGED_BY,
    MCS_NAME,
    SOURCE,
    export,
    get_import,
    service,
    source_slice,
)

C1, C2, C3 = "cluster1", "cluster2", "cluster3"
NEW = "mcs-controller.dev"
OLD = "mcs-controller.multicluster.x-k8s.io"
HELLO = {C1: ["10.1.0.11", "10.1.0.12"], C2: ["10.2.0.11"]}
REBEL = {C1: ["10.1.0.21"], C2: ["10.2.0.21", "10.2.0.22"]}
REBEL_PORTS = [{"name": "", "port": 80, "protocol": "TCP"}]


def _slices(kubectl: Kubectl, ctx: str, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(ctx, "get", "endpointslices", "-n", ns)["items"]
    return items


def _ours(kubectl: Kubectl, ctx: str, ns: str, value: str) -> dict[str, dict[str, Any]]:
    """The slices of ``ns`` in ``ctx`` carrying managed-by ``value`` and our owner label."""
    return {
        s["metadata"]["name"]: s
        for s in _slices(kubectl, ctx, ns)
        if s["metadata"].get("labels", {}).get(MANAGED_BY) == value
        and s["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "mcs-controller"
    }


def _behind(kubectl: Kubectl, ctx: str, ns: str, service_name: str) -> set[str]:
    """Every address kube-proxy would use for ``service_name`` (all its slices)."""
    return {
        a
        for s in kubectl.json(
            ctx,
            "get",
            "endpointslices",
            "-n",
            ns,
            "-l",
            f"kubernetes.io/service-name={service_name}",
        )["items"]
        for e in s.get("endpoints") or []
        for a in e["addresses"]
    }


def _as_0_1_wrote_it(kubectl: Kubectl, ctx: str, obj: dict[str, Any]) -> None:
    """Re-apply ``obj`` server-side as field manager ``mcs-controller`` with 0.1's
    managed-by value: the object 0.1's controller would have left."""
    meta = obj["metadata"]
    body = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "labels": {**meta["labels"], MANAGED_BY: OLD},
            **({"annotations": meta["annotations"]} if meta.get("annotations") else {}),
        },
        "addressType": obj["addressType"],
        "endpoints": obj.get("endpoints") or [],
        "ports": obj.get("ports") or [],
    }
    kubectl(
        ctx, "apply", "--server-side", "--force-conflicts", "--field-manager=mcs-controller",
        "-f", "-", stdin=json.dumps(body),
    )  # fmt: skip


@pytest.fixture(params=["central", "per-cluster"])
def controller(
    request: pytest.FixtureRequest,
    accounts: ServiceAccounts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Controllers]:
    """Controllers of one mode, started by the test (as the shipped ServiceAccounts);
    killed if the test leaves them running (they would act on later tests' objects)."""
    mode = request.param
    ctl = Controllers(mode, accounts, tmp_path_factory.mktemp(f"ctl-migration-{mode}"))
    try:
        yield ctl
    finally:
        for name in list(ctl.procs):
            ctl.kill(name)


def test_old_labels_are_adopted_in_place(
    controller: Controllers, kubectl: Kubectl, namespace: str, contexts: list[str]
) -> None:
    ns, ctl = namespace, controller
    args = ("--mode", ctl.mode, "--resync-period", "5")

    def spawn_all() -> None:  # as start_all, without waiting for readiness
        for name in ["central"] if ctl.mode == "central" else contexts:
            ctl.spawn(name, *([] if name == "central" else ["--local", name]), *args)

    # -- what a controller wrote: import slices (hello, exported by C1 and C2) in every
    #    member, global-service slices (rebel-base, global in C1 and C2) in C1 and C2
    for ctx in (C1, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=service(ns))
        kubectl(ctx, "apply", "-f", "-", stdin=source_slice(ns, "hello", HELLO[ctx]))
        kubectl(ctx, "apply", "-f", "-", stdin=export(ns))
        kubectl(ctx, "apply", "-f", "-", stdin=rebel_base(ns, {GLOBAL: "true"}))
        kubectl(
            ctx, "apply", "-f", "-",
            stdin=source_slice(ns, "rebel-base", REBEL[ctx], ports=REBEL_PORTS),
        )  # fmt: skip
    ctl.start_all(contexts, *args)
    hello = set(HELLO[C1] + HELLO[C2])

    def derived_service(ctx: str) -> str | None:
        imp = get_import(kubectl, ctx, ns)
        if not (imp and imp["spec"].get("ips")):
            return None
        svcs = kubectl.json(ctx, "get", "svc", "-n", ns, "-l", f"{MCS_NAME}=hello")["items"]
        return str(svcs[0]["metadata"]["name"]) if svcs else None

    derived = {
        ctx: eventually(
            lambda ctx=ctx: derived_service(ctx),
            what=f"hello's import and derived Service in {ctx}",
        )
        for ctx in (C1, C2, C3)
    }
    for ctx in (C1, C2, C3):
        eventually(
            lambda ctx=ctx: _behind(kubectl, ctx, ns, derived[ctx]) == hello,
            what=f"hello's endpoints behind {derived[ctx]} in {ctx}",
        )
    rebel = {C1: set(REBEL[C1] + REBEL[C2]), C2: set(REBEL[C1] + REBEL[C2])}
    for ctx, addrs in rebel.items():
        eventually(
            lambda ctx=ctx, addrs=addrs: _behind(kubectl, ctx, ns, "rebel-base") == addrs,
            what=f"rebel-base's remote endpoints in {ctx}",
        )
    assert_clean_exit(ctl.stop_all())

    # -- 0.1's labels: every slice it wrote, as 0.1 wrote it
    written = {ctx: _ours(kubectl, ctx, ns, NEW) for ctx in (C1, C2, C3)}
    counts = {ctx: len(s) for ctx, s in written.items()}
    assert counts[C3] >= 1 and counts[C1] >= 2 and counts[C2] >= 2, counts  # imports + globals
    for ctx, slices in written.items():
        for obj in slices.values():
            _as_0_1_wrote_it(kubectl, ctx, obj)
    # a slice with 0.1's value that is not ours (no app.kubernetes.io/managed-by)
    decoy = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "not-ours",
            "namespace": ns,
            "labels": {MANAGED_BY: OLD, MCS_NAME: "hello", SOURCE: "elsewhere"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.9.0.1"]}],
        "ports": [{"name": "tcp", "port": 42, "protocol": "TCP"}],
    }
    kubectl(C1, "apply", "-f", "-", stdin=json.dumps(decoy))
    old = {ctx: _ours(kubectl, ctx, ns, OLD) for ctx in (C1, C2, C3)}
    assert {ctx: set(s) for ctx, s in old.items()} == {ctx: set(s) for ctx, s in written.items()}
    assert not any(_ours(kubectl, ctx, ns, NEW) for ctx in (C1, C2, C3))
    uids = {ctx: {n: s["metadata"]["uid"] for n, s in old[ctx].items()} for ctx in old}
    names = {ctx: {s["metadata"]["name"] for s in _slices(kubectl, ctx, ns)} for ctx in old}
    decoy_rv = kubectl.json(C1, "get", "endpointslice", "not-ours", "-n", ns)["metadata"][
        "resourceVersion"
    ]

    # -- the upgraded controller: relabels in place while the endpoints stay behind
    #    every Service
    spawn_all()
    deadline = time.monotonic() + 120
    while True:
        for ctx in (C1, C2, C3):
            assert _behind(kubectl, ctx, ns, derived[ctx]) >= hello, f"a gap in {ctx}"
        for ctx, addrs in rebel.items():
            assert _behind(kubectl, ctx, ns, "rebel-base") >= addrs, f"a gap in {ctx}"
        now = {ctx: _ours(kubectl, ctx, ns, NEW) for ctx in (C1, C2, C3)}
        if all(set(now[ctx]) == set(uids[ctx]) for ctx in now):
            break
        for name, proc in ctl.procs.items():
            assert proc.poll() is None, ctl.log_tail(name)
        tails = "\n".join(ctl.log_tail(n, 10) for n in ctl.procs)
        assert time.monotonic() < deadline, f"not relabelled: {now}\n{tails}"
        time.sleep(0.2)
    for name in list(ctl.procs):
        eventually(lambda name=name: ctl._ready(name), timeout=120, what=f"{name} ready")

    for ctx in (C1, C2, C3):
        now = _ours(kubectl, ctx, ns, NEW)
        assert {n: s["metadata"]["uid"] for n, s in now.items()} == uids[ctx]  # same objects
        assert {s["metadata"]["name"] for s in _slices(kubectl, ctx, ns)} == names[ctx]
        assert not _ours(kubectl, ctx, ns, OLD)
        assert _behind(kubectl, ctx, ns, derived[ctx]) == hello
    for ctx, addrs in rebel.items():
        assert _behind(kubectl, ctx, ns, "rebel-base") == addrs
    # the slice that was not ours is untouched
    after = kubectl.json(C1, "get", "endpointslice", "not-ours", "-n", ns)
    assert after["metadata"]["resourceVersion"] == decoy_rv
    assert after["metadata"]["labels"][MANAGED_BY] == OLD
    # its endpoint is no source either: it is in no import
    assert "10.9.0.1" not in _behind(kubectl, C2, ns, derived[C2])

    ctl.assert_steady()
    assert_clean_exit(ctl.stop_all())
