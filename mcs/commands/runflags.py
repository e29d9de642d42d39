"""How ``mcs run`` reads its flags: log levels, the deprecated
aliases of controller-runtime's flag names, and ``--mode``.

Everything here is pure: parsing raises ``argparse.ArgumentTypeError`` (a usage error,
exit code 2) or ``ConfigError`` (an invalid combination, exit code 2 as well), and the
warnings to log at start are returned, not logged, so that ``mcs run`` logs them once
its logging is configured.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcs.runtime.members import ConfigError

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
"""The values of ``--log-level`` (any case)."""

MODES = ("central", "per-cluster")
Mode = Literal["central", "per-cluster"]

DEPRECATED_FLAGS: dict[str, str] = {
    "--metrics-addr": "--metrics-bind-address",
    "--health-addr": "--health-probe-bind-address",
    "--leader-elect-lease-name": "--leader-elect-resource-name",
    "--leader-elect-namespace": "--leader-elect-resource-namespace",
}
"""Old flag -> its controller-runtime name. The old ones still work for one release
(0.2), hidden from ``--help``, with one warning each at start."""


def log_level(value: str) -> str:
    """A ``--log-level``: one of `LOG_LEVELS`, any case; anything else is a usage error."""
    level = value.strip().lower()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"invalid choice {value!r} (choose from {', '.join(LOG_LEVELS)})"
        )
    return level


def mode(value: str) -> Mode | None:
    """A ``--mode``: ``central`` or ``per-cluster``; empty (an empty ``mode`` key of the
    Secret) means not given."""
    text = value.strip()
    if not text:
        return None
    if text == "central":
        return "central"
    if text == "per-cluster":
        return "per-cluster"
    raise argparse.ArgumentTypeError(f"invalid choice {value!r} (choose from central, per-cluster)")


class DeprecatedAlias(argparse.Action):
    """An old flag name: stores like its new name (same ``dest``) and records that it was
    used, in ``namespace.deprecated_flags`` (see `deprecation_warnings`)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        used = tuple(getattr(namespace, "deprecated_flags", ()))
        if option_string is not None and option_string not in used:
            setattr(namespace, "deprecated_flags", (*used, option_string))  # noqa: B010


def add_renamed_argument(p: argparse.ArgumentParser, new: str, **kwargs: Any) -> argparse.Action:
    """``new`` with ``kwargs``, and its old name (`DEPRECATED_FLAGS`) as a hidden alias."""
    action = p.add_argument(new, **kwargs)
    old = next(o for o, n in DEPRECATED_FLAGS.items() if n == new)
    alias: dict[str, Any] = {"type": kwargs["type"]} if "type" in kwargs else {}
    p.add_argument(
        old,
        dest=action.dest,
        action=DeprecatedAlias,
        default=argparse.SUPPRESS,
        help=argparse.SUPPRESS,
        **alias,
    )
    p.set_defaults(deprecated_flags=())
    return action


def deprecation_warnings(args: argparse.Namespace) -> list[tuple[str, str]]:
    """``(old, new)`` for each deprecated flag the command line used, once each."""
    return [(old, DEPRECATED_FLAGS[old]) for old in getattr(args, "deprecated_flags", ())]


@dataclass(frozen=True)
class Topology:
    """Which members an instance writes to: ``local`` (contexts), in ``mode``;
    ``inferred`` when ``--mode`` was not given (a warning: it will be required)."""

    mode: Mode
    local: frozenset[str]
    inferred: bool


def resolve_topology(mode: Mode | None, local: str, contexts: Sequence[str]) -> Topology:
    """The `Topology` of ``--mode``, ``--local`` (comma-separated) and the member
    ``contexts``; ``ConfigError`` when they contradict each other.

    * ``per-cluster``: ``--local`` names exactly one member, the only one written to.
    * ``central``: every member is written to; a ``--local`` naming fewer contradicts it.
    * not given: inferred as before 0.2: no ``--local`` = central, one = per-cluster,
      several = those members (reported as central, writing to the ones named).
    """
    named = [c for c in (s.strip() for s in local.split(",")) if c]
    members = list(dict.fromkeys(contexts))
    unknown = [c for c in named if c not in members]
    if unknown:
        raise ConfigError(f"--local {sorted(named)} must be among the member contexts {members}")
    if mode == "per-cluster":
        if len(set(named)) != 1:
            raise ConfigError(
                "--mode per-cluster writes to exactly one member: name its context with "
                f"--local CONTEXT (got --local {local!r})"
            )
        return Topology("per-cluster", frozenset(named), inferred=False)
    if mode == "central":
        if named and set(named) != set(members):
            raise ConfigError(
                f"--mode central writes to every member {members}, but --local names only "
                f"{sorted(set(named))}: drop --local, or use --mode per-cluster with one "
                "--local context"
            )
        return Topology("central", frozenset(members), inferred=False)
    if len(set(named)) == 1:
        return Topology("per-cluster", frozenset(named), inferred=True)
    return Topology("central", frozenset(named or members), inferred=True)
