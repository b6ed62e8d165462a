"""How fast one encrypted peer link moves small messages (`quorum bench link`).

Two validators in one process and one trio loop: validator 0 queues messages for
validator 1 as fast as the link drains them (never letting its queue overflow), validator
1 counts them; before that, ping-pong one message at a time for the round-trip time. Also
times the cipher alone (seal + open + split, no sockets) for comparison.

Never: used by the node; it drives ``ledger.node.transport`` from outside, on loopback.
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from crypto.handshake import FrameReceiver, FrameSender, split_messages
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from ledger.config import HostPort, NodeConfig, PeerConfig
from ledger.node.transport import PeerNetwork, TransportSettings, open_peer_network

#: Refill the sender's queue up to here; well under the default queue cap, so nothing drops.
HIGH_WATER_MESSAGES = 8_000
REFILL_MESSAGES = 1_000
ROUND_TRIPS = 2_000
PING = b"ping"


def cipher_only(messages: int, size: int) -> dict[str, float]:
    sender, receiver = FrameSender(bytes(32)), FrameReceiver(bytes(32))
    batch = [bytes(size)] * 6000  # about what one 1 MiB frame holds
    done = 0
    started = time.perf_counter()
    while done < messages:
        for payload in receiver.receive_data(sender.seal_messages(batch)):
            done += len(split_messages(payload))
    elapsed = time.perf_counter() - started
    return {"messages_per_s": done / elapsed, "mb_per_s": done * size / elapsed / 1e6}


async def link(messages: int, size: int) -> dict[str, float]:
    keys = [PrivateKey.generate() for _ in range(2)]
    genesis = build_genesis("bench", [(f"v{i}", k.public_key) for i, k in enumerate(keys)])
    listeners = [await trio.open_tcp_listeners(0, host="127.0.0.1") for _ in keys]
    ports = [ls[0].socket.getsockname()[1] for ls in listeners]
    configs = [
        NodeConfig(
            home=Path("."),
            name=f"v{i}",
            rpc_listen=HostPort("127.0.0.1", 1),
            p2p_listen=HostPort("127.0.0.1", ports[i]),
            peers=(
                PeerConfig(
                    f"v{1 - i}", HostPort("127.0.0.1", ports[1 - i]), keys[1 - i].public_key
                ),
            ),
        )
        for i in range(2)
    ]
    received = 0
    all_received = trio.Event()
    pong = trio.Event()
    networks: list[PeerNetwork] = []

    def count(sender: int, message: bytes) -> None:
        nonlocal received
        if message == PING:
            networks[1].send(0, PING)
            return
        received += 1
        if received == messages:
            all_received.set()

    def on_pong(sender: int, message: bytes) -> None:
        pong.set()

    settings = TransportSettings()
    payload = bytes(size)
    async with (
        open_peer_network(configs[0], genesis, keys[0], on_pong, listeners=listeners[0]) as a,
        open_peer_network(configs[1], genesis, keys[1], count, listeners=listeners[1]) as b,
    ):
        networks += [a, b]
        await a.wait_connected([1])
        await b.wait_connected([0])
        started = time.perf_counter()
        for _ in range(ROUND_TRIPS):
            pong = trio.Event()
            a.send(1, PING)
            await pong.wait()
        round_trip_s = (time.perf_counter() - started) / ROUND_TRIPS
        started = time.perf_counter()
        sent = 0
        while sent < messages:
            if a.statistics().peers[1].queued_messages < HIGH_WATER_MESSAGES:
                for _ in range(min(REFILL_MESSAGES, messages - sent)):
                    a.send(1, payload)
                sent += min(REFILL_MESSAGES, messages - sent)
            await trio.sleep(0)
        await all_received.wait()
        elapsed = time.perf_counter() - started
        stats = a.statistics().peers[1]
    assert stats.dropped_messages == 0 and settings.max_queue_messages > HIGH_WATER_MESSAGES
    return {
        "messages_per_s": messages / elapsed,
        "mb_per_s": messages * size / elapsed / 1e6,
        "wire_mb_per_s": stats.bytes_out / elapsed / 1e6,
        "messages_per_frame": (stats.messages_out - ROUND_TRIPS)
        / max(1, stats.frames_out - ROUND_TRIPS),
        "round_trip_us": round_trip_s * 1e6,
    }


def measure_link(messages: int, size: int) -> dict[str, object]:
    """The figures of `quorum bench link`: the cipher alone, then a real TCP link."""
    return {
        "messages": messages,
        "message_bytes": size,
        "cipher_only": cipher_only(messages, size),
        "tcp_link": trio.run(link, messages, size),
    }
