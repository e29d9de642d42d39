"""Each member as the controller sees it: connected with the credentials of the
controller's Secret (not the user's), refused where the controller would refuse the
context, and asked for what the controller reads (ServiceExports).

A member at the in-cluster address (``https://kubernetes.default.svc``: the controller's
own cluster) cannot be reached from here with the Pod's files; it is checked through the
user's connection to that cluster instead, and says so."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from mcs.core.api import GROUP
from mcs.runtime import kubeapi
from mcs.runtime.members import REMOTE_USER_FIELDS_REFUSED, ConfigError, check_remote_context
from mcs.status.diagnose.findings import Finding, ok, problem, unknown
from mcs.status.diagnose.kube import describe_error
from mcs.status.diagnose.members import ControllerMembers, Member

CHECK = "member"
PROBE = f"/apis/{GROUP}/v1beta1/serviceexports"


@dataclass
class Reached:
    """A member's client (None when it could not be made) and the verdict on it."""

    member: Member
    finding: Finding
    api: ApiClient | None = None
    own: bool = False  # the api is the user's connection, not one with the Secret's credentials


def decide_error(member: Member, e: BaseException, *, as_user: str = "") -> Finding:
    """The verdict on a failed probe of ``member``."""
    subject = f"{CHECK}/{member.context}"
    context = member.context
    if isinstance(e, ApiException) and e.status == 401:
        return problem(
            CHECK,
            subject,
            f"{member.server} rejects the controller's credentials (401 Unauthorized: expired "
            "or revoked token, or a certificate it does not trust)",
            f"hack/make-remote-kubeconfig.sh {context} in that member, then replace the "
            "context in the Secret's key kubeconfig",
        )
    if isinstance(e, ApiException) and e.status == 403:
        return problem(
            CHECK,
            subject,
            f"the controller's credentials{as_user} may not list serviceexports there "
            f"(403 Forbidden)",
            "kubectl apply -k manifests/remote/ in that member (ClusterRole "
            "mcs-controller-remote bound to mcs-remote-reader)",
        )
    if isinstance(e, ApiException) and e.status == 404:
        return problem(
            CHECK,
            subject,
            "the MCS CRDs are not installed there (404 for serviceexports)",
            "kubectl apply -k crds/ in that member",
        )
    if isinstance(e, ApiException):
        return problem(
            CHECK,
            subject,
            f"{member.server} answers {describe_error(e)}",
            f"look at that member's API server (kubectl --context {context} get --raw /readyz)",
        )
    return problem(
        CHECK,
        subject,
        f"cannot reach {member.server}: {describe_error(e)}",
        "make the API server reachable from the controller's cluster (is it running? "
        "network, firewall, DNS, the server address in the Secret's kubeconfig); the "
        "controller reconnects by itself",
    )


def refusal(members: ControllerMembers, member: Member, kubeconfig: Path) -> Finding | None:
    """Why the controller would refuse this context, or None. Contexts it writes to are
    its own (its ServiceAccount); every other context comes from another member's admin
    and is checked as ``mcs run`` checks it. A context that would run a program here is
    never loaded."""
    subject = f"{CHECK}/{member.context}"
    remote = members.mode == "per-cluster" and member.context != members.local_context
    if remote:
        try:
            check_remote_context(str(kubeconfig), member.context)
        except ConfigError as e:
            return problem(
                CHECK,
                subject,
                f"the controller refuses this context: {e}",
                "fix the context as the message says",
            )
    for key in REMOTE_USER_FIELDS_REFUSED:
        if key in member.user:
            return unknown(
                CHECK,
                subject,
                f"its user runs a program or an identity provider ({key}): not run here",
            )
    return None


async def probe(api: ApiClient, time_limit: float) -> None:
    """What the controller needs first from a member: list its ServiceExports."""
    await kubeapi.request_json(api, "GET", PROBE, query={"limit": "1"}, time_limit=time_limit)


async def reach(
    members: ControllerMembers,
    member: Member,
    kubeconfig: Path,
    own_api: ApiClient,
    time_limit: float,
) -> Reached:
    """Connect to ``member`` as the controller does and probe it."""
    refused = refusal(members, member, kubeconfig)
    if refused is not None:
        return Reached(member, refused)
    subject = f"{CHECK}/{member.context}"
    api: ApiClient | None = None
    own = False
    try:
        api = await kubeapi.new_client(str(kubeconfig), member.context)
    except Exception as e:  # a file of the Pod, an unreadable kubeconfig
        if not member.in_cluster:
            return Reached(
                member,
                problem(
                    CHECK,
                    subject,
                    f"its context cannot be loaded: {describe_error(e)}",
                    "fix the context in the Secret's key kubeconfig",
                ),
            )
    if api is None or member.in_cluster:
        if api is not None:
            await api.close()
        api, own = own_api, True
    try:
        await probe(api, time_limit)
    except (ApiException, OSError, aiohttp.ClientError, TimeoutError) as e:
        finding = decide_error(member, e, as_user=" (checked as you)" if own else "")
        return Reached(member, finding, api, own)
    how = (
        "reached as you (in-cluster address)"
        if own
        else "reached with the controller's credentials"
    )
    return Reached(
        member, ok(CHECK, subject, f"{member.server}: {how}; serviceexports readable"), api, own
    )


async def close(reached: list[Reached]) -> None:
    for r in reached:
        if r.api is not None and not r.own:
            with contextlib.suppress(Exception):
                await r.api.close()


__all__ = ["Reached", "close", "decide_error", "reach", "refusal", "unknown"]
