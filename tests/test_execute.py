"""Block execution: includability, receipts, contracts, and roots every replica reproduces."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from contracts import examples
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from genesis.document import Genesis, Permissions
from ledger.chain.accounts import Account, account_key, genesis_state
from ledger.chain.execute import (
    TRANSFER_GAS,
    ChainRules,
    ExecutedBlock,
    InvalidBlock,
    build_block,
    query_contract,
    validate_block,
)
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore, NodeReader
from ledger.chain.types import Block, Call, Deploy, ReceiptStatus, Transaction, Transfer

VALIDATORS = [PrivateKey(bytes([100 + i]) * 32) for i in range(4)]
USERS = [PrivateKey(bytes([1 + i]) * 32) for i in range(4)]
CHAIN = "exec-test"


def genesis(**kw: object) -> Genesis:
    return build_genesis(
        CHAIN,
        [(f"v{i}", k.public_key) for i, k in enumerate(VALIDATORS)],
        [(u.address, 1_000_000) for u in USERS],
        genesis_time="2026-11-26T00:00:00Z",
        **kw,  # type: ignore[arg-type]
    )


@dataclasses.dataclass
class MemoryTip:
    """A committed head kept in memory (what the store provides in a node)."""

    height: int
    block_hash: bytes
    timestamp_ms: int
    state_root: bytes
    nodes: NodeReader
    state: dict[bytes, bytes]

    def get_state(self, key: bytes) -> bytes | None:
        return self.state.get(key)

    @classmethod
    def from_genesis(cls, g: Genesis) -> MemoryTip:
        state = genesis_state(g)
        store = MemoryNodeStore()
        update = StateTree.empty(store).apply(state)
        store.commit(update)
        return cls(g.initial_height - 1, g.hash(), g.genesis_time_ms, update.new_root, store, state)

    def commit(self, executed: ExecutedBlock) -> None:
        assert isinstance(self.nodes, MemoryNodeStore)
        self.nodes.commit(executed.tree_update)
        for key, value in executed.overlay.writes.items():
            if value is None:
                self.state.pop(key, None)
            else:
                self.state[key] = value
        self.height, self.block_hash = executed.height, executed.block_hash
        self.timestamp_ms, self.state_root = executed.timestamp_ms, executed.state_root


def always(tx: Transaction) -> bool:
    return True


def verify(tx: Transaction) -> bool:
    return tx.signature_valid()


def transfer(user: int, nonce: int, to: bytes, amount: int, **kw: object) -> Transaction:
    return Transaction.create(
        USERS[user], CHAIN, nonce, Transfer(to, amount), gas_limit=10_000, **kw
    )  # type: ignore[arg-type]


def propose(tip: MemoryTip, txs: Sequence[Transaction], g: Genesis, view: int = 0) -> ExecutedBlock:
    executed, _ = build_block(
        tip, txs, view=view, proposer=view % 4, timestamp_ms=tip.timestamp_ms + 1000,
        rules=ChainRules.from_genesis(g), signature_ok=verify,
    )  # fmt: skip
    return executed


def account(tip: MemoryTip | ExecutedBlock, key: PrivateKey) -> Account:
    raw = tip.get_state(account_key(key.address))
    return Account.decode(raw) if raw else Account(0, 0)


def test_transfers_move_balances_spend_nonces_and_replicas_agree() -> None:
    g = genesis()
    primary, replica = MemoryTip.from_genesis(g), MemoryTip.from_genesis(g)
    txs = [
        transfer(0, 0, USERS[1].address, 100),
        transfer(0, 1, USERS[2].address, 5),
        transfer(1, 0, USERS[0].address, 7),
    ]
    executed = propose(primary, txs, g)
    assert executed.block.transactions == tuple(txs)
    assert [r.status for r in executed.receipts] == [ReceiptStatus.SUCCESS] * 3
    assert all(r.gas_used == TRANSFER_GAS for r in executed.receipts)
    assert account(executed, USERS[0]) == Account(1_000_000 - 105 + 7, 2)
    assert account(executed, USERS[1]) == Account(1_000_000 + 100 - 7, 1)
    again = validate_block(
        replica,
        Block.decode(executed.block.encode()),
        view=0,
        rules=ChainRules.from_genesis(g),
        signature_ok=verify,
    )
    assert again.state_root == executed.state_root and again.receipts == executed.receipts
    primary.commit(executed)
    proof = StateTree.at(primary.state_root, primary.nodes).prove(account_key(USERS[2].address))
    assert proof is not None


def test_failed_transfer_spends_nonce_and_gas_but_moves_nothing() -> None:
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    executed = propose(
        tip,
        [
            transfer(0, 0, USERS[1].address, 5_000_000),
            transfer(
                0,
                1,
                USERS[1].address,
                1,
            ),
        ],
        g,
    )
    first, second = executed.receipts
    assert first.status == ReceiptStatus.REVERTED and "insufficient balance" in first.error
    assert second.status == ReceiptStatus.SUCCESS
    assert account(executed, USERS[0]) == Account(1_000_000 - 1, 2)
    low_gas = Transaction.create(USERS[2], CHAIN, 0, Transfer(USERS[1].address, 1), gas_limit=10)
    (receipt,) = propose(tip, [low_gas], g).receipts
    assert receipt.status == ReceiptStatus.OUT_OF_GAS and receipt.gas_used == 10


def test_primary_skips_what_is_not_includable() -> None:
    g = genesis(permissions=Permissions(submit=tuple(u.address for u in USERS[:3])))
    tip = MemoryTip.from_genesis(g)
    good = transfer(0, 0, USERS[1].address, 1)
    replay = transfer(0, 0, USERS[1].address, 2)  # same nonce again
    gap = transfer(1, 5, USERS[0].address, 1)
    expired = transfer(2, 0, USERS[0].address, 1, expiry_height=0)
    outsider = transfer(3, 0, USERS[0].address, 1)
    forged = dataclasses.replace(transfer(2, 0, USERS[0].address, 1), signature=bytes(64))
    executed, skipped = build_block(
        tip, [good, replay, gap, expired, outsider, forged], view=0, proposer=0, timestamp_ms=1,
        rules=ChainRules.from_genesis(g), signature_ok=verify,
    )  # fmt: skip
    assert executed.block.transactions == (good,)
    assert [e.code for _, e in skipped] == [
        "bad_nonce",
        "bad_nonce",
        "expired",
        "not_permitted",
        "bad_signature",
    ]


def _mutated(executed: ExecutedBlock, **fields: object) -> Block:
    header = dataclasses.replace(executed.block.header, **fields)  # type: ignore[arg-type]
    return Block(header, executed.block.transactions)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"height": 5}, "height"),
        ({"view": 1}, "ahead"),
        ({"proposer": 2}, "primary"),
        ({"prev_hash": b"\x01" * 32}, "prev_hash"),
        ({"validators_hash": b"\x01" * 32}, "validators_hash"),
        ({"timestamp_ms": 0}, "backwards"),
        ({"state_root": b"\x01" * 32}, "state_root"),
        ({"receipts_root": b"\x01" * 32}, "receipts_root"),
    ],
)
def test_replicas_reject_a_proposal_that_does_not_reproduce(
    change: dict[str, object], needle: str
) -> None:
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    executed = propose(tip, [transfer(0, 0, USERS[1].address, 1)], g)
    with pytest.raises(InvalidBlock, match=needle):
        validate_block(
            tip,
            _mutated(executed, **change),
            view=0,
            rules=ChainRules.from_genesis(g),
            signature_ok=verify,
        )


def test_a_block_reissued_in_a_later_view_keeps_its_header_and_validates() -> None:
    """OSDI'99 §4.4: NEW-VIEW re-issues prepared blocks with the same digest in view v+1."""
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    executed = propose(tip, [transfer(0, 0, USERS[1].address, 1)], g, view=1)
    rules = ChainRules.from_genesis(g)
    again = validate_block(tip, executed.block, view=3, rules=rules, signature_ok=verify)
    assert again.state_root == executed.state_root
    with pytest.raises(InvalidBlock, match="ahead"):
        validate_block(tip, executed.block, view=0, rules=rules, signature_ok=verify)


def test_a_block_carrying_an_unincludable_transaction_is_invalid() -> None:
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    executed = propose(tip, [transfer(0, 0, USERS[1].address, 1)], g)
    bad = transfer(0, 7, USERS[1].address, 1)
    block = propose(tip, [transfer(0, 0, USERS[1].address, 1)], g).block
    smuggled = Block(dataclasses.replace(block.header), (*block.transactions, bad))
    with pytest.raises(InvalidBlock, match="not includable"):
        validate_block(tip, smuggled, view=0, rules=ChainRules.from_genesis(g), signature_ok=always)
    assert executed.block.transactions


def test_pipelined_blocks_execute_on_pending_parents() -> None:
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    first = propose(tip, [transfer(0, 0, USERS[1].address, 1)], g)
    second, _ = build_block(
        first, [transfer(0, 1, USERS[1].address, 1)], view=0, proposer=0, timestamp_ms=first.timestamp_ms,
        rules=ChainRules.from_genesis(g), signature_ok=verify,
    )  # fmt: skip
    assert second.block.header.prev_hash == first.block_hash
    replica = MemoryTip.from_genesis(g)
    rules = ChainRules.from_genesis(g)
    v1 = validate_block(replica, first.block, view=0, rules=rules, signature_ok=verify)
    v2 = validate_block(v1, second.block, view=0, rules=rules, signature_ok=verify)
    assert v2.state_root == second.state_root
    replica.commit(v1)
    replica.commit(v2)
    assert replica.state_root == second.state_root
    assert account(replica, USERS[0]).nonce == 2


def test_token_contract_deploy_call_query() -> None:
    g = genesis()
    tip = MemoryTip.from_genesis(g)
    code = examples.load("token")
    deploy = Transaction.create(USERS[0], CHAIN, 0, Deploy(code, (1_000,)), gas_limit=1_000_000)
    executed = propose(tip, [deploy], g)
    (receipt,) = executed.receipts
    assert receipt.status == ReceiptStatus.SUCCESS, receipt.error
    token = receipt.created_address
    assert token is not None
    tip.commit(executed)
    pay = Transaction.create(
        USERS[0], CHAIN, 1, Call(token, "transfer", (USERS[1].address, 250)), gas_limit=100_000
    )
    overdraw = Transaction.create(
        USERS[1], CHAIN, 0, Call(token, "transfer", (USERS[2].address, 10_000)), gas_limit=100_000
    )
    executed = propose(tip, [pay, overdraw], g)
    ok, failed = executed.receipts
    assert ok.status == ReceiptStatus.SUCCESS and ok.return_value == 1
    assert [e.name for e in ok.events] == ["Transfer"] and ok.events[0].args[2] == 250
    assert failed.status == ReceiptStatus.REVERTED and failed.gas_used < 100_000
    tip.commit(executed)
    assert query_contract(tip, token, "balance_of", [USERS[1].address]).return_value == 250
    assert query_contract(tip, token, "balance_of", [USERS[0].address]).return_value == 750
    assert account(tip, USERS[1]).nonce == 1  # the reverted call still spent its nonce


def test_infinite_loop_runs_out_of_gas_and_changes_nothing_but_the_nonce() -> None:
    from contracts.assembler import assemble

    g = genesis()
    tip = MemoryTip.from_genesis(g)
    spin = assemble(
        '.method spin()\nloop:\n    push "k"\n    push 0x01\n    sstore\n    jump loop\n'
    )
    deploy = Transaction.create(USERS[0], CHAIN, 0, Deploy(spin), gas_limit=1_000_000)
    executed = propose(tip, [deploy], g)
    tip.commit(executed)
    address = executed.receipts[0].created_address
    assert address is not None
    root_before = tip.state_root
    call = Transaction.create(USERS[1], CHAIN, 0, Call(address, "spin"), gas_limit=50_000)
    executed = propose(tip, [call], g)
    (receipt,) = executed.receipts
    assert receipt.status == ReceiptStatus.OUT_OF_GAS and receipt.gas_used == 50_000
    assert set(executed.overlay.writes) == {account_key(USERS[1].address)}
    assert executed.state_root != root_before


SCRIPT = """
import json, sys
sys.path.insert(0, {root!r})
from tests.test_execute import genesis, MemoryTip, propose, transfer, USERS
from contracts import examples
from ledger.chain.types import Deploy, Transaction
g = genesis()
tip = MemoryTip.from_genesis(g)
txs = [transfer(i % 4, i // 4, USERS[(i + 1) % 4].address, i + 1) for i in range(40)]
txs.append(Transaction.create(USERS[0], "exec-test", 10, Deploy(examples.load("token"), (5,)), gas_limit=10**6))
executed = propose(tip, txs, g)
print(json.dumps({{"state_root": executed.state_root.hex(), "block": executed.block_hash.hex()}}))
"""


def test_same_block_same_roots_under_different_hash_seeds() -> None:
    root = str(Path(__file__).resolve().parent.parent)
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT.format(root=root)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        outputs.add(json.dumps(json.loads(done.stdout), sort_keys=True))
    assert len(outputs) == 1
