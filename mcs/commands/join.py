"""``kubectl mcs join CTX1 CTX2 [...]``: make the clusters of these kubectl contexts one
clusterset, in per-cluster or central mode (docs/join.md).

In every member it applies, server-side as field manager ``kubectl-mcs-join``, the
identity the controllers use to reach it, from the shipped ``manifests/``
(``remote/`` per cluster: ServiceAccount ``mcs-remote-reader``, read-only;
``central-member/`` central: ``mcs-central-writer`` and the admission policy; the CRDs
are ``crds/``, installed with the controller),
creates the ClusterProperty ``cluster.clusterset.k8s.io`` when the member has none, asks
the TokenRequest API for tokens of those ServiceAccounts (``--token-duration``) and
writes the Secret ``mcs-remote-kubeconfigs`` (keys ``kubeconfig``, ``local-context``,
``mode``) in the controller namespace: in every member (per-cluster mode), or in
``--controller-context`` (central mode).

Idempotent: a token already in the Secret is kept while it is of the right
ServiceAccount, for the same address and CA, and has more than ``--rotate-before`` of
its life left (default: a third of the lifetime it was issued with); an object that is
already as the manifests say is not written.
``--rotate`` does only the token part (what a CronJob runs before tokens expire).
``--dry-run`` reads the clusters (ids, CAs) and prints what would be written, tokens as
placeholders.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.commands.joinplan import (
    CLUSTER_PROPERTY,
    FIELD_MANAGER,
    MODES,
    SECRET,
    Member,
    Mode,
    Plan,
    PlanError,
    TokenNeed,
    existing_tokens,
    parse_duration,
    plan,
    render_dry_run,
    reusable,
    token_expiry,
)
from mcs.commands.joinplan import Doc as Obj
from mcs.runtime.kubeapi import new_client, request_json
from mcs.runtime.members import ConfigError, validate_cluster_id

# the shipped manifests/, package data of mcs (mcs/manifests links the repository's
# manifests/, so an editable install reads the checkout's)
DEFAULT_MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"
CALL_TIMEOUT = 15.0
APPLY = "application/apply-patch+yaml"
# kind -> (API prefix, plural, namespaced): the kinds the shipped manifests hold
_RESOURCES: dict[str, tuple[str, str, bool]] = {
    "Namespace": ("/api/v1", "namespaces", False),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "Secret": ("/api/v1", "secrets", True),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ValidatingAdmissionPolicy": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicies",
        False,
    ),
    "ValidatingAdmissionPolicyBinding": (
        "/apis/admissionregistration.k8s.io/v1",
        "validatingadmissionpolicybindings",
        False,
    ),
    "ClusterProperty": ("/apis/about.k8s.io/v1beta1", "clusterproperties", False),
}


class JoinFailed(Exception):
    """The join could not finish; the message is the one line to print."""


def add_parser(sub: Any) -> None:
    """Register ``join`` on the plugin's subparsers. Of kubectl's flags it takes
    ``--kubeconfig`` and ``-n`` (the controller namespace); the contexts are its
    arguments. Both are set only when given, as the plugin's other flags (its
    ``parse_args`` fills in the defaults)."""
    flags = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    flags.add_argument(
        "--kubeconfig", help="path to the kubeconfig (default $KUBECONFIG, else ~/.kube/config)"
    )
    flags.add_argument(
        "-n",
        "--namespace",
        help="the controller namespace, where the member Secret goes (default mcs-system)",
    )
    p = sub.add_parser(
        "join",
        parents=[flags],
        help="join clusters into a clusterset (identities, tokens, member Secrets)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="CONTEXT", help="two or more member contexts")
    p.add_argument("--mode", choices=MODES, default="per-cluster", help="default per-cluster")
    p.add_argument(
        "--controller-context",
        metavar="CTX",
        help="central mode: the context of the cluster the controller runs in (a member or not)",
    )
    p.add_argument(
        "--token-duration",
        default="720h",
        help="lifetime asked of the TokenRequest API, a Go duration (default 720h)",
    )
    p.add_argument(
        "--rotate-before",
        metavar="DURATION",
        help="re-issue tokens with less life left than this (default: a third of the lifetime "
        "each was issued with)",
    )
    p.add_argument(
        "--rotate",
        action="store_true",
        help="only re-issue tokens near expiry in the existing Secrets (for a CronJob)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the objects; write nothing")
    p.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="CTX=URL",
        help="the API server address the controllers reach CTX by, when not the "
        "kubeconfig's; repeatable",
    )
    p.add_argument(
        "--cluster-id",
        action="append",
        default=[],
        metavar="CTX=ID",
        help="the id of a member without a ClusterProperty (default: the context name)",
    )
    p.add_argument(
        "--manifests",
        type=Path,
        default=None,
        help="the manifests/ directory to take the RBAC from (default: the one shipped with mcs)",
    )


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{flag} {item!r}: expected CTX=VALUE")
        out[key] = value
    return out


def main(args: argparse.Namespace) -> int:
    """Run ``join`` (the plugin's ``main`` hands over its parsed arguments)."""
    try:
        return asyncio.run(_join(args))
    except (ConfigError, PlanError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except JoinFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# --------------------------------------------------------------------------- the kubeconfig


def _kubeconfig_members(path: str, contexts: list[str]) -> dict[str, tuple[str, str, bool]]:
    """context -> (server, CA data, whether TLS verification is skipped) from the
    user's kubeconfig."""
    try:
        cfg = yaml.safe_load(Path(path).read_text()) or {}
        config.list_kube_config_contexts(config_file=path)
    except (OSError, yaml.YAMLError, config.ConfigException) as e:
        raise ConfigError(f"cannot read kubeconfig {path}: {e}") from None
    ctxs = {c.get("name"): c.get("context") or {} for c in cfg.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster") or {} for c in cfg.get("clusters") or []}
    out = {}
    for name in contexts:
        if name not in ctxs:
            raise ConfigError(f"context {name!r} not in {path} (has {', '.join(map(str, ctxs))})")
        cluster = clusters.get(ctxs[name].get("cluster"), {})
        server = str(cluster.get("server") or "")
        ca = str(cluster.get("certificate-authority-data") or "")
        if not ca and cluster.get("certificate-authority"):
            ca_path = Path(str(cluster["certificate-authority"]))
            if not ca_path.is_absolute():
                ca_path = Path(path).parent / ca_path
            try:
                ca = base64.b64encode(ca_path.read_bytes()).decode()
            except OSError as e:
                raise ConfigError(f"context {name}: cannot read its CA {ca_path}: {e}") from None
        out[name] = (server, ca, bool(cluster.get("insecure-skip-tls-verify")))
    return out


# --------------------------------------------------------------------------- the API


async def _call(api: ApiClient, method: str, path: str, **kw: Any) -> Obj:
    return await request_json(api, method, path, time_limit=CALL_TIMEOUT, **kw)


def _path(obj: Mapping[str, Any]) -> str:
    kind = obj["kind"]
    if kind not in _RESOURCES:
        raise PlanError(f"kubectl mcs join cannot apply a {kind} (not in its table of kinds)")
    prefix, plural, namespaced = _RESOURCES[kind]
    meta = obj["metadata"]
    ns = f"/namespaces/{meta['namespace']}" if namespaced else ""
    return f"{prefix}{ns}/{plural}/{meta['name']}"


async def _get(api: ApiClient, path: str) -> Obj | None:
    try:
        return await _call(api, "GET", path)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


async def _apply(api: ApiClient, obj: Obj) -> str:
    """Server-side apply; what happened: created, configured or unchanged."""
    path = _path(obj)
    before = await _get(api, path)
    after = await _call(
        api,
        "PATCH",
        path,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=obj,
        content_type=APPLY,
    )
    if before is None:
        return "created"
    same = before["metadata"].get("resourceVersion") == after["metadata"].get("resourceVersion")
    return "unchanged" if same else "configured"


def _name(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj['kind'].lower()} {where}{meta['name']}"


class Session:
    """One API client per context, closed at the end."""

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.clients: dict[str, ApiClient] = {}

    async def api(self, context: str) -> ApiClient:
        if context not in self.clients:
            self.clients[context] = await new_client(self.kubeconfig, context)
        return self.clients[context]

    async def close(self) -> None:
        for api in self.clients.values():
            await api.close()


# --------------------------------------------------------------------------- the join


async def _member(
    s: Session,
    context: str,
    found: tuple[str, str, bool],
    servers: Mapping[str, str],
    ids: Mapping[str, str],
) -> Member:
    """A member as the clusterset sees it: its address, CA and id (read from it)."""
    server, ca, insecure = found
    server = servers.get(context, server)
    if not server.startswith("https://"):
        raise ConfigError(f"context {context}: server {server!r} is not https:// (use --server)")
    api = await s.api(context)
    if not ca or insecure:  # the CA the cluster publishes in every namespace
        cm = await _get(api, "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt")
        pem = ((cm or {}).get("data") or {}).get("ca.crt")
        if not pem:
            raise JoinFailed(f"context {context}: no CA in the kubeconfig nor in kube-root-ca.crt")
        ca = base64.b64encode(pem.encode()).decode()
    prop = await _get(api, f"/apis/about.k8s.io/v1beta1/clusterproperties/{CLUSTER_PROPERTY}")
    value = ((prop or {}).get("spec") or {}).get("value")
    if value:
        if context in ids and ids[context] != value:
            print(
                f"warning: {context} already has cluster id {value!r} (its ClusterProperty); "
                f"--cluster-id {context}={ids[context]} is not used",
                file=sys.stderr,
            )
        return Member(context, validate_cluster_id(str(value)), server, ca, True)
    return Member(context, validate_cluster_id(ids.get(context, context)), server, ca, False)


async def _join(args: argparse.Namespace) -> int:
    mode: Mode = args.mode
    try:
        duration = parse_duration(args.token_duration)
        rotate_before = parse_duration(args.rotate_before) if args.rotate_before else None
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if duration < timedelta(minutes=10):
        raise ConfigError("--token-duration: the TokenRequest API needs 10m or more")
    namespace = args.namespace or "mcs-system"
    servers = _pairs(args.server, "--server")
    ids = _pairs(args.cluster_id, "--cluster-id")
    for flag, given in (("--server", servers), ("--cluster-id", ids)):
        stray = sorted(set(given) - set(args.members))
        if stray:
            raise ConfigError(f"{flag} names {', '.join(stray)}, not among the members")
    wanted = list(args.members)
    if args.controller_context and args.controller_context not in wanted:
        wanted.append(args.controller_context)
    found = _kubeconfig_members(args.kubeconfig, wanted)
    s = Session(args.kubeconfig)
    try:
        members = [await _member(s, c, found[c], servers, ids) for c in args.members]
        by_context = {m.context: m for m in members}
        controller = None
        if args.controller_context:
            controller = by_context.get(args.controller_context) or Member(
                args.controller_context, args.controller_context, "", ""
            )
        p = plan(members, mode, args.manifests or DEFAULT_MANIFESTS, namespace, controller)
        if args.dry_run:
            sys.stdout.write(render_dry_run(p, duration))
            return 0
        if not args.rotate:
            await _apply_objects(s, p)
        await _write_secrets(s, p, duration, rotate_before, rotate_only=args.rotate)
    except ApiException as e:
        raise JoinFailed(f"HTTP {e.status}: {e.reason}") from None
    except (OSError, TimeoutError) as e:
        raise JoinFailed(f"cannot reach an API server: {e or 'timed out'}") from None
    finally:
        await s.close()
    return 0


async def _apply_objects(s: Session, p: Plan) -> None:
    for ctx, objs in p.objects.items():
        api = await s.api(ctx)
        for obj in objs:
            print(f"{ctx}: {_name(obj)} {await _apply(api, obj)}")
        if ctx in p.cluster_properties:
            prop = p.cluster_properties[ctx]
            print(f"{ctx}: {await _create_cluster_property(api, prop)}")


async def _create_cluster_property(api: ApiClient, prop: Obj) -> str:
    """Create the ClusterProperty; its CRD may be new (central mode applies the CRDs just
    before), so a 404 is retried for a while."""
    value = prop["spec"]["value"]
    path = _path(prop).rsplit("/", 1)[0]
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    await _call(api, "POST", path, body=prop)
                    return f"clusterproperty {CLUSTER_PROPERTY} created (cluster id {value})"
                except ApiException as e:
                    if e.status == 409:
                        return f"clusterproperty {CLUSTER_PROPERTY} unchanged (exists)"
                    if e.status != 404:
                        raise
                await asyncio.sleep(1)
    except TimeoutError:
        return (
            f"clusterproperty {CLUSTER_PROPERTY} NOT created: the ClusterProperty CRD is not "
            f"installed (kubectl apply -k crds/, then join again); the id is {value} meanwhile"
        )


async def _request_token(s: Session, need: TokenNeed, duration: timedelta) -> tuple[str, datetime]:
    api = await s.api(need.member)
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": int(duration.total_seconds())},
    }
    path = f"/api/v1/namespaces/{need.namespace}/serviceaccounts/{need.service_account}/token"
    answer = await _call(api, "POST", path, body=body)
    status = answer.get("status") or {}
    token = str(status.get("token") or "")
    if not token:
        raise JoinFailed(f"{need.member}: the TokenRequest API returned no token")
    stamp = str(status.get("expirationTimestamp") or "")
    expiry = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else token_expiry(token)
    if expiry is None:
        raise JoinFailed(f"{need.member}: the token has no expiry")
    return token, expiry


async def _write_secrets(
    s: Session,
    p: Plan,
    duration: timedelta,
    rotate_before: timedelta | None,
    *,
    rotate_only: bool,
) -> None:
    now = datetime.now(UTC)
    for sp in p.secrets:
        api = await s.api(sp.context)
        where = f"{sp.context}: secret {sp.namespace}/{SECRET}"
        current = await _get(api, f"/api/v1/namespaces/{sp.namespace}/secrets/{SECRET}")
        if current is None and rotate_only:
            raise JoinFailed(f"{where} not found: join without --rotate first")
        old = {
            k: base64.b64decode(v).decode(errors="replace")
            for k, v in ((current or {}).get("data") or {}).items()
        }
        have = existing_tokens(old.get("kubeconfig", ""))
        tokens: dict[TokenNeed, str] = {}
        notes: list[str] = []
        for m, need in sp.remotes:
            token = have.get((m.cluster_id, m.server, m.ca_data))
            if token is not None and reusable(token, need, now, rotate_before):
                tokens[need] = token
                continue
            tokens[need], expiry = await _request_token(s, need, duration)
            short = expiry - now < duration - timedelta(minutes=5)
            notes.append(
                f"new token of {need.namespace}/{need.service_account} in {need.member}, "
                f"expires {expiry:%Y-%m-%dT%H:%M:%SZ}"
                + (" (shortened by the API server)" if short else "")
            )
        desired = sp.data(tokens)
        if all(old.get(k) == v for k, v in desired.items()):
            left = _hours(rotate_before) if rotate_before else "a third of its lifetime"
            print(f"{where} unchanged (every token has more than {left} left)")
            continue
        verb = await _apply(api, sp.secret(tokens))
        names = [m.cluster_id for m, _ in sp.remotes]
        if sp.in_cluster is not None:
            names.insert(0, f"{sp.in_cluster.cluster_id} (in-cluster)")
        print(f"{where} {verb} (mode {sp.mode}, contexts {', '.join(names)})")
        for note in notes:
            print(f"{sp.context}:   {note}")


def _hours(d: timedelta) -> str:
    return f"{d.total_seconds() / 3600:g}h"
