"""What a diagnose check found: one `Finding` per thing checked, the exit code for
scripts, and the text, JSON and YAML output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import yaml
from pydantic import BaseModel

Status = Literal["ok", "warning", "problem", "unknown"]
"""``ok``: checked and fine; ``warning``: works now, will not for long (a credential
about to expire); ``problem``: broken; ``unknown``: could not be checked."""

EXIT_OK, EXIT_PROBLEMS, EXIT_UNCHECKED = 0, 1, 2


class Finding(BaseModel, frozen=True):
    """One check's verdict on one subject, with what to do when it is not ok."""

    check: str
    subject: str
    status: Status
    message: str
    fix: str = ""


def ok(check: str, subject: str, message: str) -> Finding:
    return Finding(check=check, subject=subject, status="ok", message=message)


def problem(check: str, subject: str, message: str, fix: str) -> Finding:
    return Finding(check=check, subject=subject, status="problem", message=message, fix=fix)


def warning(check: str, subject: str, message: str, fix: str) -> Finding:
    return Finding(check=check, subject=subject, status="warning", message=message, fix=fix)


def unknown(check: str, subject: str, message: str, fix: str = "") -> Finding:
    return Finding(check=check, subject=subject, status="unknown", message=message, fix=fix)


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when every check passed; 1 when any found a problem (or a warning); 2 when none
    did but some could not be checked."""
    statuses = {f.status for f in findings}
    if statuses & {"problem", "warning"}:
        return EXIT_PROBLEMS
    if "unknown" in statuses:
        return EXIT_UNCHECKED
    return EXIT_OK


_MARK = {"ok": "ok", "warning": "WARNING", "problem": "PROBLEM", "unknown": "UNKNOWN"}


def _flat(text: str) -> str:
    return " ".join(text.split())


def line(f: Finding) -> str:
    """One line: status, check, subject, what was found and, when not ok, the fix (line
    breaks inside an API server's message become spaces)."""
    text = f"{_MARK[f.status]:<8} {_flat(f.check)} {_flat(f.subject)}: {_flat(f.message)}"
    return f"{text} -- fix: {_flat(f.fix)}" if f.fix and f.status != "ok" else text


def summary(findings: Sequence[Finding]) -> str:
    counts = {s: sum(1 for f in findings if f.status == s) for s in _MARK}
    return (
        f"{len(findings)} checks: {counts['ok']} ok, {counts['problem']} problems, "
        f"{counts['warning']} warnings, {counts['unknown']} not checked"
    )


def render(findings: Sequence[Finding], output: str, *, only_problems: bool = False) -> str:
    """The report as ``text`` (one line per finding and a summary), ``json`` or ``yaml``
    (``{"exitCode": ..., "findings": [...]}``)."""
    if output in ("json", "yaml"):
        data = {
            "exitCode": exit_code(findings),
            "findings": [f.model_dump() for f in findings],
        }
        if output == "json":
            return json.dumps(data, indent=2) + "\n"
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    shown = [f for f in findings if not (only_problems and f.status == "ok")]
    return "".join(line(f) + "\n" for f in shown) + summary(findings) + "\n"
