"""Hostile peers for the chaos harness: a flooding impersonator and raw peer-port attacks.

What it is for:

* **The flooder** (:func:`run_flood`, the process ``quorum chaos-flood --home DIR/nodeK``) is a fake
  validator process. It holds a real validator key (node K's, with node K stopped), listens
  on K's p2p port and dials the validators K would dial, completes the real handshake
  (``crypto.handshake``), and then sends, at a bounded rate, a mix of junk and *well-signed
  but useless* messages: unknown families, undecodable consensus bodies, bad signatures,
  far-future PREPARE/COMMIT/CHECKPOINT/VIEW-CHANGE, lying STATUS claims, PRE-PREPAREs from a
  non-primary with big junk payloads, gossip of transactions with bad signatures, catch-up
  requests for absurd ranges and megabyte-sized junk. Honest nodes must drop all of it with
  bounded memory while their throughput stays above a floor (docs/RELIABILITY.md).
* **Peer-port attacks** (:func:`pre_handshake_attacks`, :func:`post_handshake_attacks`,
  :func:`try_connection`): named byte strings for a raw TCP connection to a node's p2p
  port — garbage, truncated or malformed HELLOs, wrong versions and chains, unknown keys,
  low-order and non-canonical X25519 points, broken auth frames, and after a real
  handshake truncated frames, oversized length prefixes and undecryptable or replayed
  frames. The node must close the connection and stay healthy.

Never: run against a node whose key it holds while that node runs (the harness stops it
first — except on purpose, for post-handshake attacks, which briefly replace one real
link), or send unbounded traffic (everything is rate-limited and time-limited).
"""

from __future__ import annotations

import json
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    Commit,
    Prepare,
    PrePrepare,
    SignedMessage,
    Status,
    ViewChange,
    sign,
)
from crypto.encoding import encode_record
from crypto.handshake import (
    HELLO_MAGIC,
    FrameSender,
    Handshake,
    HandshakeError,
    HandshakeResult,
    Hello,
    Role,
    join_messages,
    network_id,
    x25519_public_bytes,
)
from crypto.keyfile import load_key
from crypto.keys import PrivateKey
from genesis.document import Genesis, load_genesis
from ledger.config import HostPort, load_config
from ledger.node import wire

#: Messages a second per link, and how many go in one frame.
DEFAULT_RATE_PER_S: Final = 300
MESSAGES_PER_FRAME: Final = 50
#: Expensive kinds are further limited (per link per second).
BLOCKS_WANTED_PER_S: Final = 5
BIG_JUNK_PER_S: Final = 1
BIG_JUNK_BYTES: Final = 1024 * 1024
FAKE_PAYLOAD_BYTES: Final = 16 * 1024
#: Plaintext per frame we seal (the cap is 16 MiB minus the tag).
FRAME_PLAINTEXT_BUDGET: Final = 8 * 1024 * 1024
#: Pre-signed far-future messages cycled through (plus fresh ones).
SIGNED_POOL: Final = 400
HANDSHAKE_TIMEOUT_S: Final = 10.0
REDIAL_S: Final = 0.5
#: Far beyond anything a test network reaches, but valid u64s.
FAR: Final = 10**12
#: X25519 u-coordinates that multiply to zero for every clamped scalar: the points of
#: order 1, 2, 4 and 8, their non-canonical spellings (u >= p) and high-bit variants
#: (also the vectors of tests/test_handshake.py).
LOW_ORDER_POINTS: Final = tuple(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "0000000000000000000000000000000000000000000000000000000000000080",
        "0100000000000000000000000000000000000000000000000000000000000080",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    )
)
#: 2^255 - 10: reduces to the base point 9, so not low-order, but not canonical.
NON_CANONICAL_POINT: Final = (2**255 - 10).to_bytes(32, "little")

FLOOD_KINDS: Final = (
    "junk_family",
    "junk_consensus",
    "junk_gossip",
    "junk_blocks",
    "bad_signature",
    "far_future_vote",
    "far_future_checkpoint",
    "far_future_view_change",
    "lying_status",
    "fake_pre_prepare",
    "bad_tx_gossip",
    "blocks_wanted",
    "big_junk",
)


# ----------------------------------------------------------------------------- the flooder


@dataclass
class FloodStatistics:
    links: int = 0
    handshake_failures: Counter[str] = field(default_factory=Counter)
    messages: Counter[str] = field(default_factory=Counter)
    frames: int = 0
    bytes_out: int = 0
    bytes_in: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "links": self.links,
            "handshake_failures": dict(self.handshake_failures),
            "messages": dict(self.messages),
            "messages_total": sum(self.messages.values()),
            "frames": self.frames,
            "bytes_out": self.bytes_out,
            "bytes_in": self.bytes_in,
        }


class JunkFactory:
    """Builds flood messages (wire-framed) for a validator ``index`` holding ``key``."""

    def __init__(
        self,
        genesis: Genesis,
        key: PrivateKey,
        index: int,
        rng: random.Random,
        big_junk_bytes: int = BIG_JUNK_BYTES,
    ) -> None:
        self.big_junk_bytes = big_junk_bytes
        self._big = b""
        self.genesis = genesis
        self.key = key
        self.index = index
        self.rng = rng
        self.chain_id = genesis.chain_id
        self._pool = [self._signed_far_future() for _ in range(SIGNED_POOL)]
        self._anchor = CheckpointProof(0, genesis.hash(), bytes(32), ())

    def _consensus(self, message: SignedMessage) -> bytes:
        return wire.frame(wire.Family.CONSENSUS, message.encode())

    def _digest(self) -> bytes:
        return self.rng.randbytes(32)

    def _signed_far_future(self) -> bytes:
        rng = self.rng
        view = rng.choice((rng.randrange(5, 50), rng.randrange(FAR)))
        height = rng.choice((rng.randrange(300, 10_000), rng.randrange(FAR)))
        body: Prepare | Commit = rng.choice((Prepare, Commit))(view, height, self._digest())
        return self._consensus(sign(self.key, self.chain_id, self.index, body))

    def make(self, kind: str) -> bytes:
        rng = self.rng
        if kind == "junk_family":
            return bytes([rng.choice((0, *range(5, 256)))]) + rng.randbytes(rng.randrange(0, 512))
        if kind == "junk_consensus":
            return wire.frame(wire.Family.CONSENSUS, rng.randbytes(rng.randrange(0, 2048)))
        if kind == "junk_gossip":
            return wire.frame(wire.Family.TX_GOSSIP, rng.randbytes(rng.randrange(0, 2048)))
        if kind == "junk_blocks":
            return wire.frame(wire.Family.BLOCKS, rng.randbytes(rng.randrange(0, 2048)))
        if kind == "bad_signature":
            body = Commit(rng.randrange(3), rng.randrange(1, 200), self._digest()).encode()
            bad = SignedMessage(self.index, Commit.KIND, body, rng.randbytes(64))
            return self._consensus(bad)
        if kind == "far_future_vote":
            if rng.random() < 0.2:  # some fresh signatures, most from the pool (replays)
                return self._signed_far_future()
            return rng.choice(self._pool)
        if kind == "far_future_checkpoint":
            checkpoint = Checkpoint(rng.randrange(FAR), self._digest(), self._digest())
            return self._consensus(sign(self.key, self.chain_id, self.index, checkpoint))
        if kind == "far_future_view_change":
            view_change = ViewChange(rng.randrange(10, FAR), self._anchor, None, ())
            return self._consensus(sign(self.key, self.chain_id, self.index, view_change))
        if kind == "lying_status":
            status = Status(rng.randrange(FAR), rng.random() < 0.5, rng.randrange(FAR), 0)
            return self._consensus(sign(self.key, self.chain_id, self.index, status))
        if kind == "fake_pre_prepare":
            pre_prepare = PrePrepare(
                rng.randrange(3), rng.randrange(1, 300), self._digest(), self._digest()
            )
            payload = rng.randbytes(FAKE_PAYLOAD_BYTES)
            return self._consensus(sign(self.key, self.chain_id, self.index, pre_prepare, payload))
        if kind == "bad_tx_gossip":
            txs = [self._bad_tx() for _ in range(rng.randrange(1, 50))]
            return wire.encode_tx_gossip(txs)
        if kind == "blocks_wanted":
            return wire.BlocksWanted(1, rng.randrange(64, FAR)).encode()
        if kind == "big_junk":
            if len(self._big) != self.big_junk_bytes:  # one random buffer, reused: cheap to send
                self._big = rng.randbytes(self.big_junk_bytes)
            return wire.frame(wire.Family.CONSENSUS, self._big)
        raise ValueError(f"unknown flood kind {kind!r}")

    def _bad_tx(self) -> bytes:
        """A well-formed transfer whose signature does not verify (costs the node a verify)."""
        rng = self.rng
        sender = rng.randbytes(32)
        fields = [
            self.chain_id,
            sender,
            rng.randrange(1000),
            "transfer",
            [rng.randbytes(20), rng.randrange(1, 1000)],
            10_000,
            None,
            rng.randbytes(64),
        ]
        return encode_record("tx", 1, fields)


class Flooder:
    """Impersonates the validator whose home is ``home``; see the module docstring."""

    def __init__(
        self,
        home: Path,
        *,
        seed: int,
        rate_per_s: int = DEFAULT_RATE_PER_S,
        kinds: tuple[str, ...] = FLOOD_KINDS,
        big_junk_bytes: int = BIG_JUNK_BYTES,
        big_junk_per_s: float = BIG_JUNK_PER_S,
        blocks_wanted_per_s: float = BLOCKS_WANTED_PER_S,
    ) -> None:
        config = load_config(home)
        self.config = config
        self.genesis = load_genesis(config.path(config.genesis_file))
        self.key = load_key(config.path(config.validator_key_file), None)
        index = self.genesis.validator_index(self.key.public_key)
        if index is None:
            raise ValueError("the key is not a genesis validator")
        self.index = index
        self.rng = random.Random(seed)
        self.rate_per_s = rate_per_s
        self.kinds = kinds
        self.stats = FloodStatistics()
        self.factory = JunkFactory(self.genesis, self.key, index, self.rng, big_junk_bytes)
        self.big_junk_per_s = big_junk_per_s
        self.blocks_wanted_per_s = blocks_wanted_per_s
        self.peer_keys = [v.public_key for v in self.genesis.validators]

    def _handshake(self, role: Role, allowed: list[bytes]) -> Handshake:
        return Handshake(role, self.key, self.genesis.chain_id, self.genesis.hash(), allowed)

    async def run(self, duration_s: float) -> FloodStatistics:
        with trio.move_on_after(duration_s):
            async with trio.open_nursery() as nursery:
                listen = self.config.p2p_listen
                listeners = await trio.open_tcp_listeners(listen.port, host=listen.host)
                nursery.start_soon(trio.serve_listeners, self._inbound, listeners)
                for peer in self.config.peers:
                    index = self.genesis.validator_index(peer.validator_public_key)
                    if index is not None and index > self.index:
                        nursery.start_soon(self._dial_loop, peer.address, peer.validator_public_key)
        return self.stats

    async def _inbound(self, stream: trio.SocketStream) -> None:
        async with stream:
            result = await self._establish(stream, self._handshake(Role.RESPONDER, self.peer_keys))
            if result is not None:
                await self._flood(stream, result)

    async def _dial_loop(self, address: HostPort, peer_key: bytes) -> None:
        while True:
            try:
                stream = await trio.open_tcp_stream(address.host, address.port)
            except OSError:
                self.stats.handshake_failures["connect failed"] += 1
                await trio.sleep(REDIAL_S)
                continue
            async with stream:
                result = await self._establish(stream, self._handshake(Role.INITIATOR, [peer_key]))
                if result is not None:
                    await self._flood(stream, result)
            await trio.sleep(REDIAL_S)

    async def _establish(
        self, stream: trio.SocketStream, handshake: Handshake
    ) -> HandshakeResult | None:
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT_S):
                await stream.send_all(handshake.data_to_send())
                while True:
                    data = await stream.receive_some(4096)
                    if not data:
                        self.stats.handshake_failures["closed"] += 1
                        return None
                    result = handshake.receive_data(data)
                    out = handshake.data_to_send()
                    if out:
                        await stream.send_all(out)
                    if result is not None:
                        self.stats.links += 1
                        return result
        except HandshakeError as exc:
            self.stats.handshake_failures[exc.reason] += 1
        except trio.TooSlowError:
            self.stats.handshake_failures["timeout"] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self.stats.handshake_failures["io error"] += 1
        return None

    async def _flood(self, stream: trio.SocketStream, result: HandshakeResult) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._drain, stream, nursery.cancel_scope)
            await self._send_loop(stream, result.sender)
            nursery.cancel_scope.cancel()

    async def _drain(self, stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """Read (and drop) what the peer sends, so its writes never block on us."""
        try:
            while data := await stream.receive_some(256 * 1024):
                self.stats.bytes_in += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    async def _send_loop(self, stream: trio.SocketStream, sender: FrameSender) -> None:
        interval = MESSAGES_PER_FRAME / self.rate_per_s
        cheap = [k for k in self.kinds if k not in ("blocks_wanted", "big_junk")]
        budget = {"blocks_wanted": 0.0, "big_junk": 0.0}
        limits = {"blocks_wanted": self.blocks_wanted_per_s, "big_junk": self.big_junk_per_s}
        next_at = trio.current_time()
        while True:
            batch: list[bytes] = []
            for kind, limit in limits.items():
                if kind in self.kinds:
                    budget[kind] += limit * interval
                    while budget[kind] >= 1:
                        budget[kind] -= 1
                        batch.append(self.factory.make(kind))
                        self.stats.messages[kind] += 1
            for _ in range(MESSAGES_PER_FRAME):
                if not cheap:
                    break
                kind = self.rng.choice(cheap)
                batch.append(self.factory.make(kind))
                self.stats.messages[kind] += 1
            for part in _frames_of(batch):
                frame = sender.seal_messages(part)
                try:
                    await stream.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                self.stats.frames += 1
                self.stats.bytes_out += len(frame)
            next_at += interval
            await trio.sleep_until(next_at)


def _frames_of(messages: list[bytes]) -> list[list[bytes]]:
    """Split messages into groups that each fit one frame."""
    groups: list[list[bytes]] = [[]]
    size = 0
    for message in messages:
        cost = len(message) + 4
        if groups[-1] and size + cost > FRAME_PLAINTEXT_BUDGET:
            groups.append([])
            size = 0
        groups[-1].append(message)
        size += cost
    return groups


# ----------------------------------------------------------------------------- raw attacks


@dataclass(frozen=True, slots=True)
class Attack:
    """One connection's worth of hostile bytes. ``then_stall``: keep the socket open after."""

    name: str
    data: bytes
    then_stall: bool = False


def hello_bytes(
    genesis: Genesis,
    validator_key: bytes,
    ephemeral_key: bytes,
    *,
    role: Role = Role.INITIATOR,
    version: int = 1,
    network: bytes | None = None,
) -> bytes:
    nid = network_id(genesis.chain_id, genesis.hash()) if network is None else network
    return Hello(role, nid, validator_key, ephemeral_key, version).encode()


def pre_handshake_attacks(genesis: Genesis, target: int, rng: random.Random) -> list[Attack]:
    """Hostile inputs for a node's p2p port before any authentication (no key needed)."""
    validators = [v.public_key for v in genesis.validators]
    allowed = next(k for i, k in enumerate(validators) if i != target)
    ephemeral = x25519_public_bytes(X25519PrivateKey.generate())
    good = hello_bytes(genesis, allowed, ephemeral)
    attacks = [
        Attack("empty", b""),
        Attack("garbage", rng.randbytes(rng.randrange(1, 4096))),
        Attack("garbage_after_magic", HELLO_MAGIC + rng.randbytes(200)),
        Attack("truncated_hello", good[: rng.randrange(1, len(good))]),
        Attack("truncated_hello_stalled", good[: rng.randrange(1, len(good))], then_stall=True),
        Attack("bad_magic", b"qrm-p2q\x00" + good[8:]),
        Attack("bad_version", good[:8] + struct.pack(">H", 2) + good[10:]),
        Attack("wrong_role", hello_bytes(genesis, allowed, ephemeral, role=Role.RESPONDER)),
        Attack("unknown_role", good[:10] + b"\x07" + good[11:]),
        Attack("other_chain", hello_bytes(genesis, allowed, ephemeral, network=rng.randbytes(32))),
        Attack("unknown_key", hello_bytes(genesis, PrivateKey.generate().public_key, ephemeral)),
        Attack("own_key", hello_bytes(genesis, validators[target], ephemeral)),
        Attack("non_canonical_point", hello_bytes(genesis, allowed, NON_CANONICAL_POINT)),
        Attack("auth_frame_wrong_length", good + struct.pack(">I", 81) + bytes(81)),
        Attack("auth_frame_huge_length", good + b"\xff\xff\xff\xff"),
        Attack("auth_frame_undecryptable", good + struct.pack(">I", 80) + rng.randbytes(80)),
        Attack("hello_twice", good + good),
    ]
    attacks += [
        Attack(f"low_order_point_{i}", hello_bytes(genesis, allowed, point))
        for i, point in enumerate(LOW_ORDER_POINTS)
    ]
    return attacks


def random_handshake_garbage(genesis: Genesis, target: int, rng: random.Random) -> Attack:
    """A seeded random mutation of a valid HELLO (plus trailing junk): for fuzz loops."""
    validators = [v.public_key for v in genesis.validators]
    allowed = next(k for i, k in enumerate(validators) if i != target)
    hello = bytearray(
        hello_bytes(genesis, allowed, x25519_public_bytes(X25519PrivateKey.generate()))
    )
    for _ in range(rng.randrange(0, 4)):
        hello[rng.randrange(len(hello))] ^= 1 << rng.randrange(8)
    cut = rng.randrange(0, len(hello) + 1)
    return Attack("fuzz", bytes(hello[:cut]) + rng.randbytes(rng.randrange(0, 300)))


def try_connection(address: HostPort, attack: Attack, *, timeout_s: float = 15.0) -> str:
    """Connect, send the attack's bytes, and report how the node ended it.

    ``closed`` (EOF or reset: refused), ``timeout`` (still open after ``timeout_s``) or
    ``connect failed``.
    """
    try:
        sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
    except OSError:
        return "connect failed"
    with sock:
        sock.settimeout(timeout_s)
        try:
            if attack.data:
                sock.sendall(attack.data)
            if not attack.then_stall:  # EOF now: the node must not wait for more
                sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    return "closed"
            return "timeout"
        except (ConnectionResetError, BrokenPipeError):
            return "closed"
        except TimeoutError:
            return "timeout"


@dataclass
class LinkSession:
    """A real, authenticated link to a node, driven by hand (blocking sockets)."""

    sock: socket.socket
    result: HandshakeResult

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_peer(self, timeout_s: float = 15.0) -> bool:
        """Read until EOF/reset (True) or timeout (False)."""
        self.sock.settimeout(timeout_s)
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.sock.close()


def open_link(
    address: HostPort, genesis: Genesis, key: PrivateKey, target: int, *, timeout_s: float = 15.0
) -> LinkSession:
    """Dial ``address`` as the validator holding ``key`` and complete the handshake."""
    handshake = Handshake(
        Role.INITIATOR,
        key,
        genesis.chain_id,
        genesis.hash(),
        [genesis.validators[target].public_key],
    )
    sock = socket.create_connection((address.host, address.port), timeout=timeout_s)
    try:
        sock.settimeout(timeout_s)
        sock.sendall(handshake.data_to_send())
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("the node closed the connection during the handshake")
            result = handshake.receive_data(data)
            out = handshake.data_to_send()
            if out:
                sock.sendall(out)
            if result is not None:
                return LinkSession(sock, result)
    except BaseException:
        sock.close()
        raise


#: Post-handshake attacks: name -> bytes to send on an authenticated link (given its sender).
PostAttack = Callable[[FrameSender, random.Random], bytes]


def _valid_then_replayed(sender: FrameSender, rng: random.Random) -> bytes:
    frame = sender.seal_messages([])
    return frame + frame


def _inner_framing_broken(sender: FrameSender, rng: random.Random) -> bytes:
    return sender.seal(struct.pack(">I", 0) + b"x")


def _inner_length_past_end(sender: FrameSender, rng: random.Random) -> bytes:
    return sender.seal(struct.pack(">I", 1000) + b"short")


def post_handshake_attacks() -> dict[str, PostAttack]:
    """Frame-level attacks that need a completed handshake; each must end the link."""
    return {
        "oversized_length_prefix": lambda s, r: b"\xff\xff\xff\xff",
        "length_below_tag": lambda s, r: struct.pack(">I", 5) + bytes(5),
        "undecryptable_frame": lambda s, r: struct.pack(">I", 64) + r.randbytes(64),
        "truncated_frame_then_close": lambda s, r: s.seal(b"x" * 100)[:50],
        "replayed_frame": _valid_then_replayed,
        "inner_zero_length": _inner_framing_broken,
        "inner_length_past_end": _inner_length_past_end,
        "valid_junk_message": lambda s, r: s.seal(join_messages([b"\x09" + r.randbytes(100)])),
    }


# ----------------------------------------------------------------------------- entry point


def run_flood(
    home: Path,
    *,
    duration_s: float,
    stats_file: Path,
    seed: int = 0,
    rate_per_s: int = DEFAULT_RATE_PER_S,
    kinds: tuple[str, ...] = FLOOD_KINDS,
    big_junk_bytes: int = BIG_JUNK_BYTES,
    big_junk_per_s: float = BIG_JUNK_PER_S,
    blocks_wanted_per_s: float = BLOCKS_WANTED_PER_S,
) -> None:
    """Impersonate the validator of ``home`` and flood for ``duration_s``; write the
    figures to ``stats_file`` (atomically: the harness polls for it)."""
    unknown = set(kinds) - set(FLOOD_KINDS)
    if unknown:
        raise ValueError(f"unknown flood kinds: {', '.join(sorted(unknown))}")
    flooder = Flooder(
        home,
        seed=seed,
        rate_per_s=rate_per_s,
        kinds=kinds,
        big_junk_bytes=big_junk_bytes,
        big_junk_per_s=big_junk_per_s,
        blocks_wanted_per_s=blocks_wanted_per_s,
    )
    stats = trio.run(flooder.run, duration_s)
    tmp = stats_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(stats.to_json(), indent=2) + "\n", encoding="utf-8")
    tmp.replace(stats_file)
