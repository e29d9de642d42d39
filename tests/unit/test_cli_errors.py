"""Mistakes a user makes on the command line get one line naming the flag to change,
never a traceback (run as a user does: the ``mcs`` console script, in a subprocess)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import yaml

MCS = [sys.executable, "-m", "mcs"]


def _kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    cluster = {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def _mcs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MCS, *args], capture_output=True, text=True, timeout=60, check=False)


def _one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_a_taken_port_names_the_flag(tmp_path: Path) -> None:
    kubeconfig = _kubeconfig(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # --cluster-id: no API call is needed before the listeners bind
        out = _mcs(
            "run", "--kubeconfig", str(kubeconfig), "--cluster-id", "c=c",
            "--allow-insecure-skip-tls-verify",
            "--log-level", "critical", "--metrics-bind-address", "0",
            "--health-probe-bind-address", f"127.0.0.1:{port}",
        )  # fmt: skip
    assert out.returncode == 2
    line = _one_line(out.stderr)
    assert line.startswith(f"mcs run: cannot listen on port {port}: it is already in use")
    assert "--health-probe-bind-address" in line


def test_missing_kubeconfig_and_unknown_context(tmp_path: Path) -> None:
    out = _mcs("status", "--kubeconfig", str(tmp_path / "nope"))
    assert out.returncode == 2
    missing = tmp_path / "nope"
    assert _one_line(out.stderr) == (
        f"mcs status: kubeconfig {missing} does not exist: set --kubeconfig or $KUBECONFIG"
    )
    out = _mcs("status", "--kubeconfig", str(_kubeconfig(tmp_path)), "--contexts", "c,x")
    assert out.returncode == 2
    assert _one_line(out.stderr).endswith("(has c): change --contexts")


def test_mesh_without_the_mesh_tooling_says_what_to_install() -> None:
    """The controller's image leaves mcs_mesh out: `mcs mesh up` (any words after `mesh`)
    answers with the extra to install, exit 2, no traceback."""
    hide = "import sys; sys.modules['mcs_mesh'] = None; from mcs.commands.cli import main; "
    for words in (["mesh", "up"], ["mesh", "up", "--dataplane"], ["mesh"]):
        done = subprocess.run(
            [sys.executable, "-c", hide + f"sys.exit(main({words!r}))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert "needs the mesh extra" in done.stderr and "Traceback" not in done.stderr
