"""The controller's look-ups through the informers' indexes (keys of a namespace, every
key, a Service's source slices, an import's slices) against brute-force filters over
whole caches, which is what they replaced."""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.core import api
from mcs.core.api import Obj, key_of
from mcs.runtime.cluster import MemberConfig
from mcs.runtime.controller import Controller
from mcs.runtime.informer import Informer
from tests import reference

NS = ["a", "b"]
NAMES = ["x", "y"]
OURS = {api.MANAGED_BY: api.FIELD_MANAGER}
OUR_SLICE = {api.ENDPOINTSLICE_MANAGED_BY: api.CONTROLLER_NAME, **OURS}


def meta(ns: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": labels}}


names = st.sampled_from(NAMES)
namespaces = st.sampled_from(NS)
exports = st.builds(lambda ns, n: ("exports", meta(ns, n, {})), namespaces, names)


def service(ns: str, name: str, ours: bool, svc: str, is_global: bool) -> tuple[str, Obj]:
    obj = meta(ns, name, ({**OURS, api.SERVICE_NAME: svc} if ours else {}))
    if is_global:
        obj["metadata"]["annotations"] = {"service.cilium.io/global": "true"}
    return ("services", obj)


services = st.builds(
    service,
    namespaces,
    st.sampled_from([*NAMES, "derived-1", "derived-2"]),
    st.booleans(),
    names,
    st.booleans(),
)
imports = st.builds(
    lambda ns, n, ours: ("imports", meta(ns, n, OURS if ours else {})),
    namespaces,
    names,
    st.booleans(),
)
slices = st.builds(
    lambda ns, n, ours, svc: (
        "slices",
        meta(
            ns,
            n,
            {**OUR_SLICE, api.SERVICE_NAME: svc, api.KUBE_SERVICE_NAME: "derived-1"}
            if ours
            else {api.KUBE_SERVICE_NAME: svc},
        ),
    ),
    namespaces,
    st.sampled_from(["s1", "s2", "s3"]),
    st.booleans(),
    names,
)
events = st.lists(
    st.tuples(
        st.sampled_from(["ADDED", "DELETED"]),
        st.one_of(exports, services, imports, slices),
        st.integers(0, 1),
    ),
    max_size=40,
)


def controller() -> Controller:
    configs = [MemberConfig(f"c{i}", f"c{i}", None, local=True) for i in range(2)]
    return Controller(configs)


@settings(max_examples=150, deadline=None)
@given(events)
def test_index_lookups_match_full_scans(sequence: list[tuple[str, tuple[str, Obj], int]]) -> None:
    ctl = controller()
    for etype, (cache, obj), member in sequence:
        informer: Informer = getattr(ctl.members[member], cache)
        informer._apply({"type": etype, "object": obj})
    everything = reference.all_keys(ctl.members)
    assert ctl.all_keys() == everything
    for ns in NS:
        assert ctl.keys_in(ns) == sorted(k for k in everything if k[0] == ns)
    for m in ctl.members:
        for ns in NS:
            for name in NAMES:
                # As sets: an index bucket need not keep the namespace's order.
                view = m.view(ns, name)
                assert sorted(map(key_of, view.source_slices)) == sorted(
                    map(key_of, reference.source_slices(m, ns, name))
                )
                assert sorted(map(key_of, view.imported_slices)) == sorted(
                    map(key_of, reference.imported_slices(m, ns, name))
                )


def test_member_is_immutable() -> None:
    m = controller().members[0]
    try:
        m.cluster_id = "other"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Cluster could be changed")


async def test_what_users_write_is_reconciled_before_other_events() -> None:
    """A new export (or a user's Service) is handed to a worker before keys that other
    controllers' objects queued earlier: kube-controller-manager's EndpointSlices trail a
    bulk of new Services by minutes, and a new export must not wait behind them."""
    ctl = controller()
    first, second = ctl.members
    for i in range(3):
        slice_ = meta("a", f"s{i}", {api.KUBE_SERVICE_NAME: f"old-{i}"})
        first.slices._apply({"type": "ADDED", "object": slice_})
    derived = meta("c", "derived-1", {**OURS, api.SERVICE_NAME: "ours"})
    first.services._apply({"type": "ADDED", "object": derived})  # ours: not a user's
    second.exports._apply({"type": "ADDED", "object": meta("a", "new", {})})
    first.services._apply({"type": "ADDED", "object": meta("b", "edited", {})})
    got = []
    for _ in range(6):
        key = await asyncio.wait_for(ctl.queue.get(), 10)
        assert key is not None
        got.append(key)
        ctl.queue.done(key)  # else the urgent keys in flight hold the others back
    assert got == [
        ("a", "new"),
        ("b", "edited"),
        ("a", "old-0"),
        ("a", "old-1"),
        ("a", "old-2"),
        ("c", "ours"),
    ]
    ctl.queue.shutdown()
