"""An in-memory block store for the load simulator: committed state, tree nodes and
certified blocks, with the same append rule as the SQLite store (writes and tree update of
one block together, in height order).

Never: accept a block that does not extend the head, or read anything from disk.
"""

from __future__ import annotations

from genesis.document import Genesis
from ledger.chain.accounts import EMPTY_ACCOUNT, Account, account_key, genesis_state
from ledger.chain.execute import ExecutedBlock
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore
from ledger.chain.tip import CommittedTip
from ledger.chain.types import CommitCertificate


class MemoryChain:
    """One simulated validator's committed chain."""

    def __init__(self, genesis: Genesis) -> None:
        self._state = genesis_state(genesis)
        self._nodes = MemoryNodeStore()
        update = StateTree.empty(self._nodes).apply(self._state)
        self._nodes.commit(update)
        self.genesis_state_root = update.new_root
        self.height = genesis.initial_height - 1
        self.head_hash = genesis.hash()
        self._timestamp_ms = genesis.genesis_time_ms
        self._state_root = update.new_root
        self._initial_height = genesis.initial_height
        #: Committed blocks as served to peers: (raw block, raw certificate).
        self.blocks: list[tuple[bytes, bytes]] = []
        self.certificates: list[CommitCertificate] = []

    def get_state(self, key: bytes) -> bytes | None:
        return self._state.get(key)

    def account(self, address: bytes) -> Account:
        raw = self._state.get(account_key(address))
        return EMPTY_ACCOUNT if raw is None else Account.decode(raw)

    def tip(self) -> CommittedTip:
        return CommittedTip(
            height=self.height,
            block_hash=self.head_hash,
            timestamp_ms=self._timestamp_ms,
            state_root=self._state_root,
            nodes=self._nodes,
            store=self,
        )

    def append(self, executed: ExecutedBlock, certificate: CommitCertificate) -> None:
        header = executed.block.header
        if header.height != self.height + 1 or header.prev_hash != self.head_hash:
            raise AssertionError(f"block {header.height} does not extend the head {self.height}")
        for key, value in executed.overlay.writes.items():
            if value is None:
                self._state.pop(key, None)
            else:
                self._state[key] = value
        self._nodes.commit(executed.tree_update)
        self.height, self.head_hash = header.height, header.block_hash
        self._timestamp_ms, self._state_root = header.timestamp_ms, header.state_root
        self.blocks.append((executed.block.encode(), certificate.encode()))
        self.certificates.append(certificate)

    def served(self, low: int, high: int) -> list[tuple[bytes, bytes]]:
        start = max(low, self._initial_height) - self._initial_height
        stop = min(high, self.height) - self._initial_height + 1
        return self.blocks[start : max(start, stop)]
