"""The low-risk items of #29: leader-election bounds, the per-process directory of
kubernetes_asyncio's certificate files."""

from __future__ import annotations

import argparse
import base64
import os
import uuid
from pathlib import Path

import pytest
import yaml

from mcs.commands import run as run_cmd
from mcs.commands.run import add_run_parser
from mcs.runtime import kubeapi
from mcs.runtime.controller import MemberConfig
from mcs.runtime.leader import LeaderElector
from mcs.runtime.members import ConfigError


@pytest.mark.parametrize("duration", [0.5, 0.9])
def test_a_lease_under_one_second_is_refused(duration: float) -> None:
    """It used to be written as 0 seconds: a standby took over at once."""
    with pytest.raises(ValueError, match="under 1 s"):
        LeaderElector(
            None,  # type: ignore[arg-type]
            namespace="ns",
            name="l",
            identity="me",
            lease_duration=duration,
            renew_deadline=duration * 2 / 3,
            retry_period=duration / 7.5,
        )


async def test_the_lease_records_the_duration_rounded_up() -> None:
    """1.9 s used to be written as 1 s, less than the leader's renew deadline (1.27 s):
    a standby could take over while the leader still wrote."""
    elector = LeaderElector(
        None,  # type: ignore[arg-type]
        namespace="ns",
        name="l",
        identity="me",
        lease_duration=1.9,
        renew_deadline=1.9 * 2 / 3,
        retry_period=1.9 / 7.5,
    )
    assert elector.lease_duration_seconds == 2
    with pytest.raises(ValueError, match=r"1\.2"):
        LeaderElector(
            None,  # type: ignore[arg-type]
            namespace="ns",
            name="l",
            identity="me",
            lease_duration=10,
            renew_deadline=2,
            retry_period=1.9,
        )


def test_mcs_run_refuses_a_short_lease_as_a_configuration_error() -> None:
    parser = argparse.ArgumentParser()
    add_run_parser(parser.add_subparsers())
    args = parser.parse_args(["run", "--leader-elect", "--leader-elect-lease-duration", "0.5"])
    member = MemberConfig(context="c1", cluster_id="c1", api=None, local=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="--leader-elect-lease-duration"):
        run_cmd._elector(args, [member])


async def test_certificate_files_go_to_a_per_process_directory_cleaned_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kubernetes_asyncio wrote them into /tmp itself, removed only at a clean exit: after
    a SIGKILL or an OOM kill they piled up in the Pod's memory-backed /tmp."""
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    monkeypatch.setattr(kubeapi, "_cert_dir", None, raising=False)
    stale = tmp_path / "mcs-certs-999999999"  # a process that is gone
    stale.mkdir()
    (stale / "key").write_text("old key")
    mine_before = tmp_path / f"mcs-certs-{os.getpid()}"  # an earlier incarnation's pid
    mine_before.mkdir()
    (mine_before / "key").write_text("old key too")
    unique = f"cert {uuid.uuid4()}".encode()  # kubernetes_asyncio reuses a file per content
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "client-certificate-data": base64.b64encode(unique).decode(),
                            "client-key-data": base64.b64encode(unique + b"key").decode(),
                        },
                    }
                ],
                "contexts": [{"name": "c1", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c1",
            }
        )
    )
    cfg = await kubeapi.load_config(str(path), "c1")
    check_cert_dir(tmp_path, Path(cfg.cert_file), unique)


def check_cert_dir(tmp_path: Path, cert: Path, content: bytes) -> None:
    assert cert.parent == tmp_path / f"mcs-certs-{os.getpid()}"
    assert cert.read_bytes() == content
    assert not (tmp_path / "mcs-certs-999999999").exists()
    assert not (cert.parent / "key").exists()
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["kubeconfig"]
