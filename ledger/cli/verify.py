"""Checking what the node says: the genesis a command verifies against, and ``--trust-node``.

Reads verify by default (ledger/light.py): the CLI holds the genesis — ``--genesis FILE``,
else ``$QUORUM_GENESIS``, else the first node's genesis of ``./testnet`` — and prints only
what it proved. A failed check exits with code 6 and names what failed. ``--trust-node``
skips checking and says so in the output (``"verified": false``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import click

from ledger.cli.output import EXIT_UNVERIFIED, CommandError
from ledger.testnet import DEFAULT_TESTNET_DIR, MANIFEST_FILE_NAME

GENESIS_ENV: Final = "QUORUM_GENESIS"
_F = TypeVar("_F", bound=Callable[..., object])

if TYPE_CHECKING:  # the light client is imported when a command verifies, not at start
    from ledger.light import LightClient


def verify_options(command: _F) -> _F:
    """``--genesis FILE`` and ``--trust-node`` for a command that reads from a node."""
    command = click.option(
        "--trust-node",
        is_flag=True,
        help="Do not check the node's answer against the genesis (says so in the output).",
    )(command)
    command = click.option(
        "--genesis",
        "genesis_file",
        type=click.Path(path_type=Path),
        help=f"Genesis to verify against (default: ${GENESIS_ENV}, then ./{DEFAULT_TESTNET_DIR}).",
    )(command)
    return command


def genesis_path(genesis_file: Path | None) -> Path:
    if genesis_file is not None:
        return genesis_file
    env = os.environ.get(GENESIS_ENV)
    if env:
        return Path(env)
    manifest = Path(DEFAULT_TESTNET_DIR) / MANIFEST_FILE_NAME
    if manifest.exists():
        try:
            first = json.loads(manifest.read_text(encoding="utf-8"))["nodes"][0]
            return Path(DEFAULT_TESTNET_DIR) / str(first["name"]) / "genesis.json"
        except (ValueError, KeyError, IndexError, TypeError):
            raise CommandError(f"{manifest} is damaged; give --genesis FILE") from None
    raise CommandError(
        f"no genesis to check the node's answer against: give --genesis FILE, set "
        f"${GENESIS_ENV}, run next to ./{DEFAULT_TESTNET_DIR}, or pass --trust-node"
    )


def light_client(genesis_file: Path | None) -> LightClient:
    from genesis.checks import GenesisError
    from genesis.document import load_genesis
    from ledger.light import LightClient

    path = genesis_path(genesis_file)
    try:
        return LightClient(load_genesis(path))
    except GenesisError as exc:
        raise CommandError(f"cannot verify against {path}: {exc}") from None


def unverified(message: str) -> CommandError:
    """The node's answer failed a check: exit 6 with what failed."""
    return CommandError(f"not verified: {message}", EXIT_UNVERIFIED, code_name="unverified")
