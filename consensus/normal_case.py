"""The normal case (Castro & Liskov §4.2), with the chaining and pipeline rules of
docs/CONSENSUS.md.

For each height of the current view, in order: ask the driver to validate the proposal
once its parent's state exists; send PREPARE once it is valid and its parent is prepared
(or committed) with the digest it names; become prepared with the pre-prepare and q-1
matching PREPAREs from backups; send COMMIT once prepared and the parent is prepared (or
committed) here with the digest it names; commit with q matching COMMITs, strictly in
height order (certified blocks fetched by catch-up commit through the same door). The
primary asks the driver for a proposal while requests are pending and fewer than
``max_pipeline`` heights are in flight.

House rules: this module decides; the parts it is given hold the state and are changed
only through their methods. It never changes the view (consensus/view_changes.py does).
"""

from __future__ import annotations

from consensus import intake
from consensus.catchup import Catchup, payload_matches
from consensus.certificates import is_checkpoint_height
from consensus.checkpoints import Checkpoints
from consensus.committed import CommittedChain
from consensus.config import ReplicaConfig
from consensus.housekeeping import Housekeeping
from consensus.limits import PRE_PREPARE_LOOKAHEAD_PIPELINES
from consensus.messages import (
    BlockReply,
    BlockRequest,
    Checkpoint,
    Commit,
    CommitProof,
    Prepare,
    PreparedProof,
    PrePrepare,
    SignedMessage,
)
from consensus.outbox import Outbox
from consensus.proposals import Proposals
from consensus.quorum import VoteResult
from consensus.ready import CommittedBlock, DriverMisuse, ProposalRequest, ValidateRequest
from consensus.records import Phase, PreparedRecord
from consensus.signer import Signer
from consensus.slots import Slot, SlotLog, Verdict
from consensus.view import ViewState
from crypto.hashing import HASH_SIZE


class NormalCase:
    def __init__(
        self,
        config: ReplicaConfig,
        out: Outbox,
        signer: Signer,
        view: ViewState,
        log: SlotLog,
        chain: CommittedChain,
        checkpoints: Checkpoints,
        catchup: Catchup,
        proposals: Proposals,
        housekeeping: Housekeeping,
    ) -> None:
        self._config = config
        self._index = signer.index
        self._out = out
        self._signer = signer
        self._view = view
        self._log = log
        self._chain = chain
        self._checkpoints = checkpoints
        self._catchup = catchup
        self._proposals = proposals
        self._housekeeping = housekeeping

    # ------------------------------------------------------------------ peer messages

    def on_pre_prepare(self, message: SignedMessage, header: PrePrepare) -> None:
        intake.check_pre_prepare(self._config, message, header, self._chain.height)
        result = self._log.open(header.height).add_pre_prepare(header, message)
        if result is VoteResult.EQUIVOCATION:
            self._out.count("equivocation.pre-prepare")
            return
        payload = message.payload
        if result is VoteResult.DUPLICATE and not payload:
            self._out.count("duplicate.pre-prepare")
        if payload:
            self._log.keep_payload(header.height, header.digest, payload)

    def on_prepare(self, message: SignedMessage, vote: Prepare) -> None:
        intake.check_prepare(self._config, message, vote)
        slot = self._log.open(vote.height)
        self._out.count_vote(slot.add_prepare(message.sender, vote.digest, message), "prepare")

    def on_commit(self, message: SignedMessage, vote: Commit) -> None:
        slot = self._log.open(vote.height)
        result = slot.add_commit(message.sender, vote.digest, message.signature)
        self._out.count_vote(result, "commit")
        if result is VoteResult.NEW:
            self._catchup.note_claim(message.sender, vote.height - 1)

    def on_block(self, message: SignedMessage, reply: BlockReply) -> bool:
        """A payload we asked peers for; True if it was new and kept."""
        slot = self._log.get(reply.height)
        if (
            slot is None
            or slot.digest != reply.digest
            or self._log.has_payload(reply.height, reply.digest)
        ):
            self._out.count("unsolicited_block")
            return False
        intake.check_block_payload(self._config, message, reply)
        self._log.store_payload(reply.height, reply.digest, message.payload)
        return True

    # ------------------------------------------------------------------ driver answers

    def propose(
        self,
        view: int,
        height: int,
        digest: bytes,
        parent_digest: bytes,
        payload: bytes,
        state_root: bytes,
        ends_epoch: bool = False,
    ) -> None:
        if (
            self._proposals.outstanding != ProposalRequest(view, height, parent_digest)
            or view != self._view.view
            or not self._view.active
            or height <= max(self._checkpoints.low, self._view.view_base)
        ):
            # Superseded (a view change, a withdrawal) while the driver was building it.
            self._out.count("stale_proposal")
            return
        if not payload_matches(self._config, payload, digest):
            raise DriverMisuse("proposed payload is oversized or does not hash to its digest")
        if len(state_root) != HASH_SIZE:
            raise DriverMisuse("state_root must be 32 bytes")
        self._proposals.answered()
        header = PrePrepare(view, height, digest, parent_digest)
        message = self._signer.sign_slot(view, height, Phase.PRE_PREPARE, digest, header, payload)
        if message is not None:
            slot = self._log.open(height)
            if slot.header is None:
                slot.pre_prepared(header, message)
                self._log.store_payload(height, digest, payload)
                self._log.record_verdict(
                    height, digest, Verdict(True, state_root, parent_digest, ends_epoch)
                )
                self._out.send(None, message)
        self.advance()

    def validated(
        self,
        view: int,
        height: int,
        digest: bytes,
        ok: bool,
        state_root: bytes | None,
        ends_epoch: bool = False,
    ) -> None:
        asked = self._log.validation_asked(height, digest)
        if asked is None or asked[0] != view:
            # Asked in a view we have left (its parent's state may be gone): ask again.
            self._out.count("stale_verdict")
            return
        if ok and (state_root is None or len(state_root) != HASH_SIZE):
            raise DriverMisuse("an ok verdict needs the 32-byte state root")
        root = state_root if ok and state_root is not None else bytes(HASH_SIZE)
        self._log.validation_answered(
            height, digest, Verdict(ok, root, asked[1], ok and ends_epoch)
        )
        if not ok:
            self._out.count("invalid_proposal")
        self.advance()

    # ------------------------------------------------------------------ moving forward

    def advance(self) -> None:
        """Move every slot as far as its votes allow, commit in order, ask for a proposal."""
        if self._chain.ends_epoch:
            return  # the next epoch's replica takes over above this height
        if self._view.active:
            self._advance_slots()
        while self._commit_next():
            if self._chain.ends_epoch:
                return
            if self._view.active:
                self._advance_slots()
        self._catchup.maybe_fetch(
            self._chain.height, self._housekeeping.ticks_since_commit, self._view.active
        )
        self._maybe_request_proposal()

    def _advance_slots(self) -> None:
        # Committed heights have nothing left to do (their votes are out or not needed).
        for height in self._log.heights_above(self._chain.height):
            slot = self._log.get(height)
            if slot is not None:  # a commit below may garbage-collect slots
                self._advance_slot(height, slot)

    @property
    def epoch_over(self) -> bool:
        """The committed head is the last block of this epoch: this core is done."""
        return self._chain.ends_epoch

    def _ends_epoch(self, height: int, digest: bytes) -> bool:
        """The block ``digest`` at ``height`` is known to end the epoch (the epoch rule)."""
        if height == self._chain.height and digest == self._chain.digest:
            return self._chain.ends_epoch
        verdict = self._log.verdict(height, digest)
        return verdict is not None and verdict.ends_epoch

    def committed_digest_at(self, height: int) -> bytes | None:
        return self._chain.digest_at(height, self._checkpoints.stable)

    def _verdict(self, height: int, digest: bytes) -> bool | None:
        if height <= self._chain.height:
            known = self.committed_digest_at(height)
            return None if known is None else known == digest
        verdict = self._log.verdict(height, digest)
        return None if verdict is None else verdict.ok

    def _parent_prepared(self, height: int, parent: bytes) -> bool:
        """Chaining rule for PREPARE: h-1 committed, or prepared in this view, with that digest."""
        if self.committed_digest_at(height - 1) == parent:
            return True
        below = self._log.get(height - 1)
        return below is not None and below.prepared and below.digest == parent

    def _advance_slot(self, height: int, slot: Slot) -> None:
        header = slot.header
        if header is None or slot.pre_prepare is None:
            return
        ok = self._verdict(height, header.digest)
        if ok is None:
            self._request_validation(slot, header)
            return
        if not ok:
            return
        config, index, view = self._config, self._index, self._view.view
        primary = config.primary(view)
        # Cheapest tests first in each rule: most calls find our vote already in.
        if (
            index not in slot.prepares
            and index != primary
            and height <= self._chain.height + config.max_pipeline
            and self._parent_prepared(height, header.parent_digest)
        ):
            vote = Prepare(view, height, header.digest)
            message = self._signer.sign_slot(view, height, Phase.PREPARE, header.digest, vote)
            if message is not None:
                slot.add_prepare(index, header.digest, message)
                self._out.send(None, message)
        if not slot.prepared and len(slot.prepares) >= config.quorum - 1:
            prepares = slot.prepare_messages(header.digest, primary)
            if len(prepares) >= config.quorum - 1:
                slot.mark_prepared()
                proof = PreparedProof(
                    header, slot.pre_prepare, tuple(prepares[: config.quorum - 1])
                )
                if height > self._chain.height:
                    self._log.add_prepared(height, proof)
                    payload = self._log.payload(height, header.digest)
                    self._out.persist_prepared(PreparedRecord(proof, payload or b""))
        if (
            slot.prepared
            and index not in slot.commits
            and self._parent_prepared(height, header.parent_digest)
        ):
            commit = Commit(view, height, header.digest)
            message = self._signer.sign_slot(view, height, Phase.COMMIT, header.digest, commit)
            if message is not None:
                slot.add_commit(index, header.digest, message.signature)
                self._out.send(None, message)

    def _request_validation(self, slot: Slot, header: PrePrepare) -> None:
        height, digest = header.height, header.digest
        payload = self._log.payload(height, digest)
        if payload is None:
            limit = self._chain.height + PRE_PREPARE_LOOKAHEAD_PIPELINES * self._config.max_pipeline
            if not slot.payload_requested and height <= limit:
                slot.mark_payload_requested()
                self._out.send(None, self._signer.sign(BlockRequest(height, digest)))
            return
        if self._log.validation_asked(height, digest) is not None:
            return
        if self._ends_epoch(height - 1, header.parent_digest):
            # The epoch rule: a child of the epoch's last block belongs to the next set.
            self._out.count("epoch.beyond_end")
            return
        chain = self._chain
        parent_ready = (
            height - 1 == chain.height and header.parent_digest == chain.digest
        ) or self._verdict(height - 1, header.parent_digest) is True
        if parent_ready and height - 1 >= chain.height:
            view = self._view.view
            self._log.ask_validation(height, digest, view, header.parent_digest)
            self._out.validate(ValidateRequest(view, height, digest, header.parent_digest, payload))

    def _commit_next(self) -> bool:
        """Commit height committed+1 if a quorum certified it and it executed; True if done."""
        height = self._chain.height + 1
        quorum = self._config.quorum
        slot = self._log.get(height) if self._view.active else None
        if slot is not None and len(slot.commits) < quorum:
            slot = None  # no digest can have q COMMITs here yet
        if slot is not None and slot.header is not None:
            header = slot.header
            votes = slot.commit_votes(header.digest)
            if len(votes) >= quorum:
                verdict = self._log.verdict(height, header.digest)
                if verdict is None:
                    self._request_validation(slot, header)
                elif not verdict.ok:
                    self._out.count("certified_block_invalid")
                    self._out.halt(_certified_invalid(height, header.digest))
                elif header.parent_digest != self._chain.digest:
                    self._out.count("certified_block_forks")
                else:
                    payload = self._log.payload(height, header.digest)
                    if payload is not None:
                        view = self._view.view
                        self._commit(
                            view,
                            header,
                            payload,
                            verdict.state_root,
                            tuple(votes),
                            verdict.ends_epoch,
                        )
                        return True
        if slot is not None:
            for digest in slot.commit_digests():
                if digest != slot.digest and len(slot.commit_votes(digest)) >= quorum:
                    # Certified elsewhere, while we hold another header.
                    self._catchup.raise_target(height)
        return self._commit_fetched(height)

    def _commit_fetched(self, height: int) -> bool:
        """Commit a certified block from catch-up at ``height`` once it executed here."""
        block = self._catchup.get(height)
        if block is None:
            return False
        if block.parent_digest != self._chain.digest:
            self._out.count("catchup.bad_parent")
            self._catchup.drop(height)
            return False
        view = block.certificate.view
        verdict = self._log.verdict(height, block.digest)
        if verdict is None and self._ends_epoch(height - 1, block.parent_digest):
            return False
        if verdict is None:
            if self._log.validation_asked(height, block.digest) is None:
                self._log.ask_validation(height, block.digest, view, block.parent_digest)
                self._out.validate(
                    ValidateRequest(view, height, block.digest, block.parent_digest, block.payload)
                )
            return False
        self._catchup.drop(height)
        if not verdict.ok:
            self._out.count("catchup.certified_block_invalid")
            self._out.halt(_certified_invalid(height, block.digest))
            return False
        header = PrePrepare(view, height, block.digest, block.parent_digest)
        self._commit(
            view,
            header,
            block.payload,
            verdict.state_root,
            block.certificate.votes,
            verdict.ends_epoch,
        )
        return True

    def _commit(
        self,
        view: int,
        header: PrePrepare,
        payload: bytes,
        state_root: bytes,
        votes: tuple[tuple[int, bytes], ...],
        ends_epoch: bool,
    ) -> None:
        height = header.height
        chain = self._chain
        assert height == chain.height + 1 and header.parent_digest == chain.digest
        self._out.commit(
            CommittedBlock(
                view,
                height,
                header.digest,
                header.parent_digest,
                payload,
                state_root,
                votes,
                ends_epoch,
            )
        )
        config = self._config
        chain.append(
            CommitProof(view, height, header.digest, votes),
            keep_below=config.watermark_window + config.max_pipeline,
            ends_epoch=ends_epoch,
        )
        self._housekeeping.on_commit()
        self._proposals.reopen()
        self._view.progress()
        self._log.forget_committed(height)
        if is_checkpoint_height(config, height) and height > self._checkpoints.low:
            body = Checkpoint(height, header.digest, state_root)
            message = self._signer.sign(body)
            self._out.send(None, message)
            self._checkpoints.record(message, body)

    def _maybe_request_proposal(self) -> None:
        view, proposals, chain = self._view, self._proposals, self._chain
        if (
            not view.active
            or self._config.primary(view.view) != self._index
            or not proposals.pending
            or proposals.outstanding is not None
            or proposals.skipped
        ):
            return
        top = max(self._log.top_pre_prepared(default=chain.height), chain.height)
        height = top + 1
        if height <= max(self._checkpoints.low, view.view_base):
            return  # behind the view's base or our own stable checkpoint: catch up first
        if height - chain.height > self._config.max_pipeline:
            return
        if height > self._checkpoints.high:
            return
        parent = chain.digest if top == chain.height else self._log.slots[top].digest
        if parent is None or self._verdict(top, parent) is not True:
            return
        if self._ends_epoch(top, parent):
            return
        if self._signer.signed_at(view.view, height, Phase.PRE_PREPARE) is not None:
            return  # signed before a restart; the payload went with it
        request = ProposalRequest(view.view, height, parent)
        proposals.ask(request)
        self._out.propose(request)

    # ------------------------------------------------------------------ for the timers

    def trailing_a_live_view(self) -> bool:
        """This replica trails a live view: a block above its head is certified in this
        view, or f+1 peers claim higher heights and it is still committing (catching up).
        A claim alone is not enough: if nothing commits here, the timer must run. Nor is a
        certified block above a gap for ever: the block in the gap may be held only by a
        Byzantine replica that kept its COMMIT and serves forgeries, and only a view change
        re-certifies it; so after two timeouts without a commit only a certified block at
        the very next height (ours to commit once our driver validates it) still counts."""
        if self._catchup.target > self._chain.height and (
            self._housekeeping.ticks_since_commit < self._config.view_change_timeout_ticks // 2
        ):
            return True
        next_slot = self._log.slots.get(self._chain.height + 1)
        if next_slot is not None and next_slot.certified(self._config.quorum):
            return True
        if self._housekeeping.ticks_since_commit >= 2 * self._config.view_change_timeout_ticks:
            return False
        return self._log.any_certified_above(self._chain.height, self._config.quorum)


def _certified_invalid(height: int, digest: bytes) -> str:
    return (
        f"block {height} ({digest.hex()[:16]}) is certified by a quorum but does not validate here"
    )
