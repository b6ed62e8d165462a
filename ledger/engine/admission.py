"""Admission: turning bytes from a client or a peer into an :class:`AdmittedTx`, once.

Theory of operation. A transaction's bytes are hashed once (SHA-256), decoded once, checked
against the chain's stateless rules and, unless this node verified that hash before, its
Ed25519 signature verified once (:class:`VerifiedCache`). The result is an
:class:`AdmittedTx`: the only thing the mempool accepts, carrying the hash, the sender's
address and the nonce. Before the signature is verified, :func:`admit_raw` checks the
sender's role on the committed state (``ledger.chain.roles.role_refusal``: code
``not_permitted``) and asks a *gate* (the mempool's caps) whether the sender may add
anything at all, so an unlisted or over-cap sender costs a decode, not a verify.

:class:`Backpressure` sizes the mempool a client may fill: about what the network commits in
``target_delay_ms`` (measured from the commit rate on an injected clock), so accepted
transactions commit within seconds instead of queueing for minutes.

Never: verify a signature whose hash is in the verified cache, accept a transaction the
chain can never include (over the block's byte or gas budget), or read a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from crypto.hashing import sha256
from ledger.chain.execute import ChainRules
from ledger.chain.roles import role_refusal
from ledger.chain.state_access import StateReader
from ledger.chain.types import (
    Transaction,
    TxLimits,
    TxRejected,
    decode_transaction,
    validate_transaction,
)
from ledger.chain.validators import vote_refusal

#: Transactions whose signatures a node remembers as verified (FIFO; ~60 bytes each).
MAX_VERIFIED_CACHE: Final = 200_000
#: Proposal skip reasons that mean "this transaction will never be includable": drop it.
PERMANENT_SKIPS: Final = frozenset(
    {"expired", "not_permitted", "bad_signature", "wrong_chain", "too_large", "gas_limit"}
)
#: Rejection codes that mean "not now, try again later" (HTTP 429 with Retry-After).
BACKPRESSURE_CODES: Final = frozenset({"busy", "sender_busy", "mempool_full"})
#: Backpressure: client transactions are refused while the mempool holds more than the
#: network commits in this long (at the measured rate) ...
TARGET_QUEUE_DELAY_MS: Final = 3_000
#: ... but never below this many (a network that has not committed anything yet must
#: still take work, and a small burst should not be refused).
MIN_CLIENT_BACKLOG: Final = 2_000
#: The commit rate is measured over windows of about this long.
RATE_WINDOW_MS: Final = 2_000
#: What a refused client is told to wait before retrying.
RETRY_AFTER_MS: Final = 2_000


@dataclass(frozen=True, slots=True)
class AdmittedTx:
    """A transaction that passed the stateless rules and whose signature verified here."""

    tx: Transaction

    @property
    def hash(self) -> bytes:
        return self.tx.hash

    @property
    def sender(self) -> bytes:
        """The sender's account address."""
        return self.tx.sender_address

    @property
    def nonce(self) -> int:
        return self.tx.nonce

    @property
    def raw(self) -> bytes:
        return self.tx.raw


class VerifiedCache:
    """Transaction hashes whose signatures this node has verified (bounded, FIFO).

    Shared with worker threads: only single dict operations, each atomic under the GIL.
    """

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

    def __len__(self) -> int:
        return len(self._seen)

    def verify(self, tx: Transaction) -> bool:
        """The Ed25519 check itself (a simulator may share the work between validators)."""
        return tx.signature_valid()

    def signature_ok(self, tx: Transaction) -> bool:
        if tx.hash in self._seen:
            return True
        if self.verify(tx):
            self.add(tx.hash)
            return True
        return False


#: A cheap check before the signature: may this sender (address) add a transaction of this
#: size with this nonce now? Returns the rejection, or None.
Gate = Callable[[bytes, int, int], TxRejected | None]


class RequestRuns:
    """One client request's transactions, per sender: once one of a sender's nonces is
    refused "for now" (backpressure), its later nonces in the same request are refused with
    it. Taken, they could only wait behind the refused one; and a client that asked to be
    answered on commit would hear of the refusal only when the wait runs out (issue 18's
    stall: by then the mempool had dropped what waited behind the gap, 30 s)."""

    def __init__(self) -> None:
        self._refused: dict[bytes, tuple[int, str]] = {}

    def check(self, sender: bytes, nonce: int) -> TxRejected | None:
        held = self._refused.get(sender)
        if held is None or nonce <= held[0]:
            return None
        first, code = held
        return TxRejected(
            code,
            f"nonce {first} of this sender was refused in this request ({code}); "
            f"resend from nonce {first}",
        )

    def refused(self, sender: bytes, nonce: int, code: str) -> None:
        if code not in BACKPRESSURE_CODES:
            return
        held = self._refused.get(sender)
        if held is None or nonce < held[0]:
            self._refused[sender] = (nonce, code)


class BatchGate:
    """The gate for one batch of a client's transactions, checked before their signatures.

    * A transaction that continues a run of its sender's nonces this batch already let
      through is not refused here. The engine applies the mempool's gate again as it adds
      them, after each one's predecessor joined the pool, so a retry of the nonces that
      fill a gap gets in whole: judged against the pool before any of them, only the first
      would fill the gap, and the rest would wait a retry each (for a run of 30, longer than
      the mempool keeps what waits behind a gap).
    * Once it refuses one of a sender's nonces, it refuses the sender's later ones in the
      batch too (:class:`RequestRuns`). The pool changes while a batch is checked (blocks
      commit on the event loop): without this, a sender's nonce n could be refused and
      n + 1 taken, behind a gap of the batch's own making.
    """

    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._next: dict[bytes, int] = {}
        self.runs = RequestRuns()

    def __call__(self, sender: bytes, size: int, nonce: int) -> TxRejected | None:
        held = self.runs.check(sender, nonce)
        if held is not None:
            return held
        if self._next.get(sender) == nonce:
            return None
        refused = self._gate(sender, size, nonce)
        if refused is not None:
            self.runs.refused(sender, nonce, refused.code)
        return refused

    def admitted(self, tx: AdmittedTx) -> TxRejected | None:
        """``tx`` passed the checks before the engine: its refusal after all, when an
        earlier nonce of its sender in this batch was refused (a transaction this node had
        verified before skips the gate, so :meth:`__call__` did not see it)."""
        held = self.runs.check(tx.sender, tx.nonce)
        if held is None:
            self._next[tx.sender] = tx.nonce + 1
        return held


def admit_raw(
    raw: bytes,
    rules: ChainRules,
    verified: VerifiedCache,
    *,
    tx_hash: bytes | None = None,
    gate: Gate | None = None,
    known: Mapping[bytes, Transaction] | None = None,
    roles: StateReader | None = None,
) -> AdmittedTx:
    """Hash, decode and check ``raw`` (verifying its signature unless already verified);
    raise :class:`TxRejected`. Pure CPU (one Ed25519 verify at most): run it off the event
    loop. ``tx_hash`` saves hashing ``raw`` when the caller already did; ``known`` maps
    bytes this node already decoded (in a block) to their transaction: neither hashed nor
    decoded again; ``roles`` is the committed state the sender's role is checked on (None:
    not checked here; execution checks it either way)."""
    tx = known.get(raw) if known is not None else None
    if tx is not None:
        digest = tx.hash
    else:
        digest = sha256(raw) if tx_hash is None else tx_hash
        tx = decode_transaction(raw, rules.limits, tx_hash=digest)
    already_verified = digest in verified
    validate_transaction(tx, rules.chain_id, rules.limits, check_signature=False)
    if tx.gas_limit > rules.max_block_gas or len(raw) > rules.max_block_bytes:
        raise TxRejected("gas_limit", "the transaction does not fit in any block")
    if roles is not None:
        refusal = role_refusal(roles, tx.payload, tx.sender_address) or vote_refusal(
            roles, rules.initial_set, tx.payload, tx.sender
        )
        if refusal is not None:
            raise TxRejected("not_permitted", refusal)
    if gate is not None and not already_verified:  # the engine applies the gate again
        refused = gate(tx.sender_address, len(raw), tx.nonce)
        if refused is not None:
            raise refused
    if not already_verified:
        if not verified.verify(tx):
            raise TxRejected("bad_signature", "signature does not verify for this sender and chain")
        verified.add(digest)
    return AdmittedTx(tx)


def check_transaction(raw: bytes, chain_id: str, limits: TxLimits) -> Transaction:
    """Stateless admission of one transaction (decode, size, chain id, gas, signature)."""
    tx = decode_transaction(raw, limits)
    validate_transaction(tx, chain_id, limits)
    return tx


class Backpressure:
    """The size of mempool a client may fill: about ``target_delay_ms`` of commits.

    Fed each commit (transactions, time); ``client_limit`` is
    ``max(MIN_CLIENT_BACKLOG, rate * target_delay_ms)`` where the rate is the larger of the
    last full window's and the current one's (a burst after idle is not judged by the idle
    window)."""

    def __init__(
        self,
        *,
        target_delay_ms: int = TARGET_QUEUE_DELAY_MS,
        min_backlog: int = MIN_CLIENT_BACKLOG,
        window_ms: int = RATE_WINDOW_MS,
    ) -> None:
        self.target_delay_ms = target_delay_ms
        self.min_backlog = min_backlog
        self.window_ms = window_ms
        self._window_start_ms: int | None = None
        self._window_txs = 0
        self._last_rate_per_s = 0

    def committed(self, txs: int, now_ms: int) -> None:
        if self._window_start_ms is None:
            self._window_start_ms = now_ms
        elapsed = now_ms - self._window_start_ms
        if elapsed >= self.window_ms:
            self._last_rate_per_s = self._window_txs * 1000 // max(1, elapsed)
            self._window_start_ms, self._window_txs = now_ms, 0
        self._window_txs += txs

    def rate_per_s(self, now_ms: int) -> int:
        current = 0
        if self._window_start_ms is not None:
            elapsed = now_ms - self._window_start_ms
            if elapsed >= self.window_ms // 2:
                current = self._window_txs * 1000 // max(1, elapsed)
        return max(self._last_rate_per_s, current)

    def client_limit(self, now_ms: int) -> int:
        return max(self.min_backlog, self.rate_per_s(now_ms) * self.target_delay_ms // 1000)
