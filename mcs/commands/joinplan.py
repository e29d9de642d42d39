"""What ``kubectl mcs join`` writes, as pure functions: no I/O but reading the shipped
manifests, no clock beyond the ``now`` passed in.

* ``kustomize``: the objects of a directory of ``manifests/``, read the way ``kubectl
  kustomize`` reads them (only the fields those kustomizations use: ``resources``,
  ``labels`` with ``pairs``, ``namespace``; any other field is refused, so a future
  kustomization cannot be half-understood).
* ``plan``: per context, the objects to apply and the member Secret to write, for one
  mode; tokens are named by ``TokenNeed`` and filled in by the caller (or shown as a
  placeholder by ``--dry-run``).
* ``token_expiry``, ``parse_duration``: a TokenRequest token's ``exp`` claim, Go durations.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml

from mcs.core import durations

Doc = dict[str, Any]  # a mutable manifest object

Mode = Literal["central", "per-cluster"]
MODES: tuple[Mode, ...] = ("per-cluster", "central")
SECRET = "mcs-remote-kubeconfigs"
FIELD_MANAGER = "kubectl-mcs-join"
READER = "mcs-remote-reader"
WRITER = "mcs-central-writer"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
IN_CLUSTER_SERVER = "https://kubernetes.default.svc"
CLUSTER_PROPERTY = "cluster.clusterset.k8s.io"
# the kustomization each mode applies in every member (relative to manifests/)
MEMBER_PART: dict[Mode, str] = {"per-cluster": "remote", "central": "central-member"}
SERVICE_ACCOUNT: dict[Mode, str] = {"per-cluster": READER, "central": WRITER}

_CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "ClusterProperty",
}
_KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "labels", "namespace"}


class PlanError(ValueError):
    """The inputs cannot make a join (a message for the user)."""


# --------------------------------------------------------------------------- manifests


def kustomize(directory: Path) -> list[Doc]:
    """The objects ``kubectl kustomize directory`` prints, for the kustomizations of
    ``manifests/`` (see the module)."""
    path = directory / "kustomization.yaml"
    try:
        k = yaml.safe_load(path.read_text()) or {}
    except OSError as e:
        raise PlanError(
            f"cannot read {path}: {e.strerror} (--manifests names the manifests/ directory "
            "of the mcs release you run)"
        ) from None
    unknown = set(k) - _KUSTOMIZATION_FIELDS
    if unknown:
        raise PlanError(f"{path}: kubectl mcs join does not understand {sorted(unknown)}")
    objs: list[Doc] = []
    for res in k.get("resources") or []:
        target = directory / res
        if target.is_dir():
            objs += kustomize(target)
        else:
            objs += [d for d in yaml.safe_load_all(target.read_text()) if d]
    labels: dict[str, str] = {}
    for entry in k.get("labels") or []:
        if set(entry) - {"pairs"}:
            raise PlanError(f"{path}: only labels.pairs is understood")
        labels.update(entry["pairs"])
    namespace = k.get("namespace")
    for o in objs:
        meta = o.setdefault("metadata", {})
        if labels:
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
        if namespace and o.get("kind") not in _CLUSTER_SCOPED:
            meta["namespace"] = namespace
    return objs


# --------------------------------------------------------------------------- members


@dataclass(frozen=True)
class Member:
    """A cluster to join, as the user's kubeconfig and flags describe it."""

    context: str  # the user's kubeconfig context
    cluster_id: str  # its id in the clusterset: the context names of the written kubeconfigs
    server: str  # how the controllers reach its API server
    ca_data: str  # base64 PEM ('' = the system's CAs)
    has_cluster_property: bool = True  # False: join creates it (value cluster_id)


@dataclass(frozen=True)
class TokenNeed:
    """A token of ``service_account`` (namespace ``namespace``) in ``member``, for the
    kubeconfig stored in ``holder``'s Secret."""

    member: str  # context
    namespace: str
    service_account: str
    holder: str  # context


@dataclass
class SecretPlan:
    """The member Secret ``namespace/SECRET`` in ``context``: its kubeconfig's contexts
    (one per member, by id; a token per remote context) and its other keys."""

    context: str
    namespace: str
    mode: Mode
    local_context: str  # '' in central mode
    in_cluster: Member | None  # the member the controller runs in (per-cluster mode)
    remotes: list[tuple[Member, TokenNeed]] = field(default_factory=list)

    def kubeconfig(self, tokens: Mapping[TokenNeed, str]) -> str:
        """The kubeconfig text; the same inputs give the same bytes (idempotent joins)."""
        clusters: list[Doc] = []
        users: list[Doc] = []
        contexts: list[Doc] = []

        def add(name: str, cluster: Doc, user: Doc) -> None:
            clusters.append({"name": name, "cluster": cluster})
            users.append({"name": name, "user": user})
            contexts.append({"name": name, "context": {"cluster": name, "user": name}})

        if self.in_cluster is not None:
            add(
                self.in_cluster.cluster_id,
                {"server": IN_CLUSTER_SERVER, "certificate-authority": f"{SA_DIR}/ca.crt"},
                {"tokenFile": f"{SA_DIR}/token"},
            )
        for m, need in self.remotes:
            cluster: Doc = {"server": m.server}
            if m.ca_data:
                cluster["certificate-authority-data"] = m.ca_data
            add(m.cluster_id, cluster, {"token": tokens[need]})
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": clusters,
            "users": users,
            "contexts": contexts,
            "current-context": contexts[0]["name"],
        }
        return str(yaml.safe_dump(config, sort_keys=False))

    def data(self, tokens: Mapping[TokenNeed, str]) -> dict[str, str]:
        return {
            "kubeconfig": self.kubeconfig(tokens),
            "local-context": self.local_context,
            "mode": self.mode,
        }

    def secret(self, tokens: Mapping[TokenNeed, str], *, encoded: bool = True) -> Doc:
        """The Secret to apply (``data``), or to show (``stringData``, not encoded)."""
        values = self.data(tokens)
        body: Doc = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": SECRET,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/part-of": "mcs"},
            },
            "type": "Opaque",
        }
        if encoded:
            body["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        else:
            body["stringData"] = values
        return body


@dataclass
class Plan:
    """Everything a join writes, per context, in order."""

    mode: Mode
    objects: dict[str, list[Doc]]  # context -> objects to apply (server-side)
    cluster_properties: dict[str, Doc]  # context -> the ClusterProperty to create if missing
    secrets: list[SecretPlan]

    def token_needs(self) -> list[TokenNeed]:
        return [need for s in self.secrets for _, need in s.remotes]


def cluster_property(cluster_id: str) -> Doc:
    return {
        "apiVersion": "about.k8s.io/v1beta1",
        "kind": "ClusterProperty",
        "metadata": {"name": CLUSTER_PROPERTY},
        "spec": {"value": cluster_id},
    }


def plan(
    members: Sequence[Member],
    mode: Mode,
    manifests: Path,
    namespace: str,
    controller: Member | None = None,
) -> Plan:
    """What joining ``members`` in ``mode`` writes. Per-cluster mode: in every member the
    reader identity (``manifests/remote/``) and a Secret with itself in-cluster and every
    other member through that member's reader. Central mode: in every member the writer
    identity (``manifests/central-member/``), and in ``controller`` (where the controller
    runs, a member or not) one Secret with every member through its writer."""
    if len(members) < 2:
        raise PlanError("join needs two or more contexts")
    for attr, what in (("context", "context"), ("cluster_id", "cluster id")):
        seen = [getattr(m, attr) for m in members]
        dup = sorted({v for v in seen if seen.count(v) > 1})
        if dup:
            raise PlanError(f"the same {what} twice: {', '.join(dup)}")
    if mode == "central" and controller is None:
        raise PlanError("central mode needs --controller-context (where the controller runs)")
    if mode == "per-cluster" and controller is not None:
        raise PlanError("--controller-context is for central mode only")
    docs = kustomize(manifests / MEMBER_PART[mode])
    sa = SERVICE_ACCOUNT[mode]
    sa_ns = next(
        (
            d["metadata"]["namespace"]
            for d in docs
            if d.get("kind") == "ServiceAccount" and d["metadata"]["name"] == sa
        ),
        None,
    )
    if sa_ns is None:
        raise PlanError(f"{manifests / MEMBER_PART[mode]} has no ServiceAccount {sa}")
    objects = {m.context: [_copy(d) for d in docs] for m in members}
    props = {
        m.context: cluster_property(m.cluster_id) for m in members if not m.has_cluster_property
    }
    secrets: list[SecretPlan] = []
    if mode == "per-cluster":
        for m in members:
            s = SecretPlan(m.context, namespace, mode, m.cluster_id, in_cluster=m)
            s.remotes = [(p, TokenNeed(p.context, sa_ns, sa, m.context)) for p in members if p != m]
            secrets.append(s)
    else:
        assert controller is not None
        s = SecretPlan(controller.context, namespace, mode, "", in_cluster=None)
        s.remotes = [(p, TokenNeed(p.context, sa_ns, sa, controller.context)) for p in members]
        secrets.append(s)
        if controller.context not in objects:  # a hub that is not a member: its namespace
            objects[controller.context] = [
                _copy(d) for d in docs if d.get("kind") == "Namespace"
            ] or [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}]
    for s in secrets:  # the Secret's namespace, when it is not the manifests' own
        objs = objects[s.context]
        if not any(o["kind"] == "Namespace" and o["metadata"]["name"] == namespace for o in objs):
            objs.insert(
                0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
            )
    return Plan(mode, objects, props, secrets)


def _copy(d: Doc) -> Doc:
    out: Doc = json.loads(json.dumps(d))
    return out


def render_dry_run(p: Plan, token_duration: timedelta) -> str:
    """``--dry-run``: every object per context as YAML, tokens as placeholders."""
    hours = f"{token_duration.total_seconds() / 3600:g}h"
    placeholders = {
        need: f"<TokenRequest token of {need.namespace}/{need.service_account} "
        f"in context {need.member}, {hours}>"
        for need in p.token_needs()
    }
    out: list[str] = []
    contexts = list(p.objects)
    for ctx in contexts:
        docs = list(p.objects[ctx])
        if ctx in p.cluster_properties:
            docs.append(p.cluster_properties[ctx])
        docs += [s.secret(placeholders, encoded=False) for s in p.secrets if s.context == ctx]
        out.append(f"# context {ctx}: {len(docs)} objects (mode {p.mode})\n")
        out.append(yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True))
    return "".join(out)


# --------------------------------------------------------------------------- tokens


def parse_duration(text: str) -> timedelta:
    """A Go duration (``720h``, ``1h30m``, ``90s``) with its unit, as kubectl's
    ``--duration`` takes it (a bare number is refused: hours or seconds?)."""
    return timedelta(seconds=durations.parse(text, bare_seconds=False))


def token_claims(token: str) -> dict[str, Any] | None:
    """The (unverified) claims of a JWT, or None when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def token_expiry(token: str) -> datetime | None:
    """When a token expires (its ``exp`` claim), or None when it has none."""
    exp = (token_claims(token) or {}).get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None
    return datetime.fromtimestamp(exp, UTC)


def token_subject(token: str) -> str | None:
    sub = (token_claims(token) or {}).get("sub")
    return sub if isinstance(sub, str) else None


def token_lifetime(token: str) -> timedelta | None:
    """How long a token was issued for (``exp`` minus ``iat``), or None."""
    claims = token_claims(token) or {}
    exp, iat = claims.get("exp"), claims.get("iat")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (exp, iat)):
        return None
    return timedelta(seconds=float(exp) - float(iat))  # type: ignore[arg-type]


def reusable(
    token: str | None, need: TokenNeed, now: datetime, rotate_before: timedelta | None
) -> bool:
    """Whether a token already in a Secret can stay: one of the right ServiceAccount,
    with more than ``rotate_before`` of its life left (None: more than a third of the
    life it was issued with, whatever the API server granted)."""
    if not token:
        return False
    expiry = token_expiry(token)
    subject = f"system:serviceaccount:{need.namespace}:{need.service_account}"
    if expiry is None or token_subject(token) != subject:
        return False
    if rotate_before is None:
        lifetime = token_lifetime(token)
        if lifetime is None:
            return False
        rotate_before = lifetime / 3
    return expiry - now > rotate_before


def existing_tokens(kubeconfig: str) -> dict[tuple[str, str, str], str]:
    """The tokens of a kubeconfig a join wrote, by (context, server, CA data): a token is
    kept only for the member, address and CA it was written for."""
    try:
        cfg = yaml.safe_load(kubeconfig) or {}
    except yaml.YAMLError:
        return {}
    if not isinstance(cfg, dict):
        return {}
    clusters = {c.get("name"): c.get("cluster") or {} for c in cfg.get("clusters") or []}
    users = {u.get("name"): u.get("user") or {} for u in cfg.get("users") or []}
    out = {}
    for c in cfg.get("contexts") or []:
        ctx = c.get("context") or {}
        cluster, user = clusters.get(ctx.get("cluster"), {}), users.get(ctx.get("user"), {})
        if user.get("token"):
            key = (
                str(c.get("name")),
                str(cluster.get("server", "")),
                str(cluster.get("certificate-authority-data", "")),
            )
            out[key] = str(user["token"])
    return out
