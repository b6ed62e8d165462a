"""Message formats and message checks: every peer message is authenticated and checked
(OSDI'99 §4.1 "all messages are signed"; §4.2 "a backup accepts a pre-prepare provided the
signatures are correct, it is in view v, ... the sequence number is between h and H"), and
a rejected message changes no state."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pbft_harness import KEYS, Cluster, make_payload

from consensus.messages import (
    MAX_SMALL_BODY_BYTES,
    BlockReply,
    Checkpoint,
    Commit,
    Kind,
    NewView,
    Prepare,
    PrePrepare,
    SignedMessage,
    Status,
    decode_body,
    sign,
)
from consensus.replica import Replica
from consensus.votes import commit_vote_body
from crypto.encoding import DecodeError, encode
from crypto.hashing import sha256


def _snapshot(replica: Replica) -> Any:
    """Everything that matters about a replica's state (not its counters)."""
    slots = {
        h: (s.header, dict(s.prepares), dict(s.commits), s.prepared, s.validation_requested)
        for h, s in replica.slots.items()
    }
    return copy.deepcopy(
        (
            replica.view,
            replica.active,
            replica.committed_height,
            replica.stable,
            slots,
            dict(replica.signed),
            replica.view_changes.by_sender,
            dict(replica.payloads),
            {k: list(v) for k, v in replica.buffered.items()},
            dict(replica.peer_claims),
            replica.catchup_target,
        )
    )


def test_commit_body_is_the_certificate_body() -> None:
    assert Commit(3, 7, b"\x01" * 32).encode() == commit_vote_body(3, 7, b"\x01" * 32)


@pytest.mark.parametrize(
    "body",
    [
        PrePrepare(1, 2, b"\x01" * 32, b"\x02" * 32),
        Prepare(1, 2, b"\x01" * 32),
        Commit(1, 2, b"\x01" * 32),
        Checkpoint(64, b"\x01" * 32, b"\x03" * 32),
        Status(4, True, 10, 8),
        BlockReply(5, b"\x01" * 32),
    ],
)
def test_messages_round_trip_canonically(body: Any) -> None:
    message = sign(KEYS[0], "pbft-test", 0, body)
    raw = message.encode()
    again = SignedMessage.decode(raw)
    assert again == message and again.encode() == raw
    assert decode_body(again) == body


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    try:
        message = SignedMessage.decode(raw)
    except DecodeError:
        return
    with contextlib.suppress(DecodeError):
        decode_body(message)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2000), st.integers(min_value=0, max_value=7))
def test_mutated_envelopes_are_rejected_without_state_change(position: int, bit: int) -> None:
    cluster = Cluster(4)
    message = sign(KEYS[1], "pbft-test", 1, Prepare(0, 1, b"\x05" * 32))
    raw = bytearray(message.encode())
    raw[position % len(raw)] ^= 1 << bit
    target = cluster.nodes[2].replica
    before = _snapshot(target)
    target.receive(bytes(raw))
    assert _snapshot(target) == before
    assert not any(k.startswith("accepted.") for k in target.statistics())


def test_payload_only_on_pre_prepare_and_block_kinds_and_bodies_are_capped() -> None:
    message = sign(KEYS[1], "pbft-test", 1, Prepare(0, 1, b"\x05" * 32))
    smuggled = SignedMessage(
        message.sender, message.kind, message.body, message.signature, b"smuggled"
    )
    with pytest.raises(DecodeError):
        SignedMessage.decode(smuggled.encode())
    oversized = SignedMessage(1, Kind.PREPARE, b"x" * (MAX_SMALL_BODY_BYTES + 1), bytes(64))
    with pytest.raises(DecodeError):
        SignedMessage.decode(oversized.encode())


def _reject_case(cluster: Cluster, name: str) -> SignedMessage:
    chain = cluster.config.chain_id
    digest = sha256(make_payload(1, cluster.config.genesis_digest))
    good_prepare = sign(KEYS[1], chain, 1, Prepare(0, 1, digest))
    if name == "bad_signature":
        return SignedMessage(1, Kind.PREPARE, good_prepare.body, bytes(64))
    if name == "signed_by_another_validator":
        forged = sign(KEYS[3], chain, 1, Prepare(0, 1, digest))
        return forged
    if name == "unknown_sender":
        return sign(KEYS[9], chain, 9, Prepare(0, 1, digest))
    if name == "wrong_kind":  # a PREPARE body in a COMMIT envelope, signed as a commit
        return SignedMessage(
            1, Kind.COMMIT, good_prepare.body, KEYS[1].sign(chain, "commit", good_prepare.body)
        )
    if name == "prepare_signed_as_commit":  # right body, signature under the wrong domain
        return SignedMessage(
            1, Kind.PREPARE, good_prepare.body, KEYS[1].sign(chain, "commit", good_prepare.body)
        )
    if name == "other_chain":
        return sign(KEYS[1], "other-chain", 1, Prepare(0, 1, digest))
    if name == "above_watermark":
        return sign(KEYS[1], chain, 1, Prepare(0, cluster.config.watermark_window + 1, digest))
    if name == "below_watermark":
        return sign(KEYS[1], chain, 1, Prepare(0, 0, digest))
    if name == "pre_prepare_not_from_primary":
        payload = make_payload(1, cluster.config.genesis_digest)
        return sign(
            KEYS[1],
            chain,
            1,
            PrePrepare(0, 1, sha256(payload), cluster.config.genesis_digest),
            payload,
        )
    if name == "bad_payload":
        payload = make_payload(1, cluster.config.genesis_digest)
        return sign(
            KEYS[0],
            chain,
            0,
            PrePrepare(0, 1, sha256(payload), cluster.config.genesis_digest),
            payload + b"x",
        )
    if name == "prepare_from_primary":
        return sign(KEYS[0], chain, 0, Prepare(0, 1, digest))
    if name == "not_checkpoint_height":
        return sign(KEYS[1], chain, 1, Checkpoint(3, digest, digest))
    if name == "malformed_body":
        return SignedMessage(
            1,
            Kind.PREPARE,
            encode(["prepare", 1, 0]),
            KEYS[1].sign(chain, "prepare", encode(["prepare", 1, 0])),
        )
    raise AssertionError(name)


REJECTIONS = {
    "bad_signature": "rejected.bad_signature",
    "signed_by_another_validator": "rejected.bad_signature",
    "unknown_sender": "rejected.unknown_sender",
    "wrong_kind": "rejected.malformed_body",
    "prepare_signed_as_commit": "rejected.bad_signature",
    "other_chain": "rejected.bad_signature",
    "above_watermark": "rejected.above_watermark",
    "below_watermark": "rejected.below_watermark",
    "pre_prepare_not_from_primary": "rejected.pre_prepare_not_from_primary",
    "bad_payload": "rejected.bad_payload",
    "prepare_from_primary": "rejected.prepare_from_primary",
    "not_checkpoint_height": "rejected.not_checkpoint_height",
    "malformed_body": "rejected.malformed_body",
}


@pytest.mark.parametrize("name", sorted(REJECTIONS))
def test_invalid_messages_are_rejected_counted_and_change_nothing(name: str) -> None:
    cluster = Cluster(4)
    target = cluster.nodes[2].replica
    before = _snapshot(target)
    ready = target.receive(_reject_case(cluster, name).encode())
    assert ready.is_empty()
    after = _snapshot(target)
    if name == "above_watermark":
        # The one thing a correctly signed message from above the window leaves behind is
        # the hint that its sender is ahead (f+1 such hints start catch-up).
        assert after[9] == {1: cluster.config.watermark_window} and before[9] == {}
        after = (*after[:9], before[9], *after[10:])
    assert after == before
    stats = target.statistics()
    assert stats[REJECTIONS[name]] == 1
    assert not any(k.startswith("accepted.") for k in stats)


def test_old_view_messages_are_dropped() -> None:
    cluster = Cluster(4)
    cluster.crash(0)
    cluster.submit(1)
    cluster.tick(cluster.config.view_change_timeout(0) + 2)
    target = cluster.nodes[2].replica
    assert target.view == 1
    stale = sign(KEYS[1], cluster.config.chain_id, 1, Commit(0, 1, b"\x01" * 32))
    before = _snapshot(target)
    target.receive(stale.encode())
    assert _snapshot(target) == before
    assert target.statistics()["rejected.old_view"] >= 1


def test_4_2_equivocating_primary_is_detected_and_nothing_conflicting_commits() -> None:
    """§4.2: a backup accepts one pre-prepare per view and sequence number; a second one
    with a different digest is counted as equivocation and ignored."""
    cluster = Cluster(4)
    chain, genesis = cluster.config.chain_id, cluster.config.genesis_digest
    a, b = make_payload(1, genesis, b"A"), make_payload(1, genesis, b"B")
    pp_a = sign(KEYS[0], chain, 0, PrePrepare(0, 1, sha256(a), genesis), a)
    pp_b = sign(KEYS[0], chain, 0, PrePrepare(0, 1, sha256(b), genesis), b)
    cluster.budget = 1
    for i, message in ((1, pp_a), (2, pp_a), (3, pp_b)):
        cluster.handle(i, cluster.nodes[i].replica.receive(message.encode()))
    cluster.handle(2, cluster.nodes[2].replica.receive(pp_b.encode()))
    cluster.deliver()
    assert cluster.nodes[2].replica.statistics()["equivocation.pre-prepare"] == 1
    # A has 2 backups' prepares (1, 2) = q-1: it commits at 1 and 2 (with the primary's
    # missing commit, 1, 2 and 3? 3 prepared nothing); B never prepares anywhere.
    committed = {b.digest for n in cluster.nodes for b in n.committed}
    assert committed <= {sha256(a)}


def test_future_view_messages_are_buffered_up_to_a_cap() -> None:
    from consensus.limits import MAX_BUFFERED_PER_SENDER

    cluster = Cluster(4)
    target = cluster.nodes[2].replica
    for height in range(1, MAX_BUFFERED_PER_SENDER + 5):
        message = sign(
            KEYS[1], cluster.config.chain_id, 1, Commit(5, 1 + height % 8, sha256(b"%d" % height))
        )
        target.receive(message.encode())
    stats = target.statistics()
    assert sum(len(v) for v in target.buffered.values()) == MAX_BUFFERED_PER_SENDER
    assert stats["rejected.buffer_full"] == 4


def test_new_view_body_round_trip() -> None:
    nv = NewView(3, (), ())
    assert NewView.decode(nv.encode()) == nv
