"""Who the members are (I/O): the controllers' configuration, else the kubeconfig.

``snapshot`` finds the controllers (`mcs.status.controllers.find`) through ``--context``
(when none is found there, or without it: through every context of the kubeconfig),
takes the members their Secrets name, reads each through the laptop's context that
reaches it (`mcs.status.collect.collect`), and records the controllers' own view.
Every kubeconfig context is a member only with ``--all-contexts``, with
``--contexts``, or when no controller is found (the snapshot's ``note`` says so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from mcs.status.collect import DEFAULT_TIMEOUT, MemberSnapshot, Snapshot, collect
from mcs.status.controllers import CONTROLLER_NAMESPACE, Installation, find, members_of
from mcs.status.kubeconfig import Kubeconfig


@dataclass(frozen=True)
class Options:
    contexts: Sequence[str] = ()  # --contexts: exactly these members
    all_contexts: bool = False
    controller_namespace: str = CONTROLLER_NAMESPACE
    namespace: str | None = None
    controllers: Sequence[str] = ()  # --controller URLs
    cluster_ids: dict[str, str] | None = None
    time_limit: float = DEFAULT_TIMEOUT


async def installations(
    kc: Kubeconfig, contexts: Sequence[str], namespace: str, time_limit: float
) -> list[Installation]:
    """The controllers found in ``namespace`` of each of ``contexts``; a context that
    cannot be read (or holds none) adds none."""

    async def one(ctx: str) -> list[Installation]:
        try:
            api = await kc.client(ctx)
        except Exception:  # a broken context: nothing found through it
            return []
        try:
            return await find(api, ctx, namespace, time_limit)
        except Exception:  # unreachable, timed out, forbidden: nothing found through it
            return []
        finally:
            await api.close()

    found = await asyncio.gather(*(one(c) for c in contexts))
    return [i for group in found for i in group]


async def snapshot(kc: Kubeconfig, opts: Options) -> Snapshot:
    """Find the members and read them; see the module's description."""
    laptop = {c: kc.server(c) for c in kc.contexts}
    # Through --contexts, else --context, else (or when --context finds none) every context.
    search = list(opts.contexts) or ([kc.flags.context] if kc.flags.context else kc.contexts)
    found = await installations(kc, search, opts.controller_namespace, opts.time_limit)
    if not found and not opts.contexts and kc.flags.context:
        search = kc.contexts
        found = await installations(kc, search, opts.controller_namespace, opts.time_limit)
    configured = members_of(found, laptop)
    unmatched: list[MemberSnapshot] = []
    defaults: dict[str, str] = {}
    if opts.contexts:
        contexts, source, note = list(opts.contexts), "contexts", None
    elif opts.all_contexts:
        contexts, source = kc.contexts, "kubeconfig"
        note = "every context of the kubeconfig is shown as a member (--all-contexts)"
    elif configured:
        contexts, source, note = [], "controller", None
        for m in configured:
            if m.context is None:
                unmatched.append(
                    MemberSnapshot(
                        context="",
                        cluster_id=m.name,
                        server=m.server,
                        reachable=False,
                        error=f"no context of your kubeconfig reaches {m.server or m.name!r}: "
                        f"add one named {m.name!r} to see it from here",
                    )
                )
            elif m.context not in contexts:
                contexts.append(m.context)
                defaults[m.context] = m.name
    else:
        contexts, source = kc.contexts, "kubeconfig"
        where = ", ".join(search) or "none"
        broken = [f"{i.context}: {i.namespace}/{i.deployment}: {i.error}" for i in found if i.error]
        note = (
            (
                f"the controller's Secret cannot be used ({'; '.join(broken)}): every context of "
                "the kubeconfig is shown as a member"
            )
            if broken
            else (
                f"no controller found (no Deployment {opts.controller_namespace}/mcs-controller "
                f"with a readable Secret in context(s) {where}): every context of the "
                "kubeconfig is shown as a member"
            )
        )
    snap = await collect(
        kc.path,
        contexts,
        opts.cluster_ids or {},
        namespace=opts.namespace,
        controllers=opts.controllers,
        time_limit=opts.time_limit,
        default_ids=defaults,
        connect=kc.client,
    )
    return replace(
        snap,
        members=(*snap.members, *unmatched),
        installations=tuple(found),
        source=source,
        note=note,
    )
