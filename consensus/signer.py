"""The replica's key and its double-sign guard: one digest per (view, height, phase), ever.

Every vote the replica signs (PRE-PREPARE, PREPARE, COMMIT, VIEW-CHANGE, NEW-VIEW) goes
through the guard, which remembers what was signed and has the driver persist that record
before the message can leave; after a restart the records come back and the replica can
only repeat itself. CHECKPOINT, STATUS and block messages are not votes in a view and are
signed directly. The records of views below the current one, and of heights at or below
the stable checkpoint, can never matter again and are forgotten.

House rules: the only holder of the private key; records are never rewritten with another
digest; no clock or randomness (Ed25519 signatures are deterministic).
"""

from __future__ import annotations

from collections.abc import Iterable

from consensus.config import ReplicaConfig
from consensus.messages import Body, SignedMessage, sign
from consensus.outbox import Outbox
from consensus.records import Phase, SignedSlot
from crypto.hashing import sha256
from crypto.keys import PrivateKey

GuardKey = tuple[int, int, str]


class Signer:
    def __init__(self, config: ReplicaConfig, key: PrivateKey, index: int, out: Outbox) -> None:
        self._config = config
        self._key = key
        #: Our validator index (the sender of everything we sign).
        self.index = index
        self._out = out
        #: (view, height, phase) -> what this replica signed there.
        self.signed: dict[GuardKey, SignedSlot] = {}

    def sign(self, body: Body, payload: bytes = b"") -> SignedMessage:
        """Sign a message that is not a vote in a view (no guard record)."""
        return sign(self._key, self._config.chain_id, self.index, body, payload)

    def sign_slot(
        self, view: int, height: int, phase: Phase, digest: bytes, body: Body, payload: bytes = b""
    ) -> SignedMessage | None:
        """Sign through the guard; None (and counted) if a different digest was signed there."""
        known = self.signed.get((view, height, phase))
        if known is not None:
            if known.digest != digest:
                self._out.count("guard.refused_conflicting_signature")
                return None
            return known.message
        message = self.sign(body, payload)
        self._record(SignedSlot(view, height, phase, digest, message))
        return message

    def sign_once(self, view: int, phase: Phase, body: Body) -> SignedMessage:
        """Sign a per-view message (VIEW-CHANGE, NEW-VIEW) through the guard, or reuse it."""
        known = self.signed.get((view, 0, phase))
        if known is not None:
            return known.message
        message = self.sign(body)
        self._record(SignedSlot(view, 0, phase, sha256(message.body), message))
        return message

    def _record(self, record: SignedSlot) -> None:
        self.signed[record.key] = record
        self._out.persist_signed(record)

    # ------------------------------------------------------------------ queries

    def signed_at(self, view: int, height: int, phase: Phase) -> SignedSlot | None:
        return self.signed.get((view, height, phase))

    def records(self) -> list[tuple[GuardKey, SignedSlot]]:
        """Every record, in key order."""
        return sorted(self.signed.items())

    # ------------------------------------------------------------------ life cycle

    def restore(self, records: Iterable[SignedSlot], view: int, stable_height: int) -> None:
        """Persisted records back after a restart, without those that cannot matter."""
        for record in records:
            stale = record.view < view or (
                record.phase in (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT)
                and record.height <= stable_height
            )
            if not stale:
                self.signed[record.key] = record

    def forget_views_below(self, view: int) -> None:
        """Views only grow: records of lower views can never matter again."""
        for key in [k for k in self.signed if k[0] < view]:
            del self.signed[key]

    def collect(self, stable_height: int) -> None:
        """Slots at or below a stable checkpoint are never signed again."""
        for key in [k for k, s in self.signed.items() if 0 < s.height <= stable_height]:
            del self.signed[key]
