"""The `quorum` command: one entry point, subcommands grouped by what people do.

Every command takes ``--json``; exit codes are those of DESIGN section 6 (see
``ledger.cli.output``). User mistakes are caught at this edge and printed as one line.
"""

from __future__ import annotations

import click

from ledger import __version__
from ledger.cli import (
    bench_cmd,
    chaos_cmd,
    genesis_cmd,
    keys_cmd,
    node_cmd,
    sim_cmd,
    testnet_cmd,
    tx_cmd,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="quorum")
def cli() -> None:
    """Quorum Ledger: a Byzantine-fault-tolerant permissioned ledger.

    Start with `quorum testnet init` to make a local 4-validator network.
    """


cli.add_command(keys_cmd.keys)
cli.add_command(genesis_cmd.genesis)
cli.add_command(testnet_cmd.testnet)
cli.add_command(node_cmd.node)
cli.add_command(tx_cmd.tx)
cli.add_command(tx_cmd.contract)
cli.add_command(tx_cmd.query)
cli.add_command(sim_cmd.sim)
cli.add_command(bench_cmd.bench)
cli.add_command(chaos_cmd.chaos)


def main() -> None:
    cli(prog_name="quorum")
