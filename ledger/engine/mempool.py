"""The mempool: admitted transactions waiting for a block, indexed by sender and nonce.

Theory of operation. Transactions are kept per sender, keyed by nonce. The one
includability rule, shared by the primary (what it proposes) and the backups (what their
view-change timers wait for): a sender is *ready* when its transaction with the account's
next committed nonce is here; a transaction is includable when it extends, without a gap,
the run that starts there. Ready senders are kept in the order they became ready
(``_ready``); :meth:`Mempool.select` serves them round-robin in that order,
:data:`SELECT_RUN` transactions per turn, starting for each sender after whatever the
uncommitted ancestor blocks already hold (``after`` nonces, from the caller); the first
ready sender's next transaction is :meth:`Mempool.oldest_includable`, the request the
censorship timer watches. A transaction behind a gap waits for its sender, never makes a
primary look silent, and leaves after ``gap_ttl_ms``.

Committed nonces race with admission (a sender's nonce is read off the event loop while a
block commits): every committed block's nonces are remembered (bounded) and an admission
uses the larger of the two, so a transaction whose nonce was used in between is refused,
never kept as an includable-looking zombie.

Everything that leaves without a block gets a final :class:`Dropped` status the client can
read (``/v1/transactions/{hash}``): nonce used, expired, stuck behind a gap, not included
within ``ttl_blocks``, or refused by the chain at proposal time.

House rules: every structure is capped (count, bytes, per sender, dropped memory); no
lookup scans the pool (indexes by hash, sender, nonce, raw bytes); nothing here reads a
clock or touches I/O — heights and milliseconds are inputs.
"""

from __future__ import annotations

import enum
import heapq
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger.chain.types import Transaction, TxRejected
from ledger.engine.admission import AdmittedTx

#: How far ahead of an account's next nonce a transaction may be (gaps wait for fill-in).
DEFAULT_NONCE_WINDOW: Final = 256
#: Transactions one sender may have waiting at once.
DEFAULT_MAX_PER_SENDER: Final = 256
#: Transactions not included within this many blocks of admission are dropped.
DEFAULT_TTL_BLOCKS: Final = 1_000
#: A transaction still behind a nonce gap this long after admission is dropped.
DEFAULT_GAP_TTL_MS: Final = 30_000
#: Final statuses of dropped transactions remembered for clients (FIFO).
DEFAULT_DROPPED_MEMORY: Final = 100_000
#: Committed nonces remembered against the admission race (FIFO by block).
RECENT_NONCES: Final = 65_536
#: Committed transactions' bytes remembered, so late gossip of them costs a lookup.
RECENT_COMMITTED: Final = 65_536
#: Transactions taken from one sender per round-robin turn when building a proposal.
SELECT_RUN: Final = 16
#: Under backpressure, transactions behind nonce gaps may fill at most 1/this of the pool.
QUEUED_SHARE: Final = 4


class DropReason(enum.Enum):
    """Why a transaction left the mempool without being committed."""

    NONCE_USED = "nonce_used"  # another transaction from its sender with this nonce committed
    EXPIRED = "expired"  # its expiry height passed
    GAP_TIMEOUT = "gap_timeout"  # it waited behind a missing nonce longer than gap_ttl_ms
    TTL = "ttl"  # no block included it within ttl_blocks
    NOT_INCLUDABLE = "not_includable"  # the chain refuses it (permissions, signature, ...)


@dataclass(frozen=True, slots=True)
class Dropped:
    """The final status of a transaction that left without a block."""

    tx_hash: bytes
    reason: DropReason
    detail: str
    height: int


@dataclass(slots=True)
class _Entry:
    tx: AdmittedTx
    seq: int
    admitted_height: int
    #: When this node last sent it to its peers (admission counts), for re-gossip.
    gossiped_ms: int


@dataclass(slots=True)
class _Sender:
    next_nonce: int  # the account's nonce in committed state
    by_nonce: dict[int, _Entry] = field(default_factory=dict)
    #: The first nonce at or above next_nonce that is not here: next_nonce..run_end-1 is
    #: the sender's includable run; what lies above it waits behind a gap.
    run_end: int = 0

    @property
    def includable(self) -> int:
        return self.run_end - self.next_nonce

    def extend_run(self) -> None:
        self.run_end = max(self.run_end, self.next_nonce)
        while self.run_end in self.by_nonce:
            self.run_end += 1


@dataclass(frozen=True, slots=True)
class MempoolStats:
    transactions: int
    includable: int
    includable_senders: int
    bytes: int
    senders: int
    admitted: int
    rejected: dict[str, int]
    dropped: dict[str, int]
    removed_committed: int


class Mempool:
    """Per-sender ordered pool with count, byte and per-sender caps."""

    def __init__(
        self,
        *,
        max_txs: int,
        max_bytes: int,
        max_per_sender: int = DEFAULT_MAX_PER_SENDER,
        nonce_window: int = DEFAULT_NONCE_WINDOW,
        ttl_blocks: int = DEFAULT_TTL_BLOCKS,
        gap_ttl_ms: int = DEFAULT_GAP_TTL_MS,
        dropped_memory: int = DEFAULT_DROPPED_MEMORY,
    ) -> None:
        limits = (max_txs, max_bytes, max_per_sender, nonce_window, ttl_blocks, gap_ttl_ms)
        if min(limits) <= 0 or dropped_memory < 0:
            raise ValueError("mempool limits must be positive")
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self.max_per_sender = max_per_sender
        self.nonce_window = nonce_window
        self.ttl_blocks = ttl_blocks
        self.gap_ttl_ms = gap_ttl_ms
        self._dropped_memory = dropped_memory
        self._by_hash: dict[bytes, _Entry] = {}
        self._by_raw: dict[bytes, Transaction] = {}
        self._senders: dict[bytes, _Sender] = {}
        #: Senders whose next committed nonce is here, in the order they became ready.
        self._ready: dict[bytes, None] = {}
        # (deadline height, seq, hash) and (deadline ms, seq, hash); stale items skipped lazily.
        self._height_deadlines: list[tuple[int, int, bytes]] = []
        self._gap_deadlines: list[tuple[int, int, bytes]] = []
        self._recent_nonces: OrderedDict[bytes, int] = OrderedDict()
        self._recent_evicted_height = -1
        self._recent_committed: OrderedDict[bytes, None] = OrderedDict()
        self._dropped: OrderedDict[bytes, Dropped] = OrderedDict()
        self._bytes = 0
        self._includable = 0  # transactions in includable runs
        self._seq = 0
        self._now_ms = 0
        self._rejected: dict[str, int] = {}
        self._dropped_counts: dict[str, int] = {}
        self._removed = 0

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def by_raw(self) -> Mapping[bytes, Transaction]:
        """Waiting transactions by their canonical bytes (to reuse them in a proposal)."""
        return self._by_raw

    def seen(self, raw: bytes) -> bool:
        """These bytes are waiting here or committed recently: gossip of them is old news."""
        return raw in self._by_raw or raw in self._recent_committed

    def get(self, tx_hash: bytes) -> Transaction | None:
        entry = self._by_hash.get(tx_hash)
        return entry.tx.tx if entry else None

    def is_includable(self, tx_hash: bytes) -> bool:
        """Waiting here in its sender's includable run (no nonce gap before it)."""
        entry = self._by_hash.get(tx_hash)
        if entry is None:
            return False
        return entry.tx.nonce < self._senders[entry.tx.sender].run_end

    def dropped(self, tx_hash: bytes) -> Dropped | None:
        return self._dropped.get(tx_hash)

    @property
    def includable_count(self) -> int:
        """Transactions in includable runs (no nonce gap before them)."""
        return self._includable

    def has_includable(self) -> bool:
        """A correct primary could include something here in the next block."""
        return bool(self._ready)

    def oldest_includable(self) -> bytes | None:
        """Hash of the next transaction of the sender that has been ready the longest."""
        for address in self._ready:
            sender = self._senders[address]
            return sender.by_nonce[sender.next_nonce].tx.hash
        return None

    def pending_hashes(self) -> Sequence[bytes]:
        return list(self._by_hash)

    def journal(self) -> list[bytes]:
        """Every waiting transaction's bytes, each sender's in nonce order (to re-admit)."""
        return [
            self._senders[address].by_nonce[nonce].tx.raw
            for address in sorted(self._senders)
            for nonce in sorted(self._senders[address].by_nonce)
        ]

    def gate(
        self,
        address: bytes,
        size: int,
        *,
        nonce: int | None = None,
        client_limit: int | None = None,
    ) -> TxRejected | None:
        """May ``address`` add a transaction of ``size`` bytes (with ``nonce``) now? The
        cheap check made before a signature is verified.

        ``client_limit`` (backpressure) caps the pool for client submissions below the hard
        cap. Past it, only a transaction that fills its sender's first missing nonce (and so
        makes waiting transactions includable) is taken: refusing those would leave the pool
        full of transactions no block can take, each waiting for one that is refused.
        """
        sender = self._senders.get(address)
        if sender is not None and len(sender.by_nonce) >= self.max_per_sender:
            return self._reject(
                "sender_busy",
                f"this sender already has {len(sender.by_nonce)} transactions waiting "
                f"(the limit is {self.max_per_sender}); retry after some commit",
            )
        if len(self._by_hash) >= self.max_txs or self._bytes + size > self.max_bytes:
            return self._reject("mempool_full", "the mempool is full; retry later")
        if client_limit is None:
            return None
        if nonce is not None and sender is not None and self._fills_gap(sender, nonce):
            return None
        if self._includable >= client_limit:
            return self._reject(
                "busy",
                f"{self._includable} transactions are ready for blocks, about what the "
                "network commits in a few seconds; retry later",
            )
        queued = len(self._by_hash) - self._includable
        next_free = sender.run_end if sender is not None else None
        if (
            nonce is not None
            and next_free is not None
            and nonce > next_free
            and (queued >= self.max_txs // QUEUED_SHARE)
        ):
            return self._reject(
                "busy",
                f"{queued} transactions wait behind nonce gaps; send nonce {next_free} first",
            )
        return None

    def _fills_gap(self, sender: _Sender, nonce: int) -> bool:
        """``nonce`` is its sender's first missing nonce, with later ones waiting here."""
        if nonce in sender.by_nonce or not sender.by_nonce or nonce > max(sender.by_nonce):
            return False
        return nonce == sender.run_end

    # ------------------------------------------------------------------ admission

    def add(
        self,
        tx: AdmittedTx,
        account_nonce: int,
        *,
        height: int,
        now_ms: int,
        read_height: int | None = None,
        client_limit: int | None = None,
    ) -> None:
        """Admit a checked transaction. ``account_nonce`` is the sender's nonce read from
        committed state at ``read_height`` (default: ``height``, the last committed height);
        ``client_limit``: backpressure for a client's submission (see :meth:`gate`), applied
        after the duplicate and nonce checks, so a resubmission is told what it is.
        Raises :class:`TxRejected` (and counts it)."""
        if tx.hash in self._by_hash:
            raise self._reject("duplicate", "transaction is already in the mempool")
        address = tx.sender
        if read_height is not None and read_height < self._recent_evicted_height:
            raise self._reject("busy", "the node is catching up with commits; retry")
        self._now_ms = max(self._now_ms, now_ms)
        account_nonce = max(account_nonce, self._recent_nonces.get(address, 0))
        sender = self._senders.get(address)
        if sender is not None:
            if account_nonce > sender.next_nonce:  # read after a commit we have not seen yet
                self._advance(address, sender, account_nonce, height)
                sender = self._senders.get(address)
            else:
                account_nonce = sender.next_nonce
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
        expiry = tx.tx.expiry_height
        if expiry is not None and expiry <= height:
            raise self._reject("expired", f"transaction expired at height {expiry}")
        if sender is not None and tx.nonce in sender.by_nonce:
            raise self._reject(
                "nonce_taken", f"another transaction from this sender already has nonce {tx.nonce}"
            )
        refused = self.gate(address, len(tx.raw), nonce=tx.nonce, client_limit=client_limit)
        if refused is not None:
            raise refused
        if sender is None:
            sender = self._senders[address] = _Sender(account_nonce, run_end=account_nonce)
        self._seq += 1
        entry = _Entry(tx, self._seq, height, now_ms)
        sender.by_nonce[tx.nonce] = entry
        self._by_hash[tx.hash] = entry
        self._by_raw[tx.raw] = tx.tx
        self._bytes += len(tx.raw)
        deadline = height + self.ttl_blocks
        if expiry is not None:
            deadline = min(deadline, expiry)
        heapq.heappush(self._height_deadlines, (deadline, self._seq, tx.hash))
        if tx.nonce == sender.run_end:
            before = sender.includable
            sender.extend_run()
            self._includable += sender.includable - before
        if tx.nonce == sender.next_nonce:
            self._ready.setdefault(address, None)
        if tx.nonce > sender.run_end:
            heapq.heappush(self._gap_deadlines, (now_ms + self.gap_ttl_ms, self._seq, tx.hash))

    def _reject(self, code: str, message: str) -> TxRejected:
        self._rejected[code] = self._rejected.get(code, 0) + 1
        return TxRejected(code, message)

    # ------------------------------------------------------------------ proposals

    def select(
        self,
        *,
        max_txs: int,
        max_bytes: int,
        max_gas: int,
        after: Mapping[bytes, int] | None = None,
    ) -> list[Transaction]:
        """Includable transactions for the next proposal, ready senders round-robin.

        ``after`` maps a sender address to the next nonce after the uncommitted ancestor
        blocks the proposal builds on (their transactions are not selected again).
        """
        after = after or {}
        cursor: dict[bytes, int] = {}
        chosen: list[Transaction] = []
        budget_bytes, budget_gas = max_bytes, max_gas
        active = list(self._ready)
        while active and len(chosen) < max_txs:
            still: list[bytes] = []
            for address in active:
                sender = self._senders[address]
                nonce = cursor.get(address, max(sender.next_nonce, after.get(address, 0)))
                taken = 0
                while taken < SELECT_RUN and len(chosen) < max_txs:
                    entry = sender.by_nonce.get(nonce)
                    if entry is None:
                        break
                    tx = entry.tx.tx
                    if len(tx.raw) > budget_bytes or tx.gas_limit > budget_gas:
                        break
                    chosen.append(tx)
                    budget_bytes -= len(tx.raw)
                    budget_gas -= tx.gas_limit
                    nonce += 1
                    taken += 1
                cursor[address] = nonce
                if taken == SELECT_RUN:
                    still.append(address)
                if len(chosen) >= max_txs:
                    break
            active = still
        return chosen

    def to_regossip(self, now_ms: int, *, older_than_ms: int, limit: int) -> list[bytes]:
        """Includable transactions not sent to peers for ``older_than_ms``, oldest ready
        senders first (their runs, up to :data:`SELECT_RUN` each): gossip is fire and forget,
        and a transaction only some validators hold makes the others wait for it (PBFT's
        backups relay requests to the primary for the same reason)."""
        out: list[bytes] = []
        for address in self._ready:
            sender = self._senders[address]
            for nonce in range(
                sender.next_nonce, min(sender.run_end, sender.next_nonce + SELECT_RUN)
            ):
                entry = sender.by_nonce[nonce]
                if entry.gossiped_ms + older_than_ms <= now_ms:
                    entry.gossiped_ms = now_ms
                    out.append(entry.tx.raw)
            if len(out) >= limit:
                break
        return out

    # ------------------------------------------------------------------ leaving

    def committed(
        self, transactions: Iterable[Transaction], account_nonces: Mapping[bytes, int], height: int
    ) -> list[Dropped]:
        """A block committed at ``height``: drop its transactions and what it made stale.

        ``account_nonces`` maps each sender in the block to its nonce after the block.
        Returns the transactions dropped as a consequence (nonce used elsewhere, expired,
        past their TTL)."""
        recent = self._recent_committed
        for tx in transactions:
            entry = self._by_hash.get(tx.hash)
            if entry is not None:
                self._remove(entry)
                self._removed += 1
            recent[tx.raw] = None
        while len(recent) > RECENT_COMMITTED:
            recent.popitem(last=False)
        dropped: list[Dropped] = []
        for address in sorted(account_nonces):
            nonce = account_nonces[address]
            self._remember_nonce(address, nonce, height)
            sender = self._senders.get(address)
            if sender is not None and nonce > sender.next_nonce:
                dropped.extend(self._advance(address, sender, nonce, height))
        heap = self._height_deadlines
        while heap and heap[0][0] <= height:
            _, _, tx_hash = heapq.heappop(heap)
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                expiry = entry.tx.tx.expiry_height
                if expiry is not None and expiry <= height:
                    reason, detail = DropReason.EXPIRED, f"expired at height {expiry}"
                else:
                    reason, detail = (
                        DropReason.TTL,
                        f"not included within {self.ttl_blocks} blocks of admission",
                    )
                dropped.append(self._drop(entry, reason, detail, height))
        self._compact()
        return dropped

    def expire_gaps(self, now_ms: int, height: int) -> list[Dropped]:
        """Drop transactions that waited behind a nonce gap for ``gap_ttl_ms``."""
        self._now_ms = max(self._now_ms, now_ms)
        dropped: list[Dropped] = []
        heap = self._gap_deadlines
        while heap and heap[0][0] <= now_ms:
            _, seq, tx_hash = heapq.heappop(heap)
            entry = self._by_hash.get(tx_hash)
            if entry is None or entry.seq != seq:
                continue
            sender = self._senders[entry.tx.sender]
            if self._reachable(sender, entry.tx.nonce):
                continue  # the gap was filled: it is includable now
            missing = sender.run_end
            dropped.append(
                self._drop(
                    entry,
                    DropReason.GAP_TIMEOUT,
                    f"waited {self.gap_ttl_ms} ms for nonce {missing} of its sender",
                    height,
                )
            )
        return dropped

    def drop(self, tx_hash: bytes, reason: DropReason, detail: str, height: int) -> Dropped | None:
        """Drop a transaction that can never be included (the chain refused it)."""
        entry = self._by_hash.get(tx_hash)
        return None if entry is None else self._drop(entry, reason, detail, height)

    def _drop(self, entry: _Entry, reason: DropReason, detail: str, height: int) -> Dropped:
        self._remove(entry)
        sender = self._senders.get(entry.tx.sender)
        if sender is not None and entry.tx.nonce >= sender.next_nonce:
            # Its later nonces now wait behind a gap: their sender must refill it in time.
            deadline = self._now_ms + self.gap_ttl_ms
            for later in sorted(n for n in sender.by_nonce if n > entry.tx.nonce):
                e = sender.by_nonce[later]
                heapq.heappush(self._gap_deadlines, (deadline, e.seq, e.tx.hash))
        record = Dropped(entry.tx.hash, reason, detail, height)
        self._dropped_counts[reason.value] = self._dropped_counts.get(reason.value, 0) + 1
        if self._dropped_memory:
            self._dropped[entry.tx.hash] = record
            while len(self._dropped) > self._dropped_memory:
                self._dropped.popitem(last=False)
        return record

    def _remove(self, entry: _Entry) -> None:
        address = entry.tx.sender
        sender = self._senders[address]
        del sender.by_nonce[entry.tx.nonce]
        if sender.next_nonce <= entry.tx.nonce < sender.run_end:
            self._includable -= sender.run_end - entry.tx.nonce
            sender.run_end = entry.tx.nonce
        del self._by_hash[entry.tx.hash]
        self._by_raw.pop(entry.tx.raw, None)
        self._bytes -= len(entry.tx.raw)
        if entry.tx.nonce == sender.next_nonce:
            self._ready.pop(address, None)
        if not sender.by_nonce:
            del self._senders[address]
            self._ready.pop(address, None)

    def _advance(self, address: bytes, sender: _Sender, nonce: int, height: int) -> list[Dropped]:
        """The sender's committed nonce moved to ``nonce``: what waits below it is dropped,
        and the sender goes to the back of the ready order (it was served), or leaves it
        when its next transaction is not here."""
        dropped = [
            self._drop(
                sender.by_nonce[stale],
                DropReason.NONCE_USED,
                f"another transaction with nonce {stale} committed",
                height,
            )
            for stale in sorted(n for n in sender.by_nonce if n < nonce)
        ]
        before = sender.includable
        sender.next_nonce = nonce
        sender.extend_run()
        self._includable += sender.includable - before
        self._ready.pop(address, None)
        if nonce in sender.by_nonce:
            self._ready[address] = None
        if not sender.by_nonce:
            self._senders.pop(address, None)
        return dropped

    @staticmethod
    def _reachable(sender: _Sender, nonce: int) -> bool:
        return nonce <= sender.run_end

    def _remember_nonce(self, address: bytes, nonce: int, height: int) -> None:
        recent = self._recent_nonces
        recent[address] = max(nonce, recent.pop(address, 0))
        if len(recent) > RECENT_NONCES:
            recent.popitem(last=False)
            self._recent_evicted_height = height

    def _compact(self) -> None:
        # Committed transactions leave stale heap items behind; compact when they dominate.
        for name in ("_height_deadlines", "_gap_deadlines"):
            heap: list[tuple[int, int, bytes]] = getattr(self, name)
            if len(heap) > 2 * len(self._by_hash) + 1024:
                live = self._by_hash
                kept = [item for item in heap if item[2] in live]
                heapq.heapify(kept)
                setattr(self, name, kept)

    def statistics(self) -> MempoolStats:
        return MempoolStats(
            transactions=len(self._by_hash),
            includable=self._includable,
            includable_senders=len(self._ready),
            bytes=self._bytes,
            senders=len(self._senders),
            admitted=self._seq,
            rejected=dict(sorted(self._rejected.items())),
            dropped=dict(sorted(self._dropped_counts.items())),
            removed_committed=self._removed,
        )
