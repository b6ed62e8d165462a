"""A validator added by vote follows the chain before its epoch (issue 16): far behind it joins
by state sync (the members' threshold and machinery, ledger/node/statesync.py), nearer it
replays certified blocks; its membership is read from the installed state; a sync cut short
leaves its store as it was; and, its chain being verified, it serves blocks and snapshots to
a second joiner.

The validators are in-process fakes answering from a real store (a chain that adds a fifth
member at its first checkpoint, tests/test_statesync_epochs.py) with the validators' own
serving functions through the real wire format; two followers are linked to each other.
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from crypto.hashing import sha256
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.store import Store
from ledger.config import HostPort, NodeConfig
from ledger.node import follower as follower_module
from ledger.node import statesync, wire
from ledger.node.follower import Follower
from ledger.node.membership import KnownMember, peer_id
from ledger.node.peer_limits import read_blocks
from ledger.node.statesync import SyncPhase, min_blocks_behind, read_chunk_reply, read_offers
from tests.test_statesync_epochs import NEWCOMER, _epoch_chain
from tests.test_store import raw_sql
from tests.test_store_snapshot import INTERVAL
from tests.test_store_snapshot import genesis as genesis

#: A key outside every set of the source chain (NEWCOMER joins it at block INTERVAL).
JOINER = PrivateKey(sha256(b"follower test joiner"))
SECOND = PrivateKey(sha256(b"follower test second joiner"))
HEAD = 3 * INTERVAL + 1  # snapshots kept at 3 * INTERVAL and 2 * INTERVAL
DEADLINE_S = 30.0


@pytest.fixture
def source(tmp_path: Path, genesis: Genesis) -> Store:
    store = Store.open(tmp_path / "source.db", genesis)
    _epoch_chain(store, genesis, HEAD)
    return store


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statesync, "OFFER_WAIT_S", 0.3)
    monkeypatch.setattr(statesync, "CHUNK_TIMEOUT_S", 2.0)
    monkeypatch.setattr(follower_module, "POLL_S", 0.01)


def _follower(
    tmp_path: Path, genesis: Genesis, key: PrivateKey, store: Store, *, state_sync: bool = True
) -> Follower:
    config = NodeConfig(
        home=tmp_path,
        name="joiner",
        rpc_listen=HostPort("127.0.0.1", 1),
        p2p_listen=HostPort("127.0.0.1", 2),
        state_sync=state_sync,
    )
    return Follower(config=config, genesis=genesis, key=key, store=store)


class Validators:
    """Genesis validators 0..2, answering the follower from ``source`` as validators do."""

    def __init__(self, nursery: trio.Nursery, follower: Follower, source: Store) -> None:
        self.nursery = nursery
        self.follower = follower
        self.source = source
        #: The first height of each catch-up request the follower sent.
        self.asked_from: list[int] = []

    def connected_peers(self) -> list[int]:
        return [0, 1, 2]

    def update_members(self, members: object) -> None:
        pass

    def send(self, peer: int, payload: bytes, bulk: bool = False) -> None:
        self.nursery.start_soon(self._answer, peer, payload)

    async def _answer(self, peer: int, payload: bytes) -> None:
        await trio.sleep(0.001)
        family, body = wire.split(payload)
        source = self.source
        if family is wire.Family.BLOCKS_WANTED:
            wanted = wire.BlocksWanted.decode(body)
            self.asked_from.append(wanted.from_height)
            reply = wire.encode_blocks(read_blocks(source, wanted))
        elif family is wire.Family.SNAPSHOTS_WANTED:
            reply = wire.encode_snapshots(read_offers(source), source.epoch_links())
        else:
            reply = read_chunk_reply(source, wire.ChunkWanted.decode(body)).encode()
        self.follower.on_message(peer, reply)


class Link:
    """One side of a peer link between two followers (``other`` hears us as ``own``)."""

    def __init__(self, nursery: trio.Nursery, own: int, other_id: int) -> None:
        self.nursery = nursery
        self.own = own
        self.other_id = other_id
        self.other: Follower | None = None
        #: Everything sent, to the linked follower or not.
        self.sent: list[bytes] = []

    def connected_peers(self) -> list[int]:
        return [self.other_id]

    def update_members(self, members: list[KnownMember]) -> None:
        pass

    def send(self, peer: int, payload: bytes, bulk: bool = False) -> None:
        self.sent.append(payload)
        if peer == self.other_id and self.other is not None:  # else: no such link
            self.nursery.start_soon(self._deliver, self.other, payload)

    async def _deliver(self, other: Follower, payload: bytes) -> None:
        await trio.sleep(0.001)
        other.on_message(self.own, payload)


async def _until(what: str, condition: Callable[[], bool]) -> None:
    with trio.move_on_after(DEADLINE_S):
        while not condition():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {DEADLINE_S:.0f} s waiting for {what}")


def _run(body: Callable[[trio.Nursery], Awaitable[None]]) -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await body(nursery)
            nursery.cancel_scope.cancel()

    trio.run(main)


def _follow_validators(
    follower: Follower, source: Store, *, until: Callable[[], bool] | None = None
) -> Validators:
    """Run ``follower`` against the fake validators until ``until`` (else until it is a
    member: its run returns)."""
    nets: list[Validators] = []

    async def body(nursery: trio.Nursery) -> None:
        net = Validators(nursery, follower, source)
        nets.append(net)
        with trio.fail_after(DEADLINE_S):
            if until is None:
                await follower.run(net)  # type: ignore[arg-type]
                return
            nursery.start_soon(follower.run, net)  # type: ignore[arg-type]
            await _until("the follower's condition", until)

    _run(body)
    return nets[0]


def test_far_behind_a_follower_installs_a_snapshot_then_follows_blocks_from_it(
    tmp_path: Path, genesis: Genesis, source: Store
) -> None:
    store = Store.open(tmp_path / "joiner.db", genesis)
    joiner = _follower(tmp_path, genesis, JOINER, store)
    assert joiner.state_sync_min_blocks == min_blocks_behind(genesis) == INTERVAL
    net = _follow_validators(joiner, source, until=lambda: store.head_height == HEAD)
    assert store.base_height == 3 * INTERVAL, "installed the newest snapshot"
    assert min(net.asked_from) == 3 * INTERVAL + 1, "no block below the snapshot replayed"
    assert joiner.counters["follower.snapshots_installed"] == 1
    assert joiner.counters["follower.blocks"] == 1
    assert (store.head_hash, store.state_root) == (source.head_hash, source.state_root)
    # It follows the chain of sets from the installed links: still not a member (epoch 1).
    assert not joiner.member() and [link.height for link in store.epoch_links()] == [INTERVAL]
    store.check_integrity()


def test_within_the_threshold_a_follower_replays_blocks_from_its_head(
    tmp_path: Path, genesis: Genesis, source: Store
) -> None:
    store = Store.open(tmp_path / "joiner.db", genesis)
    joiner = _follower(tmp_path, genesis, JOINER, store)
    joiner.state_sync_min_blocks = HEAD  # the newest snapshot is not far enough ahead
    net = _follow_validators(joiner, source, until=lambda: store.head_height == HEAD)
    assert store.base_height is None and net.asked_from[0] == 1
    assert joiner.counters["follower.snapshots_installed"] == 0
    assert joiner.counters["follower.blocks"] == HEAD
    assert (store.head_hash, store.state_root) == (source.head_hash, source.state_root)


def test_a_snapshot_after_its_switch_makes_the_follower_a_member_from_the_installed_state(
    tmp_path: Path, genesis: Genesis, source: Store
) -> None:
    store = Store.open(tmp_path / "newcomer.db", genesis)
    newcomer = _follower(tmp_path, genesis, NEWCOMER, store)
    assert not newcomer.member()
    net = _follow_validators(newcomer, source)  # returns once a member
    assert newcomer.member() and store.base_height == 3 * INTERVAL
    assert store.head_height == 3 * INTERVAL and net.asked_from == []


def test_a_follower_sync_cut_short_leaves_its_store_as_it_was_and_a_restart_syncs(
    tmp_path: Path, genesis: Genesis, source: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "joiner.db"
    store = Store.open(path, genesis)
    joiner = _follower(tmp_path, genesis, JOINER, store)
    joiner.state_sync.chunk_delay_s = 0.05  # slow staging: the cut lands mid-fetch
    seen: list[dict[str, Any]] = []

    def mid_fetch() -> bool:
        progress = joiner.state_sync.progress
        if progress is None or progress.phase is not SyncPhase.FETCHING:
            return False
        if not progress.keys_staged or progress.chunks_done >= progress.chunks_total:
            return False
        seen.append(joiner.status())
        return True

    _follow_validators(joiner, source, until=mid_fetch)
    store.close()
    assert raw_sql(path, "SELECT count(*) FROM sync_state")[0][0] > 0, "staged rows on disk"
    assert raw_sql(path, "SELECT count(*) FROM blocks")[0][0] == 0
    syncing = seen[0]["syncing"]
    assert (syncing["mode"], syncing["phase"], syncing["snapshot_height"]) == (
        "follower",
        "fetching",
        3 * INTERVAL,
    )
    assert syncing["progress"]["chunks_done"] < syncing["progress"]["chunks_total"]
    assert seen[0]["follower"] is True and seen[0]["height"] == 0
    with Store.open(path, genesis) as reopened:
        assert reopened.head_height == 0 and reopened.base_height is None
        assert reopened.state_root == reopened.genesis_state_root
        reopened.check_integrity()
        again = _follower(tmp_path, genesis, JOINER, reopened)
        _follow_validators(again, source, until=lambda: reopened.head_height == HEAD)
        assert reopened.base_height == 3 * INTERVAL
        assert again.status()["syncing"] == {
            "mode": "follower",
            "phase": "following",
            "progress": {"height": HEAD},
        }


@pytest.mark.parametrize("state_sync", [False, True], ids=["blocks", "snapshot"])
def test_a_second_joiner_catches_up_from_a_follower(
    tmp_path: Path, genesis: Genesis, source: Store, state_sync: bool
) -> None:
    """The first follower (holding the verified chain) serves the second: catch-up replies
    with the validators' format and limits, or a snapshot and the blocks after it."""
    first = _follower(tmp_path, genesis, JOINER, source, state_sync=False)  # serves offers
    store = Store.open(tmp_path / "second.db", genesis)
    second = _follower(tmp_path, genesis, SECOND, store, state_sync=state_sync)
    first_id, second_id = peer_id(genesis, JOINER.public_key), peer_id(genesis, SECOND.public_key)
    counters: collections.Counter[str] = collections.Counter()  # when the second caught up

    async def body(nursery: trio.Nursery) -> None:
        to_second, to_first = Link(nursery, first_id, second_id), Link(nursery, second_id, first_id)
        to_second.other, to_first.other = second, first
        nursery.start_soon(first.run, to_second)  # type: ignore[arg-type]
        nursery.start_soon(second.run, to_first)  # type: ignore[arg-type]
        await _until(
            "the second joiner at the head, asking above it",
            lambda: store.head_height == HEAD and first.counters["catchup.requests_served"] >= 2,
        )
        counters.update(first.counters)
        # One catch-up request per peer at a time: a second one at once is refused.
        served = first.counters["catchup.requests_served"]
        refused = first.counters["catchup.requests_refused"]
        request = wire.BlocksWanted(1, 2).encode()
        first.on_message(second_id + 1, request)
        first.on_message(second_id + 1, request)
        assert first.counters["catchup.requests_served"] == served + 1
        assert first.counters["catchup.requests_refused"] == refused + 1

    _run(body)
    assert (store.head_hash, store.state_root) == (source.head_hash, source.state_root)
    if state_sync:
        assert store.base_height == 3 * INTERVAL
        assert counters["statesync.offers_served"] >= 1 and counters["statesync.chunks_served"]
        assert counters["catchup.blocks_served"] == 1
    else:
        assert store.base_height is None
        assert counters["catchup.blocks_served"] == HEAD
    assert counters["catchup.requests_refused"] == 0
