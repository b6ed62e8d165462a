"""The environment: caller, self, origin, height, timestamp, callvalue, balance.

Vectors: tests/vectors/vm/environment.json. Everything here is read from the frame, the
transaction or the block header the ledger passed in (``timestamp`` is the header's, in
milliseconds), or for ``balance`` from the journaled world state.

Must never: read a clock or anything else outside the frame.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import Body, Frame
from contracts.gas import GAS_BALANCE_READ, GAS_VERY_LOW, charge
from contracts.instructions.operands import as_address
from contracts.opcodes import Op


def caller(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.caller)


def self_(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.address)


def origin(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.env.origin)


def height(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.env.block.height)


def timestamp(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.env.block.timestamp_ms)


def callvalue(frame: Frame, _: None) -> None:
    # gas
    charge(frame, GAS_VERY_LOW)
    # operation
    frame.stack.append(frame.value)


def balance(frame: Frame, _: None) -> None:
    # stack
    account = frame.stack.pop()
    # gas
    charge(frame, GAS_BALANCE_READ)
    # operation
    address = as_address(account, "balance operand")
    frame.stack.append(frame.env.world.balance(address))


IMPLEMENTATIONS: Final[dict[Op, Body]] = {
    Op.CALLER: caller,
    Op.SELF: self_,
    Op.ORIGIN: origin,
    Op.HEIGHT: height,
    Op.TIMESTAMP: timestamp,
    Op.CALLVALUE: callvalue,
    Op.BALANCE: balance,
}
