"""kubectl's client flags for ``mcs status`` and ``kubectl mcs`` (pure, but for reading
the kubeconfig files and writing the merged one).

* ``--kubeconfig`` / ``$KUBECONFIG`` may name several files (``a:b``); they are merged
  the way kubectl merges them: the first file that names a cluster, user or context
  wins, and so does the first ``current-context``. Relative file paths in a file are
  relative to that file.
* ``--context``, ``--cluster``, ``--user``: the context to act in (default: the current
  one), and the cluster or user that replace its own.
* ``--as`` / ``--as-group``: impersonation (headers ``Impersonate-User`` /
  ``Impersonate-Group``), as kubectl sends them.
* ``--request-timeout``: a Go duration (``5s``, ``1m30s``, ``500ms``) or a bare number of
  seconds, as kubectl takes it; ``0`` means the default.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes_asyncio.client import ApiClient
from multidict import CIMultiDict

from mcs.core.durations import arg as duration_arg
from mcs.runtime.kubeapi import READ_BUFFER, cert_dir, new_client
from mcs.runtime.members import ConfigError

DEFAULT_KUBECONFIG = str(Path.home() / ".kube" / "config")

# Fields of a kubeconfig that name files, by section; relative paths are relative to
# the file that holds them.
_FILE_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("client-certificate", "client-key", "tokenFile"),
}


def kubeconfig_paths(value: str | None) -> list[str]:
    """The files of ``--kubeconfig`` / ``$KUBECONFIG`` (``os.pathsep``-separated), in
    order, without empty entries or repeats; ``~/.kube/config`` when none is named."""
    raw = value if value else os.environ.get("KUBECONFIG", "")
    paths: list[str] = []
    for p in raw.split(os.pathsep):
        p = os.path.expanduser(p.strip())
        if p and p not in paths:
            paths.append(p)
    return paths or [DEFAULT_KUBECONFIG]


def _absolute(section: str, body: Mapping[str, Any], base: Path) -> dict[str, Any]:
    out = dict(body)
    for key in _FILE_FIELDS.get(section, ()):
        value = out.get(key)
        if isinstance(value, str) and value and not os.path.isabs(value):
            out[key] = str(base / value)
    return out


def merge_kubeconfigs(documents: Sequence[tuple[Path, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """kubectl's merge of kubeconfig ``documents`` (each with the path it came from):
    the first to name a cluster, user or context wins, and the first
    ``current-context``; relative file paths become absolute. Pure."""
    merged: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [],
        "users": [],
        "contexts": [],
        "current-context": "",
    }
    seen: dict[str, set[str]] = {"clusters": set(), "users": set(), "contexts": set()}
    for path, doc in documents:
        if not doc:
            continue
        base = path.parent
        for plural, section in (
            ("clusters", "cluster"),
            ("users", "user"),
            ("contexts", "context"),
        ):
            for item in doc.get(plural) or []:
                if not isinstance(item, Mapping) or not item.get("name"):
                    continue
                name = str(item["name"])
                if name in seen[plural]:
                    continue
                seen[plural].add(name)
                body = item.get(section) or {}
                merged[plural].append(
                    {"name": name, section: _absolute(section, body, base) if body else {}}
                )
        if not merged["current-context"] and doc.get("current-context"):
            merged["current-context"] = str(doc["current-context"])
    return merged


def load_kubeconfig(paths: Sequence[str]) -> dict[str, Any]:
    """Read and merge the kubeconfig ``paths`` (files that do not exist are skipped, as
    kubectl skips them). Raises ``ConfigError`` when none exists or one cannot be read."""
    documents: list[tuple[Path, Mapping[str, Any] | None]] = []
    for p in paths:
        path = Path(p)
        if not path.is_file():
            continue
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read kubeconfig {p} (--kubeconfig): {e}") from None
        if doc is not None and not isinstance(doc, Mapping):
            raise ConfigError(f"kubeconfig {p} is not a kubeconfig (--kubeconfig)")
        documents.append((path, doc))
    if not documents:
        raise ConfigError(
            f"kubeconfig {os.pathsep.join(paths)} does not exist: set --kubeconfig or $KUBECONFIG"
        )
    return merge_kubeconfigs(documents)


@dataclass(frozen=True)
class ClientFlags:
    """kubectl's client flags, as given (None: not given)."""

    kubeconfig: str | None = None
    context: str | None = None
    cluster: str | None = None
    user: str | None = None
    as_user: str | None = None
    as_groups: tuple[str, ...] = ()
    request_timeout: float | None = None

    @classmethod
    def of(cls, args: argparse.Namespace) -> ClientFlags:
        return cls(
            kubeconfig=getattr(args, "kubeconfig", None),
            context=getattr(args, "context", None),
            cluster=getattr(args, "cluster", None),
            user=getattr(args, "user", None),
            as_user=getattr(args, "as_user", None),
            as_groups=tuple(getattr(args, "as_groups", None) or ()),
            request_timeout=getattr(args, "request_timeout", None) or None,
        )


def add_client_flags(p: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``--cluster``, ``--user``, ``--as``, ``--as-group`` and ``--request-timeout`` (the
    caller adds ``--kubeconfig`` and ``--context``). ``suppress``: leave a flag unset when
    it is not given (for a parent parser whose flags may also follow a subcommand)."""
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument(
        "--cluster", help="the kubeconfig cluster to use instead of the context's", **default
    )
    p.add_argument("--user", help="the kubeconfig user to use instead of the context's", **default)
    p.add_argument("--as", dest="as_user", metavar="USER", help="impersonate USER", **default)
    p.add_argument(
        "--as-group",
        dest="as_groups",
        action="append",
        metavar="GROUP",
        help="impersonate GROUP; repeatable",
        default=argparse.SUPPRESS if suppress else [],
    )
    p.add_argument(
        "--request-timeout",
        type=duration_arg,
        metavar="DURATION",
        help="how long to wait for each cluster, e.g. 5s or 1m (bare numbers are seconds; "
        "default 5s)",
        **default,
    )


@dataclass
class Kubeconfig:
    """The merged kubeconfig with kubectl's overrides, and a file holding it (for
    kubernetes_asyncio's loader, which reads files)."""

    data: dict[str, Any]
    flags: ClientFlags = field(default_factory=ClientFlags)
    _path: str | None = None

    @classmethod
    def load(cls, flags: ClientFlags) -> Kubeconfig:
        data = load_kubeconfig(kubeconfig_paths(flags.kubeconfig))
        kc = cls(data, flags)
        for name, plural in ((flags.cluster, "clusters"), (flags.user, "users")):
            if name and name not in kc.names(plural):
                raise ConfigError(
                    f"{plural[:-1]} {name!r} is not in the kubeconfig "
                    f"(has {', '.join(kc.names(plural)) or 'none'})"
                )
        if flags.context and flags.context not in kc.contexts:
            raise ConfigError(
                f"context {flags.context!r} is not in the kubeconfig "
                f"(has {', '.join(kc.contexts) or 'none'}): change --context"
            )
        return kc

    def names(self, plural: str) -> list[str]:
        return [str(i["name"]) for i in self.data[plural]]

    @property
    def contexts(self) -> list[str]:
        return self.names("contexts")

    @property
    def current(self) -> str | None:
        """``--context``, else the current context (None when neither is set)."""
        return self.flags.context or self.data.get("current-context") or None

    def context(self, name: str) -> dict[str, Any]:
        """The context's body with ``--cluster`` / ``--user`` applied."""
        item = next(c for c in self.data["contexts"] if c["name"] == name)
        body = dict(item.get("context") or {})
        if self.flags.cluster:
            body["cluster"] = self.flags.cluster
        if self.flags.user:
            body["user"] = self.flags.user
        return body

    def server(self, name: str) -> str:
        """The API server URL of context ``name`` ("" when its cluster is missing)."""
        cluster = self.context(name).get("cluster")
        for c in self.data["clusters"]:
            if c["name"] == cluster:
                return str((c.get("cluster") or {}).get("server") or "")
        return ""

    def namespace(self, name: str) -> str | None:
        ns = self.context(name).get("namespace")
        return str(ns) if ns else None

    @property
    def path(self) -> str:
        """A private file (in ``cert_dir``, removed at exit) holding the merged
        kubeconfig with ``--cluster`` / ``--user`` applied to every context."""
        if self._path is None:
            data = copy.deepcopy(self.data)
            for c in data["contexts"]:
                c["context"] = self.context(c["name"])
            fd, path = tempfile.mkstemp(prefix="kubeconfig-", suffix=".yaml", dir=cert_dir())
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(data, f)
            self._path = path
        return self._path

    async def client(self, context: str) -> ApiClient:
        """A client of ``context``, impersonating as ``--as`` / ``--as-group`` say."""
        api = await new_client(self.path, context)
        if self.flags.as_user or self.flags.as_groups:
            headers: CIMultiDict[str] = CIMultiDict()
            if self.flags.as_user:
                headers.add("Impersonate-User", self.flags.as_user)
            for g in self.flags.as_groups:
                headers.add("Impersonate-Group", g)
            # Session headers keep repeated keys (one Impersonate-Group per group),
            # which the generated client's header dict cannot.
            rest = api.rest_client
            old = rest.pool_manager
            rest.pool_manager = aiohttp.ClientSession(
                connector=old.connector, trust_env=False, read_bufsize=READ_BUFFER, headers=headers
            )
            old.detach()
        return api
