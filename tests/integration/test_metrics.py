"""A running controller's /metrics, scraped: controller-runtime's and client-go's names
with their labels, one error counter, ``leader_election_master_status`` of its Lease,
``mcs_build_info``, each member's credential expiry as its token says, conflicts by
reason; and every metric the dashboard and the alerts query is really there."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

import mcs
from tests.integration.accounts import ServiceAccounts
from tests.integration.conftest import Controllers, Kubectl, assert_clean_exit, eventually
from tests.integration.mcs_objects import export, service
from tests.ops.promql import metric_names, scraped_names
from tests.ops.test_dashboard import dashboard_queries

ROOT = Path(__file__).resolve().parents[2]
C1, C2 = "cluster1", "cluster2"


def _scrape(ctl: Controllers, name: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{ctl.ports[name][0]}/metrics", timeout=5) as r:
        return str(r.read().decode())


def _samples(text: str, metric: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == metric
    ]


def _value(text: str, metric: str, /, **labels: str) -> float:
    return sum(v for ls, v in _samples(text, metric) if labels.items() <= ls.items())


def _token_expiries(kubeconfig: Path) -> dict[str, float]:
    """Each context's token's JWT exp, decoded here (not by the code under test)."""
    config: dict[str, Any] = yaml.safe_load(kubeconfig.read_text())
    users = {u["name"]: u["user"] for u in config["users"]}
    out = {}
    for c in config["contexts"]:
        user = users[c["context"]["user"]]
        token = user.get("token") or Path(user["tokenFile"]).read_text().strip()
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        out[c["name"]] = float(claims["exp"])
    return out


def test_a_running_controller_exports_what_dashboards_and_alerts_query(
    accounts: ServiceAccounts, contexts: list[str], kubectl: Kubectl, namespace: str, tmp_path: Path
) -> None:
    ctl = Controllers("central", accounts, tmp_path)
    try:
        ctl.start("m", "--leader-elect")
        kubectl(C1, "apply", "-f", "-", stdin=service(namespace))
        other = [{"name": "tcp", "port": 43, "protocol": "TCP"}]
        kubectl(C2, "apply", "-f", "-", stdin=service(namespace, ports=other))
        kubectl(C1, "apply", "-f", "-", stdin=export(namespace))
        time.sleep(1.1)  # creationTimestamps have one-second resolution: cluster1 is older
        kubectl(C2, "apply", "-f", "-", stdin=export(namespace))
        eventually(
            lambda: ctl.metric("mcs_serviceexport_conflicts", reason="PortConflict") == 2,
            what="both exports in conflict on ports",
        )
        eventually(
            lambda: (
                _value(_scrape(ctl, "m"), "leader_election_master_status", name="mcs-controller")
                == 1
            ),
            what="the controller leads",
        )
        text = _scrape(ctl, "m")
    finally:
        codes = ctl.stop_all()
    assert_clean_exit(codes)

    exposed = scraped_names(text)
    # the dashboard's and the alerts' metrics, all in a real scrape
    dashboard = set().union(*(metric_names(e) for es in dashboard_queries().values() for e in es))
    rules = yaml.safe_load((ROOT / "manifests/monitoring/prometheusrule.yaml").read_text())
    alerts = set().union(
        *(metric_names(r["expr"]) for g in rules["spec"]["groups"] for r in g["rules"])
    )
    assert dashboard and alerts
    assert sorted((dashboard | alerts) - exposed) == []
    # the old names are gone, and there is one error counter
    assert (
        not {
            "mcs_reconciles_total",
            "mcs_reconcile_errors_total",
            "mcs_reconcile_duration_seconds_count",
            "mcs_workqueue_depth",
            "mcs_leader_is_leader",
        }
        & exposed
    )

    def value(metric: str, /, **labels: str) -> float:
        return _value(text, metric, **labels)

    queue = {"name": "mcs", "controller": "mcs"}
    assert value("controller_runtime_reconcile_total", controller="mcs", result="success") > 0
    assert value("controller_runtime_reconcile_time_seconds_count", controller="mcs") > 0
    assert value("workqueue_adds_total", **queue) > 0
    assert value("workqueue_work_duration_seconds_count", **queue) > 0
    assert value("workqueue_queue_duration_seconds_count", **queue) > 0
    assert [ls for ls, _ in _samples(text, "workqueue_depth")] == [queue]
    assert value("mcs_propagation_seconds_count") > 0
    assert value("mcs_serviceexport_conflicts", cluster=C1, reason="PortConflict") == 1
    assert value("mcs_serviceexport_conflicts", cluster=C1, reason="TypeConflict") == 0

    [(build, one)] = _samples(text, "mcs_build_info")
    assert one == 1 and build["version"] == mcs.__version__
    assert build["python_version"] and build["kubernetes_asyncio_version"] != "unknown"

    # every member's credential expiry, as its TokenRequest token says
    expiry = {
        ls["member"]: v
        for ls, v in _samples(text, "mcs_member_credential_expiry_timestamp_seconds")
    }
    assert expiry == {
        ctx: exp for ctx, exp in _token_expiries(ctl.kubeconfig_for()).items() if ctx in contexts
    }
    assert all(v > time.time() for v in expiry.values())
