"""Retiring: a validator voted out stays, voting nothing, until the new set has taken over.

Why not stop at once. At the switch block E the old set certifies E with q COMMITs; a
member of the old set that is not in the new one (removed by the validators' votes) has
then committed E and holds E's certificate. If its own COMMIT for E was lost and another
old member is down or Byzantine, the old members that have not committed E are one
COMMIT short for ever, and cannot view-change either (the leaver counts in the old
quorum): if the leaver exited, the new set would never start (found by the epoch
simulator, docs/RELIABILITY.md §12; consensus/sim/driver.py retires the same way).

So at the switch a node whose key left the set keeps its old epoch's replica, *retiring*
(docs/CONSENSUS.md §12): it ticks — retransmits its COMMIT for E while E's slot is in its
log, announces STATUS, and answers a straggler's STATUS with the proof of its stable
checkpoint (E is a checkpoint height), so a straggler completes E's certificate or learns
that E is committed and fetches it — and its node keeps answering catch-up requests with
its certified blocks. It never proposes
(the replica asks for nothing above E), is told no request is pending (so its timers
never start a view change), takes no client transaction (``not_a_validator``) and drops
gossip. It retires for good (:class:`Retired`: the process ends with status 0) as soon
as a linked peer serves block E+1 with a commit certificate that verifies with the NEW
set — then a quorum of the new set has committed E and serves it to everyone else — or
after :func:`grace_ms`, whichever comes first. A forged or old-set certificate ends
nothing early.

The members of the set the active one replaced stay in every node's peer table for the
epoch (ledger/node/membership.py), so the leaver keeps its links to the new set.

Never: sign anything new of its own accord, trust a block's claim without its
certificate, or wait without a bound.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Sequence
from typing import Any, Final, Protocol

import trio

from consensus.certificates import Rejected, verify_commit_proof
from consensus.config import ReplicaConfig
from consensus.messages import CommitProof
from consensus.ready import Ready
from consensus.replica import Replica
from crypto.encoding import DecodeError
from ledger.chain.types import Block, CommitCertificate
from ledger.engine.admission import RETRY_AFTER_MS
from ledger.engine.events import PeerMessage, Tick
from ledger.node import wire
from ledger.node.logs import log_event

log = logging.getLogger("quorum.node")

#: A retiring validator waits at most this many view-change timeouts (genesis
#: ``consensus.view_change_timeout_ms``) for the new set to certify the block after its
#: switch: room for the stragglers' probe (5 s), a view change of the new set, and a block.
RETIRE_GRACE_VIEW_CHANGES: Final = 10
#: ... and at least this long (a short timeout must not cut the stragglers' probe short).
RETIRE_GRACE_MIN_MS: Final = 20_000
#: Every this often it asks each linked peer for block E+1 with its certificate.
ASK_INTERVAL_S: Final = 1.0
#: Replies waiting to be checked (more are dropped and counted: it asks again anyway).
MAX_WAITING_REPLIES: Final = 16
#: The code a client gets from a retiring validator (HTTP 503).
NOT_A_VALIDATOR: Final = "not_a_validator"


class Retired(Exception):
    """The node retired: removed from the validator set at block ``removed_at``, it saw
    the new set take over (``reason`` "taken_over") or waited out its grace period
    ("grace_period"). Not damage: the process ends with status 0 and this message."""

    def __init__(self, message: str, *, removed_at: int, reason: str) -> None:
        super().__init__(message)
        self.removed_at = removed_at
        self.reason = reason


class NotEvidence(Exception):
    """A served block does not prove that the new set took over."""


class Links(Protocol):
    def connected_peers(self) -> list[int]: ...

    def send(self, peer_index: int, message: bytes, *, bulk: bool = False) -> None: ...


def grace_ms(config: ReplicaConfig) -> int:
    """How long a retiring validator waits at most (:data:`RETIRE_GRACE_VIEW_CHANGES`)."""
    return max(RETIRE_GRACE_MIN_MS, RETIRE_GRACE_VIEW_CHANGES * config.view_change_timeout_ms)


def check_takeover(
    raw_block: bytes,
    raw_certificate: bytes,
    *,
    switch_height: int,
    switch_hash: bytes,
    new_config: ReplicaConfig,
    max_block_bytes: int,
) -> None:
    """Raise :class:`NotEvidence` unless this is block ``switch_height + 1``, child of the
    switch block, with a commit certificate of ``new_config``'s set (its q signatures
    under the new epoch's domain). No need to execute it: q members of the new set did."""
    try:
        block = Block.decode(raw_block, max_bytes=max_block_bytes)
        certificate = CommitCertificate.decode(raw_certificate)
    except DecodeError as exc:
        raise NotEvidence(f"malformed: {exc}") from None
    header = block.header
    if header.height != switch_height + 1 or header.prev_hash != switch_hash:
        raise NotEvidence(f"block {header.height} is not the child of switch block {switch_height}")
    if certificate.height != header.height or certificate.block_hash != header.block_hash:
        raise NotEvidence(f"block {header.height}: the certificate is for another block")
    proof = CommitProof(
        certificate.view, certificate.height, certificate.block_hash, certificate.votes
    )
    try:
        verify_commit_proof(new_config, proof)
    except Rejected as exc:
        raise NotEvidence(f"block {header.height}: {exc.detail or exc.reason}") from None


def refusals(count: int, removed_at: int) -> list[dict[str, Any]]:
    """Answers for client transactions that reached a retiring validator."""
    return [
        {
            "tx_hash": None,
            "status": "rejected",
            "code": NOT_A_VALIDATOR,
            "error": not_a_validator_message(removed_at),
            "retry_after_ms": RETRY_AFTER_MS,
        }
        for _ in range(count)
    ]


def not_a_validator_message(removed_at: int) -> str:
    return (
        f"this node's validator was removed from the validator set at block {removed_at} "
        "and is retiring: submit to a current validator"
    )


def validator_state(retirement: Retirement | None) -> dict[str, Any]:
    """``validator`` in ``/v1/status`` and ``/health``: a member, or retiring."""
    return {"state": "member"} if retirement is None else retirement.status()


class Retirement:
    """One retiring validator: what its old replica still does, the evidence it waits
    for, and its status. Create it at the switch; :meth:`run` ends by raising Retired."""

    def __init__(
        self,
        new_config: ReplicaConfig,
        old_config: ReplicaConfig,
        max_block_bytes: int,
        counters: collections.Counter[str],
    ) -> None:
        #: The switch block E: the new set's anchor (``genesis_height``/``genesis_digest``).
        self.removed_at = new_config.genesis_height
        self.switch_hash = new_config.genesis_digest
        self.new_config = new_config
        self.grace_ms = grace_ms(old_config)
        self.max_block_bytes = max_block_bytes
        self.counters = counters
        self._replies_send, self._replies = trio.open_memory_channel[
            tuple[int, list[tuple[bytes, bytes]]]
        ](MAX_WAITING_REPLIES)
        self._asked: set[int] = set()

    def status(self) -> dict[str, Any]:
        """What ``/v1/status`` and ``/health`` show under ``validator``."""
        return {
            "state": "retiring",
            "removed_at": self.removed_at,
            "waiting_for": f"block {self.removed_at + 1} certified by the new set "
            f"({', '.join(self.new_config.validator_names)}), at most {self.grace_ms // 1000} s",
        }

    def start(self, replica: Replica) -> Ready:
        """Tell the old replica nothing is pending: its view-change timer never runs."""
        log_event(
            log, "retiring",
            "this validator's key is not in the validator set that took over after block %d "
            "(it was removed by the validators' votes): retiring — it votes nothing and "
            "takes no transactions, but keeps serving its blocks until the new set (%s) "
            "certifies block %d, or for at most %d s",
            self.removed_at, ", ".join(self.new_config.validator_names), self.removed_at + 1,
            self.grace_ms // 1000, removed_at=self.removed_at, grace_ms=self.grace_ms,
        )  # fmt: skip
        return replica.requests_pending(False, None)

    def step(self, replica: Replica, event: object) -> Ready:
        """The retiring replica's share of an event: ticks (retransmission, STATUS) and
        consensus messages (a straggler's STATUS gets our stable checkpoint); nothing else
        (no admissions, no wake-ups, no fetched blocks: it commits nothing above E)."""
        if isinstance(event, Tick):
            return replica.tick()
        if isinstance(event, PeerMessage):
            return replica.receive(event.body)
        self.counters["retire.ignored_events"] += 1
        return Ready()

    def on_blocks(self, sender: int, blocks: list[tuple[bytes, bytes]]) -> None:
        """A BLOCKS reply (transport callback: must not block): checked by :meth:`run`."""
        if sender not in self._asked:
            self.counters["retire.unsolicited_blocks"] += 1
            return
        try:
            self._replies_send.send_nowait((sender, blocks))
        except trio.WouldBlock:
            self.counters["retire.replies_dropped"] += 1

    async def run(self, net: Links, names: Any) -> None:
        """Ask the linked peers for block E+1 until one serves it certified by the new
        set, or until the grace period ends; then raise :class:`Retired`."""
        deadline = trio.current_time() + self.grace_ms / 1000
        wanted = wire.BlocksWanted(self.removed_at + 1, self.removed_at + 1).encode()
        while trio.current_time() < deadline:
            for peer in net.connected_peers():
                self._asked.add(peer)
                net.send(peer, wanted, bulk=True)
            with trio.move_on_at(min(deadline, trio.current_time() + ASK_INTERVAL_S)):
                async for sender, blocks in self._replies:
                    if await trio.to_thread.run_sync(self._proves_takeover, blocks, names[sender]):
                        self._retire(
                            f"retired after block {self.removed_at + 1} was certified by the "
                            f"new set (served by {names[sender]})",
                            "taken_over",
                        )
        self._retire(
            f"retired after the grace period ({self.grace_ms // 1000} s) without seeing the "
            f"new set certify block {self.removed_at + 1}",
            "grace_period",
        )

    def _proves_takeover(self, blocks: Sequence[tuple[bytes, bytes]], served_by: str) -> bool:
        """Worker thread: the reply's block E+1 verifies with the new set (an empty reply:
        the peer has not got it yet)."""
        for raw_block, raw_certificate in blocks[:1]:
            try:
                check_takeover(
                    raw_block,
                    raw_certificate,
                    switch_height=self.removed_at,
                    switch_hash=self.switch_hash,
                    new_config=self.new_config,
                    max_block_bytes=self.max_block_bytes,
                )
            except NotEvidence as exc:
                self.counters["retire.refused_evidence"] += 1
                log.warning("%s served a block that does not prove the new set took over: %s",
                            served_by, exc)  # fmt: skip
                return False
            return True
        return False

    def _retire(self, why: str, reason: str) -> None:
        message = f"removed from the validator set at block {self.removed_at}; {why}"
        log_event(log, "retired", "%s", message, removed_at=self.removed_at, reason=reason)
        raise Retired(message, removed_at=self.removed_at, reason=reason)
