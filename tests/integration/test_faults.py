"""The fault suite: a member's API server frozen (SIGSTOP) or killed (SIGKILL), in central
and per-cluster mode; a deposed leader's API server frozen; a member unreachable at
start-up. Marked ``faults`` (CI runs it: ``make test`` runs every marker).

Each test restores what it broke (thaws or restarts the API server with the same
arguments and etcd prefix), so the session's mesh stays usable for the tests after it.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from mcs_mesh.state import MeshState
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, eventually
from tests.integration.faults import (
    ApiServer,
    kubeconfig_with_server,
    log_events,
    log_time,
    second_apiserver,
    spawn_controller,
)
from tests.integration.helpers import ADDRS, GLOBAL, behind, deploy
from tests.integration.mcs_objects import (
    MCS_NAME,
    SOURCE,
    addresses,
    by_source,
    condition,
    export,
    get_import,
    mcs_slices,
    service,
    source_slice,
)

pytestmark = pytest.mark.faults

GRACE = 6.0


def _clusters(imp: dict[str, Any] | None) -> list[str]:
    return [c["cluster"] for c in ((imp or {}).get("status") or {}).get("clusters") or []]


def _http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:  # not listening (yet)
        return 0, str(e)


def _apply_all(kubectl: Kubectl, ctx: str, *docs: str) -> None:
    for doc in docs:
        kubectl(ctx, "apply", "-f", "-", stdin=doc)


def _events(kubectl: Kubectl, ctx: str, ns: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.json(ctx, "get", "events", "-n", ns)["items"]
    return [e for e in items if e.get("reason") == reason]


@pytest.mark.parametrize("mode", ["central", "per-cluster"])
@pytest.mark.parametrize("fault", ["sigstop", "sigkill"])
def test_member_death_withdraws_after_grace_and_returns(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    contexts: list[str],
    namespace: str,
    tmp_path: Path,
    mode: str,
    fault: str,
) -> None:
    ns = namespace
    victim = ApiServer(mesh, mesh.members[2], kubectl)  # cluster3
    ctl = Controllers(mode, accounts, tmp_path)
    ctl.start_all(contexts, "--member-grace", str(GRACE), "--resync-period", "5")
    watchers = [n for n in ctl.procs if n != "cluster3"]  # the processes that stay up
    try:
        _apply_all(
            kubectl,
            "cluster1",
            service(ns, "web"),
            export(ns, "web"),
            source_slice(ns, "web", ["10.1.0.1"]),
        )
        _apply_all(
            kubectl,
            "cluster3",
            service(ns, "web"),
            export(ns, "web"),
            source_slice(ns, "web", ["10.3.0.1"]),
            service(ns, "solo"),
            export(ns, "solo"),
            source_slice(ns, "solo", ["10.3.0.2"]),
        )
        # A global Service (mcs.core.globalsvc) in cluster1 and cluster3: cluster1 balances
        # over both clusters' backends, and over its own alone while cluster3 is out.
        deploy(kubectl, ns, {"cluster1": {GLOBAL: "true"}, "cluster3": {GLOBAL: "true"}})

        def converged() -> bool:
            for ctx in ("cluster1", "cluster2"):
                if sorted(_clusters(get_import(kubectl, ctx, ns, "web"))) != [
                    "cluster1",
                    "cluster3",
                ]:
                    return False
                if _clusters(get_import(kubectl, ctx, ns, "solo")) != ["cluster3"]:
                    return False
                if set(by_source(mcs_slices(kubectl, ctx, ns, "web"))) != {"cluster1", "cluster3"}:
                    return False
            return behind(kubectl, "cluster1", ns) == ADDRS["cluster1"] | ADDRS["cluster3"]

        eventually(converged, timeout=60, what="the exports of cluster1 and cluster3 imported")
        before = {ctx: mcs_slices(kubectl, ctx, ns, "web") for ctx in ("cluster1", "cluster2")}

        # ---- the fault
        argv: list[str] = []
        t0 = time.time()
        if fault == "sigstop":
            victim.freeze()
        else:
            argv = victim.kill()
        try:
            eventually(
                lambda: _clusters(get_import(kubectl, "cluster2", ns, "web")) == ["cluster1"],
                timeout=GRACE + 60,
                what="cluster3 withdrawn from the import",
            )
            # On time: each watcher decided GRACE ± 2 s after the fault, by its own log
            # (what kubectl shows lags that decision by a reconcile and a read, which on
            # a loaded machine are seconds).
            for name in watchers:  # each decides alone: one may log it a moment later
                took = eventually(
                    lambda name=name: withdrawn_after(ctl, name, "cluster3", t0),
                    timeout=GRACE + 30,
                    what=f"{name} logging the withdrawal of cluster3",
                )
                assert GRACE - 2 <= took <= GRACE + 2, (
                    f"{name} withdrew cluster3 {took:.1f}s after the fault, grace {GRACE}s"
                )

            def withdrawn_everywhere() -> bool:
                for ctx in ("cluster1", "cluster2"):
                    if _clusters(get_import(kubectl, ctx, ns, "web")) != ["cluster1"]:
                        return False
                    if get_import(kubectl, ctx, ns, "solo") is not None:
                        return False  # cluster3 was its only exporter
                    if set(by_source(mcs_slices(kubectl, ctx, ns, "web"))) != {"cluster1"}:
                        return False
                    if mcs_slices(kubectl, ctx, ns, "solo"):
                        return False
                return behind(kubectl, "cluster1", ns) == ADDRS["cluster1"]

            eventually(withdrawn_everywhere, timeout=60, what="cluster3 withdrawn everywhere")
            ready = condition(get_import(kubectl, "cluster2", ns, "web"), "Ready")
            assert ready is not None and ready["reason"] == "MemberWithdrawn"
            assert "cluster3" in ready["message"]
            assert _events(kubectl, "cluster2", ns, "MemberWithdrawn")
            for name in watchers:
                assert ctl.metric_of(name, "mcs_member_withdrawn", cluster="cluster3") == 1
                code, text = _http(f"http://127.0.0.1:{ctl.ports[name][1]}/readyz")
                assert code == 503 and "cluster3" in text, text
            writes = sum(ctl.metric_of(n, "mcs_api_writes_total") for n in watchers)
        finally:
            # ---- the return
            if fault == "sigstop":
                victim.thaw()
            else:
                victim.restart(argv)
        eventually(converged, timeout=60, what="cluster3's exports back")
        eventually(
            lambda: (
                (condition(get_import(kubectl, "cluster2", ns, "web"), "Ready") or {}).get("reason")
                == "Ready"
            ),
            what="Ready again",
        )
        assert _events(kubectl, "cluster2", ns, "MemberReturned")
        after = {ctx: mcs_slices(kubectl, ctx, ns, "web") for ctx in ("cluster1", "cluster2")}
        for ctx in after:  # nothing lost: the same endpoints as before the fault
            assert {
                (s["metadata"]["labels"][SOURCE], e["addresses"][0])
                for s in after[ctx]
                for e in s["endpoints"]
            } == {
                (s["metadata"]["labels"][SOURCE], e["addresses"][0])
                for s in before[ctx]
                for e in s["endpoints"]
            }
        time.sleep(2)
        returned = sum(ctl.metric_of(n, "mcs_api_writes_total") for n in watchers) - writes
        # three keys came back: a handful of writes each per cluster, not a storm
        assert returned <= 45, f"{returned} writes for the return of 3 keys"
    finally:
        codes = {name: ctl.stop(name) for name in list(ctl.procs)}
    assert set(codes.values()) == {0}, codes


def test_writes_hung_on_a_frozen_member_do_not_hold_the_others(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Writes in flight to a member whose API server freezes are cancelled once it
    counts as unreachable (about two probe timeouts), not left hanging for the whole
    call timeout (30 s) while they hold every worker: with 8 changed keys and 4 workers,
    cluster2 gets every change long before that, and cluster3 gets them once thawed."""
    ns = namespace
    keys = [f"k{i}" for i in range(8)]
    for name in keys:
        _apply_all(kubectl, "cluster1", service(ns, name), export(ns, name))
        _apply_all(kubectl, "cluster1", source_slice(ns, name, ["10.1.0.1"]))
    victim = ApiServer(mesh, mesh.members[2], kubectl)  # cluster3
    ctl = Controllers("central", accounts, tmp_path)
    ctl.start("central", "--member-grace", "600", "--resync-period", "300")

    def endpoints(ctx: str) -> dict[str, set[str]]:
        items = kubectl.json(ctx, "get", "endpointslices", "-n", ns, "-l", MCS_NAME)["items"]
        out: dict[str, set[str]] = {}
        for s in items:
            out.setdefault(s["metadata"]["labels"][MCS_NAME], set()).update(addresses([s]))
        return out

    old = {name: {"10.1.0.1"} for name in keys}
    new = {name: {"10.1.0.2"} for name in keys}
    try:
        for ctx in ("cluster2", "cluster3"):
            eventually(lambda ctx=ctx: endpoints(ctx) == old, what=f"imported into {ctx}")
        with victim.frozen():
            changed = time.monotonic()
            for name in keys:  # each reconcile writes into cluster2 and the frozen cluster3
                _apply_all(kubectl, "cluster1", source_slice(ns, name, ["10.1.0.2"]))
            eventually(lambda: endpoints("cluster2") == new, what="every change in cluster2")
            took = time.monotonic() - changed
            assert took < 20, f"cluster2 got the changes {took:.1f}s after them (call timeout 30 s)"
        eventually(lambda: endpoints("cluster3") == new, what="every change in cluster3, thawed")
    finally:
        assert ctl.stop("central") == 0, ctl.log_tail("central")


def withdrawn_after(ctl: Controllers, name: str, cluster: str, since: float) -> float | None:
    """Seconds from ``since`` (wall clock) to controller ``name``'s first log line that
    withdraws ``cluster`` after it; None while there is none."""
    for e in log_events(ctl, name):
        if e.get("event", "").startswith("member withdrawn") and e.get("cluster") == cluster:
            at = log_time(e)
            if at >= since:
                return at - since
    return None


def test_member_unreachable_at_start_up(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A frozen member does not stop the others: /healthz at once, /readyz names the
    member, the others converge after the grace, and the member joins when it thaws."""
    ns = namespace
    victim = ApiServer(mesh, mesh.members[2], kubectl)
    ctl = Controllers("central", accounts, tmp_path)
    _apply_all(kubectl, "cluster1", service(ns, "web"), export(ns, "web"))
    try:
        with victim.frozen():
            spawn_controller(ctl, "central", "--member-grace", "4", "--resync-period", "5")
            health = ctl.ports["central"][1]
            eventually(
                lambda: _http(f"http://127.0.0.1:{health}/healthz")[0] == 200,
                interval=0.05,
                what="/healthz",
            )
            # served before the (time-bounded) read of the frozen member's cluster id ends
            code, text = _http(f"http://127.0.0.1:{health}/readyz")
            assert code == 503 and "reading cluster ids" in text, text
            eventually(
                lambda: "cluster3" in _http(f"http://127.0.0.1:{health}/readyz")[1],
                what="/readyz naming cluster3",
            )
            assert _http(f"http://127.0.0.1:{health}/readyz")[0] == 503
            eventually(
                lambda: _clusters(get_import(kubectl, "cluster2", ns, "web")) == ["cluster1"],
                what="cluster2 served without cluster3",
            )
            assert ctl.procs["central"].poll() is None, ctl.log_tail("central")
        eventually(
            lambda: get_import(kubectl, "cluster3", ns, "web") is not None,
            timeout=60,
            what="cluster3 joined",
        )
        eventually(lambda: _http(f"http://127.0.0.1:{health}/readyz")[0] == 200)
    finally:
        codes = {name: ctl.stop(name) for name in list(ctl.procs)}
    assert set(codes.values()) == {0}, codes


# --------------------------------------------------------------------------- leader


LEASE = 6.0


def _holder(kubectl: Kubectl) -> str:
    lease = kubectl.json("cluster1", "get", "lease", "mcs-controller", "-n", "mcs-system")
    return str(lease["spec"].get("holderIdentity") or "")


def test_frozen_leader_stops_writing_before_the_standby_leads(
    mesh: MeshState,
    accounts: ServiceAccounts,
    kubectl: Kubectl,
    namespace: str,
    tmp_path: Path,
) -> None:
    """Leader A reaches cluster1 (where the Lease is) through its own API server, which is
    frozen; standby B reaches cluster1 through another. A must stop writing (to every
    cluster) before B can take the Lease, although its renew call never returns."""
    ns = namespace
    args = (
        "--leader-elect",
        "--leader-elect-lease-duration",
        str(LEASE),
        "--member-grace",
        "300",
    )
    with second_apiserver(mesh, mesh.members[0]) as (port, a_server):
        a_ctl = Controllers(
            "central",
            kubeconfig_with_server(accounts.central, tmp_path / "a.kubeconfig", "cluster1", port),
            tmp_path,
        )
        b_ctl = Controllers("central", accounts, tmp_path)
        ApiServer(mesh, mesh.members[0], kubectl).wait_ready()
        eventually(
            lambda: (
                a_server.poll() is None
                and kubectl(
                    "cluster1",
                    "get",
                    "--raw",
                    "/readyz",
                    "--server",
                    f"https://127.0.0.1:{port}",
                    check=False,
                ).returncode
                == 0
            ),
            timeout=90,
            what="the second API server of cluster1",
        )
        try:
            a_ctl.start("a", *args)
            eventually(lambda: _holder(kubectl).endswith(f"_{a_ctl.procs['a'].pid}"))
            b_ctl.start("b", *args)
            loaded: list[str] = []  # the Services exported, in order

            def load() -> None:  # new work for whoever leads, in cluster2
                name = f"s{len(loaded)}"
                _apply_all(kubectl, "cluster2", service(ns, name), export(ns, name))
                loaded.append(name)

            load()
            eventually(lambda: get_import(kubectl, "cluster3", ns, "s0"))
            os.kill(a_server.pid, signal.SIGSTOP)
            frozen_at = time.time()
            deadline = time.monotonic() + LEASE + 30
            while not _holder(kubectl).endswith(f"_{b_ctl.procs['b'].pid}"):
                assert time.monotonic() < deadline, "B never took over"
                load()
                time.sleep(0.3)
            for _ in range(5):
                load()
                time.sleep(0.3)
            a_events = log_events(a_ctl, "a")
            b_events = log_events(b_ctl, "b")
            b_leads = min(log_time(e) for e in b_events if e["event"] == "became leader")
            writes = [log_time(e) for e in a_events if e["event"] == "write"]
            assert writes, "A wrote nothing: the test exercised nothing"
            late = [w - b_leads for w in writes if w >= b_leads]
            assert not late, f"A started {len(late)} writes after B led (+{max(late):.2f}s)"
            assert max(writes) > frozen_at, "A did not try to write while frozen"
            eventually(lambda: a_ctl.procs["a"].poll() is not None, timeout=30, what="A exits")
            assert a_ctl.procs.pop("a").returncode == 1
            assert any(e["event"].startswith("leadership lost") for e in log_events(a_ctl, "a"))
            # B, the leader now, imports every export, those sent while A was frozen too
            last = loaded[-1]
            eventually(lambda: get_import(kubectl, "cluster3", ns, last), what=f"{last} imported")
            listed = kubectl.json("cluster3", "get", "serviceimports", "-n", ns)["items"]
            missing = set(loaded) - {i["metadata"]["name"] for i in listed}
            assert not missing, f"never imported into cluster3: {sorted(missing)}"
        finally:
            codes = {name: c.stop(name) for c in (a_ctl, b_ctl) for name in list(c.procs)}
    assert codes == {"b": 0}, f"exit codes on SIGTERM: {codes}"
