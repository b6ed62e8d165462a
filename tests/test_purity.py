"""Import rules of DESIGN section 1, enforced.

consensus/ (outside consensus/sim/), contracts/ and the node engine (ledger/engine/) are
pure: no I/O, no clock, no randomness, no threads. Imports flow one way: crypto <-
consensus, contracts <- genesis <- ledger; ledger.chain imports neither ledger.engine,
ledger.node nor ledger.cli; ledger.engine imports neither ledger.node nor ledger.cli;
nothing imports the CLI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Modules whose import means I/O, time, randomness or concurrency.
IMPURE_MODULES = frozenset(
    {
        "trio", "anyio", "asyncio", "sqlalchemy", "sqlite3", "socket", "ssl", "select",
        "selectors", "time", "datetime", "random", "secrets", "os", "sys", "io", "pathlib",
        "shutil", "tempfile", "threading", "multiprocessing", "concurrent", "subprocess",
        "signal", "uuid", "httpx", "hypercorn", "starlette", "logging", "pickle", "marshal",
        "importlib", "ctypes",
    }
)  # fmt: skip
#: Builtins that reach outside the process or depend on memory layout / hash seeds.
IMPURE_BUILTINS = frozenset(
    {"open", "input", "print", "eval", "exec", "compile", "__import__", "hash", "id", "breakpoint"}
)
#: consensus/sim owns a seeded random.Random; still no clock, sockets or threads.
SIM_ALLOWED = frozenset({"random"})


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def _builtin_calls(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.lineno, node.func.id)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in IMPURE_BUILTINS
    ]


def _pure_files() -> list[Path]:
    return _python_files("consensus") + _python_files("contracts") + _python_files("ledger/engine")


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_packages_import_no_io_or_nondeterminism(path: Path) -> None:
    in_sim = "sim" in path.relative_to(ROOT).parts[1:-1] or path.parent.name == "sim"
    allowed = SIM_ALLOWED if in_sim else frozenset()
    bad = [
        f"line {line}: import {name}"
        for line, name in _imports(path)
        if name.split(".")[0] in IMPURE_MODULES and name.split(".")[0] not in allowed
    ]
    bad += [f"line {line}: call to {name}()" for line, name in _builtin_calls(path)]
    assert not bad, f"{path.relative_to(ROOT)} is impure: {bad}"


LAYERS = {
    "crypto": {"consensus", "contracts", "genesis", "ledger"},
    "consensus": {"contracts", "genesis", "ledger"},
    "contracts": {"consensus", "genesis", "ledger"},
    "genesis": {"ledger"},
}


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_imports_flow_one_way(package: str) -> None:
    forbidden = LAYERS[package]
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in _python_files(package)
        for line, name in _imports(path)
        if name.split(".")[0] in forbidden
    ]
    assert not bad, bad


def _is_in(name: str, *packages: str) -> bool:
    """``name`` is one of ``packages`` or inside one (``ledger.client`` is not ``ledger.cli``)."""
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_chain_and_engine_never_import_the_shell_and_nothing_imports_cli() -> None:
    bad = []
    for path in _python_files("ledger"):
        rel = path.relative_to(ROOT)
        for line, name in _imports(path):
            if rel.parts[:2] == ("ledger", "chain") and _is_in(name, "ledger.node", "ledger.cli"):
                bad.append(f"{rel}:{line} imports {name}")
            if rel.parts[:2] != ("ledger", "cli") and _is_in(name, "ledger.cli"):
                bad.append(f"{rel}:{line} imports {name}")
            if rel.parts[:2] == ("ledger", "node") and _is_in(name, "ledger.cli"):
                bad.append(f"{rel}:{line} imports {name}")
    assert not bad, bad


def test_importing_the_pure_packages_loads_no_runtime() -> None:
    """Belt and braces: what actually gets loaded, transitively, when the pure code is imported."""
    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in _pure_files()
        if "sim" not in p.relative_to(ROOT).parts
    ]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.split()
    )
    heavy = sorted(
        m for m in ("trio", "sqlalchemy", "asyncio", "threading", "sqlite3", "httpx") if m in loaded
    )
    assert not heavy, f"importing consensus/contracts/ledger.engine loads {heavy}"
