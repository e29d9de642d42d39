"""The cost of the controller's per-event and per-reconcile look-ups on a large
clusterset, no cluster needed: the caches of 3 members are filled in memory with K
namespaces of M exports (export, owned import, derived Service, source slice and
imported slice each), then timed through the indexes and, for reference, through the
full-cache scans they replaced.

    .venv/bin/python bench/lookups.py 1000x10 10x1000
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from mcs.core import api
from mcs.core.api import Key, Obj, key_of
from mcs.runtime.cluster import Cluster, MemberConfig
from mcs.runtime.controller import Controller

OURS = {api.MANAGED_BY: api.FIELD_MANAGER}


def _obj(ns: str, name: str, labels: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels or {}}, "spec": {}}


def fill(ctl: Controller, namespaces: int, per: int) -> None:
    for m in ctl.members:
        ctl_ns = [f"ns-{k:04}" for k in range(namespaces)]
        for ns in ctl_ns:
            m.namespaces._apply({"type": "ADDED", "object": _obj("", ns)})
            for i in range(per):
                name = f"svc-{i:05}"
                derived = api.derived_name(ns, name)
                events: list[tuple[Any, Obj]] = [
                    (m.exports, _obj(ns, name)),
                    (m.services, _obj(ns, name)),
                    (m.imports, _obj(ns, name, OURS)),
                    (m.services, _obj(ns, derived, {**OURS, api.SERVICE_NAME: name})),
                    (m.slices, _obj(ns, f"{name}-abc", {api.KUBE_SERVICE_NAME: name})),
                    (
                        m.slices,
                        _obj(
                            ns,
                            f"{name}-ours",
                            {
                                **OURS,
                                api.ENDPOINTSLICE_MANAGED_BY: api.CONTROLLER_NAME,
                                api.SERVICE_NAME: name,
                                api.KUBE_SERVICE_NAME: derived,
                            },
                        ),
                    ),
                ]
                for informer, obj in events:
                    informer._apply({"type": "ADDED", "object": obj})


def scan_keys_in(members: tuple[Cluster, ...], namespace: str) -> list[Key]:
    """keys_in as it was: every key of every cache, then filtered."""
    keys: set[Key] = set()
    for m in members:
        keys.update(m.exports.keys())
        keys.update(key_of(o) for o in m.imports.list() if api.owned(o))
        for o in m.services.list():
            labels = o["metadata"].get("labels") or {}
            if api.owned(o) and api.SERVICE_NAME in labels:
                keys.add((key_of(o)[0], labels[api.SERVICE_NAME]))
        for o in m.slices.list():
            if api.managed_by_us(o):
                k = api.import_slice_key(o)
                if k:
                    keys.add(k)
    return sorted(k for k in keys if k[0] == namespace)


def scan_source_slices(m: Cluster, ns: str, service: str) -> list[Obj]:
    return [
        s
        for s in m.slices.list(None)
        if s["metadata"]["namespace"] == ns
        and s["metadata"].get("labels", {}).get(api.KUBE_SERVICE_NAME) == service
        and not api.managed_by_us(s)
    ]


def timed(fn: Callable[[], object], budget: float = 0.5) -> float:
    """Mean seconds per call over at least ``budget`` seconds (and at least 3 calls)."""
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < budget:
        fn()
        calls += 1
    return (time.perf_counter() - started) / calls


def measure(text: str) -> None:
    """Print the rows of one size."""
    k, _, m = text.partition("x")
    configs = [MemberConfig(f"c{i}", f"c{i}", None, local=True) for i in range(3)]
    ctl = Controller(configs)
    fill(ctl, int(k), int(m))
    ns, svc = "ns-0000", "svc-00000"
    assert ctl.keys_in(ns) == scan_keys_in(ctl.members, ns)
    m0 = ctl.members[0]
    assert m0.source_slices(ns, svc) == scan_source_slices(m0, ns, svc)
    rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        (
            "keys_in (a Namespace event)",
            lambda: ctl.keys_in(ns),
            lambda: scan_keys_in(ctl.members, ns),
        ),
        (
            "source_slices (per member per reconcile)",
            lambda: m0.source_slices(ns, svc),
            lambda: scan_source_slices(m0, ns, svc),
        ),
        ("all_keys (a resync)", ctl.all_keys, None),
    ]
    for what, fast, slow in rows:
        f = timed(fast) * 1e6
        s = f"{timed(slow) * 1e6:,.0f}" if slow else "-"
        print(f"| {text} | {what} | {f:,.1f} | {s} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", default=["1000x10", "10x1000"], help="KxM")
    args = parser.parse_args()
    print("| namespaces x exports | look-up | indexed (µs) | full scan (µs) |")
    print("| --- | --- | --- | --- |")
    for text in args.sizes:
        measure(text)


if __name__ == "__main__":
    main()
