"""The build's output (mcs_mesh/progress.py), driven by a stand-in build script: plain
lines off a terminal, one redrawn line per binary on one, Go's output only in the log."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mcs_mesh.binaries import Target
from mcs_mesh.progress import BuildFailed, build_all, fmt, live

SCRIPT = """\
target=$1 out=$2
echo "resolving modules"
echo "go: downloading example.com/noise v1.0.0" >&2
echo "compiling"
echo "go: added example.com/noise v1.0.0" >&2
[ "$target" = broken ] && { echo "main.go:1: syntax error" >&2; exit 1; }
printf '#!/bin/sh\\n' > "$out/$target"; chmod +x "$out/$target"
echo "done"
"""


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "build.sh"
    path.write_text(SCRIPT)
    return path


def _targets(tmp_path: Path, *names: str) -> list[Target]:
    return [Target(n, "1.2.3", tmp_path / "out" / n) for n in names]


def test_plain_lines_and_go_output_in_the_log(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    out = Tty()  # CI wins over a terminal
    cache = tmp_path / "cache"
    want = _targets(tmp_path, "etcd", "kwok")
    build_all(want, script=script, coredns_src=tmp_path, cache=cache, out=out)
    text = out.getvalue()
    assert "go: " not in text and "\r" not in text and "\x1b" not in text
    assert "[mcs build] etcd v1.2.3: resolving modules" in text
    assert "[mcs build] kwok v1.2.3: compiling" in text
    assert text.count("built in") == 2
    assert "go: downloading example.com/noise" in (cache / "logs" / "build-etcd.log").read_text()
    times = json.loads((cache / "build-times.json").read_text())
    assert set(times) == {"etcd", "kwok"}
    # the next build estimates from this one and skips what is built
    (tmp_path / "out" / "kwok").unlink()
    again = io.StringIO()
    build_all(want, script=script, coredns_src=tmp_path, cache=cache, out=again)
    assert "etcd" in again.getvalue() and "ready (cached)" in again.getvalue()
    assert "last time" in again.getvalue()


def test_one_live_line_per_binary_on_a_terminal(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    out = Tty()
    build_all(
        _targets(tmp_path, "etcd", "kube-apiserver"),
        script=script,
        coredns_src=tmp_path,
        cache=tmp_path / "cache",
        out=out,
    )
    text = out.getvalue()
    assert "go: " not in text
    finished = [line for line in text.split("\n") if "built in" in line]
    assert len(finished) == 2
    assert "\x1b[" in text  # the line is redrawn in place
    assert "typical cold" in text  # no build on record yet: the 2-core figure


def test_failure_names_the_log_and_shows_its_tail(
    script: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "1")
    out = io.StringIO()
    cache = tmp_path / "cache"
    with pytest.raises(BuildFailed) as err:
        build_all(
            _targets(tmp_path, "etcd", "broken", "kwok"),
            script=script,
            coredns_src=tmp_path,
            cache=cache,
            out=out,
        )
    assert str(cache / "logs" / "build-broken.log") in str(err.value)
    assert "main.go:1: syntax error" in str(err.value)
    assert not (tmp_path / "out" / "kwok").exists(), "the build stops at the first failure"


def test_live_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert live(Tty()) and not live(io.StringIO())
    monkeypatch.setenv("TERM", "dumb")
    assert not live(Tty())
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("CI", "true")
    assert not live(Tty())


def test_fmt() -> None:
    assert (fmt(5), fmt(65), fmt(3600)) == ("5s", "1m05s", "60m00s")
