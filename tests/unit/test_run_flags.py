"""``mcs run``'s flags: controller-runtime's names and their deprecated aliases, Go-style
durations, ``--log-level``, and ``--mode`` with ``--local``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcs.commands.cli import build_parser
from mcs.commands.runflags import (
    DEPRECATED_FLAGS,
    Topology,
    deprecation_warnings,
    resolve_topology,
)
from mcs.core.durations import arg as duration
from mcs.runtime.members import ConfigError

MCS = [sys.executable, "-m", "mcs"]

RENAMED = {
    "--metrics-bind-address": ("metrics_bind_address", "127.0.0.1:9000"),
    "--health-probe-bind-address": ("health_probe_bind_address", "127.0.0.1:9001"),
    "--leader-elect-resource-name": ("leader_elect_resource_name", "my-lease"),
    "--leader-elect-resource-namespace": ("leader_elect_resource_namespace", "ops"),
}


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["run", *argv])


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_:
        parse(*argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------ names and aliases


def test_the_new_names_have_the_old_defaults() -> None:
    args = parse()
    assert args.metrics_bind_address == ":8080"
    assert args.health_probe_bind_address == ":8081"
    assert args.leader_elect_resource_name == "mcs-controller"
    assert args.leader_elect_resource_namespace == "mcs-system"
    assert deprecation_warnings(args) == []


@pytest.mark.parametrize("old", sorted(DEPRECATED_FLAGS))
def test_an_old_name_still_works_and_is_reported(old: str) -> None:
    new = DEPRECATED_FLAGS[old]
    dest, value = RENAMED[new]
    for argv in ([old, value], [f"{old}={value}"]):
        args = parse(*argv)
        assert getattr(args, dest) == value
        assert deprecation_warnings(args) == [(old, new)]
    assert getattr(parse(new, value), dest) == value


def test_each_old_name_is_reported_once_however_often_given() -> None:
    args = parse("--metrics-addr", "0", "--metrics-addr", ":1", "--health-addr", ":2")
    assert args.metrics_bind_address == ":1"
    assert deprecation_warnings(args) == [
        ("--metrics-addr", "--metrics-bind-address"),
        ("--health-addr", "--health-probe-bind-address"),
    ]


def test_the_old_names_are_hidden_from_help() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = run.format_help()
    for old, new in DEPRECATED_FLAGS.items():
        assert new in text
        assert f"{old} " not in text and f"{old}\n" not in text


# ------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m", 60.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("0", 0.0),
        ("15", 15.0),  # bare numbers: seconds, as before 0.2
        ("0.5", 0.5),
        (" 10s ", 10.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == pytest.approx(seconds)


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_go_durations_add_up(h: int, m: int, s: int, ms: int) -> None:
    assert duration(f"{h}h{m}m{s}s{ms}ms") == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


@pytest.mark.parametrize("text", ["", "abc", "15x", "-1s", "-5", "inf", "nan", "1h-30m", "s"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        duration(text)


@pytest.mark.parametrize(
    ("flag", "dest"),
    [
        ("--member-grace", "member_grace"),
        ("--resync-period", "resync_period"),
        ("--credentials-reload-period", "credentials_reload_period"),
        ("--leader-elect-lease-duration", "leader_elect_lease_duration"),
    ],
)
def test_every_duration_flag_takes_go_durations(
    flag: str, dest: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert getattr(parse(flag, "1m30s"), dest) == 90.0
    assert getattr(parse(flag, "45"), dest) == 45.0
    assert getattr(parse(flag, "250ms"), dest) == 0.25
    err = usage_error(capsys, flag, "soon")
    assert f"argument {flag}: 'soon' is not a duration" in err


# ------------------------------------------------------------------ log level


@pytest.mark.parametrize("level", ["debug", "INFO", "Warning", "error", "critical"])
def test_log_levels(level: str) -> None:
    assert parse("--log-level", level).log_level == level.lower()


def test_a_bad_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "--log-level", "verbose")
    assert "argument --log-level: invalid choice 'verbose'" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ --mode and --local

MEMBERS = ["c1", "c2", "c3"]


@pytest.mark.parametrize(
    ("mode", "local", "expected"),
    [
        ("per-cluster", "c2", Topology("per-cluster", frozenset({"c2"}), inferred=False)),
        ("central", "", Topology("central", frozenset(MEMBERS), inferred=False)),
        ("central", "c3,c1,c2", Topology("central", frozenset(MEMBERS), inferred=False)),
        (None, "", Topology("central", frozenset(MEMBERS), inferred=True)),
        (None, "c1", Topology("per-cluster", frozenset({"c1"}), inferred=True)),
        (None, "c1,c2", Topology("central", frozenset({"c1", "c2"}), inferred=True)),
    ],
)
def test_mode_and_local(mode: str | None, local: str, expected: Topology) -> None:
    assert resolve_topology(mode, local, MEMBERS) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "local", "message"),
    [
        ("per-cluster", "", "--mode per-cluster writes to exactly one member"),
        ("per-cluster", "c1,c2", "--mode per-cluster writes to exactly one member"),
        ("central", "c1", "--mode central writes to every member"),
        ("per-cluster", "c9", "must be among the member contexts"),
        (None, "c9", "must be among the member contexts"),
        ("central", "c1,c9", "must be among the member contexts"),
    ],
)
def test_contradictions_are_config_errors(mode: str | None, local: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_topology(mode, local, MEMBERS)  # type: ignore[arg-type]


def test_mode_values(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse("--mode", "central").mode == "central"
    assert parse("--mode=per-cluster").mode == "per-cluster"
    assert parse("--mode=").mode is None  # an empty "mode" key of the Secret: inferred
    assert parse().mode is None
    err = usage_error(capsys, "--mode", "hub")
    assert "argument --mode: invalid choice 'hub'" in err


# ------------------------------------------------------------------ as a user runs it


def _kubeconfig(tmp_path: Path, contexts: list[str]) -> Path:
    path = tmp_path / "kubeconfig"
    cluster = {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": c, "context": {"cluster": "c", "user": "u"}} for c in contexts
                ],
                "current-context": contexts[0],
            }
        )
    )
    return path


def _mcs_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MCS, "run", "--log-format", "json", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _logs(stderr: str) -> list[dict[str, object]]:
    assert "Traceback" not in stderr, stderr
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def test_old_flags_log_one_warning_each_at_start(tmp_path: Path) -> None:
    """Started with the old names (and a contradiction so that it stops right after),
    ``mcs run`` logs one warning per old flag naming its replacement, then the
    configuration error, and exits 2."""
    kubeconfig = _kubeconfig(tmp_path, ["c1", "c2"])
    out = _mcs_run(
        "--kubeconfig", str(kubeconfig),
        "--metrics-addr", "0", "--health-addr", "0", "--metrics-addr", "0",
        "--leader-elect-lease-name", "x", "--leader-elect-namespace", "y",
        "--mode", "per-cluster",
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    logs = _logs(out.stderr)
    deprecated = [(e["flag"], e["replacement"]) for e in logs if "flag" in e]
    assert sorted(deprecated) == sorted(DEPRECATED_FLAGS.items())
    assert all(e["level"] == "warning" for e in logs if "flag" in e)
    (error,) = [e for e in logs if e["level"] == "error"]
    assert error["event"] == "invalid configuration"
    assert "--mode per-cluster writes to exactly one member" in str(error["error"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "central", "--local", "c1"], "--mode central writes to every member"),
        (["--local", "nope"], "must be among the member contexts"),
    ],
)
def test_contradictions_exit_2_without_traceback(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    kubeconfig = _kubeconfig(tmp_path, ["c1", "c2"])
    out = _mcs_run("--kubeconfig", str(kubeconfig), "--metrics-bind-address", "0", *argv)
    assert out.returncode == 2, out.stderr
    (error,) = [e for e in _logs(out.stderr) if e["level"] == "error"]
    assert message in str(error["error"])


def test_a_bad_log_level_exits_2_without_traceback(tmp_path: Path) -> None:
    out = _mcs_run("--log-level", "loud")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "argument --log-level: invalid choice 'loud'" in out.stderr
