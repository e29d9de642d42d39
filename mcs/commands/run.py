"""``mcs run``: the controller process (flags, members, health server, signals)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import socket

import structlog
from kubernetes_asyncio.client import ApiClient

import mcs
from mcs.commands import runflags
from mcs.core import durations, trust
from mcs.core.merge import MERGE_RULES
from mcs.core.namespaces import DEFAULT_EXCLUDED, NamespacePolicy, parse_namespace_list
from mcs.runtime import kubeapi, statemetrics
from mcs.runtime.cluster import Cluster, MemberConfig
from mcs.runtime.controller import Controller
from mcs.runtime.credentials import CredentialReloader
from mcs.runtime.health import DEFAULT_GRACE
from mcs.runtime.leader import LeaderElector, LeadershipLost
from mcs.runtime.members import (
    ClusterIds,
    ConfigError,
    add_member_arguments,
    check_remote_context,
    check_tls,
    member_contexts,
    parse_cluster_ids,
    provisional_id,
    resolve_cluster_id,
)
from mcs.runtime.observability import (
    MEMBER_RANGES_MISSING,
    HealthServer,
    configure_logging,
    loop_lag_measured,
)
from mcs.runtime.writer import MAX_IN_FLIGHT

log = structlog.get_logger(__name__)


def _positive_int(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _address(value: str) -> tuple[str, int] | None:
    """``host:port`` or ``:port`` (all interfaces); ``0`` or ``off`` disables the listener."""
    if value in ("0", "off", ""):
        return None
    host, _, port = value.rpartition(":")
    return (host or "0.0.0.0", int(port))


def add_run_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the controller")
    p.set_defaults(func=_run)
    add_member_arguments(p)
    p.add_argument(
        "--mode",
        type=runflags.mode,
        default=None,
        metavar="{central,per-cluster}",
        help="per-cluster: write only to the one member named by --local (every member "
        "runs its own instance); central: write to every member. Without it the mode is "
        "inferred from --local (none = central, one = per-cluster) with a warning: it "
        "will be required",
    )
    p.add_argument(
        "--local",
        default="",
        metavar="CONTEXT",
        help="the member context this instance writes to: required by --mode per-cluster, "
        "empty (or every member) for --mode central; without --mode, as before 0.2: none = "
        "every member, one = that member, several (comma-separated) = those",
    )
    p.add_argument("--log-format", choices=["json", "console"], default="json")
    p.add_argument(
        "--log-level",
        type=runflags.log_level,
        default="info",
        metavar="{" + ",".join(runflags.LOG_LEVELS) + "}",
        help="least severe level logged (default info)",
    )
    runflags.add_renamed_argument(
        p,
        "--metrics-bind-address",
        default=":8080",
        metavar="[HOST]:PORT",
        help="Prometheus /metrics (default :8080; 0 = off)",
    )
    runflags.add_renamed_argument(
        p,
        "--health-probe-bind-address",
        default=":8081",
        metavar="[HOST]:PORT",
        help="/healthz and /readyz (default :8081; 0 = off)",
    )
    p.add_argument("--workers", type=int, default=4, help="concurrent reconciles (default 4)")
    p.add_argument(
        "--max-writes-in-flight",
        type=_positive_int,
        default=MAX_IN_FLIGHT,
        help=f"writes sent at once to one member; more wait (default {MAX_IN_FLIGHT})",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="only write while holding a coordination.k8s.io Lease (for several replicas)",
    )
    runflags.add_renamed_argument(
        p,
        "--leader-elect-resource-name",
        default="mcs-controller",
        metavar="NAME",
        help="name of the Lease (default mcs-controller)",
    )
    runflags.add_renamed_argument(
        p,
        "--leader-elect-resource-namespace",
        default="mcs-system",
        metavar="NAMESPACE",
        help="namespace of the Lease (default mcs-system)",
    )
    p.add_argument(
        "--leader-elect-context",
        default="",
        help="context holding the Lease (default: the first local context)",
    )
    p.add_argument(
        "--leader-elect-lease-duration",
        type=durations.arg,
        default=15.0,
        metavar="DURATION",
        help="how long a standby waits after the leader's last renewal (default 15s)",
    )
    add_trust_arguments(p)
    p.add_argument(
        "--member-grace",
        type=durations.arg,
        default=DEFAULT_GRACE,
        metavar="DURATION",
        help="how long a member may be unreachable before its exports are withdrawn, and "
        f"how long start-up waits for a member (default {DEFAULT_GRACE:.0f}s)",
    )
    p.add_argument(
        "--credentials-reload-period",
        type=durations.arg,
        default=10.0,
        metavar="DURATION",
        help="how often the kubeconfig and its token/cert files are re-read (default 10s)",
    )
    p.add_argument(
        "--exclude-namespaces",
        default=None,
        metavar="NS[,NS...]",
        help="more namespaces that never take part in the clusterset, added to "
        f"{','.join(DEFAULT_EXCLUDED)} and the controller's own namespace "
        "($POD_NAMESPACE or --leader-elect-resource-namespace), which are always excluded",
    )
    p.add_argument(
        "--namespace-opt-in",
        action="store_true",
        help="only namespaces annotated clustermesh.cilium.io/global=true take part "
        '(default: every namespace not annotated "false"); recommended when tenants of '
        "same-named namespaces differ between members",
    )
    p.add_argument(
        "--resync-period",
        type=durations.arg,
        default=300.0,
        metavar="DURATION",
        help="time between full resyncs (default 5m)",
    )


def add_trust_arguments(p: argparse.ArgumentParser) -> None:
    """What a member may tell the others (``mcs.core.trust``), and TLS towards members."""
    p.add_argument(
        "--member-cidrs",
        action="append",
        default=[e for e in [os.environ.get("MCS_MEMBER_CIDRS", "")] if e.strip()],
        metavar="CONTEXT=CIDR[,CIDR]",
        help="address ranges a member's endpoints must lie in, by the member's kubeconfig "
        "context (or by a cluster id set with --cluster-id CONTEXT=ID; never by an id a "
        "member publishes itself); other endpoints are not imported. Once any member has "
        "ranges, a member without them offers no endpoints. Repeatable; one value may hold "
        "several entries separated by spaces or ';'. Default: $MCS_MEMBER_CIDRS; without "
        "any, members may use any address",
    )
    p.add_argument(
        "--source-slice-managers",
        default="*",
        metavar="PATTERNS",
        help="comma-separated endpointslice.kubernetes.io/managed-by patterns (fnmatch; '' "
        "= no label) of the EndpointSlices that are a Service's endpoints (default: *)",
    )
    p.add_argument(
        "--ignore-slice-managers",
        default=",".join(trust.DEFAULT_IGNORED_MANAGERS),
        metavar="PATTERNS",
        help="managed-by patterns never used as a source: controllers that import "
        f"endpoints of other clusters (default: {','.join(trust.DEFAULT_IGNORED_MANAGERS)})",
    )
    p.add_argument(
        "--exported-metadata-allow",
        default=None,
        metavar="PATTERNS",
        help="comma-separated fnmatch patterns; every key of a ServiceExport's "
        "exportedLabels and exportedAnnotations must match one, or the export is invalid "
        "(InvalidExportedMetadata) and not imported (default: any key outside "
        "kubernetes.io and k8s.io)",
    )
    p.add_argument(
        "--allow-insecure-skip-tls-verify",
        action="store_true",
        help="accept members whose kubeconfig sets insecure-skip-tls-verify (refused by default)",
    )


def endpoint_policy(args: argparse.Namespace) -> trust.EndpointPolicy:
    """The `trust.EndpointPolicy` of the flags, with ``--member-cidrs`` by the names as
    given (`bind_endpoint_policy` binds them to members); ``ConfigError`` for a bad
    --member-cidrs."""
    try:
        cidrs = trust.parse_member_cidrs(args.member_cidrs)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return trust.EndpointPolicy(
        cidrs=cidrs,
        managers=tuple(p.strip() for p in args.source_slice_managers.split(",")),
        ignored_managers=tuple(
            p.strip() for p in args.ignore_slice_managers.split(",") if p.strip()
        ),
    )


def bind_endpoint_policy(
    policy: trust.EndpointPolicy, contexts: list[str], cluster_ids: dict[str, str]
) -> trust.EndpointPolicy:
    """``policy`` with its ranges bound to member contexts (`trust.bind_member_cidrs`;
    ``cluster_ids`` are the ``--cluster-id`` overrides): ``ConfigError`` for a name that
    is no member. Every member without ranges is logged and counted once ranges are in use."""
    if not policy.cidrs:
        return policy
    try:
        bound = trust.bind_member_cidrs(policy.cidrs, contexts, cluster_ids)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    for ctx in contexts:
        MEMBER_RANGES_MISSING.labels(context=ctx).set(0 if ctx in bound else 1)
        if ctx not in bound:
            log.warning(
                "member has no --member-cidrs entry while ranges are in use: "
                "it offers no endpoints",
                context=ctx,
            )
    return dataclasses.replace(policy, cidrs={}, member_cidrs=bound)


CLUSTER_ID_TIMEOUT = 10.0
"""Seconds start-up waits for a member's ClusterProperty before going on without it."""


async def build_members(
    args: argparse.Namespace, ids: ClusterIds | None = None
) -> tuple[list[MemberConfig], set[str]]:
    """The members, and the contexts whose cluster id is pending: those start with a
    provisional id (`provisional_id`) and join once their id has been read and is theirs
    alone (``mcs.runtime.health``, with the ``resolve_id`` of `run`). An id is pending
    when it could not be read in time (``CLUSTER_ID_TIMEOUT``) or when two members claim
    it (``ids``, `ClusterIds`: both are left out, loudly, until it is unique)."""
    ids = ids if ids is not None else ClusterIds()
    contexts = member_contexts(args.kubeconfig, args.contexts)
    named_local = set(c for c in args.local.split(",") if c)
    local = topology(args).local
    overrides = parse_cluster_ids(args.cluster_id)
    apis: dict[str, ApiClient] = {}
    try:
        for ctx in contexts:
            if ctx not in named_local:
                check_remote_context(args.kubeconfig, ctx)  # before its files are read
            apis[ctx] = await kubeapi.new_client(args.kubeconfig, ctx)
            check_tls(apis[ctx].configuration, ctx, args.allow_insecure_skip_tls_verify)

        async def resolve(ctx: str, api: ApiClient) -> str | None:
            try:
                async with asyncio.timeout(CLUSTER_ID_TIMEOUT):
                    return await resolve_cluster_id(api, ctx, overrides)
            except ConfigError:
                raise
            except Exception as e:
                log.warning(
                    "cannot read the member's cluster id; starting without it",
                    context=ctx,
                    error=str(e) or type(e).__name__,
                )
                return None

        read = await asyncio.gather(*(resolve(ctx, api) for ctx, api in apis.items()))
        found = {ctx: cid for ctx, cid in zip(apis, read, strict=True) if cid is not None}
        for ctx, cid in found.items():
            ids.record(ctx, cid)
        for ctx in list(found):
            try:
                ids.check(ctx)
            except ConfigError:
                if ctx in overrides and all(o in overrides for o in ids.sharing(ctx)):
                    raise  # the operator's own --cluster-id values clash: fix the flags
                del found[ctx]  # left out until it is unique (retried as pending)
        pending = set(apis) - set(found)
        taken = set(found.values())
        chosen: dict[str, str] = {}
        for ctx in apis:
            if ctx not in found:
                chosen[ctx] = provisional_id(ctx, taken)
                taken.add(chosen[ctx])
        members = [
            MemberConfig(
                context=ctx,
                cluster_id=found.get(ctx) or chosen[ctx],
                api=api,
                local=ctx in local,
            )
            for ctx, api in apis.items()
        ]
        return members, pending
    except BaseException:
        for api in apis.values():
            await api.close()
        raise


def topology(args: argparse.Namespace) -> runflags.Topology:
    """The mode and the local members of ``--mode`` and ``--local`` (``ConfigError`` when
    they contradict each other)."""
    return runflags.resolve_topology(
        args.mode, args.local, member_contexts(args.kubeconfig, args.contexts)
    )


async def run(args: argparse.Namespace) -> int:
    for old, new in runflags.deprecation_warnings(args):
        log.warning(
            "deprecated flag: use its new name (the old one is removed after 0.2)",
            flag=old,
            replacement=new,
        )
    mode = topology(args)
    if mode.inferred:
        log.warning(
            "--mode not given: inferred from --local; it will be required, so pass the "
            "inferred mode explicitly to keep this behaviour",
            mode=mode.mode,
            local=sorted(mode.local),
        )
    overrides = parse_cluster_ids(args.cluster_id)
    policy = bind_endpoint_policy(
        endpoint_policy(args), member_contexts(args.kubeconfig, args.contexts), overrides
    )
    namespaces = namespace_policy(args)
    ids = ClusterIds()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    controller: Controller | None = None

    def ready() -> str | None:
        return controller.ready() if controller is not None else "starting: reading cluster ids"

    members: list[MemberConfig] = []
    try:
        # /healthz is served from the start: an unreachable member must not look like a
        # dead process (and /readyz names what is missing).
        async with (
            HealthServer(
                ready=ready,
                health_addr=_address(args.health_probe_bind_address),
                metrics_addr=_address(args.metrics_bind_address),
            ),
            loop_lag_measured(),
        ):
            members, pending = await build_members(args, ids)

            async def resolve_id(m: Cluster) -> str:
                # refused (ConfigError: the member stays out) while another claims it
                return ids.claim(m.context, await resolve_cluster_id(m.api, m.context, overrides))

            elector = _elector(args, members) if args.leader_elect else None
            controller = Controller(
                members,
                workers=args.workers,
                resync_period=args.resync_period,
                endpoint_policy=policy,
                namespace_policy=namespaces,
                exported_metadata=exported_metadata(args),
                member_grace=args.member_grace,
                resolve_id=resolve_id,
                pending_ids=pending,
                drain_timeout=elector.renew_deadline / 2 if elector else 10.0,
                max_writes_in_flight=args.max_writes_in_flight,
            )
            log.info(
                "starting",
                version=mcs.__version__,
                merge_rules=MERGE_RULES,
                members={m.context: m.cluster_id for m in members},
                mode=mode.mode,
                local=[m.cluster_id for m in members if m.local],
                cluster_id_pending=sorted(pending),
                member_grace=args.member_grace,
            )
            log.info(
                "trust policy",
                endpoints=policy.describe(),
                member_ranges={
                    m.context: [str(n) for n in policy.member_cidrs.get(m.context, ())]
                    if policy.ranges_in_use
                    else "any"
                    for m in members
                },
                namespaces=namespaces.describe(),
                exported_metadata=exported_metadata(args) or "any key",
                remote_contexts=sorted(remote_contexts(args)),
            )
            reloader = CredentialReloader(
                args.kubeconfig,
                {m.context: m.api for m in members},
                period=args.credentials_reload_period,
                allow_insecure=args.allow_insecure_skip_tls_verify,
                remote=remote_contexts(args),
            )
            code = 0
            try:
                async with reloader, statemetrics.registered(controller, elector):
                    await controller.run(stop, elector)
            except* LeadershipLost as lost:
                log.error(
                    "leadership lost; exiting so that a restart starts as a standby",
                    error=str(lost.exceptions[0]),
                )
                code = 1
        log.info("stopped")
        return code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for m in members:
            await m.api.close()


def remote_contexts(args: argparse.Namespace) -> set[str]:
    """The contexts checked as remote members' (`check_remote_context`): every member
    context not named by ``--local`` (in central mode, every one)."""
    named_local = {c for c in args.local.split(",") if c}
    return set(member_contexts(args.kubeconfig, args.contexts)) - named_local


def exported_metadata(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The patterns of ``--exported-metadata-allow`` (None: any key; "" allows none)."""
    if args.exported_metadata_allow is None:
        return None
    return tuple(p.strip() for p in args.exported_metadata_allow.split(",") if p.strip())


def namespace_policy(args: argparse.Namespace) -> NamespacePolicy:
    """The namespace policy of ``--exclude-namespaces`` and ``--namespace-opt-in``."""
    exclude = args.exclude_namespaces
    own = os.environ.get("POD_NAMESPACE") or args.leader_elect_resource_namespace
    return NamespacePolicy.build(
        None if exclude is None else parse_namespace_list(exclude),
        own,
        opt_in=args.namespace_opt_in,
    )


def _elector(args: argparse.Namespace, members: list[MemberConfig]) -> LeaderElector:
    local = [m for m in members if m.local]
    holder = next((m for m in members if m.context == args.leader_elect_context), None)
    if args.leader_elect_context and holder is None:
        raise ConfigError(f"--leader-elect-context {args.leader_elect_context!r} is not a member")
    duration = args.leader_elect_lease_duration
    try:
        return LeaderElector(
            (holder or local[0]).api,
            namespace=args.leader_elect_resource_namespace,
            name=args.leader_elect_resource_name,
            identity=f"{socket.gethostname()}_{os.getpid()}",
            lease_duration=duration,
            renew_deadline=duration * 2 / 3,
            retry_period=duration / 7.5,
        )
    except ValueError as e:
        raise ConfigError(f"--leader-elect-lease-duration {duration}: {e}") from None


def _run(args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    try:
        return asyncio.run(run(args))
    except ConfigError as e:
        log.error("invalid configuration", error=str(e))
        return 2
