"""Affinity ``local`` failover measured by traffic, on a dataplane mesh.

Cilium's tutorial (``examples/dataplane``) in both clusters, the controller in central
mode, rebel-base annotated ``service.cilium.io/affinity=local`` in cluster1. An x-wing
pod in cluster1 curls ``rebel-base`` (cluster DNS, then kube-proxy; 300 ms timeout)
without pause, each answer stamped with the kernel's uptime (one clock for the host and
every pod). Each
round scales cluster1's rebel-base to 0 and times, from just before that request, the
first answer from cluster2 (failover: what a client sees, kube-proxy's own sync
included); then scales it back and times the first answer from cluster1 again
(failback), and waits until only cluster1 answers.

    sudo .venv/bin/python bench/failover_traffic.py --rounds 20

Starts its own mesh (``mcs mesh up --dataplane`` in a temporary directory) and stops it;
prints one JSON line: median, 90th percentile and maximum of each, in milliseconds, and
the number of curls that got no answer during failovers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from mcs_mesh.mesh import Mesh
from mcs_mesh.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
LOOP = (
    'while :; do a=$(curl -s -m 0.3 rebel-base | sed -n \'s/.*"Cluster": "\\([^"]*\\)".*/\\1/p\');'
    ' echo "$(cut -d" " -f1 /proc/uptime) ${a:-none}"; done'
)


def uptime() -> float:
    return float(Path("/proc/uptime").read_text().split()[0])


class Answers:
    """Lines ``<uptime> <cluster|none>`` from the curl loop, kept as they arrive."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.rows: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 2:
                with self.lock:
                    self.rows.append((float(parts[0]), parts[1]))

    def first(self, who: str, after: float, within: float = 60) -> float:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with self.lock:
                hit = next((t for t, w in self.rows if t >= after and w == who), None)
            if hit is not None:
                return hit
            time.sleep(0.02)
        raise TimeoutError(f"no answer from {who} within {within}s")

    def only(self, who: str, seconds: float, within: float = 60) -> None:
        """Wait until ``seconds`` of answers come only from ``who``."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            now = uptime()
            with self.lock:
                recent = [w for t, w in self.rows if t >= now - seconds]
            if len(recent) >= 3 and set(recent) == {who}:
                return
            time.sleep(0.1)
        raise TimeoutError(f"answers not only from {who} within {within}s")

    def missed(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for t, w in self.rows if start <= t <= end and w == "none")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mcs-bench-dp-") as tmp:
        mesh = Mesh(Path(tmp) / "mesh", say=lambda s: None)
        state = asyncio.run(mesh.up(2, detach=False, dataplane=True))
        try:
            return run(state.kubeconfig, Path(tmp), args.rounds)
        finally:
            mesh.down()


def run(kubeconfig: Path, tmp: Path, rounds: int) -> int:
    def kubectl(ctx: str, *a: str) -> str:
        return subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--context", ctx, *a],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    health = free_port()
    ctl = subprocess.Popen(
        [sys.executable, "-m", "mcs", "run", "--kubeconfig", str(kubeconfig),
         "--metrics-bind-address", "127.0.0.1:0",
         "--health-probe-bind-address", f"127.0.0.1:{health}"],
        stdout=(tmp / "controller.log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    loop = None
    try:
        for n in (1, 2):
            kubectl(f"cluster{n}", "apply", "-f", str(ROOT / f"examples/dataplane/cluster{n}.yaml"))
        for n in (1, 2):
            for d in ("rebel-base", "x-wing"):
                kubectl(f"cluster{n}", "rollout", "status", f"deployment/{d}", "--timeout=180s")
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        kubectl("cluster1", "annotate", "service", "rebel-base", "service.cilium.io/affinity=local")
        loop = subprocess.Popen(
            ["kubectl", "--kubeconfig", str(kubeconfig), "--context", "cluster1", "exec",
             "deployment/x-wing", "--", "sh", "-c", LOOP],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        answers = Answers(loop)
        answers.only("Cluster-1", 2)
        failover, failback, missed = [], [], []
        for _ in range(rounds):
            t0 = uptime()
            kubectl("cluster1", "scale", "deployment/rebel-base", "--replicas=0")
            t1 = answers.first("Cluster-2", t0)
            failover.append(t1 - t0)
            missed.append(answers.missed(t0, t1))
            kubectl("cluster1", "wait", "--for=delete", "pod", "-l", "name=rebel-base",
                    "--timeout=60s")  # fmt: skip
            answers.only("Cluster-2", 1)
            t2 = uptime()
            kubectl("cluster1", "scale", "deployment/rebel-base", "--replicas=2")
            failback.append(answers.first("Cluster-1", t2) - t2)
            kubectl("cluster1", "rollout", "status", "deployment/rebel-base", "--timeout=120s")
            answers.only("Cluster-1", 1)
    finally:
        if loop is not None:
            loop.kill()
        ctl.terminate()
        ctl.wait(timeout=30)

    def stats(xs: list[float]) -> dict[str, float]:
        ms = sorted(1000 * x for x in xs)
        p90 = ms[min(len(ms) - 1, int(0.9 * len(ms)))]
        return {"median": round(statistics.median(ms)), "p90": round(p90), "max": round(ms[-1])}

    print(
        json.dumps(
            {
                "rounds": rounds,
                "failover_ms": stats(failover),
                "failback_ms": stats(failback),
                "unanswered_during_failover": {"median": statistics.median(missed),
                                               "max": max(missed)},
            }
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
