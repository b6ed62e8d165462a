"""What chain rules need of state, as protocols: read one value, or read and write.

``ledger.chain.state`` imports ``accounts``, which imports the role rules, so those rules
(and the validator-set rules) cannot import the concrete overlay; they take these instead.

Never: hold state or import anything of the chain.
"""

from __future__ import annotations

from typing import Protocol


class StateReader(Protocol):
    """Reads one state value (the store, or an overlay)."""

    def get_state(self, key: bytes) -> bytes | None: ...


class StateWriter(StateReader, Protocol):
    """Reads and writes state values (an overlay of one block's changes)."""

    def set_state(self, key: bytes, value: bytes | None) -> None: ...
