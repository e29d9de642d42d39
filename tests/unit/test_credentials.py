"""Unit tests for mcs.runtime.credentials: a rotated token file, a replaced kubeconfig and a
broken one, as the clients see them (no API server needed: nothing is sent)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mcs.runtime.credentials import CredentialReloader, refresh
from mcs.runtime.kubeapi import new_client


def write_kubeconfig(path: Path, server: str, token_file: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                "contexts": [{"name": "c1", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c1",
            }
        )
    )


async def test_rotated_token_file_is_used_without_a_new_client(tmp_path: Path) -> None:
    token, kubeconfig = tmp_path / "token", tmp_path / "kubeconfig"
    token.write_text("first")
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1", token)
    api = await new_client(str(kubeconfig), "c1")
    try:
        pool = api.rest_client
        assert await refresh(api, str(kubeconfig), "c1") is None
        token.write_text("second")
        assert await refresh(api, str(kubeconfig), "c1") == "token"
        assert api.configuration.api_key["BearerToken"] == "Bearer second"
        assert api.rest_client is pool, "a token change keeps the connections"
        assert await refresh(api, str(kubeconfig), "c1") is None
    finally:
        await api.close()


async def test_a_new_server_gets_a_new_connection_pool(tmp_path: Path) -> None:
    token, kubeconfig = tmp_path / "token", tmp_path / "kubeconfig"
    token.write_text("t")
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1", token)
    api = await new_client(str(kubeconfig), "c1")
    try:
        pool = api.rest_client
        write_kubeconfig(kubeconfig, "http://127.0.0.1:2", token)
        assert await refresh(api, str(kubeconfig), "c1") == "tls"
        assert api.configuration.host == "http://127.0.0.1:2"
        assert api.rest_client is not pool and pool.pool_manager.closed
    finally:
        await api.close()


async def test_a_broken_kubeconfig_keeps_the_current_credentials(tmp_path: Path) -> None:
    token, kubeconfig = tmp_path / "token", tmp_path / "kubeconfig"
    token.write_text("t")
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1", token)
    api = await new_client(str(kubeconfig), "c1")
    try:
        kubeconfig.write_text("{ half-written")
        reloader = CredentialReloader(str(kubeconfig), {"c1": api}, period=0)
        await reloader.check()
        assert reloader.reloads == 0
        assert api.configuration.host == "http://127.0.0.1:1"
        assert api.configuration.api_key["BearerToken"] == "Bearer t"
    finally:
        await api.close()


async def test_a_kubeconfig_that_turns_tls_verification_off_is_refused(tmp_path: Path) -> None:
    """As at start-up: a context that now sets insecure-skip-tls-verify keeps the current
    credentials (logged), unless --allow-insecure-skip-tls-verify."""
    token, kubeconfig = tmp_path / "token", tmp_path / "kubeconfig"
    token.write_text("t")
    write_kubeconfig(kubeconfig, "https://127.0.0.1:1", token)
    api = await new_client(str(kubeconfig), "c1")
    try:
        cfg = yaml.safe_load(kubeconfig.read_text())
        cfg["clusters"][0]["cluster"] |= {
            "server": "https://127.0.0.1:2",
            "insecure-skip-tls-verify": True,
        }
        kubeconfig.write_text(yaml.safe_dump(cfg))
        token.write_text("new")
        reloader = CredentialReloader(str(kubeconfig), {"c1": api}, period=0)
        await reloader.check()
        assert reloader.reloads == 0
        assert api.configuration.host == "https://127.0.0.1:1"
        assert api.configuration.verify_ssl
        assert api.configuration.api_key["BearerToken"] == "Bearer t"
        allowing = CredentialReloader(str(kubeconfig), {"c1": api}, 0, allow_insecure=True)
        await allowing.check()
        assert allowing.reloads == 1
        assert api.configuration.host == "https://127.0.0.1:2"
        assert not api.configuration.verify_ssl
    finally:
        await api.close()
