"""``make mutants``: apply each named mutant of tests/mutants/table.py, run the tests that
must kill it, and report.

The working tree is never touched: the repository's files (tracked and untracked, minus
ignored ones) are copied to a temporary directory once; each mutant is written into the
copy, its killing tests run there (``PYTHONPATH`` = the copy, no bytecode written, so a
restored file can never be shadowed by a mutant's stale .pyc), and the file is restored.

One line per mutant, then ``N mutants, K killed``. A mutant is killed when its tests fail
(pytest exit status 1) or time out; when they pass it SURVIVED; when its ``old`` text is
not in the file exactly once, or pytest cannot run the tests (no such test, a collection
error), it is an ERROR. Exit status 0 only when every mutant is killed.

Usage: python -m tests.mutants.run [--only NAME ...] [--timeout SECONDS] [--list]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.mutants.table import MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
#: Default per-mutant timeout (s): the simulator's fast tier takes about 10 CPU-seconds.
DEFAULT_TIMEOUT_S = 300


def table_problems(root: Path = ROOT) -> list[str]:
    """What is wrong with the table against the tree at ``root`` (empty: nothing)."""
    problems = []
    names = [m.name for m in MUTANTS]
    if len(set(names)) != len(names):
        problems.append("mutant names are not unique")
    for mutant in MUTANTS:
        problem = _patch_problem(root, mutant)
        if problem:
            problems.append(f"{mutant.name}: {problem}")
        for node in mutant.kill:
            path, _, function = node.partition("::")
            test_file = root / path
            if not test_file.is_file():
                problems.append(f"{mutant.name}: no test file {path}")
            elif function and f"def {function}(" not in test_file.read_text(encoding="utf-8"):
                problems.append(f"{mutant.name}: no test {function} in {path}")
    return problems


def _patch_problem(root: Path, mutant: Mutant) -> str | None:
    target = root / mutant.path
    if not target.is_file():
        return f"no file {mutant.path}"
    count = target.read_text(encoding="utf-8").count(mutant.old)
    if count != 1:
        return f"old text occurs {count} times in {mutant.path} (must be exactly once)"
    if mutant.old == mutant.new:
        return "old and new text are the same"
    return None


def _copy_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = raw.decode()
        source = ROOT / relative
        if source.is_file():  # a deleted-but-tracked file is listed too
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)


def run_mutant(copy: Path, mutant: Mutant, timeout_s: int) -> tuple[str, float]:
    """Apply ``mutant`` in ``copy``, run its tests, restore; (verdict, seconds)."""
    problem = _patch_problem(copy, mutant)
    if problem:
        return f"ERROR ({problem})", 0.0
    target = copy / mutant.path
    original = target.read_text(encoding="utf-8")
    target.write_text(original.replace(mutant.old, mutant.new, 1), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
    started = time.perf_counter()
    try:
        result = subprocess.run(
            [*command, *mutant.kill],
            cwd=copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        status: int | None = result.returncode
    except subprocess.TimeoutExpired:
        status = None
    finally:
        target.write_text(original, encoding="utf-8")
    seconds = time.perf_counter() - started
    if status is None:
        return f"killed (timeout after {timeout_s} s)", seconds
    if status == 1:
        return "killed", seconds
    if status == 0:
        return "SURVIVED", seconds
    return f"ERROR (pytest exit status {status})", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only these mutants")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT_S)
    parser.add_argument("--list", action="store_true", help="print the table and exit")
    args = parser.parse_args(argv)
    selected = [m for m in MUTANTS if args.only is None or m.name in args.only]
    if args.list:
        for mutant in selected:
            print(f"{mutant.name:40} {mutant.path:28} {' '.join(mutant.kill)}")
        return 0
    killed = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quorum-mutants-") as tmp:
        copy = Path(tmp)
        _copy_tree(copy)
        for mutant in selected:
            verdict, seconds = run_mutant(copy, mutant, args.timeout)
            killed += verdict.startswith("killed")
            kill_tests = ", ".join(node.rpartition("::")[2] or node for node in mutant.kill)
            print(f"{mutant.name:40} {verdict:10} {seconds:6.1f} s  by {kill_tests}", flush=True)
    print(f"# {time.perf_counter() - started:.0f} s in all")
    print(f"{len(selected)} mutants, {killed} killed")
    return 0 if killed == len(selected) else 1


if __name__ == "__main__":
    sys.exit(main())
