"""The validator process: the trio driver that turns the pure consensus core into a node.

Theory of operation. One task, the *consensus loop*, owns the replica and the chain of
executed-but-uncommitted blocks. Everything that changes consensus state arrives there as
an event on one bounded channel (peer messages, ticks, fetched blocks, "the mempool
changed") and is handled to completion, in order, following the driver contract of
consensus/replica.py: persist, then commit, then send, then validate and propose; queued
events are fed to the core together and their outputs acted on as one batch. Work that
blocks — SQLite writes with fsync, executing a block, verifying signatures — runs in worker
threads while the loop awaits it (small jobs inline, ledger/node/support.py), so the loop
never interleaves two state changes and the event loop stays free for the network and API.

Around it: the peer network (ledger/node/transport.py), the mempool with admission
(ledger/node/admission.py) and batched gossip, catch-up and per-peer limits
(ledger/node/peer_limits.py), and the HTTP API (ledger/node/backend.py).

House rules: nothing acknowledged is lost (a client hears "committed" only after the block's
SQLite transaction returned); a peer's bad input is counted and dropped, never trusted; every
queue is bounded; our own broken invariants crash the node loudly.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any, Final

import trio

from consensus.config import ReplicaConfig
from consensus.messages import CommitProof
from consensus.ready import CommittedBlock, FetchRequest, ProposalRequest, Ready, ValidateRequest
from consensus.records import CommittedHead
from consensus.replica import Replica
from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.execute import (
    ChainRules,
    ChainTip,
    ExecutedBlock,
    InvalidBlock,
    build_block,
    validate_block,
)
from ledger.chain.store import Store
from ledger.chain.types import (
    Block,
    CommitCertificate,
    Transaction,
    TxRejected,
)
from ledger.config import NodeConfig
from ledger.node import persist, wire
from ledger.node.admission import (
    PERMANENT_SKIPS,
    Checked,
    check_batch,
    commit_result,
    decode_fetched,
)
from ledger.node.mempool import Mempool
from ledger.node.peer_limits import (
    BYZANTINE_GOSSIP_CODES,
    Fetcher,
    GossipInbox,
    PeerLimits,
    read_blocks,
)
from ledger.node.support import (
    APPROX_TX_BYTES,
    NodeHalted,
    OneShotTimer,
    VerifiedCache,
    Waiter,
    ancestor_hashes,
    block_digest,
    merge_readies,
    offload,
)
from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.node")

#: The consensus core's clock: tick() every this many milliseconds.
TICK_MS: Final = 100
#: Events waiting for the consensus loop (messages, ticks, fetched blocks).
MAX_PENDING_EVENTS: Final = 20_000
#: Peer messages waiting for the intake task.
MAX_INBOUND_MESSAGES: Final = 20_000
#: The gossip flusher also runs at least this often (it is normally woken by admissions).
GOSSIP_INTERVAL_MS: Final = 20
#: While blocks are in flight, the primary proposes another only when this many new
#: transactions wait, or this long after its previous proposal (see Node._propose).
BATCH_TARGET_TXS: Final = 64
PROPOSAL_INTERVAL_S: Final = 0.025
#: The consensus loop feeds at most this many queued events to the core before acting.
MAX_EVENTS_PER_BATCH: Final = 256
#: Consensus records are pruned every this many commits.
PRUNE_EVERY_BLOCKS: Final = 32


class Node:
    """One validator: consensus, execution, storage, mempool, gossip and catch-up."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        genesis: Genesis,
        key: PrivateKey,
        store: Store,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        index = genesis.validator_index(key.public_key)
        if index is None:
            raise ValueError("this node's validator key is not in the genesis validator set")
        self.config = config
        self.genesis = genesis
        self.key = key
        self.index = index
        self.store = store
        self.rules = ChainRules.from_genesis(genesis)
        self.names = tuple(v.name for v in genesis.validators)
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        params = genesis.consensus
        self.replica_config = ReplicaConfig(
            chain_id=genesis.chain_id,
            validators=self.rules.validators,
            genesis_height=genesis.initial_height - 1,
            genesis_digest=genesis.hash(),
            genesis_state_root=store.genesis_state_root,
            block_digest=block_digest,
            checkpoint_interval=params.checkpoint_interval,
            watermark_window=params.watermark_window,
            max_pipeline=params.max_pipeline,
            view_change_timeout_ms=params.view_change_timeout_ms,
            max_view_change_timeout_ms=params.max_view_change_timeout_ms,
            max_block_bytes=params.max_block_bytes,
            tick_ms=TICK_MS,
            validator_names=self.names,
        )
        items = store.consensus_meta_items()
        self._record_keys: set[str] = {k for k, _ in items}
        certificate = (
            store.get_certificate(store.head_height)
            if store.head_height >= genesis.initial_height
            else None
        )
        head = CommittedHead(
            store.head_height,
            store.head_hash,
            None
            if certificate is None
            else CommitProof(
                certificate.view, certificate.height, certificate.block_hash, certificate.votes
            ),
        )
        self.replica = Replica.restore(
            self.replica_config, key, persist.load_persisted(items), head
        )
        self.mempool = Mempool(max_txs=config.mempool_max_txs, max_bytes=config.mempool_max_bytes)
        self.verified = VerifiedCache()
        self.executed: dict[tuple[int, bytes], ExecutedBlock] = {}
        self.waiters: dict[bytes, list[Waiter]] = {}
        self.net: PeerNetwork | None = None
        self._nursery: trio.Nursery | None = None
        self._events_send, self._events_recv = trio.open_memory_channel[tuple[Any, ...]](
            MAX_PENDING_EVENTS
        )
        self._inbound_send, self._inbound_recv = trio.open_memory_channel[tuple[int, bytes]](
            MAX_INBOUND_MESSAGES
        )
        self._gossip: list[bytes] = []
        self.limits = PeerLimits()
        self._last_proposal_at = float("-inf")
        self._repropose = OneShotTimer(self._signal_pending)
        self._gossip_wakeup = trio.Event()
        self._pending_signalled = False
        self.fetcher = Fetcher(self.index)
        self._commits_since_prune = 0
        self.counters: collections.Counter[str] = collections.Counter()
        self.gossip_in = GossipInbox(self.limits, self.counters)
        self.started = False
        self.last_commit_ms = 0

    # ------------------------------------------------------------------ running

    async def run(
        self, net: PeerNetwork, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Drive the node until cancelled; ``net`` is the open peer network."""
        self.net = net
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
                self._events_send.send_nowait(("tick",))
            except trio.WouldBlock:
                self.counters["events.tick_dropped"] += 1

    def _signal_pending(self) -> None:
        if not self._pending_signalled:
            try:
                self._events_send.send_nowait(("pending",))
                self._pending_signalled = True
            except trio.WouldBlock:
                self.counters["events.pending_dropped"] += 1

    # ------------------------------------------------------------------ peer intake

    async def _peer_intake(self) -> None:
        """Route peer messages; never waits on anything but the consensus loop's queue.

        Gossip admission (signature checks) and catch-up serving (block reads) run in their
        own tasks, so a peer sending either cannot delay the consensus messages behind them.
        """
        async for sender, message in self._inbound_recv:
            try:
                family, body = wire.split(message)
                if family is wire.Family.CONSENSUS:
                    await self._events_send.send(("consensus", body))
                elif family is wire.Family.TX_GOSSIP:
                    self.gossip_in.put(sender, wire.decode_tx_gossip(body))
                elif family is wire.Family.BLOCKS_WANTED:
                    self._queue_serve(sender, wire.BlocksWanted.decode(body))
                else:
                    blocks = wire.decode_blocks(body)
                    if self.fetcher.replied():
                        await self._events_send.send(("fetched", sender, blocks))
                    else:
                        self.counters["peer.unsolicited_blocks"] += 1
            except DecodeError as exc:
                self.counters["peer.malformed"] += 1
                log.warning("malformed message from %s: %s", self.names[sender], exc)

    def _queue_serve(self, sender: int, wanted: wire.BlocksWanted) -> None:
        if not self.limits.start_serving(sender, trio.current_time()):
            self.counters["catchup.requests_refused"] += 1
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_blocks, sender, wanted)

    async def _serve_blocks(self, sender: int, wanted: wire.BlocksWanted) -> None:
        sent = 0
        try:
            blocks = await trio.to_thread.run_sync(read_blocks, self.store, wanted)
            if blocks and self.net is not None:
                reply = wire.encode_blocks(blocks)
                self.net.send(sender, reply)
                self.counters["catchup.blocks_served"] += len(blocks)
                sent = len(reply)
        finally:
            self.limits.done_serving(sender, trio.current_time(), sent)

    # ------------------------------------------------------------------ admission and gossip

    def _add_checked(self, checked: list[Checked], *, gossip: bool) -> list[dict[str, Any]]:
        results = []
        height = self.store.head_height
        added = False
        for tx, code, error, nonce in checked:
            if tx is None:
                results.append(
                    {"tx_hash": None, "status": "rejected", "code": code, "error": error}
                )
                continue
            try:
                self.mempool.add(tx, nonce, height)
            except TxRejected as exc:
                results.append(
                    {
                        "tx_hash": tx.hash.hex(),
                        "status": "rejected",
                        "code": exc.code,
                        "error": exc.message,
                    }
                )
                continue
            added = True
            if gossip:
                self._gossip.append(tx.raw)
            results.append({"tx_hash": tx.hash.hex(), "status": "pending"})
        if added:
            self._signal_pending()
            if gossip:
                # Wake the flusher now: it sends whatever accumulated by the time it runs, so
                # batching comes from load, not from a timer that adds latency.
                self._gossip_wakeup.set()
        return results

    async def admit(self, raws: list[bytes]) -> list[dict[str, Any]]:
        """Client submissions: verify in a worker thread, then add to the mempool and gossip."""
        checked = await offload(
            lambda: check_batch(raws, verified=self.verified, rules=self.rules, store=self.store),
            len(raws),
        )
        results = self._add_checked(checked, gossip=True)
        for (tx, _, _, _), result in zip(checked, results, strict=True):
            if (
                tx is not None
                and result["status"] == "rejected"
                and result["code"] in ("nonce_too_low", "duplicate")
            ):
                committed = await trio.to_thread.run_sync(self.store.get_receipt, tx.hash)
                if committed is not None:  # a resubmission of something already committed
                    receipt, height, _ = committed
                    result.update(commit_result(receipt, height))
        return results

    async def _gossip_intake(self) -> None:
        async for sender, raws in self.gossip_in:
            await self._admit_gossip(sender, raws)

    async def _admit_gossip(self, sender: int, raws: list[bytes]) -> None:
        fresh = [r for r in raws if sha256(r) not in self.mempool]
        if not fresh:
            return
        checked = await offload(
            lambda: check_batch(
                fresh,
                verified=self.verified,
                rules=self.rules,
                store=self.store,
                stop_codes=BYZANTINE_GOSSIP_CODES,
            ),
            len(fresh),
        )
        results = self._add_checked(checked, gossip=False)
        self.counters["gossip.received"] += len(fresh)
        self.counters["gossip.rejected"] += sum(1 for r in results if r["status"] == "rejected")
        bad = next((code for _, code, _, _ in checked if code in BYZANTINE_GOSSIP_CODES), None)
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
                self.net.broadcast(wire.encode_tx_gossip(batch))
                self.counters["gossip.sent"] += len(batch)

    def wait_for(self, tx_hash: bytes) -> Waiter:
        waiter = Waiter(trio.Event())
        self.waiters.setdefault(tx_hash, []).append(waiter)
        return waiter

    def forget_waiter(self, tx_hash: bytes, waiter: Waiter) -> None:
        waiting = self.waiters.get(tx_hash)
        if waiting and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self.waiters[tx_hash]

    # ------------------------------------------------------------------ the consensus loop

    async def _consensus_loop(self) -> None:
        """Feed events to the core; everything queued is fed before the outputs are acted on.

        Under load many votes wait in the queue: stepping the (pure, fast) core through all
        of them first and then handling their outputs together turns one fsynced write of
        consensus records per message into one per batch (persist still precedes every
        send of the batch, the core's contract).
        """
        await self._handle([self.replica.start()])
        while True:
            event = await self._events_recv.receive()
            readies: list[Ready] = []
            while True:
                if event[0] == "fetched":
                    if readies:
                        await self._handle(readies)
                        readies = []
                    await self._feed_fetched(event[1], event[2])
                else:
                    readies.append(self._step(event))
                if len(readies) >= MAX_EVENTS_PER_BATCH:
                    break
                try:
                    event = self._events_recv.receive_nowait()
                except trio.WouldBlock:
                    break
            if readies:
                self.counters["consensus.batches"] += 1
                await self._handle(readies)

    def _step(self, event: tuple[Any, ...]) -> Ready:
        kind = event[0]
        if kind == "tick":
            return self.replica.tick()
        if kind == "consensus":
            return self.replica.receive(event[1])
        if kind == "pending":
            self._pending_signalled = False
            oldest = self.mempool.oldest_includable()
            return self.replica.requests_pending(len(self.mempool) > 0, oldest)
        raise AssertionError(f"unknown event {kind!r}")

    async def _feed_fetched(self, sender: int, blocks: list[tuple[bytes, bytes]]) -> None:
        for raw_block, raw_certificate in blocks:
            try:
                header, proof = decode_fetched(raw_block, raw_certificate)
            except DecodeError:
                self.counters["catchup.malformed"] += 1
                return
            ready = self.replica.committed_block_from_peer(
                header.height, header.block_hash, header.prev_hash, raw_block, proof
            )
            await self._handle([ready])

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
            records = persist.batch_records(ready.persist) if ready.persist is not None else {}
            if records and not ready.committed:
                # A few small rows: cheaper inline than a worker-thread round trip.
                self.store.write_consensus_meta(records)
                await trio.lowlevel.checkpoint()
                self._record_keys.update(records)
            for index, committed in enumerate(ready.committed):
                await self._commit(committed, records if index == 0 else {})
            if self.net is not None:
                for outbound in ready.messages:
                    payload = wire.frame(wire.Family.CONSENSUS, outbound.message.encode())
                    if outbound.to is None:
                        self.net.broadcast(payload)
                    else:
                        self.net.send(outbound.to, payload)
            for request in ready.validate:
                batch.append(await self._validate(request))
            if ready.propose is not None:
                batch.append(await self._propose(ready.propose))
            if ready.fetch is not None:
                self._start_fetch(ready.fetch)

    def _parent(self, height: int, parent_digest: bytes) -> ChainTip | None:
        if height == self.store.head_height + 1 and parent_digest == self.store.head_hash:
            return self.store.tip()
        return self.executed.get((height - 1, parent_digest))

    async def _validate(self, request: ValidateRequest) -> Ready:
        parent = self._parent(request.height, request.parent_digest)
        if parent is None:
            self.counters["validate.no_parent"] += 1
            return self.replica.proposal_validated(
                request.view, request.height, request.digest, False, None
            )
        now = self._clock_ms()
        rules = self.rules
        skew = self.genesis.consensus.max_clock_skew_ms

        def check() -> ExecutedBlock | str:
            try:
                block = Block.decode(request.payload, max_bytes=rules.max_block_bytes + 1024)
            except DecodeError as exc:
                return f"payload does not decode: {exc}"
            if block.hash() != request.digest or block.header.prev_hash != request.parent_digest:
                return "payload does not match the digests"
            if block.header.timestamp_ms > now + skew:
                return "timestamp is in the future beyond max_clock_skew_ms"
            try:
                return validate_block(
                    parent,
                    block,
                    view=request.view,
                    rules=rules,
                    signature_ok=self.verified.signature_ok,
                )
            except InvalidBlock as exc:
                return str(exc)

        outcome = await offload(check, len(request.payload) // APPROX_TX_BYTES)
        if isinstance(outcome, str):
            self.counters["validate.rejected"] += 1
            log.warning(
                "rejecting proposal %d/%s: %s", request.height, request.digest.hex()[:12], outcome
            )
            return self.replica.proposal_validated(
                request.view, request.height, request.digest, False, None
            )
        self.executed[(request.height, request.digest)] = outcome
        return self.replica.proposal_validated(
            request.view, request.height, request.digest, True, outcome.state_root
        )

    async def _propose(self, request: ProposalRequest) -> Ready:
        parent = self._parent(request.height, request.parent_digest)
        if parent is None or len(self.mempool) == 0:
            return self.replica.skip_proposal(request.view, request.height)
        in_ancestors = ancestor_hashes(parent, self.executed)
        now = trio.current_time()
        if in_ancestors and len(self.mempool) - len(in_ancestors) < BATCH_TARGET_TXS:
            # Blocks are in flight and this one would be small: wait a little for more.
            # Each block costs every node a validation, three signed votes and a commit
            # whatever its size, so at moderate load a block per request would spend the
            # CPU on blocks, not transactions. An empty pipeline proposes at once.
            wait = self._last_proposal_at + PROPOSAL_INTERVAL_S - now
            if wait > 0:
                self.counters["proposals.deferred"] += 1
                if self._nursery is not None:  # ask the core again once the wait is over
                    self._repropose.arm(self._nursery, wait)
                return self.replica.skip_proposal(request.view, request.height)
        self._last_proposal_at = now
        self.mempool.release_proposed()
        rules = self.rules
        # Membership tests only (never iterated), so a set of hashes is deterministic here.
        candidates = [
            tx
            for tx in self.mempool.select(
                max_txs=rules.max_block_txs + len(in_ancestors), max_bytes=2**62
            )
            if tx.hash not in in_ancestors
        ]
        timestamp = max(self._clock_ms(), parent.timestamp_ms)

        def build() -> tuple[ExecutedBlock, list[tuple[Transaction, Any]]]:
            return build_block(
                parent,
                candidates,
                view=request.view,
                proposer=self.index,
                timestamp_ms=timestamp,
                rules=rules,
                signature_ok=self.verified.signature_ok,
            )

        executed, skipped = await offload(build, len(candidates))
        for tx, reason in skipped:
            if reason.code in PERMANENT_SKIPS:
                self.mempool.remove(tx)
        if not executed.block.transactions:
            return self.replica.skip_proposal(request.view, request.height)
        digest = executed.block_hash
        self.executed[(request.height, digest)] = executed
        self.counters["proposals"] += 1
        return self.replica.propose(
            request.view,
            request.height,
            digest,
            request.parent_digest,
            executed.block.encode(),
            executed.state_root,
        )

    async def _commit(self, committed: CommittedBlock, records: dict[str, bytes | None]) -> None:
        key = (committed.height, committed.digest)
        executed = self.executed.get(key)
        if executed is None:  # caught up from a peer, or validated in a view we left
            parent = self._parent(committed.height, committed.parent_digest)
            if parent is None:
                raise AssertionError(
                    f"committed block {committed.height} does not extend the store's head"
                )

            def run() -> ExecutedBlock:
                block = Block.decode(committed.payload)
                return validate_block(
                    parent,
                    block,
                    view=block.header.view,
                    rules=self.rules,
                    signature_ok=self.verified.signature_ok,
                )

            try:
                executed = await offload(run, len(committed.payload) // APPROX_TX_BYTES)
            except (DecodeError, InvalidBlock) as exc:
                # q validators certified a block we cannot reproduce: our state or code is wrong.
                raise AssertionError(
                    f"certified block {committed.height} does not execute here: {exc}"
                ) from exc
        certificate = CommitCertificate(
            committed.view, committed.height, committed.digest, committed.votes
        )
        block = executed.block

        def write() -> None:
            self.store.append_block(
                block,
                certificate,
                executed.receipts,
                executed.overlay.writes,
                tree_update=executed.tree_update,
                consensus_meta=records or None,
            )

        await offload(write, len(block.transactions))
        self._record_keys.update(records)
        self.last_commit_ms = self._clock_ms()
        self.counters["blocks.committed"] += 1
        self.counters["txs.committed"] += len(block.transactions)
        # The store now holds this block's state: children read through it, not through us.
        tip = self.store.tip()
        for (height, _), child in list(self.executed.items()):
            if height <= committed.height:
                del self.executed[(height, _)]
            elif (
                height == committed.height + 1 and child.block.header.prev_hash == committed.digest
            ):
                child.overlay.rebase(tip)
                child.nodes.rebase(tip.nodes)
        nonces: dict[bytes, int] = {}
        for tx in block.transactions:
            nonces[tx.sender_address] = max(nonces.get(tx.sender_address, 0), tx.nonce + 1)
        self.mempool.committed(block.transactions, nonces, committed.height)
        for tx, receipt in zip(block.transactions, executed.receipts, strict=True):
            waiting = self.waiters.pop(tx.hash, None)
            if waiting:
                result = commit_result(receipt, committed.height)
                for waiter in waiting:
                    waiter.result = result
                    waiter.event.set()
        self._signal_pending()  # the core must learn whether anything still waits
        self._commits_since_prune += 1
        if self._commits_since_prune >= PRUNE_EVERY_BLOCKS:
            self._commits_since_prune = 0
            await self._prune_records()

    async def _prune_records(self) -> None:
        doomed = persist.prunable_now(self._record_keys, self.replica.status())
        if doomed:
            await trio.to_thread.run_sync(self.store.write_consensus_meta, dict.fromkeys(doomed))
            self._record_keys.difference_update(doomed)

    # ------------------------------------------------------------------ catch-up

    def syncing(self) -> bool:
        """True while this node knows of committed blocks it has not got yet."""
        return bool(self.replica.catchup_target > self.replica.committed_height)

    def _start_fetch(self, request: FetchRequest) -> None:
        if (
            self.net is not None
            and self._nursery is not None
            and self.fetcher.request(
                self.net, self._nursery, request.from_height, request.to_height
            )
        ):
            self.counters["catchup.requests"] += 1
