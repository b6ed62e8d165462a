"""Message intake for :class:`consensus.replica.Replica`: every peer message is checked here.

Order of checks, cheapest first, and nothing is touched before all of them pass: the
sender is a validator (and not us), the kind is known and the body decodes as that kind,
only PRE-PREPARE and BLOCK carry a payload, the view and height are inside the windows
(old view, below the watermark or the view's base, above the watermark), and only then
the signature. Messages for views not entered yet are buffered, bounded per sender, and
replayed on entering the view. A failed check raises :class:`Rejected`, which the replica
counts under ``rejected.<reason>``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from consensus import housekeeping, normal_case, replica_views
from consensus.certificates import Rejected, is_checkpoint_height, signature_valid
from consensus.limits import (
    MAX_BLOCK_REPLIES_PER_PEER_PER_TICK,
    MAX_BUFFERED_BYTES_PER_SENDER,
    MAX_BUFFERED_PER_SENDER,
    PRE_PREPARE_LOOKAHEAD_PIPELINES,
)
from consensus.log import NEW, Slot
from consensus.messages import (
    BlockReply,
    BlockRequest,
    Body,
    Checkpoint,
    Commit,
    Kind,
    NewView,
    Prepare,
    PrePrepare,
    SignedMessage,
    Status,
    ViewChange,
    decode_body,
    sign,
)
from crypto.encoding import DecodeError

if TYPE_CHECKING:
    from consensus.replica import Replica

Handler = Callable[["Replica", SignedMessage, Body], None]


def step(r: Replica, message: SignedMessage) -> None:
    config = r.config
    if not 0 <= message.sender < config.n:
        raise Rejected("unknown_sender", str(message.sender))
    if message.sender == r.index:
        # We know what we signed; anything else "from us" is a replay (or a twin).
        raise Rejected("from_self")
    if message.kind not in HANDLERS:
        raise Rejected("unknown_kind", message.kind)
    try:
        body = decode_body(message)
    except DecodeError as exc:
        raise Rejected("malformed_body", str(exc)) from None
    if message.payload and message.kind not in (Kind.PRE_PREPARE, Kind.BLOCK):
        raise Rejected("unexpected_payload")
    precheck(r, message, body)
    if not signature_valid(config, message):
        raise Rejected("bad_signature", f"from {message.sender}")
    HANDLERS[message.kind](r, message, body)
    r.count(f"accepted.{message.kind}")


def precheck(r: Replica, message: SignedMessage, body: Body) -> None:
    """Cheap window checks before the signature is verified (drops change nothing)."""
    if isinstance(body, PrePrepare | Prepare | Commit):
        if body.view < r.view:
            raise Rejected("old_view", f"view {body.view} < {r.view}")
        if body.height <= r.stable.height:
            raise Rejected("below_watermark", f"height {body.height}")
        if body.view == r.view and body.height <= r.view_base:
            raise Rejected("below_view_base", f"height {body.height} <= {r.view_base}")
        if body.height > r.stable.height + r.config.watermark_window:
            note_claim_if_signed(r, message, body.height - 1)
            raise Rejected("above_watermark", f"height {body.height}")
    elif isinstance(body, Checkpoint):
        if not is_checkpoint_height(r.config, body.height):
            raise Rejected("not_checkpoint_height", str(body.height))
        # Checkpoints up to a window above our own commits are kept: a replica that
        # caught up by fetching blocks needs them to move its low watermark.
        ceiling = max(r.stable.height, r.committed_height) + r.config.watermark_window
        if body.height > ceiling:
            note_claim_if_signed(r, message, body.height)
            raise Rejected("above_watermark", f"checkpoint {body.height}")


def note_claim_if_signed(r: Replica, message: SignedMessage, height: int) -> None:
    if signature_valid(r.config, message):
        housekeeping.note_claim(r, message.sender, height)


def on_normal_case(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, PrePrepare | Prepare | Commit)
    if body.view > r.view or not r.active:
        buffer(r, message)
        return
    if isinstance(body, PrePrepare):
        on_pre_prepare(r, message, body)
    elif isinstance(body, Prepare):
        if message.sender == r.config.primary(body.view):
            raise Rejected("prepare_from_primary")
        result = r.slots.setdefault(body.height, Slot()).add_prepare(
            message.sender, body.digest, message
        )
        r.count_vote(result, "prepare")
    else:
        result = r.slots.setdefault(body.height, Slot()).add_commit(
            message.sender, body.digest, message.signature
        )
        r.count_vote(result, "commit")
        if result == NEW:
            housekeeping.note_claim(r, message.sender, body.height - 1)
    normal_case.advance(r)


def on_pre_prepare(r: Replica, message: SignedMessage, header: PrePrepare) -> None:
    if message.sender != r.config.primary(header.view):
        raise Rejected("pre_prepare_not_from_primary")
    limit = r.committed_height + PRE_PREPARE_LOOKAHEAD_PIPELINES * r.config.max_pipeline
    if header.height > limit:
        raise Rejected("pre_prepare_too_far_ahead", f"height {header.height} > {limit}")
    payload = message.payload
    if payload and (
        len(payload) > r.config.max_block_bytes or r.config.block_digest(payload) != header.digest
    ):
        raise Rejected("bad_payload", f"height {header.height}")
    slot = r.slots.setdefault(header.height, Slot())
    if slot.header is not None and slot.header != header:
        r.count("equivocation.pre-prepare")
        return
    if slot.header is None:
        slot.header, slot.pre_prepare = header, message.without_payload()
    elif not payload:
        r.count("duplicate.pre-prepare")
    if payload:
        r.payloads.setdefault((header.height, header.digest), payload)


def on_checkpoint(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, Checkpoint)
    if body.height <= r.stable.height:
        r.count("stale_checkpoint")
        return
    if housekeeping.record_checkpoint(r, message, body):
        normal_case.advance(r)


def on_status(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, Status)
    housekeeping.note_claim(r, message.sender, body.committed_height)
    behind = body.view < r.view or (body.view == r.view and not body.view_active)
    if r.active and behind and r.new_view_message is not None:
        last = r.new_view_sent_at.get(message.sender)
        if last is None or r.ticks - last >= r.config.status_ticks:
            r.new_view_sent_at[message.sender] = r.ticks
            r.send(message.sender, r.new_view_message)
    if body.stable_height < r.stable.height:
        # Forward the q signed CHECKPOINTs of our stable checkpoint: each still carries
        # its signer's signature, so the laggard checks them like any other.
        last = r.checkpoint_sent_at.get(message.sender)
        if last is None or r.ticks - last >= r.config.status_ticks:
            r.checkpoint_sent_at[message.sender] = r.ticks
            for proof_message in r.stable.messages:
                r.send(message.sender, proof_message)
    housekeeping.maybe_fetch(r)


def on_block_request(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, BlockRequest)
    payload = r.payloads.get((body.height, body.digest))
    if payload is None:
        r.count("block_request.unavailable")
        return
    served = r.block_replies.get(message.sender, 0)
    if served >= MAX_BLOCK_REPLIES_PER_PEER_PER_TICK:
        raise Rejected("block_request_rate")
    r.block_replies[message.sender] = served + 1
    reply = sign(
        r.key,
        r.config.chain_id,
        r.index,
        BlockReply(body.height, body.digest),
        payload,
    )
    r.send(message.sender, reply)


def on_block(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, BlockReply)
    slot = r.slots.get(body.height)
    key = (body.height, body.digest)
    if slot is None or slot.digest != body.digest or key in r.payloads:
        r.count("unsolicited_block")
        return
    payload = message.payload
    if len(payload) > r.config.max_block_bytes or r.config.block_digest(payload) != body.digest:
        raise Rejected("bad_payload", f"block reply for height {body.height}")
    r.payloads[key] = payload
    normal_case.advance(r)


def on_view_change(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, ViewChange)
    replica_views.on_view_change(r, message, body)


def on_new_view(r: Replica, message: SignedMessage, body: Body) -> None:
    assert isinstance(body, NewView)
    replica_views.on_new_view(r, message, body)


def buffer(r: Replica, message: SignedMessage) -> None:
    size = len(message.body) + len(message.payload)
    queue = r.buffered.setdefault(message.sender, [])
    used = r.buffered_bytes.get(message.sender, 0)
    if len(queue) >= MAX_BUFFERED_PER_SENDER or used + size > MAX_BUFFERED_BYTES_PER_SENDER:
        raise Rejected("buffer_full", f"from {message.sender}")
    queue.append(message)
    r.buffered_bytes[message.sender] = used + size
    r.count("buffered")


def replay_buffered(r: Replica) -> None:
    """Process buffered messages of the view just entered; keep later views' ones."""
    buffered, r.buffered, r.buffered_bytes = r.buffered, {}, {}
    for sender in sorted(buffered):
        for message in buffered[sender]:
            try:
                step(r, message)
            except Rejected as exc:
                r.count(f"rejected.{exc.reason}")


HANDLERS: Final[dict[str, Handler]] = {
    Kind.PRE_PREPARE.value: on_normal_case,
    Kind.PREPARE.value: on_normal_case,
    Kind.COMMIT.value: on_normal_case,
    Kind.CHECKPOINT.value: on_checkpoint,
    Kind.STATUS.value: on_status,
    Kind.BLOCK_REQUEST.value: on_block_request,
    Kind.BLOCK.value: on_block,
    Kind.VIEW_CHANGE.value: on_view_change,
    Kind.NEW_VIEW.value: on_new_view,
}
