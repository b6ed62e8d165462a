"""The signed consensus messages: frozen dataclasses, one canonical encoding each.

Every message travels in a :class:`SignedMessage` envelope ``(sender, kind, body,
signature, payload)``. ``body`` is the canonical record of one of the body types below and
``signature`` is the sender's Ed25519 signature over it under the domain ``(chain_id,
kind)`` (crypto.keys), so a PREPARE can never pass for a COMMIT. The COMMIT body is exactly
:func:`consensus.votes.commit_vote_body`, which makes q COMMIT signatures a commit
certificate in the chain's format.

``payload`` is the one unsigned field: the opaque block bytes that ride along a PRE-PREPARE
(or a BLOCK reply). The signature covers the block's digest, the digest binds the payload,
and the replica checks ``block_digest(payload) == digest`` before using it — so prepared
certificates and view changes can carry small signed headers instead of whole blocks.

Decoding is strict (crypto.encoding rejects every non-canonical spelling) and bounded by the
caps below. Messages are compared, deduplicated and checked for equivocation by their
content (sender, kind, body), never by signature bytes.

House rule: values and encodings only — no state, and no signature or certificate checks
(those are consensus/certificates.py's).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass
from typing import ClassVar, Final

from consensus.config import MAX_VALIDATORS
from consensus.votes import COMMIT_RECORD_VERSION, commit_vote_body
from crypto.encoding import (
    MAX_ENCODED_BYTES,
    DecodeError,
    Value,
    as_bytes,
    as_int,
    as_list,
    as_str,
    decode,
    encode_record,
    record_fields,
)
from crypto.hashing import HASH_SIZE
from crypto.keys import SIGNATURE_SIZE, PrivateKey

#: Cap on one encoded envelope: the canonical encoding's own hard cap.
MAX_MESSAGE_BYTES: Final = MAX_ENCODED_BYTES
#: Cap on the body of every message except VIEW-CHANGE and NEW-VIEW (they are small records).
MAX_SMALL_BODY_BYTES: Final = 512
#: Cap on prepared certificates in one VIEW-CHANGE (the genesis watermark window's maximum).
MAX_PREPARED_PROOFS: Final = 100_000
#: Cap on re-issued PRE-PREPAREs in one NEW-VIEW.
MAX_REISSUED_PRE_PREPARES: Final = 100_000

ENVELOPE_TAG: Final = "consensus-msg"
RECORD_VERSION: Final = 1


class Kind(enum.StrEnum):
    """Message kinds; each is also the signature domain kind of its body."""

    PRE_PREPARE = "pre-prepare"
    PREPARE = "prepare"
    COMMIT = "commit"
    CHECKPOINT = "checkpoint"
    VIEW_CHANGE = "view-change"
    NEW_VIEW = "new-view"
    STATUS = "status"
    BLOCK_REQUEST = "block-request"
    BLOCK = "block"


_KINDS: Final = frozenset(k.value for k in Kind)
_PAYLOAD_KINDS: Final = frozenset({Kind.PRE_PREPARE.value, Kind.BLOCK.value})
_LARGE_KINDS: Final = frozenset({Kind.VIEW_CHANGE.value, Kind.NEW_VIEW.value})


def _digest(value: Value, name: str) -> bytes:
    return as_bytes(value, name, size=HASH_SIZE)


# ----------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class SignedMessage:
    """A body signed by validator ``sender``; ``payload`` (unsigned, digest-bound) is optional."""

    sender: int
    kind: str
    body: bytes
    signature: bytes
    payload: bytes = b""

    def to_value(self) -> Value:
        return [
            ENVELOPE_TAG,
            RECORD_VERSION,
            self.sender,
            self.kind,
            self.body,
            self.signature,
            self.payload,
        ]

    def encode(self) -> bytes:
        return encode_record(ENVELOPE_TAG, RECORD_VERSION, self.to_value()[2:])

    @classmethod
    def from_value(cls, value: Value, *, allow_payload: bool = True) -> SignedMessage:
        f = record_fields(value, ENVELOPE_TAG, RECORD_VERSION, 5)
        sender = as_int(f[0], "sender", hi=MAX_VALIDATORS - 1)
        kind = as_str(f[1], "kind", max_size=32)
        if kind not in _KINDS:
            raise DecodeError(f"kind: unknown message kind {kind!r}")
        max_body = MAX_MESSAGE_BYTES if kind in _LARGE_KINDS else MAX_SMALL_BODY_BYTES
        body = as_bytes(f[2], "body", max_size=max_body)
        signature = as_bytes(f[3], "signature", size=SIGNATURE_SIZE)
        payload = as_bytes(f[4], "payload", max_size=MAX_MESSAGE_BYTES)
        if payload and (kind not in _PAYLOAD_KINDS or not allow_payload):
            raise DecodeError(f"payload: a {kind} message here carries no payload")
        return cls(sender, kind, body, signature, payload)

    @classmethod
    def decode(cls, raw: bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> SignedMessage:
        return cls.from_value(decode(raw, max_bytes=max_bytes))

    def content(self) -> tuple[int, str, bytes]:
        """What identifies a message: who said what. Never the signature bytes."""
        return (self.sender, self.kind, self.body)

    def without_payload(self) -> SignedMessage:
        return SignedMessage(self.sender, self.kind, self.body, self.signature)


def _message_list(value: Value, name: str, max_len: int) -> tuple[SignedMessage, ...]:
    items = as_list(value, name, max_len=max_len)
    return tuple(SignedMessage.from_value(item, allow_payload=False) for item in items)


# ----------------------------------------------------------------------------- normal case


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary of ``view`` proposes block ``digest`` (child of ``parent_digest``) at ``height``."""

    view: int
    height: int
    digest: bytes
    parent_digest: bytes

    KIND: ClassVar[str] = Kind.PRE_PREPARE.value

    def encode(self) -> bytes:
        return encode_record(
            self.KIND, RECORD_VERSION, [self.view, self.height, self.digest, self.parent_digest]
        )

    @classmethod
    def decode(cls, raw: bytes) -> PrePrepare:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 4)
        return cls(
            as_int(f[0], "view"),
            as_int(f[1], "height"),
            _digest(f[2], "digest"),
            _digest(f[3], "parent_digest"),
        )


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    height: int
    digest: bytes

    KIND: ClassVar[str] = Kind.PREPARE.value

    def encode(self) -> bytes:
        return encode_record(self.KIND, RECORD_VERSION, [self.view, self.height, self.digest])

    @classmethod
    def decode(cls, raw: bytes) -> Prepare:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 3)
        return cls(as_int(f[0], "view"), as_int(f[1], "height"), _digest(f[2], "digest"))


@dataclass(frozen=True, slots=True)
class Commit:
    """Its encoding IS commit_vote_body: q of these signatures form a commit certificate."""

    view: int
    height: int
    digest: bytes

    KIND: ClassVar[str] = Kind.COMMIT.value

    def encode(self) -> bytes:
        return commit_vote_body(self.view, self.height, self.digest)

    @classmethod
    def decode(cls, raw: bytes) -> Commit:
        f = record_fields(
            decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), "commit", COMMIT_RECORD_VERSION, 3
        )
        return cls(as_int(f[0], "view"), as_int(f[1], "height"), _digest(f[2], "digest"))


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The sender committed ``block_hash`` at ``height`` and its state root is ``state_root``."""

    height: int
    block_hash: bytes
    state_root: bytes

    KIND: ClassVar[str] = Kind.CHECKPOINT.value

    def encode(self) -> bytes:
        return encode_record(
            self.KIND, RECORD_VERSION, [self.height, self.block_hash, self.state_root]
        )

    @classmethod
    def decode(cls, raw: bytes) -> Checkpoint:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 3)
        return cls(as_int(f[0], "height"), _digest(f[1], "block_hash"), _digest(f[2], "state_root"))


# ----------------------------------------------------------------------------- certificates


@dataclass(frozen=True, slots=True)
class CheckpointProof:
    """A stable checkpoint: q matching signed CHECKPOINTs (none for the genesis anchor)."""

    height: int
    block_hash: bytes
    state_root: bytes
    messages: tuple[SignedMessage, ...]

    def to_value(self) -> Value:
        return [
            self.height,
            self.block_hash,
            self.state_root,
            [m.to_value() for m in self.messages],
        ]

    @classmethod
    def from_value(cls, value: Value) -> CheckpointProof:
        f = as_list(value, "checkpoint", max_len=4)
        if len(f) != 4:
            raise DecodeError("checkpoint: expected [height, block_hash, state_root, messages]")
        return cls(
            as_int(f[0], "checkpoint.height"),
            _digest(f[1], "checkpoint.block_hash"),
            _digest(f[2], "checkpoint.state_root"),
            _message_list(f[3], "checkpoint.messages", MAX_VALIDATORS),
        )


@dataclass(frozen=True, slots=True)
class CommitProof:
    """A commit certificate: (validator index, COMMIT signature) pairs in increasing index order."""

    view: int
    height: int
    digest: bytes
    votes: tuple[tuple[int, bytes], ...]

    def to_value(self) -> Value:
        return [self.view, self.height, self.digest, [[i, s] for i, s in self.votes]]

    @classmethod
    def from_value(cls, value: Value) -> CommitProof:
        f = as_list(value, "commit_proof", max_len=4)
        if len(f) != 4:
            raise DecodeError("commit_proof: expected [view, height, digest, votes]")
        votes = []
        for n, item in enumerate(as_list(f[3], "commit_proof.votes", max_len=MAX_VALIDATORS)):
            pair = as_list(item, f"votes[{n}]", max_len=2)
            if len(pair) != 2:
                raise DecodeError(f"votes[{n}]: expected [validator, signature]")
            votes.append(
                (
                    as_int(pair[0], f"votes[{n}].validator", hi=MAX_VALIDATORS - 1),
                    as_bytes(pair[1], f"votes[{n}].signature", size=SIGNATURE_SIZE),
                )
            )
        return cls(
            as_int(f[0], "view"), as_int(f[1], "height"), _digest(f[2], "digest"), tuple(votes)
        )


@dataclass(frozen=True, slots=True)
class PreparedProof:
    """A prepared certificate: the primary's signed PRE-PREPARE header + q-1 PREPAREs.

    ``header`` is the decoded body of ``pre_prepare`` (kept alongside for convenience; the
    constructors below always derive it from the signed bytes).
    """

    header: PrePrepare
    pre_prepare: SignedMessage
    prepares: tuple[SignedMessage, ...]

    @classmethod
    def of(cls, pre_prepare: SignedMessage, prepares: tuple[SignedMessage, ...]) -> PreparedProof:
        if pre_prepare.kind != Kind.PRE_PREPARE:
            raise DecodeError("prepared proof: first message is not a pre-prepare")
        return cls(PrePrepare.decode(pre_prepare.body), pre_prepare.without_payload(), prepares)

    def to_value(self) -> Value:
        return [self.pre_prepare.to_value(), [m.to_value() for m in self.prepares]]

    @classmethod
    def from_value(cls, value: Value) -> PreparedProof:
        f = as_list(value, "prepared", max_len=2)
        if len(f) != 2:
            raise DecodeError("prepared: expected [pre_prepare, prepares]")
        pre_prepare = SignedMessage.from_value(f[0], allow_payload=False)
        return cls.of(pre_prepare, _message_list(f[1], "prepared.prepares", MAX_VALIDATORS))

    def encode(self) -> bytes:
        return encode_record("prepared-proof", RECORD_VERSION, self.to_value())

    @classmethod
    def decode(cls, raw: bytes) -> PreparedProof:
        return cls.from_value(record_fields(decode(raw), "prepared-proof", RECORD_VERSION, 2))


# ----------------------------------------------------------------------------- view change


@dataclass(frozen=True, slots=True)
class ViewChange:
    """Move to ``new_view``: my stable checkpoint, my last commit certificate (when above the
    checkpoint) and my prepared certificates for every height above both."""

    new_view: int
    checkpoint: CheckpointProof
    committed: CommitProof | None
    prepared: tuple[PreparedProof, ...]

    KIND: ClassVar[str] = Kind.VIEW_CHANGE.value

    def encode(self) -> bytes:
        return encode_record(
            self.KIND,
            RECORD_VERSION,
            [
                self.new_view,
                self.checkpoint.to_value(),
                None if self.committed is None else self.committed.to_value(),
                [p.to_value() for p in self.prepared],
            ],
        )

    @classmethod
    def decode(cls, raw: bytes) -> ViewChange:
        f = record_fields(decode(raw), cls.KIND, RECORD_VERSION, 4)
        prepared = as_list(f[3], "prepared", max_len=MAX_PREPARED_PROOFS)
        return cls(
            as_int(f[0], "new_view"),
            CheckpointProof.from_value(f[1]),
            None if f[2] is None else CommitProof.from_value(f[2]),
            tuple(PreparedProof.from_value(p) for p in prepared),
        )


@dataclass(frozen=True, slots=True)
class NewView:
    """The primary of ``view`` starts it: q VIEW-CHANGEs and the PRE-PREPARE headers they imply."""

    view: int
    view_changes: tuple[SignedMessage, ...]
    pre_prepares: tuple[SignedMessage, ...]

    KIND: ClassVar[str] = Kind.NEW_VIEW.value

    def encode(self) -> bytes:
        return encode_record(
            self.KIND,
            RECORD_VERSION,
            [
                self.view,
                [m.to_value() for m in self.view_changes],
                [m.to_value() for m in self.pre_prepares],
            ],
        )

    @classmethod
    def decode(cls, raw: bytes) -> NewView:
        f = record_fields(decode(raw), cls.KIND, RECORD_VERSION, 3)
        return cls(
            as_int(f[0], "view"),
            _message_list(f[1], "view_changes", MAX_VALIDATORS),
            _message_list(f[2], "pre_prepares", MAX_REISSUED_PRE_PREPARES),
        )


# ----------------------------------------------------------------------------- catch-up


@dataclass(frozen=True, slots=True)
class Status:
    """A periodic announcement: where the sender is. Lets lagging replicas notice."""

    view: int
    view_active: bool
    committed_height: int
    stable_height: int

    KIND: ClassVar[str] = Kind.STATUS.value

    def encode(self) -> bytes:
        return encode_record(
            self.KIND,
            RECORD_VERSION,
            [self.view, self.view_active, self.committed_height, self.stable_height],
        )

    @classmethod
    def decode(cls, raw: bytes) -> Status:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 4)
        if not isinstance(f[1], bool):
            raise DecodeError("view_active: expected a boolean")
        return cls(
            as_int(f[0], "view"),
            f[1],
            as_int(f[2], "committed_height"),
            as_int(f[3], "stable_height"),
        )


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """Send me the payload of block ``digest`` at ``height`` (I hold its signed header)."""

    height: int
    digest: bytes

    KIND: ClassVar[str] = Kind.BLOCK_REQUEST.value

    def encode(self) -> bytes:
        return encode_record(self.KIND, RECORD_VERSION, [self.height, self.digest])

    @classmethod
    def decode(cls, raw: bytes) -> BlockRequest:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 2)
        return cls(as_int(f[0], "height"), _digest(f[1], "digest"))


@dataclass(frozen=True, slots=True)
class BlockReply:
    """The payload of block ``digest`` at ``height`` rides in the envelope's payload field."""

    height: int
    digest: bytes

    KIND: ClassVar[str] = Kind.BLOCK.value

    def encode(self) -> bytes:
        return encode_record(self.KIND, RECORD_VERSION, [self.height, self.digest])

    @classmethod
    def decode(cls, raw: bytes) -> BlockReply:
        f = record_fields(decode(raw, max_bytes=MAX_SMALL_BODY_BYTES), cls.KIND, RECORD_VERSION, 2)
        return cls(as_int(f[0], "height"), _digest(f[1], "digest"))


Body = (
    PrePrepare
    | Prepare
    | Commit
    | Checkpoint
    | ViewChange
    | NewView
    | Status
    | BlockRequest
    | BlockReply
)

_BODY_TYPES: Final[dict[str, type[Body]]] = {
    cls.KIND: cls
    for cls in (
        PrePrepare,
        Prepare,
        Commit,
        Checkpoint,
        ViewChange,
        NewView,
        Status,
        BlockRequest,
        BlockReply,
    )
}


#: Decoded bodies remembered (a memo of a pure function: bodies are immutable values).
BODY_MEMO_ENTRIES: Final = 4096


@functools.lru_cache(maxsize=BODY_MEMO_ENTRIES)
def _decode_body(kind: str, body: bytes) -> Body:
    return _BODY_TYPES[kind].decode(body)


def decode_body(message: SignedMessage) -> Body:
    """The typed body of ``message``; :class:`DecodeError` if it is not a ``kind`` record."""
    return _decode_body(message.kind, message.body)


def sign(
    key: PrivateKey, chain_id: str, sender: int, body: Body, payload: bytes = b""
) -> SignedMessage:
    """Sign ``body`` under its own kind. Deterministic (Ed25519), hence pure."""
    raw = body.encode()
    return SignedMessage(sender, body.KIND, raw, key.sign(chain_id, body.KIND, raw), payload)
