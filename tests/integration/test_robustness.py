"""An unowned Service on the derived name shows on the export; credentials rotated under
a running controller (a projected-style token file replaced, the old token revoked)."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import condition, export, get_export, get_import, service

pytestmark = pytest.mark.faults


def derived_service_name(namespace: str, name: str) -> str:
    """The derived Service's name as mcs-api and Cilium make it (reference/cilium-mcs.md):
    ``derived-`` and the first 10 characters of the lower-cased, unpadded base32hex of
    sha256("<namespace>/<name>"); stated here, not taken from the code under test."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return "derived-" + base64.b32hexencode(digest).decode().rstrip("=").lower()[:10]


def test_derived_name_clash_shows_on_the_export(
    controllers: Controllers, kubectl: Kubectl, namespace: str
) -> None:
    ns = namespace
    # Cilium's fixture (testdata/endpointslice-mirror/port-filter): the rule is the right one
    assert derived_service_name("default", "port-filter") == "derived-rot6lodnc8"
    derived = derived_service_name(ns, "web")
    squatter = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": derived, "namespace": ns, "labels": {"owner": "someone"}},
        "spec": {"ports": [{"name": "x", "port": 1234, "protocol": "TCP"}]},
    }
    kubectl("cluster2", "apply", "-f", "-", stdin=json.dumps(squatter))
    kubectl("cluster1", "apply", "-f", "-", stdin=service(ns, "web"))
    kubectl("cluster1", "apply", "-f", "-", stdin=export(ns, "web"))

    def failed() -> dict[str, Any] | None:
        ready = condition(get_export(kubectl, "cluster1", ns, "web"), "Ready")
        return ready if ready and ready["reason"] == "Failed" else None

    ready = eventually(failed, timeout=60, what="Ready=False/Failed on the export")
    assert ready["status"] == "False"
    assert derived in ready["message"] and '"cluster2"' in ready["message"], ready
    svc = kubectl.json("cluster2", "get", "service", derived, "-n", ns)
    assert svc["metadata"]["labels"] == {"owner": "someone"}, "the squatter was touched"
    assert [p["port"] for p in svc["spec"]["ports"]] == [1234]
    kubectl("cluster2", "delete", "service", derived, "-n", ns)
    eventually(
        lambda: (
            (condition(get_export(kubectl, "cluster1", ns, "web"), "Ready") or {}).get("status")
            == "True"
        ),
        timeout=60,
        what="Ready once the squatter is gone",
    )


def test_rotated_token_is_picked_up_without_restart(
    accounts: ServiceAccounts, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    """cluster2 is reached with a ServiceAccount token read from a file. The account is
    re-created (revoking every token it had) and the file gets a new token: the running
    controller keeps writing to cluster2.

    The account is the test's own, with the shipped writer's ClusterRole: revoking the
    tokens of the shared ``mcs-central-writer`` would break the other tests' controllers."""
    ns, sa = namespace, "mcs-rotation"
    binding = f"{ns}-rotation"

    def new_token() -> str:
        kubectl("cluster2", "create", "serviceaccount", sa, "-n", ns)
        return kubectl("cluster2", "create", "token", sa, "-n", ns, "--duration", "1h").stdout

    kubectl(
        "cluster2",
        "create",
        "clusterrolebinding",
        binding,
        "--clusterrole",
        "mcs-controller-local",
        f"--serviceaccount={ns}:{sa}",
    )
    token = tmp_path / "token"
    token.write_text(new_token())
    cfg = yaml.safe_load(accounts.central.read_text())
    cfg["users"].append({"name": "rotating", "user": {"tokenFile": str(token)}})
    for c in cfg["contexts"]:
        if c["name"] == "cluster2":
            c["context"]["user"] = "rotating"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(cfg))
    ctl = Controllers("central", kubeconfig, tmp_path)
    try:
        ctl.start("central", "--credentials-reload-period", "1", "--resync-period", "5")
        kubectl("cluster1", "apply", "-f", "-", stdin=service(ns, "one"))
        kubectl("cluster1", "apply", "-f", "-", stdin=export(ns, "one"))
        eventually(lambda: get_import(kubectl, "cluster2", ns, "one"), what="first import")

        kubectl("cluster2", "delete", "serviceaccount", sa, "-n", ns)
        token.write_text(new_token())  # the old token is void: its account is gone
        time.sleep(2)
        kubectl("cluster1", "apply", "-f", "-", stdin=service(ns, "two"))
        kubectl("cluster1", "apply", "-f", "-", stdin=export(ns, "two"))
        eventually(
            lambda: get_import(kubectl, "cluster2", ns, "two"),
            timeout=60,
            what="an import written with the new token",
        )
        assert "credentials reloaded" in (tmp_path / "central.log").read_text()
    finally:
        for name in list(ctl.procs):
            assert ctl.stop(name) == 0, ctl.log_tail(name)
        kubectl("cluster2", "delete", "clusterrolebinding", binding, check=False)
