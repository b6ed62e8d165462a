"""The validator process: the trio driver that turns the pure consensus core into a node.

Theory of operation. One task, the *consensus loop*, owns the replica and the chain of
executed-but-uncommitted blocks. Everything that changes consensus state arrives there as
an event on one bounded channel (peer messages, ticks, fetched blocks, "the mempool
changed") and is handled to completion, in order, following the driver contract of
consensus/replica.py: persist, then commit, then send, then validate and propose. Work that
blocks — SQLite writes with fsync, executing a block, verifying signatures — runs in worker
threads while the loop awaits it, so the loop never interleaves two state changes and the
event loop stays free for the network and the HTTP API.

Around it: the peer network (ledger/node/transport.py), the mempool with admission in worker
threads and batched gossip, catch-up (asking peers for committed blocks with their commit
certificates), and the HTTP API (ledger/node/backend.py).

House rules: nothing acknowledged is lost (a client hears "committed" only after the block's
SQLite transaction returned); a peer's bad input is counted and dropped, never trusted; every
queue is bounded; our own broken invariants crash the node loudly.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from consensus.config import ReplicaConfig
from consensus.messages import CommitProof
from consensus.ready import CommittedBlock, FetchRequest, ProposalRequest, Ready, ValidateRequest
from consensus.records import CommittedHead, PersistBatch, PreparedRecord, SignedSlot
from consensus.replica import Replica
from crypto.encoding import DecodeError, decode, record_fields
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
    BlockHeader,
    CommitCertificate,
    Receipt,
    ReceiptStatus,
    Transaction,
    TxRejected,
)
from ledger.config import NodeConfig
from ledger.node import persist, wire
from ledger.node.mempool import Mempool, check_transaction
from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.node")

_T = TypeVar("_T")

#: The consensus core's clock: tick() every this many milliseconds.
TICK_MS: Final = 100
#: Events waiting for the consensus loop (messages, ticks, fetched blocks).
MAX_PENDING_EVENTS: Final = 20_000
#: Peer messages waiting for the intake task.
MAX_INBOUND_MESSAGES: Final = 20_000
#: Verified transaction hashes remembered, so each signature is checked once per node.
MAX_VERIFIED_CACHE: Final = 400_000
#: The gossip flusher also runs at least this often (it is normally woken by admissions).
GOSSIP_INTERVAL_MS: Final = 20
#: How long a catch-up request waits for its reply before asking another peer.
FETCH_TIMEOUT_S: Final = 5.0
#: While blocks are in flight, the primary proposes another only when this many new
#: transactions wait, or this long after its previous proposal (see Node._propose).
BATCH_TARGET_TXS: Final = 64
PROPOSAL_INTERVAL_S: Final = 0.025
#: Jobs of at most this many transactions run on the event loop, not in a worker thread.
INLINE_MAX_TXS: Final = 24
#: Bytes of a typical transfer in a block, to size a payload in transactions.
APPROX_TX_BYTES: Final = 180
#: The consensus loop feeds at most this many queued events to the core before acting.
MAX_EVENTS_PER_BATCH: Final = 256
#: Consensus records are pruned every this many commits.
PRUNE_EVERY_BLOCKS: Final = 32
#: Gossip messages waiting for admission (older ones are dropped first when it is full:
#: gossip is best effort, clients and other peers still hold the transactions).
MAX_GOSSIP_BACKLOG: Final = 256
#: A peer that gossips a transaction an honest node would never relay (bad signature,
#: wrong chain, malformed...) has its gossip ignored for this long (doubling per repeat).
GOSSIP_PENALTY_S: Final = 10.0
MAX_GOSSIP_PENALTY_S: Final = 600.0
#: Stateless rejections an honest peer never gossips (it checked them before relaying).
BYZANTINE_GOSSIP_CODES: Final = frozenset(
    {"malformed", "bad_signature", "wrong_chain", "too_large", "gas_limit", "self_transfer",
     "bad_code"}
)  # fmt: skip
#: Catch-up serving per peer: one request at a time, at most this many a second, and at
#: most this many reply bytes a second (a request is 33 bytes; a reply up to 8 MiB).
SERVE_MIN_INTERVAL_S: Final = 0.05
SERVE_BYTES_PER_S: Final = 32 * 1024 * 1024
#: Mempool rejections that mean "this transaction will never be includable": drop it.
PERMANENT_SKIPS: Final = frozenset(
    {"expired", "not_permitted", "bad_signature", "wrong_chain", "too_large", "gas_limit"}
)


async def _offload(work: Callable[[], _T], size: int) -> _T:
    """Run ``work`` (``size`` transactions' worth) in a worker thread, or inline when small.

    A worker-thread round trip costs two thread switches and a wake-up of the event loop;
    on a loaded machine each switch waits for a core, and a block passes through several
    of them on every node. Small jobs (up to INLINE_MAX_TXS transactions, about 2 ms) run
    on the event loop instead: the loop stalls that long, the block moves on sooner.
    """
    if size <= INLINE_MAX_TXS:
        result = work()
        await trio.lowlevel.checkpoint()
        return result
    return await trio.to_thread.run_sync(work)


def _merge(readies: list[Ready]) -> Ready:
    """Several Readies, in order, as one: records merged (later wins per key, as the
    writes would), commits, messages and validations concatenated, the latest proposal
    and fetch requests (an older one was superseded by the core's later steps)."""
    hard_state = None
    signed: list[SignedSlot] = []
    prepared: list[PreparedRecord] = []
    for ready in readies:
        if ready.persist is not None:
            hard_state = ready.persist.hard_state or hard_state
            signed.extend(ready.persist.signed)
            prepared.extend(ready.persist.prepared)
    persist = (
        PersistBatch(hard_state, tuple(signed), tuple(prepared))
        if hard_state is not None or signed or prepared
        else None
    )
    return Ready(
        persist,
        tuple(m for r in readies for m in r.messages),
        tuple(c for r in readies for c in r.committed),
        tuple(v for r in readies for v in r.validate),
        next((r.propose for r in reversed(readies) if r.propose is not None), None),
        next((r.fetch for r in reversed(readies) if r.fetch is not None), None),
        next((r.halt for r in readies if r.halt is not None), None),
    )


def block_digest(payload: bytes) -> bytes | None:
    """The consensus core's digest of an opaque payload: the block hash, from the header.

    Only the header is decoded (the payload's canonical form is still checked); the body is
    checked against the header's tx_root when the block is executed, before any vote.
    """
    try:
        fields = record_fields(decode(payload), Block.TAG, Block.VERSION, 2)
        return BlockHeader.from_value(fields[0]).block_hash
    except DecodeError:
        return None


class NodeHalted(Exception):
    """The node stopped itself: its own data (or code) cannot be trusted any more."""


@dataclass(slots=True)
class _Waiter:
    event: trio.Event
    result: dict[str, Any] | None = None


class VerifiedCache:
    """Transaction hashes whose signatures this node has verified (bounded, FIFO)."""

    def __init__(self, capacity: int = MAX_VERIFIED_CACHE) -> None:
        self._seen: dict[bytes, None] = {}
        self._capacity = capacity

    def add(self, tx_hash: bytes) -> None:
        if len(self._seen) >= self._capacity:
            # Drop the oldest quarter in one go (dicts keep insertion order).
            for key in list(self._seen)[: self._capacity // 4]:
                self._seen.pop(key, None)  # another worker thread may race us here
        self._seen[tx_hash] = None

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._seen

    def signature_ok(self, tx: Transaction) -> bool:
        if tx.hash in self._seen:
            return True
        if tx.signature_valid():
            self.add(tx.hash)
            return True
        return False


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
        self.waiters: dict[bytes, list[_Waiter]] = {}
        self.net: PeerNetwork | None = None
        self._nursery: trio.Nursery | None = None
        self._events_send, self._events_recv = trio.open_memory_channel[tuple[Any, ...]](
            MAX_PENDING_EVENTS
        )
        self._inbound_send, self._inbound_recv = trio.open_memory_channel[tuple[int, bytes]](
            MAX_INBOUND_MESSAGES
        )
        self._gossip: list[bytes] = []
        self._gossip_in: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self._gossip_in_wakeup = trio.Event()
        self._gossip_banned_until: dict[int, float] = {}
        self._gossip_penalty_s: dict[int, float] = {}
        self._last_proposal_at = float("-inf")
        self._repropose_armed = False
        self._serving: dict[int, float] = {}  # peer -> earliest time its next request is served
        self._gossip_wakeup = trio.Event()
        self._pending_signalled = False
        self._fetching = False
        self._fetch_reply = trio.Event()
        self._fetch_peer = 0
        self._commits_since_prune = 0
        self.counters: collections.Counter[str] = collections.Counter()
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
                    self._queue_gossip(sender, wire.decode_tx_gossip(body))
                elif family is wire.Family.BLOCKS_WANTED:
                    self._queue_serve(sender, wire.BlocksWanted.decode(body))
                else:
                    blocks = wire.decode_blocks(body)
                    if self._fetching:
                        self._fetch_reply.set()
                        await self._events_send.send(("fetched", sender, blocks))
                    else:
                        self.counters["peer.unsolicited_blocks"] += 1
            except DecodeError as exc:
                self.counters["peer.malformed"] += 1
                log.warning("malformed message from %s: %s", self.names[sender], exc)

    def _queue_serve(self, sender: int, wanted: wire.BlocksWanted) -> None:
        now = trio.current_time()
        if self._serving.get(sender, 0.0) > now:  # one at a time, rate and bytes limited
            self.counters["catchup.requests_refused"] += 1
            return
        self._serving[sender] = float("inf")  # busy until the reply is sent
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_blocks, sender, wanted)

    async def _serve_blocks(self, sender: int, wanted: wire.BlocksWanted) -> None:
        sent = 0
        try:
            sent = await self._send_blocks(sender, wanted)
        finally:
            pause = max(SERVE_MIN_INTERVAL_S, sent / SERVE_BYTES_PER_S)
            self._serving[sender] = trio.current_time() + pause

    async def _send_blocks(self, sender: int, wanted: wire.BlocksWanted) -> int:
        store = self.store

        def read() -> list[tuple[bytes, bytes]]:
            out: list[tuple[bytes, bytes]] = []
            size = 0
            last = min(
                wanted.to_height,
                store.head_height,
                wanted.from_height + wire.MAX_BLOCKS_PER_REPLY - 1,
            )
            for height in range(wanted.from_height, last + 1):
                block = store.get_block(height)
                certificate = store.get_certificate(height)
                if block is None or certificate is None:
                    break
                raw = block.encode()
                if out and size + len(raw) > wire.MAX_BLOCKS_REPLY_BYTES:
                    break
                out.append((raw, certificate.encode()))
                size += len(raw)
            return out

        blocks = await trio.to_thread.run_sync(read)
        if not blocks or self.net is None:
            return 0
        reply = wire.encode_blocks(blocks)
        self.net.send(sender, reply)
        self.counters["catchup.blocks_served"] += len(blocks)
        return len(reply)

    # ------------------------------------------------------------------ admission and gossip

    def _check_batch(
        self, raws: list[bytes], *, stop_codes: frozenset[str] = frozenset()
    ) -> list[tuple[Transaction | None, str, str, int]]:
        """Worker thread: decode + verify each raw tx once, and read its sender's nonce.

        The batch ends early at the first rejection whose code is in ``stop_codes`` (gossip
        from a peer that relays what it should not: the rest is not worth verifying).
        """
        out: list[tuple[Transaction | None, str, str, int]] = []
        for raw in raws:
            try:
                if sha256(raw) in self.verified:
                    tx = Transaction.decode(raw)
                else:
                    tx = check_transaction(raw, self.rules.chain_id, self.rules.limits)
            except TxRejected as exc:
                out.append((None, exc.code, exc.message, 0))
                if exc.code in stop_codes:
                    break
                continue
            except DecodeError as exc:
                out.append((None, "malformed", str(exc), 0))
                if "malformed" in stop_codes:
                    break
                continue
            self.verified.add(tx.hash)
            out.append((tx, "", "", self.store.get_account(tx.sender_address).nonce))
        return out

    def _add_checked(
        self, checked: list[tuple[Transaction | None, str, str, int]], *, gossip: bool
    ) -> list[dict[str, Any]]:
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
        checked = await _offload(lambda: self._check_batch(raws), len(raws))
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
                    result.update(self.commit_result(receipt, height))
        return results

    def _queue_gossip(self, sender: int, raws: list[bytes]) -> None:
        if self._gossip_banned_until.get(sender, 0.0) > trio.current_time():
            self.counters["gossip.ignored_penalised"] += len(raws)
            return
        if len(self._gossip_in) >= MAX_GOSSIP_BACKLOG:
            _, dropped = self._gossip_in.popleft()
            self.counters["gossip.dropped_backlog"] += len(dropped)
        self._gossip_in.append((sender, raws))
        self._gossip_in_wakeup.set()

    async def _gossip_intake(self) -> None:
        while True:
            await self._gossip_in_wakeup.wait()
            self._gossip_in_wakeup = trio.Event()
            while self._gossip_in:
                sender, raws = self._gossip_in.popleft()
                if self._gossip_banned_until.get(sender, 0.0) > trio.current_time():
                    self.counters["gossip.ignored_penalised"] += len(raws)
                    continue
                await self._admit_gossip(sender, raws)

    async def _admit_gossip(self, sender: int, raws: list[bytes]) -> None:
        fresh = [r for r in raws if sha256(r) not in self.mempool]
        if not fresh:
            return
        checked = await _offload(
            lambda: self._check_batch(fresh, stop_codes=BYZANTINE_GOSSIP_CODES), len(fresh)
        )
        results = self._add_checked(checked, gossip=False)
        self.counters["gossip.received"] += len(fresh)
        self.counters["gossip.rejected"] += sum(1 for r in results if r["status"] == "rejected")
        bad = next((code for _, code, _, _ in checked if code in BYZANTINE_GOSSIP_CODES), None)
        if bad is not None:
            # An honest validator checks a transaction before relaying it: this one is not.
            penalty = min(self._gossip_penalty_s.get(sender, GOSSIP_PENALTY_S / 2) * 2,
                          MAX_GOSSIP_PENALTY_S)  # fmt: skip
            self._gossip_penalty_s[sender] = penalty
            self._gossip_banned_until[sender] = trio.current_time() + penalty
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

    def wait_for(self, tx_hash: bytes) -> _Waiter:
        waiter = _Waiter(trio.Event())
        self.waiters.setdefault(tx_hash, []).append(waiter)
        return waiter

    def forget_waiter(self, tx_hash: bytes, waiter: _Waiter) -> None:
        waiting = self.waiters.get(tx_hash)
        if waiting and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self.waiters[tx_hash]

    @staticmethod
    def commit_result(receipt: Receipt, height: int) -> dict[str, Any]:
        from ledger.node.render import receipt_json

        return {
            "status": "committed" if receipt.status == ReceiptStatus.SUCCESS else "failed",
            "height": height,
            "receipt": receipt_json(receipt),
        }

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
                certificate = CommitCertificate.decode(raw_certificate)
                header_digest = block_digest(raw_block)
                fields = record_fields(decode(raw_block), Block.TAG, Block.VERSION, 2)
                header = BlockHeader.from_value(fields[0])
            except DecodeError:
                self.counters["catchup.malformed"] += 1
                return
            if header_digest is None:
                self.counters["catchup.malformed"] += 1
                return
            proof = CommitProof(
                certificate.view, certificate.height, certificate.block_hash, certificate.votes
            )
            ready = self.replica.committed_block_from_peer(
                header.height, header_digest, header.prev_hash, raw_block, proof
            )
            await self._handle([ready])

    async def _handle(self, batch: list[Ready]) -> None:
        """Act on the core's outputs in its order: persist, commit, send, validate, propose,
        fetch. A batch of Readies is acted on as one (their records in one transaction);
        what validation and proposals return is the next batch."""
        while batch:
            ready = _merge(batch) if len(batch) > 1 else batch[0]
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

        outcome = await _offload(check, len(request.payload) // APPROX_TX_BYTES)
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

    def _ancestor_hashes(self, parent: ChainTip) -> set[bytes]:
        """Hashes of the transactions in the pending (uncommitted) blocks a proposal builds on."""
        hashes: set[bytes] = set()
        block: ExecutedBlock | None = parent if isinstance(parent, ExecutedBlock) else None
        while block is not None:
            hashes.update(tx.hash for tx in block.block.transactions)
            block = self.executed.get((block.height - 1, block.block.header.prev_hash))
        return hashes

    def _repropose_after(self, seconds: float) -> None:
        """Ask the core for a proposal again in ``seconds`` (once, however often called)."""
        if self._repropose_armed or self._nursery is None:
            return
        self._repropose_armed = True

        async def later() -> None:
            await trio.sleep(seconds)
            self._repropose_armed = False
            self._signal_pending()

        self._nursery.start_soon(later)

    async def _propose(self, request: ProposalRequest) -> Ready:
        parent = self._parent(request.height, request.parent_digest)
        if parent is None or len(self.mempool) == 0:
            return self.replica.skip_proposal(request.view, request.height)
        in_ancestors = self._ancestor_hashes(parent)
        now = trio.current_time()
        if in_ancestors and len(self.mempool) - len(in_ancestors) < BATCH_TARGET_TXS:
            # Blocks are in flight and this one would be small: wait a little for more.
            # Each block costs every node a validation, three signed votes and a commit
            # whatever its size, so at moderate load a block per request would spend the
            # CPU on blocks, not transactions. An empty pipeline proposes at once.
            wait = self._last_proposal_at + PROPOSAL_INTERVAL_S - now
            if wait > 0:
                self.counters["proposals.deferred"] += 1
                self._repropose_after(wait)
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

        executed, skipped = await _offload(build, len(candidates))
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
                executed = await _offload(run, len(committed.payload) // APPROX_TX_BYTES)
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

        await _offload(write, len(block.transactions))
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
                result = self.commit_result(receipt, committed.height)
                for waiter in waiting:
                    waiter.result = result
                    waiter.event.set()
        self._signal_pending()  # the core must learn whether anything still waits
        self._commits_since_prune += 1
        if self._commits_since_prune >= PRUNE_EVERY_BLOCKS:
            self._commits_since_prune = 0
            await self._prune_records()

    async def _prune_records(self) -> None:
        status = self.replica.status()
        doomed = persist.prunable(
            self._record_keys,
            view=status.view,
            stable_height=status.stable_checkpoint,
            committed_height=status.committed_height,
        )
        if doomed:
            await trio.to_thread.run_sync(self.store.write_consensus_meta, dict.fromkeys(doomed))
            self._record_keys.difference_update(doomed)

    # ------------------------------------------------------------------ catch-up

    def syncing(self) -> bool:
        """True while this node knows of committed blocks it has not got yet."""
        return bool(self.replica.catchup_target > self.replica.committed_height)

    def _start_fetch(self, request: FetchRequest) -> None:
        if self._fetching or self.net is None:
            return
        peers = [p for p in self.net.connected_peers() if p != self.index]
        if not peers:
            return
        self._fetching = True
        self._fetch_peer = (self._fetch_peer + 1) % len(peers)
        peer = peers[self._fetch_peer]
        self._fetch_reply = trio.Event()
        upto = min(request.to_height, request.from_height + wire.MAX_BLOCKS_PER_REPLY - 1)
        self.net.send(peer, wire.BlocksWanted(request.from_height, upto).encode())
        self.counters["catchup.requests"] += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._fetch_deadline, self._fetch_reply)

    async def _fetch_deadline(self, reply: trio.Event) -> None:
        with trio.move_on_after(FETCH_TIMEOUT_S):
            await reply.wait()
        self._fetching = False
