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
from dataclasses import dataclass
from typing import IO, Literal

import yaml
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from mcs.status.report import PortReport, Report, ServiceReport

Output = Literal["table", "wide", "json", "yaml", "text"]
OUTPUTS = ("table", "wide", "json", "yaml")
"""kubectl's output formats; ``text`` (the old name of ``table``) is still accepted."""

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
_VIEW_STYLE = {"connected": _OK, "disconnected": _BAD, "withdrawn": _BAD}
_IMPORT_STYLE = {
    "present": _OK,
    "missing": _BAD,
    "no-namespace": _DIM,
    "unknown": _BAD,
    "unexpected": _WARN,
}

# Trailing blanks, also those a colour's escape codes enclose.
_TRAILING = re.compile(r"(?: |\x1b\[[0-9;]*m)+$")

# Plain text is never wrapped at 80 columns: a pipe or a file gets whole lines (tables
# are as wide as their cells need, text lines are never wrapped in practice).
_PLAIN_WIDTH = 10_000


def _note(text: str, spaces: int, style: str = "") -> RenderableType:
    """A line of text indented ``spaces``, its wrapped lines too."""
    return _indent(Text(text, style=style), spaces)


def _indent(renderable: RenderableType, spaces: int) -> RenderableType:
    return Padding(renderable, (0, 0, 0, spaces))


def _members(report: Report, wide: bool) -> list[RenderableType]:
    out: list[RenderableType] = [Text(f"Members ({len(report.members)})", style=_HEAD)]
    ms = report.membership
    if ms is not None and ms.source == "controller" and ms.controllers:
        out.append(_note(f"as configured in {', '.join(ms.controllers)}", 2, style=_DIM))
    if ms is not None and ms.note:
        out.append(_note(f"note: {ms.note}", 2, style=_WARN))
    if not report.members:
        return out
    contexts = wide or any(m.context != m.cluster_id for m in report.members)
    views = any(m.controller_view is not None for m in report.members)
    table = _table(
        _id("CLUSTER ID"),
        *([_id("CONTEXT", drop=2)] if contexts else []),
        _id("HERE"),
        *([_id("CONTROLLER")] if views or wide else []),
        *([_id("VERSION")] if wide else []),
        _id("EXPORTS"),
        _id("IMPORTS"),
        *([_prose("SERVER")] if wide else []),
    )
    notes: list[RenderableType] = []
    for m in report.members:
        status, style = ("ok", _OK) if m.reachable else ("unreachable", _BAD)
        if m.reachable and m.error:
            status, style = "error", _BAD
        view = m.controller_view
        row: list[RenderableType] = [m.cluster_id]
        if contexts:
            row.append(m.context or "-")
        row.append(Text(status, style=style))
        if views or wide:
            row.append(Text(view or "-", style=_VIEW_STYLE.get(view or "", _DIM)))
        if wide:
            row.append(m.server_version or "-")
        row += [_count(m.exports), _count(m.imports)]
        if wide:
            row.append(m.server or "-")
        table.add_row(*row)
        if m.error:
            notes.append(_note(f"{m.cluster_id}: {m.error}", 2, style=_BAD))
        if m.reachable and view in ("disconnected", "withdrawn"):
            notes.append(
                _note(
                    f"{m.cluster_id}: reachable from here, but {view} for a controller "
                    "(its credentials or network from the cluster; see Controllers)",
                    2,
                    style=_BAD,
                )
            )
    return [*out, _indent(table, 2), *notes]


def _controllers(report: Report, wide: bool) -> list[RenderableType]:
    if not report.controllers:
        return []
    names = [c.url if wide or c.pod is None else c.pod for c in report.controllers]
    table = _table(
        _id("CONTROLLER"),
        _id("ROLE"),
        _id("STATE"),
        _prose("REASON"),
        *([_prose("MEMBERS (its view)")] if wide else []),
    )
    for name, c in zip(names, report.controllers, strict=True):
        if c.ready:
            state = Text("ready", style=_OK)
        elif c.reachable:
            state = Text("not ready", style=_WARN)
        else:
            state = Text("unreachable", style=_BAD)
        role = "-" if c.leader is None else ("leader" if c.leader else "standby")
        row: list[RenderableType] = [name, role, state, c.reason]
        if wide:
            row.append(", ".join(f"{k}: {v}" for k, v in c.members.items()) or "-")
        table.add_row(*row)
    title = Text(f"Controllers ({len(report.controllers)})", style=_HEAD)
    where: list[RenderableType] = []
    if not wide:
        places = dict.fromkeys(
            (c.url.rsplit("/", 1)[0], c.mode) for c in report.controllers if c.pod is not None
        )
        where = [
            _note(f"in {place}" + (f" ({mode} mode)" if mode else ""), 2, style=_DIM)
            for place, mode in places
        ]
    return [Text(""), title, *where, _indent(table, 2)]


def _services(report: Report, wide: bool) -> list[RenderableType]:
    out: list[RenderableType] = [
        Text(""),
        Text(f"Services ({len(report.services)})", style=_HEAD),
    ]
    if not report.services:
        out.append(_note("no exported services", 2))
    for s in report.services:
        out += _service(s, wide)
    return out


def _service(s: ServiceReport, wide: bool) -> list[RenderableType]:
    head = Text(f"{s.namespace}/{s.name}  ")
    head.append(s.state, style=_SERVICE_STYLE[s.state])
    if s.conflict is not None:
        head.append("  ")
        head.append(",".join(s.conflict.reasons), style=_WARN)
    if s.winner is not None:
        head.append(f"  winner {s.winner}")
    out: list[RenderableType] = [_indent(head, 2)]
    if s.exports:
        out.append(_note("exports (oldest first):", 4))
        states = [e.state if e.reason is None else f"{e.state} {e.reason}" for e in s.exports]
        table = _table(
            _id(""),
            *([_id("")] if wide else []),
            _id(""),
            _id(""),
            *([_prose("")] if wide else []),
            _prose(""),
            header=False,
        )
        for e, st in zip(s.exports, states, strict=True):
            # In sync, Valid and Conflict repeat the state column: statuses suffice.
            conditions = " ".join(
                f"{t}={c.status}"
                + ("" if e.in_sync and (t != "Ready" or c.status == "True") else f"/{c.reason}")
                for t, c in e.conditions.items()
                if t in ("Valid", "Ready", "Conflict")
            )
            row: list[RenderableType] = [e.cluster]
            if wide:
                row.append(e.created or "-")
            row += ["winner" if e.winner else "", Text(st, style=_EXPORT_STYLE[e.state])]
            if wide:
                row.append(Text(conditions or "no conditions", style="" if conditions else _DIM))
            row.append("" if e.in_sync else Text("(not reconciled yet)", style=_WARN))
            table.add_row(*row)
        out.append(_indent(table, 6))
        out += [_note(f"{e.cluster}: {e.message}", 6, style=_BAD) for e in s.exports if e.message]
    if s.imports:
        out.append(_note("imports:", 4))
        table = _table(
            _id(""),
            _id(""),
            _prose(""),
            _prose(""),
            *([_prose("")] if wide else []),
            _prose(""),
            header=False,
        )
        for i in s.imports:
            if i.state in ("present", "unexpected"):
                ports = ", ".join(_port(p) for p in i.ports) or "no ports"
                row = [i.cluster, i.type or "-", ", ".join(i.ips) or "-", ports]
                if wide:
                    row.append(f"from {', '.join(i.clusters)}" if i.clusters else "")
                row.append(
                    Text("(no valid export)", style=_WARN) if i.state == "unexpected" else ""
                )
            else:
                row = [i.cluster, Text(i.state, style=_IMPORT_STYLE[i.state]), "", ""]
                row += ["", ""] if wide else [""]
            table.add_row(*row)
        out.append(_indent(table, 6))
    if s.conflict is not None:
        line = Text("conflict: ")
        line.append(s.conflict.message, style=_WARN)
        out.append(_indent(line, 4))
    if s.unknown:
        out.append(_note(f"exports unknown in: {', '.join(s.unknown)}", 4, style=_BAD))
    return out


def _global_services(report: Report, wide: bool) -> list[RenderableType]:
    """One row per global Service and cluster: its annotations and whose backends
    it balances over (ready endpoints by source cluster)."""
    rows = report.global_services
    if not rows:
        return []
    keys = {(g.namespace, g.name) for g in rows}
    out: list[RenderableType] = [Text(""), Text(f"Global services ({len(keys)})", style=_HEAD)]
    table = _table(
        _id("SERVICE"),
        _id("CLUSTER"),
        _id("GLOBAL"),
        _id("SHARED"),
        _id("AFFINITY"),
        _prose("BACKENDS (ready, by cluster)"),
    )
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
            _note(f"{g.namespace}/{g.name} in {g.cluster}: {n}", 2, style=_WARN) for n in g.notes
        ]
    return [*out, _indent(table, 2), *notes]


def _summary(report: Report, wide: bool) -> list[RenderableType]:
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
        lost = n.unreachable_by_controller
        parts.append((f"{lost} unreachable by a controller", _BAD if lost else ""))
    line = Text()
    line.append("Summary: ", style=_HEAD)
    for i, (text, style) in enumerate(parts):
        if i:
            line.append(", ")
        line.append(text, style=style)
    return [Text(""), line]


@dataclass(frozen=True)
class _Col:
    header: str
    prose: bool
    drop: int = 0  # 0: always shown; else dropped (highest first) when the table is too wide


def _id(header: str, drop: int = 0) -> _Col:
    """A column of identifiers (cluster names, types, states): kept whole while the
    prose columns can narrow instead, else folded onto more lines; never cut."""
    return _Col(header, prose=False, drop=drop)


def _prose(header: str, drop: int = 0) -> _Col:
    """A column of free text (reasons, ports, servers): the first to narrow, wrapping
    at spaces; words longer than the column fold; never cut."""
    return _Col(header, prose=True, drop=drop)


_GAP = 2  # spaces between columns
_PROSE_MIN = 12  # a prose column narrower than this reads badly


def _cell_width(cell: RenderableType) -> int:
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return max((len(line) for line in text.splitlines()), default=0)


class _Table:
    """A borderless table laid out for the width it is drawn at (a terminal, 80
    columns, or a pipe's long lines): identifier columns keep their widest value
    while the prose columns can narrow; columns marked ``drop`` go first (highest
    first) when even that does not fit; what still does not fit wraps or folds
    (``overflow="fold"``). Nothing is ever cut or ellipsized."""

    def __init__(self, *cols: _Col, header: bool = True) -> None:
        self.cols = list(cols)
        self.header = header
        self.rows: list[list[RenderableType]] = []

    def add_row(self, *cells: RenderableType) -> None:
        self.rows.append(list(cells))

    def _widths(self, shown: list[int]) -> list[int]:
        return [
            max(
                [len(self.cols[i].header) if self.header else 0]
                + [_cell_width(r[i]) for r in self.rows]
            )
            for i in shown
        ]

    def _need(self, shown: list[int]) -> int:
        widths = self._widths(shown)
        need = sum(
            min(w, _PROSE_MIN) if self.cols[i].prose else w
            for i, w in zip(shown, widths, strict=True)
        )
        return need + _GAP * (len(shown) - 1)

    def layout(self, width: int) -> Table:
        shown = list(range(len(self.cols)))
        droppable = sorted((c.drop, i) for i, c in enumerate(self.cols) if c.drop)
        while self._need(shown) > width and droppable:
            shown.remove(droppable.pop()[1])
        fits = self._need(shown) <= width
        table = Table(
            box=None,
            show_header=self.header,
            header_style=_HEAD,
            pad_edge=False,
            padding=(0, _GAP, 0, 0),
            collapse_padding=True,
        )
        for i, w in zip(shown, self._widths(shown), strict=True):
            c = self.cols[i]
            keep = fits and not c.prose
            # A fixed width: with min_width, rich lets other columns' cells be cropped.
            table.add_column(c.header, no_wrap=False, overflow="fold", width=w if keep else None)
        for r in self.rows:
            table.add_row(*(r[i] for i in shown))
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.layout(options.max_width)


def _table(*cols: _Col, header: bool = True) -> _Table:
    return _Table(*cols, header=header)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _port(p: PortReport) -> str:
    number = f"{p.port}/{p.protocol}"
    text = f"{p.name}:{number}" if p.name else number
    return f"{text} ({p.app_protocol})" if p.app_protocol else text


def renderable(report: Report, wide: bool = False) -> RenderableType:
    """The text report as one ``rich`` renderable (what ``--watch`` redraws).

    The seam for more sections: each is a function ``Report -> list[renderable]``;
    the global services section (from ``mcs.core.globalsvc``) goes between services and
    summary.
    """
    sections = (_members, _controllers, _services, _global_services, _summary)
    header = Text(f"mcs {report.version}", style=_DIM)
    return Group(header, *(part for section in sections for part in section(report, wide)))


def console(
    *, color: bool, file: IO[str] | None = None, width: int | None = None, soft_wrap: bool = True
) -> Console:
    """A console that draws colour only when ``color`` (then with the 8 standard ANSI
    colours, which every terminal has); without ``width``, as wide as the terminal.
    ``soft_wrap``: long lines of text are left whole (the terminal's, or nobody's, to
    wrap); else they wrap at spaces within ``width``. Tables always fit ``width``."""
    return Console(
        file=file,
        force_terminal=True if color else None,
        no_color=not color,
        color_system="standard" if color else None,
        width=width,
        highlight=False,
        emoji=False,
        soft_wrap=soft_wrap,  # never cut, either way
    )


def render_text(
    report: Report, color: bool, width: int | None = None, *, wide: bool = False
) -> str:
    """``report`` for a terminal ``width`` columns wide (default: whole lines, as a pipe
    gets them), every column with ``wide``, colour (ANSI) only when ``color``; lines
    carry no trailing spaces and the text ends with a newline."""
    return to_text(renderable(report, wide=wide), color, width)


def to_text(what: RenderableType, color: bool, width: int | None = None) -> str:
    """``what`` as text ``width`` columns wide, text wrapped at spaces (default: wide
    enough not to cut, long lines whole), colour only when ``color``; no trailing
    spaces, a final newline."""
    buffer = io.StringIO()
    out = console(color=color, file=buffer, width=width or _PLAIN_WIDTH, soft_wrap=False)
    out.print(what)
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
        console(color=color, file=out, soft_wrap=False).print(what)
    else:
        out.write(to_text(what, color))


def render(report: Report, output: Output, color: bool = False) -> str:
    """``report`` as ``table`` / ``wide`` (see `render_text`; ``text`` is ``table``),
    ``json`` or ``yaml`` (the structure documented in ``mcs.status``); always ends with
    a newline."""
    if output in ("table", "wide", "text"):
        return render_text(report, color, wide=output == "wide")
    data = report.model_dump(mode="json")
    if output == "json":
        return json.dumps(data, indent=2) + "\n"
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
