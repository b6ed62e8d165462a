"""Checkpoints and garbage collection (§4.3), catch-up, timers and retransmission for
:class:`consensus.replica.Replica`.

* Every K blocks a replica signs CHECKPOINT(h, block_hash, state_root); q matching ones are
  a stable checkpoint: the low watermark moves and the log below it is collected.
* A replica learns it is behind from a stable checkpoint above its head, a NEW-VIEW base,
  a certified height it cannot commit, or f+1 validators' signed claims; it then asks the
  driver to fetch certified blocks (and repeats while it stays behind).
* The view-change timer runs while something waits (requests, a proposal in flight, or a
  view change without its NEW-VIEW); retransmission resends in-flight votes when nothing
  committed for a while; STATUS announcements go out periodically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import replica_views
from consensus.limits import MAX_CATCHUP_BLOCKS
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    SignedMessage,
    Status,
    sign,
)
from consensus.ready import FetchRequest, ViewChangeReason
from consensus.records import Phase

if TYPE_CHECKING:
    from consensus.replica import Replica

#: The censorship timer fires after this many (backed-off) view-change timeouts during
#: which blocks committed but the same includable request stayed the oldest waiting one.
CENSORSHIP_TIMEOUT_FACTOR = 5


def record_checkpoint(r: Replica, message: SignedMessage, body: Checkpoint) -> bool:
    """Count a CHECKPOINT vote (ours included); True when it made a checkpoint stable."""
    result = r.checkpoint_votes.add(message, body)
    r.count_vote(result, "checkpoint")
    note_claim(r, message.sender, body.height)
    proof = r.checkpoint_votes.proof(body.height, r.config.quorum)
    if proof is None or proof.height <= r.stable.height:
        return False
    set_stable(r, proof)
    return True


def set_stable(r: Replica, proof: CheckpointProof) -> None:
    """A new stable checkpoint: move the low watermark, garbage-collect the log (§4.3)."""
    assert proof.height > r.stable.height
    r.stable = proof
    r.hard_dirty = True
    height = proof.height
    for h in [h for h in r.slots if h <= height]:
        del r.slots[h]
    for h in [h for h in r.prepared if h <= height]:
        del r.prepared[h]
    for key in [k for k in r.payloads if k[0] <= height]:
        del r.payloads[key]
    # Verdicts above our own head stay even below the checkpoint: we still execute (and
    # commit, by fetching) that chain, and live results must stay ancestor-closed.
    for h in [h for h in r.committed_digests if h < height and h != r.committed_height]:
        del r.committed_digests[h]
    for slot_key in [k for k, s in r.signed.items() if 0 < s.height <= height]:
        del r.signed[slot_key]
    for h in [h for h in r.catchup if h <= r.committed_height]:
        del r.catchup[h]
    r.checkpoint_votes.prune(height)
    raise_target(r, height)


def note_claim(r: Replica, sender: int, height: int) -> None:
    """A validator signed something implying it committed ``height``; f+1 such claims
    above us mean at least one honest replica is ahead."""
    if sender == r.index or height <= r.peer_claims.get(sender, -1):
        return
    r.peer_claims[sender] = height
    claims = sorted(r.peer_claims.values(), reverse=True)
    if len(claims) >= r.config.weak_quorum:
        raise_target(r, claims[r.config.weak_quorum - 1])


def raise_target(r: Replica, height: int) -> None:
    if height > r.catchup_target:
        r.catchup_target = height
        r.fetch_outstanding = False


def maybe_fetch(r: Replica) -> None:
    if r.catchup_target <= r.committed_height or r.fetch_outstanding:
        return
    # A replica a block or two behind while pipelining commits those itself; fetch when
    # clearly behind, when nothing has committed for a while, or while changing views.
    far_behind = r.catchup_target > r.committed_height + r.config.max_pipeline
    stuck = r.ticks_since_commit >= r.config.retransmit_ticks
    if not (far_behind or stuck or not r.active):
        return
    upto = min(r.catchup_target, r.committed_height + MAX_CATCHUP_BLOCKS)
    r.out_fetch = FetchRequest(r.committed_height + 1, upto)
    r.fetch_outstanding = True
    r.fetch_timer = 0


# ================================================================== timers, retransmission


def view_change_timer(r: Replica) -> None:
    """Leave the view when it cannot make progress (PBFT §4.4), for one of two reasons:

    * no progress: something waits (an includable request, a block in flight) and nothing
      has committed for the timeout, which doubles with each view change that committed
      nothing and returns to its base on the first commit;
    * censorship: blocks commit, but the same includable request stays the oldest waiting
      one for CENSORSHIP_TIMEOUT_FACTOR timeouts.
    Never while nothing includable waits: requests behind a nonce gap wait for their
    sender, not for the primary.
    """
    timeout = r.config.view_change_timeout(r.consecutive_view_changes)
    if not r.active:
        # OSDI'99 §4.5.2: the timer for moving past view v starts only once 2f+1
        # VIEW-CHANGEs for v are in, so one replica cannot run ahead of the others.
        voters = r.view_changes.senders_at_or_above(r.view)
        if len(voters) < r.config.quorum:
            r.vc_timer = 0
            return
        r.vc_timer += 1
        if r.vc_timer >= timeout:
            r.note(
                r.view + 1,
                ViewChangeReason.NEW_VIEW_TIMEOUT,
                f"no NEW-VIEW for view {r.view} from {r.config.name(r.config.primary(r.view))} "
                f"within {timeout * r.config.tick_ms} ms",
            )
            replica_views.start_view_change(r, r.view + 1)
        return
    in_flight = [h for h, s in r.slots.items() if h > r.committed_height and s.header is not None]
    if not (r.pending or r.oldest_waiting is not None or in_flight) or _behind(r):
        # Idle, or the view is making progress and this replica is just slow to apply it
        # (a certificate above its head): not the primary's fault. Without the second, a
        # loaded replica a second behind times out alone and leaves the others' view.
        r.vc_timer = 0
        r.censor_timer = 0
        return
    r.vc_timer += 1
    r.censor_timer = r.censor_timer + 1 if r.oldest_waiting is not None else 0
    primary = r.config.name(r.primary)
    if r.vc_timer >= timeout:
        height = r.committed_height + 1
        waiting = (
            f"block {min(in_flight)} in flight"
            if in_flight
            else f"request {r.oldest_waiting.hex()[:16]} waiting"
            if r.oldest_waiting is not None
            else "requests waiting"
        )
        r.note(
            r.view + 1,
            ViewChangeReason.NO_PROGRESS,
            f"nothing committed at height {height} for {timeout * r.config.tick_ms} ms "
            f"({waiting}; primary {primary})",
        )
        replica_views.start_view_change(r, r.view + 1)
    elif r.censor_timer >= CENSORSHIP_TIMEOUT_FACTOR * timeout:
        assert r.oldest_waiting is not None
        r.note(
            r.view + 1,
            ViewChangeReason.CENSORSHIP,
            f"request {r.oldest_waiting.hex()[:16]} includable for "
            f"{r.censor_timer * r.config.tick_ms} ms while {primary} committed blocks without it",
        )
        replica_views.start_view_change(r, r.view + 1)


def _behind(r: Replica) -> bool:
    """This replica trails a live view: a block above its head is certified in this view,
    or f+1 peers claim higher heights and it is still committing (catching up). A claim
    alone is not enough: if nothing commits here, the timer must run."""
    if (
        r.catchup_target > r.committed_height
        and r.ticks_since_commit < r.config.view_change_timeout_ticks // 2
    ):
        return True
    return any(
        height > r.committed_height
        and slot.header is not None
        and len(slot.commit_votes(slot.header.digest)) >= r.config.quorum
        for height, slot in r.slots.items()
    )


def retransmit(r: Replica) -> None:
    """Nothing committed for a while: resend what we signed for in-flight work (PBFT
    assumes retransmission; messages may have been lost)."""
    if not r.active:
        if r.my_view_change is not None:
            r.send(None, r.my_view_change)
        return
    low = r.committed_height - r.config.max_pipeline
    for height in sorted(r.slots):
        if height <= low:
            continue
        for phase in (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT):
            record = r.signed.get((r.view, height, phase))
            if record is not None:
                r.send(None, record.message)
        r.slots[height].payload_requested = False
    for height in sorted(r.checkpoint_votes.by_height):
        own = r.checkpoint_votes.by_height[height].get(r.index)
        if own is not None:
            r.send(None, own[1])


def broadcast_status(r: Replica) -> None:
    body = Status(r.view, r.active, r.committed_height, r.stable.height)
    r.send(None, sign(r.key, r.config.chain_id, r.index, body))
