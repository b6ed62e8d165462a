"""The committed head as execution sees it: a ``ChainTip`` backed by the block store.

``Store.tip()`` returns a :class:`CommittedTip`; ``ledger.chain.execute`` builds the next
block on it (reading state through ``get_state`` and tree nodes through ``nodes``).

Never: cache state of its own (reads go to the store, whose caches the store keeps exact),
write anything, or import the store (it would be an import cycle; any ``StateReader``
will do).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ledger.chain.state_tree_nodes import NodeReader

if TYPE_CHECKING:
    from ledger.chain.execute import ChainTip


class StateReader(Protocol):
    """Point reads of committed state (the block store)."""

    def get_state(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class CommittedTip:
    """The committed head: what the next block builds on (an ``execute.ChainTip``).

    ``nodes`` and ``store`` read the store's latest committed state: right for this tip
    until the next append, and still right afterwards for a pending block stacked on it
    (its overlay holds everything that block changed).
    """

    height: int
    block_hash: bytes
    timestamp_ms: int
    state_root: bytes
    nodes: NodeReader = field(repr=False, compare=False)
    store: StateReader = field(repr=False, compare=False)

    def get_state(self, key: bytes) -> bytes | None:
        return self.store.get_state(key)


if TYPE_CHECKING:

    def _committed_tip_is_a_chain_tip(tip: CommittedTip) -> ChainTip:
        return tip  # mypy checks CommittedTip against the protocol here
