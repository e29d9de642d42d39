"""The Grafana dashboard of manifests/monitoring/: every panel's query names only metrics
the controller really exports (read from its registry, the scrape-time state metrics
included; tests/integration/test_metrics.py checks a running controller's /metrics),
every query is valid PromQL (promtool), and the dashboard ships as a ConfigMap the Grafana
sidecar loads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.promql import exposed_names, metric_names

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
DASHBOARD = MONITORING / "grafana-dashboard.json"


def dashboard_queries() -> dict[str, list[str]]:
    """Each panel's title and its queries."""
    board = json.loads(DASHBOARD.read_text())
    return {
        p["title"]: [t["expr"] for t in p.get("targets", [])]
        for p in board["panels"]
        if p["type"] != "row"
    }


def registry_names() -> set[str]:
    """Every series name the controller's registry exposes: the metrics of every runtime
    module (``mcs run`` imports them all) and the state metrics read at scrape time."""
    import mcs.commands.run  # noqa: F401  (registers every module's metrics)
    from mcs.runtime.observability import REGISTRY
    from mcs.runtime.statemetrics import ControllerMetrics

    return exposed_names([*REGISTRY.collect(), *ControllerMetrics(None, None).describe()])


def test_every_panel_queries_metrics_the_controller_exports() -> None:
    exported = registry_names()
    queries = dashboard_queries()
    assert queries
    wrong = {}
    for title, exprs in queries.items():
        assert exprs, f"panel {title!r} has no query"
        names = set().union(*(metric_names(e) for e in exprs))
        assert names, f"panel {title!r} names no metric"
        if names - exported:
            wrong[title] = sorted(names - exported)
    assert wrong == {}


def test_a_misspelt_metric_is_caught() -> None:
    """The check can fail: a name the controller does not export is reported."""
    assert metric_names('sum(rate(mcs_reconciles_total{job=~"$job"}[$__rate_interval]))') == {
        "mcs_reconciles_total"
    }
    assert "mcs_reconciles_total" not in registry_names()
    assert "mcs_workqueue_depth" not in registry_names()


def test_the_dashboard_shows_what_operators_look_for() -> None:
    """Members and their state, withdrawals, conflicts by reason, queue depth, write and
    propagation latency."""
    used = set().union(*(metric_names(e) for es in dashboard_queries().values() for e in es))
    assert {
        "mcs_cluster_connected",
        "mcs_member_withdrawn",
        "mcs_member_withdrawals_total",
        "mcs_serviceexport_conflicts",
        "workqueue_depth",
        "mcs_api_write_duration_seconds_bucket",
        "mcs_propagation_seconds_bucket",
        "mcs_member_credential_expiry_timestamp_seconds",
    } <= used


@pytest.mark.tools
def test_every_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    """promtool parses each query (as a recording rule, Grafana's variables filled in)."""
    rules: list[dict[str, Any]] = []
    for i, expr in enumerate(e for es in dashboard_queries().values() for e in es):
        filled = expr.replace("$__rate_interval", "5m").replace("$job", ".*")
        rules.append({"record": f"dashboard:query_{i}", "expr": filled})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dashboard_ships_as_a_configmap_for_the_grafana_sidecar() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    [generator] = kustomization["configMapGenerator"]
    assert generator["files"] == [DASHBOARD.name]
    assert generator["options"]["labels"] == {"grafana_dashboard": "1"}
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
