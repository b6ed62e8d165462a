"""Catch-up: learning that this replica is behind, and the certified blocks that fix it.

A replica learns it is behind from a stable checkpoint above its head, a NEW-VIEW base, a
certified height it cannot commit, or f+1 validators' signed claims (one of them is
honest); the highest such height is the catch-up target. While the target is above the
head the replica asks the driver to fetch certified blocks (and asks again while it stays
behind); fetched blocks are checked completely here and wait for their predecessor.

House rules: a fetched block is trusted only through its commit certificate; nothing here
commits a block (the normal case does, in height order) or sends anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.certificates import Rejected, verify_commit_proof
from consensus.config import ReplicaConfig
from consensus.limits import MAX_CATCHUP_BLOCKS
from consensus.messages import CommitProof
from consensus.outbox import Outbox
from consensus.ready import FetchRequest
from consensus.slots import SlotLog


@dataclass(frozen=True, slots=True)
class CatchupBlock:
    """A certified block waiting for its predecessor to commit."""

    digest: bytes
    parent_digest: bytes
    payload: bytes
    certificate: CommitProof


def payload_matches(config: ReplicaConfig, payload: bytes, digest: bytes) -> bool:
    """Within the size cap and hashing to ``digest``."""
    return len(payload) <= config.max_block_bytes and config.block_digest(payload) == digest


class Catchup:
    def __init__(self, config: ReplicaConfig, index: int, out: Outbox) -> None:
        self._config = config
        self._index = index
        self._out = out
        self.blocks: dict[int, CatchupBlock] = {}
        #: A height known committed by the network (by a quorum or an honest replica).
        self.target = config.genesis_height
        #: The highest height each validator signed something implying it committed.
        self.peer_claims: dict[int, int] = {}
        self.fetch_timer = 0
        self.fetch_outstanding = False

    # ------------------------------------------------------------------ the target

    def note_claim(self, sender: int, height: int) -> None:
        """A validator signed something implying it committed ``height``; f+1 such claims
        above us mean at least one honest replica is ahead."""
        if sender == self._index or height <= self.peer_claims.get(sender, -1):
            return
        self.peer_claims[sender] = height
        claims = sorted(self.peer_claims.values(), reverse=True)
        weak = self._config.weak_quorum
        if len(claims) >= weak:
            self.raise_target(claims[weak - 1])

    def raise_target(self, height: int) -> None:
        if height > self.target:
            self.target = height
            self.fetch_outstanding = False

    def resume(self, stable_height: int) -> None:
        """After a restart: at least up to our own stable checkpoint."""
        self.target = max(self.target, stable_height)

    # ------------------------------------------------------------------ fetching

    def on_tick(self) -> None:
        """A fetch unanswered for two retransmission periods may be asked again."""
        self.fetch_timer += 1
        if self.fetch_outstanding and self.fetch_timer >= 2 * self._config.retransmit_ticks:
            self.fetch_outstanding = False

    def maybe_fetch(self, committed_height: int, ticks_since_commit: int, active: bool) -> None:
        if self.target <= committed_height or self.fetch_outstanding:
            return
        # A replica a block or two behind while pipelining commits those itself; fetch when
        # clearly behind, when nothing has committed for a while, or while changing views.
        far_behind = self.target > committed_height + self._config.max_pipeline
        stuck = ticks_since_commit >= self._config.retransmit_ticks
        if not (far_behind or stuck or not active):
            return
        upto = min(self.target, committed_height + MAX_CATCHUP_BLOCKS)
        self._out.fetch(FetchRequest(committed_height + 1, upto))
        self.fetch_outstanding = True
        self.fetch_timer = 0

    def receive(
        self,
        height: int,
        digest: bytes,
        parent_digest: bytes,
        payload: bytes,
        certificate: CommitProof,
        committed_height: int,
    ) -> bool:
        """A fetched block, checked completely; True if it was queued. Raises Rejected."""
        if height <= committed_height or height in self.blocks:
            self._out.count("catchup.stale")
            return False
        if height > committed_height + MAX_CATCHUP_BLOCKS:
            raise Rejected("catchup_too_far", f"height {height}")
        if (certificate.height, certificate.digest) != (height, digest):
            raise Rejected("catchup_certificate_mismatch")
        if not payload_matches(self._config, payload, digest):
            raise Rejected("catchup_bad_payload")
        verify_commit_proof(self._config, certificate)
        self.blocks[height] = CatchupBlock(digest, parent_digest, payload, certificate)
        return True

    def adopt(self, proof: CommitProof, committed_height: int, log: SlotLog) -> None:
        """A verified commit certificate learnt from a VIEW-CHANGE or NEW-VIEW, for a block
        we hold ourselves (our prepared certificate and its payload): queue it like a
        fetched block. The base of a NEW-VIEW may be committed only at a Byzantine replica
        (it gathered our COMMITs and kept its own); we must not depend on it to serve it."""
        height = proof.height
        if (
            height <= committed_height
            or height in self.blocks
            or height > committed_height + MAX_CATCHUP_BLOCKS
        ):
            return
        prepared = log.prepared.get(height)
        payload = log.payload(height, proof.digest)
        if prepared is None or prepared.header.digest != proof.digest or payload is None:
            return
        self.blocks[height] = CatchupBlock(
            proof.digest, prepared.header.parent_digest, payload, proof
        )

    # ------------------------------------------------------------------ the queue

    def get(self, height: int) -> CatchupBlock | None:
        return self.blocks.get(height)

    def drop(self, height: int) -> None:
        del self.blocks[height]

    def collect(self, committed_height: int) -> None:
        for h in [h for h in self.blocks if h <= committed_height]:
            del self.blocks[h]
