"""View change: what a NEW-VIEW must contain, computed the same way by everyone.

The new primary gathers q valid VIEW-CHANGE messages for view v and runs
:func:`select_new_view` over them; every other replica runs the same function over the
same q messages (they travel inside the NEW-VIEW) and rejects a NEW-VIEW whose re-issued
PRE-PREPAREs differ. The selection (argued in docs/CONSENSUS.md, "View change"):

1. ``checkpoint``: the highest stable checkpoint among the q messages (the new low
   watermark).
2. ``base``: the highest block known committed — the higher of that checkpoint and the
   highest commit certificate any of the q messages carries. Nothing at or below it is
   re-proposed; replicas behind it catch up by fetching certified blocks.
3. For each height above the base, the prepared certificate with the highest view among
   the q messages. The longest prefix that chains — first parent = base digest, each
   next parent = the previous chosen digest, no gaps — is re-issued in view v with the
   same digests. Everything above the first gap or break is dropped: no block there can
   have committed, because a committed block's certificate (and, by the chaining rules,
   its ancestors') always survives into the selection.
4. Re-certification below a base learnt from a commit certificate: when the prepared
   certificates also chain up to the base digest from a certified anchor below it (the
   checkpoint, or a commit certificate another view change carries; walked down from the
   base by parent digests, down to the lowest anchor reached), those blocks are re-issued
   too. Their digests are fixed by
   the base's certificate through the hash chain, so this is safe; it gives the replicas
   that prepared them but never saw their certificates (the only replica that committed
   them may be Byzantine and refuse to serve them) a way to certify them again in view v
   (PBFT §4.4 re-issues everything above the stable checkpoint for the same reason).

Pure functions only; the replica owns the state.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from consensus.certificates import Rejected, check_signed, verify_view_change
from consensus.config import ReplicaConfig
from consensus.messages import (
    CheckpointProof,
    CommitProof,
    Kind,
    NewView,
    PreparedProof,
    PrePrepare,
    SignedMessage,
    ViewChange,
)
from crypto.encoding import DecodeError


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    """The outcome of a view change, recomputable by every replica from the q messages."""

    view: int
    checkpoint: CheckpointProof
    base_height: int
    base_digest: bytes
    #: The commit certificate of the base block when it came from one (None: the checkpoint).
    base_proof: CommitProof | None
    #: PRE-PREPARE headers the primary of ``view`` re-issues, in height order.
    reissue: tuple[PrePrepare, ...]
    #: The prepared certificates those headers come from (same order).
    sources: tuple[PreparedProof, ...]

    @property
    def view_base(self) -> int:
        """Heights at or below this are not voted on in the view (all re-issued are above)."""
        return self.reissue[0].height - 1 if self.reissue else self.base_height


def select_new_view(
    config: ReplicaConfig, view: int, view_changes: Sequence[ViewChange]
) -> NewViewPlan:
    """Apply the selection rule to q view changes (in the order given: ties go to the first)."""
    assert len(view_changes) >= config.quorum, "selection needs a quorum of view changes"
    checkpoint = view_changes[0].checkpoint
    for vc in view_changes[1:]:
        if vc.checkpoint.height > checkpoint.height:
            checkpoint = vc.checkpoint
    base_height, base_digest, base_proof = checkpoint.height, checkpoint.block_hash, None
    for vc in view_changes:
        if vc.committed is not None and vc.committed.height > base_height:
            base_height, base_digest, base_proof = (
                vc.committed.height,
                vc.committed.digest,
                vc.committed,
            )
    by_height: dict[int, PreparedProof] = {}
    for vc in view_changes:
        for proof in vc.prepared:
            best = by_height.get(proof.header.height)
            if best is None or proof.header.view > best.header.view:
                by_height[proof.header.height] = proof
    reissue: list[PrePrepare] = []
    sources: list[PreparedProof] = []
    if base_proof is not None:
        for proof in _recertify(view_changes, checkpoint, base_height, base_digest):
            reissue.append(replace(proof.header, view=view))
            sources.append(proof)
    parent = base_digest
    height = base_height + 1
    ceiling = checkpoint.height + config.watermark_window
    while height <= ceiling:
        chosen = by_height.get(height)
        if chosen is None or chosen.header.parent_digest != parent:
            break
        reissue.append(PrePrepare(view, height, chosen.header.digest, parent))
        sources.append(chosen)
        parent = chosen.header.digest
        height += 1
    return NewViewPlan(
        view, checkpoint, base_height, base_digest, base_proof, tuple(reissue), tuple(sources)
    )


def _recertify(
    view_changes: Sequence[ViewChange],
    checkpoint: CheckpointProof,
    base_height: int,
    base_digest: bytes,
) -> list[PreparedProof]:
    """Prepared certificates that chain, by parent digests, from a certified anchor below
    the base up to the base block, from the lowest anchor reached; empty if none is.

    Anchors are the checkpoint and the commit certificates the view changes carry (their
    senders committed there). Walking down from the base, at each height the matching
    certificate with the highest view wins (ties: the first)."""
    anchors = {checkpoint.height: checkpoint.block_hash}
    for vc in view_changes:
        if vc.committed is not None and vc.committed.height < base_height:
            anchors.setdefault(vc.committed.height, vc.committed.digest)
    walked: list[PreparedProof] = []
    reached = 0  # how many of ``walked`` lead down to an anchor
    digest = base_digest
    for height in range(base_height, checkpoint.height, -1):
        best: PreparedProof | None = None
        for vc in view_changes:
            for proof in vc.prepared:
                header = proof.header
                if (header.height, header.digest) == (height, digest) and (
                    best is None or header.view > best.header.view
                ):
                    best = proof
        if best is None:
            break
        walked.append(best)
        digest = best.header.parent_digest
        if anchors.get(height - 1) == digest:
            reached = len(walked)
    return walked[:reached][::-1]


def verify_new_view(
    config: ReplicaConfig,
    message: SignedMessage,
    new_view: NewView,
    known_valid: Mapping[int, SignedMessage],
) -> NewViewPlan:
    """Check a NEW-VIEW completely and return its plan, or raise :class:`Rejected`.

    ``known_valid`` holds VIEW-CHANGE messages this replica already verified, by sender;
    an embedded message with the same content is not verified twice.
    """
    view = new_view.view
    if message.sender != config.primary(view):
        raise Rejected(
            "new_view_not_from_primary", f"view {view} belongs to validator {config.primary(view)}"
        )
    senders = [m.sender for m in new_view.view_changes]
    if len(senders) != config.quorum or any(a >= b for a, b in itertools.pairwise(senders)):
        raise Rejected("bad_new_view", f"need exactly {config.quorum} view changes in sender order")
    decoded: list[ViewChange] = []
    for vc_message in new_view.view_changes:
        try:
            vc = ViewChange.decode(vc_message.body) if vc_message.kind == Kind.VIEW_CHANGE else None
        except DecodeError as exc:
            raise Rejected("bad_new_view", f"view change from {vc_message.sender}: {exc}") from None
        if vc is None or vc.new_view != view:
            raise Rejected(
                "bad_new_view",
                f"embedded message from {vc_message.sender} is not a view change to {view}",
            )
        known = known_valid.get(vc_message.sender)
        if (
            known is None
            or known.content() != vc_message.content()
            or known.signature != vc_message.signature
        ):
            check_signed(config, vc_message, Kind.VIEW_CHANGE, "bad_new_view")
            verify_view_change(config, vc)
        decoded.append(vc)
    plan = select_new_view(config, view, decoded)
    if len(new_view.pre_prepares) != len(plan.reissue):
        raise Rejected(
            "new_view_mismatch",
            f"{len(new_view.pre_prepares)} pre-prepares, selection gives {len(plan.reissue)}",
        )
    for pp_message, header in zip(new_view.pre_prepares, plan.reissue, strict=True):
        if pp_message.body != header.encode() or pp_message.sender != message.sender:
            raise Rejected(
                "new_view_mismatch", f"re-issued pre-prepare for height {header.height} differs"
            )
        check_signed(config, pp_message, Kind.PRE_PREPARE, "new_view_mismatch")
    return plan
