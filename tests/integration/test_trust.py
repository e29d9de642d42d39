"""Trust boundaries against real API servers: what one member (or a tenant in it) may make
the others hold. One central controller, started with ``--member-cidrs`` for every member.

(The admission policy that confines the controller in its own cluster is tested in
test_manifests.py, next to the manifests it ships in.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually, holds
from tests.integration.mcs_objects import (
    addresses,
    condition,
    export,
    get_export,
    get_import,
    mcs_slices,
    service,
    source_slice,
)

C1, C2, C3 = "cluster1", "cluster2", "cluster3"
CIDRS = "10.1.0.0/16,fd00:1::/64"


@pytest.fixture(scope="module")
def central(
    accounts: ServiceAccounts, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controllers]:
    ctl = Controllers("central", accounts, tmp_path_factory.mktemp("ctl-trust"))
    # every member has ranges: once some have, one without offers nothing (#29)
    ranges = f"{C1}={CIDRS} {C2}=10.9.9.0/24 {C3}=10.3.0.0/16"
    ctl.start("trust", "--resync-period", "5", "--member-cidrs", ranges)
    try:
        yield ctl
    finally:
        code = ctl.stop("trust")
        assert code == 0, ctl.log_tail("trust")


def test_endpoint_outside_its_members_ranges_is_not_imported(
    central: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """A tenant of cluster1 lists 10.9.9.9 (outside cluster1's 10.1.0.0/16) next to its real
    endpoints: no member imports it, every member imports the rest, and cluster1's export
    gets a Warning Event; the metric counts it."""
    ns = namespace
    kubectl(C1, "apply", "-f", "-", stdin=service(ns))
    tenant = source_slice(ns, "hello", ["10.1.0.1", "10.9.9.9", "10.1.0.2"])
    kubectl(C1, "apply", "-f", "-", stdin=tenant)
    kubectl(C2, "apply", "-f", "-", stdin=service(ns))  # inside cluster2's 10.9.9.0/24
    kubectl(C2, "apply", "-f", "-", stdin=source_slice(ns, "hello", ["10.9.9.8"]))
    for ctx in (C1, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=export(ns))
    want = {"10.1.0.1", "10.1.0.2", "10.9.9.8"}
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, ns)) == want,
            what=f"the trusted endpoints in {ctx}",
        )
    holds(lambda: all(addresses(mcs_slices(kubectl, c, ns)) == want for c in contexts), 2)

    def event() -> str:
        items = kubectl.json(C1, "get", "events", "-n", ns)["items"]
        msgs = [e["message"] for e in items if e["reason"] == "EndpointsDropped"]
        return msgs[0] if msgs else ""

    message = eventually(event, what="an EndpointsDropped Event on cluster1's export")
    assert "10.9.9.9" in message and "10.1.0.0/16" in message
    assert central.metric(
        "mcs_endpoints_dropped_total", cluster=C1, reason="outside-cidrs"
    ) == pytest.approx(1)
    assert "endpoints not imported" in central.log_tail("trust", 100_000)
    # the export itself stays valid: the Service is imported with its trusted endpoints
    cond = condition(get_export(kubectl, C1, ns), "Valid")
    assert cond is not None and cond["status"] == "True"
    # the tenant fixes its slice: the event is not repeated, the endpoint set follows
    kubectl(C1, "apply", "-f", "-", stdin=source_slice(ns, "hello", ["10.1.0.1", "10.1.0.3"]))
    want = {"10.1.0.1", "10.1.0.3", "10.9.9.8"}
    for ctx in contexts:
        eventually(
            lambda ctx=ctx: addresses(mcs_slices(kubectl, ctx, ns)) == want,
            what=f"the new endpoints in {ctx}",
        )


def test_reserved_exported_label_is_refused_with_a_condition(
    central: Controllers, kubectl: Kubectl, contexts: list[str], namespace: str
) -> None:
    """``kubernetes.io/…`` in exportedLabels: Valid=False/InvalidExportedMetadata naming the
    key, nothing imported anywhere; fixing the export imports it."""
    ns = namespace
    kubectl(C1, "apply", "-f", "-", stdin=service(ns))
    bad = {"exportedLabels": {"kubernetes.io/service-name": "kubernetes", "tier": "web"}}
    kubectl(C1, "apply", "-f", "-", stdin=export(ns, spec=bad))

    def refused() -> dict[str, str] | None:
        cond = condition(get_export(kubectl, C1, ns), "Valid")
        return cond if cond and cond["status"] == "False" else None

    cond = eventually(refused, what="Valid=False on the export")
    assert cond["reason"] == "InvalidExportedMetadata"
    assert '"kubernetes.io/service-name"' in cond["message"]
    assert "reserved" in cond["message"]
    holds(lambda: all(get_import(kubectl, c, ns) is None for c in contexts), 2)

    kubectl(C1, "apply", "-f", "-", stdin=export(ns, spec={"exportedLabels": {"tier": "web"}}))
    for ctx in contexts:
        imp = eventually(lambda ctx=ctx: get_import(kubectl, ctx, ns), what=f"import in {ctx}")
        assert imp["metadata"]["labels"]["tier"] == "web"
    valid = condition(get_export(kubectl, C1, ns), "Valid")
    assert valid is not None and valid["status"] == "True"
