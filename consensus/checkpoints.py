"""Checkpoints and garbage collection (Castro & Liskov §4.3).

Every K blocks a replica signs CHECKPOINT(h, block_hash, state_root); q matching ones are
a stable checkpoint, whose certificate is the proof that the state at h is the chain's.
The stable checkpoint is the low watermark h; heights above h + L (the watermark window)
are not accepted. A new stable checkpoint collects the log at or below it, in every part
that holds one (each through its own ``collect``).

House rules: the stable checkpoint only moves up; only :meth:`Checkpoints.advance_to`
moves it, and it always collects; nothing here signs or sends.
"""

from __future__ import annotations

from consensus.catchup import Catchup
from consensus.certificates import genesis_checkpoint
from consensus.committed import CommittedChain
from consensus.config import ReplicaConfig
from consensus.messages import Checkpoint, CheckpointProof, SignedMessage
from consensus.outbox import Outbox
from consensus.quorum import VoteResult
from consensus.signer import Signer
from consensus.slots import SlotLog


class CheckpointVotes:
    """CHECKPOINT messages by height and sender, until a quorum agrees (a stable checkpoint)."""

    def __init__(self) -> None:
        self.by_height: dict[int, dict[int, tuple[Checkpoint, SignedMessage]]] = {}

    def add(self, message: SignedMessage, body: Checkpoint) -> VoteResult:
        votes = self.by_height.setdefault(body.height, {})
        known = votes.get(message.sender)
        if known is None:
            votes[message.sender] = (body, message)
            return VoteResult.NEW
        return VoteResult.DUPLICATE if known[0] == body else VoteResult.EQUIVOCATION

    def proof(self, height: int, quorum: int) -> CheckpointProof | None:
        """A stable-checkpoint certificate at ``height`` if q validators agree on one body."""
        votes = self.by_height.get(height, {})
        for _, (body, _msg) in sorted(votes.items()):
            matching = [m for _, (b, m) in sorted(votes.items()) if b == body]
            if len(matching) >= quorum:
                return CheckpointProof(
                    body.height, body.block_hash, body.state_root, tuple(matching[:quorum])
                )
        return None

    def own(self, index: int) -> list[SignedMessage]:
        """This replica's own votes, in height order (for retransmission)."""
        found = []
        for height in sorted(self.by_height):
            vote = self.by_height[height].get(index)
            if vote is not None:
                found.append(vote[1])
        return found

    def prune(self, stable_height: int) -> None:
        for height in [h for h in self.by_height if h <= stable_height]:
            del self.by_height[height]

    def size(self) -> int:
        return sum(map(len, self.by_height.values()))


class Checkpoints:
    """The stable checkpoint (low watermark), the votes towards the next ones, and the
    collection of everything below it."""

    def __init__(
        self,
        config: ReplicaConfig,
        out: Outbox,
        log: SlotLog,
        chain: CommittedChain,
        signer: Signer,
        catchup: Catchup,
    ) -> None:
        self._config = config
        self._out = out
        self._log = log
        self._chain = chain
        self._signer = signer
        self._catchup = catchup
        self.stable: CheckpointProof = genesis_checkpoint(config)
        self.votes = CheckpointVotes()

    @property
    def low(self) -> int:
        """The low watermark: heights at or below it are decided and collected."""
        return self.stable.height

    @property
    def high(self) -> int:
        """The high watermark: nothing above it is accepted or proposed."""
        return self.stable.height + self._config.watermark_window

    def resume(self, stable: CheckpointProof) -> None:
        """After a restart: the persisted stable checkpoint (its log is already gone)."""
        self.stable = stable

    def record(self, message: SignedMessage, body: Checkpoint) -> bool:
        """Count a CHECKPOINT vote (ours included); True when it made a checkpoint stable."""
        self._out.count_vote(self.votes.add(message, body), "checkpoint")
        self._catchup.note_claim(message.sender, body.height)
        proof = self.votes.proof(body.height, self._config.quorum)
        if proof is None or proof.height <= self.stable.height:
            return False
        self.advance_to(proof)
        return True

    def advance_to(self, proof: CheckpointProof) -> None:
        """A new stable checkpoint: move the low watermark, garbage-collect the log (§4.3)."""
        assert proof.height > self.stable.height
        self.stable = proof
        self._out.persist_hard_state()
        height = proof.height
        self._log.collect(height)
        self._chain.collect(height)
        self._signer.collect(height)
        self._catchup.collect(self._chain.height)
        self.votes.prune(height)
        self._catchup.raise_target(height)
