"""One PBFT replica as a pure state machine (Castro & Liskov, signed variant), etcd-raft style.

Theory of operation
-------------------
The replica never touches the network, the disk or a clock. A driver feeds it inputs and
acts on the :class:`~consensus.ready.Ready` each input returns:

Inputs (each returns a Ready):
    ``receive(raw)`` / ``step(message)``  a message from a peer (bytes or decoded envelope)
    ``tick()``                            called every ``config.tick_ms`` of wall time
    ``requests_pending(pending, oldest_waiting)``  the mempool changed: ``pending`` says
        there are requests that may go into a new block; ``oldest_waiting`` names the oldest
        uncommitted request (its hash) — the view-change timer runs while something waits,
        and restarts when the oldest one changes (so a censoring primary is replaced)
    ``propose(view, height, digest, parent_digest, payload, state_root)``  answer to a
        ProposalRequest: the block built and executed on ``parent_digest``
    ``skip_proposal(view, height)``      answer to a ProposalRequest: nothing to propose
    ``proposal_validated(view, height, digest, ok, state_root)``  answer to a ValidateRequest
    ``committed_block_from_peer(height, digest, parent_digest, payload, certificate)``
        a block fetched after a FetchRequest, with its commit certificate
    ``start()``                           once, right after construction or ``restore``

Driver contract — handle every Ready in this order:
    1. ``persist``: make it durable (fsync; one transaction is best) — the hard state
       replaces the previous one, signed slots and prepared records are upserted by key.
       Nothing of this Ready may leave the process before this is done.
    2. ``committed``: write each block with its commit certificate, in order (same
       transaction as 1 is best), then drop the execution results of other blocks at those
       heights.
    3. ``messages``: send (``to=None``: every other validator). Losing them is fine.
    4. ``validate``: decode + execute each block on an overlay of its parent, check that
       the payload hashes to the digest, answer ``proposal_validated`` (asynchronously is
       fine). Keep the result of every ok block whose height is above the last commit.
    5. ``propose``: build a block at that height on that parent from pending requests not
       already in its ancestors, execute it, answer ``propose`` or ``skip_proposal``.
    6. ``fetch``: fetch those committed blocks and certificates from any peers, feed them in
       height order to ``committed_block_from_peer``; retries are yours, the replica also
       repeats the request while it stays behind.
Restart: ``Replica.restore(config, key, persisted, head)`` with everything persisted and the
last committed block (height, digest, certificate) from the block store.

House rules: a peer's bad message raises :class:`Rejected` inside, is counted in
``statistics()`` under ``rejected.<reason>`` and changes nothing; the driver's mistakes raise
:class:`DriverMisuse`; our own broken invariants are ``assert``s. No clock, no randomness,
no set iteration, no floats. Message intake and the driver inputs live here; the normal
case in consensus/normal_case.py; checkpoints, catch-up and timers in
consensus/housekeeping.py; view changes in consensus/replica_views.py; diagnostics in
consensus/diagnostics.py.
"""

from __future__ import annotations

from consensus import diagnostics, housekeeping, intake, normal_case, replica_views
from consensus.certificates import (
    Rejected,
    genesis_checkpoint,
    verify_commit_proof,
)
from consensus.config import ConfigError, ReplicaConfig
from consensus.limits import (  # re-exported: the caps are part of the replica's contract
    MAX_CATCHUP_BLOCKS,
    MAX_VIEW_CHANGES_PER_SENDER,
)
from consensus.log import (
    DUPLICATE,
    EQUIVOCATION,
    CatchupBlock,
    CheckpointVotes,
    Slot,
    Verdict,
    ViewChangeVotes,
)
from consensus.messages import (
    Body,
    CheckpointProof,
    CommitProof,
    PreparedProof,
    PrePrepare,
    SignedMessage,
    sign,
)
from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    Outbound,
    ProposalRequest,
    Ready,
    ReplicaStatus,
    ValidateRequest,
    ViewChangeNote,
    ViewChangeReason,
)
from consensus.records import (
    CommittedHead,
    HardState,
    PersistBatch,
    PersistedState,
    Phase,
    PreparedRecord,
    SignedSlot,
)
from crypto.encoding import DecodeError
from crypto.hashing import HASH_SIZE, sha256
from crypto.keys import PrivateKey


class DriverMisuse(RuntimeError):
    """The driver broke the contract (e.g. proposed a payload that does not hash to its digest)."""


class Replica:
    """A PBFT replica. See the module docstring for the driver contract."""

    def __init__(self, config: ReplicaConfig, key: PrivateKey) -> None:
        if key.public_key not in config.validators:
            raise ConfigError("this key is not one of the genesis validators")
        self.config = config
        self.key = key
        self.index = config.validators.index(key.public_key)
        # --- view
        self.view = 0
        self.active = True
        self.consecutive_view_changes = 0
        #: Ticks without a commit while work waits (reset by every commit): a silent or
        #: stuck primary. Its timeout doubles with each view change that made no progress.
        self.vc_timer = 0
        #: Ticks the same includable request has been the oldest one waiting (reset when
        #: it changes): a primary that commits blocks but leaves that request out.
        self.censor_timer = 0
        #: Heights at or below this are decided for the whole current view (the NEW-VIEW's
        #: base): nothing there is pre-prepared, prepared or committed again in this view.
        self.view_base = config.genesis_height
        self.my_view_change: SignedMessage | None = None
        self.new_view_message: SignedMessage | None = None
        #: Valid VIEW-CHANGEs for views above ours (or ours while it is not active).
        self.view_changes = ViewChangeVotes(MAX_VIEW_CHANGES_PER_SENDER)
        # --- committed chain
        self.committed_height = config.genesis_height
        self.committed_digest = config.genesis_digest
        self.commit_proof: CommitProof | None = None
        self.committed_digests: dict[int, bytes] = {config.genesis_height: config.genesis_digest}
        self.stable: CheckpointProof = genesis_checkpoint(config)
        self.checkpoint_votes = CheckpointVotes()
        # --- the current view's log, prepared certificates, payloads and verdicts
        self.slots: dict[int, Slot] = {}
        self.prepared: dict[int, PreparedProof] = {}
        self.payloads: dict[tuple[int, bytes], bytes] = {}
        self.verdicts: dict[tuple[int, bytes], Verdict] = {}
        #: (height, digest) -> (view asked in, parent digest)
        self.pending_validations: dict[tuple[int, bytes], tuple[int, bytes]] = {}
        self.signed: dict[tuple[int, int, str], SignedSlot] = {}
        # --- requests and proposals
        self.pending = False
        self.oldest_waiting: bytes | None = None
        self.proposal_outstanding: ProposalRequest | None = None
        self.proposal_skipped = False
        # --- catch-up and liveness helpers
        self.catchup: dict[int, CatchupBlock] = {}
        self.catchup_target = config.genesis_height
        self.peer_claims: dict[int, int] = {}
        self.fetch_timer = 0
        self.fetch_outstanding = False
        self.retransmit_timer = 0
        self.progress_since_retransmit = False
        self.status_timer = 0
        self.ticks = 0
        self.ticks_since_commit = 0
        self.new_view_sent_at: dict[int, int] = {}
        self.checkpoint_sent_at: dict[int, int] = {}
        self.block_replies: dict[int, int] = {}
        self.buffered: dict[int, list[SignedMessage]] = {}
        self.buffered_bytes: dict[int, int] = {}
        # --- output under construction, and counters
        self.hard_dirty = False
        self.out_signed: list[SignedSlot] = []
        self.out_prepared: list[PreparedRecord] = []
        self.out_messages: list[Outbound] = []
        self.out_committed: list[CommittedBlock] = []
        self.out_validate: list[ValidateRequest] = []
        self.out_propose: ProposalRequest | None = None
        self.out_fetch: FetchRequest | None = None
        self.out_halt: str | None = None
        self.out_notes: list[ViewChangeNote] = []
        self.stats: dict[str, int] = {}

    # ================================================================== construction

    @classmethod
    def restore(
        cls, config: ReplicaConfig, key: PrivateKey, persisted: PersistedState, head: CommittedHead
    ) -> Replica:
        """A replica resuming from what it persisted and the block store's last block."""
        r = cls(config, key)
        if head.height > config.genesis_height and head.certificate is None:
            raise DriverMisuse("a committed head above genesis needs its commit certificate")
        r.committed_height, r.committed_digest, r.commit_proof = (
            head.height,
            head.digest,
            head.certificate,
        )
        r.committed_digests = {head.height: head.digest}
        hard = persisted.hard_state
        if hard is not None:
            r.view, r.active = hard.view, hard.view_active
            r.stable = hard.checkpoint
            r.my_view_change = None if hard.view_active else hard.view_change
            r.new_view_message = hard.new_view if hard.view_active else None
        for record in persisted.signed:
            stale = record.view < r.view or (
                record.phase in (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT)
                and record.height <= r.stable.height
            )
            if not stale:
                r.signed[record.key] = record
        floor = max(head.height, r.stable.height)
        for rec in persisted.prepared:
            known = r.prepared.get(rec.height)
            if rec.height > floor and (known is None or rec.proof.header.view > known.header.view):
                r.prepared[rec.height] = rec.proof
                if rec.payload:
                    r.payloads[(rec.height, rec.proof.header.digest)] = rec.payload
        r.catchup_target = max(r.catchup_target, r.stable.height)
        replica_views.restore_view(r)
        r.hard_dirty = True
        return r

    def start(self) -> Ready:
        """First output after construction or restore: persist, announce, resend in-flight votes."""
        self.hard_dirty = True
        housekeeping.broadcast_status(self)
        housekeeping.retransmit(self)
        normal_case.advance(self)
        return self._flush()

    # ================================================================== inputs

    def receive(self, raw: bytes) -> Ready:
        """A message from a peer, as bytes off the wire."""
        try:
            message = SignedMessage.decode(raw)
        except DecodeError:
            self.count("rejected.malformed")
            return self._flush()
        return self.step(message)

    def step(self, message: SignedMessage) -> Ready:
        """A decoded message from a peer. Invalid ones are counted and change nothing."""
        try:
            intake.step(self, message)
        except Rejected as exc:
            self.count(f"rejected.{exc.reason}")
        return self._flush()

    def tick(self) -> Ready:
        self.ticks += 1
        self.ticks_since_commit += 1
        self.block_replies.clear()
        self.status_timer += 1
        if self.status_timer >= self.config.status_ticks:
            self.status_timer = 0
            housekeeping.broadcast_status(self)
        self.retransmit_timer += 1
        if self.retransmit_timer >= self.config.retransmit_ticks:
            self.retransmit_timer = 0
            if not self.progress_since_retransmit:
                housekeeping.retransmit(self)
            self.progress_since_retransmit = False
        self.fetch_timer += 1
        if self.fetch_outstanding and self.fetch_timer >= 2 * self.config.retransmit_ticks:
            self.fetch_outstanding = False
        housekeeping.view_change_timer(self)
        # Re-drive everything once per tick: work that waited on an answer which came back
        # stale (a view change in between) is asked again here, whatever else happens.
        normal_case.advance(self)
        return self._flush()

    def requests_pending(self, pending: bool, oldest_waiting: bytes | None = None) -> Ready:
        """The mempool changed. ``pending``: a request a correct primary could include in
        the next block exists (its nonce is its sender's next committed one); requests that
        cannot be included yet (nonce gaps) must not count, or every primary looks silent.
        ``oldest_waiting``: the longest-waiting such request, watched by the censorship timer."""
        self.pending = pending
        if oldest_waiting != self.oldest_waiting:
            self.oldest_waiting = oldest_waiting
            self.censor_timer = 0
        if pending:
            self.proposal_skipped = False
        else:
            self.proposal_outstanding = None
        normal_case.advance(self)
        return self._flush()

    def propose(
        self,
        view: int,
        height: int,
        digest: bytes,
        parent_digest: bytes,
        payload: bytes,
        state_root: bytes,
    ) -> Ready:
        request = self.proposal_outstanding
        if (
            request != ProposalRequest(view, height, parent_digest)
            or not self.active
            or height <= max(self.stable.height, self.view_base)
        ):
            # Superseded (a view change, a withdrawal) while the driver was building it.
            self.count("stale_proposal")
            return self._flush()
        if (
            len(payload) > self.config.max_block_bytes
            or self.config.block_digest(payload) != digest
        ):
            raise DriverMisuse("proposed payload is oversized or does not hash to its digest")
        if len(state_root) != HASH_SIZE:
            raise DriverMisuse("state_root must be 32 bytes")
        self.proposal_outstanding = None
        header = PrePrepare(view, height, digest, parent_digest)
        message = self.sign_slot(view, height, Phase.PRE_PREPARE, digest, header, payload)
        if message is not None:
            slot = self.slots.setdefault(height, Slot())
            if slot.header is None:
                slot.header, slot.pre_prepare = header, message.without_payload()
                self.payloads[(height, digest)] = payload
                self.verdicts[(height, digest)] = Verdict(True, state_root, parent_digest)
                self.send(None, message)
        normal_case.advance(self)
        return self._flush()

    def skip_proposal(self, view: int, height: int) -> Ready:
        request = self.proposal_outstanding
        if request is not None and (request.view, request.height) == (view, height):
            self.proposal_outstanding = None
            self.proposal_skipped = True
        return self._flush()

    def proposal_validated(
        self, view: int, height: int, digest: bytes, ok: bool, state_root: bytes | None
    ) -> Ready:
        key = (height, digest)
        pending = self.pending_validations.get(key)
        if pending is None or pending[0] != view:
            # Asked in a view we have left (its parent's state may be gone): ask again.
            self.count("stale_verdict")
            return self._flush()
        if ok and (state_root is None or len(state_root) != HASH_SIZE):
            raise DriverMisuse("an ok verdict needs the 32-byte state root")
        del self.pending_validations[key]
        root = state_root if ok and state_root is not None else bytes(HASH_SIZE)
        self.verdicts[key] = Verdict(ok, root, pending[1])
        if not ok:
            self.count("invalid_proposal")
        normal_case.advance(self)
        return self._flush()

    def committed_block_from_peer(
        self,
        height: int,
        digest: bytes,
        parent_digest: bytes,
        payload: bytes,
        certificate: CommitProof,
    ) -> Ready:
        """A certified block fetched from a peer; verified here before anything else."""
        try:
            if height <= self.committed_height or height in self.catchup:
                self.count("catchup.stale")
                return self._flush()
            if height > self.committed_height + MAX_CATCHUP_BLOCKS:
                raise Rejected("catchup_too_far", f"height {height}")
            if (certificate.height, certificate.digest) != (height, digest):
                raise Rejected("catchup_certificate_mismatch")
            if (
                len(payload) > self.config.max_block_bytes
                or self.config.block_digest(payload) != digest
            ):
                raise Rejected("catchup_bad_payload")
            verify_commit_proof(self.config, certificate)
        except Rejected as exc:
            self.count(f"rejected.{exc.reason}")
            return self._flush()
        self.catchup[height] = CatchupBlock(digest, parent_digest, payload, certificate)
        normal_case.advance(self)
        return self._flush()

    # ================================================================== queries

    def statistics(self) -> dict[str, int]:
        return dict(sorted(self.stats.items()))

    def status(self) -> ReplicaStatus:
        return diagnostics.replica_status(self)

    def live_blocks(self) -> list[tuple[int, bytes]]:
        """(height, digest) of uncommitted blocks whose execution results the replica may
        still ask the driver to build on; the driver may drop any other overlay."""
        return sorted(k for k, v in self.verdicts.items() if v.ok)

    def payload_for(self, height: int, digest: bytes) -> bytes | None:
        """The payload of an uncommitted block this replica holds (drivers may serve it)."""
        return self.payloads.get((height, digest))

    def memory_footprint(self) -> dict[str, int]:
        """Sizes of every growing structure, for the bounded-memory checks."""
        return {
            "slots": len(self.slots),
            "slot_votes": sum(len(s.prepares) + len(s.commits) for s in self.slots.values()),
            "prepared": len(self.prepared),
            "payloads": len(self.payloads),
            "verdicts": len(self.verdicts),
            "pending_validations": len(self.pending_validations),
            "signed": len(self.signed),
            "checkpoint_votes": self.checkpoint_votes.size(),
            "view_changes": self.view_changes.size(),
            "buffered": sum(len(b) for b in self.buffered.values()),
            "catchup": len(self.catchup),
            "committed_digests": len(self.committed_digests),
        }

    @property
    def primary(self) -> int:
        return self.config.primary(self.view)

    # ================================================================== signing and output
    def count_vote(self, result: str, kind: str) -> None:
        if result == EQUIVOCATION:
            self.count(f"equivocation.{kind}")
        elif result == DUPLICATE:
            self.count(f"duplicate.{kind}")

    def sign_slot(
        self, view: int, height: int, phase: Phase, digest: bytes, body: Body, payload: bytes = b""
    ) -> SignedMessage | None:
        """Sign through the double-sign guard: one digest per (view, height, phase), ever."""
        known = self.signed.get((view, height, phase))
        if known is not None:
            if known.digest != digest:
                self.count("guard.refused_conflicting_signature")
                return None
            return known.message
        message = sign(self.key, self.config.chain_id, self.index, body, payload)
        record = SignedSlot(view, height, phase, digest, message)
        self.signed[record.key] = record
        self.out_signed.append(record)
        return message

    def sign_once(self, view: int, phase: Phase, body: Body) -> SignedMessage:
        """Sign a per-view message (VIEW-CHANGE, NEW-VIEW) through the guard, or reuse it."""
        known = self.signed.get((view, 0, phase))
        if known is not None:
            return known.message
        message = sign(self.key, self.config.chain_id, self.index, body)
        record = SignedSlot(view, 0, phase, sha256(message.body), message)
        self.signed[record.key] = record
        self.out_signed.append(record)
        return message

    def hard_state(self) -> HardState:
        return HardState(
            self.view, self.active, self.stable, self.my_view_change, self.new_view_message
        )

    def send(self, to: int | None, message: SignedMessage) -> None:
        self.out_messages.append(Outbound(to, message))

    def note(self, view: int, reason: ViewChangeReason, detail: str) -> None:
        self.out_notes.append(ViewChangeNote(view, reason, detail))
        self.count(f"view_change.{reason.value}")

    def count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def _flush(self) -> Ready:
        persist = None
        if self.hard_dirty or self.out_signed or self.out_prepared:
            persist = PersistBatch(
                self.hard_state() if self.hard_dirty else None,
                tuple(self.out_signed),
                tuple(self.out_prepared),
            )
        ready = Ready(
            persist,
            tuple(self.out_messages),
            tuple(self.out_committed),
            tuple(self.out_validate),
            self.out_propose,
            self.out_fetch,
            self.out_halt,
            tuple(self.out_notes),
        )
        self.hard_dirty = False
        self.out_signed, self.out_prepared, self.out_messages = [], [], []
        self.out_committed, self.out_validate = [], []
        self.out_propose, self.out_fetch, self.out_halt = None, None, None
        self.out_notes = []
        return ready
