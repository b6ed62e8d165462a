"""The opcode bodies, one module per category, and the one implementation table.

The categories are those of the conformance vectors: ``<category>.py`` here is tested by
``tests/vectors/vm/<category>.json`` (``deploy.json`` and ``gas.json`` test the entry
points and gas accounting, which have no opcodes of their own).

Before a body runs, the interpreter has checked the stack's height against the opcode
table (enough operands, room for the results). Each body then works in three marked steps,
as in the Ethereum execution specs:

* ``stack``: pop its operands;
* ``gas``: charge its whole price with :func:`contracts.gas.charge` -- the base cost, then
  any cost per byte (after checking the operands that size it) -- before any state change;
* ``operation``: check the operands and do it, raising :class:`ExceptionalHalt` for
  anything the contract got wrong (a wrong type, overflow, a bad index, a state change
  in a read-only call, ...).

The base cost is charged before an operand's type is checked, so a contract that is both
out of gas and wrong halts out of gas; that order is consensus (it decides a receipt's
status and error text), as are the words of every error.

Must never: raise anything but ExceptionalHalt for a contract's mistake, loop or recurse
for longer than the gas charged allows, or consult anything outside the frame.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body
from contracts.instructions import (
    arithmetic,
    calls,
    control,
    environment,
    events,
    locals_args,
    logic,
    stack,
    storage,
    value,
)
from contracts.instructions import bytes as byte_strings
from contracts.opcodes import Op

#: Category name (its module and its vector file) -> that category's bodies.
CATEGORIES: Final[dict[str, dict[Op, Body]]] = {
    "control": control.IMPLEMENTATIONS,
    "stack": stack.IMPLEMENTATIONS,
    "arithmetic": arithmetic.IMPLEMENTATIONS,
    "logic": logic.IMPLEMENTATIONS,
    "bytes": byte_strings.IMPLEMENTATIONS,
    "locals_args": locals_args.IMPLEMENTATIONS,
    "storage": storage.IMPLEMENTATIONS,
    "events": events.IMPLEMENTATIONS,
    "environment": environment.IMPLEMENTATIONS,
    "value": value.IMPLEMENTATIONS,
    "calls": calls.IMPLEMENTATIONS,
}


def _implementation_table() -> dict[Op, Body]:
    bodies: dict[Op, Body] = {}
    for category in CATEGORIES.values():
        for op, body in category.items():
            if op in bodies:
                raise AssertionError(f"{op.name} has a body in two categories")
            bodies[op] = body
    missing = [op.name for op in Op if op not in bodies]
    if missing:
        raise AssertionError(f"opcodes without a body: {missing}")
    return {op: bodies[op] for op in Op}


#: Opcode -> body, in opcode order: the one table both interpreter loops run.
IMPLEMENTATIONS: Final[dict[Op, Body]] = _implementation_table()
