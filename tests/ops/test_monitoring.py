"""The alerts of manifests/monitoring/ under ``promtool test rules``: each fires on the
series it is about, after its ``for``, with its labels and annotations, and not before.

promtool is built from its Go module (github.com/prometheus/prometheus/cmd/promtool)
into the cache of the other binaries by hack/promtool.sh (``PROMTOOL`` wins when set).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mcs.runtime import observability, statemetrics

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def promtool() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "promtool.sh")],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(f"could not build promtool: {out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(MONITORING / "alerts-test.yaml", tmp_path)
    return tmp_path


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_are_valid_and_their_tests_pass(promtool: str, rules_dir: Path) -> None:
    checked = _run(promtool, "check", "rules", "rules.yaml", cwd=rules_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _run(promtool, "test", "rules", "alerts-test.yaml", cwd=rules_dir)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_a_broken_rule_fails_its_test(promtool: str, rules_dir: Path) -> None:
    """The tests can fail: with the conflict alert's threshold off, promtool says so."""
    path = rules_dir / "rules.yaml"
    path.write_text(
        path.read_text().replace('{condition="conflict"}) > 0', '{condition="conflict"}) > 1')
    )
    tested = _run(promtool, "test", "rules", "alerts-test.yaml", cwd=rules_dir)
    assert tested.returncode != 0
    assert "MCSServiceExportConflict" in tested.stdout + tested.stderr


def test_metric_names_exist() -> None:
    """Every mcs_ metric an alert uses is one the controller exports."""
    source = Path(observability.__file__).read_text() + Path(statemetrics.__file__).read_text()
    exported = set(re.findall(r'"(mcs_[a-z_]+)"', source))
    rules = (MONITORING / "prometheusrule.yaml").read_text()
    used = {m.removesuffix("_total") for m in re.findall(r"\b(mcs_[a-z_]+)", rules)}
    assert used and used <= exported, used - exported
