"""State sync against peers that misbehave (issue 15): a corrupted chunk, a forged
certificate, a peer that stops mid-transfer, a sync interrupted mid-way. Each ends with the
right state installed or a clear refusal with the store untouched — never wrong state.

The peers are in-process fakes answering from a real store through the real wire format.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from genesis.document import Genesis
from ledger.chain import store_sync
from ledger.chain.epoch_links import EpochLink
from ledger.chain.snapshot import StateChunk
from ledger.chain.store import Store, StoreError
from ledger.node import statesync, wire
from ledger.node.statesync import StateSync, read_chunk_reply, read_offers
from tests.test_store import append_transfers
from tests.test_store_snapshot import INTERVAL
from tests.test_store_snapshot import genesis as genesis

OWN = 3


@pytest.fixture
def source(tmp_path: Path, genesis: Genesis) -> Store:
    store = Store.open(tmp_path / "source.db", genesis)
    for _ in range(2 * INTERVAL + 1):
        append_transfers(store, genesis, 25)
    return store


def _corrupt(reply: wire.ChunkReply) -> wire.ChunkReply:
    assert reply.chunk is not None
    chunk = StateChunk.decode(reply.chunk)
    if not chunk.entries:
        return reply
    key, value = chunk.entries[0]
    bad = dataclasses.replace(chunk, entries=((key, value + b"!"), *chunk.entries[1:]))
    return dataclasses.replace(reply, chunk=bad.encode())


def _forge(offer: wire.SnapshotOffer) -> wire.SnapshotOffer:
    """A newer 'snapshot' whose header names another state root under a real certificate."""
    from ledger.chain.types import BlockHeader

    header = BlockHeader.decode(offer.header)
    fake = dataclasses.replace(header, height=header.height + INTERVAL, state_root=bytes(32))
    return dataclasses.replace(offer, height=fake.height, header=fake.raw)


class FakeNet:
    """Peers 0..2 answering from ``source``; ``behaviour[peer]`` bends their answers."""

    def __init__(
        self, nursery: trio.Nursery, sync: StateSync, source: Store, behaviour: dict[int, str]
    ) -> None:
        self.nursery = nursery
        self.sync = sync
        self.source = source
        self.behaviour = behaviour
        self.served: collections.Counter[int] = collections.Counter()

    def connected_peers(self) -> list[int]:
        return [0, 1, 2]

    def send(self, peer: int, payload: bytes, bulk: bool = False) -> None:
        self.nursery.start_soon(self._answer, peer, payload)

    def links(self, how: str) -> list[EpochLink]:
        """The chain of sets a peer sends with its offers (tests bend it)."""
        del how
        return self.source.epoch_links()

    async def _answer(self, peer: int, payload: bytes) -> None:
        await trio.sleep(0.005)
        family, body = wire.split(payload)
        how = self.behaviour.get(peer, "honest")
        if family is wire.Family.SNAPSHOTS_WANTED:
            offers = read_offers(self.source)
            if how == "forged":
                offers = [_forge(offers[0])]
            links = self.links(how)
            self.sync.on_offers(peer, wire.encode_snapshots(offers, links)[1:])
            return
        wanted = wire.ChunkWanted.decode(body)
        if how == "stops" and self.served[peer] >= 2:
            return  # stopped mid-transfer
        self.served[peer] += 1
        reply = read_chunk_reply(self.source, wanted)
        if how == "corrupt":
            reply = _corrupt(reply)
        self.sync.on_chunk(peer, reply.encode()[1:])


def _sync(
    target: Store,
    source: Store,
    genesis: Genesis,
    behaviour: dict[int, str],
    *,
    cancel_after_chunks: int | None = None,
) -> tuple[bool, StateSync]:
    counters: collections.Counter[str] = collections.Counter()
    sync = StateSync(genesis, OWN, counters)
    outcome: list[bool] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            net = FakeNet(nursery, sync, source, behaviour)
            with trio.CancelScope() as scope:
                if cancel_after_chunks is not None:

                    async def crash() -> None:
                        while (
                            sync.progress is None or sync.progress.chunks_done < cancel_after_chunks
                        ):
                            await trio.sleep(0.001)
                        scope.cancel()

                    nursery.start_soon(crash)
                outcome.append(await sync.run(net, target, min_ahead=INTERVAL))  # type: ignore[arg-type]
            nursery.cancel_scope.cancel()

    trio.run(main)
    return (outcome[0] if outcome else False), sync


@pytest.fixture
def target(tmp_path: Path, genesis: Genesis) -> Store:
    return Store.open(tmp_path / "target.db", genesis)


@pytest.fixture(autouse=True)
def quick_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statesync, "CHUNK_TIMEOUT_S", 1.0)
    monkeypatch.setattr(statesync, "OFFER_WAIT_S", 1.0)


def _assert_synced(target: Store, source: Store) -> None:
    height = source.snapshots()[0].height
    header = source.get_header(height)
    assert header is not None
    assert (target.head_height, target.head_hash, target.state_root) == (
        height,
        header.hash(),
        header.state_root,
    )
    target.check_integrity()


def _assert_untouched(target: Store, genesis: Genesis, path: Path) -> None:
    assert target.head_height == genesis.initial_height - 1 and target.base_height is None
    target.close()
    with Store.open(path, genesis) as reopened:
        reopened.check_integrity()
        assert reopened.head_height == genesis.initial_height - 1


def test_honest_peers_sync_a_node_from_nothing(
    target: Store, source: Store, genesis: Genesis
) -> None:
    installed, _ = _sync(target, source, genesis, {})
    assert installed
    _assert_synced(target, source)


def test_a_peer_serving_a_corrupted_chunk_is_dropped_and_the_chunk_fetched_elsewhere(
    target: Store,
    source: Store,
    genesis: Genesis,
) -> None:
    installed, sync = _sync(target, source, genesis, {1: "corrupt"})
    assert installed
    _assert_synced(target, source)
    assert sync.counters["statesync.bad_chunks"] >= 1
    assert sync.counters["statesync.peers_dropped"] == 1


def test_a_forged_checkpoint_certificate_is_refused(
    target: Store,
    source: Store,
    genesis: Genesis,
    tmp_path: Path,
) -> None:
    # With honest peers too, the forged (higher) offer is ignored and the real one used.
    installed, sync = _sync(target, source, genesis, {0: "forged"})
    assert installed and sync.counters["statesync.peers_dropped"] == 1
    _assert_synced(target, source)
    # With only forgers, a clear refusal: nothing is installed.
    other = Store.open(tmp_path / "other.db", genesis)
    installed, _ = _sync(other, source, genesis, {0: "forged", 1: "forged", 2: "forged"})
    assert not installed
    _assert_untouched(other, genesis, tmp_path / "other.db")


def test_a_peer_that_stops_mid_transfer_is_dropped_and_others_finish(
    target: Store,
    source: Store,
    genesis: Genesis,
) -> None:
    installed, sync = _sync(target, source, genesis, {2: "stops"})
    assert installed
    _assert_synced(target, source)
    assert "node2" not in (sync.progress.peers if sync.progress else [])


def test_when_every_peer_stops_the_sync_gives_up_and_writes_nothing(
    target: Store,
    source: Store,
    genesis: Genesis,
    tmp_path: Path,
) -> None:
    installed, _ = _sync(target, source, genesis, {0: "stops", 1: "stops", 2: "stops"})
    assert not installed
    _assert_untouched(target, genesis, tmp_path / "target.db")


def test_a_sync_interrupted_mid_fetch_leaves_the_store_as_it_was_and_restarts_cleanly(
    target: Store,
    source: Store,
    genesis: Genesis,
    tmp_path: Path,
) -> None:
    installed, _ = _sync(target, source, genesis, {}, cancel_after_chunks=3)
    assert not installed
    _assert_untouched(target, genesis, tmp_path / "target.db")
    with Store.open(tmp_path / "target.db", genesis) as again:
        installed, _ = _sync(again, source, genesis, {})
        assert installed
        _assert_synced(again, source)


def test_a_crash_while_writing_the_snapshot_writes_nothing(
    target: Store,
    source: Store,
    genesis: Genesis,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def crash(*args: object) -> None:
        raise StoreError("disk gone (simulated) after the state was written")

    failing: Callable[..., None] = crash
    monkeypatch.setattr(store_sync, "capture", failing)
    with pytest.raises(BaseExceptionGroup) as raised:
        _sync(target, source, genesis, {})
    assert raised.value.subgroup(lambda exc: "simulated" in str(exc)) is not None
    monkeypatch.undo()
    _assert_untouched(target, genesis, tmp_path / "target.db")
