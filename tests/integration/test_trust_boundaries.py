"""Trust boundaries, second pass (#29), against real API servers: a member that renames
itself keeps the ranges of its kubeconfig context; a member that claims another's id
leaves both out while the controller keeps serving the rest; the admission policy is as
strict as the controller.

Each test starts its own central controller (its flags or the members' ClusterProperties
differ from the module fixtures'), and puts every ClusterProperty back as it was.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.accounts import SYSTEM_NS, ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually, holds
from tests.integration.mcs_objects import (
    addresses,
    export,
    get_import,
    mcs_slices,
    service,
    source_slice,
)

C1, C2, C3 = "cluster1", "cluster2", "cluster3"
PROPERTY = "cluster.clusterset.k8s.io"


def set_cluster_id(kubectl: Kubectl, ctx: str, value: str) -> None:
    body = {
        "apiVersion": "about.k8s.io/v1beta1",
        "kind": "ClusterProperty",
        "metadata": {"name": PROPERTY},
        "spec": {"value": value},
    }
    kubectl(ctx, "apply", "-f", "-", stdin=json.dumps(body))


@pytest.fixture
def cluster_ids(kubectl: Kubectl) -> Iterator[None]:
    """Every member's ClusterProperty is put back (its context name) after the test."""
    yield
    for ctx in (C1, C2, C3):
        set_cluster_id(kubectl, ctx, ctx)


def test_a_renamed_member_keeps_the_ranges_of_its_context(
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    cluster_ids: None,
) -> None:
    """cluster2's admin renames it ``renamed`` in its ClusterProperty: its ranges are
    those of context cluster2 all the same, so 8.8.8.8 is not imported. cluster3 has no
    ranges while the others have: it offers nothing, and says so."""
    ns = namespace
    set_cluster_id(kubectl, C2, "renamed")
    for ctx, addrs in ((C2, ["10.2.0.1", "8.8.8.8"]), (C3, ["10.3.0.1"])):
        kubectl(ctx, "apply", "-f", "-", stdin=service(ns))
        kubectl(ctx, "apply", "-f", "-", stdin=source_slice(ns, "hello", addrs))
        kubectl(ctx, "apply", "-f", "-", stdin=export(ns))
    ctl = Controllers("central", accounts, tmp_path)
    ranges = f"{C1}=10.1.0.0/16 {C2}=10.2.0.0/16"
    ctl.start("renamed", "--resync-period", "5", "--member-cidrs", ranges)
    try:
        eventually(
            lambda: addresses(mcs_slices(kubectl, C1, ns)) == {"10.2.0.1"},
            what="only cluster2's endpoint inside its context's ranges",
        )
        holds(lambda: addresses(mcs_slices(kubectl, C1, ns)) == {"10.2.0.1"}, 2)
        imp = get_import(kubectl, C1, ns)
        assert imp is not None
        assert {c["cluster"] for c in imp["status"]["clusters"]} == {"renamed", C3}
        assert ctl.metric(
            "mcs_endpoints_dropped_total", cluster="renamed", reason="outside-cidrs"
        ) == pytest.approx(1)
        assert ctl.metric(
            "mcs_endpoints_dropped_total", cluster=C3, reason="no-ranges"
        ) == pytest.approx(1)
        assert ctl.metric("mcs_member_ranges_missing", context=C3) == 1
        assert ctl.metric("mcs_member_ranges_missing", context=C2) == 0
        log = ctl.log_tail("renamed", 100_000)
        assert '"trust policy"' in log and "10.2.0.0/16" in log
        assert "it offers no endpoints" in log
    finally:
        code = ctl.stop("renamed")
    assert code == 0, ctl.log_tail("renamed")


def test_a_typo_in_member_cidrs_stops_the_start(accounts: ServiceAccounts, tmp_path: Path) -> None:
    """A name that is no member context used to switch the check off silently."""
    ctl = Controllers("central", accounts, tmp_path)
    ctl.spawn("typo", "--member-cidrs", "cluster-1=10.1.0.0/16")
    try:
        code = ctl.procs["typo"].wait(timeout=60)
    except subprocess.TimeoutExpired:
        ctl.kill("typo")  # still running: the typo was not noticed
        raise AssertionError("mcs run did not stop on a --member-cidrs typo") from None
    ctl.procs.pop("typo")
    assert code == 2, ctl.log_tail("typo")
    assert "neither a member context" in ctl.log_tail("typo")


def test_an_id_clash_leaves_both_members_out_and_the_rest_served(
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
    cluster_ids: None,
) -> None:
    """cluster2 claims cluster1's id. The controller used to exit with ValueError at
    every start (a crash loop); now both stay out, loudly, cluster3 is still served, and
    both join once cluster2 has its own id again."""
    ns = namespace
    set_cluster_id(kubectl, C2, C1)
    for ctx in (C3, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=service(ns))
        kubectl(ctx, "apply", "-f", "-", stdin=source_slice(ns, "hello", [f"10.{ctx[-1]}.0.1"]))
        kubectl(ctx, "apply", "-f", "-", stdin=export(ns))
    ctl = Controllers("central", accounts, tmp_path)
    ctl.spawn("clash", "--resync-period", "5", "--member-grace", "3")
    try:

        def clash_counted() -> bool:
            assert ctl.procs["clash"].poll() is None, ctl.log_tail("clash")
            try:
                return all(
                    ctl.metric_of("clash", "mcs_cluster_id_conflict", context=c) == 1
                    for c in (C1, C2)
                )
            except OSError:  # the metrics server is not up yet
                return False

        eventually(clash_counted, what="the clash counted for both members")
        eventually(lambda: get_import(kubectl, C3, ns), what="cluster3 still served")
        assert addresses(mcs_slices(kubectl, C3, ns)) == {"10.3.0.1"}
        holds(lambda: get_import(kubectl, C1, ns) is None and ctl.procs["clash"].poll() is None, 2)
        log = ctl.log_tail("clash", 100_000)
        assert "cluster id claimed by more than one member" in log
        # cluster2's admin gives it its own id again: both join
        set_cluster_id(kubectl, C2, C2)
        eventually(lambda: ctl._ready("clash"), timeout=60, what="ready with every member")
        eventually(
            lambda: addresses(mcs_slices(kubectl, C1, ns)) == {"10.2.0.1", "10.3.0.1"},
            what="cluster1 written to, with cluster2's endpoints",
        )
        assert ctl.metric_of("clash", "mcs_cluster_id_conflict", context=C2) == 0
    finally:
        code = ctl.stop("clash")
    assert code == 0, ctl.log_tail("clash")


# --------------------------------------------------------------------------- admission

SA_USER = f"system:serviceaccount:{SYSTEM_NS}:mcs-controller"
OURS = {"app.kubernetes.io/managed-by": "mcs-controller"}
OUR_SLICE = OURS | {"endpointslice.kubernetes.io/managed-by": "mcs-controller.dev"}


def _as_sa(
    kubectl: Kubectl, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return kubectl(C1, f"--as={SA_USER}", *args, stdin=stdin, check=False)


def _denied(proc: subprocess.CompletedProcess[str], words: str) -> None:
    assert proc.returncode != 0, f"allowed: {proc.stdout}"
    assert "mcs-controller-writes" in proc.stderr and words in proc.stderr, proc.stderr


def test_admission_policy_is_as_strict_as_the_controller(
    kubectl: Kubectl, accounts: ServiceAccounts, namespace: str
) -> None:
    """Acting as the controller's ServiceAccount: no write of the kinds mcs owns into
    kube-system, kube-public, kube-node-lease or mcs-system (a slice labelled as ours on
    kube-dns would take DNS over), and the status of a foreign ServiceImport cannot be
    rewritten."""
    ns = namespace
    apply = ("apply", "--server-side", "--field-manager=mcs-controller", "-f", "-")
    dns_slice = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-mcs",
            "namespace": "kube-system",
            "labels": OUR_SLICE | {"kubernetes.io/service-name": "kube-dns"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.9"]}],
    }
    eventually(
        lambda: (
            "mcs-controller-writes" in _as_sa(kubectl, *apply, stdin=json.dumps(dns_slice)).stderr
        ),
        what="the policy denies a slice in kube-system",
    )
    _denied(_as_sa(kubectl, *apply, stdin=json.dumps(dns_slice)), "kube-system")
    for protected in ("kube-public", "kube-node-lease", SYSTEM_NS):
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "derived-x", "namespace": protected, "labels": OURS},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}]},
        }
        _denied(_as_sa(kubectl, *apply, stdin=json.dumps(svc)), protected)
    # a foreign ServiceImport: its status cannot be patched
    foreign = {
        "apiVersion": "multicluster.x-k8s.io/v1beta1",
        "kind": "ServiceImport",
        "metadata": {"name": "theirs", "namespace": ns},
        "spec": {"type": "ClusterSetIP", "ports": [{"port": 80, "protocol": "TCP"}]},
    }
    kubectl(C1, "apply", "-f", "-", stdin=json.dumps(foreign))
    # (server-side apply of the status, as the controller writes it: RBAC grants no get)
    status = {"status": {"clusters": [{"cluster": "evil"}]}}
    apply_status = (*apply[:-2], "--subresource=status", "-f", "-")
    _denied(_as_sa(kubectl, *apply_status, stdin=json.dumps(foreign | status)), "labelled")
    # its own import's status still goes through
    mine = foreign | {"metadata": {"name": "mine", "namespace": ns, "labels": OURS}}
    assert _as_sa(kubectl, *apply, stdin=json.dumps(mine)).returncode == 0
    ok = _as_sa(kubectl, *apply_status, stdin=json.dumps(mine | status))
    assert ok.returncode == 0, ok.stderr
