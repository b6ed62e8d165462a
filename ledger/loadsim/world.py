"""The load simulator: n validators running the real node engine (consensus core, mempool,
proposer policy, execution) on virtual time, virtual CPUs and a simulated network, under a
client workload that can exceed capacity.

Theory of operation. One event queue ordered by (virtual µs, sequence number) drives
everything; a seeded ``random.Random`` draws latencies, targets and anomalies, so a seed
replays exactly. Each validator is a :class:`~ledger.engine.engine.Engine` over an in-memory
chain (ledger/loadsim/chain.py) with a single virtual CPU: every job (a consensus message,
a client batch, gossip, a validation, a proposal, a commit) starts when the CPU is free and
occupies it for a cost from :class:`Costs`, and what it sends leaves when it ends. That is
what makes overload real here: a primary whose CPU is busy proposes late, a backup whose
CPU is busy validates late, and view-change timers run on the same virtual clock. The
engine's work items are executed for real (blocks are built, validated and committed with
the chain's code), so state roots and receipts are the production ones; only signature
verification is memoised across validators (its virtual cost is still charged per node).

Clients: ``Workload.senders`` accounts submit transfers in batches to random validators at
``rate_per_s`` for ``burst_ms``, then stop; refusals with ``retry_after_ms`` are retried
(well-behaved clients), other refusals are final. Anomalies: some senders skip a nonce and
never fill it (a gap), some submissions go to two validators (duplicates), some nonces get
a second, different transaction at another validator (conflicts).

Never: read the wall clock, share state between validators other than through messages,
or let the simulation's bookkeeping feed back into what a validator decides.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Final

from consensus.ready import CommittedBlock, FetchRequest, Ready, ViewChangeReason, merge_readies
from consensus.replica import Replica
from crypto import keys
from crypto.hashing import sha256
from genesis.builder import build_genesis
from genesis.document import ConsensusParams, Genesis
from ledger.chain.execute import ChainRules
from ledger.chain.types import CommitCertificate, Transaction, Transfer, TxRejected
from ledger.engine.admission import BatchGate, VerifiedCache, admit_raw
from ledger.engine.assemble import assemble_engine
from ledger.engine.engine import Engine
from ledger.engine.events import (
    Built,
    Checked,
    Fetched,
    PeerMessage,
    Persisted,
    Submitted,
    Tick,
    Validated,
    Wake,
)
from ledger.engine.mempool import Mempool
from ledger.engine.speculative import (
    BuildWork,
    ValidateWork,
    run_build,
    run_commit_execution,
    run_validation,
)
from ledger.loadsim.chain import MemoryChain

CHAIN_ID: Final = "quorum-loadsim"
GENESIS_TIME: Final = "2026-01-01T00:00:00Z"
TICK_MS: Final = 100
#: Event kinds.
TICK, DELIVER, GOSSIP, REQUEST, REPLY, FETCHED, WAKE, RESUME, CLIENT = range(9)
_KIND_NAMES: Final = ("tick", "message", "gossip", "client", "reply", "fetched", "wake", "-", "-")
#: Client transactions a validator lets wait for its CPU (the node's MAX_VERIFYING_TXS).
MAX_QUEUED_CLIENT_TXS: Final = 2_000


def _busy() -> dict[str, Any]:
    return {"tx_hash": None, "status": "rejected", "code": "busy", "retry_after_ms": 1_000}


@dataclass(frozen=True, slots=True)
class Costs:
    """Virtual CPU time of each piece of work at one validator, in µs. The defaults make a
    4-validator network commit a few hundred transfers per second, so a burst above that
    is cheap to simulate."""

    verify_us: int = 400
    decode_us: int = 40
    execute_us: int = 500
    commit_us: int = 200
    block_us: int = 3_000
    message_us: int = 150
    persist_us: int = 500


@dataclass(frozen=True, slots=True)
class Workload:
    senders: int = 300
    rate_per_s: int = 1_500
    burst_ms: int = 8_000
    idle_ms: int = 45_000
    batch: int = 25
    #: Per mille of senders that skip one nonce and never fill it.
    gap_permille: int = 30
    #: Per mille of submissions also sent to a second validator.
    duplicate_permille: int = 100
    #: Per mille of submissions followed by a conflicting transaction (same nonce).
    conflict_permille: int = 20


@dataclass(frozen=True, slots=True)
class LoadParams:
    validators: int = 4
    costs: Costs = Costs()
    workload: Workload = Workload()
    latency_ms: int = 2
    jitter_ms: int = 3
    view_change_timeout_ms: int = 2_000
    max_block_txs: int = 2_000


@dataclass(slots=True)
class LoadReport:
    seed: int
    validators: int
    submitted: int = 0
    accepted: int = 0
    refused_backpressure: int = 0
    refused_other: int = 0
    committed: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    stranded: int = 0
    view_changes_burst: int = 0
    view_changes_idle: int = 0
    view_change_reasons: dict[str, int] = field(default_factory=dict)
    goodput_per_s: int = 0
    p50_ms: int = 0
    p99_ms: int = 0
    #: Latency of the transactions that were includable when accepted (no nonce gap: the
    #: wait a client that sends its nonces in order sees).
    ready_p50_ms: int = 0
    ready_p99_ms: int = 0
    #: Accepted, neither committed nor dropped, still waiting behind a nonce gap somewhere.
    behind_gaps: int = 0
    final_mempools: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    probe_ms: int | None = None
    #: Validator 0's virtual CPU by job kind, in ms.
    cpu_ms: dict[str, int] = field(default_factory=dict)
    trace_hash: str = ""

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


EngineClass = type[Engine]


class _MemoVerified(VerifiedCache):
    """A validator's own verified cache, with the real Ed25519 work shared by all of them."""

    def __init__(self, memo: dict[bytes, bool]) -> None:
        super().__init__()
        self._memo = memo

    def verify(self, tx: Transaction) -> bool:
        known = self._memo.get(tx.hash)
        if known is None:
            known = self._memo[tx.hash] = tx.signature_valid()
        return known


class SimValidator:
    def __init__(self, sim: LoadSim, index: int, key: keys.PrivateKey) -> None:
        self.sim = sim
        self.index = index
        genesis = sim.genesis
        self.chain = MemoryChain(genesis)
        self.rules = ChainRules.from_genesis(genesis)
        self.mempool = Mempool(max_txs=50_000, max_bytes=64 * 1024 * 1024)
        self.verified = _MemoVerified(sim.signature_memo)
        self.engine = assemble_engine(
            genesis,
            tip=self.chain.tip(),
            genesis_state_root=self.chain.genesis_state_root,
            mempool=self.mempool,
            replica=lambda config: Replica(config, key),
            render_receipt=lambda receipt: {},
            tick_ms=TICK_MS,
            engine_class=sim.engine_class,
        )
        self.blocks = self.engine.blocks
        self.cpu_free_us = 0
        self.cost_us = 0  # of the job being run
        #: Jobs waiting for the CPU: consensus work first, then admission (the node gives
        #: its event loop to consensus and verifies transactions one batch at a time).
        self.urgent: deque[tuple[int, Any]] = deque()
        self.bulk: deque[tuple[int, Any]] = deque()
        self.backlog_txs = 0
        self.gossip_queued = 0
        self.resume_scheduled = False
        #: Virtual CPU spent, by what started the job (µs).
        self.busy_us: dict[str, int] = {}
        self.wake_at_ms: int | None = None

    @property
    def now_ms(self) -> int:
        return self.sim.genesis.genesis_time_ms + (self.sim.now_us + self.cost_us) // 1000

    # ------------------------------------------------------------------ jobs

    def handle(self, readies: list[Ready]) -> None:
        """The driver contract of consensus/replica.py, charging virtual CPU as it goes."""
        sim, costs = self.sim, self.sim.params.costs
        batch = readies
        while batch:
            ready = merge_readies(batch) if len(batch) > 1 else batch[0]
            batch = []
            if ready.halt is not None:
                sim.violations.append(f"validator {self.index} halted: {ready.halt}")
            for note in ready.notes:
                if note.reason is not ViewChangeReason.ENTERED:
                    sim.note_view_change(self.index, note.reason.value)
            if ready.persist is not None:
                self.cost_us += costs.persist_us
            for committed in ready.committed:
                batch.append(self._commit(committed))
            for outbound in ready.messages:
                self.cost_us += costs.message_us
                body = outbound.message.encode()
                targets = (
                    [outbound.to]
                    if outbound.to is not None
                    else [i for i in range(len(sim.validators)) if i != self.index]
                )
                for to in targets:
                    sim.send(self, to, DELIVER, body)
            for request in ready.validate:
                work = self.engine.validation_work(request, self.now_ms)
                if isinstance(work, ValidateWork):
                    txs = len(work.block.transactions) if work.block is not None else 0
                    outcome = run_validation(work, self.rules, self.verified.signature_ok)
                    self.cost_us += costs.block_us + txs * costs.execute_us
                    batch.append(
                        self.engine.step(Validated(request, outcome, txs * costs.execute_us))
                    )
                else:
                    batch.append(work)
            if ready.propose is not None:
                build = self.engine.proposal_work(ready.propose, self.now_ms)
                if isinstance(build, BuildWork):
                    executed, skipped = run_build(
                        build, self.rules, self.index, self.verified.signature_ok
                    )
                    spent = len(build.candidates) * costs.execute_us
                    self.cost_us += costs.block_us + spent
                    batch.append(
                        self.engine.step(Built(ready.propose, executed, tuple(skipped), spent))
                    )
                else:
                    batch.append(build)
            if ready.fetch is not None:
                sim.fetch(self, ready.fetch)
            self._after_step()

    def _commit(self, committed: CommittedBlock) -> Ready:
        costs = self.sim.params.costs
        work = self.engine.commit_work(committed)
        executed = run_commit_execution(work, self.rules, self.verified.signature_ok)
        txs = len(executed.block.transactions)
        if work.executed is None:
            self.cost_us += txs * costs.execute_us
        self.cost_us += costs.block_us + txs * costs.commit_us
        certificate = CommitCertificate(
            committed.view, committed.height, committed.digest, committed.votes
        )
        self.chain.append(executed, certificate)
        self.sim.note_commit(self, executed.block.transactions)
        return self.engine.step(Persisted(committed, executed, self.chain.tip(), self.now_ms))

    def _after_step(self) -> None:
        outputs = self.engine.take_outputs()
        for tx_hash, answer in outputs.answers:
            self.sim.note_answer(self, tx_hash, answer)
        if outputs.gossip:
            for to in range(len(self.sim.validators)):
                if to != self.index:
                    self.sim.send(self, to, GOSSIP, list(outputs.gossip))
        if outputs.wake_at_ms is not None and (
            self.wake_at_ms is None or outputs.wake_at_ms < self.wake_at_ms
        ):
            self.wake_at_ms = outputs.wake_at_ms
            delay_us = max(0, outputs.wake_at_ms - self.now_ms) * 1000
            self.sim.schedule(self.sim.now_us + self.cost_us + delay_us, WAKE, self.index, None)

    def admit(self, raws: list[bytes], *, from_client: bool) -> list[dict[str, Any]]:
        costs = self.sim.params.costs
        self.engine.unverified = self.backlog_txs + self.gossip_queued
        limit = self.engine.client_limit()
        gate: BatchGate | None = None
        if from_client:

            def pool_gate(sender: bytes, size: int, nonce: int) -> TxRejected | None:
                return self.mempool.gate(sender, size, nonce=nonce, client_limit=limit)

            gate = BatchGate(pool_gate)

        checked: list[Checked] = []
        for raw in raws:
            if not from_client and self.mempool.seen(raw):
                continue
            self.cost_us += costs.decode_us
            verified_before = len(self.verified)
            try:
                admitted = admit_raw(
                    raw,
                    self.rules,
                    self.verified,
                    gate=gate,
                    known=self.blocks.transactions,
                )
            except TxRejected as exc:
                checked.append(Checked(exc))
                continue
            finally:
                if len(self.verified) > verified_before:
                    self.cost_us += costs.verify_us
            held = None if gate is None else gate.admitted(admitted)
            if held is not None:
                checked.append(Checked(held))
                continue
            nonce = self.chain.account(admitted.sender).nonce
            checked.append(Checked(admitted, nonce, self.chain.height))
        if not checked:
            return []
        ready = self.engine.step(Submitted(tuple(checked), self.now_ms, from_client))
        results = self.engine.take_admission()
        for result in results:
            if result["status"] == "pending" and self.mempool.is_includable(
                bytes.fromhex(result["tx_hash"])
            ):
                self.sim.includable_at_admission.add(bytes.fromhex(result["tx_hash"]))
        self.handle([ready])
        return results


@dataclass(slots=True)
class _Sender:
    key: keys.PrivateKey
    next_nonce: int = 0
    gap_at: int | None = None
    #: A transaction refused with retry_after_ms: this client holds its later nonces
    #: until a validator takes it (as a client library managing nonces does).
    blocked_by: bytes | None = None
    held: list[bytes] = field(default_factory=list)


class LoadSim:
    """One seeded run. ``engine_factory`` builds each validator's engine (tests pass a
    subclass with an old rule to show what it did)."""

    def __init__(
        self, seed: int, params: LoadParams, *, engine_factory: EngineClass = Engine
    ) -> None:
        self.seed = seed
        self.params = params
        self.engine_class = engine_factory
        self.rng = random.Random(seed)
        self.now_us = 0
        self._queue: list[tuple[int, int, int, int, Any]] = []
        self._seq = 0
        self._trace = sha256(b"loadsim %d" % seed)
        self.signature_memo: dict[bytes, bool] = {}
        self.violations: list[str] = []
        workload = params.workload
        self.senders = [
            _Sender(keys.PrivateKey(sha256(b"loadsim sender %d" % i)))
            for i in range(workload.senders)
        ]
        for sender in self.senders:
            if self.rng.randrange(1000) < workload.gap_permille:
                sender.gap_at = self.rng.randrange(1, 4)
        validator_keys = [
            keys.PrivateKey(sha256(b"loadsim validator %d" % i)) for i in range(params.validators)
        ]
        self.probe_key = keys.PrivateKey(sha256(b"loadsim probe"))
        self.genesis: Genesis = build_genesis(
            CHAIN_ID,
            [(f"node{i}", k.public_key) for i, k in enumerate(validator_keys)],
            [(s.key.address, 10**15) for s in self.senders] + [(self.probe_key.address, 10**6)],
            genesis_time=GENESIS_TIME,
            consensus=ConsensusParams(
                view_change_timeout_ms=params.view_change_timeout_ms,
                max_block_txs=params.max_block_txs,
            ),
        )
        self.validators = [SimValidator(self, i, k) for i, k in enumerate(validator_keys)]
        self.report = LoadReport(seed, params.validators)
        self._accepted_at: dict[bytes, tuple[int, int]] = {}  # hash -> (validator, µs)
        self._latencies_ms: list[int] = []
        self._committed: dict[bytes, None] = {}
        self._dropped: dict[bytes, str] = {}
        self._burst_end_us = workload.burst_ms * 1000
        self._probe: tuple[bytes, int] | None = None
        self._committed_in_burst = 0
        self._kind = "start"
        self._sender_of: dict[bytes, _Sender] = {}
        self._retry_until_us = self._burst_end_us + min(workload.idle_ms, 20_000) * 500
        #: Accepted with no nonce gap before them at the accepting validator.
        self.includable_at_admission: set[bytes] = set()
        self._ready_latencies_ms: list[int] = []

    # ------------------------------------------------------------------ plumbing

    def schedule(self, at_us: int, kind: int, target: int, payload: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at_us, self._seq, kind, target, payload))

    def send(self, source: SimValidator, to: int, kind: int, payload: Any) -> None:
        delay = (self.params.latency_ms + self.rng.randrange(self.params.jitter_ms + 1)) * 1000
        self.schedule(self.now_us + source.cost_us + delay, kind, to, payload)

    def fetch(self, node: SimValidator, request: FetchRequest) -> None:
        best = max(
            (v for v in self.validators if v is not node), key=lambda v: (v.chain.height, -v.index)
        )
        blocks = best.chain.served(
            request.from_height, min(request.to_height, request.from_height + 31)
        )
        if blocks:
            self.send(node, node.index, FETCHED, blocks)

    def note_view_change(self, index: int, reason: str) -> None:
        if self.now_us <= self._burst_end_us:
            self.report.view_changes_burst += 1
        else:
            self.report.view_changes_idle += 1
        reasons = self.report.view_change_reasons
        reasons[reason] = reasons.get(reason, 0) + 1

    def note_commit(self, node: SimValidator, txs: tuple[Transaction, ...]) -> None:
        self._trace = sha256(self._trace + node.chain.head_hash)
        if node.index == 0:
            for tx in txs:
                self._committed[tx.hash] = None
            if self.now_us <= self._burst_end_us:
                self._committed_in_burst += len(txs)

    def note_answer(self, node: SimValidator, tx_hash: bytes, answer: dict[str, Any]) -> None:
        accepted = self._accepted_at.get(tx_hash)
        if answer["status"] == "dropped":
            self._dropped.setdefault(tx_hash, answer["code"])
            return
        if accepted is not None and accepted[0] == node.index:
            latency = (self.now_us + node.cost_us - accepted[1]) // 1000
            self._latencies_ms.append(latency)
            if tx_hash in self.includable_at_admission:
                self._ready_latencies_ms.append(latency)
        if self._probe is not None and tx_hash == self._probe[0] and node.index == 0:
            self.report.probe_ms = (self.now_us + node.cost_us - self._probe[1]) // 1000

    # ------------------------------------------------------------------ the run

    def run(self) -> LoadReport:
        workload = self.params.workload
        for v in self.validators:
            self._job(v, _starter(v))
            self.schedule(TICK_MS * 1000, TICK, v.index, None)
        interval_us = workload.batch * 1_000_000 // max(1, workload.rate_per_s)
        t = 0
        while t < self._burst_end_us:
            self.schedule(t, CLIENT, 0, None)
            t += interval_us
        end_us = self._burst_end_us + workload.idle_ms * 1000
        probe_us = end_us - 5_000_000
        while self._queue:
            at, _seq, kind, target, payload = heapq.heappop(self._queue)
            if at > end_us:
                break
            if self._probe is None and at >= probe_us:
                self.now_us = probe_us
                probe = Transaction.create(
                    self.probe_key, CHAIN_ID, 0, Transfer(b"\x01" * 20, 1), gas_limit=21_000
                )
                self._probe = (probe.hash, probe_us)
                self.schedule(probe_us, REQUEST, 0, [probe.raw])
            node = self.validators[target]
            self.now_us = at
            if kind == REPLY:
                self._on_reply(*payload)
            elif kind == CLIENT:
                raws = self._new_batch()
                if raws:
                    self.schedule(at, REQUEST, self.rng.randrange(len(self.validators)), raws)
            elif kind == RESUME:
                node.resume_scheduled = False
                if node.urgent or node.bulk:
                    queued_kind, queued = (node.urgent or node.bulk).popleft()
                    self._start(node, queued_kind, queued)
            elif node.cpu_free_us > at or node.urgent or node.bulk:
                if kind == REQUEST and node.backlog_txs + len(payload) > MAX_QUEUED_CLIENT_TXS:
                    # The node's bounded verification queue: refused at once, nothing done.
                    self._reply(node, payload, [_busy() for _ in payload], at_us=at)
                    continue
                (node.bulk if kind in (REQUEST, GOSSIP) else node.urgent).append((kind, payload))
                if kind == REQUEST:
                    node.backlog_txs += len(payload)
                elif kind == GOSSIP:
                    node.gossip_queued += len(payload)
            else:
                self._start(node, kind, payload)
            if (node.urgent or node.bulk) and not node.resume_scheduled:
                node.resume_scheduled = True
                self.schedule(max(node.cpu_free_us, at), RESUME, node.index, None)
        return self._finish()

    def _start(self, node: SimValidator, kind: int, payload: Any) -> None:
        if kind == REQUEST:
            node.backlog_txs = max(0, node.backlog_txs - len(payload)) if node.bulk else 0
        elif kind == GOSSIP:
            node.gossip_queued = max(0, node.gossip_queued - len(payload)) if node.bulk else 0
        self._dispatch(node, kind, payload)

    def _job(self, node: SimValidator, work: Callable[[], Any]) -> Any:
        node.cost_us = 0
        result = work()
        node.cpu_free_us = self.now_us + node.cost_us
        node.busy_us[self._kind] = node.busy_us.get(self._kind, 0) + node.cost_us
        node.cost_us = 0
        return result

    def _dispatch(self, node: SimValidator, kind: int, payload: Any) -> None:
        self._kind = _KIND_NAMES[kind]
        self._trace = sha256(
            self._trace + bytes([kind, node.index]) + self.now_us.to_bytes(8, "big")
        )
        if kind == TICK:
            self._job(node, lambda: node.handle([node.engine.step(Tick(node.now_ms))]))
            self.schedule(self.now_us + TICK_MS * 1000, TICK, node.index, None)
        elif kind == WAKE:
            node.wake_at_ms = None
            self._job(node, lambda: node.handle([node.engine.step(Wake(node.now_ms))]))
        elif kind == DELIVER:
            costs = self.params.costs

            def deliver() -> None:
                node.cost_us += costs.message_us
                node.handle([node.engine.step(PeerMessage(payload))])

            self._job(node, deliver)
        elif kind == GOSSIP:
            self._job(node, lambda: node.admit(payload, from_client=False))
        elif kind == FETCHED:
            self._job(node, lambda: node.handle([node.engine.step(Fetched(tuple(payload)))]))
        elif kind == REQUEST:
            raws = payload
            results = self._job(node, lambda: node.admit(raws, from_client=True))
            self._reply(node, raws, results)

    def _new_batch(self) -> list[bytes]:
        workload = self.params.workload
        raws: list[bytes] = []
        for _ in range(workload.batch):
            sender = self.senders[self.rng.randrange(len(self.senders))]
            if sender.gap_at is not None and sender.next_nonce == sender.gap_at:
                sender.next_nonce += 1  # this nonce is never sent: a gap forever
            tx = Transaction.create(
                sender.key,
                CHAIN_ID,
                sender.next_nonce,
                Transfer(b"\x02" * 20, 1 + self.rng.randrange(100)),
                gas_limit=21_000,
            )
            sender.next_nonce += 1
            self._sender_of[tx.raw] = sender
            if sender.blocked_by is not None:
                sender.held.append(tx.raw)
            else:
                raws.append(tx.raw)
            self.report.submitted += 1
            roll = self.rng.randrange(1000)
            if roll < workload.duplicate_permille:
                self._later(tx.raw)
            elif roll < workload.duplicate_permille + workload.conflict_permille:
                twin = Transaction.create(
                    sender.key, CHAIN_ID, tx.nonce, Transfer(b"\x03" * 20, 7), gas_limit=21_000
                )
                self._later(twin.raw)
        return raws

    def _later(self, raw: bytes) -> None:
        at = self.now_us + self.rng.randrange(1, 200) * 1000
        self.schedule(at, REQUEST, self.rng.randrange(len(self.validators)), [raw])

    def _reply(
        self,
        node: SimValidator,
        raws: list[bytes],
        results: list[dict[str, Any]],
        at_us: int | None = None,
    ) -> None:
        at = (node.cpu_free_us if at_us is None else at_us) + self.params.latency_ms * 1000
        self.schedule(at, REPLY, node.index, (node.index, raws, results))

    def _on_reply(self, index: int, raws: list[bytes], results: list[dict[str, Any]]) -> None:
        for raw, result in zip(raws, results, strict=True):
            sender = self._sender_of.get(raw)
            if result["status"] == "pending":
                tx_hash = bytes.fromhex(result["tx_hash"])
                if tx_hash not in self._accepted_at:
                    self._accepted_at[tx_hash] = (index, self.now_us)
                    self.report.accepted += 1
                if sender is not None and sender.blocked_by == raw:
                    sender.blocked_by = None
                    if sender.held:
                        held, sender.held = sender.held, []
                        target = self.rng.randrange(len(self.validators))
                        self.schedule(self.now_us, REQUEST, target, held)
            elif "retry_after_ms" in result:
                self.report.refused_backpressure += 1
                if self.now_us < self._retry_until_us:
                    if sender is not None and sender.blocked_by is None:
                        sender.blocked_by = raw
                    at = self.now_us + result["retry_after_ms"] * 1000
                    self.schedule(at, REQUEST, self.rng.randrange(len(self.validators)), [raw])
            else:
                self.report.refused_other += 1

    def _finish(self) -> LoadReport:
        report = self.report
        report.committed = len(self._committed)
        dropped: dict[str, int] = {}
        for code in self._dropped.values():
            dropped[code] = dropped.get(code, 0) + 1
        report.dropped = dict(sorted(dropped.items()))
        open_ = [
            h for h in self._accepted_at if h not in self._committed and h not in self._dropped
        ]
        gapped = [
            h
            for h in open_
            if any(h in v.mempool and not v.mempool.is_includable(h) for v in self.validators)
        ]
        report.behind_gaps = len(gapped)
        report.stranded = len(open_) - len(gapped)
        burst_s = max(1, self.params.workload.burst_ms // 1000)
        report.goodput_per_s = self._committed_in_burst // burst_s
        report.p50_ms, report.p99_ms = _percentiles(self._latencies_ms)
        report.ready_p50_ms, report.ready_p99_ms = _percentiles(self._ready_latencies_ms)
        report.final_mempools = [len(v.mempool) for v in self.validators]
        report.heights = [v.chain.height for v in self.validators]
        report.cpu_ms = {k: v // 1000 for k, v in sorted(self.validators[0].busy_us.items())}
        report.view_change_reasons = dict(sorted(report.view_change_reasons.items()))
        report.trace_hash = self._trace.hex()
        return report


def _percentiles(values: list[int]) -> tuple[int, int]:
    ordered = sorted(values)
    if not ordered:
        return 0, 0
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, len(ordered) * 99 // 100)]


def _starter(v: SimValidator) -> Callable[[], None]:
    return lambda: v.handle([v.engine.start()])


def run_load(seed: int, params: LoadParams, *, engine_factory: EngineClass = Engine) -> LoadReport:
    return LoadSim(seed, params, engine_factory=engine_factory).run()
