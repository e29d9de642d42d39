"""``mcs --version`` and ``kubectl mcs --version``: this release, the Python running it and
the kubernetes-asyncio it talks to the API with (what a bug report needs)."""

from __future__ import annotations

import platform
from importlib import metadata

import mcs

DISTRIBUTION = "mcs-controller"
"""The name on the Python package index (``pip install mcs-controller``)."""


def version_text(prog: str = "mcs") -> str:
    """One line: ``<prog> 0.2.0 (mcs-controller; Python 3.11.2; kubernetes-asyncio 33.1.0)``."""
    return (
        f"{prog} {mcs.__version__} ({DISTRIBUTION}; Python {platform.python_version()}; "
        f"kubernetes-asyncio {_installed('kubernetes-asyncio')})"
    )


def _installed(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
