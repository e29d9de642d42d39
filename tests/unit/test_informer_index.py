"""The informer's indexes (mcs.runtime.informer.Store) against a brute-force filter of the cache,
over random sequences of watch events and relists."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcs.core.api import SERVICES, Key, Obj, key_of
from mcs.runtime.informer import Informer, Store, label_index

LABEL = "kubernetes.io/service-name"
NAMESPACES = ["a", "b", ""]
NAMES = ["x", "y", "z"]


def owner_key(obj: Obj) -> tuple[Hashable, ...]:
    """Like the controller's: an object carrying ``owner`` belongs to that key."""
    meta = obj["metadata"]
    owner = (meta.get("labels") or {}).get("owner")
    return ((meta.get("namespace") or "", owner),) if owner else ()


def several(obj: Obj) -> list[Hashable]:
    """Several values per object, with a repeat (indexed once)."""
    labels = obj["metadata"].get("labels") or {}
    return [v for v in (labels.get(LABEL), labels.get("owner"), labels.get(LABEL)) if v]


INDEXERS = {"svc": label_index(LABEL), "owner": owner_key, "several": several}

labels = st.dictionaries(
    st.sampled_from([LABEL, "owner", "other"]), st.sampled_from(["s1", "s2", "s3"]), max_size=3
)
objects = st.builds(
    lambda ns, name, lab: {"metadata": {"namespace": ns, "name": name, "labels": lab}},
    st.sampled_from(NAMESPACES),
    st.sampled_from(NAMES),
    labels,
)
events = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), objects),
        st.tuples(st.just("RELIST"), st.lists(objects, max_size=6)),
    ),
    max_size=30,
)


def key(obj: Obj) -> Key:
    return (obj["metadata"]["namespace"], obj["metadata"]["name"])


def check(store: Store, truth: dict[Key, Obj]) -> None:
    """Every index answer equals a filter over the whole truth, in any order."""
    assert dict(store.items()) == truth
    for ns in NAMESPACES:
        want = [o for k, o in truth.items() if k[0] == ns]
        assert sorted(map(key, store.in_namespace(ns))) == sorted(map(key, want))
    for name, func in INDEXERS.items():
        values = {v for o in truth.values() for v in func(o)}
        assert set(store.index_values(name)) == values
        for value in values | {("a", "s1"), "s9"}:
            want = [k for k, o in truth.items() if value in set(func(o))]
            got = [key(o) for o in store.by_index(name, value)]
            assert sorted(got) == sorted(want)
            assert len(got) == len(set(got))
        for k, o in truth.items():
            assert set(store.values_of(name, k)) == set(func(o))


def relist_events(
    before: dict[Key, Obj], after: dict[Key, Obj]
) -> list[tuple[str, Obj | None, Obj | None]]:
    """What a relist from ``before`` to ``after`` must report, by brute force."""
    out: list[tuple[str, Obj | None, Obj | None]] = [
        ("DELETED", o, None) for k, o in before.items() if k not in after
    ]
    for k, o in after.items():
        if k not in before:
            out.append(("ADDED", None, o))
        elif before[k] != o:
            out.append(("MODIFIED", before[k], o))
    return out


@settings(max_examples=300, deadline=None)
@given(events)
def test_store_indexes_match_a_full_scan(sequence: list[tuple[str, Any]]) -> None:
    store = Store(INDEXERS)
    truth: dict[Key, Obj] = {}
    for kind, arg in sequence:
        if kind == "RELIST":
            fresh = store.empty_like()
            listed = {key(o): o for o in arg}
            for k, o in listed.items():
                fresh.upsert(k, o)
            changes = list(fresh.changes_from(store))
            assert sorted(changes, key=repr) == sorted(relist_events(truth, listed), key=repr)
            store, truth = fresh, listed
        elif kind == "DELETED":
            assert store.delete(key(arg)) == truth.pop(key(arg), None)
        else:
            assert store.upsert(key(arg), arg) == truth.get(key(arg))
            truth[key(arg)] = arg
        check(store, truth)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ADDED", "MODIFIED", "DELETED"]), objects)))
def test_informer_watch_events_keep_its_indexes(sequence: list[tuple[str, Obj]]) -> None:
    """The informer's own event path (``_apply``) maintains the indexes too, and
    reports changes with the old and new objects."""
    seen: list[tuple[str, Obj | None, Obj | None]] = []
    informer = Informer(
        None,  # type: ignore[arg-type]  # no request is made: events are fed directly
        cluster="c1",
        kind=SERVICES,
        on_event=lambda t, old, new: seen.append((t, old, new)),
        transform=lambda o: o,
        indexers=INDEXERS,
    )
    truth: dict[Key, Obj] = {}
    for etype, obj in sequence:
        informer._apply({"type": etype, "object": obj})
        if etype == "DELETED":
            truth.pop(key(obj), None)
        else:
            truth[key(obj)] = obj
        check(informer._cache, truth)
        for ns in NAMESPACES:
            assert sorted(informer.keys(ns)) == sorted(k for k in truth if k[0] == ns)
        # As sets: an index bucket need not keep the namespace's order.
        assert sorted(map(key_of, informer.by_index("svc", ("a", "s1")))) == sorted(
            key_of(o)
            for k, o in truth.items()
            if k[0] == "a" and (o["metadata"].get("labels") or {}).get(LABEL) == "s1"
        )


def test_namespace_index_is_built_in() -> None:
    try:
        Store({"namespace": owner_key})
    except ValueError as e:
        assert "built in" in str(e)
    else:
        raise AssertionError("a second 'namespace' index was accepted")


def test_a_reader_cannot_change_the_store() -> None:
    store = Store(INDEXERS)
    obj = {"metadata": {"namespace": "ns", "name": "a", "labels": {"app": "web"}}}
    store.upsert(("ns", "a"), obj)
    got = store.get(("ns", "a"))
    assert got == obj and got is not obj
    got["metadata"]["labels"]["app"] = "changed"
    obj["metadata"]["labels"]["app"] = "changed too"
    for read in (store.get(("ns", "a")), store.in_namespace("ns")[0]):
        assert read is not None and read["metadata"]["labels"] == {"app": "web"}
