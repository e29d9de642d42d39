"""The members the controller is configured with: its Secret ``mcs-remote-kubeconfigs``
(key ``kubeconfig``: one context per member; ``local-context``: the one it writes to in
per-cluster mode; ``mode``: ``central`` or ``per-cluster``). Pure parsing, plus writing
the kubeconfig to a private file to connect with the controller's own credentials.

(``mcs status`` reads the same Secret for its member list; this module is kept small
so that the two can share one reader.)"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from mcs.runtime.members import IN_CLUSTER_SERVERS

KUBECONFIG, LOCAL_CONTEXT, MODE = "kubeconfig", "local-context", "mode"
Mode = Literal["central", "per-cluster"]


class SecretError(ValueError):
    """The Secret cannot describe a clusterset; the message says why."""


@dataclass(frozen=True)
class Member:
    """One context of the controller's kubeconfig."""

    context: str
    server: str
    user: dict[str, Any]  # the kubeconfig's user entry (token, tokenFile, client certificate...)

    @property
    def in_cluster(self) -> bool:
        """Reached at the in-cluster address (the controller's own cluster): not an
        address this machine can reach."""
        return self.server.lower().rstrip("/") in IN_CLUSTER_SERVERS


@dataclass(frozen=True)
class ControllerMembers:
    kubeconfig: str  # the text of key "kubeconfig"
    local_context: str
    mode: Mode
    mode_given: bool  # False: derived from local-context (Secrets from before key "mode")
    members: tuple[Member, ...]

    def write(self, directory: str | None = None) -> Path:
        """The kubeconfig in a new private directory (mode 0700, file 0600), as the
        controller mounts it; relative paths in it resolve there, as in the Pod."""
        where = Path(tempfile.mkdtemp(prefix="mcs-diagnose-", dir=directory))
        path = where / KUBECONFIG
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.kubeconfig)
        return path


def _value(secret: dict[str, Any], key: str) -> str | None:
    string = secret.get("stringData") or {}
    if key in string:
        return str(string[key])
    data = secret.get("data") or {}
    if key not in data:
        return None
    try:
        return base64.b64decode(str(data[key]), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as e:
        raise SecretError(f"key {key!r} is not base64 of UTF-8 text: {e}") from None


def parse(secret: dict[str, Any]) -> ControllerMembers:
    """The members of the controller's Secret; ``SecretError`` when it cannot work."""
    text = _value(secret, KUBECONFIG)
    if not text:
        raise SecretError(f"has no key {KUBECONFIG!r}: the controller has no members")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SecretError(f"key {KUBECONFIG!r} is not YAML: {e}") from None
    if not isinstance(doc, dict):
        raise SecretError(f"key {KUBECONFIG!r} is not a kubeconfig")

    def named(kind: str) -> dict[str, dict[str, Any]]:
        return {
            str(i.get("name")): (i.get(kind) or {})
            for i in doc.get(kind + "s") or []
            if isinstance(i, dict)
        }

    clusters, users = named("cluster"), named("user")
    members = []
    for name, ctx in named("context").items():
        cluster = clusters.get(str(ctx.get("cluster")), {})
        members.append(
            Member(name, str(cluster.get("server", "")), users.get(str(ctx.get("user")), {}))
        )
    if not members:
        raise SecretError(f"key {KUBECONFIG!r} has no contexts: the controller has no members")
    local = (_value(secret, LOCAL_CONTEXT) or "").strip()
    given = (_value(secret, MODE) or "").strip()
    if given and given not in ("central", "per-cluster"):
        raise SecretError(f"key {MODE!r} is {given!r}, not central or per-cluster")
    mode: Mode = "per-cluster" if given == "per-cluster" or (not given and local) else "central"
    if mode == "per-cluster" and local not in {m.context for m in members}:
        raise SecretError(
            f"mode per-cluster writes to key {LOCAL_CONTEXT!r} = {local!r}, which is not a "
            f"context of key {KUBECONFIG!r} ({', '.join(m.context for m in members)})"
        )
    return ControllerMembers(text, local, mode, bool(given), tuple(members))
