"""Compile a contract written in Python (contracts.lang) to a VM code container.

    compiled = compile_source(text, "token.py")
    compiled.container   # deploy these bytes (the ABI is inside, as for assembly)
    compiled.assembly    # the .qasm text the assembler built it from

Stages: contracts.lang.parse -> check -> lower -> optimize -> emit, then the assembler.
A :class:`~contracts.lang.model.CompileError` names the file, line and column of the
first problem and says what is allowed instead; nothing is produced.

Must never: read files (callers pass the text), or let anything but CompileError escape
for bad source.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.abi import ContractAbi
from contracts.assembler import AssemblyError, assemble
from contracts.container import HEADER_BYTES, parse_container
from contracts.lang.check import check_program
from contracts.lang.emit import assembly_text
from contracts.lang.lower import lower_program
from contracts.lang.model import CompileError, MapType, Program
from contracts.lang.optimize import optimize
from contracts.lang.parse import parse_program

__all__ = ["CompileError", "CompiledContract", "StorageField", "compile_source"]


@dataclass(frozen=True, slots=True)
class StorageField:
    """Where a storage field lives: a scalar at ``prefix``, a map entry at ``prefix`` + key."""

    name: str
    type: str
    prefix: bytes


@dataclass(frozen=True, slots=True)
class CompiledContract:
    name: str  # the contract class
    container: bytes
    assembly: str
    abi: ContractAbi
    storage: tuple[StorageField, ...]

    @property
    def code_bytes(self) -> int:
        """Bytes of the code section (the container also holds the header and ABI)."""
        return len(self.container) - HEADER_BYTES - self.abi_bytes

    @property
    def abi_bytes(self) -> int:
        return int.from_bytes(self.container[4:HEADER_BYTES], "big")

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary for the CLI."""
        return {
            "contract": self.name,
            "size": len(self.container),
            "code_bytes": self.code_bytes,
            "abi_bytes": self.abi_bytes,
            "abi": self.abi.describe(),
            "storage": [
                {"name": f.name, "type": f.type, "prefix": f.prefix.hex()} for f in self.storage
            ],
        }


def compile_source(source: str, filename: str = "<source>") -> CompiledContract:
    """Compile contract source ``source`` (named ``filename`` in errors)."""
    try:
        program = parse_program(source)
        code = optimize(lower_program(program, check_program(program)))
    except CompileError as exc:
        exc.filename = filename
        raise
    except RecursionError:
        raise CompileError("the source nests too deeply for the compiler", 1, 1, filename) from None
    text = assembly_text(code, source, f"{program.name}, from {filename}")
    try:
        container = assemble(text)
    except AssemblyError as exc:  # only the VM's size limits can be left to fail here
        node = program.node
        raise CompileError(
            f"the compiled contract does not fit the VM: {exc}; split it into smaller contracts",
            node.lineno,
            node.col_offset + 1,
            filename,
        ) from None
    return CompiledContract(
        program.name, container, text, parse_container(container).abi, _storage(program)
    )


def _storage(program: Program) -> tuple[StorageField, ...]:
    return tuple(
        StorageField(f.name, str(f.type) if isinstance(f.type, MapType) else f.type.value, f.prefix)
        for f in program.fields.values()
    )
