"""hack/promtool.sh: finds promtool in the cache of the other binaries, honours PROMTOOL,
and fails naming promtool (never silently) when it can neither find nor build it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "hack" / "promtool.sh"


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT)],
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_finds_a_build_in_the_cache(tmp_path: Path) -> None:
    built = tmp_path / "bin" / "promtool-v0.316.0" / "promtool"
    built.parent.mkdir(parents=True)
    built.write_text("#!/bin/sh\n")
    built.chmod(0o755)
    out = _run({"MCS_CACHE_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(built)


def test_promtool_given_wins(tmp_path: Path) -> None:
    out = _run({"MCS_CACHE_DIR": str(tmp_path), "PROMTOOL": "/opt/promtool"})
    assert (out.returncode, out.stdout.strip()) == (0, "/opt/promtool")


def test_without_a_build_or_go_it_fails_naming_promtool(tmp_path: Path) -> None:
    out = _run({"MCS_CACHE_DIR": str(tmp_path)})  # no Go on /usr/bin:/bin
    assert out.returncode != 0
    assert "promtool" in out.stderr and "go" in out.stderr
