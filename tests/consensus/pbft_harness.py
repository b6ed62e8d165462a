"""A hand-driven cluster of real replicas for the scripted PBFT tests.

Messages go into one FIFO queue and are delivered when the test says so; a ``drop``
predicate models loss and partitions. Each node is the reference Ready driver
(consensus/testing.py) with immediate effects: it persists to memory, validates blocks at
once (a block is the canonical record ``["test-block", 1, height, parent, label]`` and its
digest is its SHA-256), builds proposals when asked for heights up to ``budget``, serves
fetches from the other nodes' committed chains, and stops on ``halt``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from consensus.config import ReplicaConfig
from consensus.messages import SignedMessage
from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    Outbound,
    ProposalRequest,
    Ready,
    ValidateRequest,
)
from consensus.records import CommittedHead
from consensus.replica import Replica
from consensus.testing import MemoryDisk, ReadyDriver
from crypto.encoding import DecodeError, as_bytes, as_int, decode, encode_record, record_fields
from crypto.hashing import sha256
from crypto.keys import PrivateKey

CHAIN_ID = "pbft-test"
GENESIS_DIGEST = sha256(b"genesis")
KEYS = [PrivateKey(sha256(f"validator-{i}".encode())) for i in range(16)]

Drop = Callable[[int, int, SignedMessage], bool]


def make_payload(height: int, parent: bytes, label: bytes = b"") -> bytes:
    return encode_record("test-block", 1, [height, parent, label])


def parse_payload(payload: bytes) -> tuple[int, bytes, bytes]:
    f = record_fields(decode(payload), "test-block", 1, 3)
    return as_int(f[0], "height"), as_bytes(f[1], "parent"), as_bytes(f[2], "label")


def block_digest(payload: bytes) -> bytes | None:
    try:
        parse_payload(payload)
    except DecodeError:
        return None
    return sha256(payload)


def make_config(n: int = 4, **overrides: Any) -> ReplicaConfig:
    params: dict[str, Any] = {
        "chain_id": CHAIN_ID,
        "validators": tuple(k.public_key for k in KEYS[:n]),
        "genesis_height": 0,
        "genesis_digest": GENESIS_DIGEST,
        "block_digest": block_digest,
        "checkpoint_interval": 4,
        "watermark_window": 8,
        "max_pipeline": 2,
        "view_change_timeout_ms": 1000,
        "max_view_change_timeout_ms": 8000,
        "tick_ms": 100,
    }
    params.update(overrides)
    return ReplicaConfig(**params)


class Disk(MemoryDisk):
    """The persisted records and the block store."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[CommittedBlock] = []


class Node(ReadyDriver):
    """One validator: a replica and its driver, whose effects take no time."""

    def __init__(self, cluster: Cluster, index: int, replica: Replica) -> None:
        self.cluster = cluster
        self.index = index
        self.replica = replica
        self.disk: Disk = Disk()
        self.sent: list[SignedMessage] = []
        self.readies: list[Ready] = []
        self.up = True
        self.halted: str | None = None

    @property
    def committed(self) -> list[CommittedBlock]:
        return self.disk.blocks

    def handle(self, ready: Ready) -> None:
        self.readies.append(ready)
        super().handle(ready)

    def apply_committed(self, block: CommittedBlock) -> None:
        blocks = self.disk.blocks
        expected = blocks[-1].height + 1 if blocks else self.cluster.config.genesis_height + 1
        assert block.height == expected, "commits out of order"
        blocks.append(block)

    def send(self, out: Outbound) -> None:
        self.sent.append(out.message)
        n = len(self.cluster.nodes)
        targets = [out.to] if out.to is not None else [j for j in range(n) if j != self.index]
        for j in targets:
            self.cluster.queue.append((self.index, j, out.message))

    def validate(self, request: ValidateRequest) -> None:
        cluster = self.cluster
        if not cluster.auto_validate or self.index in cluster.stalled:
            return
        height, parent, _ = parse_payload(request.payload)
        ok = (
            height == request.height
            and parent == request.parent_digest
            and request.digest not in cluster.invalid
            and self.index not in cluster.diverged
        )
        self.handle(
            self.replica.proposal_validated(
                request.view, request.height, request.digest, ok, sha256(b"state" + request.digest)
            )
        )

    def build_proposal(self, request: ProposalRequest) -> None:
        cluster = self.cluster
        if request.height > cluster.config.genesis_height + cluster.budget:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        cluster.labels += 1
        payload = make_payload(request.height, request.parent_digest, b"b%d" % cluster.labels)
        digest = sha256(payload)
        self.handle(
            self.replica.propose(
                request.view,
                request.height,
                digest,
                request.parent_digest,
                payload,
                sha256(b"state" + digest),
            )
        )

    def fetch(self, request: FetchRequest) -> None:
        if self.cluster.serve_fetches:
            self.cluster.serve_fetch(self.index, request.from_height, request.to_height)

    def halt(self, reason: str) -> None:
        self.halted = reason
        self.up = False


class Cluster:
    def __init__(
        self, n: int = 4, *, budget: int = 0, auto_validate: bool = True, **config: Any
    ) -> None:
        self.config = make_config(n, **config)
        self.nodes = [Node(self, i, Replica(self.config, KEYS[i])) for i in range(n)]
        self.queue: deque[tuple[int, int, SignedMessage]] = deque()
        self.budget = budget
        self.auto_validate = auto_validate
        self.invalid: set[bytes] = set()
        #: Replicas whose own state is wrong: they find every block invalid.
        self.diverged: set[int] = set()
        #: Replicas whose driver never answers a validation (a node too loaded to keep up).
        self.stalled: set[int] = set()
        self.drop: Drop = lambda frm, to, msg: False
        self.labels = 0
        self.serve_fetches = True
        for node in self.nodes:
            self.handle(node.index, node.replica.start())

    # ------------------------------------------------------------------ driver behaviour

    def handle(self, i: int, ready: Ready) -> None:
        self.nodes[i].handle(ready)

    def serve_fetch(self, i: int, lo: int, hi: int) -> None:
        best = max((n for n in self.nodes if n.index != i and n.up), key=lambda n: len(n.committed))
        for block in best.committed:
            if lo <= block.height <= hi:
                self.handle(
                    i,
                    self.nodes[i].replica.committed_block_from_peer(
                        block.height,
                        block.digest,
                        block.parent_digest,
                        block.payload,
                        block.certificate(),
                    ),
                )

    # ------------------------------------------------------------------ test controls

    def deliver(self, max_messages: int = 100_000) -> int:
        """Deliver queued messages (and what they cause) until the queue is empty."""
        delivered = 0
        while self.queue and delivered < max_messages:
            frm, to, message = self.queue.popleft()
            if not self.nodes[to].up or self.drop(frm, to, message):
                continue
            delivered += 1
            self.handle(to, self.nodes[to].replica.receive(message.encode()))
        return delivered

    def tick(self, times: int = 1, only: list[int] | None = None) -> None:
        for _ in range(times):
            for node in self.nodes:
                if node.up and (only is None or node.index in only):
                    self.handle(node.index, node.replica.tick())
            self.deliver()

    def submit(self, blocks: int, oldest: bytes | None = b"request-1") -> None:
        """Make ``blocks`` more blocks' worth of requests pending at every replica (the
        primary proposes while the height asked for is within the total submitted)."""
        self.budget += blocks
        for node in self.nodes:
            if node.up:
                self.handle(node.index, node.replica.requests_pending(True, oldest))

    def idle(self) -> None:
        for node in self.nodes:
            if node.up:
                self.handle(node.index, node.replica.requests_pending(False, None))

    def crash(self, i: int) -> None:
        self.nodes[i].up = False

    def restart(self, i: int) -> None:
        node = self.nodes[i]
        head = node.disk.blocks[-1] if node.disk.blocks else None
        committed = (
            CommittedHead(head.height, head.digest, head.certificate())
            if head is not None
            else CommittedHead(self.config.genesis_height, self.config.genesis_digest, None)
        )
        node.replica = Replica.restore(self.config, KEYS[i], node.disk.persisted(), committed)
        node.up = True
        self.handle(i, node.replica.start())

    def heights(self) -> list[int]:
        return [n.replica.committed_height for n in self.nodes]

    def chain(self, i: int) -> list[bytes]:
        return [b.digest for b in self.nodes[i].committed]


def with_config(cluster: Cluster, **changes: Any) -> ReplicaConfig:
    return replace(cluster.config, **changes)
