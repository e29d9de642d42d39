"""The layers of ARCHITECTURE.md, held against the code: which package may import which,
and the pure core importable with every I/O library of the runtime blocked."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Which of the project's packages each one may import (its own included).
MAY_IMPORT = {
    "mcs.core": {"mcs.core"},
    "mcs.runtime": {"mcs.core", "mcs.runtime"},
    "mcs.status": {"mcs.core", "mcs.runtime", "mcs.status"},
    "mcs.commands": {"mcs.core", "mcs.runtime", "mcs.status", "mcs.commands", "mcs_mesh"},
    "mcs_mesh": {"mcs.runtime", "mcs_mesh"},
}

# What the core must never need: the runtime's I/O and the shell's libraries (the
# standard library's I/O modules are checked in the core's source instead: pydantic
# itself imports some of them).
BLOCKED = [
    "aiohttp",
    "kubernetes_asyncio",
    "prometheus_client",
    "rich",
    "structlog",
    "yaml",
    "mcs.runtime",
    "mcs.commands",
    "mcs.status",
    "mcs_mesh",
]


def layer_of(module: str) -> str | None:
    return next(
        (layer for layer in MAY_IMPORT if module == layer or module.startswith(layer + ".")), None
    )


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports (absolute imports, anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m == "mcs" or m.startswith(("mcs.", "mcs_mesh"))}


def test_each_layer_imports_only_what_it_may() -> None:
    wrong = []
    for path in sorted(
        [*ROOT.joinpath("mcs").rglob("*.py"), *ROOT.joinpath("mcs_mesh").rglob("*.py")]
    ):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        layer = layer_of(module)
        if layer is None:
            continue  # mcs/__init__.py, mcs/__main__.py
        for imported in imports_of(path):
            target = layer_of(imported)
            if target is not None and target not in MAY_IMPORT[layer]:
                wrong.append(f"{module} imports {imported} ({layer} may not import {target})")
    assert wrong == []


def test_the_core_does_no_io_itself() -> None:
    io = {"asyncio", "socket", "subprocess", "os", "time", "threading", "urllib.request"}
    wrong = []
    for path in sorted(ROOT.joinpath("mcs", "core").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            wrong += [f"{path.name}: {n}" for n in names if n in io]
    assert wrong == []


def test_no_private_name_is_taken_from_another_module() -> None:
    wrong = []
    for path in sorted(
        [*ROOT.joinpath("mcs").rglob("*.py"), *ROOT.joinpath("mcs_mesh").rglob("*.py")]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mcs"):
                wrong += [
                    f"{path.relative_to(ROOT)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert wrong == []


def test_no_module_imports_itself_through_others() -> None:
    """No import circle between modules (lazy imports inside functions included): a
    circle means two modules are one, or one holds what both need."""
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts): p
        for p in [*ROOT.joinpath("mcs").rglob("*.py"), *ROOT.joinpath("mcs_mesh").rglob("*.py")]
        if p.name != "__init__.py"
    }
    graph = {m: {i for i in imports_of(p) if i in modules and i != m} for m, p in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    circles = sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})
    assert circles == []


def test_the_core_imports_with_the_runtime_blocked() -> None:
    """Every module of mcs.core imports in a fresh interpreter that refuses the
    runtime's I/O libraries and the other layers: the core is pure by construction."""
    program = f"""
import importlib, importlib.abc, pkgutil, sys
BLOCKED = {BLOCKED!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"the core may not import {{name}}")
        return None
sys.meta_path.insert(0, Refuse())
import mcs.core
for info in pkgutil.iter_modules(mcs.core.__path__, "mcs.core."):
    importlib.import_module(info.name)
print("imported", sorted(m for m in sys.modules if m.startswith("mcs.core.")))
"""
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "mcs.core.plan" in out.stdout and "mcs.core.merge" in out.stdout


def test_the_blocker_refuses_a_blocked_import() -> None:
    """The check above can fail: the same blocker refuses the runtime itself."""
    program = f"""
import importlib.abc, sys
BLOCKED = {BLOCKED!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"refused {{name}}")
        return None
sys.meta_path.insert(0, Refuse())
import mcs.runtime.controller
"""
    out = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0 and "refused" in out.stderr
