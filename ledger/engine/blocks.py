"""Blocks decoded once per node: the consensus core's digest function and the decoded
block behind it.

The consensus core asks for a payload's digest (``ReplicaConfig.block_digest``) when a
PRE-PREPARE, a proposal or a fetched block arrives; the engine then validates, executes and
commits that same payload. :class:`BlockCache` decodes a payload the first time any of them
needs it, reusing transactions the mempool already decoded and hashed (by their canonical
bytes), and hands the same :class:`~ledger.chain.types.Block` to everyone after.

Never: hand out a block for other bytes than asked, or grow without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from crypto.encoding import DecodeError
from ledger.chain.types import Block, Transaction

#: Decoded payloads kept (a pipeline's worth of blocks in a few views, plus catch-up).
MAX_CACHED_BLOCKS: Final = 64
#: Transactions from decoded blocks remembered by their bytes, so gossip of one that a
#: proposal brought first is not decoded again.
MAX_BLOCK_TXS_REMEMBERED: Final = 32_768


class BlockCache:
    """Payload bytes -> decoded block (bounded, most recently used kept)."""

    def __init__(
        self,
        *,
        max_block_bytes: int,
        known: Callable[[], Mapping[bytes, Transaction]] | None = None,
        capacity: int = MAX_CACHED_BLOCKS,
    ) -> None:
        self._max_bytes = max_block_bytes
        self._known = known
        self._capacity = capacity
        self._blocks: OrderedDict[bytes, Block | None] = OrderedDict()
        self._txs: OrderedDict[bytes, Transaction] = OrderedDict()
        self.decoded = 0

    @property
    def max_bytes(self) -> int:
        """The largest payload decoded as a block."""
        return self._max_bytes

    @property
    def transactions(self) -> Mapping[bytes, Transaction]:
        """Transactions of recently decoded blocks, by their canonical bytes."""
        return self._txs

    def block(self, payload: bytes) -> Block | None:
        """The decoded block, or None when the payload is not a well-formed block."""
        if payload in self._blocks:
            self._blocks.move_to_end(payload)
            return self._blocks[payload]
        try:
            block: Block | None = Block.decode(
                payload,
                max_bytes=self._max_bytes,
                known=None if self._known is None else self._known(),
            )
        except DecodeError:
            block = None
        self.decoded += 1
        if block is not None:
            for tx in block.transactions:
                self._txs[tx.raw] = tx
            while len(self._txs) > MAX_BLOCK_TXS_REMEMBERED:
                self._txs.popitem(last=False)
        self._blocks[payload] = block
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
        return block

    def digest(self, payload: bytes) -> bytes | None:
        """The consensus core's digest of an opaque payload: the block hash."""
        block = self.block(payload)
        return None if block is None else block.hash()

    def remember(self, payload: bytes, block: Block) -> None:
        """A block this node built itself: its payload need never be decoded."""
        self._blocks[payload] = block
        while len(self._blocks) > self._capacity:
            self._blocks.popitem(last=False)
