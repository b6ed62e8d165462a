"""Checks of signed messages and of the certificates they carry.

Every function here either returns quietly or raises :class:`Rejected` with a short reason
that becomes a statistics key (``rejected.<reason>``). Nothing here has state: the replica
calls these before touching its own, so a rejected message changes nothing.

A certificate is checked completely by every replica that relies on it: each embedded
message's sender, kind, body and signature, the distinctness of the signers, and the
quorum size from consensus.quorum (via the config).
"""

from __future__ import annotations

import itertools

from consensus.config import ReplicaConfig
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    CommitProof,
    Kind,
    Prepare,
    PreparedProof,
    SignedMessage,
    ViewChange,
)
from consensus.votes import COMMIT_KIND, commit_vote_body


class Rejected(Exception):
    """A peer's message or certificate fails a check. ``reason`` is a statistics key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def signature_valid(config: ReplicaConfig, message: SignedMessage) -> bool:
    if not 0 <= message.sender < config.n:
        return False
    return config.verify_signature(
        config.validators[message.sender],
        config.chain_id,
        message.kind,
        message.body,
        message.signature,
    )


def check_signed(config: ReplicaConfig, message: SignedMessage, kind: str, reason: str) -> None:
    """Sender is a validator, the kind is ``kind`` and the signature verifies."""
    if not 0 <= message.sender < config.n:
        raise Rejected(reason, f"sender {message.sender} is not a validator")
    if message.kind != kind:
        raise Rejected(reason, f"expected a {kind} message, got {message.kind}")
    if not signature_valid(config, message):
        raise Rejected(reason, f"bad signature from validator {message.sender}")


def _strictly_increasing(senders: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(senders))


def is_checkpoint_height(config: ReplicaConfig, height: int) -> bool:
    offset = height - config.genesis_height
    return offset > 0 and offset % config.checkpoint_interval == 0


def genesis_checkpoint(config: ReplicaConfig) -> CheckpointProof:
    """The anchor every chain starts from; it needs no signatures."""
    return CheckpointProof(
        config.genesis_height, config.genesis_digest, config.genesis_state_root, ()
    )


def verify_checkpoint_proof(config: ReplicaConfig, proof: CheckpointProof) -> None:
    """q distinct validators signed CHECKPOINT(height, block_hash, state_root), or it is genesis."""
    reason = "bad_checkpoint_proof"
    if proof.height == config.genesis_height:
        if proof != genesis_checkpoint(config):
            raise Rejected(reason, "a genesis-height checkpoint that is not the genesis anchor")
        return
    if not is_checkpoint_height(config, proof.height):
        raise Rejected(reason, f"{proof.height} is not a checkpoint height")
    senders = [m.sender for m in proof.messages]
    if not _strictly_increasing(senders) or len(senders) < config.quorum:
        raise Rejected(reason, f"need {config.quorum} distinct signers in increasing order")
    expected = Checkpoint(proof.height, proof.block_hash, proof.state_root).encode()
    for message in proof.messages:
        if message.body != expected:
            raise Rejected(reason, f"validator {message.sender} signed a different checkpoint")
        check_signed(config, message, Kind.CHECKPOINT, reason)


def verify_commit_proof(config: ReplicaConfig, proof: CommitProof) -> None:
    """q distinct validators signed COMMIT(view, height, digest): the block committed."""
    reason = "bad_commit_certificate"
    if proof.height <= config.genesis_height:
        raise Rejected(reason, "a commit certificate at or below genesis")
    indices = [i for i, _ in proof.votes]
    if not _strictly_increasing(indices) or len(indices) < config.quorum:
        raise Rejected(reason, f"need {config.quorum} distinct signers in increasing order")
    body = commit_vote_body(proof.view, proof.height, proof.digest)
    for index, signature in proof.votes:
        if index >= config.n:
            raise Rejected(reason, f"vote from {index}, there are {config.n} validators")
        if not config.verify_signature(
            config.validators[index], config.chain_id, COMMIT_KIND, body, signature
        ):
            raise Rejected(reason, f"validator {index}'s commit signature does not verify")


def verify_prepared_proof(config: ReplicaConfig, proof: PreparedProof, new_view: int) -> None:
    """The primary of the proof's view pre-prepared it and q-1 other validators prepared it."""
    reason = "bad_prepared_certificate"
    header = proof.header
    if header.view >= new_view:
        raise Rejected(reason, f"prepared in view {header.view}, not before view {new_view}")
    if header.height <= config.genesis_height:
        raise Rejected(reason, "prepared at or below genesis")
    primary = config.primary(header.view)
    if proof.pre_prepare.sender != primary or proof.pre_prepare.payload:
        raise Rejected(reason, "pre-prepare not from that view's primary, or carries a payload")
    check_signed(config, proof.pre_prepare, Kind.PRE_PREPARE, reason)
    senders = [m.sender for m in proof.prepares]
    if len(senders) != config.quorum - 1 or not _strictly_increasing(senders) or primary in senders:
        raise Rejected(reason, f"need exactly {config.quorum - 1} prepares from distinct backups")
    expected = Prepare(header.view, header.height, header.digest).encode()
    for message in proof.prepares:
        if message.body != expected:
            raise Rejected(reason, f"validator {message.sender} prepared something else")
        check_signed(config, message, Kind.PREPARE, reason)


def verify_view_change(config: ReplicaConfig, vc: ViewChange) -> None:
    """Everything a VIEW-CHANGE claims is proven, and its prepared certificates are in order."""
    verify_checkpoint_proof(config, vc.checkpoint)
    floor = vc.checkpoint.height
    if vc.committed is not None:
        if vc.committed.height <= vc.checkpoint.height:
            raise Rejected("bad_view_change", "commit certificate not above the checkpoint")
        verify_commit_proof(config, vc.committed)
        floor = vc.committed.height
    ceiling = vc.checkpoint.height + config.watermark_window
    if len(vc.prepared) > config.watermark_window:
        raise Rejected("bad_view_change", "more prepared certificates than the window holds")
    previous = floor
    for proof in vc.prepared:
        height = proof.header.height
        if not previous < height <= ceiling:
            raise Rejected("bad_view_change", f"prepared height {height} out of order or window")
        previous = height
        verify_prepared_proof(config, proof, vc.new_view)
