"""Stage 5: the optimized code as ``.qasm`` text, assembled by contracts.assembler.

The text is what ``quorum contract compile --asm`` prints: ABI directives, labels, and
each run of instructions under a comment quoting the Python line it came from. The
assembler turns it into the code container (ABI section and code) and validates it, so
a compiled contract is deployed exactly like a hand-written one.

Must never: build a container any other way than through the assembler.
"""

from __future__ import annotations

from typing import Final

from contracts.lang.ir import Directive, Ins, Item, Label

_INDENT: Final = "    "


def literal(value: int | bytes) -> str:
    """An assembler literal: decimal, a quoted string when printable ASCII, else hex."""
    if isinstance(value, int):
        return str(value)
    if value and all(0x20 <= byte < 0x7F for byte in value):
        text = value.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    return "0x" + value.hex()


def assembly_text(code: list[Item], source: str, title: str) -> str:
    """``code`` as assembler source, with the Python source lines as comments."""
    lines = source.splitlines()
    out = [f"; {title}", "; compiled by contracts.lang from Python; do not edit"]
    shown_line = -1
    for item in code:
        if isinstance(item, Directive):
            out.append("")
            out.append(item.text)
            shown_line = -1
        elif isinstance(item, Label):
            out.append(f"{item.name}:")
        else:
            if item.line and item.line != shown_line and item.line <= len(lines):
                text = lines[item.line - 1].strip()
                out.append(f"{_INDENT}; {item.line}: {text}")
                shown_line = item.line
            out.append(_INDENT + _instruction(item))
    return "\n".join(out) + "\n"


def _instruction(item: Ins) -> str:
    if item.arg is None:
        return item.op
    if not isinstance(item.arg, str):
        return f"{item.op} {literal(item.arg)}"
    return f"{item.op} {item.arg}"
