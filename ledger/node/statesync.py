"""State sync: a validator far behind (wiped, new, or long gone) joins from a snapshot.

Theory of operation (the client, :class:`StateSync`). It asks every connected peer which
snapshots it keeps (SNAPSHOTS_WANTED); each answer carries the offered snapshots' headers
and commit certificates and the peer's chain of validator sets (epoch links,
ledger/chain/epoch_links.py). The chain is followed from the genesis set and each offer's
certificate checked with the set certifying its height (``ledger.light.LightClient``), so
the state root to sync to is certified before any chunk is read, across set changes too. A
peer whose chain or offer does not verify is dropped for this sync. The highest verified
snapshot wins if it is more than ``min_ahead`` blocks above our head (else the caller
replays blocks, which is cheaper when near). Chunks (``ledger.chain.snapshot``: the state
under a path prefix with its proof) are fetched from every peer that offered that block,
one request in flight per peer, each verified alone against the certified root; a peer
that serves a bad chunk, refuses, or does not answer within :data:`CHUNK_TIMEOUT_S` is
dropped for this sync and its chunk goes back to the queue for the others.

Each verified chunk, with the tree nodes it proves, is written to the store's staging area
as it arrives (batched, in worker threads: ``Store.stage_chunks``), so memory holds a few
chunks, not the state. Staged rows are read by nothing but the install: at the end,
``Store.install_staged`` checks the staged root and key count and replaces the chain with
the snapshot in ONE SQLite transaction, recording the chain of sets up to it. An
interrupted sync leaves the old store (its staging area is emptied by the next sync), so
a restart simply syncs again; no half-written state is ever served.

The serving side (:class:`SnapshotServer`): offers, links and chunks read in worker threads
from the snapshots the store keeps; one chunk request per peer at a time, paced like
catch-up.

Never: stage a chunk before it verified, install before every chunk is staged, trust a
peer's word for a root or a validator set, or let a peer's malformed reply raise out of
here (it is counted and the peer dropped).
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from crypto.encoding import DecodeError
from genesis.document import Genesis
from ledger.chain.epoch_links import EpochLink, set_for_height
from ledger.chain.snapshot import (
    MAX_CHUNK_DEPTH,
    SnapshotError,
    StateChunk,
    all_prefixes,
    children_of,
    chunk_depth_for,
    verify_chunk,
)
from ledger.chain.store import Store
from ledger.chain.store_snapshot import ChunkTooLarge
from ledger.chain.store_sync import StagedChunk
from ledger.chain.types import BlockHeader, CommitCertificate
from ledger.light import LightClient, VerificationError
from ledger.node import wire
from ledger.node.membership import genesis_names
from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.statesync")

#: How long the client waits for snapshot offers from the connected peers.
OFFER_WAIT_S: Final = 1.5
#: A chunk request unanswered for this long drops the peer for this sync.
CHUNK_TIMEOUT_S: Final = 5.0
#: Test hook (an environment variable, never set in production): wait this many ms after
#: each verified chunk before staging it, so an integration test can catch a node mid-sync.
CHUNK_DELAY_ENV: Final = "QUORUM_TEST_STATESYNC_CHUNK_DELAY_MS"
#: Verified chunks waiting to be staged are held to about this many keys (workers wait).
MAX_UNSTAGED_KEYS: Final = 100_000
#: Serving: a peer's next chunk waits at least this long, and its reply bytes are paced.
SERVE_MIN_INTERVAL_S: Final = 0.002
SERVE_BYTES_PER_S: Final = 64 * 1024 * 1024


def min_blocks_behind(genesis: Genesis) -> int:
    """How far behind a node (member or follower) must be before a state sync is worth
    trying; nearer, it replays blocks. One checkpoint interval: the spacing of snapshots."""
    return genesis.consensus.checkpoint_interval


class SyncPhase(enum.StrEnum):
    #: Asking peers for offers, verifying them.
    DISCOVERING = "discovering"
    #: Fetching and verifying chunks, staging each as it arrives.
    FETCHING = "fetching"
    #: The one-transaction switch from the staged state.
    INSTALLING = "installing"


@dataclass
class SyncProgress:
    """What ``/v1/status`` shows under ``syncing`` while a state sync runs."""

    phase: SyncPhase
    started_s: float
    height: int | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    keys: int = 0
    keys_staged: int = 0
    bytes: int = 0
    peers: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": "state_sync",
            "phase": self.phase.value,
            "snapshot_height": self.height,
            "progress": {
                "chunks_done": self.chunks_done,
                "chunks_total": self.chunks_total,
                "keys": self.keys,
                "keys_staged": self.keys_staged,
                "bytes": self.bytes,
            },
            "peers": self.peers,
            "dropped_peers": self.dropped,
            "elapsed_ms": int((time.monotonic() - self.started_s) * 1000),
        }


@dataclass(frozen=True, slots=True)
class ChosenSnapshot:
    header: BlockHeader
    certificate: CommitCertificate
    key_count: int
    servers: tuple[int, ...]
    #: The chain of sets up to the snapshot's block (installed with it).
    links: tuple[EpochLink, ...] = ()


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: wire.ChunkReply | None = None


class _Stager:
    """Verified chunks on their way to the store's staging area: written in batches by one
    task (worker threads), while the fetch goes on; :meth:`put` waits while too many keys
    are waiting, so memory stays bounded whatever the state's size."""

    def __init__(self, store: Store, progress: SyncProgress) -> None:
        self._store = store
        self._progress = progress
        self._pending: list[StagedChunk] = []
        self._pending_keys = 0
        self._changed = trio.Event()
        self._closed = False
        self.keys = 0

    async def put(
        self, entries: Sequence[tuple[bytes, bytes]], nodes: Mapping[bytes, bytes]
    ) -> None:
        while self._pending_keys >= MAX_UNSTAGED_KEYS:
            await self._wait()
        self._pending.append((entries, nodes))
        self._pending_keys += len(entries)
        self._signal()

    def close(self) -> None:
        self._closed = True
        self._signal()

    async def run(self) -> None:
        while self._pending or not self._closed:
            if not self._pending:
                await self._wait()
                continue
            batch, self._pending = self._pending, []
            count = sum(len(entries) for entries, _ in batch)
            await trio.to_thread.run_sync(self._store.stage_chunks, batch)
            self._pending_keys -= count
            self.keys += count
            self._progress.keys_staged = self.keys
            self._signal()

    async def _wait(self) -> None:
        event = self._changed
        await event.wait()

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


class StateSync:
    """The client side; the node routes SNAPSHOTS and CHUNK replies to it."""

    def __init__(
        self, genesis: Genesis, own_index: int, counters: collections.Counter[str]
    ) -> None:
        self.light = LightClient(genesis)
        self.names: dict[int, str] = genesis_names(genesis)
        self.own = own_index
        self.counters = counters
        self.progress: SyncProgress | None = None
        self._offers: dict[int, tuple[list[wire.SnapshotOffer], list[EpochLink]]] = {}
        self._offers_arrived = trio.Event()
        self._pending: dict[tuple[int, int, bytes], _Pending] = {}
        delay = os.environ.get(CHUNK_DELAY_ENV, "")
        self.chunk_delay_s = int(delay) / 1000 if delay.isdigit() else 0.0

    @property
    def active(self) -> bool:
        return self.progress is not None

    def status(self) -> dict[str, Any] | None:
        return None if self.progress is None else self.progress.to_json()

    # ------------------------------------------------------------------ replies (intake)

    def on_offers(self, sender: int, body: bytes) -> None:
        if self.progress is None or self.progress.phase is not SyncPhase.DISCOVERING:
            self.counters["statesync.unsolicited"] += 1
            return
        self._offers[sender] = wire.decode_snapshots(body)
        self._offers_arrived.set()

    def on_chunk(self, sender: int, body: bytes) -> None:
        reply = wire.ChunkReply.decode(body)
        pending = self._pending.get((sender, reply.height, reply.prefix))
        if pending is None or pending.event.is_set():
            self.counters["statesync.unsolicited"] += 1
            return
        pending.reply = reply
        pending.event.set()

    # ------------------------------------------------------------------ the sync

    async def run(self, net: PeerNetwork, store: Store, *, min_ahead: int) -> bool:
        """Sync ``store`` to the newest certified snapshot more than ``min_ahead`` blocks
        above its head; True if one was installed (the caller rebuilds its engine)."""
        self.progress = SyncProgress(SyncPhase.DISCOVERING, time.monotonic())
        try:
            chosen = await self._discover(net)
            if chosen is None:
                return False
            height = chosen.header.height
            if height <= store.head_height + min_ahead:
                log.info(
                    "state sync: the newest snapshot (block %d) is within %d blocks of our "
                    "head %d: replaying blocks instead", height, min_ahead, store.head_height,
                )  # fmt: skip
                return False
            staged = await self._fetch(net, store, chosen)
            if staged is None:
                return False
            await self._install(store, chosen, staged)
            return True
        finally:
            self.progress = None
            self._offers.clear()
            self._pending.clear()

    async def _discover(self, net: PeerNetwork) -> ChosenSnapshot | None:
        """Ask every connected peer (and any that connects meanwhile) for its snapshots;
        stop when all validators answered or after OFFER_WAIT_S."""
        self._offers = {}
        asked: set[int] = set()
        others = len(self.names) - 1
        with trio.move_on_after(OFFER_WAIT_S):
            while len(self._offers) < others:
                for peer in sorted(net.connected_peers()):
                    if peer != self.own and peer not in asked:
                        asked.add(peer)
                        net.send(peer, wire.encode_snapshots_wanted())
                self._offers_arrived = trio.Event()
                with trio.move_on_after(0.1):
                    await self._offers_arrived.wait()
        if not asked:
            log.info("state sync: no peer connected; replaying blocks instead")
            return None
        return self._choose()

    def _choose(self) -> ChosenSnapshot | None:
        """The newest snapshot whose certificate verifies (with the set of its height's
        epoch, from each peer's chain of sets), and the peers offering it."""
        assert self.progress is not None
        verified: dict[tuple[int, bytes], tuple[BlockHeader, CommitCertificate, int]] = {}
        servers: dict[tuple[int, bytes], list[int]] = {}
        # First the chains of sets: the longest that verifies names the set of every
        # offered height (any verified chain is a prefix of the real one).
        links: tuple[EpochLink, ...] = ()
        trusted = []
        for sender in sorted(self._offers):
            chain = self._offers[sender][1]
            try:
                self.light.learn_links(chain)
            except VerificationError as exc:
                self._drop(sender, f"sent a chain of validator sets that does not verify: {exc}")
                continue
            trusted.append(sender)
            if len(chain) > len(links):
                links = tuple(chain)
        for sender in trusted:
            for offer in self._offers[sender][0]:
                try:
                    header = self.light.verify_header(offer.header, offer.certificate, offer.height)
                    certificate = CommitCertificate.decode(offer.certificate)
                except (VerificationError, DecodeError) as exc:
                    self._drop(
                        sender, f"offered snapshot {offer.height} that does not verify: {exc}"
                    )
                    servers = {k: [p for p in v if p != sender] for k, v in servers.items()}
                    break
                key = (header.height, header.hash())
                verified.setdefault(key, (header, certificate, offer.key_count))
                servers.setdefault(key, []).append(sender)
        candidates = sorted((k for k, v in servers.items() if v), reverse=True)
        if not candidates:
            log.info("state sync: no peer offered a verifiable snapshot; replaying blocks")
            return None
        best = candidates[0]
        header, certificate, key_count = verified[best]
        below = tuple(link for link in links if link.height <= header.height)
        chosen = ChosenSnapshot(header, certificate, key_count, tuple(servers[best]), below)
        log.info(
            "state sync: snapshot at block %d (state root %s, ~%d keys) certified by %d "
            "validators of epoch %d, offered by %s", header.height,
            header.state_root.hex()[:16], key_count, len(certificate.votes),
            set_for_height(self.light.sets, header.height).epoch, self._list(chosen.servers),
        )  # fmt: skip
        return chosen

    async def _fetch(self, net: PeerNetwork, store: Store, chosen: ChosenSnapshot) -> int | None:
        """Fetch, verify and stage every chunk; how many keys were staged (None: gave up)."""
        progress = self.progress
        assert progress is not None
        height = chosen.header.height
        root = chosen.header.state_root
        queue = collections.deque(all_prefixes(chunk_depth_for(chosen.key_count)))
        progress.phase = SyncPhase.FETCHING
        progress.height = height
        progress.chunks_total = len(queue)
        progress.peers = [self.names[p] for p in chosen.servers]
        await trio.to_thread.run_sync(store.begin_staging, height, root)
        stager = _Stager(store, progress)
        served: collections.Counter[int] = collections.Counter()
        served_keys: collections.Counter[int] = collections.Counter()
        state = {"in_flight": 0, "changed": trio.Event()}

        def changed() -> None:
            event = state["changed"]
            assert isinstance(event, trio.Event)
            event.set()
            state["changed"] = trio.Event()

        async def worker(peer: int) -> None:
            name = self.names[peer]
            while True:
                if not queue:
                    if not state["in_flight"]:
                        return
                    event = state["changed"]
                    assert isinstance(event, trio.Event)
                    await event.wait()
                    continue
                prefix = queue.popleft()
                state["in_flight"] += 1  # type: ignore[operator]
                try:
                    reply = await self._request(net, peer, height, prefix)
                    problem, checked = await self._check(reply, height, prefix, root)
                    if problem is None and checked is None:  # too large: ask for its children
                        queue.extend(children_of(prefix))
                        progress.chunks_total += 15
                        continue
                    if problem is not None:
                        queue.appendleft(prefix)
                        self._drop(peer, f"{problem} (chunk {prefix.hex()})")
                        return
                    assert checked is not None
                    chunk, nodes = checked
                    if self.chunk_delay_s:
                        await trio.sleep(self.chunk_delay_s)
                    await stager.put(chunk.entries, nodes)
                    served[peer] += 1
                    served_keys[peer] += len(chunk.entries)
                    progress.chunks_done += 1
                    progress.keys += len(chunk.entries)
                    log.debug("state sync: chunk %s (%d keys) from %s", prefix.hex(),
                              len(chunk.entries), name)  # fmt: skip
                finally:
                    state["in_flight"] -= 1  # type: ignore[operator]
                    changed()

        async with trio.open_nursery() as staging:
            staging.start_soon(stager.run)
            async with trio.open_nursery() as nursery:
                for peer in chosen.servers:
                    nursery.start_soon(worker, peer)
            stager.close()
        if queue:
            log.warning(
                "state sync: every peer serving snapshot %d was dropped with %d chunks to go; "
                "replaying blocks instead", height, len(queue),
            )  # fmt: skip
            return None
        log.info(
            "state sync: %d chunks, %d keys of snapshot %d verified and staged; served by %s",
            progress.chunks_done, stager.keys, height,
            ", ".join(f"{self.names[p]} {served[p]} chunks/{served_keys[p]} keys"
                      for p in sorted(served)) or "nobody (empty state)",
        )  # fmt: skip
        return stager.keys

    async def _request(
        self, net: PeerNetwork, peer: int, height: int, prefix: bytes
    ) -> wire.ChunkReply | None:
        key = (peer, height, prefix)
        pending = _Pending()
        self._pending[key] = pending
        try:
            net.send(peer, wire.ChunkWanted(height, prefix).encode())
            with trio.move_on_after(CHUNK_TIMEOUT_S):
                await pending.event.wait()
            return pending.reply
        finally:
            self._pending.pop(key, None)

    async def _check(
        self, reply: wire.ChunkReply | None, height: int, prefix: bytes, root: bytes
    ) -> tuple[str | None, tuple[StateChunk, dict[bytes, bytes]] | None]:
        """(problem, (chunk, the nodes it proves)): a problem drops the peer; (None, None)
        means "too large"."""
        if reply is None:
            return f"no answer within {CHUNK_TIMEOUT_S:.0f} s", None
        if reply.refusal == "too_large":
            if len(prefix) >= MAX_CHUNK_DEPTH:
                return "refused the deepest chunk as too large", None
            return None, None
        if reply.refusal:
            return f"refused: {reply.refusal}", None
        assert reply.chunk is not None
        assert self.progress is not None
        self.progress.bytes += len(reply.chunk)
        raw = reply.chunk

        def decode_and_verify() -> tuple[StateChunk, dict[bytes, bytes]]:
            chunk = StateChunk.decode(raw)
            if (chunk.height, chunk.prefix) != (height, prefix):
                raise SnapshotError(f"it is chunk {chunk.prefix.hex()} of snapshot {chunk.height}")
            return chunk, verify_chunk(root, chunk)

        try:
            return None, await trio.to_thread.run_sync(decode_and_verify)
        except (DecodeError, SnapshotError) as exc:
            self.counters["statesync.bad_chunks"] += 1
            return f"served a chunk that does not verify: {exc}", None

    async def _install(self, store: Store, chosen: ChosenSnapshot, staged_keys: int) -> None:
        assert self.progress is not None
        self.progress.phase = SyncPhase.INSTALLING
        header = chosen.header
        started = time.monotonic()
        await trio.to_thread.run_sync(
            store.install_staged, header, chosen.certificate, chosen.links, staged_keys
        )
        log.info(
            "state sync: installed snapshot %d (%d keys, %d epoch links) in %.2f s; %.2f s "
            "since the sync began; replaying the blocks after it", header.height,
            staged_keys, len(chosen.links), time.monotonic() - started,
            time.monotonic() - self.progress.started_s,
        )  # fmt: skip

    # ------------------------------------------------------------------ helpers

    def _drop(self, peer: int, why: str) -> None:
        assert self.progress is not None
        self.progress.dropped[self.names[peer]] = why
        self.counters["statesync.peers_dropped"] += 1
        log.warning("state sync: dropping %s for this sync: %s", self.names[peer], why)

    def _list(self, peers: Iterable[int]) -> str:
        return ", ".join(self.names[p] for p in peers)


class SnapshotServer:
    """Serving our snapshots to syncing peers (offers, and one chunk per peer at a time)."""

    def __init__(self, store: Store, counters: collections.Counter[str]) -> None:
        self.store = store
        self.counters = counters
        self._busy: set[int] = set()
        self._serve_after: dict[int, float] = {}

    async def serve_offers(self, net: PeerNetwork, peer: int) -> None:
        offers = await trio.to_thread.run_sync(read_offers, self.store)
        links = await trio.to_thread.run_sync(self.store.epoch_links)
        net.send(peer, wire.encode_snapshots(offers, links), bulk=True)
        self.counters["statesync.offers_served"] += 1

    async def serve_chunk(self, net: PeerNetwork, peer: int, wanted: wire.ChunkWanted) -> None:
        if peer in self._busy:  # an honest syncer has one request out per peer
            self.counters["statesync.chunk_requests_refused"] += 1
            return
        self._busy.add(peer)
        try:
            wait = self._serve_after.get(peer, 0.0) - trio.current_time()
            if wait > 0:
                await trio.sleep(wait)
            reply = await trio.to_thread.run_sync(read_chunk_reply, self.store, wanted)
            raw = reply.encode()
            net.send(peer, raw, bulk=True)
            self.counters["statesync.chunks_served"] += 1
            pause = max(SERVE_MIN_INTERVAL_S, len(raw) / SERVE_BYTES_PER_S)
            self._serve_after[peer] = trio.current_time() + pause
        finally:
            self._busy.discard(peer)


def route_message(
    sync: StateSync,
    server: SnapshotServer,
    net: PeerNetwork,
    nursery: trio.Nursery,
    sender: int,
    family: wire.Family,
    body: bytes,
) -> None:
    """One message of :data:`wire.STATE_SYNC_FAMILIES`: requests are served in tasks of
    ``nursery`` (no offers while we sync ourselves: our store is about to change), replies
    go to the client. A malformed message raises DecodeError (the caller counts it)."""
    if family is wire.Family.SNAPSHOTS_WANTED:
        wire.decode_snapshots_wanted(body)
        if not sync.active:
            nursery.start_soon(server.serve_offers, net, sender)
    elif family is wire.Family.CHUNK_WANTED:
        nursery.start_soon(server.serve_chunk, net, sender, wire.ChunkWanted.decode(body))
    elif family is wire.Family.SNAPSHOTS:
        sync.on_offers(sender, body)
    else:
        sync.on_chunk(sender, body)


def read_offers(store: Store) -> list[wire.SnapshotOffer]:
    """Offers for the snapshots the store keeps (worker thread)."""
    offers = []
    for snapshot in store.snapshots()[: wire.MAX_SNAPSHOT_OFFERS]:
        header = store.get_header(snapshot.height)
        certificate = store.get_certificate(snapshot.height)
        if header is None or certificate is None:
            continue
        offers.append(
            wire.SnapshotOffer(
                snapshot.height, snapshot.key_count, header.encode(), certificate.encode()
            )
        )
    return offers


def read_chunk_reply(store: Store, wanted: wire.ChunkWanted) -> wire.ChunkReply:
    """The reply to one chunk request (worker thread)."""
    try:
        chunk = store.read_chunk(wanted.height, wanted.prefix)
    except ChunkTooLarge:
        return wire.ChunkReply(wanted.height, wanted.prefix, "too_large", None)
    except SnapshotError:
        return wire.ChunkReply(wanted.height, wanted.prefix, "missing", None)
    if chunk is None:
        return wire.ChunkReply(wanted.height, wanted.prefix, "missing", None)
    return wire.ChunkReply(wanted.height, wanted.prefix, "", chunk.encode())
