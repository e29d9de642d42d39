"""The README's quick start, end to end: ``hack/demo.sh`` (what ``make demo`` runs)
exactly as a newcomer runs it, in its own state directory, then ``mcs mesh down``
leaves nothing behind (the controller it started included)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mcs_mesh import binaries
from tests.integration.helpers import processes_naming

ROOT = Path(__file__).resolve().parents[2]


def _controllers_naming(directory: Path) -> list[str]:
    out = []
    for entry in Path("/proc").iterdir():
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if " run " in cmd and str(directory) in cmd and "mcs" in cmd:
            out.append(cmd)
    return out


def test_quick_start(binaries_ready: binaries.Binaries, tmp_path: Path) -> None:
    state = tmp_path / "demo"
    env = {
        **os.environ,
        "MCS_DEMO_DIR": str(state),
        "PATH": f"{Path(sys.prefix) / 'bin'}:{os.environ['PATH']}",
    }
    try:
        run = subprocess.run(
            ["bash", "hack/demo.sh"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        out = run.stdout
        assert run.returncode == 0, f"{out[-3000:]}\n{run.stderr[-3000:]}"
        # both clusters import rebel-base with a cluster-set IP
        for ctx in ("cluster1", "cluster2"):
            section = out.split(f"$ kubectl --context {ctx} get serviceimports", 1)[1]
            section = section.split("$ ", 1)[0].split("\n\n", 1)[0]
            rows = {line.split()[0]: line.split() for line in section.strip().splitlines()[1:]}
            # printer columns: NAME TYPE IP WINNER READY AGE (the IP as a value, not JSON)
            assert rows["rebel-base"][1] == "ClusterSetIP", section
            assert rows["rebel-base"][2].startswith("10."), section
            assert rows["rebel-base"][3] in ("cluster1", "cluster2"), section  # the winner
            assert rows["tatooine"][1] == "ClusterSetIP"
        # the rebel-base Deployments run, and each cluster's CoreDNS answers the clusterset
        # name with the cluster-set IP behind which stand the pods of both clusters
        for ctx in ("cluster1", "cluster2"):
            pods = out.split(f"$ kubectl --context {ctx} get pods -o wide", 1)[1].split("$ ", 1)[0]
            assert pods.count(" Running ") == 2, pods
        answers = out.split("==> Who answers rebel-base.default.svc.clusterset.local", 1)[1]
        for ctx, n in (("cluster1", 1), ("cluster2", 2)):
            assert f"{ctx}: rebel-base.default.svc.clusterset.local -> A 10.10{n}." in answers
            behind = [line for line in answers.splitlines() if f"pods of {ctx}: " in line]
            assert len(behind) == 2, answers  # listed in both clusters
            for line in behind:
                ips = line.split(": ", 1)[1].split(", ")
                assert len(ips) == 4 and all(
                    ip.startswith((f"10.24{n}.", f"fd00:10:24{n}:")) for ip in ips
                )
        # the losing export says what disagrees and who won
        assert "Conflict=True PortConflict,SessionAffinityConflict" in out
        assert 'oldest export, in cluster "cluster1"' in out
        # global services: cluster2 uses cluster1's backends, then not after shared=false
        before, after = out.split("service.cilium.io/shared=false --overwrite", 1)
        in_c2 = "$ kubectl --context cluster2 get endpointslices"
        # (cluster1's pods have IPs in 10.241.0.0/16)
        assert "10.241." in before.rsplit(in_c2, 1)[1].split("$ ", 1)[0]
        assert "10.241." not in after.split(in_c2, 1)[1].split("$ ", 1)[0]
        # mcs status shows the members and the conflict
        status = out.split("$ mcs status", 1)[1]
        assert "cluster1" in status and "cluster2" in status and "tatooine" in status
        assert "PortConflict" in status
        assert f"mcs mesh down --dir {state}" in out
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "mcs", "mesh", "down", "--dir", str(state)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert processes_naming(state) == []
    assert _controllers_naming(state) == []
