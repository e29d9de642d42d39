"""promtool for the tests of tests/ops/: found in (or built into) the cache of the other
binaries by hack/promtool.sh, from its Go module (``PROMTOOL`` wins when set). A promtool
that can be neither found nor built fails the tests that need it, naming it; never a skip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def promtool() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "hack" / "promtool.sh")],
        capture_output=True,
        text=True,
        timeout=40 * 60,
        check=False,
    )
    if out.returncode != 0:
        pytest.fail(
            f"promtool: not found and could not be built (hack/promtool.sh): {out.stderr[-2000:]}"
        )
    return out.stdout.strip().splitlines()[-1]
