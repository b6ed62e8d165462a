"""The simulated node driver: the reference Ready driver with simulated effects.

One :class:`SimDriver` per endpoint wraps a real :class:`~consensus.replica.Replica`; the
contract's order is :class:`consensus.testing.ReadyDriver`'s. Here each effect is
simulated: persist to an in-memory "disk" that survives crashes, apply committed blocks to
a "block store" (also surviving), send through the simulated network, and schedule
validations, proposals and fetches as timed events. A crash throws away the replica, the
overlays and the mempool; a restart rebuilds the replica with ``Replica.restore`` from the
disk and the block store.

House rules: the world is reached only through the :class:`World` protocol (this module
never imports world.py); every random choice is the world's seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from consensus.config import ReplicaConfig
from consensus.messages import CommitProof, SignedMessage
from consensus.outbox import EMPTY_READY
from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    Outbound,
    ProposalRequest,
    Ready,
    ValidateRequest,
)
from consensus.records import CommittedHead, PersistBatch
from consensus.replica import Replica
from consensus.sim.checker import Checker
from consensus.sim.model import (
    GENESIS_STATE_ROOT,
    MAX_REQUESTS_PER_BLOCK,
    block_payload,
    next_state_root,
    parse_block,
    request_key,
)
from consensus.testing import MemoryDisk, ReadyDriver
from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.keys import PrivateKey

#: Blocks per fetch reply.
MAX_BLOCKS_PER_FETCH_REPLY = 32

Outgoing = Callable[[Outbound], list[tuple[int | None, SignedMessage]]]


@dataclass(frozen=True, slots=True)
class Overlay:
    """The execution result of a validated, uncommitted block."""

    height: int
    parent: bytes
    ids: tuple[int, ...]
    state_root: bytes


@dataclass(frozen=True, slots=True)
class FetchedBlock:
    height: int
    digest: bytes
    parent: bytes
    payload: bytes
    certificate: CommitProof


class World(Protocol):
    """What a simulated node uses of the simulated world (consensus/sim/world.py)."""

    @property
    def config(self) -> ReplicaConfig: ...

    @property
    def checker(self) -> Checker: ...

    @property
    def submitted(self) -> set[int]: ...

    def send(self, driver: SimDriver, to: int | None, message: SignedMessage) -> None: ...

    def after_exec(
        self, driver: SimDriver, what: str, request: ValidateRequest | ProposalRequest
    ) -> None: ...

    def fetch(self, driver: SimDriver, low: int, high: int) -> None: ...

    def note_commit(self, driver: SimDriver, block: CommittedBlock) -> None: ...


class SimDriver(ReadyDriver):
    def __init__(self, world: World, eid: int, index: int, key: PrivateKey, honest: bool) -> None:
        self.world = world
        self.eid = eid
        self.index = index
        self.key = key
        self.honest = honest
        #: Builds different blocks from the same requests (a twin's second face).
        self.variant = False
        self.outgoing: Outgoing | None = None
        self.disk = MemoryDisk()
        self.chain: list[CommittedBlock] = []
        self.applied: set[int] = set()
        self.state_root = GENESIS_STATE_ROOT
        self.overlays: dict[bytes, Overlay] = {}
        self.mempool: dict[int, None] = {}
        self.replica: Replica | None = None
        self.incarnation = 0
        self.last_pending: tuple[bool, bytes | None] | None = None
        #: The mempool or the applied set changed since the replica was last told.
        self.pending_dirty = True

    # ------------------------------------------------------------------ life cycle

    @property
    def up(self) -> bool:
        return self.replica is not None

    @property
    def head(self) -> tuple[int, bytes]:
        if self.chain:
            return self.chain[-1].height, self.chain[-1].digest
        return self.world.config.genesis_height, self.world.config.genesis_digest

    def boot(self) -> None:
        self.replica = Replica(self.world.config, self.key)
        self.handle(self.replica.start())

    def crash(self) -> None:
        self.replica = None
        self.incarnation += 1
        self.overlays.clear()
        self.mempool.clear()
        self.last_pending = None
        self.pending_dirty = True

    def restart(self) -> None:
        height, digest = self.head
        certificate = self.chain[-1].certificate() if self.chain else None
        head = CommittedHead(height, digest, certificate)
        self.replica = Replica.restore(self.world.config, self.key, self.disk.persisted(), head)
        self.handle(self.replica.start())

    # ------------------------------------------------------------------ the contract

    def handle(self, ready: Ready) -> None:
        if self.replica is None:
            return
        if ready is not EMPTY_READY:
            super().handle(ready)
        if self.pending_dirty:
            self.update_pending()

    def persist(self, batch: PersistBatch) -> None:
        self.disk.write(batch)
        self.disk.prune(self.head[0])

    def apply_committed(self, block: CommittedBlock) -> None:
        previous = self.head[1]
        ids: list[int] | None
        try:
            parsed_height, parent, ids = parse_block(block.payload)
            if parsed_height != block.height or parent != block.parent_digest:
                ids = None
        except DecodeError:
            ids = None
        if self.honest:
            self.world.checker.on_commit(self.index, block, ids, previous, self.world.submitted)
        self.chain.append(block)
        self.state_root = block.state_root
        for request in ids or []:
            self.applied.add(request)
            self.mempool.pop(request, None)
        self.pending_dirty = True
        for digest in [d for d, o in self.overlays.items() if o.height <= block.height]:
            del self.overlays[digest]
        self.world.note_commit(self, block)

    def send(self, out: Outbound) -> None:
        if self.honest:
            self.world.checker.on_send(self.index, out.message)
        sends = self.outgoing(out) if self.outgoing is not None else [(out.to, out.message)]
        for to, message in sends:
            self.world.send(self, to, message)

    def validate(self, request: ValidateRequest) -> None:
        self.world.after_exec(self, "validate", request)  # takes a little virtual time

    def build_proposal(self, request: ProposalRequest) -> None:
        self.world.after_exec(self, "propose", request)

    def fetch(self, request: FetchRequest) -> None:
        self.world.fetch(self, request.from_height, request.to_height)

    def halt(self, reason: str) -> None:
        # The run goes on (the report must be complete); the checker records a violation.
        if self.honest:
            self.world.checker.on_halt(self.index, reason)

    def update_pending(self, force: bool = False) -> None:
        if self.replica is None:
            return
        self.pending_dirty = False
        oldest = next((i for i in self.mempool if i not in self.applied), None)
        state = (oldest is not None, None if oldest is None else request_key(oldest))
        if force or state != self.last_pending:
            self.last_pending = state
            self.handle(self.replica.requests_pending(*state))

    # ------------------------------------------------------------------ events

    def on_message(self, data: bytes | SignedMessage) -> None:
        if self.replica is None:
            return
        if isinstance(data, bytes):
            self.handle(self.replica.receive(data))
        else:
            self.handle(self.replica.step(data))

    def on_tick(self) -> None:
        if self.replica is None:
            return
        self.handle(self.replica.tick())
        if self.replica.ticks % 16 == 0:
            live = {d for _, d in self.replica.live_blocks()}
            for digest in [d for d in self.overlays if d not in live]:
                del self.overlays[digest]
        if self.honest:
            self.world.checker.check_memory(self.index, self.replica)

    def on_request(self, request: int) -> None:
        if self.replica is None or request in self.applied or request in self.mempool:
            return
        self.mempool[request] = None
        self.update_pending(force=True)

    def _ancestry(self, parent: bytes, height: int) -> tuple[set[int], bytes] | None:
        """Ids in the uncommitted ancestors of a block at ``height`` on ``parent``, and the
        parent's state root; None if the parent is not a known execution result."""
        head_height, head_digest = self.head
        ids: set[int] = set()
        digest, h = parent, height - 1
        root: bytes | None = None
        while h > head_height:
            overlay = self.overlays.get(digest)
            if overlay is None or overlay.height != h:
                return None
            if root is None:
                root = overlay.state_root
            ids.update(overlay.ids)
            digest, h = overlay.parent, h - 1
        if h != head_height or digest != head_digest:
            return None
        return ids, self.state_root if root is None else root

    def execute(
        self, height: int, parent: bytes, payload: bytes
    ) -> tuple[bool, bytes, tuple[int, ...]]:
        try:
            block_height, block_parent, ids = parse_block(payload)
        except DecodeError:
            return False, b"", ()
        ancestry = self._ancestry(parent, height)
        if block_height != height or block_parent != parent or ancestry is None:
            return False, b"", ()
        before, root = ancestry
        if len(set(ids)) != len(ids) or len(ids) > MAX_REQUESTS_PER_BLOCK:
            return False, b"", ()
        for request in ids:
            if request not in self.world.submitted or request in self.applied or request in before:
                return False, b"", ()
        return True, next_state_root(root, ids), tuple(ids)

    def do_validate(self, incarnation: int, request: ValidateRequest) -> None:
        if self.replica is None or incarnation != self.incarnation:
            return
        ok, root, ids = self.execute(request.height, request.parent_digest, request.payload)
        if ok:
            self.overlays[request.digest] = Overlay(
                request.height, request.parent_digest, ids, root
            )
        self.handle(
            self.replica.proposal_validated(
                request.view, request.height, request.digest, ok, root if ok else None
            )
        )

    def do_propose(self, incarnation: int, request: ProposalRequest) -> None:
        if self.replica is None or incarnation != self.incarnation:
            return
        ancestry = self._ancestry(request.parent_digest, request.height)
        if ancestry is None:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        before, root = ancestry
        ids = [i for i in self.mempool if i not in self.applied and i not in before][
            :MAX_REQUESTS_PER_BLOCK
        ]
        if not ids:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        if self.variant:
            ids = ids[::-1] if len(ids) > 1 else []
        payload = block_payload(request.height, request.parent_digest, ids)
        digest = sha256(payload)
        state_root = next_state_root(root, ids)
        self.overlays[digest] = Overlay(
            request.height, request.parent_digest, tuple(ids), state_root
        )
        self.handle(
            self.replica.propose(
                request.view, request.height, digest, request.parent_digest, payload, state_root
            )
        )

    def serve_fetch(self, low: int, high: int) -> list[FetchedBlock]:
        first = self.world.config.genesis_height + 1
        start = max(low, first) - first
        stop = min(high, low + MAX_BLOCKS_PER_FETCH_REPLY - 1) - first + 1
        return [
            FetchedBlock(b.height, b.digest, b.parent_digest, b.payload, b.certificate())
            for b in self.chain[start : max(start, stop)]
        ]

    def on_fetched(self, blocks: list[FetchedBlock]) -> None:
        for block in blocks:
            if self.replica is None:
                return
            self.handle(
                self.replica.committed_block_from_peer(
                    block.height, block.digest, block.parent, block.payload, block.certificate
                )
            )
