"""The normal case of :class:`consensus.replica.Replica` (Castro & Liskov §4.2), with the
chaining and pipeline rules of docs/CONSENSUS.md.

For each height of the current view, in order: ask the driver to validate the proposal
once its parent's state exists; send PREPARE once it is valid and its parent is prepared
(or committed) with the digest it names; become prepared with the pre-prepare and q-1
matching PREPAREs from backups; send COMMIT once prepared and the parent is prepared (or
committed) here with the digest it names;
commit with q matching COMMITs, strictly in height order. The primary asks the driver
for a proposal while requests are pending and fewer than ``max_pipeline`` heights are in
flight. Functions over the replica's state, called only by the replica and its helpers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import housekeeping
from consensus.certificates import (
    is_checkpoint_height,
)
from consensus.limits import MAX_CATCHUP_BLOCKS, PRE_PREPARE_LOOKAHEAD_PIPELINES
from consensus.log import CatchupBlock, Slot, Verdict
from consensus.messages import (
    BlockRequest,
    Checkpoint,
    Commit,
    CommitProof,
    Prepare,
    PreparedProof,
    PrePrepare,
    sign,
)
from consensus.ready import CommittedBlock, ProposalRequest, ValidateRequest
from consensus.records import Phase, PreparedRecord

if TYPE_CHECKING:
    from consensus.replica import Replica


def advance(r: Replica) -> None:
    """Move every slot as far as its votes allow, commit in order, ask for a proposal."""
    if r.active:
        # Committed heights have nothing left to do (their votes are out or not needed).
        for height in sorted(h for h in r.slots if h > r.committed_height):
            if height in r.slots:  # a commit below may garbage-collect slots
                advance_slot(r, height)
    while commit_next(r):
        if r.active:
            for height in sorted(h for h in r.slots if h > r.committed_height):
                if height in r.slots:
                    advance_slot(r, height)
    housekeeping.maybe_fetch(r)
    maybe_request_proposal(r)


def verdict(r: Replica, height: int, digest: bytes) -> bool | None:
    if height <= r.committed_height:
        known = committed_digest_at(r, height)
        return None if known is None else known == digest
    verdict = r.verdicts.get((height, digest))
    return None if verdict is None else verdict.ok


def committed_digest_at(r: Replica, height: int) -> bytes | None:
    if height == r.committed_height:
        return r.committed_digest
    if height == r.stable.height and height <= r.committed_height:
        return r.stable.block_hash
    return r.committed_digests.get(height)


def advance_slot(r: Replica, height: int) -> None:
    slot = r.slots[height]
    header = slot.header
    if header is None or slot.pre_prepare is None:
        return
    ok = verdict(r, height, header.digest)
    if ok is None:
        request_validation(r, slot, header)
        return
    if not ok:
        return
    primary = r.primary
    if (
        r.index != primary
        and height <= r.committed_height + r.config.max_pipeline
        and parent_prepared(r, height, header.parent_digest)
        and r.index not in slot.prepares
    ):
        vote = Prepare(r.view, height, header.digest)
        message = r.sign_slot(r.view, height, Phase.PREPARE, header.digest, vote)
        if message is not None:
            slot.add_prepare(r.index, header.digest, message)
            r.send(None, message)
    if not slot.prepared:
        prepares = slot.prepare_messages(header.digest, primary)
        if len(prepares) >= r.config.quorum - 1:
            slot.prepared = True
            proof = PreparedProof(header, slot.pre_prepare, tuple(prepares[: r.config.quorum - 1]))
            if height > r.committed_height:
                r.prepared[height] = proof
                payload = r.payloads.get((height, header.digest), b"")
                r.out_prepared.append(PreparedRecord(proof, payload))
    if (
        slot.prepared
        and parent_prepared(r, height, header.parent_digest)
        and r.index not in slot.commits
    ):
        commit = Commit(r.view, height, header.digest)
        message = r.sign_slot(r.view, height, Phase.COMMIT, header.digest, commit)
        if message is not None:
            slot.add_commit(r.index, header.digest, message.signature)
            r.send(None, message)


def parent_prepared(r: Replica, height: int, parent: bytes) -> bool:
    """Chaining rule for PREPARE: h-1 committed, or prepared in this view, with that digest."""
    if committed_digest_at(r, height - 1) == parent:
        return True
    below = r.slots.get(height - 1)
    return below is not None and below.prepared and below.digest == parent


def request_validation(r: Replica, slot: Slot, header: PrePrepare) -> None:
    height, digest = header.height, header.digest
    payload = r.payloads.get((height, digest))
    if payload is None:
        limit = r.committed_height + PRE_PREPARE_LOOKAHEAD_PIPELINES * r.config.max_pipeline
        if not slot.payload_requested and height <= limit:
            slot.payload_requested = True
            request = sign(r.key, r.config.chain_id, r.index, BlockRequest(height, digest))
            r.send(None, request)
        return
    if (height, digest) in r.pending_validations:
        return
    parent_ready = (
        height - 1 == r.committed_height and header.parent_digest == r.committed_digest
    ) or verdict(r, height - 1, header.parent_digest) is True
    if parent_ready and height - 1 >= r.committed_height:
        r.pending_validations[(height, digest)] = (r.view, header.parent_digest)
        r.out_validate.append(
            ValidateRequest(r.view, height, digest, header.parent_digest, payload)
        )


def commit_next(r: Replica) -> bool:
    """Commit height committed+1 if a quorum certified it and it executed; True if done."""
    height = r.committed_height + 1
    slot = r.slots.get(height) if r.active else None
    if slot is not None and slot.header is not None:
        header = slot.header
        votes = slot.commit_votes(header.digest)
        if len(votes) >= r.config.quorum:
            verdict = r.verdicts.get((height, header.digest))
            if verdict is None:
                request_validation(r, slot, header)
            elif not verdict.ok:
                r.count("certified_block_invalid")
                r.out_halt = (
                    f"block {height} ({header.digest.hex()[:16]}) is certified by a quorum "
                    "but does not validate here"
                )
            elif header.parent_digest != r.committed_digest:
                r.count("certified_block_forks")
            elif (height, header.digest) in r.payloads:
                payload = r.payloads[(height, header.digest)]
                commit(r, r.view, header, payload, verdict.state_root, tuple(votes))
                return True
    if slot is not None:
        for digest in slot.commit_digests():
            if digest != slot.digest and len(slot.commit_votes(digest)) >= r.config.quorum:
                housekeeping.raise_target(r, height)  # certified elsewhere, we hold another header
    block = r.catchup.get(height)
    if block is None:
        return False
    if block.parent_digest != r.committed_digest:
        r.count("catchup.bad_parent")
        del r.catchup[height]
        return False
    key = (height, block.digest)
    verdict = r.verdicts.get(key)
    if verdict is None:
        if key not in r.pending_validations:
            r.pending_validations[key] = (block.certificate.view, block.parent_digest)
            r.out_validate.append(
                ValidateRequest(
                    block.certificate.view,
                    height,
                    block.digest,
                    block.parent_digest,
                    block.payload,
                )
            )
        return False
    del r.catchup[height]
    if not verdict.ok:
        r.count("catchup.certified_block_invalid")
        r.out_halt = (
            f"block {height} ({block.digest.hex()[:16]}) is certified by a quorum "
            "but does not validate here"
        )
        return False
    header = PrePrepare(block.certificate.view, height, block.digest, block.parent_digest)
    commit(
        r,
        block.certificate.view,
        header,
        block.payload,
        verdict.state_root,
        block.certificate.votes,
    )
    return True


def commit(
    r: Replica,
    view: int,
    header: PrePrepare,
    payload: bytes,
    state_root: bytes,
    votes: tuple[tuple[int, bytes], ...],
) -> None:
    height = header.height
    assert height == r.committed_height + 1 and header.parent_digest == r.committed_digest
    r.out_committed.append(
        CommittedBlock(
            view, height, header.digest, header.parent_digest, payload, state_root, votes
        )
    )
    r.committed_height, r.committed_digest = height, header.digest
    r.committed_digests[height] = header.digest
    oldest_kept = height - r.config.watermark_window - r.config.max_pipeline
    if oldest_kept in r.committed_digests:
        del r.committed_digests[oldest_kept]
    r.commit_proof = CommitProof(view, height, header.digest, votes)
    r.progress_since_retransmit = True
    r.ticks_since_commit = 0
    r.proposal_skipped = False
    if r.active:
        # Progress (PBFT §4.4, and Aardvark's reading of it): the view works, so the
        # timeout goes back to its base and the no-progress timer restarts.
        r.consecutive_view_changes = 0
        r.vc_timer = 0
    for h in [h for h in r.prepared if h <= height]:
        del r.prepared[h]
    for key in [k for k in r.payloads if k[0] <= height]:
        del r.payloads[key]
    for key in [k for k in r.verdicts if k[0] <= height]:
        del r.verdicts[key]
    if is_checkpoint_height(r.config, height) and height > r.stable.height:
        body = Checkpoint(height, header.digest, state_root)
        message = sign(r.key, r.config.chain_id, r.index, body)
        r.send(None, message)
        housekeeping.record_checkpoint(r, message, body)


def maybe_request_proposal(r: Replica) -> None:
    if (
        not r.active
        or r.primary != r.index
        or not r.pending
        or r.proposal_outstanding is not None
        or r.proposal_skipped
    ):
        return
    top = max(
        [h for h, s in r.slots.items() if s.header is not None],
        default=r.committed_height,
    )
    top = max(top, r.committed_height)
    height = top + 1
    if height <= max(r.stable.height, r.view_base):
        return  # behind the view's base or our own stable checkpoint: catch up first
    if height - r.committed_height > r.config.max_pipeline:
        return
    if height > r.stable.height + r.config.watermark_window:
        return
    parent = r.committed_digest if top == r.committed_height else r.slots[top].digest
    if parent is None or verdict(r, top, parent) is not True:
        return
    if (r.view, height, Phase.PRE_PREPARE) in r.signed:
        return  # signed before a restart; the payload went with it
    request = ProposalRequest(r.view, height, parent)
    r.proposal_outstanding = request
    r.out_propose = request


def prune_verdicts(r: Replica, keep: set[tuple[int, bytes]]) -> None:
    """Drop verdicts outside ``keep``, and any whose parent is neither committed nor kept:
    the driver layers each execution result on its parent's, so the set of live results
    must stay closed under ancestors (see ``Replica.live_blocks``)."""
    kept: dict[tuple[int, bytes], Verdict] = {}
    for key in sorted(r.verdicts):
        result = r.verdicts[key]
        height = key[0]
        if key not in keep:
            continue
        if (
            committed_digest_at(r, height - 1) == result.parent
            or (height - 1, result.parent) in kept
        ):
            kept[key] = result
    r.verdicts = kept


def adopt_certificate(r: Replica, proof: CommitProof) -> None:
    """A verified commit certificate learnt from a VIEW-CHANGE or NEW-VIEW, for a block we
    hold ourselves (our prepared certificate and its payload): queue it like a fetched
    block. The base of a NEW-VIEW may be committed only at a Byzantine replica (it
    gathered our COMMITs and kept its own); we must not depend on it to serve the block."""
    height = proof.height
    if (
        height <= r.committed_height
        or height in r.catchup
        or height > r.committed_height + MAX_CATCHUP_BLOCKS
    ):
        return
    prepared = r.prepared.get(height)
    payload = r.payloads.get((height, proof.digest))
    if prepared is None or prepared.header.digest != proof.digest or payload is None:
        return
    r.catchup[height] = CatchupBlock(proof.digest, prepared.header.parent_digest, payload, proof)
