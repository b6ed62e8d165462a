"""What the VM reads from the ledger, and the journaled overlay it writes into.

Design: the ledger hands the VM a *read-only* :class:`Host`. Every write the VM makes goes
into its own :class:`WorldState` overlay, which journals each change so a failed call
can be undone exactly (``checkpoint`` / ``rollback``: the execution-specs' begin / rollback;
committing a call is simply not rolling it back). When the transaction ends the VM returns
the net writes as a :class:`StateWrites` value -- empty unless the transaction succeeded --
and the ledger applies them to its own state overlay. So the ledger needs no snapshot
support from the VM's point of view, and nothing the VM does can leave the ledger's state
half-written.

Conventions the ledger must follow when applying :class:`StateWrites`:

* ``storage``: ``value is None`` deletes the slot. Storage never holds empty values:
  reading an absent slot gives ``b""`` and storing ``b""`` deletes.
* ``balances``: absolute new balances. An address without an account gets one (nonce 0).
* ``code``: contracts created by a deploy; the address gets an account if it has none.

Must never: write through the host, depend on dict or set order for anything that leaves
this module (writes come out sorted), or raise for anything a contract does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from contracts.abi import StackValue


class Host(Protocol):
    """Read access to the ledger's state as of the start of the transaction."""

    def get_code(self, address: bytes) -> bytes | None:
        """The code container at ``address``, or None if it is not a contract."""

    def get_storage(self, address: bytes, key: bytes) -> bytes | None:
        """Storage slot ``key`` of the contract at ``address``; None if absent."""

    def get_balance(self, address: bytes) -> int:
        """The native balance of ``address`` (0 for an unknown address)."""


@dataclass(frozen=True, slots=True)
class BlockContext:
    """What a contract may know of the block it runs in."""

    height: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    """An event as the VM produced it: emitter, name, u64 and byte-string arguments."""

    address: bytes
    name: str
    args: tuple[StackValue, ...] = ()


@dataclass(frozen=True, slots=True)
class StateWrites:
    """The net state changes of one successful execution, sorted for determinism."""

    storage: tuple[tuple[bytes, bytes, bytes | None], ...] = ()  # (address, key, value)
    balances: tuple[tuple[bytes, int], ...] = ()  # (address, new balance)
    code: tuple[tuple[bytes, bytes], ...] = ()  # (address, code container)

    def __bool__(self) -> bool:
        return bool(self.storage or self.balances or self.code)


NO_WRITES: Final = StateWrites()


class _Absent:
    """Journal marker: the overlay had no entry for this key before the change."""


_ABSENT: Final = _Absent()

# journal entry: (overlay, key, previous overlay entry or _ABSENT)
_JournalEntry = tuple[dict[Any, Any], Any, object]
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    journal_length: int
    event_count: int


class WorldState:
    """The host's state plus this transaction's journaled writes and events."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self._storage: dict[tuple[bytes, bytes], bytes | None] = {}
        self._balances: dict[bytes, int] = {}
        self._code: dict[bytes, bytes] = {}
        self._journal: list[_JournalEntry] = []
        self.events: list[EventRecord] = []

    # -- checkpoints

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(len(self._journal), len(self.events))

    def rollback(self, checkpoint: Checkpoint) -> None:
        """Undo every change made since ``checkpoint``, newest first."""
        journal = self._journal
        while len(journal) > checkpoint.journal_length:
            overlay, key, previous = journal.pop()
            if previous is _ABSENT:
                del overlay[key]
            else:
                overlay[key] = previous
        del self.events[checkpoint.event_count :]

    def _record(self, overlay: dict[_K, _V], key: _K) -> None:
        self._journal.append((overlay, key, overlay.get(key, _ABSENT)))

    # -- reads and writes

    def storage(self, address: bytes, key: bytes) -> bytes:
        slot = (address, key)
        if slot in self._storage:
            return self._storage[slot] or b""
        return self._host.get_storage(address, key) or b""

    def set_storage(self, address: bytes, key: bytes, value: bytes) -> None:
        slot = (address, key)
        self._record(self._storage, slot)
        self._storage[slot] = value or None

    def balance(self, address: bytes) -> int:
        if address in self._balances:
            return self._balances[address]
        return self._host.get_balance(address)

    def set_balance(self, address: bytes, amount: int) -> None:
        self._record(self._balances, address)
        self._balances[address] = amount

    def code(self, address: bytes) -> bytes | None:
        if address in self._code:
            return self._code[address]
        return self._host.get_code(address)

    def set_code(self, address: bytes, code: bytes) -> None:
        self._record(self._code, address)
        self._code[address] = code

    def emit(self, event: EventRecord) -> None:
        self.events.append(event)

    def writes(self) -> StateWrites:
        """The net writes so far, sorted by address (and key)."""
        return StateWrites(
            storage=tuple((a, k, v) for (a, k), v in sorted(self._storage.items(), key=_by_key)),
            balances=tuple(sorted(self._balances.items(), key=_by_key)),
            code=tuple(sorted(self._code.items(), key=_by_key)),
        )


def _by_key(item: tuple[_K, object]) -> _K:
    return item[0]


@dataclass(slots=True)
class MemoryHost:
    """A :class:`Host` over plain dicts: for tests, benchmarks and tools.

    ``apply`` follows the conventions the ledger must follow (see the module docstring).
    """

    code: dict[bytes, bytes] = field(default_factory=dict)
    storage: dict[tuple[bytes, bytes], bytes] = field(default_factory=dict)
    balances: dict[bytes, int] = field(default_factory=dict)

    def get_code(self, address: bytes) -> bytes | None:
        return self.code.get(address)

    def get_storage(self, address: bytes, key: bytes) -> bytes | None:
        return self.storage.get((address, key))

    def get_balance(self, address: bytes) -> int:
        return self.balances.get(address, 0)

    def apply(self, writes: StateWrites) -> None:
        for address, key, value in writes.storage:
            if value is None:
                self.storage.pop((address, key), None)
            else:
                self.storage[(address, key)] = value
        for address, amount in writes.balances:
            self.balances[address] = amount
        for address, code in writes.code:
            self.code[address] = code

    def storage_of(self, address: bytes) -> dict[bytes, bytes]:
        """One contract's storage, sorted by key."""
        return dict(sorted((k, v) for (a, k), v in self.storage.items() if a == address))
