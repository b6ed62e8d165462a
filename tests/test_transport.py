"""Peer links under trio (ledger/node/transport.py), over real TCP on 127.0.0.1.

The genesis has five validators: index 0 is a "rogue" whose key the test holds and drives
by hand (it may dial everyone, as the lowest index), indices 1..4 are in-process nodes.
Every wait is on a condition under a generous deadline; ports are chosen by the kernel.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from crypto.handshake import (
    MAX_FRAME_BYTES,
    FrameSender,
    Handshake,
    HandshakeError,
    HandshakeResult,
    Role,
    split_messages,
)
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from genesis.document import Genesis
from ledger.config import HostPort, NodeConfig, PeerConfig
from ledger.node.membership import KnownMember, peer_id
from ledger.node.transport import (
    IDLE_TIMEOUT,
    TIMEOUT,
    TOO_MANY_PENDING,
    WRONG_DIRECTION,
    PeerNetwork,
    TransportSettings,
    open_peer_network,
)

CHAIN = "quorum-test"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(5)]
ROGUE = KEYS[0]
MESH = (1, 2, 3, 4)
STRANGER = PrivateKey(b"\x99" * 32)
GENESIS = build_genesis(
    CHAIN,
    [(f"v{i}", k.public_key) for i, k in enumerate(KEYS)],
    genesis_time="2026-01-01T00:00:00Z",
)
FAST = TransportSettings(
    connect_timeout_s=2.0,
    handshake_timeout_s=2.0,
    reconnect_initial_s=0.02,
    reconnect_max_s=0.2,
    keepalive_interval_s=1.0,
    idle_timeout_s=10.0,
)
DEADLINE_S = 10.0


def run(test: Callable[[], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(30):
            await test()

    trio.run(main)


async def until(condition: Callable[[], bool]) -> None:
    """Poll a condition (cheaply) until it holds; fail after DEADLINE_S."""
    with trio.fail_after(DEADLINE_S):
        while not condition():
            await trio.sleep(0.005)


@dataclass
class Node:
    index: int
    config: NodeConfig
    listeners: list[trio.SocketListener] | None
    inbox: list[tuple[int, bytes]] = field(default_factory=list)
    net: PeerNetwork | None = None

    def received(self, sender: int, message: bytes) -> None:
        self.inbox.append((sender, message))

    @property
    def port(self) -> int:
        return self.config.p2p_listen.port

    @property
    def network(self) -> PeerNetwork:
        assert self.net is not None
        return self.net


async def make_nodes(members: tuple[int, ...] = MESH) -> dict[int, Node]:
    """Bind a listener per member first, so every config can name every real port."""
    listeners = {i: await trio.open_tcp_listeners(0, host="127.0.0.1") for i in members}
    ports = {i: ls[0].socket.getsockname()[1] for i, ls in listeners.items()}
    nodes = {}
    for i in members:
        peers = tuple(
            PeerConfig(f"v{j}", HostPort("127.0.0.1", ports[j]), KEYS[j].public_key)
            for j in members
            if j != i
        )
        config = NodeConfig(
            home=Path("/nonexistent"),
            name=f"v{i}",
            rpc_listen=HostPort("127.0.0.1", 1),
            p2p_listen=HostPort("127.0.0.1", ports[i]),
            peers=peers,
        )
        nodes[i] = Node(i, config, listeners[i])
    return nodes


@asynccontextmanager
async def open_node(
    node: Node, settings: TransportSettings = FAST, genesis: Genesis = GENESIS
) -> AsyncIterator[PeerNetwork]:
    listeners, node.listeners = node.listeners, None  # reopening binds the config's port
    async with open_peer_network(
        node.config,
        genesis,
        KEYS[node.index],
        node.received,
        settings=settings,
        listeners=listeners,
    ) as net:
        node.net = net
        yield net
    node.net = None


@asynccontextmanager
async def open_mesh(settings: TransportSettings = FAST) -> AsyncIterator[dict[int, Node]]:
    nodes = await make_nodes()
    async with AsyncExitStack() as stack:
        for node in nodes.values():
            await stack.enter_async_context(open_node(node, settings))
        with trio.fail_after(DEADLINE_S):
            for node in nodes.values():
                await node.network.wait_connected(j for j in MESH if j != node.index)
        yield nodes


async def dial(
    port: int,
    key: PrivateKey,
    expect: PrivateKey,
    *,
    genesis_hash: bytes = GENESIS.hash(),
    chain: str = CHAIN,
) -> tuple[trio.SocketStream, HandshakeResult | None]:
    """A hand-driven client: handshake with the node on ``port``; None if it refuses us."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    handshake = Handshake(Role.INITIATOR, key, chain, genesis_hash, [expect.public_key])
    await stream.send_all(handshake.data_to_send())
    with trio.fail_after(DEADLINE_S):
        while True:
            data = await stream.receive_some(4096)
            if not data:
                return stream, None
            try:
                result = handshake.receive_data(data)
            except HandshakeError:  # the node is on another chain, as far as we can tell
                return stream, None
            await stream.send_all(handshake.data_to_send())
            if result is not None:
                return stream, result


async def wait_closed_by_node(stream: trio.SocketStream) -> None:
    """The node must close the connection: read until EOF (or reset)."""
    with trio.fail_after(DEADLINE_S):
        try:
            while await stream.receive_some(65536):
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()


def delivered(node: Node, sender: int) -> list[bytes]:
    return [m for s, m in node.inbox if s == sender]


# --------------------------------------------------------------------------- the mesh


def test_four_nodes_form_a_full_mesh_and_exchange_messages() -> None:
    async def main() -> None:
        async with open_mesh() as nodes:
            for i, node in nodes.items():
                assert node.network.connected_peers() == [j for j in MESH if j != i]
                node.network.broadcast(b"hello from %d" % i)
                for j in MESH:
                    if j != i:
                        node.network.send(j, b"direct %d->%d" % (i, j))

            def everyone_heard_everyone() -> bool:
                return all(len(n.inbox) == 2 * (len(MESH) - 1) for n in nodes.values())

            await until(everyone_heard_everyone)
            for i, node in nodes.items():
                for j in MESH:
                    if j != i:
                        assert delivered(node, j) == [
                            b"hello from %d" % j,
                            b"direct %d->%d" % (j, i),
                        ]
            stats = nodes[2].network.statistics()
            assert stats.own_index == 2
            assert stats.peers[1].direction == "inbound"  # the lower index dialed
            assert stats.peers[3].direction == "outbound"
            assert not stats.peers[0].connected  # the rogue never came
            assert stats.peers[3].messages_out == 2 and stats.peers[3].messages_in == 2
            assert stats.peers[3].bytes_out > 0 and stats.peers[3].bytes_in > 0
            assert stats.inbound_refused == {}
            assert stats.inbound_accepted == 1  # from validator 1 only
            for i, node in nodes.items():  # exactly one connection per pair, agreed on
                for j, peer in node.network.statistics().peers.items():
                    if j in MESH:
                        assert peer.connections == 1
                        assert peer.direction == ("outbound" if i < j else "inbound")

    run(main)


def test_many_small_sends_are_coalesced_into_few_frames() -> None:
    async def main() -> None:
        async with open_mesh() as nodes:
            sender, receiver = nodes[1].network, nodes[4]
            before = sender.statistics().peers[4]
            messages = [i.to_bytes(4, "big") + bytes(146) for i in range(5000)]
            for message in messages:
                sender.send(4, message)
            await until(lambda: len(delivered(receiver, 1)) == len(messages))
            assert delivered(receiver, 1) == messages  # in order, each exactly once
            after = sender.statistics().peers[4]
            assert after.messages_out - before.messages_out == len(messages)
            frames = after.frames_out - before.frames_out
            assert 1 <= frames <= 10, f"{frames} frames for {len(messages)} messages"
            assert after.queued_messages == 0 and after.dropped_messages == 0

    run(main)


async def start_node(nursery: trio.Nursery, node: Node) -> trio.Event:
    """Run ``node`` in the background until the returned event is set; wait until it listens."""
    stop = trio.Event()

    async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_node(node):
            task_status.started()
            await stop.wait()

    await nursery.start(serve)
    return stop


async def wait_full_mesh(nodes: dict[int, Node]) -> None:
    with trio.fail_after(DEADLINE_S):
        for node in nodes.values():
            await node.network.wait_connected(j for j in MESH if j != node.index)


def nobody_sees(nodes: dict[int, Node], victim: int) -> Callable[[], bool]:
    return lambda: all(
        victim not in n.network.connected_peers() for i, n in nodes.items() if i != victim
    )


def everyone_got(nodes: dict[int, Node], victim: int, message: bytes) -> Callable[[], bool]:
    return lambda: all(
        delivered(n, victim)[-1:] == [message] for i, n in nodes.items() if i != victim
    )


def test_a_closed_and_reopened_node_is_reconnected_by_everyone() -> None:
    async def main() -> None:
        nodes = await make_nodes()
        async with trio.open_nursery() as nursery:
            stops = {i: await start_node(nursery, node) for i, node in nodes.items()}
            await wait_full_mesh(nodes)
            for victim in (4, 1):  # the highest index (everyone dials it), the lowest (it dials)
                stops[victim].set()
                await until(lambda v=victim: nodes[v].net is None)  # type: ignore[misc]
                await until(nobody_sees(nodes, victim))
                stops[victim] = await start_node(nursery, nodes[victim])
                await wait_full_mesh(nodes)
                nodes[victim].network.broadcast(b"back %d" % victim)
                await until(everyone_got(nodes, victim, b"back %d" % victim))
                for i, node in nodes.items():
                    if i != victim:
                        stats = node.network.statistics().peers[victim]
                        assert stats.connected and stats.reconnects == 1
                        assert sum(stats.disconnects.values()) == 1
            for stop in stops.values():
                stop.set()

    run(main)


# --------------------------------------------------------------------------- refusals


def test_unknown_keys_and_other_chains_are_refused_and_counted() -> None:
    async def main() -> None:
        async with open_mesh() as nodes:
            target = nodes[2]
            stream, result = await dial(target.port, STRANGER, KEYS[2])
            assert result is None
            await wait_closed_by_node(stream)
            other = build_genesis(
                "other-chain", [("v0", ROGUE.public_key)], genesis_time="2026-01-01T00:00:00Z"
            )
            stream, result = await dial(
                target.port, ROGUE, KEYS[2], genesis_hash=other.hash(), chain="other-chain"
            )
            assert result is None
            await wait_closed_by_node(stream)
            stream, result = await dial(target.port, KEYS[4], KEYS[2])  # 4 > 2: 2 dials 4
            assert result is not None
            await wait_closed_by_node(stream)
            await until(
                lambda: (
                    target.network.statistics().inbound_refused
                    == {"unknown key": 1, "other chain/genesis": 1, WRONG_DIRECTION: 1}
                )
            )
            assert target.network.connected_peers() == [1, 3, 4]  # the mesh is untouched

    run(main)


def test_garbage_and_oversized_frames_disconnect_the_sender_and_the_mesh_keeps_working() -> None:
    async def main() -> None:
        async with open_mesh() as nodes:
            target = nodes[3]
            # 1. not even a hello
            stream = await trio.open_tcp_stream("127.0.0.1", target.port)
            await stream.send_all(os.urandom(300))
            await wait_closed_by_node(stream)
            # 2. a real hello, then garbage where the auth frame belongs
            stream = await trio.open_tcp_stream("127.0.0.1", target.port)
            hello = Handshake(Role.INITIATOR, ROGUE, CHAIN, GENESIS.hash(), [KEYS[3].public_key])
            await stream.send_all(hello.data_to_send() + b"\x00\x00\x00\x50" + os.urandom(80))
            await wait_closed_by_node(stream)
            # 3. an authenticated validator announcing a frame over the cap: cut at the prefix
            stream, result = await dial(target.port, ROGUE, KEYS[3])
            assert result is not None
            await stream.send_all((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
            await wait_closed_by_node(stream)
            # 4. an authenticated validator sending a frame that fails authentication
            stream, result = await dial(target.port, ROGUE, KEYS[3])
            assert result is not None
            await stream.send_all(FrameSender(bytes(32), first_counter=1).seal_messages([b"x"]))
            await wait_closed_by_node(stream)
            stats = target.network.statistics()
            assert stats.inbound_refused == {"malformed": 1, "decryption failed": 1}
            assert stats.peers[0].disconnects == {"frame too large": 1, "decryption failed": 1}
            assert not stats.peers[0].connected
            # the honest nodes never noticed
            nodes[1].network.broadcast(b"still here")
            await until(lambda: all(delivered(nodes[j], 1) == [b"still here"] for j in (2, 3, 4)))

    run(main)


def test_silent_connections_time_out_and_pending_handshakes_are_capped() -> None:
    settings = TransportSettings(handshake_timeout_s=0.5, max_pending_handshakes=2)

    async def main() -> None:
        nodes = await make_nodes((1,))
        async with open_node(nodes[1], settings) as net:
            silent = [await trio.open_tcp_stream("127.0.0.1", nodes[1].port) for _ in range(3)]
            await until(lambda: net.statistics().inbound_refused.get(TOO_MANY_PENDING) == 1)
            await until(lambda: net.statistics().inbound_refused.get(TIMEOUT) == 2)
            for stream in silent:
                await wait_closed_by_node(stream)

    run(main)


def test_a_validator_that_goes_quiet_is_dropped_and_keepalives_keep_honest_links_up() -> None:
    settings = TransportSettings(keepalive_interval_s=0.1, idle_timeout_s=0.6)

    async def main() -> None:
        nodes = await make_nodes((1, 2))
        async with open_node(nodes[1], settings), open_node(nodes[2], settings) as net:
            with trio.fail_after(DEADLINE_S):
                await net.wait_connected([1])
            stream, result = await dial(nodes[2].port, ROGUE, KEYS[2])
            assert result is not None
            await wait_closed_by_node(stream)  # it never sends, not even keepalives
            stats = net.statistics()
            assert stats.peers[0].disconnects == {IDLE_TIMEOUT: 1}
            assert stats.peers[1].connected and stats.peers[1].connections == 1
            assert stats.peers[1].frames_in >= 3  # keepalives, and nothing else

    run(main)


# --------------------------------------------------------------------------- queues


def test_bounded_queues_drop_the_oldest_and_deliver_the_rest_on_connect() -> None:
    settings = TransportSettings(max_queue_messages=10, max_queue_bytes=1000)

    async def main() -> None:
        nodes = await make_nodes((1,))
        async with open_node(nodes[1], settings) as net:
            for i in range(100):
                net.send(0, b"%03d" % i)  # the rogue is offline: its queue fills
            stats = net.statistics().peers[0]
            assert (stats.queued_messages, stats.dropped_messages) == (10, 90)
            assert stats.queued_bytes == 30
            net.send(2, bytes(600))
            net.send(2, bytes(600))  # over the byte cap: the first goes
            assert net.statistics().peers[2].dropped_messages == 1
            stream, result = await dial(nodes[1].port, ROGUE, KEYS[1])
            assert result is not None
            got: list[bytes] = []
            with trio.fail_after(DEADLINE_S):
                while len(got) < 10:
                    for payload in result.receiver.receive_data(await stream.receive_some()):
                        got += split_messages(payload)
            assert got == [b"%03d" % i for i in range(90, 100)]
            await stream.aclose()
            with pytest.raises(ValueError):
                net.send(1, b"to myself")
            with pytest.raises(ValueError):
                net.send(0, b"")
            with pytest.raises(ValueError):
                net.broadcast(bytes(settings.max_message_bytes + 1))

    run(main)


def test_consensus_messages_go_ahead_of_bulk_and_bulk_is_dropped_first() -> None:
    """A PRE-PREPARE must not wait behind megabytes of gossip on the same link (issue 12's
    last view change): the writer takes consensus messages first, and a full queue drops
    the oldest gossip before any consensus message."""
    settings = TransportSettings(max_queue_messages=6, max_queue_bytes=10_000)

    async def main() -> None:
        nodes = await make_nodes((1,))
        async with open_node(nodes[1], settings) as net:
            for i in range(4):
                net.send(0, b"gossip%d" % i, bulk=True)  # the rogue is offline: all wait
            for i in range(4):
                net.send(0, b"vote%d" % i)
            stats = net.statistics().peers[0]
            assert (stats.queued_messages, stats.dropped_messages) == (6, 2)
            stream, result = await dial(nodes[1].port, ROGUE, KEYS[1])
            assert result is not None
            got: list[bytes] = []
            with trio.fail_after(DEADLINE_S):
                while len(got) < 6:
                    for payload in result.receiver.receive_data(await stream.receive_some()):
                        got += split_messages(payload)
            assert got == [b"vote0", b"vote1", b"vote2", b"vote3", b"gossip2", b"gossip3"]
            await stream.aclose()

    run(main)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        TransportSettings(max_queue_messages=0)
    with pytest.raises(ValueError):
        TransportSettings(keepalive_interval_s=5.0, idle_timeout_s=5.0)
    with pytest.raises(ValueError):
        TransportSettings(max_frame_bytes=MAX_FRAME_BYTES + 1)


def test_the_peer_table_follows_the_set_a_newcomer_links_and_a_dropped_member_is_cut() -> None:
    """A key outside the genesis opens a network (a follower); the genesis validators link
    to it once it is in their table (learnt from state), and drop it when it leaves."""

    async def main() -> None:
        nodes = await make_nodes((1,))
        listeners = nodes[1].listeners
        assert listeners is not None
        stranger_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = stranger_listeners[0].socket.getsockname()[1]
        newcomer = KnownMember("v9", STRANGER.public_key, HostPort("127.0.0.1", port))
        genesis_members = [KnownMember(f"v{i}", k.public_key, None) for i, k in enumerate(KEYS)]
        config = dataclasses.replace(
            nodes[1].config,
            name="v9",
            p2p_listen=HostPort("127.0.0.1", port),
            peers=(PeerConfig("v1", HostPort("127.0.0.1", nodes[1].port), KEYS[1].public_key),),
        )
        stranger_inbox: list[tuple[int, bytes]] = []
        async with (
            open_node(nodes[1]) as net,
            open_peer_network(
                config,
                GENESIS,
                STRANGER,
                lambda s, m: stranger_inbox.append((s, m)),
                settings=FAST,
                listeners=stranger_listeners,
            ) as follower,
        ):
            new_id = peer_id(GENESIS, STRANGER.public_key)
            assert follower.own_index == new_id and not net.knows(new_id)
            assert new_id not in net.connected_peers()
            net.update_members([*genesis_members, newcomer])
            follower.update_members([*genesis_members, newcomer])
            with trio.fail_after(DEADLINE_S):
                await net.wait_connected([new_id])
            net.send(new_id, b"welcome")
            await until(lambda: stranger_inbox == [(1, b"welcome")])
            net.update_members(genesis_members)
            assert not net.knows(new_id)
            await until(lambda: 1 not in follower.connected_peers())

    run(main)


def test_a_link_out_of_frame_counters_reconnects_with_fresh_keys_and_loses_nothing() -> None:
    settings = TransportSettings(
        max_frame_counter=4, reconnect_initial_s=0.01, reconnect_max_s=0.05
    )

    async def main() -> None:
        nodes = await make_nodes((1, 2))
        async with open_node(nodes[1], settings) as net, open_node(nodes[2], settings):
            for i in range(20):
                net.send(2, b"m%02d" % i)
                await until(lambda n=i + 1: len(delivered(nodes[2], 1)) == n)  # type: ignore[misc]
            assert delivered(nodes[2], 1) == [b"m%02d" % i for i in range(20)]
            stats = net.statistics().peers[2]
            assert stats.reconnects >= 4
            assert stats.disconnects.get("counter exhausted", 0) >= 4
            assert stats.dropped_messages == 0

    run(main)


def test_a_failing_message_handler_is_our_bug_and_fails_loudly() -> None:
    class HandlerBug(Exception):
        pass

    def broken(sender: int, message: bytes) -> None:
        raise HandlerBug(message)

    async def main() -> None:
        nodes = await make_nodes((1, 2))
        async with open_node(nodes[1]) as net:
            listeners, nodes[2].listeners = nodes[2].listeners, None
            async with open_peer_network(
                nodes[2].config, GENESIS, KEYS[2], broken, settings=FAST, listeners=listeners
            ):
                with trio.fail_after(DEADLINE_S):
                    await net.wait_connected([2])
                net.send(2, b"boom")
                await trio.sleep_forever()

    with pytest.RaisesGroup(HandlerBug, flatten_subgroups=True):
        run(main)
