"""Which namespaces take part in the clusterset: pure functions, no I/O.

One mechanism for ServiceExports (MCS) and global Services (Cilium's annotations),
applied per cluster:

1. **Deny-list.** ``kube-system``, ``kube-public``, ``kube-node-lease`` and the
   controller's own namespace never take part; ``mcs run --exclude-namespaces`` adds
   names to them (it never removes one). Reason ``NamespaceExcluded``. Nothing the
   Namespace object says overrides it.
2. **Cilium's namespace filter** (the *annotation* ``clustermesh.cilium.io/global``
   on the Namespace, as Cilium reads it; a label of that key means nothing):
   ``"true"`` (any case) takes part, any other value does not. Reason
   ``NamespaceNotGlobal``.
3. **Unmarked namespaces** follow the default: they take part, unless
   ``--namespace-opt-in`` is set (only namespaces marked ``"true"`` take part;
   reason ``NamespaceNotGlobal``).

A namespace that does not take part in a cluster neither offers (its exports get
``Valid=False`` with the reason and a message saying how to change it; its global
Services offer no backends) nor receives (no ServiceImport, derived Service or
EndpointSlice is written into it) in that cluster.

**Same name, same owner.** A namespace is matched across members by its name only:
whoever owns ``ns`` in any member can export ``ns/svc`` (or make a global, shared
Service ``ns/svc``) and join the backends of ``ns/svc`` everywhere. mcs assumes that
same-named namespaces share an owner (KEP-1645's namespace sameness). Where tenants
differ between members, run with ``--namespace-opt-in`` so that only namespaces an
admin annotated take part.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_EXCLUDED",
    "GLOBAL_NAMESPACE",
    "Exclusion",
    "NamespacePolicy",
    "parse_namespace_list",
]

GLOBAL_NAMESPACE = "clustermesh.cilium.io/global"
DEFAULT_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")

Reason = Literal["NamespaceExcluded", "NamespaceNotGlobal"]


@dataclass(frozen=True)
class Exclusion:
    """Why a namespace takes no part in one cluster, and how to change that."""

    reason: Reason
    message: str


@dataclass(frozen=True)
class NamespacePolicy:
    """The namespace policy of one controller (the same for every member cluster).

    ``excluded``: the deny-list. ``opt_in``: unmarked namespaces do not take part.
    """

    excluded: frozenset[str] = frozenset(DEFAULT_EXCLUDED)
    opt_in: bool = False

    @classmethod
    def build(
        cls, exclude: Iterable[str] | None, own_namespace: str | None, *, opt_in: bool = False
    ) -> NamespacePolicy:
        """The default deny-list plus ``own_namespace`` (the controller's namespace) plus
        ``exclude`` (as given to ``--exclude-namespaces``; None or empty adds nothing)."""
        names = set(DEFAULT_EXCLUDED) | ({own_namespace} if own_namespace else set())
        names |= set(exclude or ())
        return cls(excluded=frozenset(names), opt_in=opt_in)

    def describe(self) -> dict[str, Any]:
        """The policy for the start-up log line."""
        return {"excluded": sorted(self.excluded), "opt_in": self.opt_in}

    def exclusion(
        self, namespace: str, obj: Mapping[str, Any] | None, cluster: str
    ) -> Exclusion | None:
        """None when ``namespace`` takes part in ``cluster`` (whose Namespace object is
        ``obj``, None when not known), else why not."""
        if namespace in self.excluded:
            return Exclusion(
                "NamespaceExcluded",
                f'Namespace "{namespace}" is excluded from the clusterset by the '
                f"controller ({', '.join(sorted(self.excluded))}: the built-in list, the "
                "controller's own namespace and --exclude-namespaces); use another namespace.",
            )
        marked = global_mark(obj)
        if marked is True:
            return None
        if marked is False:
            return Exclusion(
                "NamespaceNotGlobal",
                f'Namespace "{namespace}" in cluster "{cluster}" is marked '
                f'{GLOBAL_NAMESPACE}: "{_mark_value(obj)}", which keeps it out of the '
                f"clusterset; to take part: kubectl annotate namespace {namespace} "
                f"{GLOBAL_NAMESPACE}=true --overwrite",
            )
        if self.opt_in:
            return Exclusion(
                "NamespaceNotGlobal",
                f'Namespace "{namespace}" in cluster "{cluster}" is not marked '
                f'{GLOBAL_NAMESPACE}: "true", and the controller runs with '
                "--namespace-opt-in (only marked namespaces take part); to take part: "
                f"kubectl annotate namespace {namespace} {GLOBAL_NAMESPACE}=true",
            )
        return None

    def not_taking_part(self, namespaces: Iterable[Mapping[str, Any]], cluster: str) -> set[str]:
        """The names of ``namespaces`` (Namespace objects of ``cluster``) that do not
        take part, with the deny-list (for ``mcs status``)."""
        out = set(self.excluded)
        for obj in namespaces:
            name = str((obj.get("metadata") or {}).get("name"))
            if self.exclusion(name, obj, cluster) is not None:
                out.add(name)
        return out


def global_mark(obj: Mapping[str, Any] | None) -> bool | None:
    """The namespace's ``clustermesh.cilium.io/global`` annotation: True for "true" (any
    case), False for any other value, None when unmarked. Only the annotation counts,
    as in Cilium: a label of that key is ignored."""
    value = _mark_value(obj)
    return None if value is None else value.lower() == "true"


def _mark_value(obj: Mapping[str, Any] | None) -> str | None:
    meta = (obj or {}).get("metadata") or {}
    values = meta.get("annotations") if isinstance(meta, Mapping) else None
    if isinstance(values, Mapping) and GLOBAL_NAMESPACE in values:
        return str(values[GLOBAL_NAMESPACE])
    return None


def parse_namespace_list(value: str) -> list[str]:
    """``--exclude-namespaces`` as a list: comma-separated, blanks ignored."""
    return [n.strip() for n in value.split(",") if n.strip()]
