"""The reference driver of the Ready contract, written once.

:meth:`ReadyDriver.handle` takes a :class:`~consensus.ready.Ready` in the order the driver
contract of consensus/replica.py prescribes — persist, commit, send, validate, propose,
fetch — and then obeys ``halt``. The simulator's nodes (consensus/sim/driver.py) and the
scripted tests' nodes (tests/consensus/pbft_harness.py) are this driver, each saying how
it carries out every effect; :class:`MemoryDisk` is their durable storage (it survives a
simulated crash because the replica object does not). The node runs the same contract in
ledger/engine.

House rules: the order lives here and nowhere else — a subclass says how each effect is
done, never in which order, and must say what halting means for it. No I/O: the disk is
in memory.
"""

from __future__ import annotations

import abc

from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    Outbound,
    ProposalRequest,
    Ready,
    ValidateRequest,
)
from consensus.records import HardState, PersistBatch, PersistedState, PreparedRecord, SignedSlot

#: The simulated store prunes stale guard records once it holds this many (a real store
#: may prune whenever it likes; the replica ignores stale records on restore anyway).
PRUNE_AT_RECORDS = 64


class MemoryDisk:
    """What the replica asked to persist, as a store keeps it (upserts by key)."""

    def __init__(self) -> None:
        self.hard_state: HardState | None = None
        self.signed: dict[tuple[int, int, str], SignedSlot] = {}
        self.prepared: dict[int, PreparedRecord] = {}

    def write(self, batch: PersistBatch) -> None:
        if batch.hard_state is not None:
            self.hard_state = batch.hard_state
        for record in batch.signed:
            known = self.signed.get(record.key)
            assert known is None or known.digest == record.digest, "guard record rewritten"
            self.signed[record.key] = record
        for prepared in batch.prepared:
            self.prepared[prepared.height] = prepared

    def start_epoch(self) -> None:
        """A new epoch's replica starts with no consensus records: the old epoch's guard
        records are for another signing domain (docs/CONSENSUS.md §12); blocks stay."""
        self.hard_state = None
        self.signed.clear()
        self.prepared.clear()

    def persisted(self) -> PersistedState:
        """Everything, for ``Replica.restore``."""
        return PersistedState(
            self.hard_state,
            tuple(self.signed[k] for k in sorted(self.signed)),
            tuple(self.prepared[h] for h in sorted(self.prepared)),
        )

    def prune(self, committed_height: int) -> None:
        """Drop what the contract allows (records.py): guard records of older views or at
        or below the stable checkpoint, prepared records at or below the last commit."""
        hard = self.hard_state
        if hard is None or len(self.signed) < PRUNE_AT_RECORDS:
            return
        for key in [
            k
            for k, r in self.signed.items()
            if r.view < hard.view or 0 < r.height <= hard.checkpoint.height
        ]:
            del self.signed[key]
        for height in [h for h in self.prepared if h <= committed_height]:
            del self.prepared[height]


class ReadyDriver(abc.ABC):
    """Handles each Ready in the contract's order; subclasses carry out the effects."""

    disk: MemoryDisk

    def handle(self, ready: Ready) -> None:
        if ready.persist is not None:  # 1. durable before anything leaves
            self.persist(ready.persist)
        for block in ready.committed:  # 2. the block store, in height order
            self.apply_committed(block)
        for out in ready.messages:  # 3. send
            self.send(out)
        for request in ready.validate:  # 4. execute on the parent's state, then answer
            self.validate(request)
        if ready.propose is not None:  # 5. build a block, then answer
            self.build_proposal(ready.propose)
        if ready.fetch is not None:  # 6. fetch certified blocks from peers
            self.fetch(ready.fetch)
        if ready.halt is not None:  # a certified block is invalid here: our state is bad
            self.halt(ready.halt)

    def persist(self, batch: PersistBatch) -> None:
        self.disk.write(batch)

    @abc.abstractmethod
    def apply_committed(self, block: CommittedBlock) -> None:
        """Write ``block`` (with its certificate) to the block store."""

    @abc.abstractmethod
    def send(self, out: Outbound) -> None:
        """Send ``out.message`` to ``out.to`` (None: every other validator)."""

    @abc.abstractmethod
    def validate(self, request: ValidateRequest) -> None:
        """Execute the block; answer ``Replica.proposal_validated`` (now or later)."""

    @abc.abstractmethod
    def build_proposal(self, request: ProposalRequest) -> None:
        """Build and execute a block; answer ``Replica.propose`` or ``skip_proposal``."""

    @abc.abstractmethod
    def fetch(self, request: FetchRequest) -> None:
        """Fetch the certified blocks; feed them to ``Replica.committed_block_from_peer``."""

    @abc.abstractmethod
    def halt(self, reason: str) -> None:
        """Stop, or (a simulator checking an invariant) record that this replica must."""
