"""The alerts of manifests/monitoring/ under ``promtool test rules``: each fires on the
series it is about, after its ``for``, with its labels and annotations, and not before;
every alert has a test, a runbook (docs/runbooks.md) and uses only metrics the controller
exports; the ServiceMonitor and the rules are found by kube-prometheus-stack's defaults.

promtool is built from its Go module (github.com/prometheus/prometheus/cmd/promtool)
into the cache of the other binaries by hack/promtool.sh (``PROMTOOL`` wins when set).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcs.runtime.health import DEFAULT_GRACE
from tests.ops.promql import metric_names
from tests.ops.test_dashboard import registry_names

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
RUNBOOKS = ROOT / "docs" / "runbooks.md"


def _rules() -> list[dict[str, Any]]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    return [r for g in rule["spec"]["groups"] for r in g["rules"]]


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(MONITORING / "alerts-test.yaml", tmp_path)
    return tmp_path


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.tools
def test_rules_are_valid_and_their_tests_pass(promtool: str, rules_dir: Path) -> None:
    checked = _run(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts-test.yaml", cwd=rules_dir)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.tools
@pytest.mark.parametrize(
    ("alert", "old", "new"),
    [
        ("MCSServiceExportConflict", '{condition="conflict"}) > 0', '{condition="conflict"}) > 1'),
        ("MCSMemberUnreachable", "for: 1m", "for: 5m"),
        ("MCSMemberWithdrawn", "(mcs_member_withdrawn) > 0", "(mcs_member_withdrawn) > 1"),
        ("MCSMemberCredentialExpiring", "< 7 * 24 * 3600", "< 6 * 24 * 3600"),
        ("MCSMemberCredentialExpired", "- time()) <= 0", "- time()) <= -60"),
        ("MCSNoLeader", "and on (namespace, pod) mcs_build_info", "or on (namespace, pod) up"),
    ],
)
def test_a_broken_rule_fails_its_test(
    promtool: str, rules_dir: Path, alert: str, old: str, new: str
) -> None:
    """The tests can fail: with an alert's threshold or duration off, promtool says so."""
    source = (MONITORING / "prometheusrule.yaml").read_text()
    assert source.count(old) >= 1, old
    # change only this alert's rule
    start = source.index(f"- alert: {alert}\n")
    end = source.find("- alert: ", start + 1)
    end = len(source) if end < 0 else end
    broken = yaml.safe_load(source[:start] + source[start:end].replace(old, new, 1) + source[end:])
    (rules_dir / "rules.yaml").write_text(yaml.safe_dump(broken["spec"], sort_keys=False))
    tested = _run(promtool, "test", "rules", "alerts-test.yaml", cwd=rules_dir)
    assert tested.returncode != 0
    assert alert in tested.stdout + tested.stderr


def test_every_alert_has_a_promtool_test_that_fires_it() -> None:
    tests = yaml.safe_load((MONITORING / "alerts-test.yaml").read_text())["tests"]
    fired = {
        t["alertname"] for case in tests for t in case["alert_rule_test"] if t.get("exp_alerts")
    }
    assert {r["alert"] for r in _rules()} <= fired


def test_metric_names_exist() -> None:
    """Every metric an alert uses is one the controller exports (its registry)."""
    exported = registry_names()
    used = {r["alert"]: metric_names(r["expr"]) for r in _rules()}
    assert all(used.values())
    assert {a: sorted(n - exported) for a, n in used.items() if n - exported} == {}


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_alert_has_a_runbook() -> None:
    """runbook_url is docs/runbooks.md#<alert in lower case>, a section that says what it
    means, how to check and how to fix."""
    text = RUNBOOKS.read_text()
    anchors = _anchors(text)
    for r in _rules():
        url = r["annotations"]["runbook_url"]
        assert url == f"docs/runbooks.md#{r['alert'].lower()}", url
        assert url.split("#")[1] in anchors, url
        section = text.split(f"## {r['alert']}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("**Meaning.**", "**Check.**", "**Fix.**"):
            assert part in section, (r["alert"], part)


def test_alert_durations_follow_member_grace() -> None:
    """MCSMemberUnreachable fires when the member is withdrawn (after --member-grace),
    and MCSMemberWithdrawn does not wait longer than a start-up (--member-grace) more."""
    by_name = {r["alert"]: r for r in _rules()}
    assert _seconds(by_name["MCSMemberUnreachable"]["for"]) == DEFAULT_GRACE
    assert _seconds(by_name["MCSMemberWithdrawn"]["for"]) <= 2 * DEFAULT_GRACE


def test_kube_prometheus_stack_selects_the_servicemonitor_and_the_rules() -> None:
    """kube-prometheus-stack's Prometheus selects by ``release: <release>``; the objects
    carry the label for a release named kube-prometheus-stack."""
    for name in ("servicemonitor.yaml", "prometheusrule.yaml"):
        obj = yaml.safe_load((MONITORING / name).read_text())
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack", name


def test_the_kustomization_points_at_this_test() -> None:
    text = (MONITORING / "kustomization.yaml").read_text()
    assert "tests/ops/test_monitoring.py" in text and "tests/unit" not in text
