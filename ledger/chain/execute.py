"""Executing blocks: from an ordered list of transactions to receipts, a state delta and roots.

Theory of operation (ethereum/execution-specs style: free functions over frozen data).
A block executes on a :class:`StateOverlay` over its parent (:class:`ChainTip`: the committed
head, or a pending :class:`ExecutedBlock` when the primary pipelines). Each transaction is
first checked for *includability* — chain, expiry, nonce, permissions, gas bounds, signature:
a block carrying a transaction that fails these is invalid as a whole, so a transaction hash
can never be committed twice (its nonce is spent). An includable transaction always gets a
receipt and always spends its nonce; whether it *succeeded* is the receipt's status.

Three callers: the primary builds a block from mempool candidates (:func:`build_block`,
skipping what is not includable), replicas check a proposal (:func:`validate_block`, which
must reproduce the header's receipts and state roots exactly), and catch-up re-executes
certified blocks the same way. Read-only queries run the VM on committed state
(:func:`query_contract`).

Determinism: no clock (the timestamp is the header's), no floats, no set iteration; the
same block on the same parent gives the same bytes in every process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import contracts
from contracts.abi import AbiValue
from contracts.interpreter import Machine
from contracts.state import BlockContext
from crypto.merkle import merkle_root
from genesis.document import Genesis, Permissions
from ledger.chain.accounts import Account
from ledger.chain.roles import apply_role_change, role_refusal
from ledger.chain.state import StateOverlay
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import NodeReader, OverlayNodes, TreeUpdate
from ledger.chain.types import (
    Block,
    BlockHeader,
    Call,
    Deploy,
    Event,
    Receipt,
    ReceiptStatus,
    RoleChange,
    Transaction,
    Transfer,
    TxLimits,
    ValidatorChange,
    tx_root,
)
from ledger.chain.validators import (
    Member,
    ValidatorSet,
    apply_validator_vote,
    end_of_block,
    read_active,
    vote_refusal,
)

#: Gas a native transfer costs (contract calls and deploys are metered by the VM).
TRANSFER_GAS: Final = 1_000
#: Gas budget of a read-only query.
QUERY_GAS_LIMIT: Final = 10_000_000
#: The sender address used for queries that name none.
ZERO_ADDRESS: Final = bytes(20)


class InvalidBlock(ValueError):
    """A proposal that must not be voted for; the message says why."""


class NotIncludable(ValueError):
    """A transaction that cannot go into the next block (the block would be invalid)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ChainRules:
    """What execution needs from genesis."""

    chain_id: str
    limits: TxLimits
    max_block_txs: int
    max_block_bytes: int
    max_block_gas: int
    validators: tuple[bytes, ...]
    validators_hash: bytes
    #: The genesis permissions; what counts is the roles in state (ledger/chain/roles.py).
    permissions: Permissions
    #: How far ahead of a validator's clock a proposal's timestamp may be.
    max_clock_skew_ms: int = 5_000
    #: The genesis set (epoch 0) and the epoch boundaries (ledger/chain/validators.py);
    #: the set that counts is the active one in state. None: derived from ``validators``.
    genesis_set: ValidatorSet | None = None
    genesis_height: int = 0
    checkpoint_interval: int = 64
    #: The VM's program cache and loop: one per node (per ChainRules), so contract code
    #: is validated and pre-decoded once, not per transaction. Never changes a result.
    machine: Machine = field(default_factory=Machine, compare=False, repr=False)

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> ChainRules:
        params = genesis.consensus
        return cls(
            chain_id=genesis.chain_id,
            limits=TxLimits(max_tx_bytes=params.max_tx_bytes, max_tx_gas=params.max_tx_gas),
            max_block_txs=params.max_block_txs,
            max_block_bytes=params.max_block_bytes,
            max_block_gas=params.max_block_gas,
            validators=tuple(v.public_key for v in genesis.validators),
            validators_hash=genesis.validators_hash(),
            permissions=genesis.permissions,
            max_clock_skew_ms=params.max_clock_skew_ms,
            genesis_set=ValidatorSet.genesis(genesis),
            genesis_height=genesis.initial_height - 1,
            checkpoint_interval=params.checkpoint_interval,
        )

    @property
    def initial_set(self) -> ValidatorSet:
        """The epoch-0 set: what an absent ``v a`` state key means."""
        if self.genesis_set is not None:
            return self.genesis_set
        members = tuple(Member(f"node{i}", k) for i, k in enumerate(self.validators))
        return ValidatorSet(0, self.genesis_height, members)


class ChainTip(Protocol):
    """What the next block builds on: a committed head or a pending executed block."""

    @property
    def height(self) -> int: ...

    @property
    def block_hash(self) -> bytes: ...

    @property
    def timestamp_ms(self) -> int: ...

    @property
    def state_root(self) -> bytes: ...

    @property
    def nodes(self) -> NodeReader: ...

    def get_state(self, key: bytes) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class ExecutedBlock:
    """A block executed on top of its parent and not yet committed (itself a ChainTip)."""

    block: Block
    receipts: tuple[Receipt, ...]
    overlay: StateOverlay
    tree_update: TreeUpdate
    nodes: OverlayNodes

    @property
    def height(self) -> int:
        return self.block.header.height

    @property
    def block_hash(self) -> bytes:
        return self.block.header.block_hash

    @property
    def timestamp_ms(self) -> int:
        return self.block.header.timestamp_ms

    @property
    def state_root(self) -> bytes:
        return self.block.header.state_root

    def get_state(self, key: bytes) -> bytes | None:
        return self.overlay.get_state(key)


#: Says whether a transaction's signature is valid (the node caches verified hashes).
SignatureCheck = Callable[[Transaction], bool]


def check_includable(
    overlay: StateOverlay,
    tx: Transaction,
    height: int,
    rules: ChainRules,
    signature_ok: SignatureCheck,
) -> None:
    """Raise :class:`NotIncludable` unless ``tx`` may be the next transaction at ``height``."""
    if tx.chain_id != rules.chain_id:
        raise NotIncludable("wrong_chain", f"transaction is for chain {tx.chain_id!r}")
    if len(tx.raw) > rules.limits.max_tx_bytes:
        raise NotIncludable("too_large", "transaction is over max_tx_bytes")
    if not 0 < tx.gas_limit <= rules.limits.max_tx_gas:
        raise NotIncludable("gas_limit", "gas_limit outside (0, max_tx_gas]")
    if tx.expiry_height is not None and tx.expiry_height < height:
        raise NotIncludable("expired", f"transaction expired at height {tx.expiry_height}")
    sender = tx.sender_address
    refusal = role_refusal(overlay, tx.payload, sender) or vote_refusal(
        overlay, rules.initial_set, tx.payload, tx.sender
    )
    if refusal is not None:
        raise NotIncludable("not_permitted", refusal)
    expected = overlay.get_account(sender).nonce
    if tx.nonce != expected:
        raise NotIncludable(
            "bad_nonce", f"nonce {tx.nonce}, the account's next nonce is {expected}"
        )
    if not signature_ok(tx):
        raise NotIncludable("bad_signature", "signature does not verify")


def apply_transaction(
    overlay: StateOverlay,
    tx: Transaction,
    context: BlockContext,
    machine: Machine | None = None,
    rules: ChainRules | None = None,
) -> Receipt:
    """Execute an includable transaction: spend its nonce, run it, return its receipt."""
    sender = tx.sender_address
    account = overlay.get_account(sender)
    overlay.set_account(sender, Account(account.balance, account.nonce + 1))
    payload = tx.payload
    if isinstance(payload, Transfer):
        return _transfer(overlay, tx, sender, payload)
    if isinstance(payload, RoleChange):
        return apply_role_change(overlay, tx, payload)
    if isinstance(payload, ValidatorChange):
        if rules is None:
            raise ValueError("executing a validator change needs the chain rules")
        return apply_validator_vote(overlay, tx, payload, rules.initial_set, context.height)
    if isinstance(payload, Deploy):
        address = contracts.contract_address(sender, tx.nonce)
        result = contracts.deploy(
            overlay,
            sender,
            address,
            payload.code,
            payload.args,
            payload.value,
            tx.gas_limit,
            context,
            machine=machine,
        )
    else:
        assert isinstance(payload, Call)
        result = contracts.call(
            overlay,
            sender,
            payload.to,
            payload.method,
            payload.args,
            payload.value,
            tx.gas_limit,
            context,
            machine=machine,
        )
    if result.ok:
        overlay.apply_vm_writes(result.writes)
    return Receipt(
        tx_hash=tx.hash,
        status=result.status,
        gas_used=result.gas_used,
        return_value=result.return_value,
        events=tuple(Event(e.address, e.name, e.args) for e in result.events),
        error=result.error,
        created_address=result.created_address,
    )


def _transfer(overlay: StateOverlay, tx: Transaction, sender: bytes, payload: Transfer) -> Receipt:
    if tx.gas_limit < TRANSFER_GAS:
        return Receipt(
            tx.hash,
            ReceiptStatus.OUT_OF_GAS,
            tx.gas_limit,
            error=f"a transfer needs {TRANSFER_GAS} gas",
        )
    source = overlay.get_account(sender)  # nonce already spent
    if source.balance < payload.amount:
        return Receipt(
            tx.hash,
            ReceiptStatus.REVERTED,
            TRANSFER_GAS,
            error=f"insufficient balance: have {source.balance}, need {payload.amount}",
        )
    overlay.set_account(sender, Account(source.balance - payload.amount, source.nonce))
    target = overlay.get_account(payload.to)
    if target.balance + payload.amount > 2**64 - 1:
        overlay.set_account(sender, source)
        return Receipt(
            tx.hash, ReceiptStatus.REVERTED, TRANSFER_GAS, error="recipient balance would overflow"
        )
    overlay.set_account(payload.to, Account(target.balance + payload.amount, target.nonce))
    return Receipt(tx.hash, ReceiptStatus.SUCCESS, TRANSFER_GAS)


def receipts_root(receipts: Sequence[Receipt]) -> bytes:
    return merkle_root([r.raw for r in receipts])


def _finish(
    tip: ChainTip,
    overlay: StateOverlay,
    header_fields: dict[str, object],
    txs: tuple[Transaction, ...],
    receipts: tuple[Receipt, ...],
) -> tuple[BlockHeader, TreeUpdate]:
    update = StateTree.at(tip.state_root, tip.nodes).apply(overlay.writes)
    header = BlockHeader(
        **header_fields,  # type: ignore[arg-type]
        tx_root=tx_root(txs),
        receipts_root=receipts_root(receipts),
        state_root=update.new_root,
        tx_count=len(txs),
    )
    return header, update


def build_block(
    tip: ChainTip,
    candidates: Iterable[Transaction],
    *,
    view: int,
    proposer: int,
    timestamp_ms: int,
    rules: ChainRules,
    signature_ok: SignatureCheck,
) -> tuple[ExecutedBlock, list[tuple[Transaction, NotIncludable]]]:
    """The primary's proposal: every includable candidate that fits, executed in order.

    Returns the executed block and the candidates left out with the reason (the caller
    drops those whose reason is permanent from its mempool).
    """
    height = tip.height + 1
    context = BlockContext(height, max(timestamp_ms, tip.timestamp_ms))
    overlay = StateOverlay(tip)
    certifying = read_active(overlay, rules.initial_set)
    included: list[Transaction] = []
    receipts: list[Receipt] = []
    skipped: list[tuple[Transaction, NotIncludable]] = []
    size = gas = 0
    for tx in candidates:
        if len(included) >= rules.max_block_txs:
            break
        if size + len(tx.raw) > rules.max_block_bytes or gas + tx.gas_limit > rules.max_block_gas:
            continue
        try:
            check_includable(overlay, tx, height, rules, signature_ok)
        except NotIncludable as exc:
            skipped.append((tx, exc))
            continue
        receipts.append(apply_transaction(overlay, tx, context, rules.machine, rules))
        included.append(tx)
        size += len(tx.raw)
        gas += tx.gas_limit
    end_of_block(overlay, height, rules.genesis_height, rules.checkpoint_interval)
    txs = tuple(included)
    header, update = _finish(
        tip,
        overlay,
        {
            "chain_id": rules.chain_id,
            "height": height,
            "view": view,
            "proposer": proposer,
            "timestamp_ms": context.timestamp_ms,
            "prev_hash": tip.block_hash,
            "validators_hash": certifying.hash(),
        },
        txs,
        tuple(receipts),
    )
    block = Block(header, txs)
    return ExecutedBlock(
        block, tuple(receipts), overlay, update, OverlayNodes(tip.nodes, update)
    ), skipped


def validate_block(
    tip: ChainTip,
    block: Block,
    *,
    view: int,
    rules: ChainRules,
    signature_ok: SignatureCheck,
    not_after_ms: int | None = None,
) -> ExecutedBlock:
    """Check a proposal against its parent by re-executing it; raise :class:`InvalidBlock`.

    ``not_after_ms``: the validator's clock plus the genesis ``max_clock_skew_ms``, for a
    proposal voted on now (a block proposed with a timestamp further ahead is refused);
    None for a block already certified (catch-up), whose timestamp a quorum accepted.
    """
    header = block.header
    height = tip.height + 1
    problems = []
    certifying = read_active(StateOverlay(tip), rules.initial_set)
    if header.chain_id != rules.chain_id:
        problems.append(f"chain {header.chain_id!r}")
    if header.height != height:
        problems.append(f"height {header.height}, expected {height}")
    # A block proposed in view v and carried into view v' > v by NEW-VIEW keeps its header
    # (its digest must not change), so the header may name an earlier view than the one we
    # vote in; it must name that view's primary.
    if header.view > view:
        problems.append(f"view {header.view} is ahead of the current view {view}")
    if header.proposer != header.view % certifying.n:
        problems.append(f"proposer {header.proposer} is not the primary of view {header.view}")
    if header.prev_hash != tip.block_hash:
        problems.append("prev_hash does not name the parent")
    if header.validators_hash != certifying.hash():
        problems.append("validators_hash does not match the validator set")
    if header.timestamp_ms < tip.timestamp_ms:
        problems.append("timestamp goes backwards")
    if not_after_ms is not None and header.timestamp_ms > not_after_ms:
        problems.append("timestamp is in the future beyond max_clock_skew_ms")
    if len(block.transactions) > rules.max_block_txs:
        problems.append(f"{len(block.transactions)} transactions, over max_block_txs")
    if sum(len(tx.raw) for tx in block.transactions) > rules.max_block_bytes:
        problems.append("transactions over max_block_bytes")
    if sum(tx.gas_limit for tx in block.transactions) > rules.max_block_gas:
        problems.append("gas limits over max_block_gas")
    if problems:
        raise InvalidBlock("invalid header: " + "; ".join(problems))
    context = BlockContext(height, header.timestamp_ms)
    overlay = StateOverlay(tip)
    receipts = []
    for i, tx in enumerate(block.transactions):
        try:
            check_includable(overlay, tx, height, rules, signature_ok)
        except NotIncludable as exc:
            raise InvalidBlock(
                f"transaction {i} ({tx.hash.hex()[:16]}) is not includable: {exc}"
            ) from None
        receipts.append(apply_transaction(overlay, tx, context, rules.machine, rules))
    end_of_block(overlay, height, rules.genesis_height, rules.checkpoint_interval)
    if receipts_root(receipts) != header.receipts_root:
        raise InvalidBlock("receipts_root does not match re-execution")
    update = StateTree.at(tip.state_root, tip.nodes).apply(overlay.writes)
    if update.new_root != header.state_root:
        raise InvalidBlock("state_root does not match re-execution")
    return ExecutedBlock(block, tuple(receipts), overlay, update, OverlayNodes(tip.nodes, update))


def query_contract(
    tip: ChainTip,
    address: bytes,
    method: str,
    args: Sequence[AbiValue],
    *,
    sender: bytes = ZERO_ADDRESS,
    machine: Machine | None = None,
) -> contracts.ExecutionResult:
    """Run a read-only method against ``tip``'s state; never writes."""
    context = BlockContext(tip.height, tip.timestamp_ms)
    return contracts.query(
        StateOverlay(tip), sender, address, method, args, QUERY_GAS_LIMIT, context, machine=machine
    )
