"""``mcs mesh`` as a user runs it: up, use with kubectl, down, and nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mcs_mesh import binaries
from tests.integration.conftest import kubectl_path
from tests.integration.helpers import processes_naming


def _mcs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcs", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_mesh_up_use_down(binaries_ready: binaries.Binaries, tmp_path: Path) -> None:
    state_dir = tmp_path / "m"
    up = _mcs(
        "mesh", "up", "--clusters", "2", "--nodes", "3", "--dir", str(state_dir), cwd=tmp_path
    )
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = state_dir / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig.resolve()}" in up.stdout
        nodes = subprocess.run(
            [kubectl_path(), "--context", "cluster2", "get", "nodes", "--no-headers"],
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            capture_output=True,
            text=True,
            check=False,
        )
        assert nodes.returncode == 0, nodes.stderr
        rows = [line.split() for line in nodes.stdout.splitlines()]
        assert sorted((r[0], r[1]) for r in rows) == [
            (f"cluster2-node{i}", "Ready") for i in (1, 2, 3)
        ], nodes.stdout
        # etcd, and per cluster kube-apiserver, -controller-manager, -scheduler and kwok
        status = _mcs("mesh", "status", "--dir", str(state_dir), cwd=tmp_path)
        assert status.returncode == 0 and status.stdout.count("running") == 9, status.stdout
        for component in ("kube-controller-manager", "kube-scheduler", "kwok"):
            assert f"cluster2 {component}" in status.stdout
        assert "cluster1 total" in status.stdout and "MiB" in status.stdout
        assert len(processes_naming(state_dir.resolve())) == 9
    finally:
        down = _mcs("mesh", "down", "--dir", str(state_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert processes_naming(state_dir.resolve()) == []
    assert not state_dir.exists()


def test_stale_state_is_cleaned(binaries_ready: binaries.Binaries, tmp_path: Path) -> None:
    state_dir = tmp_path / "m"
    up = _mcs(
        "mesh", "up", "--clusters", "1", "--no-workloads", "--dir", str(state_dir), cwd=tmp_path
    )
    assert up.returncode == 0, up.stderr
    assert len(processes_naming(state_dir.resolve())) == 2  # the lighter mesh
    # a killed run: processes killed hard, state left behind
    for line in processes_naming(state_dir.resolve()):
        os.kill(int(line.split(":")[0]), 9)
    again = _mcs(
        "mesh", "up", "--clusters", "1", "--no-workloads", "--dir", str(state_dir), cwd=tmp_path
    )
    try:
        assert again.returncode == 0, again.stderr
        assert "stale mesh state" in again.stdout
    finally:
        _mcs("mesh", "down", "--dir", str(state_dir), cwd=tmp_path)
    assert processes_naming(state_dir.resolve()) == []
