"""Two ``mcs run --leader-elect`` processes against the mesh: only the leader writes,
and the standby takes over within the lease duration when the leader is killed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.mcs_objects import export, get_import, service

LEASE = 6.0  # seconds; short to keep the test quick


def _holder(kubectl: Kubectl) -> str:
    lease = kubectl.json("cluster1", "get", "lease", "mcs-controller", "-n", "mcs-system")
    return str(lease["spec"].get("holderIdentity") or "")


def test_standby_takes_over(
    accounts: ServiceAccounts, kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ctl = Controllers("central", accounts, tmp_path)
    args = (
        "--leader-elect",
        "--leader-elect-lease-duration",
        str(LEASE),
        "--resync-period",
        "2",
    )
    try:
        ctl.start("a", *args)
        eventually(lambda: _holder(kubectl).endswith(f"_{ctl.procs['a'].pid}"), what="a leads")
        ctl.start("b", *args)  # ready (caches synced) as a standby
        kubectl("cluster1", "apply", "-f", "-", stdin=service(namespace, "one"))
        kubectl("cluster1", "apply", "-f", "-", stdin=export(namespace, "one"))
        eventually(lambda: get_import(kubectl, "cluster2", namespace, "one"))
        ctl.full_pass("a")  # seconds of the leader's reconciles (and resyncs) since
        b_writes = ctl.metric_of("b", "mcs_api_writes_total")
        assert b_writes == 0, "the standby wrote"

        ctl.stop("a", signal.SIGKILL)
        killed = time.monotonic()
        kubectl("cluster1", "apply", "-f", "-", stdin=service(namespace, "two"))
        kubectl("cluster1", "apply", "-f", "-", stdin=export(namespace, "two"))
        eventually(
            lambda: _holder(kubectl).endswith(f"_{ctl.procs['b'].pid}"),
            timeout=LEASE + 30,
            interval=0.2,
            what="b leads",
        )
        took = time.monotonic() - killed
        assert took < LEASE + 5, f"takeover took {took:.1f}s"
        eventually(
            lambda: get_import(kubectl, "cluster3", namespace, "two"), what="the standby's import"
        )
    finally:
        codes = {name: ctl.stop(name) for name in list(ctl.procs)}
    assert codes == {"b": 0}, f"exit codes on SIGTERM: {codes}"
    # a clean stop releases the lease at once
    assert _holder(kubectl) == ""
