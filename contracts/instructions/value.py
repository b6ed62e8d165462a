"""Value: transfer.

Vectors: tests/vectors/vm/value.json. ``transfer`` moves value from this contract's
balance to any address (creating its account); moving 0, or to itself, changes nothing.

Must never: move value in a read-only call, overdraw, or overflow a balance.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, ExceptionalHalt, Frame
from contracts.gas import GAS_TRANSFER, charge
from contracts.instructions.operands import as_address, as_u64, require_writable
from contracts.limits import U64_MAX
from contracts.opcodes import Op


def transfer(frame: Frame, _: None) -> None:
    # stack
    stack = frame.stack
    a = stack.pop()
    recipient = stack.pop()
    # gas
    charge(frame, GAS_TRANSFER)
    # operation
    amount = as_u64(a, "transfer amount")
    to = as_address(recipient, "transfer recipient")
    require_writable(frame, "transfer")
    world = frame.env.world
    available = world.balance(frame.address)
    if amount > available:
        raise ExceptionalHalt(f"transfer of {amount} with a balance of {available}")
    if amount == 0 or to == frame.address:
        return
    received = world.balance(to) + amount
    if received > U64_MAX:
        raise ExceptionalHalt("transfer overflows the recipient's balance")
    world.set_balance(frame.address, available - amount)
    world.set_balance(to, received)


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.TRANSFER: transfer,
}
