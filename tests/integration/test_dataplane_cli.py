"""``mcs mesh up --dataplane --nodes 2`` as a user runs it: up, status (node processes, their
memory, the whole mesh's CPU), load an image archive into every node, down, and nothing
left behind — not even after the mesh was killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from mcs_mesh import binaries, dataplane, images, processes


def _mcs(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mcs", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _images(node_sock: Path, ctr: Path) -> str:
    return subprocess.run(
        [str(ctr), "--address", str(node_sock), "-n", "k8s.io", "images", "ls", "-q"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_dataplane_up_status_load_kill_down(
    binaries_ready: binaries.Binaries, tmp_path: Path
) -> None:
    nodes = binaries.ensure_node()
    state_dir = (tmp_path / "m").resolve()
    up = _mcs("mesh", "up", "--dataplane", "--nodes", "2", "--dir", str(state_dir), cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "pods 10.241.0.0/16,fd00:10:241::/56 on 2 real nodes" in up.stdout, up.stdout
        status = _mcs("mesh", "status", "--dir", str(state_dir), cwd=tmp_path)
        assert status.returncode == 0, status.stdout
        for ctx in ("cluster1", "cluster2"):
            for node in ("node1", "node2"):
                for comp in ("containerd", "kubelet", "kube-proxy", "coredns"):
                    assert f"{ctx} {node} {comp}" in status.stdout, status.stdout
        assert "whole mesh (" in status.stdout and "% of one core" in status.stdout

        # a stand-in for the conformance suite's socat image, loaded into every node
        archive = images.build_archive(
            nodes.curl,
            tmp_path / "socat.tar",
            {"docker.io/alpine/socat:1.7.4.4": (["/bin/sh"], None)},
        )
        load = _mcs("mesh", "load", str(archive), "--dir", str(state_dir), cwd=tmp_path)
        assert load.returncode == 0, load.stdout + load.stderr
        assert load.stdout.count("loaded socat.tar into") == 4, load.stdout
        ctr = nodes.containerd.parent / "ctr"
        run = processes.run_dir(state_dir)
        for short in ("c1n1", "c1n2", "c2n1", "c2n2"):
            listed = _images(run / short / "containerd.sock", ctr)
            assert "docker.io/alpine/socat:1.7.4.4" in listed, listed
            assert images.PAUSE in listed and images.X_WING in listed, listed

        # killed with SIGKILL: the next down still finds and removes everything
        for pid in dataplane.dataplane_pids(state_dir):
            os.kill(pid, signal.SIGKILL)
    finally:
        down = _mcs("mesh", "down", "--dir", str(state_dir), cwd=tmp_path)
    assert down.returncode == 0, down.stderr
    assert dataplane.leftovers(state_dir) == []
    assert not state_dir.exists()
