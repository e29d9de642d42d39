"""Builds that read well: one line per binary, Go's output in a log file.

On a terminal the line of the binary being built is redrawn in place (``rich.progress``) with its
phase (``resolving modules``, ``compiling``), the elapsed time and an estimate: the
time this machine took the last time it built that binary (kept in
``<cache>/build-times.json``), or a typical 2-core figure before the first build.
Elsewhere (not a terminal, ``CI`` set, ``TERM=dumb``) each phase change is one plain
line. Everything Go prints goes to ``<cache>/logs/build-<binary>.log``; a failure
names that file and shows its last lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn

#: seconds a cold build of each binary took on 2 shared cores; shown until this
#: machine has built it once
TYPICAL = {
    "etcd": 150,
    "kube-apiserver": 900,
    "kube-controller-manager": 420,
    "kube-scheduler": 120,
    "coredns": 300,
    "kwok": 300,
    "kubelet": 160,
    "kube-proxy": 30,
    "containerd": 90,
    "runc": 25,
    "cni-plugins": 15,
    "mcs-curl": 10,
}
_TRUE = {"1", "true", "yes"}


@dataclass(frozen=True)
class Target:
    """One binary: its build-script target, version and where it lands."""

    name: str
    version: str
    path: Path
    #: the source folder of a main module of our own (CoreDNS's, mcs-curl)
    src: Path | None = None


class BuildFailed(RuntimeError):
    """A binary did not build; the message names its log."""


def live(stream: TextIO) -> bool:
    """Redraw lines in place only on a real terminal outside CI."""
    if os.environ.get("CI", "").lower() in _TRUE or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def fmt(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _load_times(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in raw.items() if isinstance(v, int | float)}


def _estimate(name: str, times: dict[str, float]) -> str:
    if name in times:
        return f"~{fmt(times[name])} last time"
    if name in TYPICAL:
        return f"~{fmt(TYPICAL[name])} typical cold"
    return ""


def build_all(
    want: Sequence[Target], *, script: Path, coredns_src: Path, cache: Path, out: TextIO
) -> None:
    """Build every missing binary of ``want`` in order; ``BuildFailed`` on the first failure."""
    missing = [t for t in want if not os.access(t.path, os.X_OK)]
    if not missing:
        return
    logs = cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    times_file = cache / "build-times.json"
    times = _load_times(times_file)
    redraw = live(out)
    total = sum(times.get(t.name, TYPICAL.get(t.name, 0)) for t in missing)
    count = f"{len(missing)} binar{'y' if len(missing) == 1 else 'ies'}"
    out.write(
        f"[mcs build] {count} into {cache} (~{fmt(total)}); "
        f"Go output in {logs}/build-<binary>.log\n"
    )
    width = max(len(t.name) for t in want)
    for t in want:
        if t not in missing:
            out.write(f"  {t.name:<{width}}  ready (cached) {t.path}\n")
    out.flush()
    for t in missing:
        took = _build_one(t, script, coredns_src, cache, logs, out, width, redraw, times)
        times[t.name] = round(took)
        tmp = times_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
        tmp.replace(times_file)


def _build_one(
    t: Target,
    script: Path,
    coredns_src: Path,
    cache: Path,
    logs: Path,
    out: TextIO,
    width: int,
    redraw: bool,
    times: dict[str, float],
) -> float:
    log = logs / f"build-{t.name}.log"
    t.path.parent.mkdir(parents=True, exist_ok=True)
    args = ["bash", str(script), t.name, str(t.path.parent), t.version]
    if t.src is not None:
        args.append(str(t.src))
    elif t.name == "coredns":
        args.append(str(coredns_src))
    env = {**os.environ, "WORK": str(cache / ".work")}
    estimate = _estimate(t.name, times)
    label = f"  {t.name:<{width}}  v{t.version:<8}"
    started = time.monotonic()
    phases: queue.Queue[str | None] = queue.Queue()
    with log.open("w") as err, _display(t, label, estimate, out, redraw) as show:
        proc = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
        reader = threading.Thread(target=_read_phases, args=(proc, phases), daemon=True)
        reader.start()
        try:
            for phase in iter(phases.get, None):
                show(phase)
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            reader.join(timeout=5)
    took = time.monotonic() - started
    if code != 0:
        if redraw:
            out.write(f"{label}FAILED after {fmt(took)}\n")
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise BuildFailed(
            f"building {t.name} v{t.version} failed (exit {code}); full output in {log}:\n{tail}"
        )
    if redraw:
        out.write(f"{label}built in {fmt(took):>7}  {t.path}\n")
    else:
        out.write(f"[mcs build] {t.name} v{t.version}: built in {fmt(took)} -> {t.path}\n")
    out.flush()
    return took


@contextlib.contextmanager
def _display(
    t: Target, label: str, estimate: str, out: TextIO, redraw: bool
) -> Iterator[Callable[[str], None]]:
    """What shows a build's phases: on a terminal one line redrawn in place (rich's
    progress: the phase, the time so far, the estimate; gone when the build ends), else a
    plain line per phase change."""
    if not redraw:
        seen = {"done"}

        def plain(phase: str) -> None:
            if phase not in seen:
                seen.add(phase)
                out.write(f"[mcs build] {t.name} v{t.version}: {phase} ({estimate})\n")
                out.flush()

        yield plain
        return
    columns = (
        TextColumn(label, markup=False),
        TextColumn("{task.fields[phase]:<18}", markup=False),
        TimeElapsedColumn(),
        TextColumn(f"({estimate})", markup=False),
    )
    with Progress(*columns, console=Console(file=out), transient=True) as progress:
        task = progress.add_task(t.name, phase="starting", total=None)
        yield lambda phase: progress.update(task, phase=phase)


def _read_phases(proc: subprocess.Popen[str], phases: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            phases.put(line.strip())
    phases.put(None)
