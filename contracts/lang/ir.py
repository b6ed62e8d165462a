"""The lowering's output: assembly instructions, labels and ABI directives, in order.

An :class:`Ins` names an opcode by its assembler mnemonic (``push`` takes an int or
bytes; jumps and ``callsub`` take a label name). The optimizer rewrites these lists and
contracts.lang.emit prints them as ``.qasm`` text for the assembler.

Must never: hold anything the assembler could not read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Instructions after which control never falls through.
TERMINAL: Final = frozenset({"jump", "return", "halt", "revert", "retsub"})
#: Instructions whose operand is a label.
JUMPS: Final = frozenset({"jump", "jz", "jnz", "callsub"})


@dataclass(slots=True)
class Ins:
    op: str
    arg: int | bytes | str | None = None  # str: a label
    line: int = 0  # the source line it came from, for comments


@dataclass(slots=True)
class Label:
    name: str


@dataclass(slots=True)
class Directive:
    """``.method ...`` or ``.constructor(...)``: binds to the next instruction."""

    text: str


Item = Ins | Label | Directive
