"""`quorum contract compile FILE.py`: contracts written in Python (contracts.lang).

The same compilation runs when ``quorum contract deploy FILE.py`` deploys one: a compile
error stops the command with exit 2 and the error's file, line and column, before any key
is read or anything is sent. The ABI travels inside the compiled code, exactly as for an
assembled contract, so ``contract call`` and ``contract query`` find methods by name.
"""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from contracts.lang.compiler import CompiledContract
from ledger.cli.contract_examples import compile_text, python_source
from ledger.cli.output import Output, command_errors, json_option


def _summary(compiled: CompiledContract, filename: str) -> dict[str, Any]:
    return {
        "file": filename,
        **compiled.describe(),
        "code": compiled.container.hex(),
        "assembly": compiled.assembly,
    }


def _render(doc: dict[str, Any], console: Console) -> None:
    console.print(
        f"{doc['contract']} ({doc['file']}): {doc['size']} bytes "
        f"(code {doc['code_bytes']}, ABI {doc['abi_bytes']})"
    )
    table = Table(title="ABI")
    table.add_column("method", style="bold")
    table.add_column("signature")
    constructor = doc["abi"]["constructor"]
    if constructor is not None:
        table.add_row("constructor", constructor["signature"])
    for method in doc["abi"]["methods"]:
        table.add_row(method["name"], method["signature"])
    console.print(table)
    storage = Table(title="Storage (a map entry's key: prefix ++ key parts)")
    storage.add_column("field", style="bold")
    storage.add_column("type")
    storage.add_column("prefix")
    for field in doc["storage"]:
        storage.add_row(field["name"], field["type"], "0x" + field["prefix"])
    console.print(storage)


@click.command("compile")
@click.argument("source_file", metavar="FILE.py")
@click.option("--asm", "show_asm", is_flag=True, help="Print the assembly (a .qasm file).")
@json_option
@command_errors
def contract_compile(source_file: str, show_asm: bool, as_json: bool) -> None:
    """Compile a contract written in Python: print its ABI, storage and size (--asm: the
    assembly). Shipped examples compile by name too: token.py, lock.py, ..."""
    raw, filename = python_source(source_file)
    compiled = compile_text(raw, filename)
    doc = _summary(compiled, filename)
    out = Output(as_json)
    if show_asm and not as_json:
        click.echo(compiled.assembly, nl=False)
        _render(doc, out.err_console)
        return
    out.emit(doc, lambda console: _render(doc, console))
