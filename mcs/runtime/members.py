"""Which clusters are members and what they are called: the ``--kubeconfig``,
``--contexts`` and ``--cluster-id`` flags, shared by ``mcs run`` and ``mcs status``,
and the cluster id (KEP-2149) a member resolves to."""

from __future__ import annotations

import argparse
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog
import yaml
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.runtime.observability import CLUSTER_ID_CONFLICT

log = structlog.get_logger(__name__)

# KEP-2149: the cluster id is a valid RFC-1123 DNS subdomain.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class ConfigError(ValueError):
    """The configuration cannot work; the message says why."""


def validate_cluster_id(value: str) -> str:
    if len(value) > 253 or not _SUBDOMAIN.match(value):
        raise ConfigError(f"cluster id {value!r} is not a valid RFC-1123 DNS subdomain")
    return value


def add_member_arguments(p: argparse.ArgumentParser) -> None:
    """``--kubeconfig``, ``--contexts`` and ``--cluster-id``: which clusters are members
    and what they are called (shared by ``mcs run`` and ``mcs status``)."""
    p.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", str(Path.home() / ".kube/config")),
        help="kubeconfig holding one context per member cluster (default $KUBECONFIG)",
    )
    p.add_argument(
        "--contexts",
        default="",
        help="comma-separated member contexts (default: every context of the kubeconfig)",
    )
    p.add_argument(
        "--cluster-id",
        action="append",
        default=[],
        metavar="CONTEXT=ID",
        help="override a member's cluster id (default: its ClusterProperty "
        "cluster.clusterset.k8s.io, else the context name); repeatable",
    )


async def read_cluster_id(api: client.ApiClient) -> str | None:
    """The value of the member's ClusterProperty ``cluster.clusterset.k8s.io``, or None
    when it has none (404, also when the ClusterProperty CRD is not installed); other
    API errors raise. No timeout of its own: callers bound it with ``asyncio.timeout``."""
    try:
        prop = await client.CustomObjectsApi(api).get_cluster_custom_object(
            "about.k8s.io", "v1beta1", "clusterproperties", "cluster.clusterset.k8s.io"
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    value = prop.get("spec", {}).get("value")
    return str(value) if value else None


def member_contexts(kubeconfig: str, contexts: str) -> list[str]:
    """The member contexts: the comma-separated ``contexts`` (as given to ``--contexts``),
    or every context of ``kubeconfig`` when empty. Raises ``ConfigError`` when the
    kubeconfig cannot be read or lacks one of the named contexts."""
    if not os.path.isfile(os.path.expanduser(kubeconfig)):
        raise ConfigError(
            f"kubeconfig {kubeconfig} does not exist: set --kubeconfig or $KUBECONFIG"
        )
    try:
        all_contexts, _ = config.list_kube_config_contexts(config_file=kubeconfig)
    except (config.ConfigException, OSError) as e:
        raise ConfigError(f"cannot read kubeconfig {kubeconfig} (--kubeconfig): {e}") from None
    known = [c["name"] for c in all_contexts]
    chosen = [c for c in contexts.split(",") if c] or known
    for c in chosen:
        if c not in known:
            raise ConfigError(
                f"context {c!r} not in {kubeconfig} (has {', '.join(known)}): change --contexts"
            )
    return chosen


def parse_cluster_ids(items: list[str]) -> dict[str, str]:
    """``--cluster-id CONTEXT=ID`` items as ``{context: id}`` (a later item wins).
    Raises ``ConfigError`` for an item that is not ``CONTEXT=ID`` or an invalid id."""
    overrides: dict[str, str] = {}
    for item in items:
        ctx, sep, cid = item.partition("=")
        if not sep or not ctx:
            raise ConfigError(f"--cluster-id {item!r} is not CONTEXT=ID")
        overrides[ctx] = validate_cluster_id(cid)
    return overrides


async def resolve_cluster_id(api: client.ApiClient, context: str, overrides: dict[str, str]) -> str:
    """A member's cluster id: its ``--cluster-id`` override, else its ClusterProperty,
    else the context name. Raises ``ConfigError`` when the id is not valid, and what
    ``read_cluster_id`` raises when the ClusterProperty cannot be read."""
    cid = overrides.get(context) or await read_cluster_id(api) or context
    return validate_cluster_id(cid)


class ClusterIds:
    """The cluster id each member (by context) claims, kept unique.

    Two members claiming one id would merge as one cluster, and neither can be told
    from the other by what it publishes, so `claim` refuses the id of every member that
    shares it (``ConfigError``, logged and counted as ``mcs_cluster_id_conflict``):
    both stay out (a member whose id is still to be read keeps retrying; see
    `mcs.runtime.health`) until one of them changes its ClusterProperty."""

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}
        self._reported: dict[str, str] = {}

    def record(self, context: str, cluster_id: str) -> None:
        """Note ``context``'s id without checking it (start-up reads them all first)."""
        self.claims[context] = cluster_id

    def sharing(self, context: str) -> list[str]:
        """The other contexts claiming ``context``'s id."""
        cid = self.claims.get(context)
        return sorted(c for c, i in self.claims.items() if i == cid and c != context)

    def check(self, context: str) -> str:
        """``context``'s id, or ``ConfigError`` when another member claims it too."""
        cid = self.claims[context]
        others = self.sharing(context)
        CLUSTER_ID_CONFLICT.labels(context=context).set(1 if others else 0)
        if not others:
            if self._reported.pop(context, None) is not None:
                log.info("cluster id no longer shared", context=context, cluster=cid)
            return cid
        message = (
            f"cluster id {cid!r} of context {context!r} is also the id of "
            f"{', '.join(repr(c) for c in others)}: all of them are left out of the "
            "clusterset until each member's ClusterProperty cluster.clusterset.k8s.io "
            "(or --cluster-id) is unique"
        )
        if self._reported.get(context) != message:
            self._reported[context] = message
            log.error("cluster id claimed by more than one member", detail=message)
        raise ConfigError(message)

    def claim(self, context: str, cluster_id: str) -> str:
        """Record and check ``context``'s (newly read) id."""
        self.record(context, cluster_id)
        return self.check(context)


def provisional_id(context: str, taken: Iterable[str]) -> str:
    """An id for a member whose own is not known (yet), distinct from ``taken``: the
    context name when it is a valid id, else one derived from it."""
    used = set(taken)
    if len(context) <= 253 and _SUBDOMAIN.match(context) and context not in used:
        return context
    digest = hashlib.sha256(context.encode()).hexdigest()
    for n in range(10, len(digest) + 1):
        cid = f"unresolved-{digest[:n]}"
        if cid not in used:
            return cid
    raise ConfigError(f"no provisional cluster id for context {context!r}")


REMOTE_USER_FIELDS_REFUSED = ("exec", "auth-provider")
"""Kubeconfig user fields a remote member's context may not use: both run code or reach
identity providers on this machine (``exec`` ran ``/bin/sh`` inside the kubeconfig
loader, and the credential reloader would run it again every few seconds)."""
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER_SERVERS = frozenset(
    f"https://kubernetes.default.svc{suffix}{port}"
    for suffix in ("", ".cluster.local")
    for port in ("", ":443")
)
"""The in-cluster context (``hack/make-remote-kubeconfig.sh --in-cluster``): the Pod's
ServiceAccount files may be used only towards its own cluster's API server (central
mode, where every context is checked, with the hub a member)."""
_FILE_FIELDS = (
    ("user", "tokenFile"),
    ("user", "client-certificate"),
    ("user", "client-key"),
    ("cluster", "certificate-authority"),
)


def check_remote_context(kubeconfig: str, context: str) -> None:
    """Refuse a remote member's context that could make this process run code, send its
    own credentials elsewhere, or talk in clear text: ``ConfigError`` naming the field.

    A remote member's context (every context not named by ``--local``) comes from that
    member's admin. It may hold an ``https://`` server, an inline token, a client
    certificate and key, CA data, and files *inside the directory of the kubeconfig*
    that names them (the mounted Secret). Refused: ``exec`` and ``auth-provider`` users,
    a server that is not ``https://``, and a ``tokenFile``, ``client-certificate``,
    ``client-key`` or ``certificate-authority`` outside that directory (the Pod's own
    ServiceAccount token, for instance, would be sent to the peer), except the Pod's
    ServiceAccount files towards ``https://kubernetes.default.svc`` (its own cluster:
    the in-cluster context of a hub that is a member, in central mode). Checked on the
    raw file, before kubernetes_asyncio reads it (its loader runs ``exec`` plugins)."""
    docs: list[tuple[Path, dict[str, Any]]] = []
    for part in kubeconfig.split(os.pathsep):
        if not part:
            continue
        path = Path(os.path.expanduser(part))
        try:
            doc = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read kubeconfig {path}: {e}") from None
        if isinstance(doc, dict):
            docs.append((path, doc))

    def entry(kind: str, name: object) -> tuple[Path, dict[str, Any]]:
        for path, doc in docs:  # the first file that names it wins, as kubectl merges
            for item in doc.get(kind + "s") or ():
                if isinstance(item, dict) and item.get("name") == name:
                    body = item.get(kind)
                    return path, body if isinstance(body, dict) else {}
        return Path(), {}

    _, ctx = entry("context", context)
    where = f"context {context!r} (a remote member)"
    found = {
        "user": entry("user", ctx.get("user")),
        "cluster": entry("cluster", ctx.get("cluster")),
    }
    user = found["user"][1]
    for key in REMOTE_USER_FIELDS_REFUSED:
        if key in user:
            raise ConfigError(
                f"{where}: users[{ctx.get('user')!r}].user.{key} is refused for a remote "
                "member (it would run a program or reach an identity provider here); use "
                "an inline token (hack/make-remote-kubeconfig.sh writes one)"
            )
    server = str(found["cluster"][1].get("server", ""))
    if not server.lower().startswith("https://"):
        raise ConfigError(
            f"{where}: clusters[{ctx.get('cluster')!r}].cluster.server {server!r} is not "
            "https://: a remote member is reached over TLS only"
        )
    in_cluster = server.lower().rstrip("/") in IN_CLUSTER_SERVERS
    for kind, key in _FILE_FIELDS:
        origin, body = found[kind]
        value = body.get(key)
        if not value:
            continue
        base = origin.parent
        target = os.path.realpath(base / os.path.expanduser(str(value)))
        root = os.path.realpath(base)
        sa_dir = os.path.realpath(SERVICE_ACCOUNT_DIR)
        if in_cluster and os.path.commonpath([sa_dir, target]) == sa_dir:
            continue  # the Pod's own files, sent to its own cluster's API server
        if os.path.commonpath([root, target]) != root:
            why = (
                "it could send this Pod's own credentials to that member; use an inline "
                "token or a file in the Secret"
                if key == "tokenFile"
                else f"a remote member's files come with its kubeconfig; use {key}-data"
            )
            raise ConfigError(
                f"{where}: {kind}s[{ctx.get(kind)!r}].{kind}.{key} {value!r} is outside "
                f"the directory of the kubeconfig ({root}): {why}"
            )


def check_tls(cfg: client.Configuration, context: str, allow_insecure: bool) -> None:
    """Refuse a member whose kubeconfig turns off server certificate checks
    (``insecure-skip-tls-verify``) unless ``--allow-insecure-skip-tls-verify`` was given:
    without them anyone on the path can impersonate that API server and feed the
    clusterset its Services and endpoints. Also applied to re-read credentials."""
    if not cfg.verify_ssl:
        if not allow_insecure:
            raise ConfigError(
                f"context {context!r} sets insecure-skip-tls-verify: give it the API server's "
                "CA (certificate-authority-data) instead, or pass "
                "--allow-insecure-skip-tls-verify (test setups only)"
            )
        log.warning("member API server certificate not verified", context=context)
