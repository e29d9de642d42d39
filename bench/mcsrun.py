"""The ``mcs run`` command line the benchmarks start a controller with."""

from __future__ import annotations

import sys
from pathlib import Path


def argv(kubeconfig: Path, metrics: int, health: int, *extra: str) -> list[str]:
    """``python -m mcs run`` against ``kubeconfig``, its metrics and health listeners on
    the loopback ports given, plus ``extra`` flags."""
    return [
        sys.executable,
        "-m",
        "mcs",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--metrics-bind-address",
        f"127.0.0.1:{metrics}",
        "--health-probe-bind-address",
        f"127.0.0.1:{health}",
        *extra,
    ]
