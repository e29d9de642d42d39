"""``kubectl mcs`` through the real kubectl (which finds ``kubectl-mcs`` on PATH) against
the mesh, with one central controller: export, the printer columns of ``kubectl get``,
explain, status, unexport; and the state metrics the alerts read."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.state import MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import (
    Controllers,
    Kubectl,
    assert_clean_exit,
    eventually,
    kubectl_path,
)
from tests.integration.mcs_objects import service

C1, C2 = "cluster1", "cluster2"


@pytest.fixture(scope="module")
def central(
    accounts: ServiceAccounts, contexts: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Controllers]:
    ctl = Controllers("central", accounts, tmp_path_factory.mktemp("ctl-plugin"))
    ctl.start_all(contexts)
    try:
        yield ctl
    finally:
        codes = ctl.stop_all()
    assert_clean_exit(codes)


def _mcs(kubeconfig: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``kubectl mcs ARGS --kubeconfig K``: kubectl passes every argument to the plugin."""
    out = subprocess.run(
        [kubectl_path(), "mcs", *args, "--kubeconfig", str(kubeconfig)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    if check:
        assert out.returncode == 0, f"kubectl mcs {args}: {out.stdout}{out.stderr}"
    return out


def _table(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_export_explain_status_unexport(
    central: Controllers, mesh: MeshState, kubectl: Kubectl, namespace: str
) -> None:
    kubeconfig = mesh.kubeconfig
    kubectl(C1, "apply", "-f", "-", stdin=service(namespace))
    other = [{"name": "tcp", "port": 43, "protocol": "TCP"}]
    kubectl(C2, "apply", "-f", "-", stdin=service(namespace, ports=other))

    # export: created, then the controller's conditions, printed as a table
    out = _mcs(kubeconfig, "export", "hello", "--context", C1, "-n", namespace)
    lines = out.stdout.splitlines()
    assert lines[0] == "serviceexports.multicluster.x-k8s.io/hello created"
    rows = {r[0]: r[1:3] for r in _table("\n".join(lines[1:]))}
    assert rows["TYPE"] == ["STATUS", "REASON"]
    assert rows["Valid"] == ["True", "Valid"] and rows["Conflict"] == ["False", "NoConflicts"]

    time.sleep(1.1)  # creationTimestamps have one-second resolution: cluster1 is older
    # global flags before the subcommand work too, and -o json prints the object
    out = _mcs(kubeconfig, "--context", C2, "-n", namespace, "export", "hello", "-o", "json")
    exported = json.loads(out.stdout)
    conditions = {c["type"]: c for c in exported["status"]["conditions"]}
    assert (conditions["Conflict"]["status"], conditions["Conflict"]["reason"]) == (
        "True",
        "PortConflict",
    )
    again = _mcs(kubeconfig, "export", "hello", "--context", C2, "-n", namespace)
    assert again.stdout.startswith("serviceexports.multicluster.x-k8s.io/hello unchanged")
    assert f"kubectl mcs explain hello -n {namespace}" in again.stdout

    # kubectl get shows the verdict in printer columns
    def columns() -> list[list[str]]:
        return _table(kubectl(C1, "get", "svcex", "-n", namespace).stdout)

    eventually(lambda: columns()[1][2] == "PortConflict", what="cluster1's export in conflict")
    header, row = columns()
    assert header == ["NAME", "VALID", "CONFLICT", "AGE"]
    assert row[:3] == ["hello", "True", "PortConflict"]
    header, row = _table(kubectl(C2, "get", "svcim", "-n", namespace).stdout)
    assert header == ["NAME", "TYPE", "IP", "WINNER", "READY", "AGE"]
    assert (row[1], row[3], row[4]) == ("ClusterSetIP", C1, "Ready")  # values, not JSON

    # explain: the winner, the field with both values, what to change
    text = _mcs(kubeconfig, "explain", "hello", "--context", C2, "-n", namespace).stdout
    subject = f"{namespace}/hello in cluster {C2} (context {C2})"
    assert f"{subject}: conflict; winner: cluster {C1}" in text
    assert ["ports", C2, "tcp:43/TCP", "tcp:42/TCP,", "udp:42/UDP", "PortConflict"] in _table(text)
    assert f'in cluster "{C2}", set the Service\'s spec.ports to tcp:42/TCP, udp:42/UDP' in text
    data = json.loads(
        _mcs(kubeconfig, "explain", "hello", "--context", C2, "-n", namespace, "-o", "json").stdout
    )
    assert (data["state"], data["winner"], data["clusters"]) == ("conflict", C1, [C1, C2])
    [field] = data["conflicts"]
    assert (field["field"], field["value"], field["winner_value"]) == (
        "ports",
        "tcp:43/TCP",
        "tcp:42/TCP, udp:42/UDP",
    )

    # status: the clusterset report, exit 1 on a conflict (--fail-on any)
    status = _mcs(kubeconfig, "status", "-n", namespace, "-o", "json", check=False)
    assert status.returncode == 1, status.stderr
    report: dict[str, Any] = json.loads(status.stdout)
    [svc] = report["services"]
    assert (svc["state"], svc["winner"]) == ("conflict", C1)
    # --contexts names the members; --context is where the controller is looked for
    # (no Deployment here: every context is a member, and the report says why)
    flags = ["--contexts", C2, "-n", namespace, "-o", "json"]
    only = json.loads(_mcs(kubeconfig, "status", *flags, check=False).stdout)
    assert [m["context"] for m in only["members"]] == [C2]
    flags = ["--context", C2, "-n", namespace, "-o", "json"]
    found = json.loads(_mcs(kubeconfig, "status", *flags, check=False).stdout)
    assert found["membership"]["source"] == "kubeconfig"
    assert "no controller found" in found["membership"]["note"]

    # the state metrics the alerts use: both local clusters count their export in conflict
    eventually(
        lambda: central.metric("mcs_serviceexports", condition="conflict") == 2,
        what="mcs_serviceexports{condition=conflict} = 2",
    )
    assert central.metric("mcs_ready") == 1 and central.metric("mcs_build_info") == 1

    # unexport: deleted, then not found (exit 1, one line)
    out = _mcs(kubeconfig, "unexport", "hello", "--context", C2, "-n", namespace)
    assert out.stdout.strip() == 'serviceexports.multicluster.x-k8s.io "hello" deleted'
    gone = _mcs(kubeconfig, "unexport", "hello", "--context", C2, "-n", namespace, check=False)
    assert gone.returncode == 1
    assert gone.stderr.strip() == (
        f'error: serviceexport "hello" not found in namespace "{namespace}" (context "{C2}")'
    )
    eventually(
        lambda: _table(kubectl(C1, "get", "svcex", "-n", namespace).stdout)[1][2] == "NoConflicts",
        what="the conflict resolved once cluster2 no longer exports",
    )


def test_unknown_context_is_one_line(mesh: MeshState) -> None:
    out = _mcs(mesh.kubeconfig, "explain", "hello", "--context", "nope", check=False)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and out.stderr.endswith("change --context\n")
