"""The peer-channel handshake and frame cipher (crypto/handshake.py), without sockets.

Both sides must end with the same transcript and each other's validator key; any other
chain, unknown key, forged signature, low-order point or malformed byte must end the
handshake with a HandshakeError naming the reason, and never any other exception. Frames
must fail when altered, replayed, reordered or dropped, and an oversized frame must be
refused from its length prefix alone.
"""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.handshake import (
    AUTH_FRAME_BYTES,
    HELLO_MAGIC,
    HELLO_SIZE,
    MAX_FRAME_BYTES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    SIGNATURE_KIND,
    ChannelExhausted,
    FrameError,
    FrameFailure,
    FrameReceiver,
    FrameSender,
    Handshake,
    HandshakeError,
    HandshakeFailure,
    HandshakeResult,
    Hello,
    Role,
    auth_message,
    derive_frame_keys,
    join_messages,
    network_id,
    split_messages,
    transcript_hash,
    x25519_public_bytes,
    x25519_shared_secret,
)
from crypto.keys import PrivateKey
from ledger.chaos.peer import LOW_ORDER_POINTS  # the same vectors the chaos harness sends

CHAIN = "quorum-test"
GENESIS = bytes(range(32))
ALICE = PrivateKey(b"\x01" * 32)  # initiator
BOB = PrivateKey(b"\x02" * 32)  # responder
MALLORY = PrivateKey(b"\x03" * 32)  # not a validator


def initiator(**kw: object) -> Handshake:
    args: dict[str, object] = {
        "role": Role.INITIATOR,
        "identity": ALICE,
        "chain_id": CHAIN,
        "genesis_hash": GENESIS,
        "allowed_peer_keys": [BOB.public_key],
    }
    args.update(kw)
    return Handshake(**args)  # type: ignore[arg-type]


def responder(**kw: object) -> Handshake:
    args: dict[str, object] = {
        "role": Role.RESPONDER,
        "identity": BOB,
        "chain_id": CHAIN,
        "genesis_hash": GENESIS,
        "allowed_peer_keys": [ALICE.public_key],
    }
    args.update(kw)
    return Handshake(**args)  # type: ignore[arg-type]


def run(a: Handshake, b: Handshake) -> tuple[HandshakeResult, HandshakeResult]:
    """Shuttle bytes between two handshakes until both finish (or one raises)."""
    results: dict[int, HandshakeResult] = {}
    for _ in range(4):
        to_b, to_a = a.data_to_send(), b.data_to_send()
        for i, side, data in ((0, a, to_a), (1, b, to_b)):
            if data and i not in results and (r := side.receive_data(data)) is not None:
                results[i] = r
    assert set(results) == {0, 1}
    return results[0], results[1]


def refusal(a: Handshake, b: Handshake) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        run(a, b)
    return info.value


# --------------------------------------------------------------------------- success


def test_handshake_authenticates_both_sides_and_agrees_on_the_transcript() -> None:
    a, b = run(initiator(), responder())
    assert a.peer_key == BOB.public_key
    assert b.peer_key == ALICE.public_key
    assert a.transcript_hash == b.transcript_hash
    assert a.leftover == b.leftover == b""


def test_the_handshake_works_with_pipelined_and_byte_by_byte_delivery() -> None:
    a, b = initiator(), responder()
    hello_a, hello_b = a.data_to_send(), b.data_to_send()
    assert len(hello_a) == len(hello_b) == HELLO_SIZE
    for byte in hello_a:
        assert b.receive_data(bytes([byte])) is None
    auth_b = b.data_to_send()
    assert len(auth_b) == 4 + AUTH_FRAME_BYTES
    result_a = a.receive_data(hello_b + auth_b)  # hello and auth in one read
    assert result_a is not None and result_a.peer_key == BOB.public_key
    auth_a = a.data_to_send()  # a is done but still owes b its auth frame
    assert len(auth_a) == 4 + AUTH_FRAME_BYTES
    results = [b.receive_data(bytes([byte])) for byte in auth_a]
    assert results[:-1] == [None] * (len(auth_a) - 1)
    result_b = results[-1]
    assert result_b is not None and result_b.peer_key == ALICE.public_key
    with pytest.raises(RuntimeError):
        b.receive_data(b"more")  # our misuse, not the peer's fault


def test_channel_round_trip_in_both_directions_with_counters() -> None:
    a, b = run(initiator(), responder())
    for i in range(5):
        frame = a.sender.seal_messages([b"m%d" % i, b"x" * i or b"y"])
        (payload,) = b.receiver.receive_data(frame)
        assert split_messages(payload) == [b"m%d" % i, b"x" * i or b"y"]
    assert a.sender.counter == b.receiver.counter == 6  # frame 0 was the auth
    back = b.sender.seal_messages([b"pong"])
    assert [split_messages(p) for p in a.receiver.receive_data(back)] == [[b"pong"]]


def test_several_frames_in_one_read_and_one_frame_over_many_reads() -> None:
    a, b = run(initiator(), responder())
    frames = [a.sender.seal_messages([bytes([i]) * (i + 1)]) for i in range(10)]
    payloads = b.receiver.receive_data(b"".join(frames[:7]))
    assert [split_messages(p) for p in payloads] == [[bytes([i]) * (i + 1)] for i in range(7)]
    rest = b"".join(frames[7:])
    got = []
    for byte in rest:
        got += b.receiver.receive_data(bytes([byte]))
    assert len(got) == 3 and b.receiver.buffered_bytes == 0


def test_frames_pipelined_behind_the_auth_frame_are_handed_over() -> None:
    a, b = initiator(), responder()
    b.receive_data(a.data_to_send())
    a_result = a.receive_data(b.data_to_send())
    assert a_result is not None
    early = a_result.sender.seal_messages([b"early"])
    b_result = b.receive_data(a.data_to_send() + early)
    assert b_result is not None and b_result.leftover == early
    assert split_messages(b_result.receiver.receive_data(b_result.leftover)[0]) == [b"early"]


def test_keepalive_frames_carry_no_messages() -> None:
    a, b = run(initiator(), responder())
    assert [split_messages(p) for p in b.receiver.receive_data(a.sender.seal(b""))] == [[]]


# --------------------------------------------------------------------------- frames


@pytest.mark.parametrize("position", [0, 3, 4, 10, -17, -1])
def test_an_altered_frame_fails(position: int) -> None:
    a, b = run(initiator(), responder())
    frame = bytearray(a.sender.seal_messages([b"pay alice 10"]))
    frame[position] ^= 0x01
    with pytest.raises(FrameError) as info:
        b.receiver.receive_data(bytes(frame) + bytes(64))  # enough to complete a longer frame
    assert info.value.failure in (FrameFailure.DECRYPT, FrameFailure.TOO_LARGE)


def test_replayed_frames_fail() -> None:
    a, b = run(initiator(), responder())
    frame = a.sender.seal_messages([b"commit"])
    b.receiver.receive_data(frame)
    with pytest.raises(FrameError) as info:
        b.receiver.receive_data(frame)
    assert info.value.failure is FrameFailure.DECRYPT


def test_reordered_and_dropped_frames_fail() -> None:
    a, b = run(initiator(), responder())
    a.sender.seal_messages([b"1"])
    with pytest.raises(FrameError):
        b.receiver.receive_data(a.sender.seal_messages([b"2"]))  # before 1: refused
    a, b = run(initiator(), responder())
    a.sender.seal_messages([b"lost"])
    with pytest.raises(FrameError):
        b.receiver.receive_data(a.sender.seal_messages([b"after"]))


def test_a_frame_from_the_other_direction_fails() -> None:
    a, _ = run(initiator(), responder())
    with pytest.raises(FrameError):
        a.receiver.receive_data(a.sender.seal_messages([b"reflected"]))


def test_a_failed_receiver_stays_failed() -> None:
    a, b = run(initiator(), responder())
    with pytest.raises(FrameError) as first:
        b.receiver.receive_data(b"\x00\x00\x00\x20" + bytes(32))
    with pytest.raises(FrameError) as again:
        b.receiver.receive_data(a.sender.seal_messages([b"ok"]))
    assert again.value is first.value


def test_the_frame_size_cap_is_checked_from_the_length_prefix_alone() -> None:
    receiver = FrameReceiver(bytes(32))
    with pytest.raises(FrameError) as info:
        receiver.receive_data(struct.pack(">I", MAX_FRAME_BYTES + 1))
    assert info.value.failure is FrameFailure.TOO_LARGE
    assert receiver.buffered_bytes == 0
    small = FrameReceiver(bytes(32), max_frame_bytes=1024)
    assert small.receive_data(struct.pack(">I", 1024)) == []  # at the cap: wait for the body
    with pytest.raises(FrameError):
        FrameReceiver(bytes(32), max_frame_bytes=1024).receive_data(struct.pack(">I", 1025))
    with pytest.raises(FrameError) as short:
        FrameReceiver(bytes(32)).receive_data(struct.pack(">I", 15))
    assert short.value.failure is FrameFailure.MALFORMED


def test_sealing_refuses_oversized_plaintexts_and_messages() -> None:
    sender = FrameSender(bytes(32))
    with pytest.raises(ValueError):
        sender.seal(bytes(MAX_FRAME_BYTES))
    with pytest.raises(ValueError):
        join_messages([bytes(MAX_MESSAGE_BYTES + 1)])
    with pytest.raises(ValueError):
        join_messages([b""])
    assert sender.counter == 0


def test_counters_never_wrap() -> None:
    sender = FrameSender(bytes(32), max_counter=2)
    receiver = FrameReceiver(bytes(32), max_counter=2)
    frames = [sender.seal(b"x") for _ in range(3)]
    with pytest.raises(ChannelExhausted):
        sender.seal(b"x")
    assert len(receiver.receive_data(b"".join(frames))) == 3
    overflow = FrameSender(bytes(32), first_counter=3).seal(b"x")
    with pytest.raises(FrameError) as info:
        receiver.receive_data(overflow)
    assert info.value.failure is FrameFailure.EXHAUSTED


@given(st.lists(st.binary(min_size=1, max_size=300), max_size=20))
def test_join_and_split_messages_round_trip(messages: list[bytes]) -> None:
    assert split_messages(join_messages(messages)) == messages


@given(st.binary(max_size=64))
def test_split_messages_refuses_garbage_with_frame_error_only(payload: bytes) -> None:
    try:
        messages = split_messages(payload)
    except FrameError:
        return
    assert join_messages(messages) == payload


# --------------------------------------------------------------------------- refusals


def test_another_genesis_is_refused() -> None:
    err = refusal(initiator(), responder(genesis_hash=bytes(32)))
    assert err.failure is HandshakeFailure.OTHER_CHAIN


def test_another_chain_id_is_refused_even_with_the_same_genesis_hash() -> None:
    err = refusal(initiator(chain_id="other-chain"), responder())
    assert err.failure is HandshakeFailure.OTHER_CHAIN


def test_an_unknown_key_is_refused_by_the_responder() -> None:
    err = refusal(initiator(identity=MALLORY), responder())
    assert err.failure is HandshakeFailure.UNKNOWN_KEY


def test_the_initiator_refuses_anyone_but_the_validator_it_dialed() -> None:
    b = responder(identity=MALLORY)
    err = refusal(initiator(), b)
    assert err.failure is HandshakeFailure.UNKNOWN_KEY


def test_a_node_never_accepts_its_own_key() -> None:
    err = refusal(initiator(), responder(identity=ALICE, allowed_peer_keys=[ALICE.public_key]))
    assert err.failure is HandshakeFailure.UNKNOWN_KEY


def test_a_reflected_hello_is_refused() -> None:
    a = initiator(allowed_peer_keys=[ALICE.public_key, BOB.public_key])
    with pytest.raises(HandshakeError) as info:
        a.receive_data(a.data_to_send())
    assert info.value.failure in (HandshakeFailure.MALFORMED, HandshakeFailure.UNKNOWN_KEY)


def test_another_protocol_version_is_refused_from_its_first_ten_bytes() -> None:
    with pytest.raises(HandshakeError) as info:
        responder().receive_data(HELLO_MAGIC + struct.pack(">H", PROTOCOL_VERSION + 1))
    assert info.value.failure is HandshakeFailure.VERSION


def test_a_non_quorum_peer_is_refused_at_its_first_byte() -> None:
    with pytest.raises(HandshakeError) as info:
        responder().receive_data(b"G")
    assert info.value.failure is HandshakeFailure.MALFORMED


def test_a_failed_handshake_stays_failed() -> None:
    b = responder()
    with pytest.raises(HandshakeError) as first:
        b.receive_data(b"GET / HTTP/1.1\r\n")
    with pytest.raises(HandshakeError) as again:
        b.receive_data(initiator().data_to_send())
    assert again.value is first.value
    assert b.data_to_send() == b""


def forged_hello(ephemeral: bytes, *, claimed: PrivateKey = ALICE) -> bytes:
    return Hello(Role.INITIATOR, network_id(CHAIN, GENESIS), claimed.public_key, ephemeral).encode()


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p.hex()[:8] + p.hex()[-2:])
def test_low_order_ephemeral_keys_are_refused(point: bytes) -> None:
    with pytest.raises(HandshakeError) as info:
        responder().receive_data(forged_hello(point))
    assert info.value.failure is HandshakeFailure.LOW_ORDER_POINT


def test_a_non_canonical_ephemeral_key_is_refused() -> None:
    good = x25519_public_bytes(X25519PrivateKey.generate())
    high_bit = good[:31] + bytes([good[31] | 0x80])
    with pytest.raises(HandshakeError) as info:
        responder().receive_data(forged_hello(high_bit))
    assert info.value.failure is HandshakeFailure.MALFORMED


def forge_auth(
    b: Handshake, signer: PrivateKey, *, role: Role = Role.INITIATOR, chain: str = CHAIN
) -> bytes:
    """Play Alice's side by hand (the attacker knows the ephemeral secret, not Alice's key)."""
    ephemeral = X25519PrivateKey.generate()
    hello_a = forged_hello(x25519_public_bytes(ephemeral))
    hello_b = b.data_to_send()
    b.receive_data(hello_a)
    th = transcript_hash(CHAIN, GENESIS, hello_a, hello_b)
    i2r, _ = derive_frame_keys(x25519_shared_secret(ephemeral, hello_b[-32:]), th)
    signature = signer.sign(chain, SIGNATURE_KIND, auth_message(role, th))
    return FrameSender(i2r).seal(signature)


def test_the_forging_helper_is_right_when_it_signs_honestly() -> None:
    b = responder()
    assert b.receive_data(forge_auth(b, ALICE)) is not None


@pytest.mark.parametrize(
    ("signer", "role", "chain"),
    [
        (MALLORY, Role.INITIATOR, CHAIN),  # someone else's key
        (ALICE, Role.RESPONDER, CHAIN),  # Alice's signature for the other role
        (ALICE, Role.INITIATOR, "other-chain"),  # another signature domain
    ],
)
def test_a_forged_transcript_signature_is_refused(
    signer: PrivateKey, role: Role, chain: str
) -> None:
    b = responder()
    with pytest.raises(HandshakeError) as info:
        b.receive_data(forge_auth(b, signer, role=role, chain=chain))
    assert info.value.failure is HandshakeFailure.BAD_SIGNATURE


def test_an_auth_frame_under_other_keys_is_refused() -> None:
    b = responder()
    b.data_to_send()
    b.receive_data(forged_hello(x25519_public_bytes(X25519PrivateKey.generate())))
    with pytest.raises(HandshakeError) as info:
        b.receive_data(FrameSender(bytes(32)).seal(bytes(64)))
    assert info.value.failure is HandshakeFailure.DECRYPT


def test_an_auth_frame_of_the_wrong_size_is_refused_from_its_length() -> None:
    b = responder()
    b.receive_data(forged_hello(x25519_public_bytes(X25519PrivateKey.generate())))
    with pytest.raises(HandshakeError) as info:
        b.receive_data(struct.pack(">I", 0xFFFFFFFF))
    assert info.value.failure is HandshakeFailure.MALFORMED


# --------------------------------------------------------------------------- garbage


def feed_all(h: Handshake, chunks: list[bytes]) -> None:
    """Feed chunks; anything but None or HandshakeError fails the test."""
    for chunk in chunks:
        try:
            result = h.receive_data(chunk)
        except HandshakeError:
            return
        assert result is None or isinstance(result, HandshakeResult)
        if result is not None:
            return


@given(st.lists(st.binary(max_size=300), max_size=6), st.booleans())
def test_random_garbage_gives_handshake_error_only(chunks: list[bytes], as_initiator: bool) -> None:
    feed_all(initiator() if as_initiator else responder(), chunks)


FULL = HELLO_SIZE + 4 + AUTH_FRAME_BYTES


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(min_value=0, max_value=FULL - 1),
    st.integers(min_value=1, max_value=255),
    st.integers(min_value=0, max_value=FULL),
)
def test_mutated_or_truncated_handshakes_give_handshake_error_only(
    position: int, flip: int, cut: int
) -> None:
    ephemeral = X25519PrivateKey.generate()
    a, b = initiator(), responder(ephemeral_key=ephemeral)
    a.receive_data(b.data_to_send())
    stream = bytearray(a.data_to_send())
    assert len(stream) == FULL
    stream[position] ^= flip
    replay = responder(ephemeral_key=ephemeral)  # the same responder, as far as keys go
    try:
        result = replay.receive_data(bytes(stream[:cut]))
    except HandshakeError:
        assert position < cut
        return
    if position < cut:
        assert result is None  # a flipped byte never authenticates; a short stream waits
    elif cut == FULL:
        assert result is not None and result.peer_key == ALICE.public_key


def test_hello_decode_is_strict_about_size() -> None:
    hello = initiator().data_to_send()
    assert Hello.decode(hello).validator_key == ALICE.public_key
    for bad in (hello[:-1], hello + b"\x00", hello[:10] + b"\x07" + hello[11:]):
        with pytest.raises(HandshakeError):
            Hello.decode(bad)
