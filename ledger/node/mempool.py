"""The mempool: signed transactions waiting for a block, admitted once, ordered per sender.

Theory of operation. Admission is two steps so that the expensive part can leave the event
loop: :func:`check_transaction` (decode, size, chain id, signature — pure CPU, run in a
worker thread, once per node per transaction) and :meth:`Mempool.add` (nonce window,
expiry, duplicates, caps — cheap, on the event loop). Transactions are kept per sender in
nonce order; :meth:`Mempool.select` builds a proposal by taking, sender by sender in the
order they first arrived, the run of consecutive nonces starting at the sender's next
unproposed nonce. :meth:`Mempool.committed` removes what a block included and whatever it
made stale (lower nonces, expired transactions).

House rules: every structure is capped (count, bytes, per-sender); a full mempool refuses
new work instead of growing (the HTTP API turns that into backpressure); nothing here
touches the network, the disk or the clock — heights come from the caller.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger.chain.types import (
    Transaction,
    TxLimits,
    TxRejected,
    decode_transaction,
    validate_transaction,
)

#: How far ahead of an account's next nonce a transaction may be (gaps wait for fill-in).
DEFAULT_NONCE_WINDOW: Final = 256
#: Transactions not included within this many blocks of admission are dropped.
DEFAULT_TTL_BLOCKS: Final = 1_000
#: Transactions taken from one sender per round-robin turn when building a proposal.
SELECT_RUN: Final = 16


def check_transaction(raw: bytes, chain_id: str, limits: TxLimits) -> Transaction:
    """Stateless admission (decode, size, chain id, gas bounds, signature); raises TxRejected.

    CPU-bound (one Ed25519 verify): the node runs it in a worker thread.
    """
    tx = decode_transaction(raw, limits)
    validate_transaction(tx, chain_id, limits)
    return tx


@dataclass(slots=True)
class _Entry:
    tx: Transaction
    admitted_height: int


@dataclass(slots=True)
class _Sender:
    """One account's waiting transactions, keyed by nonce."""

    next_nonce: int  # the account's nonce in committed state, as last told
    by_nonce: dict[int, _Entry] = field(default_factory=dict)
    proposed_up_to: int = -1  # highest nonce handed out by select() and not yet committed


@dataclass(frozen=True, slots=True)
class MempoolStats:
    transactions: int
    bytes: int
    senders: int
    admitted: int
    rejected: dict[str, int]
    evicted_expired: int
    removed_committed: int


class Mempool:
    """Per-sender ordered pool with count, byte and per-sender caps."""

    def __init__(
        self,
        *,
        max_txs: int,
        max_bytes: int,
        nonce_window: int = DEFAULT_NONCE_WINDOW,
        ttl_blocks: int = DEFAULT_TTL_BLOCKS,
    ) -> None:
        if min(max_txs, max_bytes, nonce_window, ttl_blocks) <= 0:
            raise ValueError("mempool limits must be positive")
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.nonce_window = nonce_window
        self.ttl_blocks = ttl_blocks
        self._by_hash: dict[bytes, _Entry] = {}
        # (deadline height, admission sequence, tx hash); stale items are skipped lazily.
        self._deadlines: list[tuple[int, int, bytes]] = []
        self._senders: dict[bytes, _Sender] = {}  # insertion order = arrival order
        self._bytes = 0
        self._admitted = 0
        self._rejected: dict[str, int] = {}
        self._expired = 0
        self._removed = 0

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(tx_hash)
        return entry.tx if entry else None

    def _reject(self, code: str, message: str) -> TxRejected:
        self._rejected[code] = self._rejected.get(code, 0) + 1
        return TxRejected(code, message)

    def add(self, tx: Transaction, account_nonce: int, height: int) -> None:
        """Admit a checked transaction; ``account_nonce`` is the sender's committed nonce.

        ``height`` is the last committed height. Raises :class:`TxRejected` (and counts it).
        """
        if tx.hash in self._by_hash:
            raise self._reject("duplicate", "transaction is already in the mempool")
        if tx.nonce < account_nonce:
            raise self._reject(
                "nonce_too_low",
                f"nonce {tx.nonce} was already used (the account's next nonce is {account_nonce})",
            )
        if tx.nonce >= account_nonce + self.nonce_window:
            raise self._reject(
                "nonce_too_high",
                f"nonce {tx.nonce} is too far ahead of the account's next nonce {account_nonce} "
                f"(window {self.nonce_window})",
            )
        if tx.expiry_height is not None and tx.expiry_height <= height:
            raise self._reject("expired", f"transaction expired at height {tx.expiry_height}")
        sender_address = tx.sender_address
        sender = self._senders.get(sender_address)
        if sender is not None and tx.nonce in sender.by_nonce:
            raise self._reject(
                "nonce_taken", f"another transaction from this sender already has nonce {tx.nonce}"
            )
        size = len(tx.raw)
        if len(self._by_hash) >= self.max_txs or self._bytes + size > self.max_bytes:
            raise self._reject("mempool_full", "the mempool is full; retry later")
        if sender is None:
            sender = self._senders[sender_address] = _Sender(next_nonce=account_nonce)
        else:
            sender.next_nonce = max(sender.next_nonce, account_nonce)
        entry = _Entry(tx, height)
        sender.by_nonce[tx.nonce] = entry
        self._by_hash[tx.hash] = entry
        deadline = height + self.ttl_blocks
        if tx.expiry_height is not None:
            deadline = min(deadline, tx.expiry_height)
        heapq.heappush(self._deadlines, (deadline, self._admitted, tx.hash))
        self._bytes += size
        self._admitted += 1

    def select(
        self, *, max_txs: int, max_bytes: int, max_gas: int | None = None
    ) -> list[Transaction]:
        """Transactions for the next proposal: per sender, consecutive nonces from the next one.

        Senders are served round-robin in arrival order, :data:`SELECT_RUN` transactions per
        turn, so one busy account cannot crowd out the others. Selected transactions stay in
        the pool (marked proposed) until :meth:`committed` or :meth:`release_proposed`.
        """
        chosen: list[Transaction] = []
        budget_bytes = max_bytes
        budget_gas = max_gas
        progress = True
        while progress and len(chosen) < max_txs:
            progress = False
            for sender in self._senders.values():
                nonce = max(sender.next_nonce, sender.proposed_up_to + 1)
                for _ in range(SELECT_RUN):
                    entry = sender.by_nonce.get(nonce)
                    if entry is None or len(chosen) >= max_txs:
                        break
                    size = len(entry.tx.raw)
                    if size > budget_bytes or (
                        budget_gas is not None and entry.tx.gas_limit > budget_gas
                    ):
                        break
                    chosen.append(entry.tx)
                    budget_bytes -= size
                    if budget_gas is not None:
                        budget_gas -= entry.tx.gas_limit
                    sender.proposed_up_to = nonce
                    nonce += 1
                    progress = True
                if len(chosen) >= max_txs:
                    break
        return chosen

    def remove(self, tx: Transaction) -> None:
        """Drop a transaction that can never be included (expired, forbidden, forged)."""
        entry = self._by_hash.get(tx.hash)
        if entry is not None:
            self._remove(tx.sender_address, entry)
            self._rejected["dropped_unincludable"] = (
                self._rejected.get("dropped_unincludable", 0) + 1
            )

    def release_proposed(self) -> None:
        """Forget what select() handed out (the proposal was abandoned, e.g. on view change)."""
        for sender in self._senders.values():
            sender.proposed_up_to = -1

    def committed(
        self, transactions: Iterable[Transaction], account_nonces: dict[bytes, int], height: int
    ) -> None:
        """A block committed at ``height``: drop its transactions and everything it made stale.

        ``account_nonces`` maps each affected sender address to its nonce after the block.
        """
        for tx in transactions:
            entry = self._by_hash.get(tx.hash)
            if entry is not None:
                self._remove(tx.sender_address, entry)
                self._removed += 1
        for address, nonce in account_nonces.items():
            sender = self._senders.get(address)
            if sender is None:
                continue
            sender.next_nonce = max(sender.next_nonce, nonce)
            for stale in [n for n in sender.by_nonce if n < nonce]:
                self._remove(address, sender.by_nonce[stale])
                self._removed += 1
        self._expire(height)

    def _expire(self, height: int) -> None:
        heap = self._deadlines
        while heap and heap[0][0] <= height:
            _, _, tx_hash = heapq.heappop(heap)
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                self._remove(entry.tx.sender_address, entry)
                self._expired += 1
        # Committed transactions leave stale heap items behind; compact when they dominate.
        if len(heap) > 2 * len(self._by_hash) + 1024:
            live = set(self._by_hash)
            self._deadlines = [item for item in heap if item[2] in live]
            heapq.heapify(self._deadlines)

    def _remove(self, address: bytes, entry: _Entry) -> None:
        sender = self._senders[address]
        del sender.by_nonce[entry.tx.nonce]
        del self._by_hash[entry.tx.hash]
        self._bytes -= len(entry.tx.raw)
        if not sender.by_nonce:
            del self._senders[address]

    def pending_hashes(self) -> Sequence[bytes]:
        return list(self._by_hash)

    def oldest_includable(self) -> bytes | None:
        """Hash of the longest-waiting transaction a correct primary could include now (its
        nonce is its sender's next), or None. The view-change timer watches this one: a
        transaction behind a nonce gap waits for its sender, not for the primary."""
        for tx_hash, entry in self._by_hash.items():
            sender = self._senders.get(entry.tx.sender_address)
            if sender is not None and entry.tx.nonce == sender.next_nonce:
                return tx_hash
        return None

    def statistics(self) -> MempoolStats:
        return MempoolStats(
            transactions=len(self._by_hash),
            bytes=self._bytes,
            senders=len(self._senders),
            admitted=self._admitted,
            rejected=dict(self._rejected),
            evicted_expired=self._expired,
            removed_committed=self._removed,
        )
