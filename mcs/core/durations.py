"""Durations as Go writes them (``500ms``, ``15s``, ``1m``, ``1h30m``, ``1.5h``): the form
of kubectl's ``--request-timeout`` and ``--duration`` and of controller-runtime's flags.
One parser for every command of mcs (``mcs run``'s flags, ``mcs status``, the kubectl
plugin, ``kubectl mcs join`` and ``diagnose``).

The arithmetic is ``durationpy``'s (the Go-duration parser of the official Kubernetes
Python client); the grammar is Go's ``time.ParseDuration`` without a sign: the units
``ns us µs μs ms s m h`` only (durationpy's ``d``, ``w`` and ``y`` are not Go's), no spaces,
never negative."""

from __future__ import annotations

import argparse
import math
import re

import durationpy

__all__ = ["arg", "parse"]

_GO = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_EXAMPLES = "a Go duration such as 500ms, 15s, 1m or 1h30m"


def parse(value: str, *, bare_seconds: bool = True) -> float:
    """Seconds of a Go duration, or of a bare number of seconds when ``bare_seconds``
    (kubectl's ``--request-timeout=5``, and the older form of mcs run's flags). Raises
    ``ValueError`` naming the value ("not a duration") for anything else."""
    text = value.strip()
    if bare_seconds and _NUMBER.fullmatch(text):
        seconds = float(text)
    elif _GO.fullmatch(text):
        seconds = durationpy.from_str(text).total_seconds()
    else:
        more = " or a number of seconds" if bare_seconds else ""
        raise ValueError(f"{value!r} is not a duration: use {_EXAMPLES}{more}")
    if not math.isfinite(seconds):
        raise ValueError(f"{value!r} is not a duration: too large")
    return seconds


def arg(value: str) -> float:
    """`parse` as an argparse ``type``: a bad value is a usage error (exit 2)."""
    try:
        return parse(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
