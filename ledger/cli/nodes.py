"""Which node a command talks to, and turning client errors into exit codes.

``--node`` defaults to ``$QUORUM_NODE``, then to the first node of ``./testnet`` (DESIGN
section 6).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Final

import click

from ledger.cli.output import EXIT_REJECTED, EXIT_UNREACHABLE, CommandError
from ledger.client import NodeUnreachable, QuorumClient, RequestFailed
from ledger.testnet import DEFAULT_TESTNET_DIR, MANIFEST_FILE_NAME

NODE_ENV: Final = "QUORUM_NODE"

node_option = click.option(
    "--node",
    "node_url",
    metavar="URL",
    help=f"Node RPC URL (default: ${NODE_ENV}, then the first node of ./{DEFAULT_TESTNET_DIR}).",
)


def resolve_node_url(node_url: str | None) -> str:
    if node_url:
        return node_url
    env = os.environ.get(NODE_ENV)
    if env:
        return env
    manifest = Path(DEFAULT_TESTNET_DIR) / MANIFEST_FILE_NAME
    if manifest.exists():
        try:
            nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"]
            return str(nodes[0]["rpc"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise CommandError(f"{manifest} is damaged; give --node URL") from None
    raise CommandError(
        f"no node given: use --node URL, set ${NODE_ENV}, or run in a directory with ./{DEFAULT_TESTNET_DIR}"
    )


def connect(node_url: str | None) -> QuorumClient:
    return QuorumClient(resolve_node_url(node_url))


def client_error(exc: Exception) -> CommandError:
    """A client failure as a user-facing error with DESIGN section 6's exit codes."""
    if isinstance(exc, NodeUnreachable):
        return CommandError(str(exc), EXIT_UNREACHABLE)
    if isinstance(exc, RequestFailed):
        code = EXIT_REJECTED if 400 <= exc.status < 500 else EXIT_UNREACHABLE
        return CommandError(
            f"the node refused the request: {exc.message}", code, code_name=exc.code
        )
    raise exc
