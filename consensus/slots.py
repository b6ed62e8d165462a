"""The slot log of the current view: what each height holds until it commits.

* :class:`Slot` — one height: the primary's header, PREPAREs and COMMITs by sender (one vote
  per sender; a second one is a duplicate or an equivocation, and the first one stays),
  and whether it prepared.
* :class:`SlotLog` — the slots, the prepared certificates (which outlive a view: they go
  into our VIEW-CHANGE), the block payloads, the driver's verdicts on blocks and the
  validations asked of it.

House rules: the methods here are the only writers of these fields; they decide nothing
about the protocol (consensus/normal_case.py does) and never sign or send. Iteration
order never depends on hashing: dicts are keyed by ints or (height, digest) and every
list handed out is sorted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from consensus.messages import PreparedProof, PrePrepare, SignedMessage
from consensus.quorum import VoteResult
from consensus.records import Phase, PreparedRecord, SignedSlot

BlockKey = tuple[int, bytes]


@dataclass(frozen=True, slots=True)
class Verdict:
    """The driver's answer for one block; ``parent`` keeps the live set ancestor-closed."""

    ok: bool
    state_root: bytes
    parent: bytes
    #: Executing this block activated the next validator set: it is the last height of
    #: this epoch, and no block above it is validated, voted or proposed by this core.
    ends_epoch: bool = False


class Slot:
    """Everything about one height in the current view."""

    __slots__ = (
        "commits",
        "fixed_by_new_view",
        "header",
        "payload_requested",
        "pre_prepare",
        "prepared",
        "prepares",
        "validation_requested",
    )

    def __init__(self) -> None:
        self.header: PrePrepare | None = None
        #: The primary's signed header, without payload (payloads live in SlotLog.payloads).
        self.pre_prepare: SignedMessage | None = None
        #: The header was fixed by the NEW-VIEW: no other pre-prepare is accepted here.
        self.fixed_by_new_view = False
        self.prepares: dict[int, tuple[bytes, SignedMessage]] = {}
        self.commits: dict[int, tuple[bytes, bytes]] = {}
        self.prepared = False
        self.validation_requested = False
        self.payload_requested = False

    @property
    def digest(self) -> bytes | None:
        return None if self.header is None else self.header.digest

    def pre_prepared(self, header: PrePrepare, message: SignedMessage) -> None:
        """The primary's header (the payload is kept apart, in the log)."""
        self.header, self.pre_prepare = header, message.without_payload()

    def fix(self, header: PrePrepare, message: SignedMessage) -> None:
        """A header re-issued by the NEW-VIEW."""
        self.header, self.pre_prepare, self.fixed_by_new_view = header, message, True

    def mark_prepared(self) -> None:
        self.prepared = True

    def mark_payload_requested(self) -> None:
        self.payload_requested = True

    def forget_payload_request(self) -> None:
        """Ask peers for the payload again (retransmission)."""
        self.payload_requested = False

    def add_pre_prepare(self, header: PrePrepare, message: SignedMessage) -> VoteResult:
        """The primary's header; another header for this height is equivocation."""
        if self.header is not None:
            return VoteResult.DUPLICATE if self.header == header else VoteResult.EQUIVOCATION
        self.pre_prepared(header, message)
        return VoteResult.NEW

    def add_prepare(self, sender: int, digest: bytes, message: SignedMessage) -> VoteResult:
        known = self.prepares.get(sender)
        if known is None:
            self.prepares[sender] = (digest, message)
            return VoteResult.NEW
        return VoteResult.DUPLICATE if known[0] == digest else VoteResult.EQUIVOCATION

    def add_commit(self, sender: int, digest: bytes, signature: bytes) -> VoteResult:
        known = self.commits.get(sender)
        if known is None:
            self.commits[sender] = (digest, signature)
            return VoteResult.NEW
        return VoteResult.DUPLICATE if known[0] == digest else VoteResult.EQUIVOCATION

    def prepare_messages(self, digest: bytes, primary: int) -> list[SignedMessage]:
        """Matching PREPAREs from backups, in validator order."""
        return [m for s, (d, m) in sorted(self.prepares.items()) if d == digest and s != primary]

    def commit_votes(self, digest: bytes) -> list[tuple[int, bytes]]:
        """Matching COMMIT signatures, in validator order."""
        return [(s, sig) for s, (d, sig) in sorted(self.commits.items()) if d == digest]

    def commit_digests(self) -> list[bytes]:
        """Distinct digests with commit votes, in order of first vote by validator index."""
        seen: list[bytes] = []
        for _, (digest, _sig) in sorted(self.commits.items()):
            if digest not in seen:
                seen.append(digest)
        return seen

    def certified(self, quorum: int) -> bool:
        """q COMMITs for this slot's own header are in."""
        return self.header is not None and len(self.commit_votes(self.header.digest)) >= quorum


class SlotLog:
    """Slots of the current view, prepared certificates, payloads, verdicts, validations."""

    def __init__(self) -> None:
        self.slots: dict[int, Slot] = {}
        #: Our prepared certificates by height, above the last commit (all views).
        self.prepared: dict[int, PreparedProof] = {}
        self.payloads: dict[BlockKey, bytes] = {}
        self.verdicts: dict[BlockKey, Verdict] = {}
        #: (height, digest) -> (view asked in, parent digest)
        self.pending_validations: dict[BlockKey, tuple[int, bytes]] = {}

    # ------------------------------------------------------------------ slots

    def get(self, height: int) -> Slot | None:
        return self.slots.get(height)

    def open(self, height: int) -> Slot:
        """The slot at ``height``, created empty if needed."""
        slot = self.slots.get(height)
        if slot is None:
            slot = self.slots[height] = Slot()
        return slot

    def heights_above(self, height: int) -> list[int]:
        return [h for h in sorted(self.slots) if h > height]

    def in_flight(self, committed_height: int) -> list[int]:
        """Heights above the last commit with a header (in slot order)."""
        return [h for h, s in self.slots.items() if h > committed_height and s.header is not None]

    def top_pre_prepared(self, default: int) -> int:
        return max([h for h, s in self.slots.items() if s.header is not None], default=default)

    def any_certified_above(self, height: int, quorum: int) -> bool:
        return any(h > height and slot.certified(quorum) for h, slot in self.slots.items())

    # ------------------------------------------------------------------ payloads, verdicts

    def payload(self, height: int, digest: bytes) -> bytes | None:
        return self.payloads.get((height, digest))

    def has_payload(self, height: int, digest: bytes) -> bool:
        return (height, digest) in self.payloads

    def keep_payload(self, height: int, digest: bytes, payload: bytes) -> None:
        """A payload from a peer (the first one for a digest stays)."""
        self.payloads.setdefault((height, digest), payload)

    def store_payload(self, height: int, digest: bytes, payload: bytes) -> None:
        self.payloads[(height, digest)] = payload

    def verdict(self, height: int, digest: bytes) -> Verdict | None:
        return self.verdicts.get((height, digest))

    def record_verdict(self, height: int, digest: bytes, verdict: Verdict) -> None:
        self.verdicts[(height, digest)] = verdict

    def validation_asked(self, height: int, digest: bytes) -> tuple[int, bytes] | None:
        """(view asked in, parent digest) of an open validation request."""
        return self.pending_validations.get((height, digest))

    def ask_validation(self, height: int, digest: bytes, view: int, parent: bytes) -> None:
        self.pending_validations[(height, digest)] = (view, parent)

    def validation_answered(self, height: int, digest: bytes, verdict: Verdict) -> None:
        del self.pending_validations[(height, digest)]
        self.verdicts[(height, digest)] = verdict

    def add_prepared(self, height: int, proof: PreparedProof) -> None:
        self.prepared[height] = proof

    def prepared_above(self, height: int) -> tuple[PreparedProof, ...]:
        """Our prepared certificates above ``height``, in height order."""
        return tuple(self.prepared[h] for h in sorted(self.prepared) if h > height)

    def live_blocks(self) -> list[BlockKey]:
        return sorted(k for k, v in self.verdicts.items() if v.ok)

    # ------------------------------------------------------------------ collection

    def forget_committed(self, height: int) -> None:
        """``height`` committed: its certificate, payload and verdict are done with."""
        for h in [h for h in self.prepared if h <= height]:
            del self.prepared[h]
        for key in [k for k in self.payloads if k[0] <= height]:
            del self.payloads[key]
        for key in [k for k in self.verdicts if k[0] <= height]:
            del self.verdicts[key]

    def collect(self, stable_height: int) -> None:
        """A stable checkpoint: the log at or below it is garbage (§4.3). Verdicts above our
        own head stay even below the checkpoint: we still execute (and commit, by
        fetching) that chain, and live results must stay ancestor-closed."""
        for h in [h for h in self.slots if h <= stable_height]:
            del self.slots[h]
        for h in [h for h in self.prepared if h <= stable_height]:
            del self.prepared[h]
        for key in [k for k in self.payloads if k[0] <= stable_height]:
            del self.payloads[key]

    def leave_view(self) -> None:
        """The view's slots go; answers to its validation requests will be stale."""
        self.slots.clear()
        self.pending_validations.clear()

    def install(
        self,
        headers: Sequence[PrePrepare],
        messages: Sequence[SignedMessage],
        stable_height: int,
    ) -> None:
        """A new view's log: exactly the headers its NEW-VIEW re-issues."""
        self.slots.clear()
        for header, pp in zip(headers, messages, strict=True):
            if header.height <= stable_height:
                continue
            slot = Slot()
            slot.fix(header, pp)
            self.slots[header.height] = slot

    def enter_view(
        self,
        reissued: Iterable[PrePrepare],
        base_height: int,
        committed_digest_at: Callable[[int], bytes | None],
    ) -> None:
        """Keep only the payloads and verdicts the new view can still use: those of
        re-issued blocks and our prepared certificates, and the chain up to the base."""
        self.pending_validations.clear()  # answers to old-view requests are ignored
        keep = {(h.height, h.digest) for h in reissued} | {
            (p.header.height, p.header.digest) for p in self.prepared.values()
        }
        for key in [k for k in self.payloads if k not in keep]:
            del self.payloads[key]
        keep |= {k for k in self.verdicts if k[0] <= base_height}
        self._prune_verdicts(keep, committed_digest_at)

    def _prune_verdicts(
        self, keep: set[BlockKey], committed_digest_at: Callable[[int], bytes | None]
    ) -> None:
        """Drop verdicts outside ``keep``, and any whose parent is neither committed nor kept:
        the driver layers each execution result on its parent's, so the set of live results
        must stay closed under ancestors (see ``Replica.live_blocks``)."""
        kept: dict[BlockKey, Verdict] = {}
        for key in sorted(self.verdicts):
            result = self.verdicts[key]
            height = key[0]
            if key not in keep:
                continue
            if (
                committed_digest_at(height - 1) == result.parent
                or (height - 1, result.parent) in kept
            ):
                kept[key] = result
        self.verdicts = kept

    # ------------------------------------------------------------------ restart

    def restore_prepared(self, records: Iterable[PreparedRecord], floor: int) -> None:
        """Persisted prepared certificates above ``floor`` (the highest view per height)."""
        for rec in records:
            known = self.prepared.get(rec.height)
            if rec.height > floor and (known is None or rec.proof.header.view > known.header.view):
                self.prepared[rec.height] = rec.proof
                if rec.payload:
                    self.payloads[(rec.height, rec.proof.header.digest)] = rec.payload

    def restore_own_votes(
        self, records: Iterable[SignedSlot], view: int, stable_height: int, index: int
    ) -> None:
        """Our own signed PRE-PREPAREs, PREPAREs and COMMITs of the current view, back
        into their slots (``records`` in key order)."""
        for record in records:
            height, phase = record.height, record.phase
            if record.view != view or height <= stable_height:
                continue
            slot = self.open(height)
            if phase == Phase.PRE_PREPARE and slot.header is None:
                slot.pre_prepared(PrePrepare.decode(record.message.body), record.message)
                if record.message.payload:
                    self.payloads[(height, record.digest)] = record.message.payload
            elif phase == Phase.PREPARE:
                slot.add_prepare(index, record.digest, record.message)
            elif phase == Phase.COMMIT:
                slot.add_commit(index, record.digest, record.message.signature)

    def footprint(self) -> dict[str, int]:
        return {
            "slots": len(self.slots),
            "slot_votes": sum([len(s.prepares) + len(s.commits) for s in self.slots.values()]),
            "prepared": len(self.prepared),
            "payloads": len(self.payloads),
            "verdicts": len(self.verdicts),
            "pending_validations": len(self.pending_validations),
        }
