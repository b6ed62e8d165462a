"""The CLI starts fast: a command imports what it uses, when it runs (issue 20).

Structural checks, not timings: a subprocess runs the real entry point and reports the
modules it imported. `quorum --version` and `quorum --help` load click and nothing of
ours but the CLI's entry module; a command's help loads that command's module, never a
harness or the node unless the command is one. And nothing but the CLI loads a harness.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ledger.cli.main import COMMANDS, LazyGroup, cli

ROOT = Path(__file__).resolve().parent.parent

#: Runs `quorum ARGS...` in process, then prints the imported module names on stderr.
PROBE = """
import json, sys
from ledger.cli.main import main
sys.argv = ["quorum", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\n" + json.dumps(sorted(sys.modules)) + "\\n")
"""

#: Heavy or runtime modules that printing the version or the help must not load.
HEAVY = ("trio", "httpx", "sqlalchemy", "nacl", "rich", "cryptography", "starlette", "hypercorn")
HARNESSES_AND_NODE = ("ledger.bench", "ledger.chaos", "ledger.node")
OUR_PACKAGES = ("crypto", "consensus", "contracts", "genesis", "ledger")


def _loaded(*args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def _under(loaded: set[str], roots: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if m.split(".")[0] in roots or m.startswith(roots))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["-h"]], ids=" ".join)
def test_version_and_help_load_click_and_nothing_heavy(args: list[str]) -> None:
    loaded = _loaded(*args)
    assert not _under(loaded, HEAVY + HARNESSES_AND_NODE)
    ours = {m for m in loaded if m.split(".")[0] in OUR_PACKAGES}
    assert ours <= {"ledger", "ledger.cli", "ledger.cli.main"}, sorted(ours)


@pytest.mark.parametrize("command", ["keys", "genesis", "testnet", "tx", "contract", "query"])
def test_a_command_loads_no_harness_and_no_node(command: str) -> None:
    loaded = _loaded(command, "--help")
    assert COMMANDS[command].module in loaded
    assert not _under(loaded, ("sqlalchemy", "trio", *HARNESSES_AND_NODE))


def test_the_command_list_matches_the_commands() -> None:
    """`quorum --help` shows COMMANDS' one-line help: it must be each command's own."""
    context = click.Context(cli)
    assert isinstance(cli, LazyGroup)
    for name, entry in COMMANDS.items():
        command = cli.get_command(context, name)
        assert command is not None and command.name == name
        if entry.help is None:
            assert command.hidden, name
        else:
            assert not command.hidden and entry.help == command.get_short_help_str(1000), name
    assert list(COMMANDS) == sorted(COMMANDS)


def test_only_the_cli_and_the_harnesses_import_a_harness() -> None:
    """ledger.bench and ledger.chaos drive a network from outside; the node never loads them."""
    bad = []
    for path in sorted((ROOT / "ledger").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[1] in ("cli", "bench", "chaos"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad += [
                f"{rel}:{node.lineno} imports {name}"
                for name in names
                if name.startswith(("ledger.bench", "ledger.chaos"))
            ]
    assert not bad, bad
