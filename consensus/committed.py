"""The committed chain as the replica knows it: its head, the head's commit certificate and
the digests of the recent committed blocks (the parents the chaining rules check).

House rules: grows one block at a time, strictly in height order; the blocks themselves
are the driver's (its block store), never kept here.
"""

from __future__ import annotations

from consensus.messages import CheckpointProof, CommitProof
from consensus.records import CommittedHead


class CommittedChain:
    def __init__(self, genesis_height: int, genesis_digest: bytes) -> None:
        self.height = genesis_height
        self.digest = genesis_digest
        #: The head's commit certificate (None at genesis).
        self.proof: CommitProof | None = None
        #: The head is the last block of this epoch (a validator-set change took effect).
        self.ends_epoch = False
        #: Digests of recent committed heights (a window below the head).
        self.digests: dict[int, bytes] = {genesis_height: genesis_digest}

    def resume(self, head: CommittedHead) -> None:
        """After a restart: the block store's last block."""
        self.height, self.digest, self.proof = head.height, head.digest, head.certificate
        self.digests = {head.height: head.digest}

    def append(self, proof: CommitProof, keep_below: int, ends_epoch: bool = False) -> None:
        """The next block committed with ``proof``; digests more than ``keep_below``
        heights under it are no longer needed."""
        height = proof.height
        assert height == self.height + 1
        self.height, self.digest = height, proof.digest
        self.digests[height] = proof.digest
        oldest_kept = height - keep_below
        if oldest_kept in self.digests:
            del self.digests[oldest_kept]
        self.proof = proof
        self.ends_epoch = ends_epoch

    def collect(self, stable_height: int) -> None:
        """Below a stable checkpoint only its own digest (in the checkpoint) is needed."""
        for h in [h for h in self.digests if h < stable_height and h != self.height]:
            del self.digests[h]

    def digest_at(self, height: int, stable: CheckpointProof) -> bytes | None:
        """The committed digest at ``height`` if still known here."""
        if height == self.height:
            return self.digest
        if height == stable.height and height <= self.height:
            return stable.block_hash
        return self.digests.get(height)
