"""The node engine: the consensus core, the mempool, the proposer policy and the executed-block
tree behind one sans-I/O interface (h11's Connection; raft's RawNode).

Theory of operation. The driver calls :meth:`Engine.step` with a typed event (ledger/engine/
events.py) and gets the consensus core's :class:`~consensus.ready.Ready`, which it handles in
the core's order (persist, commit, send, validate, propose, fetch). Where handling needs
work that blocks or burns CPU, the engine hands out a pure work item and takes its result
back as an event:

* ``ready.committed``: :meth:`commit_work` -> the driver executes (if needed) and writes the
  block -> ``Persisted``;
* ``ready.validate``: :meth:`validation_work` -> run ``speculative.run_validation`` ->
  ``Validated``;
* ``ready.propose``: :meth:`proposal_work` (the batching policy decides: build now, or ask
  again later) -> run ``speculative.run_build`` -> ``Built``.

Side outputs (answers for waiting clients, admission results, a wake-up time) collect in
:meth:`take_outputs`. The engine tells the core whether something *includable* waits after
every change of the mempool, with the one rule of ledger/engine/mempool.py: the primary
proposes and the backups' timers wait on exactly the same transactions.

Never: block, read a clock (time arrives in events), touch the store or the network, or
let a peer's bad bytes raise (they are counted and dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from consensus.config import ReplicaConfig
from consensus.messages import CommitProof, SignedMessage
from consensus.ready import CommittedBlock, ProposalRequest, Ready, ValidateRequest, merge_readies
from consensus.replica import Replica
from crypto.encoding import DecodeError
from ledger.chain.execute import ChainRules
from ledger.chain.types import CommitCertificate, Receipt, ReceiptStatus, TxRejected
from ledger.chain.validators import activated_by
from ledger.engine.admission import (
    BACKPRESSURE_CODES,
    PERMANENT_SKIPS,
    RETRY_AFTER_MS,
    AdmittedTx,
    Backpressure,
    RequestRuns,
)
from ledger.engine.blocks import BlockCache
from ledger.engine.epochs import ends_epoch, epoch_config
from ledger.engine.events import (
    Built,
    Event,
    Fetched,
    PeerMessage,
    Persisted,
    Submitted,
    Tick,
    Validated,
    Wake,
)
from ledger.engine.mempool import Dropped, DropReason, Mempool
from ledger.engine.proposer import Defer, Proposer
from ledger.engine.speculative import (
    BuildWork,
    CommitWork,
    ReplayWork,
    SpeculativeBlocks,
    ValidateWork,
)

#: Fetched blocks handled per Fetched event (a reply holds at most this many).
MAX_FETCHED_PER_EVENT: Final = 64
#: Includable transactions still waiting this long after they were last gossiped are
#: gossiped again (at most REGOSSIP_LIMIT per tick).
REGOSSIP_AFTER_MS: Final = 3_000
REGOSSIP_LIMIT: Final = 512
#: A skipped proposal with includable requests waiting is asked for again this soon.
RETRY_PROPOSAL_MS: Final = 100
#: Requests a backup re-sends when its view-change timer is half way (see _on_tick).
RELAY_ON_TIMER: Final = 256

#: Renders a receipt for a client (the node's JSON; the simulator passes a smaller one).
ReceiptRenderer = Callable[[Receipt], dict[str, Any]]


@dataclass(slots=True)
class Outputs:
    """What the engine produced besides the Ready, since the last :meth:`Engine.take_outputs`."""

    #: Per transaction of the last ``Submitted`` event, in order.
    admission: list[dict[str, Any]] = field(default_factory=list)
    #: Final answers for transactions clients may wait on: committed, failed or dropped.
    answers: list[tuple[bytes, dict[str, Any]]] = field(default_factory=list)
    #: Raw transactions admitted from clients, to gossip to the other validators.
    gossip: list[bytes] = field(default_factory=list)
    #: Step the engine with ``Wake`` at this time (the proposer deferred a block).
    wake_at_ms: int | None = None


def commit_answer(receipt: Receipt, height: int, render: ReceiptRenderer) -> dict[str, Any]:
    """What a client is told about a committed transaction."""
    return {
        "status": "committed" if receipt.status == ReceiptStatus.SUCCESS else "failed",
        "height": height,
        "receipt": render(receipt),
    }


def dropped_answer(dropped: Dropped) -> dict[str, Any]:
    """What a client is told about a transaction that left the mempool without a block."""
    return {
        "status": "dropped",
        "code": dropped.reason.value,
        "error": dropped.detail,
        "height": dropped.height,
    }


class Engine:
    """One validator's logic. See the module docstring for the driver's side."""

    def __init__(
        self,
        *,
        replica: Replica,
        rules: ChainRules,
        speculative: SpeculativeBlocks,
        mempool: Mempool,
        proposer: Proposer,
        blocks: BlockCache,
        render_receipt: ReceiptRenderer,
        backpressure: Backpressure | None = None,
        base_config: ReplicaConfig | None = None,
    ) -> None:
        self.replica = replica
        #: The genesis epoch's config (limits, timers, digest): each epoch's derives from it.
        self.base_config = base_config or replica.config
        self.rules = rules
        self.speculative = speculative
        self.mempool = mempool
        self.proposer = proposer
        self.blocks = blocks
        self.render_receipt = render_receipt
        self.backpressure = backpressure or Backpressure()
        self.now_ms = 0
        #: Transactions the driver holds and has not verified yet (client batches waiting for
        #: a worker, gossip waiting in its inbox); set by the driver, counted as backlog.
        self.unverified = 0
        #: Why the last peer proposal was refused (the driver logs it).
        self.last_rejection = ""
        self.counters: dict[str, int] = {}
        #: Set when the committed head ended the epoch: the config of the next epoch. The
        #: driver builds that epoch's replica (with its key; or stops taking part if its key
        #: is not in the set), clears the old epoch's consensus records, and calls
        #: :meth:`next_epoch` once it has acted on every output of the old replica.
        self.epoch_ended: ReplicaConfig | None = None
        self._outputs = Outputs()
        self._told: tuple[bool, bytes | None] | None = None
        self._handlers: dict[type, Callable[[Any], Ready]] = {
            Tick: self._on_tick,
            Wake: self._on_wake,
            PeerMessage: self._on_peer_message,
            Submitted: self._on_submitted,
            Fetched: self._on_fetched,
            Validated: self._on_validated,
            Built: self._on_built,
            Persisted: self._on_persisted,
        }

    # ------------------------------------------------------------------ the interface

    def start(self) -> Ready:
        return self.replica.start()

    def step(self, event: Event) -> Ready:
        return self._handlers[type(event)](event)

    def take_admission(self) -> list[dict[str, Any]]:
        """The answers for the last ``Submitted`` event, one per transaction, in order."""
        results, self._outputs.admission = self._outputs.admission, []
        return results

    def take_outputs(self) -> Outputs:
        outputs, self._outputs = self._outputs, Outputs()
        return outputs

    def count(self, key: str, by: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + by

    @property
    def head_height(self) -> int:
        return self.speculative.head.height

    def client_limit(self) -> int:
        """How many includable transactions the mempool may hold before client submissions
        are refused: about ``TARGET_QUEUE_DELAY_MS`` of commits, less what the driver has
        received and not verified yet (``unverified``) — work it has already taken on."""
        return max(0, self.backpressure.client_limit(self.now_ms) - self.unverified)

    # ------------------------------------------------------------------ work items

    def next_epoch(self, replica: Replica) -> Ready:
        """The driver built the next epoch's replica (see ``Outputs.next_epoch``): it takes
        over from the old one, which is done (it votes on nothing above the switch block)."""
        if not self.replica.epoch_over:
            raise ValueError("the current epoch is not over")
        self.replica = replica
        self.epoch_ended = None
        self._told = None
        self.count("epochs.switched")
        return self._merge(replica.start(), self._tell_pending(force=True))

    def commit_work(self, committed: CommittedBlock) -> CommitWork:
        executed = self.speculative.get(committed.height, committed.digest)
        if executed is not None:
            return CommitWork(executed, None, None)
        # Fetched from a peer, or validated in a view this node left: execute it first.
        parent = self.speculative.parent(committed.height, committed.parent_digest)
        return CommitWork(None, self.blocks.block(committed.payload), parent)

    def validation_work(self, request: ValidateRequest, now_ms: int) -> ValidateWork | Ready:
        self.now_ms = max(self.now_ms, now_ms)
        parent = self.speculative.parent(request.height, request.parent_digest)
        if parent is None:
            self.count("validate.no_parent")
            return self.replica.proposal_validated(
                request.view, request.height, request.digest, False, None
            )
        return ValidateWork(
            request,
            parent,
            self.blocks.block(request.payload),
            now_ms + self.rules.max_clock_skew_ms,
        )

    def replay_work(
        self, request: ValidateRequest, *, max_blocks: int, max_txs: int
    ) -> ReplayWork | None:
        """When ``request`` is for a certified block from catch-up: it and the fetched blocks
        chained after it (up to ``max_blocks`` blocks and about ``max_txs`` transactions),
        to execute in one go; else None (validate it as a proposal).

        The core asks to validate a fetched block only once its parent committed, so a run
        of fetched blocks would cost a round trip through the driver per block; the driver
        executes the run at once and answers each request as the core makes it."""
        replica = self.replica
        first = replica.fetched_block(request.height)
        if (
            first is None
            or first.digest != request.digest
            or first.parent_digest != request.parent_digest
        ):
            return None
        parent = self.speculative.parent(request.height, request.parent_digest)
        block = self.blocks.block(request.payload)
        if parent is None or block is None:
            return None
        requests, blocks = [request], [block]
        txs = len(block.transactions)
        while len(blocks) < max_blocks and txs < max_txs:
            last = requests[-1]
            fetched = replica.fetched_block(last.height + 1)
            if fetched is None or fetched.parent_digest != last.digest:
                break
            block = self.blocks.block(fetched.payload)
            if block is None:
                break
            view = fetched.certificate.view
            requests.append(
                ValidateRequest(
                    view, last.height + 1, fetched.digest, fetched.parent_digest, fetched.payload
                )
            )
            blocks.append(block)
            txs += len(block.transactions)
        self.count("replay.runs")
        return ReplayWork(parent, tuple(requests), tuple(blocks))

    def proposal_work(self, request: ProposalRequest, now_ms: int) -> BuildWork | Ready:
        """The batching policy: build a block now (a work item), or skip and ask later."""
        self.now_ms = max(self.now_ms, now_ms)
        parent = self.speculative.parent(request.height, request.parent_digest)
        if parent is None:
            return self._skip(request, "no_parent")
        if not self.mempool.has_includable():
            self.count("proposals.skipped.nothing_includable")
            return self.replica.skip_proposal(request.view, request.height)
        in_ancestors, after = self.speculative.ancestry(parent)
        decision = self.proposer.decide(
            now_ms,
            waiting=self.mempool.includable_count - len(in_ancestors),
            in_flight=bool(in_ancestors),
        )
        if isinstance(decision, Defer):
            self.count("proposals.deferred")
            self._wake_at(decision.wake_at_ms)
            return self.replica.skip_proposal(request.view, request.height)
        limit = min(self.rules.max_block_txs, self.proposer.block_tx_limit())
        candidates = self.mempool.select(
            max_txs=limit,
            max_bytes=self.rules.max_block_bytes,
            max_gas=self.rules.max_block_gas,
            after=after,
        )
        if not candidates:
            return self._skip(request, "nothing_selected")
        self.proposer.proposed(now_ms)
        return BuildWork(request, parent, tuple(candidates), now_ms)

    # ------------------------------------------------------------------ events

    def _on_tick(self, event: Tick) -> Ready:
        self.now_ms = max(self.now_ms, event.now_ms)
        dropped = self.mempool.expire_gaps(self.now_ms, self.head_height)
        self._answer_dropped(dropped)
        again = self.mempool.to_regossip(
            self.now_ms, older_than_ms=REGOSSIP_AFTER_MS, limit=REGOSSIP_LIMIT
        )
        replica = self.replica
        if (
            replica.active
            and replica.primary != replica.index
            and replica.vc_timer == replica.config.view_change_timeout_ticks // 2
        ):
            # PBFT's backups relay a request whose timer runs to the primary (OSDI'99
            # §4.4): half way to a view change, send the oldest includable requests again,
            # in case the primary never got them (gossip is fire and forget).
            again += self.mempool.to_regossip(self.now_ms, older_than_ms=0, limit=RELAY_ON_TIMER)
            self.count("gossip.relayed_on_timer")
        if again:
            self._outputs.gossip.extend(again)
            self.count("gossip.repeated", len(again))
        ready = self.replica.tick()
        if self.replica.ticks % 16 == 0:
            self.speculative.retain(self.replica.live_blocks())
        return self._merge(ready, self._tell_pending())

    def _on_wake(self, event: Wake) -> Ready:
        self.now_ms = max(self.now_ms, event.now_ms)
        return self._tell_pending(force=True)

    def _on_peer_message(self, event: PeerMessage) -> Ready:
        try:
            message = SignedMessage.decode(event.body)
        except DecodeError:
            return self.replica.receive(event.body)  # the core counts it as malformed
        # Decoded messages have a known kind (a bounded set of counter names).
        self.count(f"messages.received.{message.kind}")
        return self.replica.step(message)

    def _on_submitted(self, event: Submitted) -> Ready:
        self.now_ms = max(self.now_ms, event.now_ms)
        results = self._outputs.admission = []
        runs = RequestRuns() if event.from_client else None
        for checked in event.checked:
            outcome = checked.outcome
            if isinstance(outcome, TxRejected):
                results.append(self._rejection(None, outcome))
                continue
            try:
                held = runs.check(outcome.sender, outcome.nonce) if runs is not None else None
                if held is not None:
                    raise held
                self._add(outcome, checked.account_nonce, checked.read_height, event.from_client)
            except TxRejected as exc:
                if runs is not None:
                    runs.refused(outcome.sender, outcome.nonce, exc.code)
                results.append(self._rejection(outcome, exc))
                continue
            if event.from_client:
                self._outputs.gossip.append(outcome.raw)
            results.append({"tx_hash": outcome.hash.hex(), "status": "pending"})
        kind = "admission.submitted" if event.from_client else "admission.gossiped"
        self.count(kind, len(results))
        accepted = sum(1 for r in results if r["status"] == "pending")
        self.count("admission.accepted." + ("client" if event.from_client else "gossip"), accepted)
        # Something new may be includable: tell the core even if the oldest request is the
        # same, so a primary that skipped a proposal (nothing new then) is asked again.
        return self._tell_pending(force=accepted > 0)

    def _add(self, tx: AdmittedTx, nonce: int, read_height: int, from_client: bool) -> None:
        self.mempool.add(
            tx,
            nonce,
            height=self.head_height,
            now_ms=self.now_ms,
            read_height=read_height,
            client_limit=self.client_limit() if from_client else None,
        )

    def _rejection(self, tx: AdmittedTx | None, exc: TxRejected) -> dict[str, Any]:
        result: dict[str, Any] = {
            "tx_hash": None if tx is None else tx.hash.hex(),
            "status": "rejected",
            "code": exc.code,
            "error": exc.message,
        }
        if exc.code in BACKPRESSURE_CODES:
            result["retry_after_ms"] = RETRY_AFTER_MS
        self.count(f"admission.rejected.{exc.code}")
        return result

    def _on_fetched(self, event: Fetched) -> Ready:
        readies: list[Ready] = []
        for (raw_block, _), decoded in zip(event.blocks, event.decoded, strict=False):
            if decoded is not None:
                self.blocks.remember(raw_block, decoded)
        for raw_block, raw_certificate in event.blocks[:MAX_FETCHED_PER_EVENT]:
            block = self.blocks.block(raw_block)
            try:
                certificate = CommitCertificate.decode(raw_certificate)
            except DecodeError:
                certificate = None
            if block is None or certificate is None:
                self.count("catchup.malformed")
                break
            proof = CommitProof(
                certificate.view, certificate.height, certificate.block_hash, certificate.votes
            )
            header = block.header
            readies.append(
                self.replica.committed_block_from_peer(
                    header.height, header.block_hash, header.prev_hash, raw_block, proof
                )
            )
        return _merge_all(readies)

    def _on_validated(self, event: Validated) -> Ready:
        request, outcome = event.request, event.outcome
        if isinstance(outcome, str):
            self.count("validate.rejected")
            self.last_rejection = (
                f"proposal {request.height}/{request.digest.hex()[:12]}: {outcome}"
            )
            return self.replica.proposal_validated(
                request.view, request.height, request.digest, False, None
            )
        self.proposer.observe_execution(len(outcome.block.transactions), event.elapsed_us)
        self.speculative.add(outcome)
        return self.replica.proposal_validated(
            request.view,
            request.height,
            request.digest,
            True,
            outcome.state_root,
            ends_epoch(outcome),
        )

    def _on_built(self, event: Built) -> Ready:
        request, executed = event.request, event.executed
        dropped = []
        for tx, reason in event.skipped:
            if reason.code in PERMANENT_SKIPS:
                found = self.mempool.drop(
                    tx.hash, DropReason.NOT_INCLUDABLE, f"{reason.code}: {reason}", self.head_height
                )
                if found is not None:
                    dropped.append(found)
        self._answer_dropped(dropped)
        if not executed.block.transactions:
            reasons = sorted({reason.code for _, reason in event.skipped})
            self.last_rejection = f"an empty proposal: every candidate skipped ({reasons})"
            return self._merge(self._skip(request, "empty"), self._tell_pending())
        self.proposer.observe_execution(len(executed.block.transactions), event.elapsed_us)
        self.speculative.add(executed)
        payload = executed.block.encode()
        self.blocks.remember(payload, executed.block)
        self.count("proposals")
        return self.replica.propose(
            request.view,
            request.height,
            executed.block_hash,
            request.parent_digest,
            payload,
            executed.state_root,
            ends_epoch(executed),
        )

    def _on_persisted(self, event: Persisted) -> Ready:
        self.now_ms = max(self.now_ms, event.now_ms)
        committed, executed = event.committed, event.executed
        self.speculative.committed(committed.height, event.tip)
        block = executed.block
        nonces: dict[bytes, int] = {}
        for tx in block.transactions:
            if tx.nonce + 1 > nonces.get(tx.sender_address, 0):
                nonces[tx.sender_address] = tx.nonce + 1
        dropped = self.mempool.committed(block.transactions, nonces, committed.height)
        self.backpressure.committed(len(block.transactions), self.now_ms)
        answers = self._outputs.answers
        for tx, receipt in zip(block.transactions, executed.receipts, strict=True):
            answers.append((tx.hash, commit_answer(receipt, committed.height, self.render_receipt)))
        self._answer_dropped(dropped)
        self.count("blocks.committed")
        self.count("txs.committed", len(block.transactions))
        activated = activated_by(executed.overlay.writes)
        if self.replica.epoch_over and activated is not None:
            self.epoch_ended = epoch_config(
                self.base_config,
                self.rules.chain_id,
                activated,
                executed.block_hash,
                executed.state_root,
            )
            return Ready()
        return self._tell_pending(force=True)

    # ------------------------------------------------------------------ helpers

    def _answer_dropped(self, dropped: list[Dropped]) -> None:
        for record in dropped:
            self._outputs.answers.append((record.tx_hash, dropped_answer(record)))
            self.count(f"mempool.dropped.{record.reason.value}")

    def _skip(self, request: ProposalRequest, why: str) -> Ready:
        """Skip a proposal although something includable waits: ask again shortly, or a
        primary with work and nothing in flight would wait for an event that never comes
        (no admission, no commit) while the backups' timers run."""
        self.count(f"proposals.skipped.{why}")
        if self.mempool.has_includable():
            self._wake_at(self.now_ms + RETRY_PROPOSAL_MS)
        return self.replica.skip_proposal(request.view, request.height)

    def _wake_at(self, at_ms: int) -> None:
        current = self._outputs.wake_at_ms
        self._outputs.wake_at_ms = at_ms if current is None else min(current, at_ms)

    def _tell_pending(self, *, force: bool = False) -> Ready:
        """Tell the core whether something includable waits (and the oldest such request),
        when that changed — or always after a commit or a wake-up, so a primary that skipped
        a proposal is asked again."""
        state = (self.mempool.has_includable(), self.mempool.oldest_includable())
        if not force and state == self._told:
            return Ready()
        self._told = state
        return self.replica.requests_pending(*state)

    @staticmethod
    def _merge(first: Ready, second: Ready) -> Ready:
        return _merge_all([first, second])


def _merge_all(readies: list[Ready]) -> Ready:
    readies = [r for r in readies if not r.is_empty()]
    if not readies:
        return Ready()
    return readies[0] if len(readies) == 1 else merge_readies(readies)
