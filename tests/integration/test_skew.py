"""Version skew in per-cluster mode against the mesh: cluster1's instance runs this
release; cluster2's ServiceImport is the one an instance with other merge rules (an
older release) wrote. cluster1 holds its results back (no import written, the export
Ready=False/MergeRulesMismatch, a Warning Event, mcs_merge_rules_skew), and writes as
usual once cluster2's import says the same rules."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import condition, export, get_export, get_import, service

C1, C2 = "cluster1", "cluster2"
ANNOTATION = "mcs-controller.dev/merge-rules"


def _peer_import(ns: str, rules: str) -> str:
    """cluster2's import as another release of mcs would have written it."""
    return json.dumps(
        {
            "apiVersion": "multicluster.x-k8s.io/v1beta1",
            "kind": "ServiceImport",
            "metadata": {
                "name": "hello",
                "namespace": ns,
                "labels": {"app.kubernetes.io/managed-by": "mcs-controller"},
                "annotations": {ANNOTATION: rules},
            },
            "spec": {"type": "ClusterSetIP", "ports": [{"port": 42, "protocol": "TCP"}]},
        }
    )


def test_a_peer_with_other_merge_rules_holds_results_back(
    accounts: ServiceAccounts, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    kubectl(C2, "apply", "-f", "-", stdin=_peer_import(namespace, "0"))
    for ctx in (C1, C2):
        kubectl(ctx, "apply", "-f", "-", stdin=service(namespace))
        kubectl(ctx, "apply", "-f", "-", stdin=export(namespace))
    ctl = Controllers("per-cluster", accounts, tmp_path)
    ctl.start(C1, "--local", C1, "--resync-period", "5")
    try:
        ready = eventually(
            lambda: (
                (c := condition(get_export(kubectl, C1, namespace), "Ready"))
                and c["reason"] == "MergeRulesMismatch"
                and c
            ),
            timeout=60,
            what="Ready=False/MergeRulesMismatch on cluster1's export",
        )
        assert ready["status"] == "False" and "(0)" in ready["message"], ready
        eventually(lambda: ctl.metric_of(C1, "mcs_merge_rules_skew") == 1, timeout=30)
        events = kubectl.json(
            C1, "get", "events", "-n", namespace, "--field-selector", "reason=MergeRulesMismatch"
        )["items"]
        assert [e["type"] for e in events] == ["Warning"], events
        ctl.full_pass(C1)
        assert get_import(kubectl, C1, namespace) is None, "held back: no import written"

        # cluster2's instance upgraded: its import says our rules; cluster1 writes again
        kubectl(C2, "annotate", "serviceimport", "hello", "-n", namespace,
                f"{ANNOTATION}=1", "--overwrite")  # fmt: skip
        imp = eventually(
            lambda: get_import(kubectl, C1, namespace), timeout=60, what="cluster1's import"
        )
        assert imp["metadata"]["annotations"][ANNOTATION] == "1"
        eventually(
            lambda: condition(get_export(kubectl, C1, namespace), "Ready")["status"] == "True",  # type: ignore[index]
            timeout=60,
            what="cluster1's export Ready again",
        )
        eventually(lambda: ctl.metric_of(C1, "mcs_merge_rules_skew") == 0, timeout=30)
    finally:
        codes = ctl.stop_all()
    assert codes == {C1: 0}
