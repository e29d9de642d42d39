"""Find the controllers of a clusterset and what they are configured with (I/O), and
decide who the members are (pure).

An installation is the controller's Deployment (label
``app.kubernetes.io/name=mcs-controller``) in the controller namespace (default
``mcs-system``) of a context. Its Secret (the Deployment's ``kubeconfigs`` volume,
default ``mcs-remote-kubeconfigs``) holds what the controller runs with:

* ``kubeconfig``: one context per member, as the controller reaches it;
* ``local-context``: the member it writes to (empty: central mode);
* ``mode``: ``central`` or ``per-cluster`` (when absent: from ``local-context``).

Each of its Pods is read through the API server's pod proxy
(``/api/v1/namespaces/NS/pods/POD:PORT/proxy/...``): ``/readyz`` (health port) and
``/metrics`` (metrics port), whose ``mcs_cluster_connected{cluster}`` and
``mcs_member_withdrawn{cluster}`` are the controller's own view of each member. The
Lease (``--leader-elect-resource-name``, formerly ``--leader-elect-lease-name``) says
which Pod leads.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from mcs.core.api import Obj
from mcs.runtime.kubeapi import request, request_json
from mcs.runtime.members import IN_CLUSTER_SERVERS

CONTROLLER_NAMESPACE = "mcs-system"
CONTROLLER_LABEL = "app.kubernetes.io/name=mcs-controller"
SECRET = "mcs-remote-kubeconfigs"
LEASE = "mcs-controller"
HEALTH_PORT, METRICS_PORT = 8081, 8080


@dataclass(frozen=True)
class PodView:
    """One controller Pod and what it says: ``ready``/``reason`` from ``/readyz``
    (``ready=None``: not read, ``reason`` says why), and per member cluster id
    ``connected`` (its watches) and ``withdrawn`` (out of the merge), from ``/metrics``."""

    name: str
    phase: str
    leader: bool
    ready: bool | None
    reason: str
    connected: Mapping[str, bool] = field(default_factory=dict)
    withdrawn: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class SecretMember:
    """A member as the controller's Secret names it: its context there (the default
    cluster id) and the server the controller reaches it at."""

    context: str
    server: str


@dataclass(frozen=True)
class Installation:
    """A controller found in ``context`` (the laptop's context it was found through)."""

    context: str
    namespace: str
    deployment: str
    mode: str  # central | per-cluster | "" (unknown)
    local_context: str
    members: tuple[SecretMember, ...]
    pods: tuple[PodView, ...] = ()
    error: str | None = None  # why the Secret could not be used (then no members)


def _arg(args: Sequence[str], *names: str) -> str | None:
    """The value of the first of ``names`` (``--flag=value`` or ``--flag value``)."""
    for i, a in enumerate(args):
        for n in names:
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
            if a == n and i + 1 < len(args):
                return args[i + 1]
    return None


def _decode(data: Mapping[str, Any], key: str) -> str | None:
    raw = data.get(key)
    if raw is None:
        return None
    try:
        return base64.b64decode(str(raw)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def parse_secret(secret: Obj) -> tuple[str, str, tuple[SecretMember, ...], str | None]:
    """``(mode, local_context, members, error)`` from the controller's Secret. Pure.

    ``mode`` is the key ``mode``; without it, ``per-cluster`` when ``local-context``
    names a context, else ``central``."""
    data = secret.get("data") or {}
    local = (_decode(data, "local-context") or "").strip()
    mode = (_decode(data, "mode") or "").strip() or ("per-cluster" if local else "central")
    text = _decode(data, "kubeconfig")
    if text is None:
        return mode, local, (), "the Secret has no key kubeconfig"
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        return mode, local, (), f"its kubeconfig cannot be read: {e}"
    if not isinstance(doc, Mapping):
        return mode, local, (), "its kubeconfig is not a kubeconfig"
    servers = {
        str(c.get("name")): str((c.get("cluster") or {}).get("server") or "")
        for c in doc.get("clusters") or []
        if isinstance(c, Mapping)
    }
    members = tuple(
        SecretMember(str(c["name"]), servers.get(str((c.get("context") or {}).get("cluster")), ""))
        for c in doc.get("contexts") or []
        if isinstance(c, Mapping) and c.get("name")
    )
    return mode, local, members, None


def parse_metrics(text: str) -> tuple[dict[str, bool], dict[str, bool]]:
    """``(connected, withdrawn)`` by cluster id from a controller's ``/metrics``. Pure."""
    connected: dict[str, bool] = {}
    withdrawn: dict[str, bool] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                cluster = s.labels.get("cluster")
                if cluster is None:
                    continue
                if s.name == "mcs_cluster_connected":
                    connected[cluster] = s.value == 1
                elif s.name == "mcs_member_withdrawn":
                    withdrawn[cluster] = s.value == 1
    except ValueError:
        pass  # a page that is not Prometheus text: no view
    return connected, withdrawn


# --------------------------------------------------------------------------- reading (I/O)


async def find(
    api: ApiClient, context: str, namespace: str, time_limit: float
) -> list[Installation]:
    """The controllers in ``namespace`` of ``context`` (none when there is no such
    Deployment, or it cannot be listed). Raises ``TimeoutError`` past ``time_limit``."""
    async with asyncio.timeout(time_limit):
        try:
            page = await request_json(
                api,
                "GET",
                f"/apis/apps/v1/namespaces/{namespace}/deployments",
                query={"labelSelector": CONTROLLER_LABEL},
                time_limit=time_limit,
            )
        except ApiException:
            return []
        return list(
            await asyncio.gather(
                *(_installation(api, context, d, time_limit) for d in page.get("items") or [])
            )
        )


async def _installation(
    api: ApiClient, context: str, deployment: Obj, time_limit: float
) -> Installation:
    meta = deployment.get("metadata") or {}
    ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    pod_spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    container: Mapping[str, Any] = next(iter(pod_spec.get("containers") or []), {})
    args = [str(a) for a in container.get("args") or []]
    secret_name = next(
        (
            str(v["secret"].get("secretName"))
            for v in pod_spec.get("volumes") or []
            if isinstance(v, Mapping) and v.get("secret")
        ),
        SECRET,
    )
    try:
        secret = await request_json(
            api, "GET", f"/api/v1/namespaces/{ns}/secrets/{secret_name}", time_limit=time_limit
        )
        mode, local, members, error = parse_secret(secret)
    except ApiException as e:
        mode, local, members = "", "", ()
        error = f"cannot read Secret {ns}/{secret_name}: HTTP {e.status}: {e.reason}"
    flag_mode = _arg(args, "--mode")
    if flag_mode and not flag_mode.startswith("$("):
        mode = flag_mode
    pods = await _pods(api, deployment, args, container, time_limit)
    return Installation(context, ns, name, mode, local, members, pods, error)


async def _pods(
    api: ApiClient,
    deployment: Obj,
    args: Sequence[str],
    container: Mapping[str, Any],
    time_limit: float,
) -> tuple[PodView, ...]:
    meta = deployment.get("metadata") or {}
    ns = str(meta.get("namespace") or "")
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or CONTROLLER_LABEL
    try:
        page = await request_json(
            api,
            "GET",
            f"/api/v1/namespaces/{ns}/pods",
            query={"labelSelector": selector},
            time_limit=time_limit,
        )
    except ApiException:
        return ()
    lease_name = _arg(args, "--leader-elect-resource-name", "--leader-elect-lease-name") or LEASE
    lease_ns = _arg(args, "--leader-elect-resource-namespace", "--leader-elect-namespace")
    if not lease_ns or lease_ns.startswith("$("):
        lease_ns = ns
    holder = ""
    try:
        lease = await request_json(
            api,
            "GET",
            f"/apis/coordination.k8s.io/v1/namespaces/{lease_ns}/leases/{lease_name}",
            time_limit=time_limit,
        )
        holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    except ApiException:
        pass
    ports = {
        str(p.get("name")): int(p["containerPort"])
        for p in container.get("ports") or []
        if isinstance(p, Mapping) and p.get("containerPort")
    }
    health, metrics = ports.get("health", HEALTH_PORT), ports.get("metrics", METRICS_PORT)
    return tuple(
        await asyncio.gather(
            *(
                _pod(api, ns, p, holder, health, metrics, time_limit)
                for p in sorted(page.get("items") or [], key=lambda o: str(o["metadata"]["name"]))
            )
        )
    )


async def _pod(
    api: ApiClient, ns: str, pod: Obj, holder: str, health: int, metrics: int, time_limit: float
) -> PodView:
    name = str(pod["metadata"]["name"])
    phase = str((pod.get("status") or {}).get("phase") or "Unknown")
    leader = bool(holder) and (holder == name or holder.startswith(name + "_"))
    if phase != "Running":
        return PodView(name, phase, leader, None, f"pod is {phase}")
    base = f"/api/v1/namespaces/{ns}/pods/{name}"
    try:
        status, text = await request(
            api, "GET", f"{base}:{health}/proxy/readyz", accept="*/*", time_limit=time_limit
        )
    except (TimeoutError, OSError) as e:
        return PodView(
            name, phase, leader, None, f"/readyz through the API server: {e or 'timed out'}"
        )
    text = text.strip()
    if status == 200:
        ready, reason = True, text or "ok"
    elif status == 503:
        ready, reason = False, text.removeprefix("not ready: ")
    else:
        return PodView(name, phase, leader, None, f"/readyz through the API server: HTTP {status}")
    connected: dict[str, bool] = {}
    withdrawn: dict[str, bool] = {}
    try:
        status, text = await request(
            api,
            "GET",
            f"{base}:{metrics}/proxy/metrics",
            accept="text/plain",
            time_limit=time_limit,
        )
        if status == 200:
            connected, withdrawn = parse_metrics(text)
    except (TimeoutError, OSError):
        pass  # /readyz answered; the per-member view stays unknown
    return PodView(name, phase, leader, ready, reason, connected, withdrawn)


# --------------------------------------------------------------------------- membership (pure)


@dataclass(frozen=True)
class Member:
    """A member to report: the laptop's context that reaches it (None: none does) and
    the id it has when its ClusterProperty names none (the controller's context name)."""

    name: str  # the controller's context name for it
    context: str | None
    server: str


def members_of(
    installations: Sequence[Installation],
    laptop: Mapping[str, str],
) -> list[Member]:
    """The members the controllers are configured with, each matched to a context of
    the laptop's kubeconfig (``laptop``: context -> server URL): the context of the same
    name, else one with the same server, else (the in-cluster context) the context
    the controller was found through. Members in the order the Secrets name them,
    each once. Pure."""
    out: list[Member] = []
    seen: set[str] = set()
    by_server: dict[str, str] = {}
    for name, server in laptop.items():
        by_server.setdefault(server.rstrip("/"), name)
    for inst in installations:
        for m in inst.members:
            if m.context in seen:
                continue
            ctx: str | None
            seen.add(m.context)
            if m.context in laptop:
                ctx = m.context
            elif m.server.rstrip("/") in by_server:
                ctx = by_server[m.server.rstrip("/")]
            elif m.server.rstrip("/") in IN_CLUSTER_SERVERS or m.server in IN_CLUSTER_SERVERS:
                ctx = inst.context
            else:
                ctx = None
            out.append(Member(m.context, ctx, m.server))
    return out
