"""Parts of the node driver that hold no node state: running a job inline or in a worker
thread, merging the core's outputs, the block digest, the verified-signature cache.

Never: block the event loop for more than a small job (:data:`INLINE_MAX_TXS`), or verify
a signature twice for one transaction hash.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from consensus.ready import Ready
from consensus.records import PersistBatch, PreparedRecord, SignedSlot
from crypto.encoding import DecodeError, decode, record_fields
from ledger.chain.execute import ChainTip, ExecutedBlock
from ledger.chain.types import Block, BlockHeader, Transaction

_T = TypeVar("_T")

#: Verified transaction hashes remembered, so each signature is checked once per node.
MAX_VERIFIED_CACHE: Final = 400_000
#: Jobs of at most this many transactions run on the event loop, not in a worker thread.
INLINE_MAX_TXS: Final = 24
#: Bytes of a typical transfer in a block, to size a payload in transactions.
APPROX_TX_BYTES: Final = 180


async def offload(work: Callable[[], _T], size: int) -> _T:
    """Run ``work`` (``size`` transactions' worth) in a worker thread, or inline when small.

    A worker-thread round trip costs two thread switches and a wake-up of the event loop;
    on a loaded machine each switch waits for a core, and a block passes through several
    of them on every node. Small jobs (up to INLINE_MAX_TXS transactions, about 2 ms) run
    on the event loop instead: the loop stalls that long, the block moves on sooner.
    """
    if size <= INLINE_MAX_TXS:
        result = work()
        await trio.lowlevel.checkpoint()
        return result
    return await trio.to_thread.run_sync(work)


def merge_readies(readies: list[Ready]) -> Ready:
    """Several Readies, in order, as one: records merged (later wins per key, as the
    writes would), commits, messages and validations concatenated, the latest proposal
    and fetch requests (an older one was superseded by the core's later steps)."""
    hard_state = None
    signed: list[SignedSlot] = []
    prepared: list[PreparedRecord] = []
    for ready in readies:
        if ready.persist is not None:
            hard_state = ready.persist.hard_state or hard_state
            signed.extend(ready.persist.signed)
            prepared.extend(ready.persist.prepared)
    persist = (
        PersistBatch(hard_state, tuple(signed), tuple(prepared))
        if hard_state is not None or signed or prepared
        else None
    )
    return Ready(
        persist,
        tuple(m for r in readies for m in r.messages),
        tuple(c for r in readies for c in r.committed),
        tuple(v for r in readies for v in r.validate),
        next((r.propose for r in reversed(readies) if r.propose is not None), None),
        next((r.fetch for r in reversed(readies) if r.fetch is not None), None),
        next((r.halt for r in readies if r.halt is not None), None),
    )


def block_digest(payload: bytes) -> bytes | None:
    """The consensus core's digest of an opaque payload: the block hash, from the header.

    Only the header is decoded (the payload's canonical form is still checked); the body is
    checked against the header's tx_root when the block is executed, before any vote.
    """
    try:
        fields = record_fields(decode(payload), Block.TAG, Block.VERSION, 2)
        return BlockHeader.from_value(fields[0]).block_hash
    except DecodeError:
        return None


class NodeHalted(Exception):
    """The node stopped itself: its own data (or code) cannot be trusted any more."""


@dataclass(slots=True)
class Waiter:
    event: trio.Event
    result: dict[str, Any] | None = None


class VerifiedCache:
    """Transaction hashes whose signatures this node has verified (bounded, FIFO)."""

    def __init__(self, capacity: int = MAX_VERIFIED_CACHE) -> None:
        self._seen: dict[bytes, None] = {}
        self._capacity = capacity

    def add(self, tx_hash: bytes) -> None:
        if len(self._seen) >= self._capacity:
            # Drop the oldest quarter in one go (dicts keep insertion order).
            for key in list(self._seen)[: self._capacity // 4]:
                self._seen.pop(key, None)  # another worker thread may race us here
        self._seen[tx_hash] = None

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._seen

    def signature_ok(self, tx: Transaction) -> bool:
        if tx.hash in self._seen:
            return True
        if tx.signature_valid():
            self.add(tx.hash)
            return True
        return False


def ancestor_hashes(
    parent: ChainTip, executed: Mapping[tuple[int, bytes], ExecutedBlock]
) -> set[bytes]:
    """Hashes of the transactions in the pending (uncommitted) blocks a proposal builds on
    (membership tests only: never iterated, so a set is deterministic here)."""
    hashes: set[bytes] = set()
    block: ExecutedBlock | None = parent if isinstance(parent, ExecutedBlock) else None
    while block is not None:
        hashes.update(tx.hash for tx in block.block.transactions)
        block = executed.get((block.height - 1, block.block.header.prev_hash))
    return hashes


class OneShotTimer:
    """Calls ``action`` once, ``seconds`` after :meth:`arm`; arming while armed does nothing."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action = action
        self._armed = False

    def arm(self, nursery: trio.Nursery, seconds: float) -> None:
        if self._armed:
            return
        self._armed = True

        async def fire() -> None:
            await trio.sleep(seconds)
            self._armed = False
            self._action()

        nursery.start_soon(fire)
