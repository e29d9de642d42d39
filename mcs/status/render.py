"""Render (pure): a `Report` as text for a terminal (``rich`` tables), JSON or YAML.

Text is built as ``rich`` renderables (`renderable`, used as is by ``--watch``) and
turned into a string by `render_text`. Colour is only drawn when asked for (the
command asks only on a terminal, without ``NO_COLOR`` or ``--no-color``); without
it the text is plain, column for column the same.

Sections, in order: members, controllers, services, global services (only when
there are any), summary. A new section is one more function
``Report -> list[renderable]`` in `renderable`; the report itself carries its data,
so JSON and YAML get it too.
"""

from __future__ import annotations

import io
import json
import re
import sys
from typing import IO, Literal

import yaml
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mcs.status.report import PortReport, Report, ServiceReport

Output = Literal["text", "json", "yaml"]

# Styles by meaning, not by place: one palette for every table.
_OK, _WARN, _BAD, _DIM, _HEAD = "green", "yellow", "red", "dim", "bold"

_SERVICE_STYLE = {
    "ok": _OK,
    "conflict": _WARN,
    "invalid": _BAD,
    "missing": _BAD,
    "pending": _WARN,
    "unexported": _WARN,
}
_EXPORT_STYLE = {"ok": _OK, "conflict": _WARN, "invalid": _BAD}
_IMPORT_STYLE = {
    "present": _OK,
    "missing": _BAD,
    "no-namespace": _DIM,
    "unknown": _BAD,
    "unexpected": _WARN,
}

# Trailing blanks, also those a colour's escape codes enclose.
_TRAILING = re.compile(r"(?: |\x1b\[[0-9;]*m)+$")

# Plain text is never wrapped at 80 columns: a pipe or a file gets whole lines.
_PLAIN_WIDTH = 250


def _indent(renderable: RenderableType, spaces: int) -> RenderableType:
    return Padding(renderable, (0, 0, 0, spaces))


def _members(report: Report) -> list[RenderableType]:
    out: list[RenderableType] = [Text(f"Members ({len(report.members)})", style=_HEAD)]
    if not report.members:
        return out
    table = _plain_table(0)
    table.show_header, table.header_style = True, _HEAD
    for h in ("CONTEXT", "CLUSTER ID", "STATUS", "VERSION", "EXPORTS", "IMPORTS", "SERVER"):
        table.add_column(h, no_wrap=True)
    notes: list[RenderableType] = []
    for m in report.members:
        status, style = ("ok", _OK) if m.reachable else ("unreachable", _BAD)
        if m.reachable and m.error:
            status, style = "error", _BAD
        table.add_row(
            m.context,
            m.cluster_id,
            Text(status, style=style),
            m.server_version or "-",
            _count(m.exports),
            _count(m.imports),
            m.server or "-",
        )
        if m.error:
            notes.append(Text(f"  {m.context}: {m.error}", style=_BAD))
    return [*out, _indent(table, 2), *notes]


def _controllers(report: Report) -> list[RenderableType]:
    if not report.controllers:
        return []
    table = _plain_table(3)
    for c in report.controllers:
        if c.ready:
            state = Text("ready", style=_OK)
        elif c.reachable:
            state = Text("not ready", style=_WARN)
        else:
            state = Text("unreachable", style=_BAD)
        table.add_row(c.url, state, c.reason)
    title = Text(f"Controllers ({len(report.controllers)})", style=_HEAD)
    return [Text(""), title, _indent(table, 2)]


def _services(report: Report) -> list[RenderableType]:
    out: list[RenderableType] = [
        Text(""),
        Text(f"Services ({len(report.services)})", style=_HEAD),
    ]
    if not report.services:
        out.append(Text("  no exported services"))
    for s in report.services:
        out += _service(s)
    return out


def _service(s: ServiceReport) -> list[RenderableType]:
    head = Text(f"  {s.namespace}/{s.name}  ")
    head.append(s.state, style=_SERVICE_STYLE[s.state])
    if s.conflict is not None:
        head.append("  ")
        head.append(",".join(s.conflict.reasons), style=_WARN)
    if s.winner is not None:
        head.append(f"  winner {s.winner}")
    out: list[RenderableType] = [head]
    if s.exports:
        out.append(Text("    exports (oldest first):"))
        table = _plain_table(6)
        for e in s.exports:
            state = e.state if e.reason is None else f"{e.state} {e.reason}"
            # In sync, Valid and Conflict repeat the state column: statuses suffice.
            conditions = " ".join(
                f"{t}={c.status}"
                + ("" if e.in_sync and (t != "Ready" or c.status == "True") else f"/{c.reason}")
                for t, c in e.conditions.items()
                if t in ("Valid", "Ready", "Conflict")
            )
            table.add_row(
                e.cluster,
                e.created or "-",
                "winner" if e.winner else "",
                Text(state, style=_EXPORT_STYLE[e.state]),
                Text(conditions or "no conditions", style="" if conditions else _DIM),
                "" if e.in_sync else Text("(not reconciled yet)", style=_WARN),
            )
        out.append(_indent(table, 6))
        out += [Text(f"      {e.cluster}: {e.message}", style=_BAD) for e in s.exports if e.message]
    if s.imports:
        out.append(Text("    imports:"))
        table = _plain_table(6)
        for i in s.imports:
            if i.state in ("present", "unexpected"):
                ports = ", ".join(_port(p) for p in i.ports) or "no ports"
                row: list[RenderableType] = [
                    i.cluster,
                    i.type or "-",
                    ", ".join(i.ips) or "-",
                    ports,
                    f"from {', '.join(i.clusters)}" if i.clusters else "",
                    Text("(no valid export)", style=_WARN) if i.state == "unexpected" else "",
                ]
            else:
                row = [i.cluster, Text(i.state, style=_IMPORT_STYLE[i.state]), "", "", "", ""]
            table.add_row(*row)
        out.append(_indent(table, 6))
    if s.conflict is not None:
        line = Text("    conflict: ")
        line.append(s.conflict.message, style=_WARN)
        out.append(line)
    if s.unknown:
        out.append(Text(f"    exports unknown in: {', '.join(s.unknown)}", style=_BAD))
    return out


def _global_services(report: Report) -> list[RenderableType]:
    """One row per global Service and cluster: its annotations and whose backends
    it balances over (ready endpoints by source cluster)."""
    rows = report.global_services
    if not rows:
        return []
    keys = {(g.namespace, g.name) for g in rows}
    out: list[RenderableType] = [Text(""), Text(f"Global services ({len(keys)})", style=_HEAD)]
    table = _plain_table(0)
    table.show_header, table.header_style = True, _HEAD
    for h in ("SERVICE", "CLUSTER", "GLOBAL", "SHARED", "AFFINITY", "BACKENDS (ready, by cluster)"):
        table.add_column(h, no_wrap=True)
    notes: list[RenderableType] = []
    for g in rows:
        used = ", ".join(f"{c}: {n}" for c, n in sorted(g.backends.items())) or "none"
        backends = Text(used, style="" if sum(g.backends.values()) else _WARN)
        if g.held_back:
            backends.append(f"  (held back: {', '.join(g.held_back)})", style=_DIM)
        table.add_row(
            f"{g.namespace}/{g.name}",
            g.cluster,
            Text("yes", style=_OK) if g.is_global else Text("no", style=_DIM),
            "yes" if g.shared else Text("no", style=_WARN),
            g.affinity or "-",
            backends,
        )
        notes += [
            Text(f"  {g.namespace}/{g.name} in {g.cluster}: {n}", style=_WARN) for n in g.notes
        ]
    return [*out, _indent(table, 2), *notes]


def _summary(report: Report) -> list[RenderableType]:
    n = report.summary
    parts = [
        (f"{n.members} members", ""),
        (f"{n.unreachable} unreachable", _BAD if n.unreachable else ""),
        (f"{n.member_errors} member errors", _BAD if n.member_errors else ""),
        (f"{n.services} services", ""),
        (f"{n.conflicts} in conflict", _WARN if n.conflicts else ""),
        (f"{n.invalid} invalid exports", _BAD if n.invalid else ""),
        (f"{n.missing_imports} missing imports", _BAD if n.missing_imports else ""),
        (f"{n.pending} pending", _WARN if n.pending else ""),
    ]
    if report.controllers:
        not_ready = n.controllers_not_ready
        parts.append((f"{not_ready} controllers not ready", _WARN if not_ready else ""))
    line = Text()
    line.append("Summary: ", style=_HEAD)
    for i, (text, style) in enumerate(parts):
        if i:
            line.append(", ")
        line.append(text, style=style)
    return [Text(""), line]


def _plain_table(columns: int) -> Table:
    """A borderless, headerless table whose columns are two spaces apart."""
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    for _ in range(columns):
        table.add_column(no_wrap=True)
    return table


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _port(p: PortReport) -> str:
    number = f"{p.port}/{p.protocol}"
    text = f"{p.name}:{number}" if p.name else number
    return f"{text} ({p.app_protocol})" if p.app_protocol else text


def renderable(report: Report) -> RenderableType:
    """The text report as one ``rich`` renderable (what ``--watch`` redraws).

    The seam for more sections: each is a function ``Report -> list[renderable]``;
    the global services section (from ``mcs.core.globalsvc``) goes between services and
    summary.
    """
    sections = (_members, _controllers, _services, _global_services, _summary)
    header = Text(f"mcs {report.version}", style=_DIM)
    return Group(header, *(part for section in sections for part in section(report)))


def console(*, color: bool, file: IO[str] | None = None, width: int | None = None) -> Console:
    """A console that draws colour only when ``color`` (then with the 8 standard ANSI
    colours, which every terminal has); without ``width``, as wide as the terminal."""
    return Console(
        file=file,
        force_terminal=True if color else None,
        no_color=not color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        emoji=False,
        soft_wrap=True,  # long lines are the terminal's to wrap, never cut
    )


def render_text(report: Report, color: bool, width: int | None = None) -> str:
    """``report`` for a terminal, colour (ANSI) only when ``color``; lines carry no
    trailing spaces and the text ends with a newline."""
    return to_text(renderable(report), color, width)


def to_text(what: RenderableType, color: bool, width: int | None = None) -> str:
    """``what`` as text ``width`` columns wide (default: wide enough not to cut), colour
    only when ``color``; no trailing spaces, a final newline."""
    buffer = io.StringIO()
    console(color=color, file=buffer, width=width or _PLAIN_WIDTH).print(what)
    lines = [
        _TRAILING.sub(lambda m: m.group().replace(" ", ""), line)
        for line in buffer.getvalue().splitlines()
    ]
    return "\n".join(lines) + "\n"


def write(what: RenderableType, color: bool, out: IO[str] | None = None) -> None:
    """Print ``what``: on a terminal as wide as the terminal, else (a pipe, a file)
    whole lines without trailing spaces."""
    out = out or sys.stdout
    if out.isatty():
        console(color=color, file=out).print(what)
    else:
        out.write(to_text(what, color))


def render(report: Report, output: Output, color: bool = False) -> str:
    """``report`` as ``text`` (see `render_text`), ``json`` or ``yaml`` (the
    structure documented in ``mcs.status``); always ends with a newline."""
    if output == "text":
        return render_text(report, color)
    data = report.model_dump(mode="json")
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
