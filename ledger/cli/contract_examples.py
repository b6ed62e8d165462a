"""The example contracts in the CLI: `quorum contract examples`, and deploying one by name.

The examples (token, lock, registry, vote) ship inside the package as assembly source
(``contracts/examples/*.qasm``, package data), so ``quorum contract deploy token`` works
from an installed wheel exactly as from a checkout. A path to a file still works, and a
file that exists wins over an example of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from contracts import examples
from contracts.assembler import AssemblyError, assemble
from contracts.container import parse_container
from ledger.cli.output import EXIT_USAGE, CommandError, Output, command_errors, json_option


def _available() -> str:
    return ", ".join(examples.EXAMPLES)


def load_contract(argument: str) -> bytes:
    """The code container named by ``argument``: a .qasm or container file, or an example."""
    path = Path(argument)
    if path.is_file():
        raw = path.read_bytes()
        if path.suffix != ".qasm":
            return raw
        try:
            return assemble(raw.decode("utf-8"))
        except (AssemblyError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from None
    if argument in examples.EXAMPLES:
        return examples.load(argument)
    if path.exists():
        raise CommandError(f"{path} is not a file")
    if len(path.parts) > 1 or path.suffix:
        raise CommandError(
            f"contract file {path} does not exist (or name an example: {_available()})"
        )
    raise CommandError(
        f"{argument!r} is neither a contract file nor an example; the examples are: "
        f"{_available()} (`quorum contract examples` describes them)",
        EXIT_USAGE,
        examples=list(examples.EXAMPLES),
    )


def describe(name: str) -> dict[str, Any]:
    """What ``quorum contract examples`` says about example ``name``."""
    abi = parse_container(examples.load(name)).abi
    return {
        "name": name,
        "summary": examples.summary(name),
        "constructor": None if abi.constructor is None else abi.constructor.signature(),
        "methods": [method.signature() for method in abi.methods],
    }


def _table(docs: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Example contracts (shipped with quorum)")
    table.add_column("name", style="bold")
    table.add_column("what it is")
    table.add_column("constructor")
    table.add_column("methods")
    for doc in docs:
        methods = ", ".join(m.split("(", 1)[0] for m in doc["methods"])
        table.add_row(doc["name"], doc["summary"], doc["constructor"] or "-", methods)
    console.print(table)
    console.print(
        "Deploy one by name: quorum contract deploy token --args 1000000 --from KEYFILE\n"
        "Show its source (to start your own): quorum contract examples token"
    )


@click.command("examples")
@click.argument("name", required=False)
@json_option
@command_errors
def contract_examples(name: str | None, as_json: bool) -> None:
    """List the example contracts that ship with quorum, or print one's source."""
    out = Output(as_json)
    if name is None:
        docs = [describe(n) for n in examples.EXAMPLES]
        out.emit({"examples": docs}, lambda console: _table(docs, console))
        return
    if name not in examples.EXAMPLES:
        raise CommandError(
            f"no example contract {name!r}; the examples are: {_available()}",
            EXIT_USAGE,
            examples=list(examples.EXAMPLES),
        )
    source = examples.source(name)
    out.emit({**describe(name), "source": source}, lambda _console: click.echo(source, nl=False))
