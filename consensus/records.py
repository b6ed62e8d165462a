"""What a replica asks the driver to make durable, and gets back on restart.

Three record types, each with a canonical encoding so the driver can store bytes:

* :class:`HardState` — replaced as a whole: the current view, whether it is active, the
  stable checkpoint (with its certificate), this replica's VIEW-CHANGE for the view it is
  moving to, and the NEW-VIEW it accepted (or sent) for the current view.
* :class:`SignedSlot` — the double-sign guard: for each (view, height, phase) this replica
  signed, the digest it signed and the message itself. Keyed by (view, height, phase).
  A slot is never rewritten with a different digest.
* :class:`PreparedRecord` — a prepared certificate this replica holds (with the block
  payload when known). Keyed by height: a newer record for a height replaces the old one.
  A replica that lost these would under-report in its next VIEW-CHANGE, which is what a
  Byzantine replica does, so an honest restart must get them back.

Pruning (the driver may, never must): delete SignedSlots whose view is below
``HardState.view`` or whose height is at or below the stable checkpoint height (except the
view-change and new-view phases, which carry height 0 and go with their view), and
PreparedRecords at or below the last committed height. The replica ignores stale records
on restore anyway.

House rule: values and encodings only; the driver stores them, the replica never reads or
writes a disk.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from consensus.messages import CheckpointProof, CommitProof, PreparedProof, SignedMessage
from crypto.encoding import (
    DecodeError,
    as_bytes,
    as_int,
    as_str,
    decode,
    encode_record,
    record_fields,
)
from crypto.hashing import HASH_SIZE

RECORD_VERSION: Final = 1


class Phase(enum.StrEnum):
    """What a guard record protects: one signature per (view, height, phase)."""

    PRE_PREPARE = "pre-prepare"
    PREPARE = "prepare"
    COMMIT = "commit"
    VIEW_CHANGE = "view-change"
    NEW_VIEW = "new-view"


_PHASES: Final = frozenset(p.value for p in Phase)


@dataclass(frozen=True, slots=True)
class SignedSlot:
    """The double-sign guard record: I signed ``digest`` for (view, height, phase)."""

    view: int
    height: int
    phase: str
    digest: bytes
    message: SignedMessage

    TAG = "signed-slot"

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.view, self.height, self.phase)

    def encode(self) -> bytes:
        return encode_record(
            self.TAG,
            RECORD_VERSION,
            [self.view, self.height, self.phase, self.digest, self.message.to_value()],
        )

    @classmethod
    def decode(cls, raw: bytes) -> SignedSlot:
        f = record_fields(decode(raw), cls.TAG, RECORD_VERSION, 5)
        phase = as_str(f[2], "phase", max_size=32)
        if phase not in _PHASES:
            raise DecodeError(f"phase: unknown {phase!r}")
        return cls(
            as_int(f[0], "view"),
            as_int(f[1], "height"),
            phase,
            as_bytes(f[3], "digest", size=HASH_SIZE),
            SignedMessage.from_value(f[4]),
        )


@dataclass(frozen=True, slots=True)
class HardState:
    """Replaced as a whole whenever one of its fields changes."""

    view: int
    view_active: bool
    checkpoint: CheckpointProof
    #: My VIEW-CHANGE for ``view`` while the view is not active yet (resent after restart).
    view_change: SignedMessage | None
    #: The NEW-VIEW that started ``view`` (None for view 0 or while not active).
    new_view: SignedMessage | None

    TAG = "hard-state"

    def encode(self) -> bytes:
        return encode_record(
            self.TAG,
            RECORD_VERSION,
            [
                self.view,
                self.view_active,
                self.checkpoint.to_value(),
                None if self.view_change is None else self.view_change.to_value(),
                None if self.new_view is None else self.new_view.to_value(),
            ],
        )

    @classmethod
    def decode(cls, raw: bytes) -> HardState:
        f = record_fields(decode(raw), cls.TAG, RECORD_VERSION, 5)
        if not isinstance(f[1], bool):
            raise DecodeError("view_active: expected a boolean")
        return cls(
            as_int(f[0], "view"),
            f[1],
            CheckpointProof.from_value(f[2]),
            None if f[3] is None else SignedMessage.from_value(f[3]),
            None if f[4] is None else SignedMessage.from_value(f[4]),
        )


@dataclass(frozen=True, slots=True)
class PreparedRecord:
    """A prepared certificate held by this replica, and the block payload if it has it."""

    proof: PreparedProof
    payload: bytes

    TAG = "prepared-record"

    @property
    def height(self) -> int:
        return self.proof.header.height

    def encode(self) -> bytes:
        return encode_record(self.TAG, RECORD_VERSION, [self.proof.to_value(), self.payload])

    @classmethod
    def decode(cls, raw: bytes) -> PreparedRecord:
        f = record_fields(decode(raw), cls.TAG, RECORD_VERSION, 2)
        return cls(PreparedProof.from_value(f[0]), as_bytes(f[1], "payload"))


@dataclass(frozen=True, slots=True)
class PersistBatch:
    """Make all of this durable (ideally in one transaction) BEFORE sending any message."""

    hard_state: HardState | None
    signed: tuple[SignedSlot, ...]
    prepared: tuple[PreparedRecord, ...]


@dataclass(frozen=True, slots=True)
class PersistedState:
    """What the driver hands back to :meth:`Replica.restore` after a restart."""

    hard_state: HardState | None = None
    signed: tuple[SignedSlot, ...] = ()
    prepared: tuple[PreparedRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class CommittedHead:
    """The last committed block, from the block store (restart) or genesis (fresh start)."""

    height: int
    digest: bytes
    certificate: CommitProof | None
