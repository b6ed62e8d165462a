"""The validator process: the trio driver that turns the pure consensus core into a node.

Theory of operation. The node's logic is the sans-I/O engine (ledger/engine/engine.py):
consensus core, mempool, proposer policy, executed-block tree. This module only executes
what it asks for. One task, the *consensus loop*, owns the engine; everything that changes
its state (peer messages, ticks, fetched blocks, client and gossip admissions, wake-ups)
is applied there, in order, and each Ready is handled to completion following the driver
contract of consensus/replica.py: persist, then commit, then send, then validate and
propose; queued events are fed together and their outputs acted on as one batch. The
engine's work items — SQLite writes with fsync, executing a block, verifying signatures —
run in worker threads while the loop awaits them (small jobs inline, ledger/node/support.py),
so the loop never interleaves two state changes and stays free for the network and API.

Around it: the peer network (ledger/node/transport.py, following the set in state:
ledger/node/membership.py), admission off the event loop (ledger/node/admission.py), gossip,
catch-up and per-peer limits (ledger/node/peer_limits.py), the API (ledger/node/backend.py).

House rules: nothing acknowledged is lost (a client hears "committed" only after the block's
SQLite transaction returned); a peer's bad input is counted and dropped; every queue is
bounded; our own broken invariants crash the node loudly.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio

from consensus.config import ReplicaConfig
from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    ProposalRequest,
    Ready,
    ValidateRequest,
    merge_readies,
)
from consensus.replica import Replica
from crypto.encoding import DecodeError
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.execute import ChainRules
from ledger.chain.store import Store
from ledger.chain.validators import VALIDATOR_PREFIX
from ledger.config import NodeConfig
from ledger.engine.admission import VerifiedCache
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
from ledger.engine.speculative import (
    BuildWork,
    ValidateWork,
    run_build,
    run_validation,
)
from ledger.node import epochs, persist, wire
from ledger.node.admission import check_batch, commit_result, refused
from ledger.node.membership import genesis_names, peer_id, refresh_peers
from ledger.node.metrics import Instruments
from ledger.node.peer_limits import (
    BYZANTINE_GOSSIP_CODES,
    Fetcher,
    GossipInbox,
    PeerLimits,
    serve_blocks,
)
from ledger.node.replay import (
    REPLAY_MAX_BLOCKS,
    REPLAY_MAX_TXS,
    prepare_fetched,
    replay,
    write_committed,
)
from ledger.node.retire import Retirement, refusals
from ledger.node.statesync import SnapshotServer, StateSync, min_blocks_behind, route_message
from ledger.node.support import (
    APPROX_TX_BYTES,
    NodeHalted,
    OneShotTimer,
    Waiters,
    log_notes,
    offload,
    syncing_status,
)
from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.node")

TICK_MS: Final = 100  # the consensus core's clock: tick() every this many milliseconds
#: Events waiting for the consensus loop (messages, ticks, fetched blocks, admissions).
MAX_PENDING_EVENTS: Final = 20_000
MAX_INBOUND_MESSAGES: Final = 20_000  # peer messages waiting for the intake task
#: The gossip flusher also runs at least this often (it is normally woken by admissions).
GOSSIP_INTERVAL_MS: Final = 20
#: The consensus loop feeds at most this many queued events to the core before acting.
MAX_EVENTS_PER_BATCH: Final = 256
#: Consensus records are pruned every this many commits.
PRUNE_EVERY_BLOCKS: Final = 32
#: Client transactions being verified at once (queued for or inside worker threads); a
#: submission beyond this is refused with ``busy`` before anything is decoded.
MAX_VERIFYING_TXS: Final = 8_000
#: Without a commit for this long, ask a peer for blocks above the head (see _maybe_probe).
PROBE_AFTER_MS: Final = 5_000
#: After a state sync that found nothing better than replaying, wait this long to ask again.
STATE_SYNC_RETRY_S: Final = 30.0


class Node:
    """One validator: the engine, plus storage, peers, gossip and catch-up."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        key: PrivateKey,
        store: Store,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        index = peer_id(genesis, key.public_key)  # membership: the replica checks it
        self.config = config
        self.genesis = genesis
        self.key = key
        self.index = index
        self.store = store
        self.rules = ChainRules.from_genesis(genesis)
        self.names = genesis_names(genesis)
        self.names[index] = config.name
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._record_keys: set[str] = set()
        self._assemble_engine()
        self.verified = VerifiedCache()
        self.waiters = Waiters()
        self.net: PeerNetwork | None = None
        self._nursery: trio.Nursery | None = None
        self._events_send, self._events_recv = trio.open_memory_channel[Any](MAX_PENDING_EVENTS)
        self._inbound_send, self._inbound_recv = trio.open_memory_channel[tuple[int, bytes]](
            MAX_INBOUND_MESSAGES
        )
        self._gossip: list[bytes] = []
        self.limits = PeerLimits()
        self._wake = OneShotTimer(self._signal_wake)
        self._gossip_wakeup = trio.Event()
        self.fetcher = Fetcher(self.index)
        self._commits_since_prune = 0
        self._verifying = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.metrics = Instruments()  # histograms and clocks fed below (ledger/node/metrics.py)
        self.gossip_in = GossipInbox(self.limits, self.counters)
        self.started = False
        self.last_commit_ms = 0
        self.state_sync = StateSync(genesis, index, self.counters)
        self.state_sync.names = self.names
        self.snapshots = SnapshotServer(store, self.counters)
        #: State sync is considered when this many blocks behind (else blocks are replayed).
        self.state_sync_min_blocks = min_blocks_behind(genesis)
        self._next_state_sync_s = 0.0
        self._last_probe_ms = 0
        self._preparing = trio.Lock()  # catch-up replies are decoded and checked in turn
        #: Set at the switch if this validator was voted out (ledger/node/retire.py).
        self.retirement: Retirement | None = None

    def _assemble_engine(self) -> None:
        """The engine from the store (ledger/node/epochs.py): at start, and again after a
        state sync replaced the store's contents."""
        self.engine, self._record_keys = epochs.assemble(
            self.store, self.genesis, self.rules, self.key, self.config, TICK_MS
        )
        self.mempool = self.engine.mempool
        self._use_replica()
        self.blocks = self.engine.blocks

    def _refresh_peers(self) -> None:  # the peer table follows the set in state
        refresh_peers(self.net, self.store, self.rules.initial_set, self.names, self.genesis)

    def _use_replica(self) -> None:
        self.replica = self.engine.replica
        self.replica_config = self.replica.config
        self._peer_ids = epochs.peer_ids(self.replica_config, self.genesis)

    async def _switch_epoch(self) -> Ready:
        """The committed head ended the epoch: drop the old epoch's consensus records, start
        the next epoch's replica on that block (docs/CONSENSUS.md §12)."""
        config = self.engine.epoch_ended
        assert config is not None
        epoch = epochs.active_set(self.store, self.rules).epoch
        records = persist.epoch_switch_records(self._record_keys, epoch)
        await trio.to_thread.run_sync(self.store.write_consensus_meta, records)
        self._record_keys.clear()
        if self.key.public_key not in config.validators:
            return self._retire(config)
        ready = self.engine.next_epoch(Replica(config, self.key))
        self._use_replica()
        epochs.log_switch(config, self.replica.index, epoch)
        return ready

    def _retire(self, config: ReplicaConfig) -> Ready:
        """Voted out: the old epoch's replica stays, retiring, until the new set took over
        (ledger/node/retire.py, whose task ends the node by raising ``Retired``)."""
        assert self._nursery is not None and self.net is not None
        self.retirement = Retirement(
            config, self.replica_config, self.engine.blocks.max_bytes, self.counters
        )
        self._nursery.start_soon(self.retirement.run, self.net, self.names)
        return self.retirement.start(self.replica)

    def _step(self, event: Any) -> Ready:
        if self.retirement is not None:  # the old replica only: no engine, no mempool
            return self.retirement.step(self.replica, event)
        return self.engine.step(event)

    # ------------------------------------------------------------------ running

    async def run(
        self, net: PeerNetwork, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Drive the node until cancelled; ``net`` is the open peer network."""
        self.net = net
        self._refresh_peers()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            nursery.start_soon(self._peer_intake)
            nursery.start_soon(self._gossip_intake)
            nursery.start_soon(self._gossip_flusher)
            nursery.start_soon(self._consensus_loop)
            self.started = True
            task_status.started()

    def fail(self, error: BaseException) -> None:
        """Stop the node because ``error`` says its store cannot be trusted (found while
        serving a request): :meth:`run` raises :class:`NodeHalted` at once."""
        if self._nursery is None:
            raise NodeHalted(str(error)) from error

        async def stop() -> None:
            raise NodeHalted(str(error)) from error

        self._nursery.start_soon(stop)

    def on_peer_message(self, sender: int, message: bytes) -> None:
        """Transport callback (on the event loop, must not block)."""
        try:
            self._inbound_send.send_nowait((sender, message))
        except trio.WouldBlock:
            self.counters["inbound.dropped_full"] += 1

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_MS / 1000)
            try:
                self._events_send.send_nowait(Tick(self._clock_ms()))
            except trio.WouldBlock:
                self.counters["events.tick_dropped"] += 1

    def _signal_wake(self) -> None:
        try:
            self._events_send.send_nowait(Wake(self._clock_ms()))
        except trio.WouldBlock:
            self.counters["events.wake_dropped"] += 1

    # ------------------------------------------------------------------ peer intake

    async def _peer_intake(self) -> None:
        """Route peer messages; never waits on anything but the consensus loop's queue.

        Gossip admission (signature checks) and catch-up serving (block reads) run in their
        own tasks, so a peer sending either cannot delay the consensus messages behind them.
        """
        async for sender, message in self._inbound_recv:
            try:
                family, body = wire.split(message)
                if family in wire.STATE_SYNC_FAMILIES:
                    assert self._nursery is not None and self.net is not None
                    route_message(
                        self.state_sync,
                        self.snapshots,
                        self.net,
                        self._nursery,
                        sender,
                        family,
                        body,
                    )
                elif self.state_sync.active and family in wire.PAUSED_WHILE_SYNCING:
                    self.counters["statesync.paused_messages"] += 1
                elif family is wire.Family.CONSENSUS:
                    await self._events_send.send(PeerMessage(body))
                elif family is wire.Family.TX_GOSSIP:
                    if self.retirement is None:  # a retiring validator takes no transactions
                        self.gossip_in.put(sender, wire.decode_tx_gossip(body))
                elif family is wire.Family.BLOCKS_WANTED:
                    self._queue_serve(sender, wire.BlocksWanted.decode(body))
                else:
                    blocks = wire.decode_blocks(body)
                    if self.retirement is not None:
                        self.retirement.on_blocks(sender, blocks)
                    elif self.fetcher.replied():
                        self._fetch_following(blocks)
                        assert self._nursery is not None
                        self._nursery.start_soon(self._deliver_fetched, blocks)
                    else:
                        self.counters["peer.unsolicited_blocks"] += 1
            except DecodeError as exc:
                self.counters["peer.malformed"] += 1
                log.warning("malformed message from %s: %s", self.names[sender], exc)

    async def _maybe_state_sync(self) -> None:
        """Far behind (a wiped or new validator, or one gone for long): install the newest
        certified snapshot from the peers instead of replaying every block
        (ledger/node/statesync.py), then rebuild the engine on the new head."""
        replica, now = self.replica, time.monotonic()
        behind = replica.catchup_target - replica.committed_height
        if (
            not self.config.state_sync
            or behind <= self.state_sync_min_blocks
            or now < self._next_state_sync_s
        ):
            return
        assert self.net is not None
        self._next_state_sync_s = now + STATE_SYNC_RETRY_S
        log.info(
            "%d blocks behind (head %d, network at least %d): looking for a snapshot",
            behind, replica.committed_height, replica.catchup_target,
        )  # fmt: skip
        if await self.state_sync.run(self.net, self.store, min_ahead=self.state_sync_min_blocks):
            self._assemble_engine()
            self._refresh_peers()
            self._next_state_sync_s = 0.0
            # The blocks after the snapshot are asked for at once (verified like any fetched
            # block; a peer with none answers empty), before the new replica asks for what
            # it knows of: it learns the network's height from its peers again.
            self.fetcher.cancel()
            height = self.replica.committed_height
            self._start_fetch(FetchRequest(height + 1, height + wire.MAX_BLOCKS_PER_REPLY))
            await self._handle([self.engine.start()])

    def _queue_serve(self, sender: int, wanted: wire.BlocksWanted) -> None:
        wait_s = self.limits.start_serving(sender, trio.current_time())
        if wait_s is None:
            self.counters["catchup.requests_refused"] += 1
            return
        assert self._nursery is not None
        self._nursery.start_soon(
            serve_blocks, self.net, self.store, self.limits, self.counters, sender, wanted, wait_s
        )

    # ------------------------------------------------------------------ admission and gossip

    async def _admitted(self, checked: list[Checked]) -> list[dict[str, Any]]:
        """Hand a client's checked transactions to the engine (through the consensus loop,
        in order with everything else) and return its per-transaction answers."""
        done = trio.Event()
        box: list[list[dict[str, Any]]] = []
        await self._events_send.send((Submitted(tuple(checked), self._clock_ms(), True), done, box))
        await done.wait()
        return box[0]

    async def admit(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Client submissions: verify in a worker thread, then add to the mempool and gossip.

        Refused before any work while too many transactions are being verified (the worker
        threads are the bottleneck, and a queue in front of them only adds latency)."""
        syncing = self.state_sync.active
        if syncing or self._verifying + len(raws) > MAX_VERIFYING_TXS:
            self.counters["admission.syncing" if syncing else "admission.busy_verifying"] += len(
                raws
            )
            return refused(len(raws), syncing=syncing)
        engine = self.engine
        engine.unverified = self._verifying + self.gossip_in.queued_txs
        limit = engine.client_limit()
        self._verifying += len(raws)
        try:
            checked = await offload(
                lambda: check_batch(
                    raws,
                    verified=self.verified,
                    rules=self.rules,
                    store=self.store,
                    gate=lambda sender, size, nonce: self.mempool.gate(
                        sender, size, nonce=nonce, client_limit=limit
                    ),
                ),
                len(raws),
            )
        finally:
            self._verifying -= len(raws)
        results = await self._admitted(checked)
        self.metrics.admitted(checked, results, time.monotonic())
        for item, result in zip(checked, results, strict=True):
            if (
                not isinstance(item.outcome, Exception)
                and result["status"] == "rejected"
                and result["code"] in ("nonce_too_low", "duplicate")
            ):
                committed = await trio.to_thread.run_sync(self.store.get_receipt, item.outcome.hash)
                if committed is not None:  # a resubmission of something already committed
                    receipt, height, _ = committed
                    result.update(commit_result(receipt, height))
        return results

    async def _gossip_intake(self) -> None:
        async for sender, raws in self.gossip_in:
            await self._admit_gossip(sender, raws)

    async def _admit_gossip(self, sender: int, raws: list[bytes]) -> None:
        seen = self.mempool.seen
        fresh = [r for r in raws if not seen(r)]
        if not fresh:
            return
        self._verifying += len(fresh)
        try:
            checked = await offload(
                lambda: check_batch(
                    fresh,
                    verified=self.verified,
                    rules=self.rules,
                    store=self.store,
                    stop_codes=BYZANTINE_GOSSIP_CODES,
                    known=self.blocks.transactions,
                ),
                len(fresh),
            )
        finally:
            self._verifying -= len(fresh)
        # Handed over without waiting for the consensus loop: gossip intake must keep
        # verifying while the loop writes a block, or a primary busy committing starves
        # itself of the transactions it should propose next (issue 12's last view change:
        # an empty mempool at the primary, 7,632 transactions in its gossip inbox).
        await self._events_send.send(Submitted(tuple(checked), self._clock_ms(), False))
        self.counters["gossip.received"] += len(fresh)
        self.counters["gossip.rejected"] += sum(
            1 for item in checked if isinstance(item.outcome, Exception)
        )
        bad = next(
            (
                item.outcome.code
                for item in checked
                if isinstance(item.outcome, Exception)
                and item.outcome.code in BYZANTINE_GOSSIP_CODES
            ),
            None,
        )
        if bad is not None:
            # An honest validator checks a transaction before relaying it: this one is not.
            penalty = self.limits.ban_gossip(sender, trio.current_time())
            self.counters["gossip.peers_penalised"] += 1
            log.warning(
                "%s gossiped a transaction no honest validator relays (%s): ignoring its "
                "gossip for %.0f s", self.names[sender], bad, penalty,
            )  # fmt: skip

    async def _gossip_flusher(self) -> None:
        while True:
            with trio.move_on_after(GOSSIP_INTERVAL_MS / 1000):
                await self._gossip_wakeup.wait()
            self._gossip_wakeup = trio.Event()
            while self._gossip and self.net is not None:
                batch, self._gossip = (
                    self._gossip[: wire.MAX_GOSSIP_TXS],
                    self._gossip[wire.MAX_GOSSIP_TXS :],
                )
                self.net.broadcast(wire.encode_tx_gossip(batch), bulk=True)
                self.counters["gossip.sent"] += len(batch)

    # ------------------------------------------------------------------ the consensus loop

    async def _consensus_loop(self) -> None:
        """Feed events to the engine; everything queued is fed before the outputs are acted on.

        Under load many votes wait in the queue: stepping the (pure, fast) core through all
        of them first and then handling their outputs together turns one fsynced write of
        consensus records per message into one per batch (persist still precedes every
        send of the batch, the core's contract).
        """
        await self._handle([self.engine.start()])
        while True:
            event = await self._events_recv.receive()
            readies: list[Ready] = []
            while True:
                if isinstance(event, tuple):  # an admission: its caller waits for the answers
                    submitted, done, box = event
                    readies.append(self._step(submitted))
                    retiring = self.retirement
                    box.append(
                        self.engine.take_admission()
                        if retiring is None
                        else refusals(len(submitted.checked), retiring.removed_at)
                    )
                    done.set()
                else:
                    readies.append(self._step(event))
                if len(readies) >= MAX_EVENTS_PER_BATCH:
                    break
                try:
                    event = self._events_recv.receive_nowait()
                except trio.WouldBlock:
                    break
            self.counters["consensus.batches"] += 1
            await self._handle(readies)
            await self._maybe_state_sync()
            self._maybe_probe()

    def _maybe_probe(self) -> None:
        """No commit for a while: ask a peer for blocks above our head anyway (a replica left
        in an old epoch cannot verify the new set's STATUS: it learns it is behind only from
        the blocks, commits up to the switch block, switches, and catches up as usual)."""
        now = self._clock_ms()
        if now - max(self.last_commit_ms, self._last_probe_ms) < PROBE_AFTER_MS or self.retirement:
            return
        self._last_probe_ms = now
        height = self.replica.committed_height
        self._start_fetch(FetchRequest(height + 1, height + wire.MAX_BLOCKS_PER_REPLY))

    def _after_step(self) -> None:
        """Act on the engine's side outputs: answers, gossip, wake-ups."""
        outputs = self.engine.take_outputs()
        for tx_hash, answer in outputs.answers:
            self.waiters.answer(tx_hash, answer)
        if outputs.gossip:
            self._gossip.extend(outputs.gossip)
            # Wake the flusher now: it sends whatever accumulated by the time it runs, so
            # batching comes from load, not from a timer that adds latency.
            self._gossip_wakeup.set()
        if outputs.wake_at_ms is not None and self._nursery is not None:
            self._wake.arm(self._nursery, max(0, outputs.wake_at_ms - self._clock_ms()) / 1000)

    async def _handle(self, batch: list[Ready]) -> None:
        """Act on the core's outputs in its order: persist, commit, send, validate, propose,
        fetch. A batch of Readies is acted on as one (their records in one transaction);
        what validation and proposals return is the next batch."""
        while batch:
            ready = merge_readies(batch) if len(batch) > 1 else batch[0]
            batch = []
            if ready.halt is not None:
                raise NodeHalted(
                    f"{ready.halt}: this node's state at {self.store.path} differs from what "
                    "the validators certified (a damaged store, or a bug); stopping"
                )
            log_notes(ready, self.mempool, self.gossip_in.queued_txs, self.counters)
            self.metrics.on_ready(ready, len(self._peer_ids) - 1, time.monotonic())
            records = persist.batch_records(ready.persist) if ready.persist is not None else {}
            if records and not ready.committed:
                # A few small rows: cheaper inline than a worker-thread round trip.
                self.store.write_consensus_meta(records)
                await trio.lowlevel.checkpoint()
                self._record_keys.update(records)
            if ready.committed:
                batch.extend(await self._commit(ready.committed, records))
            if self.net is not None:
                epochs.send_routed(self.net, ready.messages, self._peer_ids, self.index)
            for request in ready.validate:
                batch.append(await self._validate(request))
            if ready.propose is not None:
                batch.append(await self._propose(ready.propose))
            if ready.fetch is not None:
                self._start_fetch(ready.fetch)
            self._after_step()
            if not batch and self.engine.epoch_ended is not None and self.retirement is None:
                batch.append(await self._switch_epoch())

    async def _validate(self, request: ValidateRequest) -> Ready:
        run = self.engine.replay_work(request, max_blocks=REPLAY_MAX_BLOCKS, max_txs=REPLAY_MAX_TXS)
        if run is not None:  # certified blocks from catch-up: a run of them at once
            timed = self.metrics.executed
            return await replay(self.engine, run, self.rules, self.verified, self.counters, timed)
        work = self.engine.validation_work(request, self._clock_ms())
        if not isinstance(work, ValidateWork):
            return work
        rules, signature_ok = self.rules, self.verified.signature_ok

        def check() -> tuple[Any, int]:
            started = time.perf_counter_ns()
            outcome = run_validation(work, rules, signature_ok)
            return outcome, (time.perf_counter_ns() - started) // 1000

        outcome, elapsed_us = await offload(check, len(request.payload) // APPROX_TX_BYTES)
        self.metrics.executed("validate", elapsed_us / 1e6)
        ready = self.engine.step(Validated(request, outcome, elapsed_us))
        if isinstance(outcome, str):
            log.warning("rejecting %s", self.engine.last_rejection)
        return ready

    async def _propose(self, request: ProposalRequest) -> Ready:
        work = self.engine.proposal_work(request, self._clock_ms())
        if not isinstance(work, BuildWork):
            return work
        rules, signature_ok = self.rules, self.verified.signature_ok
        index = self.replica.index  # the proposer's index in the epoch's set

        def build() -> tuple[Any, int]:
            started = time.perf_counter_ns()
            built = run_build(work, rules, index, signature_ok)
            return built, (time.perf_counter_ns() - started) // 1000

        (executed, skipped), elapsed_us = await offload(build, len(work.candidates))
        self.metrics.executed("build", elapsed_us / 1e6)
        return self.engine.step(Built(request, executed, tuple(skipped), elapsed_us))

    async def _commit(
        self, committed: tuple[CommittedBlock, ...], records: dict[str, bytes | None]
    ) -> list[Ready]:
        """Write every block of a Ready in ONE transaction (ledger/node/replay.py), then
        tell the engine, in order; a client hears of its transaction only after that."""
        works = [self.engine.commit_work(block) for block in committed]
        store, rules, verified = self.store, self.rules, self.verified
        started = time.monotonic()
        executed = await offload(
            lambda: write_committed(store, committed, works, records, rules, verified),
            sum(len(block.payload) for block in committed) // APPROX_TX_BYTES,
        )
        now, names = time.monotonic(), self.replica_config.name
        share = (now - started) / len(committed)  # one write: each block gets its share
        if any(k[:1] == VALIDATOR_PREFIX for e in executed for k in e.overlay.writes):
            self._refresh_peers()
        self._record_keys.update(records)
        self.last_commit_ms = self._clock_ms()
        tip = self.store.tip()  # the last block's: the engine's results above it rebase on it
        readies = []
        for block, result in zip(committed, executed, strict=True):
            signers = [names(i) for i, _ in block.votes]
            self.metrics.committed(result.block, len(block.payload), signers, share, now)
            self.counters["blocks.committed"] += 1
            self.counters["txs.committed"] += len(result.block.transactions)
            readies.append(self.engine.step(Persisted(block, result, tip, self.last_commit_ms)))
        self._commits_since_prune += len(committed)
        if self._commits_since_prune >= PRUNE_EVERY_BLOCKS:
            self._commits_since_prune = 0
            await self._prune_records()
        return readies

    async def _prune_records(self) -> None:
        doomed = persist.prunable_now(self._record_keys, self.replica.status())
        if doomed:
            await trio.to_thread.run_sync(self.store.write_consensus_meta, dict.fromkeys(doomed))
            self._record_keys.difference_update(doomed)

    # ------------------------------------------------------------------ catch-up

    def syncing(self) -> dict[str, Any] | bool:
        """False when up to date; else what ``/v1/status`` shows (ledger/node/support.py)."""
        replica = self.replica
        return syncing_status(
            self.state_sync.status(), replica.catchup_target, replica.committed_height
        )

    def _start_fetch(self, request: FetchRequest) -> None:
        held = self.replica.fetched_block
        if (
            self.net is not None
            and self._nursery is not None
            and self.fetcher.ask(self.net, self._nursery, request, lambda h: held(h) is not None)
        ):
            self.counters["catchup.requests"] += 1

    async def _deliver_fetched(self, blocks: list[tuple[bytes, bytes]]) -> None:
        """Decoded and signature-checked off the loop first (ledger/node/replay.py)."""
        with self.fetcher.arriving(blocks, self.replica.committed_height):
            async with self._preparing:  # one at a time, in arrival order
                limit, config = self.engine.blocks.max_bytes, self.replica.config
                decoded = await prepare_fetched(blocks, config, limit, self.verified)
                await self._events_send.send(Fetched(tuple(blocks), decoded))

    def _fetch_following(self, blocks: list[tuple[bytes, bytes]]) -> None:
        """A full catch-up reply arrived: ask for the blocks after it now, so they arrive
        while these are replayed (ledger/node/replay.py) instead of after."""
        following = self.fetcher.following(blocks, self.replica.committed_height)
        if following is not None:
            self._start_fetch(following)
