"""contracts.lang: write contracts in a typed subset of Python (issue 17).

A contract file imports what it uses from here and defines one class deriving
:class:`Contract`::

    from contracts.lang import Address, Contract, Map, emit, require, sender, view

    class Token(Contract):
        supply: int
        balances: Map[Address, int]

        def __init__(self, supply: int) -> None:
            self.supply = supply
            self.balances[sender()] = supply

        @view
        def balance_of(self, owner: Address) -> int:
            return self.balances[owner]

``quorum contract compile FILE.py`` turns it into VM code (``contracts.lang.compiler``);
docs/CONTRACTS.md describes the subset, its storage layout and what each construct costs.

These names exist so that editors, mypy and the Python interpreter understand contract
files. Running a contract file under CPython only defines its class: nothing here reaches
a chain. The functions that need one (``sender()``, ``emit()``...) raise
:class:`OnChainOnly` when called outside the VM; ``require`` and ``revert`` raise
:class:`Reverted`, as the VM would revert.

Must never: import the compiler or the VM (a contract file imports this module and nothing
else), or keep any state. ``sha256``, ``to_bytes`` and ``from_bytes`` compute in plain
Python what the VM computes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Final, NoReturn, TypeVar

__all__ = [
    "Address",
    "Contract",
    "Map",
    "OnChainOnly",
    "Reverted",
    "balance",
    "block_height",
    "block_time",
    "call",
    "call_value",
    "emit",
    "from_bytes",
    "origin",
    "payable",
    "require",
    "revert",
    "self_address",
    "sender",
    "sha256",
    "to_bytes",
    "transfer",
    "view",
]

#: Bytes of an address (the VM's ``ADDRESS_BYTES``, restated: this module imports nothing).
ADDRESS_LENGTH: Final = 20

_K = TypeVar("_K")
_V = TypeVar("_V")
_F = TypeVar("_F", bound=Callable[..., object])

#: What an event or a cross-contract call may carry.
Value = int | bytes | str


class OnChainOnly(RuntimeError):
    """A function that only has a meaning inside the VM was called from plain Python."""


class Reverted(Exception):
    """``require`` failed or ``revert`` was called: on the VM the call reverts."""


class Contract:
    """The base of the one contract class of a file.

    Its annotated fields are the contract's storage (``int``, ``bool``, ``bytes``, ``str``
    or ``Map[K, V]``); every field starts at its zero value (0, False, empty). ``__init__``
    runs once, at deploy, with the deploy arguments; public methods are the ABI.
    """


class Map(dict[_K, _V]):
    """A storage map: every key is present and reads as the value type's zero value until
    it is set; ``del m[k]`` sets it back. Keys are ``int``, ``bool``, ``bytes``, ``str``,
    ``Address`` or a tuple of them (only the last part may be ``bytes`` or ``str``)."""


class Address(bytes):
    """A 20-byte account or contract address (the ABI type ``address``)."""

    def __new__(cls, value: bytes) -> Address:
        if len(value) != ADDRESS_LENGTH:
            raise ValueError(f"an address is {ADDRESS_LENGTH} bytes, got {len(value)}")
        return super().__new__(cls, value)


def view(method: _F) -> _F:
    """Mark a method read-only: a query, refused any state change at compile time."""
    return method


def payable(method: _F) -> _F:
    """Mark a method as accepting value (native currency) with its call."""
    return method


def require(condition: bool, message: str) -> None:
    """Revert the call with ``message`` unless ``condition`` holds."""
    if not condition:
        raise Reverted(message)


def revert(message: str) -> NoReturn:
    """Revert the call with ``message``: undo its changes, refund the gas left."""
    raise Reverted(message)


def _on_chain(name: str) -> NoReturn:
    raise OnChainOnly(f"{name}() has a value only on the VM; compile the contract to run it")


def sender() -> Address:
    """The caller: the account that sent the transaction, or the calling contract."""
    _on_chain("sender")


def origin() -> Address:
    """The account that signed the transaction."""
    _on_chain("origin")


def self_address() -> Address:
    """The address of this contract."""
    _on_chain("self_address")


def block_height() -> int:
    """The height of the block the call runs in."""
    _on_chain("block_height")


def block_time() -> int:
    """The timestamp of the block the call runs in, in milliseconds."""
    _on_chain("block_time")


def call_value() -> int:
    """The value sent with this call (0 unless the method is payable)."""
    _on_chain("call_value")


def balance(account: Address) -> int:
    """The native balance of ``account``."""
    _on_chain("balance")


def transfer(to: Address, amount: int) -> None:
    """Send ``amount`` of this contract's balance to ``to``."""
    _on_chain("transfer")


def call(target: Address, method: str | bytes, *args: Value, value: int = 0) -> bool:
    """Call ``method`` of the contract at ``target`` with ``args``, sending ``value``;
    True if it succeeded (a failed call rolls back only its own changes)."""
    _on_chain("call")


def emit(event: str, *args: Value) -> None:
    """Record event ``event`` with ``args`` in the transaction's receipt."""
    _on_chain("emit")


def sha256(data: bytes) -> bytes:
    """The SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def to_bytes(number: int) -> bytes:
    """``number`` as 8 bytes, big-endian (a u64: 0 <= number < 2**64)."""
    return number.to_bytes(8, "big")


def from_bytes(data: bytes) -> int:
    """The big-endian number in ``data``, which is at most 8 bytes."""
    if len(data) > 8:
        raise ValueError(f"from_bytes takes at most 8 bytes, got {len(data)}")
    return int.from_bytes(data, "big")
