"""The example contracts in the CLI: `quorum contract examples`, and deploying one by name.

The examples (token, lock, registry, vote) ship inside the package twice: as assembly
(``contracts/examples/<name>.qasm``, package data) and as Python (``<name>.py``, compiled
by contracts.lang). ``quorum contract deploy token`` deploys the assembly, ``token.py``
the Python version, from an installed wheel exactly as from a checkout. A path to a file
still works (``.qasm`` is assembled, ``.py`` compiled, anything else is taken as a code
container), and a file that exists wins over an example of the same name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table

from contracts import examples
from contracts.assembler import AssemblyError, assemble
from contracts.container import parse_container
from contracts.lang.compiler import CompiledContract, CompileError, compile_source
from ledger.cli.output import EXIT_USAGE, CommandError, Output, command_errors, json_option


def _available() -> str:
    return ", ".join(examples.EXAMPLES)


def compile_text(raw: bytes, filename: str) -> CompiledContract:
    """Compile Python contract source; a file that does not compile is a usage error
    (exit 2), reported with its file, line and column."""
    try:
        return compile_source(raw.decode("utf-8"), filename)
    except UnicodeDecodeError:
        raise CommandError(f"{filename}: not UTF-8 text", EXIT_USAGE) from None
    except CompileError as exc:
        raise CommandError(str(exc), EXIT_USAGE, line=exc.line, column=exc.column) from None


def example_ref(argument: str) -> tuple[str, str] | None:
    """(name, language) if ``argument`` names a shipped example: ``token`` (its assembly),
    ``token.qasm`` or ``token.py``."""
    if argument in examples.EXAMPLES:
        return argument, "qasm"
    stem, dot, language = argument.rpartition(".")
    if dot and stem in examples.EXAMPLES and language in examples.LANGUAGES:
        return stem, language
    return None


def load_contract(argument: str) -> bytes:
    """The code container named by ``argument``: a .qasm, .py or container file, or an
    example (``token``, ``token.py``). A .py file that does not compile exits 2."""
    path = Path(argument)
    if path.is_file():
        raw = path.read_bytes()
        if path.suffix == ".py":
            return compile_text(raw, str(path)).container
        if path.suffix != ".qasm":
            return raw
        try:
            return assemble(raw.decode("utf-8"))
        except (AssemblyError, UnicodeDecodeError) as exc:
            raise CommandError(f"{path}: {exc}") from None
    ref = example_ref(argument) if not path.exists() else None
    if ref is not None:
        name, language = ref
        return examples.load(name) if language == "qasm" else examples.load_python(name)
    _missing(argument)


def python_source(argument: str) -> tuple[bytes, str]:
    """The Python source named by ``argument`` (a file, or an example like ``token.py``)
    and the name to report it by."""
    path = Path(argument)
    if path.is_file():
        return path.read_bytes(), str(path)
    ref = example_ref(argument) if not path.exists() else None
    if ref is not None and ref[1] == "py":
        return examples.source(ref[0], "py").encode("utf-8"), f"{ref[0]}.py"
    if ref is not None:
        raise CommandError(f"{argument} is an assembly example: compile {ref[0]}.py", EXIT_USAGE)
    _missing(argument)


def _missing(argument: str) -> NoReturn:
    path = Path(argument)
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
    """What ``quorum contract examples`` says about example ``name`` (both versions have
    the same ABI: tests/contracts/test_lang_examples.py checks it)."""
    abi = parse_container(examples.load(name)).abi
    return {
        "name": name,
        "summary": examples.summary(name),
        "constructor": None if abi.constructor is None else abi.constructor.signature(),
        "methods": [method.signature() for method in abi.methods],
        "sources": [f"{name}.{language}" for language in examples.LANGUAGES],
    }


def _table(docs: list[dict[str, Any]], console: Console) -> None:
    table = Table(title="Example contracts (shipped with quorum)")
    table.add_column("name", style="bold")
    table.add_column("sources")
    table.add_column("what it is")
    table.add_column("constructor")
    table.add_column("methods")
    for doc in docs:
        methods = ", ".join(m.split("(", 1)[0] for m in doc["methods"])
        sources = ", ".join(doc["sources"])
        table.add_row(doc["name"], sources, doc["summary"], doc["constructor"] or "-", methods)
    console.print(table)
    console.print(
        "Deploy one by name: quorum contract deploy token.py --args 1000000 --from KEYFILE\n"
        "  (token.py: the Python version, compiled on the fly; token: the assembly)\n"
        "Show its source (to start your own): quorum contract examples token.py"
    )


@click.command("examples")
@click.argument("name", required=False)
@json_option
@command_errors
def contract_examples(name: str | None, as_json: bool) -> None:
    """List the example contracts that ship with quorum, or print one's source
    (NAME: token for the assembly, token.py for the Python version)."""
    out = Output(as_json)
    if name is None:
        docs = [describe(n) for n in examples.EXAMPLES]
        out.emit({"examples": docs}, lambda console: _table(docs, console))
        return
    ref = example_ref(name)
    if ref is None:
        raise CommandError(
            f"no example contract {name!r}; the examples are: {_available()} "
            "(add .py for the Python versions)",
            EXIT_USAGE,
            examples=list(examples.EXAMPLES),
        )
    example, language = ref
    source = examples.source(example, language)
    doc = {**describe(example), "language": language, "source": source}
    out.emit(doc, lambda _console: click.echo(source, nl=False))
