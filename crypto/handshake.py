"""The authenticated, encrypted peer channel between validators, sans-I/O.

What it is for: turning a byte stream between two validators into a mutually authenticated,
encrypted channel of frames, each carrying one or more application messages. What it must
never do: touch sockets, trio, clocks or files (feed bytes in, take bytes out, like h11), or
raise anything but :class:`HandshakeError` / :class:`FrameError` for bytes a peer sent.

Theory of operation (the normative description is docs/PEER_PROTOCOL.md):

1. **Hello.** Each side sends one fixed-size HELLO (:data:`HELLO_SIZE` bytes) as soon as the
   TCP connection exists, without waiting for the other's::

       magic "qrm-p2p\\0" (8) | version u16 BE (2) | role u8 (1) | network id (32)
       | validator public key, Ed25519 (32) | ephemeral public key, X25519 (32)

   ``network id = tagged_hash("p2p-network", encode([chain_id, genesis_hash]))``. The
   receiver checks, in order: magic ("malformed"), version ("version"), that the peer
   claims the other role ("malformed"), the network id ("other chain/genesis"), that the
   validator key is in the allowed set ("unknown key"), that X25519 with the ephemeral key
   is not all-zero ("low-order point") and that the key is a canonical field element
   ("malformed").
2. **Keys.** ``th = tagged_hash("p2p-transcript", encode([version, chain_id, genesis_hash,
   initiator_hello, responder_hello]))`` covers both ephemeral keys, both validator keys,
   the chain id and genesis hash, the version and both roles. HKDF-SHA256 (salt ``th``, info
   :data:`KEY_INFO`) over the X25519 shared secret gives one ChaCha20-Poly1305 key per
   direction (initiator->responder first).
3. **Auth.** Each side then sends frame 0 of its direction, whose plaintext is exactly its
   Ed25519 signature (``crypto.keys`` domain: the chain id and kind ``"p2p-handshake"``) over
   ``encode(["p2p-auth", role, th])``. A valid signature from the allowed key proves its
   holder took part in *this* exchange; the AEAD around it proves the sender knows the
   shared secret. Both checked: the handshake is done and frames 1, 2, ... carry data.

Identity is the **validator key** itself: the genesis names validators by their Ed25519
keys, so nothing else needs distributing or binding. The config's node key is not used by
this protocol version (a node key would need a validator-signed binding and a rotation
story to add anything); the kind ``"p2p-handshake"`` keeps these signatures from ever
verifying as consensus messages.

Frames: ``length u32 BE | ChaCha20-Poly1305(key, nonce = counter as 96-bit BE, plaintext,
aad = the 4 length bytes)``; ``length`` counts the ciphertext including the 16-byte tag and
is checked against :data:`MAX_FRAME_BYTES` before any of the body is buffered. Counters
start at 0 per direction, increase by one per frame and never wrap: at
:data:`MAX_FRAME_COUNTER` the channel refuses to go on (reconnect for fresh keys). A
replayed, reordered, dropped or altered frame fails authentication. A frame's plaintext is
zero or more messages, each ``length u32 BE | bytes`` with length >= 1 (:func:`join_messages`,
:func:`split_messages`); a frame with no messages is a keepalive.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from crypto.encoding import encode
from crypto.hashing import HASH_SIZE, tagged_hash
from crypto.keys import SIGNATURE_SIZE, PrivateKey, valid_chain_id, verify

PROTOCOL_VERSION: Final = 1
HELLO_MAGIC: Final = b"qrm-p2p\x00"
X25519_KEY_SIZE: Final = 32
#: magic, version, role, network id, validator key, ephemeral key
_HELLO: Final = struct.Struct(">8sHB32s32s32s")
HELLO_SIZE: Final = _HELLO.size
SIGNATURE_KIND: Final = "p2p-handshake"
KEY_INFO: Final = b"quorum p2p v1 frame keys"

LENGTH_PREFIX_SIZE: Final = 4
TAG_SIZE: Final = 16
NONCE_SIZE: Final = 12
#: Largest ciphertext (tag included) a frame may have; checked before reading the body.
MAX_FRAME_BYTES: Final = 16 * 1024 * 1024
#: Largest plaintext a frame may carry.
MAX_FRAME_PAYLOAD_BYTES: Final = MAX_FRAME_BYTES - TAG_SIZE
#: Largest single message (one length prefix inside a full frame).
MAX_MESSAGE_BYTES: Final = MAX_FRAME_PAYLOAD_BYTES - LENGTH_PREFIX_SIZE
#: Frames per direction before the channel must be re-keyed (far below the 2**96 nonces).
MAX_FRAME_COUNTER: Final = 2**64 - 1
#: The auth frame's ciphertext is exactly a signature and a tag.
AUTH_FRAME_BYTES: Final = SIGNATURE_SIZE + TAG_SIZE

_FIELD_PRIME: Final = 2**255 - 19
_LENGTH: Final = struct.Struct(">I")
_VERSION: Final = struct.Struct(">H")


class Role(enum.IntEnum):
    """Who opened the TCP connection. Part of the transcript: a reflected hello fails."""

    INITIATOR = 0
    RESPONDER = 1


class HandshakeFailure(enum.StrEnum):
    """Why a handshake was refused; the values are what statistics count."""

    UNKNOWN_KEY = "unknown key"
    OTHER_CHAIN = "other chain/genesis"
    BAD_SIGNATURE = "bad signature"
    LOW_ORDER_POINT = "low-order point"
    MALFORMED = "malformed"
    VERSION = "version"
    DECRYPT = "decryption failed"


class FrameFailure(enum.StrEnum):
    """Why a frame stream was refused after the handshake."""

    TOO_LARGE = "frame too large"
    MALFORMED = "malformed frame"
    DECRYPT = "decryption failed"
    EXHAUSTED = "counter exhausted"


class PeerProtocolError(Exception):
    """The peer sent bytes we refuse. ``reason`` is a short stable label for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class HandshakeError(PeerProtocolError):
    """The handshake failed; ``reason`` is a :class:`HandshakeFailure` value."""

    def __init__(self, reason: HandshakeFailure, detail: str) -> None:
        super().__init__(reason.value, detail)
        self.failure = reason


class FrameError(PeerProtocolError):
    """A frame failed; ``reason`` is a :class:`FrameFailure` value."""

    def __init__(self, reason: FrameFailure, detail: str) -> None:
        super().__init__(reason.value, detail)
        self.failure = reason


class ChannelExhausted(Exception):
    """We may not seal another frame on this channel (counter limit): reconnect. Not an attack."""


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class Hello:
    """The first message of each side (fixed size, sent in the clear)."""

    role: Role
    network_id: bytes
    validator_key: bytes
    ephemeral_key: bytes
    version: int = PROTOCOL_VERSION

    def encode(self) -> bytes:
        """The :data:`HELLO_SIZE` wire bytes. Raises ValueError for wrong field sizes (our bug)."""
        if not len(self.network_id) == len(self.validator_key) == len(self.ephemeral_key) == 32:
            raise ValueError("hello network id and keys must be 32 bytes each")
        return _HELLO.pack(
            HELLO_MAGIC,
            self.version,
            int(self.role),
            self.network_id,
            self.validator_key,
            self.ephemeral_key,
        )

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        """Parse exactly :data:`HELLO_SIZE` bytes, or raise :class:`HandshakeError`."""
        _check_hello_prefix(data)
        if len(data) != HELLO_SIZE:
            raise HandshakeError(
                HandshakeFailure.MALFORMED, f"hello is {len(data)} bytes, expected {HELLO_SIZE}"
            )
        _, version, role, network_id, validator_key, ephemeral_key = _HELLO.unpack(data)
        if role not in (Role.INITIATOR, Role.RESPONDER):
            raise HandshakeError(HandshakeFailure.MALFORMED, f"unknown role {role}")
        return cls(Role(role), network_id, validator_key, ephemeral_key, version)


def _check_hello_prefix(data: bytes) -> None:
    """Check magic and version on as many bytes as have arrived (a v2 hello may be shorter)."""
    magic = data[: len(HELLO_MAGIC)]
    if magic != HELLO_MAGIC[: len(magic)]:
        raise HandshakeError(HandshakeFailure.MALFORMED, "not a quorum peer hello (bad magic)")
    if len(data) >= len(HELLO_MAGIC) + _VERSION.size:
        (version,) = _VERSION.unpack_from(data, len(HELLO_MAGIC))
        if version != PROTOCOL_VERSION:
            raise HandshakeError(
                HandshakeFailure.VERSION,
                f"peer speaks protocol version {version}, we speak {PROTOCOL_VERSION}",
            )


def network_id(chain_id: str, genesis_hash: bytes) -> bytes:
    """Names the chain in a hello: both the chain id and the genesis document must match."""
    return tagged_hash("p2p-network", encode([chain_id, genesis_hash]))


def transcript_hash(
    chain_id: str, genesis_hash: bytes, initiator_hello: bytes, responder_hello: bytes
) -> bytes:
    """The hash both sides sign and key from: both hellos, the chain id and genesis hash."""
    return tagged_hash(
        "p2p-transcript",
        encode([PROTOCOL_VERSION, chain_id, genesis_hash, initiator_hello, responder_hello]),
    )


def auth_message(role: Role, transcript: bytes) -> bytes:
    """What a side of ``role`` signs (under kind :data:`SIGNATURE_KIND`) to authenticate."""
    return encode(["p2p-auth", int(role), transcript])


def derive_frame_keys(shared_secret: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    """``(initiator->responder key, responder->initiator key)`` for ChaCha20-Poly1305."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=transcript, info=KEY_INFO).derive(
        shared_secret
    )
    return okm[:32], okm[32:]


def x25519_shared_secret(private_key: X25519PrivateKey, peer_public_key: bytes) -> bytes:
    """X25519, refusing the all-zero result every low-order (or twist-torsion) point gives."""
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(peer_public_key))
    except ValueError:  # cryptography refuses an all-zero shared secret ...
        shared = bytes(X25519_KEY_SIZE)
    if shared == bytes(X25519_KEY_SIZE):  # ... and we check, whatever the backend does
        raise HandshakeError(HandshakeFailure.LOW_ORDER_POINT, "ephemeral key is a low-order point")
    return shared


def x25519_public_bytes(private_key: X25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


# --------------------------------------------------------------------------- frames


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(NONCE_SIZE, "big")


class FrameSender:
    """Seals plaintexts into frames for one direction; the counter never repeats."""

    __slots__ = ("_aead", "_counter", "_max_counter")

    def __init__(
        self, key: bytes, *, first_counter: int = 0, max_counter: int = MAX_FRAME_COUNTER
    ) -> None:
        self._aead = ChaCha20Poly1305(key)
        self._counter = first_counter
        self._max_counter = max_counter

    @property
    def counter(self) -> int:
        """The counter (nonce) the next frame will use."""
        return self._counter

    @property
    def exhausted(self) -> bool:
        """True when :meth:`seal` would raise :class:`ChannelExhausted`."""
        return self._counter > self._max_counter

    def seal(self, plaintext: bytes) -> bytes:
        """One frame: length prefix and ciphertext. ValueError if over the size cap (our bug)."""
        if len(plaintext) > MAX_FRAME_PAYLOAD_BYTES:
            raise ValueError(f"frame plaintext of {len(plaintext)} bytes is over the cap")
        if self._counter > self._max_counter:
            raise ChannelExhausted("frame counter exhausted; reconnect to re-key")
        prefix = _LENGTH.pack(len(plaintext) + TAG_SIZE)
        ciphertext = self._aead.encrypt(_nonce(self._counter), plaintext, prefix)
        self._counter += 1
        return prefix + ciphertext

    def seal_messages(self, messages: Sequence[bytes]) -> bytes:
        """One frame carrying ``messages`` (see :func:`join_messages`)."""
        return self.seal(join_messages(messages))


class FrameReceiver:
    """Buffers stream bytes and opens complete frames for one direction.

    The length prefix is checked against ``max_frame_bytes`` as soon as its four bytes are
    here, so an oversized frame is refused before any of its body is buffered. After a
    :class:`FrameError` the receiver stays failed.
    """

    __slots__ = ("_aead", "_buffer", "_counter", "_error", "_max_counter", "_max_frame_bytes")

    def __init__(
        self,
        key: bytes,
        *,
        first_counter: int = 0,
        max_counter: int = MAX_FRAME_COUNTER,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        if not TAG_SIZE <= max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be in [{TAG_SIZE}, {MAX_FRAME_BYTES}]")
        self._aead = ChaCha20Poly1305(key)
        self._counter = first_counter
        self._max_counter = max_counter
        self._max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()
        self._error: FrameError | None = None

    @property
    def counter(self) -> int:
        """The counter (nonce) the next frame must have been sealed with."""
        return self._counter

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[bytes]:
        """Add stream bytes; return the plaintexts of the frames they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buffer += data
        try:
            return self._open_complete_frames()
        except FrameError as exc:
            self._error = exc
            self._buffer = bytearray()
            raise

    def _open_complete_frames(self) -> list[bytes]:
        buffer = self._buffer
        view = memoryview(buffer)
        plaintexts: list[bytes] = []
        at = 0
        try:
            while len(buffer) - at >= LENGTH_PREFIX_SIZE:
                (length,) = _LENGTH.unpack_from(buffer, at)
                if length > self._max_frame_bytes:
                    raise FrameError(
                        FrameFailure.TOO_LARGE,
                        f"frame of {length} bytes announced, the cap is {self._max_frame_bytes}",
                    )
                if length < TAG_SIZE:
                    raise FrameError(FrameFailure.MALFORMED, f"frame of {length} bytes has no tag")
                end = at + LENGTH_PREFIX_SIZE + length
                if len(buffer) < end:
                    break
                if self._counter > self._max_counter:
                    raise FrameError(FrameFailure.EXHAUSTED, "peer sent past the counter limit")
                try:
                    plaintext = self._aead.decrypt(
                        _nonce(self._counter),
                        view[at + LENGTH_PREFIX_SIZE : end],
                        view[at : at + LENGTH_PREFIX_SIZE],
                    )
                except InvalidTag:
                    raise FrameError(
                        FrameFailure.DECRYPT,
                        f"frame {self._counter} failed authentication "
                        "(altered, replayed, reordered or dropped)",
                    ) from None
                self._counter += 1
                plaintexts.append(plaintext)
                at = end
        finally:
            view.release()
        if at:
            del buffer[:at]
        return plaintexts


def join_messages(messages: Iterable[bytes]) -> bytes:
    """A frame plaintext: each message as ``length u32 BE | bytes``; lengths >= 1."""
    parts: list[bytes] = []
    for message in messages:
        if not message:
            raise ValueError("empty messages are not allowed (an empty frame is a keepalive)")
        if len(message) > MAX_MESSAGE_BYTES:
            raise ValueError(f"message of {len(message)} bytes is over {MAX_MESSAGE_BYTES}")
        parts.append(_LENGTH.pack(len(message)))
        parts.append(message)
    return b"".join(parts)


def split_messages(payload: bytes) -> list[bytes]:
    """Invert :func:`join_messages`, or raise :class:`FrameError` (the peer's fault)."""
    messages: list[bytes] = []
    at = 0
    end = len(payload)
    while at < end:
        if end - at < LENGTH_PREFIX_SIZE:
            raise FrameError(FrameFailure.MALFORMED, "truncated message length in frame")
        (length,) = _LENGTH.unpack_from(payload, at)
        at += LENGTH_PREFIX_SIZE
        if length == 0 or length > end - at:
            raise FrameError(FrameFailure.MALFORMED, f"bad message length {length} in frame")
        messages.append(payload[at : at + length])
        at += length
    return messages


# --------------------------------------------------------------------------- handshake


@dataclass(frozen=True, slots=True)
class HandshakeResult:
    """A finished handshake: who the peer is and the two halves of the channel.

    ``leftover`` holds bytes that arrived after the peer's auth frame (its first data
    frames): feed them to ``receiver`` before anything else.
    """

    peer_key: bytes
    transcript_hash: bytes
    sender: FrameSender
    receiver: FrameReceiver
    leftover: bytes


class _State(enum.Enum):
    AWAIT_HELLO = enum.auto()
    AWAIT_AUTH = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


class Handshake:
    """One side of the handshake. Construct, send :meth:`data_to_send`, feed :meth:`receive_data`.

    ``allowed_peer_keys`` are the validator keys this side accepts: a responder passes the
    genesis validators minus itself, an initiator just the validator it dialed. After every
    :meth:`receive_data` send :meth:`data_to_send` (it may hold our auth frame even when
    the handshake just completed). After a :class:`HandshakeError` every call raises it again.
    """

    def __init__(
        self,
        role: Role,
        identity: PrivateKey,
        chain_id: str,
        genesis_hash: bytes,
        allowed_peer_keys: Iterable[bytes],
        *,
        ephemeral_key: X25519PrivateKey | None = None,
        max_frame_bytes: int = MAX_FRAME_BYTES,
        max_frame_counter: int = MAX_FRAME_COUNTER,
    ) -> None:
        if len(genesis_hash) != HASH_SIZE:
            raise ValueError(f"genesis_hash must be {HASH_SIZE} bytes")
        if not valid_chain_id(chain_id):
            raise ValueError(f"invalid chain id {chain_id!r}")
        self.role = role
        self._identity = identity
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._allowed = frozenset(allowed_peer_keys) - {identity.public_key}
        self._ephemeral = X25519PrivateKey.generate() if ephemeral_key is None else ephemeral_key
        self._max_frame_bytes = max_frame_bytes
        self._max_frame_counter = max_frame_counter
        self._network_id = network_id(chain_id, genesis_hash)
        self._hello = Hello(
            role, self._network_id, identity.public_key, x25519_public_bytes(self._ephemeral)
        ).encode()
        self._outgoing = bytearray(self._hello)
        self._buffer = bytearray()
        self._state = _State.AWAIT_HELLO
        self._error: HandshakeError | None = None
        self._peer_key = b""
        self._transcript = b""
        self._sender: FrameSender | None = None
        self._receiver: FrameReceiver | None = None

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def peer_key(self) -> bytes | None:
        """The peer's validator key once its hello passed the checks (even if auth later fails)."""
        return self._peer_key or None

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (drains the outgoing buffer)."""
        out = bytes(self._outgoing)
        self._outgoing.clear()
        return out

    def receive_data(self, data: bytes) -> HandshakeResult | None:
        """Feed bytes from the peer; the result once the peer is authenticated, else None."""
        if self._error is not None:
            raise self._error
        if self._state is _State.DONE:
            raise RuntimeError("handshake is complete: feed further bytes to the FrameReceiver")
        self._buffer += data
        try:
            if self._state is _State.AWAIT_HELLO:
                self._try_hello()
            if self._state is _State.AWAIT_AUTH:
                return self._try_auth()
        except HandshakeError as exc:  # a failed handshake stays failed, with nothing to send
            self._state, self._error = _State.FAILED, exc
            self._buffer.clear()
            self._outgoing.clear()
            raise
        return None

    def _try_hello(self) -> None:
        _check_hello_prefix(bytes(self._buffer[:HELLO_SIZE]))
        if len(self._buffer) < HELLO_SIZE:
            return
        raw = bytes(self._buffer[:HELLO_SIZE])
        del self._buffer[:HELLO_SIZE]
        hello = Hello.decode(raw)
        if hello.role is self.role:
            raise HandshakeError(
                HandshakeFailure.MALFORMED, f"peer also claims the {hello.role.name} role"
            )
        if hello.network_id != self._network_id:
            raise HandshakeError(
                HandshakeFailure.OTHER_CHAIN,
                "peer is on another chain or genesis "
                f"(network id {hello.network_id.hex()[:16]}..., ours {self._network_id.hex()[:16]}...)",
            )
        if hello.validator_key not in self._allowed:
            raise HandshakeError(
                HandshakeFailure.UNKNOWN_KEY,
                f"validator key {hello.validator_key.hex()[:16]}... is not an allowed peer",
            )
        shared = x25519_shared_secret(self._ephemeral, hello.ephemeral_key)
        if int.from_bytes(hello.ephemeral_key, "little") >= _FIELD_PRIME:
            raise HandshakeError(HandshakeFailure.MALFORMED, "ephemeral key is not canonical")
        self._peer_key = hello.validator_key
        if self.role is Role.INITIATOR:
            first, second = self._hello, raw
        else:
            first, second = raw, self._hello
        self._transcript = transcript_hash(self._chain_id, self._genesis_hash, first, second)
        i2r, r2i = derive_frame_keys(shared, self._transcript)
        send_key, receive_key = (i2r, r2i) if self.role is Role.INITIATOR else (r2i, i2r)
        self._sender = FrameSender(send_key, max_counter=self._max_frame_counter)
        self._receiver = FrameReceiver(
            receive_key, max_counter=self._max_frame_counter, max_frame_bytes=self._max_frame_bytes
        )
        signature = self._identity.sign(
            self._chain_id, SIGNATURE_KIND, auth_message(self.role, self._transcript)
        )
        self._outgoing += self._sender.seal(signature)
        self._state = _State.AWAIT_AUTH

    def _try_auth(self) -> HandshakeResult | None:
        assert self._sender is not None and self._receiver is not None
        if len(self._buffer) < LENGTH_PREFIX_SIZE:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer, 0)
        if length != AUTH_FRAME_BYTES:
            raise HandshakeError(
                HandshakeFailure.MALFORMED,
                f"auth frame of {length} bytes, expected {AUTH_FRAME_BYTES}",
            )
        frame_size = LENGTH_PREFIX_SIZE + AUTH_FRAME_BYTES
        if len(self._buffer) < frame_size:
            return None
        frame = bytes(self._buffer[:frame_size])
        leftover = bytes(self._buffer[frame_size:])
        self._buffer.clear()
        try:
            (signature,) = self._receiver.receive_data(frame)
        except FrameError:
            raise HandshakeError(
                HandshakeFailure.DECRYPT, "auth frame failed authentication"
            ) from None
        peer_role = Role.RESPONDER if self.role is Role.INITIATOR else Role.INITIATOR
        if not verify(
            self._peer_key,
            self._chain_id,
            SIGNATURE_KIND,
            auth_message(peer_role, self._transcript),
            signature,
        ):
            raise HandshakeError(
                HandshakeFailure.BAD_SIGNATURE, "peer's transcript signature does not verify"
            )
        self._state = _State.DONE
        return HandshakeResult(
            self._peer_key, self._transcript, self._sender, self._receiver, leftover
        )
