"""State sync: a validator far behind (wiped, new, or long gone) joins from a snapshot.

Theory of operation (the client, :class:`StateSync`). It asks every connected peer which
snapshots it keeps (SNAPSHOTS_WANTED); each offer carries the snapshot block's header and
commit certificate, checked against the genesis with the light client
(``ledger.light.LightClient.verify_header``), so the state root to sync to is certified
before any chunk is read. A peer whose offer does not verify is dropped for this sync. The
highest verified snapshot wins if it is more than ``min_ahead`` blocks above our head (else
the caller replays blocks, which is cheaper when near). Chunks (``ledger.chain.snapshot``:
the state under a path prefix with its proof) are fetched from every peer that offered that
block, one request in flight per peer, each verified alone against the certified root; a
peer that serves a bad chunk, refuses, or does not answer within :data:`CHUNK_TIMEOUT_S` is
dropped for this sync and its chunk goes back to the queue for the others. Nothing touches
the store until every chunk is in: then the whole tree is rebuilt, its root checked once
more, and ``Store.install_snapshot`` replaces the state in ONE SQLite transaction — an
interrupted sync leaves the old store, so a restart simply syncs again.

The serving side (:class:`SnapshotServer`): offers and chunks read in worker threads from
the snapshots the store keeps; one chunk request per peer at a time, paced like catch-up.

Never: write a chunk before all are verified, trust a peer's word for a root, or let a
peer's malformed reply raise out of here (it is counted and the peer dropped).
"""

from __future__ import annotations

import collections
import enum
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from crypto.encoding import DecodeError
from genesis.document import Genesis
from ledger.chain.snapshot import (
    MAX_CHUNK_DEPTH,
    SnapshotError,
    StateChunk,
    all_prefixes,
    children_of,
    chunk_depth_for,
    verify_chunk,
)
from ledger.chain.store import Store, genesis_tree
from ledger.chain.store_snapshot import ChunkTooLarge
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
#: Serving: a peer's next chunk waits at least this long, and its reply bytes are paced.
SERVE_MIN_INTERVAL_S: Final = 0.002
SERVE_BYTES_PER_S: Final = 64 * 1024 * 1024


class SyncPhase(enum.StrEnum):
    DISCOVERING = "discovering"
    FETCHING = "fetching"
    WRITING = "writing"


@dataclass
class SyncProgress:
    """What ``/v1/status`` shows under ``syncing`` while a state sync runs."""

    phase: SyncPhase
    started_s: float
    height: int | None = None
    chunks_done: int = 0
    chunks_total: int = 0
    keys: int = 0
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


class _Pending:
    __slots__ = ("event", "reply")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.reply: wire.ChunkReply | None = None


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
        self._offers: dict[int, list[wire.SnapshotOffer]] = {}
        self._offers_arrived = trio.Event()
        self._pending: dict[tuple[int, int, bytes], _Pending] = {}

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
            items = await self._fetch(net, chosen)
            if items is None:
                return False
            await self._install(store, chosen, items)
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
        """The newest snapshot whose certificate verifies, and the peers offering it."""
        assert self.progress is not None
        verified: dict[tuple[int, bytes], tuple[BlockHeader, CommitCertificate, int]] = {}
        servers: dict[tuple[int, bytes], list[int]] = {}
        for sender in sorted(self._offers):
            for offer in self._offers[sender]:
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
        chosen = ChosenSnapshot(header, certificate, key_count, tuple(servers[best]))
        log.info(
            "state sync: snapshot at block %d (state root %s, ~%d keys) certified by %d "
            "validators, offered by %s", header.height, header.state_root.hex()[:16],
            key_count, len(certificate.votes), self._list(chosen.servers),
        )  # fmt: skip
        return chosen

    async def _fetch(
        self, net: PeerNetwork, chosen: ChosenSnapshot
    ) -> list[tuple[bytes, bytes]] | None:
        progress = self.progress
        assert progress is not None
        height = chosen.header.height
        root = chosen.header.state_root
        queue = collections.deque(all_prefixes(chunk_depth_for(chosen.key_count)))
        progress.phase = SyncPhase.FETCHING
        progress.height = height
        progress.chunks_total = len(queue)
        progress.peers = [self.names[p] for p in chosen.servers]
        done: dict[bytes, tuple[tuple[bytes, bytes], ...]] = {}
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
                    problem, chunk = await self._check(reply, height, prefix, root)
                    if problem is None and chunk is None:  # too large: ask for its children
                        queue.extend(children_of(prefix))
                        progress.chunks_total += 15
                        continue
                    if problem is not None:
                        queue.appendleft(prefix)
                        self._drop(peer, f"{problem} (chunk {prefix.hex()})")
                        return
                    assert chunk is not None
                    done[prefix] = chunk.entries
                    served[peer] += 1
                    served_keys[peer] += len(chunk.entries)
                    progress.chunks_done += 1
                    progress.keys += len(chunk.entries)
                    log.debug("state sync: chunk %s (%d keys) from %s", prefix.hex(),
                              len(chunk.entries), name)  # fmt: skip
                finally:
                    state["in_flight"] -= 1  # type: ignore[operator]
                    changed()

        async with trio.open_nursery() as nursery:
            for peer in chosen.servers:
                nursery.start_soon(worker, peer)
        if queue:
            log.warning(
                "state sync: every peer serving snapshot %d was dropped with %d chunks to go; "
                "replaying blocks instead", height, len(queue),
            )  # fmt: skip
            return None
        log.info(
            "state sync: %d chunks, %d keys of snapshot %d verified; served by %s",
            len(done), progress.keys, height,
            ", ".join(f"{self.names[p]} {served[p]} chunks/{served_keys[p]} keys"
                      for p in sorted(served)) or "nobody (empty state)",
        )  # fmt: skip
        return [kv for prefix in sorted(done) for kv in done[prefix]]

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
    ) -> tuple[str | None, StateChunk | None]:
        """(problem, chunk): a problem drops the peer; (None, None) means "too large"."""
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

        def decode_and_verify() -> StateChunk:
            chunk = StateChunk.decode(raw)
            if (chunk.height, chunk.prefix) != (height, prefix):
                raise SnapshotError(f"it is chunk {chunk.prefix.hex()} of snapshot {chunk.height}")
            verify_chunk(root, chunk)
            return chunk

        try:
            return None, await trio.to_thread.run_sync(decode_and_verify)
        except (DecodeError, SnapshotError) as exc:
            self.counters["statesync.bad_chunks"] += 1
            return f"served a chunk that does not verify: {exc}", None

    async def _install(
        self, store: Store, chosen: ChosenSnapshot, items: list[tuple[bytes, bytes]]
    ) -> None:
        assert self.progress is not None
        self.progress.phase = SyncPhase.WRITING
        header = chosen.header

        def write() -> None:
            tree = genesis_tree(dict(items))
            if tree.new_root != header.state_root:  # every chunk verified: cannot happen
                raise SnapshotError("the verified chunks do not make the certified state")
            store.install_snapshot(header, chosen.certificate, items, tree)

        started = time.monotonic()
        await trio.to_thread.run_sync(write)
        log.info(
            "state sync: installed snapshot %d (%d keys) in %.2f s; %.2f s since the sync "
            "began; replaying the blocks after it", header.height, len(items),
            time.monotonic() - started, time.monotonic() - self.progress.started_s,
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
        net.send(peer, wire.encode_snapshots(offers), bulk=True)
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
