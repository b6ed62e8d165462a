"""Periodic duties and services to peers: the tick counters, STATUS announcements,
retransmission, and what a lagging peer is sent (blocks, our NEW-VIEW, our stable
checkpoint's proof).

* Every ``status_ticks`` a replica announces STATUS(view, active, committed, stable);
  a peer behind in views gets our NEW-VIEW, one behind our stable checkpoint gets the q
  signed CHECKPOINTs that make it stable (each at most once per ``status_ticks``).
* When nothing committed for ``retransmit_ticks``, in-flight votes are sent again (PBFT
  assumes retransmission: messages may have been lost).
* BLOCK replies are rate-limited per peer per tick (each carries a whole payload).

House rules: the methods here are the only writers of the counters and rate limits; the
view-change timers are the view's (consensus/view.py), not these.
"""

from __future__ import annotations

from consensus.catchup import Catchup
from consensus.certificates import Rejected
from consensus.checkpoints import Checkpoints
from consensus.committed import CommittedChain
from consensus.config import ReplicaConfig
from consensus.limits import MAX_BLOCK_REPLIES_PER_PEER_PER_TICK
from consensus.messages import BlockReply, BlockRequest, SignedMessage, Status
from consensus.outbox import Outbox
from consensus.records import Phase
from consensus.signer import Signer
from consensus.slots import SlotLog
from consensus.view import ViewState


class Housekeeping:
    def __init__(
        self,
        config: ReplicaConfig,
        out: Outbox,
        signer: Signer,
        view: ViewState,
        log: SlotLog,
        chain: CommittedChain,
        checkpoints: Checkpoints,
        catchup: Catchup,
    ) -> None:
        self._config = config
        self._out = out
        self._signer = signer
        self._view = view
        self._log = log
        self._chain = chain
        self._checkpoints = checkpoints
        self._catchup = catchup
        self.ticks = 0
        self.ticks_since_commit = 0
        self.status_timer = 0
        self.retransmit_timer = 0
        self.progress_since_retransmit = False
        #: BLOCK replies served this tick, per peer.
        self.block_replies: dict[int, int] = {}
        #: Tick of the last NEW-VIEW / stable-checkpoint proof sent to each lagging peer.
        self.new_view_sent_at: dict[int, int] = {}
        self.checkpoint_sent_at: dict[int, int] = {}

    # ------------------------------------------------------------------ ticks

    def on_tick(self) -> None:
        self.ticks += 1
        self.ticks_since_commit += 1
        self.block_replies.clear()
        self.status_timer += 1
        if self.status_timer >= self._config.status_ticks:
            self.status_timer = 0
            self.broadcast_status()
        self.retransmit_timer += 1
        if self.retransmit_timer >= self._config.retransmit_ticks:
            self.retransmit_timer = 0
            if not self.progress_since_retransmit:
                self.retransmit()
            self.progress_since_retransmit = False

    def on_commit(self) -> None:
        self.progress_since_retransmit = True
        self.ticks_since_commit = 0

    # ------------------------------------------------------------------ announcements

    def broadcast_status(self) -> None:
        view = self._view
        body = Status(view.view, view.active, self._chain.height, self._checkpoints.stable.height)
        self._out.send(None, self._signer.sign(body))

    def retransmit(self) -> None:
        """Nothing committed for a while: resend what we signed for in-flight work."""
        view = self._view
        if not view.active:
            if view.my_view_change is not None:
                self._out.send(None, view.my_view_change)
            return
        low = self._chain.height - self._config.max_pipeline
        for height in sorted(self._log.slots):
            if height <= low:
                continue
            for phase in (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT):
                record = self._signer.signed_at(view.view, height, phase)
                if record is not None:
                    self._out.send(None, record.message)
            self._log.slots[height].forget_payload_request()
        for vote in self._checkpoints.votes.own(self._signer.index):
            self._out.send(None, vote)

    # ------------------------------------------------------------------ serving peers

    def on_status(self, message: SignedMessage, body: Status) -> None:
        """A peer's STATUS: count its claim, help it if it is behind us."""
        self._catchup.note_claim(message.sender, body.committed_height)
        view, sender = self._view, message.sender
        behind = body.view < view.view or (body.view == view.view and not body.view_active)
        if view.active and behind and view.new_view_message is not None:
            last = self.new_view_sent_at.get(sender)
            if last is None or self.ticks - last >= self._config.status_ticks:
                self.new_view_sent_at[sender] = self.ticks
                self._out.send(sender, view.new_view_message)
        stable = self._checkpoints.stable
        if body.stable_height < stable.height:
            # Forward the q signed CHECKPOINTs of our stable checkpoint: each still carries
            # its signer's signature, so the laggard checks them like any other.
            last = self.checkpoint_sent_at.get(sender)
            if last is None or self.ticks - last >= self._config.status_ticks:
                self.checkpoint_sent_at[sender] = self.ticks
                for proof_message in stable.messages:
                    self._out.send(sender, proof_message)
        self._catchup.maybe_fetch(self._chain.height, self.ticks_since_commit, view.active)

    def on_block_request(self, message: SignedMessage, body: BlockRequest) -> None:
        payload = self._log.payload(body.height, body.digest)
        if payload is None:
            self._out.count("block_request.unavailable")
            return
        served = self.block_replies.get(message.sender, 0)
        if served >= MAX_BLOCK_REPLIES_PER_PEER_PER_TICK:
            raise Rejected("block_request_rate")
        self.block_replies[message.sender] = served + 1
        reply = self._signer.sign(BlockReply(body.height, body.digest), payload)
        self._out.send(message.sender, reply)
