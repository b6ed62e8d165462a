"""The simulated node driver: the reference Ready driver with simulated effects.

One :class:`SimDriver` per endpoint wraps a real :class:`~consensus.replica.Replica`; the
contract's order is :class:`consensus.testing.ReadyDriver`'s. Here each effect is
simulated: persist to an in-memory "disk" that survives crashes, apply committed blocks to
a "block store" (also surviving), send through the simulated network, and schedule
validations, proposals and fetches as timed events. A crash throws away the replica, the
overlays and the mempool; a restart rebuilds the replica with ``Replica.restore`` from the
disk and the block store.

Epochs (``SimParams(epochs=True)``, docs/CONSENSUS.md §12), as the node does them
(ledger/node/epochs.py, ledger/node/follower.py): execution tracks the validator set in
the block's state (consensus/sim/epochs.py) and tells the core which block ends the epoch;
once the core committed it and every output of the old replica was acted on, the driver
drops the old epoch's consensus records and starts the next epoch's replica on that block
(or retires, if its key left the set: see below). A key outside the set is a *follower*:
it fetches certified blocks, checks each certificate with the set of the block's epoch (as
its own replay of the chain says), executes them, and starts its replica at the block
after which its key is in the set. A member with no commit for a while asks a peer for blocks above its
head (the node's probe: a replica left in an old epoch cannot verify the new set's STATUS).

A validator voted out *retires* rather than vanishing: no replica and no votes, but it
keeps serving its certified blocks until a peer shows it the block after its switch
certified by the new set, as the node does (ledger/node/retire.py; the node also keeps its
old replica retransmitting, and gives up after a grace period): the epoch simulator found
that stopping at once can stall the old set for ever (docs/RELIABILITY.md §12).

House rules: the world is reached only through the :class:`World` protocol (this module
never imports world.py); every random choice is the world's seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from consensus.certificates import Rejected, verify_commit_proof
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
from consensus.sim.epochs import (
    VOTE_BASE,
    SetChange,
    SetState,
    apply_vote,
    dead_vote,
    execute_block,
    refusal,
)
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
#: A member without a commit for this long asks a peer for blocks above its head (virtual
#: ms; the node waits 5 s with a 2 s view-change timeout, here the timeout is 150 ms).
PROBE_AFTER_MS = 400
#: What a driver is: a member runs a replica; a follower replays certified blocks until
#: its key is in the set; a retiring validator, voted out, has no replica but serves its
#: certified blocks until it sees a block above its switch certified by the new set; then
#: it is removed and has stopped.
MEMBER, FOLLOWER, RETIRING, REMOVED = "member", "follower", "retiring", "removed"

Outgoing = Callable[[Outbound], list[tuple[int | None, SignedMessage]]]


@dataclass(frozen=True, slots=True)
class Overlay:
    """The execution result of a validated, uncommitted block."""

    height: int
    parent: bytes
    ids: tuple[int, ...]
    state_root: bytes
    sets: SetState


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

    @property
    def time(self) -> int: ...

    @property
    def changes(self) -> tuple[SetChange, ...]: ...

    @property
    def genesis_sets(self) -> SetState: ...

    def epoch_config(self, sets: SetState, anchor: bytes, root: bytes) -> ReplicaConfig: ...

    def on_switch(self, driver: SimDriver, config: ReplicaConfig) -> None: ...

    def on_epoch_end(self, driver: SimDriver, height: int, digest: bytes) -> None: ...

    def crash_at_switch(self, driver: SimDriver) -> bool: ...

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
        #: The config of the replica's epoch (a follower: of the block after its head).
        self.config = world.config
        #: The set in the committed head's state, and the members of ``config``.
        self.sets = world.genesis_sets
        self.members = self.sets.members
        self.epoch = 0
        #: The epoch the disk's consensus records belong to (the node's ``epoch`` marker).
        self.disk_epoch = 0
        self.role = MEMBER if key.public_key in self.config.validators else FOLLOWER
        self.last_commit_ms = 0
        self.last_probe_ms = 0
        #: Certified blocks a follower refused (bad certificate, chain or execution).
        self.refused = 0
        #: Statistics of this validator's replicas of finished epochs.
        self.retired: dict[str, int] = {}
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

    def statistics(self) -> dict[str, int]:
        """The replica's statistics, with those of this validator's earlier epochs."""
        merged = dict(self.retired)
        if self.replica is not None:
            for key, count in self.replica.statistics().items():
                merged[key] = merged.get(key, 0) + count
        return merged

    @property
    def local(self) -> int:
        """This validator's index in its epoch's set (what its messages name as sender)."""
        if self.replica is not None:
            return self.replica.index
        return self.members.index(self.index) if self.index in self.members else self.index

    @property
    def head(self) -> tuple[int, bytes]:
        if self.chain:
            return self.chain[-1].height, self.chain[-1].digest
        return self.world.config.genesis_height, self.world.config.genesis_digest

    def boot(self) -> None:
        if self.role == MEMBER:
            self.replica = Replica(self.config, self.key)
            self.handle(self.replica.start())

    def crash(self) -> None:
        self.replica = None
        self.incarnation += 1
        self.overlays.clear()
        self.mempool.clear()
        self.last_pending = None
        self.pending_dirty = True

    def restart(self) -> None:
        if self.role != MEMBER:
            return  # a removed validator stays stopped; a follower just follows on
        config = self._config_at_head()  # the epoch of the store's head (restored_replica)
        if self.disk_epoch != self.sets.epoch:  # it stopped between the switch block and
            self.world.on_switch(self, config)  # the switch: the records are the old epoch's
            self.disk.start_epoch()  # and are dropped (ledger/node/node.py)
            self.disk_epoch = self.sets.epoch
        if self.key.public_key not in config.validators:
            self.role = RETIRING  # no replica (epochs.check_member); it serves and probes
            return
        self._use(config)
        height, digest = self.head
        certificate = (
            self.chain[-1].certificate() if self.chain and height > config.genesis_height else None
        )
        head = CommittedHead(height, digest, certificate)
        self.replica = Replica.restore(config, self.key, self.disk.persisted(), head)
        self.handle(self.replica.start())

    # ------------------------------------------------------------------ epochs

    def _config_at_head(self) -> ReplicaConfig:
        """The config of the epoch the committed head's state names (its anchor block:
        ``sets.start_height``, in this driver's own block store)."""
        sets = self.sets
        if sets.epoch == 0:
            return self.world.config
        first = self.world.config.genesis_height + 1
        anchor = self.chain[sets.start_height - first]
        return self.world.epoch_config(sets, anchor.digest, anchor.state_root)

    def _use(self, config: ReplicaConfig) -> None:
        """Run in ``config``'s epoch: the head's set (its members: global indices)."""
        self.config = config
        self.members = self.sets.members
        self.epoch = self.sets.epoch

    def _switch(self) -> None:
        """The committed head ended the epoch: drop the old replica and its records, start
        the next epoch's on that block, or stop if this key left the set (ledger/node:
        ``Node._switch_epoch``, ``epochs.check_member``)."""
        if self.world.crash_at_switch(self):
            self.crash()  # the block store holds the switch block; the records are old
            return
        config = self._config_at_head()
        assert self.replica is not None
        for key, count in self.replica.statistics().items():
            self.retired[key] = self.retired.get(key, 0) + count
        self.incarnation += 1  # answers the old replica was waiting for are void
        self.overlays.clear()
        self.disk.start_epoch()
        self.disk_epoch = self.sets.epoch
        self.last_pending = None
        self.pending_dirty = True
        self.world.on_switch(self, config)
        if self.key.public_key not in config.validators:
            self.replica = None  # voted out: it votes no more, but retires (_retire)
            self.role = RETIRING
            return
        self._use(config)
        self.replica = Replica(config, self.key)
        self.handle(self.replica.start())

    # ------------------------------------------------------------------ the contract

    def handle(self, ready: Ready) -> None:
        if self.replica is None:
            return
        if ready is not EMPTY_READY:
            super().handle(ready)
        if self.replica is not None and self.replica.epoch_over:
            self._switch()  # after every output of the old replica was acted on
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
        if self.world.changes:
            sets = self._next_sets(self.sets, block.height, ids or [])
            if sets is not None and sets.epoch != self.sets.epoch:
                for request in [r for r in self.mempool if dead_vote(sets, r)]:
                    del self.mempool[request]  # refused from now on: the mempool drops it
            self.sets = self.sets if sets is None else sets
            self.last_commit_ms = self.world.time
        self.pending_dirty = True
        for digest in [d for d, o in self.overlays.items() if o.height <= block.height]:
            del self.overlays[digest]
        self.world.note_commit(self, block)

    def send(self, out: Outbound) -> None:
        if self.honest:
            self.world.checker.on_send(self.index, out.message, self.epoch)
            if self.replica is not None:
                self.world.checker.check_window(self.index, self.replica, out.message)
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
        replica = self.replica
        if replica is None:
            return  # removed at a switch during this tick
        if replica.ticks % 16 == 0:
            live = {d for _, d in replica.live_blocks()}
            for digest in [d for d in self.overlays if d not in live]:
                del self.overlays[digest]
        if self.honest:
            self.world.checker.check_memory(self.index, replica)
        if self.world.changes:
            self._maybe_probe()

    def _maybe_probe(self) -> None:
        """No commit for a while: ask a peer for blocks above the head anyway (the node's
        ``_maybe_probe``)."""
        now = self.world.time
        if now - max(self.last_commit_ms, self.last_probe_ms) < PROBE_AFTER_MS:
            return
        self.last_probe_ms = now
        height = self.head[0]
        self.world.fetch(self, height + 1, height + MAX_BLOCKS_PER_FETCH_REPLY)

    def on_request(self, request: int) -> None:
        if self.replica is None or request in self.applied or request in self.mempool:
            return
        if request >= VOTE_BASE and refusal(self.sets, self.world.changes, request):
            return  # admission reads the committed state (ledger/engine/admission.py)
        self.mempool[request] = None
        self.update_pending(force=True)

    def ancestry(self, parent: bytes, height: int) -> tuple[set[int], bytes, SetState] | None:
        """Ids in the uncommitted ancestors of a block at ``height`` on ``parent``, and the
        parent's state root and validator set; None if the parent is not a known execution
        result."""
        head_height, head_digest = self.head
        ids: set[int] = set()
        digest, h = parent, height - 1
        top: Overlay | None = None
        while h > head_height:
            overlay = self.overlays.get(digest)
            if overlay is None or overlay.height != h:
                return None
            if top is None:
                top = overlay
            ids.update(overlay.ids)
            digest, h = overlay.parent, h - 1
        if h != head_height or digest != head_digest:
            return None
        if top is None:
            return ids, self.state_root, self.sets
        return ids, top.state_root, top.sets

    def _next_sets(self, sets: SetState, height: int, ids: list[int]) -> SetState | None:
        world = self.world
        return execute_block(
            sets,
            world.changes,
            height,
            ids,
            world.config.genesis_height,
            world.config.checkpoint_interval,
        )

    def execute(
        self, height: int, parent: bytes, payload: bytes
    ) -> tuple[bool, bytes, tuple[int, ...], SetState]:
        """Execute a block on its parent's state: (ok, state root, ids, the set after it)."""
        fail = False, b"", (), self.sets
        try:
            block_height, block_parent, ids = parse_block(payload)
        except DecodeError:
            return fail
        ancestry = self.ancestry(parent, height)
        if block_height != height or block_parent != parent or ancestry is None:
            return fail
        before, root, sets = ancestry
        if len(set(ids)) != len(ids) or len(ids) > MAX_REQUESTS_PER_BLOCK:
            return fail
        for request in ids:
            if request not in self.world.submitted or request in self.applied or request in before:
                return fail
        after = self._next_sets(sets, height, ids)
        if after is None:
            return fail  # a vote the set rules refuse: a rule of block validity
        return True, next_state_root(root, ids), tuple(ids), after

    def do_validate(self, incarnation: int, request: ValidateRequest) -> None:
        if self.replica is None or incarnation != self.incarnation:
            return
        ok, root, ids, sets = self.execute(request.height, request.parent_digest, request.payload)
        ends_epoch = False
        if ok:
            overlay = Overlay(request.height, request.parent_digest, ids, root, sets)
            self.overlays[request.digest] = overlay
            ends_epoch = sets.start_height == request.height and sets.epoch > 0
        self.handle(
            self.replica.proposal_validated(
                request.view,
                request.height,
                request.digest,
                ok,
                root if ok else None,
                ends_epoch,
            )
        )
        if ends_epoch and not self.honest:
            self.world.on_epoch_end(self, request.height, request.digest)

    def do_propose(self, incarnation: int, request: ProposalRequest) -> None:
        if self.replica is None or incarnation != self.incarnation:
            return
        ancestry = self.ancestry(request.parent_digest, request.height)
        if ancestry is None:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        before, root, sets = ancestry
        ids = [
            i
            for i in self.mempool
            if i not in self.applied and i not in before and self._includable(sets, i)
        ][:MAX_REQUESTS_PER_BLOCK]
        if not ids:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        if self.variant:
            ids = ids[::-1] if len(ids) > 1 else []
        after = self._next_sets(sets, request.height, ids)
        assert after is not None, "a refusal depends on the parent's set alone"
        payload = block_payload(request.height, request.parent_digest, ids)
        digest = sha256(payload)
        state_root = next_state_root(root, ids)
        self.overlays[digest] = Overlay(
            request.height, request.parent_digest, tuple(ids), state_root, after
        )
        ends_epoch = after.start_height == request.height and after.epoch > 0
        self.handle(
            self.replica.propose(
                request.view,
                request.height,
                digest,
                request.parent_digest,
                payload,
                state_root,
                ends_epoch,
            )
        )
        if ends_epoch and not self.honest:
            self.world.on_epoch_end(self, request.height, digest)

    def _includable(self, sets: SetState, request: int) -> bool:
        """A vote the set rules would refuse on this parent stays out (admission and the
        proposer skip it, as the node's do)."""
        return request < VOTE_BASE or apply_vote(sets, self.world.changes, request) is not None

    def serve_fetch(self, low: int, high: int) -> list[FetchedBlock]:
        if self.role == REMOVED:
            return []  # a removed validator has stopped (a retiring one still serves)
        first = self.world.config.genesis_height + 1
        start = max(low, first) - first
        stop = min(high, low + MAX_BLOCKS_PER_FETCH_REPLY - 1) - first + 1
        return [
            FetchedBlock(b.height, b.digest, b.parent_digest, b.payload, b.certificate())
            for b in self.chain[start : max(start, stop)]
        ]

    def on_fetched(self, blocks: list[FetchedBlock]) -> None:
        if self.role == RETIRING:
            self._retire(blocks)
            return
        if self.role == FOLLOWER:
            blocks = blocks[self._follow(blocks) :]
        for block in blocks:
            if self.replica is None:
                return
            self.handle(
                self.replica.committed_block_from_peer(
                    block.height, block.digest, block.parent, block.payload, block.certificate
                )
            )

    # ------------------------------------------------------------------ retiring, following

    def _retire(self, blocks: list[FetchedBlock]) -> None:
        """A validator voted out stays until the new set has taken over: it may be the only
        honest one holding the switch block's certificate (its COMMIT lost, the old set one
        short of a quorum without it, so no view change either), and the others fetch that
        block from it. It stops once a peer serves the block after its switch certified by
        the new set: a quorum of the new set has switched and can serve everyone else."""
        height, digest = self.head
        for block in blocks:
            certificate = block.certificate
            if (
                block.height == height + 1
                and block.parent == digest
                and (certificate.height, certificate.digest) == (block.height, block.digest)
            ):
                try:
                    verify_commit_proof(self._config_at_head(), certificate)
                except Rejected:
                    return
                self.role = REMOVED
                return

    def _follow(self, blocks: list[FetchedBlock]) -> int:
        """Check and apply the fetched blocks that extend the head, each certificate with
        the set of its epoch (ledger/node/follower.py); start the replica at the block
        after which this key is a member. Returns how many blocks were used."""
        for used, block in enumerate(blocks):
            if self.role != FOLLOWER:
                return used
            height, digest = self.head
            certificate = block.certificate
            if block.height <= height:
                continue  # a late reply: applied already
            if (
                block.height != height + 1
                or block.parent != digest
                or (certificate.height, certificate.digest) != (block.height, block.digest)
                or sha256(block.payload) != block.digest
            ):
                self.refused += 1
                return len(blocks)
            try:
                verify_commit_proof(self.config, certificate)
            except Rejected:
                self.refused += 1
                return len(blocks)
            ok, root, _ids, sets = self.execute(block.height, block.parent, block.payload)
            if not ok:
                self.refused += 1
                return len(blocks)
            ends = sets.epoch != self.sets.epoch
            committed = CommittedBlock(
                certificate.view,
                block.height,
                block.digest,
                block.parent,
                block.payload,
                root,
                certificate.votes,
                ends,
            )
            self.apply_committed(committed)
            if ends:
                config = self._config_at_head()
                self.world.on_switch(self, config)
                self._use(config)
                if self.key.public_key in config.validators:
                    self.role = MEMBER
                    self.disk_epoch = self.epoch
                    self.replica = Replica(config, self.key)
                    self.handle(self.replica.start())
        return len(blocks)
