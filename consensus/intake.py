"""Message intake: every peer message is checked here, and comes out as a typed body.

Order of checks in :func:`check`, cheapest first: the sender is a validator (and not us),
the kind is known and the body decodes as that kind, only PRE-PREPARE and BLOCK carry a
payload, the view and height are inside the windows (old view, below the watermark or the
view's base, above the watermark), and only then the signature. A message above the
window raises :class:`AboveWindow`, which carries the height its sender implicitly claims
to have committed (the replica counts it towards catch-up if the signature is good). The
per-kind checks a handler makes against its own state (:func:`check_pre_prepare`,
:func:`check_prepare`, :func:`check_block_payload`) are here too.

Messages for views not entered yet wait in a :class:`FutureBuffer`, bounded per sender,
and are replayed (checked again) on entering the view.

House rules: checks only — a failed check raises :class:`Rejected` (counted by the replica
under ``rejected.<reason>``) and nothing here changes any state except the buffer.
"""

from __future__ import annotations

from typing import Final

from consensus.catchup import payload_matches
from consensus.certificates import Rejected, is_checkpoint_height, signature_valid
from consensus.config import ReplicaConfig
from consensus.limits import (
    MAX_BUFFERED_BYTES_PER_SENDER,
    MAX_BUFFERED_PER_SENDER,
    PRE_PREPARE_LOOKAHEAD_PIPELINES,
)
from consensus.messages import (
    BlockReply,
    Body,
    Checkpoint,
    Commit,
    Kind,
    Prepare,
    PrePrepare,
    SignedMessage,
    decode_body,
)
from consensus.view import ViewState
from crypto.encoding import DecodeError

KNOWN_KINDS: Final = frozenset(Kind)
PAYLOAD_KINDS: Final = frozenset({Kind.PRE_PREPARE, Kind.BLOCK})


class AboveWindow(Rejected):
    """Above the high watermark: dropped, but its sender claims ``claimed_height``."""

    def __init__(self, detail: str, claimed_height: int) -> None:
        super().__init__("above_watermark", detail)
        self.claimed_height = claimed_height


def check(
    config: ReplicaConfig,
    index: int,
    message: SignedMessage,
    view: ViewState,
    stable_height: int,
    committed_height: int,
) -> Body:
    """The typed body of a peer's message that passed every stateless check and the
    window checks; raises :class:`Rejected` otherwise."""
    if not 0 <= message.sender < config.n:
        raise Rejected("unknown_sender", str(message.sender))
    if message.sender == index:
        # We know what we signed; anything else "from us" is a replay (or a twin).
        raise Rejected("from_self")
    if message.kind not in KNOWN_KINDS:
        raise Rejected("unknown_kind", message.kind)
    try:
        body = decode_body(message)
    except DecodeError as exc:
        raise Rejected("malformed_body", str(exc)) from None
    if message.payload and message.kind not in PAYLOAD_KINDS:
        raise Rejected("unexpected_payload")
    _check_windows(config, body, view, stable_height, committed_height)
    if not signature_valid(config, message):
        raise Rejected("bad_signature", f"from {message.sender}")
    return body


def _check_windows(
    config: ReplicaConfig, body: Body, view: ViewState, stable_height: int, committed_height: int
) -> None:
    """Cheap window checks before the signature is verified (drops change nothing)."""
    if isinstance(body, PrePrepare | Prepare | Commit):
        if body.view < view.view:
            raise Rejected("old_view", f"view {body.view} < {view.view}")
        if body.height <= stable_height:
            raise Rejected("below_watermark", f"height {body.height}")
        if body.view == view.view and body.height <= view.view_base:
            raise Rejected("below_view_base", f"height {body.height} <= {view.view_base}")
        if body.height > stable_height + config.watermark_window:
            raise AboveWindow(f"height {body.height}", body.height - 1)
    elif isinstance(body, Checkpoint):
        if not is_checkpoint_height(config, body.height):
            raise Rejected("not_checkpoint_height", str(body.height))
        # Checkpoints up to a window above our own commits are kept: a replica that
        # caught up by fetching blocks needs them to move its low watermark.
        ceiling = max(stable_height, committed_height) + config.watermark_window
        if body.height > ceiling:
            raise AboveWindow(f"checkpoint {body.height}", body.height)


# ----------------------------------------------------------------------------- per kind


def check_pre_prepare(
    config: ReplicaConfig, message: SignedMessage, header: PrePrepare, committed_height: int
) -> None:
    """From the view's primary, not too far ahead, and a payload (if any) that matches."""
    if message.sender != config.primary(header.view):
        raise Rejected("pre_prepare_not_from_primary")
    limit = committed_height + PRE_PREPARE_LOOKAHEAD_PIPELINES * config.max_pipeline
    if header.height > limit:
        raise Rejected("pre_prepare_too_far_ahead", f"height {header.height} > {limit}")
    payload = message.payload
    if payload and not payload_matches(config, payload, header.digest):
        raise Rejected("bad_payload", f"height {header.height}")


def check_prepare(config: ReplicaConfig, message: SignedMessage, vote: Prepare) -> None:
    """Only backups prepare: the primary's PRE-PREPARE is its vote."""
    if message.sender == config.primary(vote.view):
        raise Rejected("prepare_from_primary")


def check_block_payload(config: ReplicaConfig, message: SignedMessage, reply: BlockReply) -> None:
    if not payload_matches(config, message.payload, reply.digest):
        raise Rejected("bad_payload", f"block reply for height {reply.height}")


# ----------------------------------------------------------------------------- buffering


class FutureBuffer:
    """Messages for views this replica has not entered yet, bounded per sender."""

    def __init__(self) -> None:
        self.buffered: dict[int, list[SignedMessage]] = {}
        self.buffered_bytes: dict[int, int] = {}

    def add(self, message: SignedMessage) -> None:
        size = len(message.body) + len(message.payload)
        queue = self.buffered.setdefault(message.sender, [])
        used = self.buffered_bytes.get(message.sender, 0)
        if len(queue) >= MAX_BUFFERED_PER_SENDER or used + size > MAX_BUFFERED_BYTES_PER_SENDER:
            raise Rejected("buffer_full", f"from {message.sender}")
        queue.append(message)
        self.buffered_bytes[message.sender] = used + size

    def take(self) -> list[SignedMessage]:
        """Everything buffered, by sender then arrival; the buffer starts empty again."""
        buffered = self.buffered
        self.buffered, self.buffered_bytes = {}, {}
        return [message for sender in sorted(buffered) for message in buffered[sender]]

    def size(self) -> int:
        return sum(map(len, self.buffered.values()))
