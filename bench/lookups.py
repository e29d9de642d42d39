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
from mcs.core.api import Obj
from mcs.runtime.cluster import MemberConfig
from mcs.runtime.controller import Controller
from tests import reference

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
    assert ctl.keys_in(ns) == reference.keys_in(ctl.members, ns)
    m0 = ctl.members[0]
    assert m0.view(ns, svc).source_slices == reference.source_slices(m0, ns, svc)
    rows: list[tuple[str, Callable[[], object], Callable[[], object] | None]] = [
        (
            "keys_in (a Namespace event)",
            lambda: ctl.keys_in(ns),
            lambda: reference.keys_in(ctl.members, ns),
        ),
        (
            "a member's view of one key (per member per reconcile; scan: its source slices only)",
            lambda: m0.view(ns, svc).source_slices,
            lambda: reference.source_slices(m0, ns, svc),
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
