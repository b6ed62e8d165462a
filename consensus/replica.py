"""One PBFT replica as a pure state machine (Castro & Liskov, signed variant), etcd-raft style.

Theory of operation
-------------------
The replica never touches the network, the disk or a clock. A driver feeds it inputs and
acts on the :class:`~consensus.ready.Ready` each input returns:

Inputs (each returns a Ready):
    ``receive(raw)`` / ``step(message)``  a message from a peer (bytes or decoded envelope)
    ``tick()``                            called every ``config.tick_ms`` of wall time
    ``requests_pending(pending, oldest_waiting)``  the mempool changed: ``pending`` says
        there are requests a correct primary could put in the next block (never ones behind
        a nonce gap); ``oldest_waiting`` names the oldest of them — the no-progress timer
        runs while something waits and restarts on every commit; the censorship timer
        restarts when the oldest one changes (so a censoring primary is replaced)
    ``propose(view, height, digest, parent_digest, payload, state_root)``  answer to a
        ProposalRequest: the block built and executed on ``parent_digest``
    ``skip_proposal(view, height)``      answer to a ProposalRequest: nothing to propose
    ``proposal_validated(view, height, digest, ok, state_root)``  answer to a ValidateRequest
    ``committed_block_from_peer(height, digest, parent_digest, payload, certificate)``
        a block fetched after a FetchRequest, with its commit certificate
    ``start()``                           once, right after construction or ``restore``

Driver contract — handle every Ready in this order (consensus/testing.py is the reference
driver that does exactly this):
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
    ``halt`` set: stop (a quorum-certified block does not validate here: our state is bad).
Restart: ``Replica.restore(config, key, persisted, head)`` with everything persisted and the
last committed block (height, digest, certificate) from the block store.

The rooms
---------
This file holds the inputs, the routing of peer messages (by body type) and the flush.
The parts own their state and are its only writers: view.py (view, activity, timers,
backoff), slots.py (the slot log), committed.py (the committed head), checkpoints.py
(stable checkpoint, watermarks, garbage collection), catchup.py (targets, claims,
fetched blocks), proposals.py (the mempool's news, the proposal asked for), signer.py
(the key and the double-sign guard), housekeeping.py (tick counters, STATUS,
retransmission, serving peers), outbox.py (the Ready under construction). The protocol's
decisions are in normal_case.py (§4.2) and view_changes.py (§4.4); intake.py checks every
peer message; diagnostics.py explains what a replica waits for. No part imports this file.

House rules: a peer's bad message raises :class:`Rejected` inside, is counted in
``statistics()`` under ``rejected.<reason>`` and changes nothing; the driver's mistakes raise
:class:`DriverMisuse`; our own broken invariants are ``assert``s. No clock, no randomness,
no set iteration, no floats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

from consensus import intake
from consensus.catchup import Catchup, CatchupBlock
from consensus.certificates import Rejected, signature_valid
from consensus.checkpoints import Checkpoints
from consensus.committed import CommittedChain
from consensus.config import ConfigError, ReplicaConfig
from consensus.diagnostics import Parts, replica_status
from consensus.housekeeping import Housekeeping
from consensus.intake import FutureBuffer
from consensus.messages import (
    BlockReply,
    BlockRequest,
    Body,
    Checkpoint,
    CheckpointProof,
    Commit,
    CommitProof,
    Kind,
    NewView,
    Prepare,
    PrePrepare,
    SignedMessage,
    Status,
    ViewChange,
)
from consensus.normal_case import NormalCase
from consensus.outbox import Outbox
from consensus.proposals import Proposals
from consensus.ready import DriverMisuse, ProposalRequest, Ready, ReplicaStatus
from consensus.records import CommittedHead, HardState, PersistedState, Phase, SignedSlot
from consensus.signer import GuardKey, Signer
from consensus.slots import BlockKey, Slot, SlotLog, Verdict
from consensus.view import ViewChangeVotes, ViewState
from consensus.view_changes import ViewChanges
from consensus.viewchange import NewViewPlan
from crypto.encoding import DecodeError
from crypto.keys import PrivateKey

__all__ = ["DriverMisuse", "Rejected", "Replica"]

B = TypeVar("B", bound=Body)
#: Statistics key of an accepted message, by kind (intake admits known kinds only).
_ACCEPTED: Final = {kind.value: f"accepted.{kind.value}" for kind in Kind}
Handler = Callable[[SignedMessage, Any], None]


def _route(body_type: type[B], handler: Callable[[SignedMessage, B], None]) -> tuple[type, Handler]:
    """One row of the routing table; the type checker sees that the handler takes that body."""
    return body_type, handler


class Replica:
    """A PBFT replica. See the module docstring for the driver contract."""

    def __init__(self, config: ReplicaConfig, key: PrivateKey) -> None:
        if key.public_key not in config.validators:
            raise ConfigError("this key is not one of the genesis validators")
        self.config = config
        self.index = config.validators.index(key.public_key)
        self.out = Outbox()
        self.signer = Signer(config, key, self.index, self.out)
        self.view_state = ViewState(config.genesis_height)
        self.log = SlotLog()
        self.chain = CommittedChain(config.genesis_height, config.genesis_digest)
        self.catchup = Catchup(config, self.index, self.out)
        self.checkpoints = Checkpoints(
            config, self.out, self.log, self.chain, self.signer, self.catchup
        )
        self.proposals = Proposals()
        self.future = FutureBuffer()
        parts = (self.view_state, self.log, self.chain, self.checkpoints, self.catchup)
        self.housekeeping = Housekeeping(config, self.out, self.signer, *parts)
        self.normal = NormalCase(
            config, self.out, self.signer, *parts, self.proposals, self.housekeeping
        )
        self.changes = ViewChanges(config, self.out, self.signer, *parts, self.proposals)
        self._handlers: dict[type, Handler] = dict(
            [
                _route(PrePrepare, self._on_pre_prepare),
                _route(Prepare, self._on_prepare),
                _route(Commit, self._on_commit),
                _route(Checkpoint, self._on_checkpoint),
                _route(Status, self.housekeeping.on_status),
                _route(BlockRequest, self.housekeeping.on_block_request),
                _route(BlockReply, self._on_block),
                _route(ViewChange, self._on_view_change),
                _route(NewView, self._on_new_view),
            ]
        )

    # ================================================================== construction

    @classmethod
    def restore(
        cls, config: ReplicaConfig, key: PrivateKey, persisted: PersistedState, head: CommittedHead
    ) -> Replica:
        """A replica resuming from what it persisted and the block store's last block."""
        r = cls(config, key)
        if head.height > config.genesis_height and head.certificate is None:
            raise DriverMisuse("a committed head above genesis needs its commit certificate")
        r.chain.resume(head)
        hard = persisted.hard_state
        if hard is not None:
            r.view_state.resume(hard)
            r.checkpoints.resume(hard.checkpoint)
        stable_height = r.checkpoints.low
        r.signer.restore(persisted.signed, r.view_state.view, stable_height)
        r.log.restore_prepared(persisted.prepared, max(head.height, stable_height))
        r.catchup.resume(stable_height)
        r.changes.restore()
        r.out.persist_hard_state()
        return r

    def start(self) -> Ready:
        """First output after construction or restore: persist, announce, resend in-flight votes."""
        self.out.persist_hard_state()
        self.housekeeping.broadcast_status()
        self.housekeeping.retransmit()
        self.normal.advance()
        return self._flush()

    # ================================================================== inputs

    def receive(self, raw: bytes) -> Ready:
        """A message from a peer, as bytes off the wire."""
        try:
            message = SignedMessage.decode(raw)
        except DecodeError:
            self.out.count("rejected.malformed")
            return self._flush()
        return self.step(message)

    def step(self, message: SignedMessage) -> Ready:
        """A decoded message from a peer. Invalid ones are counted and change nothing."""
        try:
            self._step(message)
        except Rejected as exc:
            self.out.count(f"rejected.{exc.reason}")
        return self._flush()

    def tick(self) -> Ready:
        self.housekeeping.on_tick()
        self.catchup.on_tick()
        timeout = self.view_state.on_tick(
            self.config,
            self.changes.votes,
            requests_pending=self.proposals.pending,
            oldest_waiting=self.proposals.oldest_waiting,
            in_flight=self.log.in_flight(self.chain.height),
            committed_height=self.chain.height,
            trailing=self.normal.trailing_a_live_view,
        )
        if timeout is not None:
            self.out.note(timeout.view, timeout.reason, timeout.detail)
            self._leave_view(timeout.view)
        # Re-drive everything once per tick: work that waited on an answer which came back
        # stale (a view change in between) is asked again here, whatever else happens.
        self.normal.advance()
        return self._flush()

    def requests_pending(self, pending: bool, oldest_waiting: bytes | None = None) -> Ready:
        """The mempool changed. ``pending``: a request a correct primary could include in
        the next block exists (its nonce is its sender's next committed one); requests that
        cannot be included yet (nonce gaps) must not count, or every primary looks silent.
        ``oldest_waiting``: the longest-waiting such request, watched by the censorship timer."""
        if self.proposals.mempool_changed(pending, oldest_waiting):
            self.view_state.oldest_request_changed()
        self.normal.advance()
        return self._flush()

    @property
    def epoch_over(self) -> bool:
        """The last committed block ended this epoch: the driver starts the next epoch's
        replica on it (genesis_height = that height) and drops this one."""
        return self.chain.ends_epoch

    def propose(
        self,
        view: int,
        height: int,
        digest: bytes,
        parent_digest: bytes,
        payload: bytes,
        state_root: bytes,
        ends_epoch: bool = False,
    ) -> Ready:
        """The driver's proposal; ``ends_epoch``: executing it activated the next validator
        set (the epoch rule: nothing above it is proposed, validated or voted here)."""
        self.normal.propose(view, height, digest, parent_digest, payload, state_root, ends_epoch)
        return self._flush()

    def skip_proposal(self, view: int, height: int) -> Ready:
        self.proposals.skip(view, height)
        return self._flush()

    def proposal_validated(
        self,
        view: int,
        height: int,
        digest: bytes,
        ok: bool,
        state_root: bytes | None,
        ends_epoch: bool = False,
    ) -> Ready:
        self.normal.validated(view, height, digest, ok, state_root, ends_epoch)
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
            queued = self.catchup.receive(
                height, digest, parent_digest, payload, certificate, self.chain.height
            )
        except Rejected as exc:
            self.out.count(f"rejected.{exc.reason}")
            return self._flush()
        if queued:
            self.normal.advance()
        return self._flush()

    # ================================================================== routing

    def _step(self, message: SignedMessage) -> None:
        """Check, then hand the typed body to its handler. Raises Rejected."""
        try:
            body = intake.check(
                self.config,
                self.index,
                message,
                self.view_state,
                self.checkpoints.low,
                self.chain.height,
            )
        except intake.AboveWindow as exc:
            if signature_valid(self.config, message):
                self.catchup.note_claim(message.sender, exc.claimed_height)
            raise
        self._handlers[type(body)](message, body)
        self.out.count(_ACCEPTED[message.kind])

    def _held_for_later(self, message: SignedMessage, view: int) -> bool:
        """Votes for a view we are not active in yet wait until we are."""
        if view > self.view_state.view or not self.view_state.active:
            self.future.add(message)
            self.out.count("buffered")
            return True
        return False

    def _replay_buffered(self) -> None:
        """Process buffered messages of the view just entered; keep later views' ones."""
        for message in self.future.take():
            try:
                self._step(message)
            except Rejected as exc:
                self.out.count(f"rejected.{exc.reason}")

    def _on_pre_prepare(self, message: SignedMessage, header: PrePrepare) -> None:
        if not self._held_for_later(message, header.view):
            self.normal.on_pre_prepare(message, header)
            self.normal.advance()

    def _on_prepare(self, message: SignedMessage, vote: Prepare) -> None:
        if not self._held_for_later(message, vote.view):
            self.normal.on_prepare(message, vote)
            self.normal.advance()

    def _on_commit(self, message: SignedMessage, vote: Commit) -> None:
        if not self._held_for_later(message, vote.view):
            self.normal.on_commit(message, vote)
            self.normal.advance()

    def _on_block(self, message: SignedMessage, reply: BlockReply) -> None:
        if self.normal.on_block(message, reply):
            self.normal.advance()

    def _on_checkpoint(self, message: SignedMessage, body: Checkpoint) -> None:
        if body.height <= self.checkpoints.low:
            self.out.count("stale_checkpoint")
        elif self.checkpoints.record(message, body):
            self.normal.advance()

    def _on_view_change(self, message: SignedMessage, vc: ViewChange) -> None:
        if not self.changes.on_view_change(message, vc):
            return
        target = self.changes.join_target()
        if target is not None:
            self._leave_view(target)
        self._maybe_send_new_view()

    def _on_new_view(self, message: SignedMessage, nv: NewView) -> None:
        plan = self.changes.on_new_view(message, nv)
        if plan is not None:
            self._enter_view(plan, message)

    # ------------------------------------------------------------------ view transitions

    def _leave_view(self, new_view: int) -> None:
        self.changes.leave(new_view)
        self._replay_buffered()
        self._maybe_send_new_view()

    def _maybe_send_new_view(self) -> None:
        due = self.changes.new_view_due()
        if due is not None:
            self._enter_view(*due)

    def _enter_view(self, plan: NewViewPlan, message: SignedMessage) -> None:
        self.changes.enter(plan, message)
        self._replay_buffered()
        self.normal.advance()

    # ================================================================== queries

    def statistics(self) -> dict[str, int]:
        return dict(sorted(self.out.stats.items()))

    def status(self) -> ReplicaStatus:
        parts = Parts(
            self.config,
            self.index,
            self.view_state,
            self.changes.votes,
            self.log,
            self.chain,
            self.checkpoints.low,
            self.catchup,
            self.proposals,
        )
        return replica_status(parts, self.statistics())

    def live_blocks(self) -> list[tuple[int, bytes]]:
        """(height, digest) of uncommitted blocks whose execution results the replica may
        still ask the driver to build on; the driver may drop any other overlay."""
        return self.log.live_blocks()

    def fetched_block(self, height: int) -> CatchupBlock | None:
        """The certified block from catch-up waiting at ``height`` (its certificate verified
        on arrival), if any: a driver may execute a run of them ahead of the requests to
        validate them, which come one by one as each commits."""
        return self.catchup.get(height)

    def payload_for(self, height: int, digest: bytes) -> bytes | None:
        """The payload of an uncommitted block this replica holds (drivers may serve it)."""
        return self.log.payload(height, digest)

    def memory_footprint(self) -> dict[str, int]:
        """Sizes of every growing structure, for the bounded-memory checks."""
        footprint = self.log.footprint()
        footprint["signed"] = len(self.signer.signed)
        footprint["checkpoint_votes"] = self.checkpoints.votes.size()
        footprint["view_changes"] = self.changes.votes.size()
        footprint["buffered"] = self.future.size()
        footprint["catchup"] = len(self.catchup.blocks)
        footprint["committed_digests"] = len(self.chain.digests)
        return footprint

    @property
    def primary(self) -> int:
        return self.config.primary(self.view_state.view)

    def sign_slot(
        self, view: int, height: int, phase: Phase, digest: bytes, body: Body, payload: bytes = b""
    ) -> SignedMessage | None:
        """Sign through the double-sign guard: one digest per (view, height, phase), ever."""
        return self.signer.sign_slot(view, height, phase, digest, body, payload)

    # ------------------------------------------------------------------ read-only views of
    # the parts' fields, under the names drivers, tools and tests have always used

    @property
    def view(self) -> int:
        return self.view_state.view

    @property
    def active(self) -> bool:
        return self.view_state.active

    @property
    def view_base(self) -> int:
        return self.view_state.view_base

    @property
    def vc_timer(self) -> int:
        return self.view_state.vc_timer

    @property
    def censor_timer(self) -> int:
        return self.view_state.censor_timer

    @property
    def committed_height(self) -> int:
        return self.chain.height

    @property
    def committed_digest(self) -> bytes:
        return self.chain.digest

    @property
    def stable(self) -> CheckpointProof:
        return self.checkpoints.stable

    @property
    def catchup_target(self) -> int:
        return self.catchup.target

    @property
    def peer_claims(self) -> dict[int, int]:
        return self.catchup.peer_claims

    @property
    def ticks(self) -> int:
        return self.housekeeping.ticks

    @property
    def pending(self) -> bool:
        return self.proposals.pending

    @property
    def proposal_outstanding(self) -> ProposalRequest | None:
        return self.proposals.outstanding

    @property
    def proposal_skipped(self) -> bool:
        return self.proposals.skipped

    @property
    def slots(self) -> dict[int, Slot]:
        return self.log.slots

    @property
    def payloads(self) -> dict[BlockKey, bytes]:
        return self.log.payloads

    @property
    def verdicts(self) -> dict[BlockKey, Verdict]:
        return self.log.verdicts

    @property
    def signed(self) -> dict[GuardKey, SignedSlot]:
        return self.signer.signed

    @property
    def view_changes(self) -> ViewChangeVotes:
        return self.changes.votes

    @property
    def buffered(self) -> dict[int, list[SignedMessage]]:
        return self.future.buffered

    # ================================================================== output

    def _hard_state(self) -> HardState:
        view = self.view_state
        return HardState(
            view.view, view.active, self.checkpoints.stable, view.my_view_change,
            view.new_view_message,
        )  # fmt: skip

    def _flush(self) -> Ready:
        return self.out.flush(self._hard_state() if self.out.hard_state_changed else None)
