"""Executed-but-uncommitted blocks: the tree a proposal or a validation builds on, and the
pure work items the node runs off its event loop (execute a proposal, check a peer's).

Theory of operation. The committed head is a :class:`~ledger.chain.execute.ChainTip` backed
by the store; every block this node executed above it (its own proposals and the ones it
validated) is an :class:`~ledger.chain.execute.ExecutedBlock` keyed by (height, digest),
whose state overlay reads through its parent's. When a block commits, its result is written
and dropped here, blocks at or below its height go, and its children are rebased onto the
new committed tip (their overlays then read through the store).

Every block-validity rule lives in ledger/chain/execute.py, the clock-skew bound included
(``validate_block``'s ``not_after_ms``); this module only decides what runs on what.

Never: execute anything itself on the event loop (the work items are run by the caller),
keep a result whose parent is gone, or read a clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from consensus.ready import ProposalRequest, ValidateRequest
from ledger.chain.execute import (
    ChainRules,
    ChainTip,
    ExecutedBlock,
    InvalidBlock,
    NotIncludable,
    SignatureCheck,
    build_block,
    validate_block,
)
from ledger.chain.types import Block, Transaction
from ledger.chain.validators import activated_by


@dataclass(frozen=True, slots=True)
class ValidateWork:
    """Execute ``block`` (a peer's proposal) on ``parent``; its timestamp may not pass
    ``not_after_ms`` (this node's clock plus the allowed skew, read when asked)."""

    request: ValidateRequest
    parent: ChainTip
    block: Block | None
    not_after_ms: int


@dataclass(frozen=True, slots=True)
class BuildWork:
    """Build and execute the next block from ``candidates`` on ``parent``."""

    request: ProposalRequest
    parent: ChainTip
    candidates: tuple[Transaction, ...]
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class CommitWork:
    """Write ``executed`` (executing ``block`` on ``parent`` first when it is None: a block
    fetched from a peer, or validated in a view this node left)."""

    executed: ExecutedBlock | None
    block: Block | None
    parent: ChainTip | None


@dataclass(frozen=True, slots=True)
class ReplayWork:
    """A run of consecutive certified blocks from catch-up to execute in one go, each on
    the one before, the first on ``parent``; ``requests`` are the validation requests the
    core makes for them, one by one as each commits (the first already made)."""

    parent: ChainTip
    requests: tuple[ValidateRequest, ...]
    blocks: tuple[Block, ...]

    @property
    def transactions(self) -> list[Transaction]:
        return [tx for block in self.blocks for tx in block.transactions]


Built = tuple[ExecutedBlock, list[tuple[Transaction, NotIncludable]]]


def run_validation(
    work: ValidateWork, rules: ChainRules, signature_ok: SignatureCheck
) -> ExecutedBlock | str:
    """Check a peer's proposal by re-executing it; the result, or why it is invalid."""
    if work.block is None:
        return "payload does not decode as a block"
    if work.block.header.prev_hash != work.request.parent_digest:
        return "payload does not match the digests"
    try:
        return validate_block(
            work.parent,
            work.block,
            view=work.request.view,
            rules=rules,
            signature_ok=signature_ok,
            not_after_ms=work.not_after_ms,
        )
    except InvalidBlock as exc:
        return str(exc)


def run_build(
    work: BuildWork, rules: ChainRules, proposer: int, signature_ok: SignatureCheck
) -> Built:
    """The primary's proposal, executed."""
    return build_block(
        work.parent,
        work.candidates,
        view=work.request.view,
        proposer=proposer,
        timestamp_ms=work.timestamp_ms,
        rules=rules,
        signature_ok=signature_ok,
    )


def run_commit_execution(
    work: CommitWork, rules: ChainRules, signature_ok: SignatureCheck
) -> ExecutedBlock:
    """Execute a certified block this node holds no result for. A quorum certified it, so
    failure means this node's state or code is wrong: AssertionError, loudly."""
    if work.executed is not None:
        return work.executed
    if work.block is None or work.parent is None:
        raise AssertionError("a certified block does not decode or does not extend the head")
    try:
        return validate_block(
            work.parent,
            work.block,
            view=work.block.header.view,
            rules=rules,
            signature_ok=signature_ok,
        )
    except InvalidBlock as exc:
        raise AssertionError(
            f"certified block {work.block.height} does not execute here: {exc}"
        ) from exc


def run_replay(
    work: ReplayWork,
    rules: ChainRules,
    signature_ok: SignatureCheck,
    clock_us: Callable[[], int],
) -> list[tuple[ExecutedBlock | str, int]]:
    """Execute a run of certified blocks, each on the result of the one before: per block
    the result (or why it is invalid) and the microseconds it took (``clock_us``: the
    caller's monotonic clock). Stops after the first invalid block and after a block that
    ends its epoch (the core validates nothing above it in this epoch). Certified blocks
    have no clock-skew bound: a quorum accepted their timestamps."""
    outcomes: list[tuple[ExecutedBlock | str, int]] = []
    parent = work.parent
    for request, block in zip(work.requests, work.blocks, strict=True):
        started = clock_us()
        try:
            executed = validate_block(
                parent, block, view=request.view, rules=rules, signature_ok=signature_ok
            )
        except InvalidBlock as exc:
            outcomes.append((str(exc), clock_us() - started))
            break
        outcomes.append((executed, clock_us() - started))
        if activated_by(executed.overlay.writes) is not None:
            break
        parent = executed
    return outcomes


class SpeculativeBlocks:
    """The executed-block tree above the committed head."""

    def __init__(self, head: ChainTip) -> None:
        self.head = head
        self._blocks: dict[tuple[int, bytes], ExecutedBlock] = {}

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, height: int, digest: bytes) -> ExecutedBlock | None:
        return self._blocks.get((height, digest))

    def add(self, executed: ExecutedBlock) -> None:
        self._blocks[(executed.height, executed.block_hash)] = executed

    def parent(self, height: int, parent_digest: bytes) -> ChainTip | None:
        """What a block at ``height`` naming ``parent_digest`` builds on, if held here."""
        head = self.head
        if height == head.height + 1 and parent_digest == head.block_hash:
            return head
        return self._blocks.get((height - 1, parent_digest))

    def ancestry(self, parent: ChainTip) -> tuple[frozenset[bytes], Mapping[bytes, int]]:
        """Hashes of the transactions in the uncommitted blocks from ``parent`` down to the
        head (membership tests only), and each of their senders' next nonce after them."""
        hashes: set[bytes] = set()
        nonces: dict[bytes, int] = {}
        block = parent if isinstance(parent, ExecutedBlock) else None
        while block is not None:
            for tx in block.block.transactions:
                hashes.add(tx.hash)
                if tx.nonce + 1 > nonces.get(tx.sender_address, 0):
                    nonces[tx.sender_address] = tx.nonce + 1
            block = self._blocks.get((block.height - 1, block.block.header.prev_hash))
        return frozenset(hashes), nonces

    def committed(self, height: int, new_head: ChainTip) -> None:
        """The block at ``height`` is durable: the store's tip replaces it, results at or
        below it go, and its children read through the store from now on."""
        self.head = new_head
        for key in sorted(self._blocks):
            child = self._blocks[key]
            if key[0] <= height:
                del self._blocks[key]
            elif key[0] == height + 1 and child.block.header.prev_hash == new_head.block_hash:
                child.overlay.rebase(new_head)
                child.nodes.rebase(new_head.nodes)

    def retain(self, live: list[tuple[int, bytes]]) -> None:
        """Drop results the consensus core no longer needs (see ``Replica.live_blocks``)."""
        keep = dict.fromkeys(live)
        for key in [k for k in self._blocks if k not in keep]:
            del self._blocks[key]
