"""The `quorum` command: one entry point, subcommands grouped by what people do.

Every command takes ``--json``; exit codes are those of DESIGN section 6 (see
``ledger.cli.output``). User mistakes are caught at this edge and printed as one line.

The CLI starts fast: this module imports click and nothing heavy. A subcommand's module
(and with it trio, httpx, sqlalchemy, the node, the harnesses...) is imported only when
that subcommand runs or shows its own help; ``quorum --help`` lists the commands from
:data:`COMMANDS` without importing them (tests/test_cli_startup.py keeps both honest).
"""

from __future__ import annotations

import importlib
from typing import Final, NamedTuple

import click

from ledger import version


class LazyCommand(NamedTuple):
    """Where a subcommand lives, and its one-line help (its docstring's first line)."""

    module: str
    attribute: str
    help: str | None  # None: hidden from `quorum --help`


#: Every subcommand of `quorum`, in the order `quorum --help` lists them.
COMMANDS: Final[dict[str, LazyCommand]] = {
    "bench": LazyCommand(
        "ledger.cli.bench_cmd",
        "bench",
        "Load a running network through its HTTP API and measure committed tx/s and latency.",
    ),
    "chaos": LazyCommand(
        "ledger.cli.chaos_cmd",
        "chaos",
        "Inject faults into a live testnet under load; check nothing is lost or divergent.",
    ),
    "chaos-flood": LazyCommand("ledger.cli.chaos_cmd", "chaos_flood", None),
    "contract": LazyCommand(
        "ledger.cli.tx_cmd", "contract", "Deploy contracts, call them, and query them read-only."
    ),
    "genesis": LazyCommand(
        "ledger.cli.genesis_cmd", "genesis", "Write and check genesis documents."
    ),
    "keys": LazyCommand(
        "ledger.cli.keys_cmd", "keys", "Create and inspect key files (accounts, validators, nodes)."
    ),
    "node": LazyCommand(
        "ledger.cli.node_cmd", "node", "Create a validator home and run a validator."
    ),
    "permissions": LazyCommand(
        "ledger.cli.permissions_cmd",
        "permissions",
        "Grant and revoke client roles (submit, deploy, admin) and list who holds them.",
    ),
    "query": LazyCommand("ledger.cli.tx_cmd", "query", "Read accounts and blocks."),
    "sim": LazyCommand(
        "ledger.cli.sim_cmd",
        "sim",
        "Run the PBFT simulator: faults, Byzantine validators, invariant checks, trace hash.",
    ),
    "sim-load": LazyCommand(
        "ledger.cli.loadsim_cmd",
        "sim_load",
        "Simulate the node engine under a burst above capacity: goodput, latency, view changes.",
    ),
    "testnet": LazyCommand(
        "ledger.cli.testnet_cmd", "testnet", "Run a multi-validator network on this machine."
    ),
    "tx": LazyCommand("ledger.cli.tx_cmd", "tx", "Send transfers and look up transactions."),
    "validators": LazyCommand(
        "ledger.cli.validators_cmd",
        "validators",
        "Vote validator-set changes (add, remove) and list the set with its epoch.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented LazyGroup)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command = getattr(importlib.import_module(entry.module), entry.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{entry.module}.{entry.attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The commands and their one-line help, from :data:`COMMANDS`: no imports."""
        # Stand-ins carrying only the help text shorten it exactly as click would.
        listed = [click.Command(n, help=e.help) for n, e in COMMANDS.items() if e.help is not None]
        limit = formatter.width - 6 - max(len(str(c.name)) for c in listed)
        rows = [(str(c.name), c.get_short_help_str(limit)) for c in listed]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: computed only when asked for, so other commands never pay for it."""
    if value and not ctx.resilient_parsing:
        click.echo(f"quorum, version {version()}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_print_version,
    help="Show the version (pyproject's, via the installed metadata) and exit.",
)
def cli() -> None:
    """Quorum Ledger: a Byzantine-fault-tolerant permissioned ledger.

    Start with `quorum testnet init` to make a local 4-validator network.
    """


def main() -> None:
    cli(prog_name="quorum")
