"""The project's own label domain (``mcs-controller.dev``) and the adoption of 0.1's
EndpointSlices (managed-by ``mcs-controller.multicluster.x-k8s.io``): ours only with our
ownership label too, relabelled in place by one apply each (never deleted and
re-created), never a source of endpoints. The integration test is
``tests/integration/test_label_migration.py``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mcs.core import api, endpoints, plan, trust
from mcs.core.writes import Write

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
NS, NAME = "demo", "web"
OLD = "mcs-controller.multicluster.x-k8s.io"
PORTS = [{"name": "http", "port": 80, "protocol": "TCP"}]
OWNED = {api.MANAGED_BY: api.FIELD_MANAGER}


def test_the_domain_is_the_projects_own() -> None:
    assert api.CONTROLLER_NAME == "mcs-controller.dev"
    assert OLD in api.LEGACY_CONTROLLER_NAMES
    assert not api.CONTROLLER_NAME.endswith("x-k8s.io")


def labelled(manager: str | None, owner: bool) -> dict[str, Any]:
    labels = {
        **(OWNED if owner else {}),
        **({api.ENDPOINTSLICE_MANAGED_BY: manager} if manager else {}),
    }
    return {"metadata": {"name": "s", "namespace": NS, "labels": labels}}


@pytest.mark.parametrize(
    ("manager", "owner", "ours"),
    [
        ("mcs-controller.dev", True, True),
        ("mcs-controller.dev", False, True),  # today's value is ours as before
        (OLD, True, True),  # 0.1's slice: adopted
        (OLD, False, False),  # 0.1's value without our owner label: someone else's
        ("endpointslice-controller.k8s.io", True, False),
        (None, True, False),
    ],
)
def test_which_slices_are_ours(manager: str | None, owner: bool, ours: bool) -> None:
    obj = labelled(manager, owner)
    assert api.managed_by_us(obj) is ours
    assert api.mcs_slice(obj) is (manager in ("mcs-controller.dev", OLD))


@pytest.mark.parametrize("manager", ["mcs-controller.dev", OLD])
@pytest.mark.parametrize("owner", [True, False])
def test_no_mcs_slice_is_a_source(manager: str, owner: bool) -> None:
    """A slice any mcs wrote (a peer still on 0.1, one of ours) holds endpoints of other
    clusters: it is never a source, whatever its owner label, even with every manager
    allowed."""
    source = {
        **labelled(manager, owner),
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.1"]}],
        "ports": PORTS,
    }
    assert trust.check_slice("c1", source, trust.EndpointPolicy()) == (None, [])
    everything = trust.EndpointPolicy(managers=("*",), ignored_managers=())
    assert not everything.counts(manager)
    assert endpoints.group_endpoints([source], lambda p: list(p), keep_portless=True) == []


def views(
    imported: list[dict[str, Any]], named: dict[str, dict[str, Any]]
) -> list[plan.MemberView]:
    """c1 exports web (one endpoint); c2 is the local member holding ``imported``."""
    ns = {"metadata": {"name": NS}}
    export = {
        "metadata": {"name": NAME, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {},
    }
    service = {"metadata": {"name": NAME, "namespace": NS}, "spec": {"ports": PORTS}}
    source = {
        "metadata": {
            "name": "web-a",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": NAME},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": True}}],
        "ports": PORTS,
    }
    return [
        plan.MemberView("c1", namespace=ns, export=export, service=service, source_slices=[source]),
        plan.MemberView(
            "c2",
            local=True,
            namespace=ns,
            imported_slices=imported,
            slice_named=named.get,
        ),
    ]


def slice_writes(imported: list[dict[str, Any]], named: dict[str, dict[str, Any]]) -> list[Write]:
    (p,) = plan.plan_key(NS, NAME, views(imported, named), NOW).clusters
    derived = None
    for w in p.derived:
        derived = {
            **w.obj,
            "spec": {**w.obj["spec"], "clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1"]},
        }
    return [w for w in p.then(derived) if w.resource == "endpointslices"]


def as_written(w: Write, manager: str) -> dict[str, Any]:
    meta = dict(w.obj["metadata"])
    meta["labels"] = {**meta["labels"], api.ENDPOINTSLICE_MANAGED_BY: manager}
    meta["uid"] = "uid-" + meta["name"]
    return {**w.obj, "metadata": meta}


def test_old_slices_are_relabelled_in_place() -> None:
    (first,) = slice_writes([], {})
    assert first.verb == "apply"
    assert first.obj["metadata"]["labels"][api.ENDPOINTSLICE_MANAGED_BY] == "mcs-controller.dev"
    old = as_written(first, OLD)
    assert api.managed_by_us(old)  # what the runtime's view hands the plan
    # 0.1's slice: one apply of the same name (the server keeps its uid), no delete
    (relabel,) = slice_writes([old], {old["metadata"]["name"]: old})
    assert relabel.verb == "apply"
    assert relabel.obj["metadata"]["name"] == old["metadata"]["name"]
    assert relabel.obj["metadata"]["labels"][api.ENDPOINTSLICE_MANAGED_BY] == "mcs-controller.dev"
    # and then nothing: a steady state writes nothing
    new = as_written(relabel, "mcs-controller.dev")
    assert slice_writes([new], {new["metadata"]["name"]: new}) == []


def test_an_old_slice_that_is_not_ours_is_left_alone() -> None:
    """0.1's managed-by value without our owner label: not in our view of the import, and
    in the way of the name it holds (reported, not written or deleted)."""
    (first,) = slice_writes([], {})
    foreign = as_written(first, OLD)
    foreign["metadata"]["labels"] = {
        k: v for k, v in foreign["metadata"]["labels"].items() if k != api.MANAGED_BY
    }
    assert not api.managed_by_us(foreign)
    assert slice_writes([], {foreign["metadata"]["name"]: foreign}) == []
