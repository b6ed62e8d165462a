"""The SQLite store: round trips, the state tree, caches, reads under appends (refusals and
damage: test_store_refusals.py; kill -9: test_store_crash.py).

Blocks here are real: signed transfers, headers with the right tx_root, receipts_root and
state_root (the state tree update of the block's changes, computed from the store as a
node does), and commit certificates signed by the genesis validators. ``tests/store_worker.py``
imports the helpers below to append blocks from a child process.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from consensus.quorum import quorum_size
from consensus.votes import COMMIT_KIND, commit_vote_body
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from crypto.smt_proof import LEAF_KIND, Proof, verify_proof
from genesis.builder import build_genesis
from genesis.document import Contract, Genesis
from ledger.chain.accounts import (
    Account,
    account_key,
    code_key,
    genesis_state,
    storage_key,
)
from ledger.chain.execute import ChainRules, ChainTip, ExecutedBlock
from ledger.chain.execute import build_block as execute_block
from ledger.chain.state_tree import EMPTY_ROOT, StateTree, StateTreeError, TreeUpdate
from ledger.chain.state_tree_nodes import MemoryNodeStore
from ledger.chain.store import SCHEMA_VERSION, Store, StoreError
from ledger.chain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    Receipt,
    ReceiptStatus,
    Transaction,
    Transfer,
    receipts_root,
    tx_root,
)

CHAIN_ID = "store-test"
GENESIS_TIME = "2026-01-01T00:00:00Z"
VALIDATOR_KEYS = tuple(PrivateKey(sha256(b"store-test validator %d" % i)) for i in range(4))
USER_KEYS = tuple(PrivateKey(sha256(b"store-test user %d" % i)) for i in range(8))
FUNDS = 10**12
#: State key the crash test's child sets to the height of every block it appends.
COUNTER_KEY = b"x:counter"
#: The state change the refusal tests try to sneak in.
TOUCHED: Mapping[bytes, bytes | None] = {b"x:touched": b"1"}
WORKER = Path(__file__).with_name("store_worker.py")


# ----------------------------------------------------------------------------- helpers


def make_genesis(chain_id: str = CHAIN_ID, *, contracts: Sequence[Contract] = ()) -> Genesis:
    return build_genesis(
        chain_id,
        [(f"v{i}", k.public_key) for i, k in enumerate(VALIDATOR_KEYS)],
        [(k.address, FUNDS) for k in USER_KEYS],
        genesis_time=GENESIS_TIME,
        contracts=contracts,
    )


def transfer(key: PrivateKey, nonce: int, amount: int = 1, chain_id: str = CHAIN_ID) -> Transaction:
    to = sha256(b"recipient %d" % nonce)[:20]
    return Transaction.create(key, chain_id, nonce, Transfer(to, amount), gas_limit=21_000)


def success_receipts(txs: Sequence[Transaction]) -> list[Receipt]:
    return [Receipt(tx.hash, ReceiptStatus.SUCCESS, 21_000 + i) for i, tx in enumerate(txs)]


def certify(block: Block, view: int = 0, signers: int | None = None) -> CommitCertificate:
    """A commit certificate signed by the first ``signers`` (default: a quorum) validators."""
    count = quorum_size(len(VALIDATOR_KEYS)) if signers is None else signers
    body = commit_vote_body(view, block.height, block.hash())
    votes = {
        i: VALIDATOR_KEYS[i].sign(block.header.chain_id, COMMIT_KIND, body) for i in range(count)
    }
    return CommitCertificate.assemble(view, block.height, block.hash(), votes)


def build_block(
    genesis: Genesis,
    height: int,
    prev_hash: bytes,
    txs: Sequence[Transaction],
    receipts: Sequence[Receipt] | None = None,
    *,
    chain_id: str | None = None,
    state_root: bytes | None = None,
) -> tuple[Block, CommitCertificate, list[Receipt]]:
    """A certified block at ``height`` on top of ``prev_hash`` with its receipts.

    Without ``state_root`` the header carries a made-up one (for blocks that are refused
    before their state is looked at).
    """
    made = list(receipts) if receipts is not None else success_receipts(txs)
    header = BlockHeader(
        chain_id=genesis.chain_id if chain_id is None else chain_id,
        height=height,
        view=0,
        proposer=height % len(VALIDATOR_KEYS),
        timestamp_ms=1_767_225_600_000 + height,
        prev_hash=prev_hash,
        tx_root=tx_root(txs),
        receipts_root=receipts_root(made),
        state_root=sha256(b"state %d" % height) if state_root is None else state_root,
        validators_hash=genesis.validators_hash(),
        tx_count=len(txs),
    )
    block = Block(header, tuple(txs))
    return block, certify(block), made


def tree_update(store: Store, changes: Mapping[bytes, bytes | None]) -> TreeUpdate:
    """What ``changes`` do to the store's state tree (the caller's job, as in a node)."""
    return StateTree.at(store.state_root, store).apply(changes)


def next_block(
    store: Store,
    txs: Sequence[Transaction],
    genesis: Genesis,
    changes: Mapping[bytes, bytes | None] = {},
) -> tuple[Block, CommitCertificate, list[Receipt], TreeUpdate]:
    """The next certified block whose header commits to the state after ``changes``."""
    update = tree_update(store, changes)
    block, cert, receipts = build_block(
        genesis, store.head_height + 1, store.head_hash, txs, state_root=update.new_root
    )
    return block, cert, receipts, update


def transfer_changes(txs: Sequence[Transaction], height: int) -> dict[bytes, bytes | None]:
    """A plausible state delta: sender nonces/balances, recipients credited."""
    changes: dict[bytes, bytes | None] = {}
    for tx in txs:
        assert isinstance(tx.payload, Transfer)
        changes[account_key(tx.sender_address)] = Account(FUNDS - height, tx.nonce + 1).encode()
        changes[account_key(tx.payload.to)] = Account(tx.payload.amount, 0).encode()
    changes[COUNTER_KEY] = str(height).encode()
    return changes


def append_transfers(
    store: Store, genesis: Genesis, count: int, *, extra: Mapping[bytes, bytes | None] = {}
) -> Block:
    """Append one block of ``count`` transfers (nonces unique by height)."""
    height = store.head_height + 1
    txs = [transfer(USER_KEYS[i % len(USER_KEYS)], height * 1000 + i) for i in range(count)]
    changes = {**transfer_changes(txs, height), **extra}
    block, cert, receipts, update = next_block(store, txs, genesis, changes)
    store.append_block(block, cert, receipts, changes, tree_update=update)
    return block


def raw_sql(path: Path, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Run SQL on the store file behind the Store's back (to tamper, or to look)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def assert_tree_matches_flat_state(store: Store, path: Path) -> None:
    """``state_nodes`` holds exactly the tree under the store's root, which holds ``state``."""
    tree = StateTree.at(store.state_root, store)
    stored = [bytes(k) for (k,) in raw_sql(path, "SELECT key FROM state_nodes")]
    reachable = list(tree.iter_node_keys())
    assert len(reachable) == len(set(reachable))
    assert sorted(stored) == sorted(reachable), "state_nodes holds unreachable nodes"
    flat = {sha256(k): sha256(v) for k, v in raw_sql(path, "SELECT key, value FROM state")}
    assert dict(tree.iter_leaves()) == flat


def row_counts(path: Path) -> dict[str, int]:
    tables = ("blocks", "transactions", "receipts", "state", "state_nodes", "consensus_meta")
    return {t: int(raw_sql(path, f"SELECT count(*) FROM {t}")[0][0]) for t in tables}


def refused(
    store: Store,
    path: Path,
    block: Block,
    cert: CommitCertificate,
    receipts: Sequence[Receipt],
    match: str,
    update: TreeUpdate | None = None,
) -> None:
    """``append_block`` is refused with ``match`` and nothing changes, on disk or cached."""
    before = row_counts(path)
    head = (store.head_height, store.head_hash, store.state_root, store.head_timestamp_ms)
    nodes = set(raw_sql(path, "SELECT key FROM state_nodes"))
    with pytest.raises(StoreError, match=match):
        store.append_block(
            block,
            cert,
            receipts,
            TOUCHED,
            tree_update=tree_update(store, TOUCHED) if update is None else update,
        )
    assert row_counts(path) == before
    assert set(raw_sql(path, "SELECT key FROM state_nodes")) == nodes
    assert (store.head_height, store.head_hash, store.state_root, store.head_timestamp_ms) == head
    assert store.get_state(b"x:touched") is None


# ----------------------------------------------------------------------------- create and read


def test_new_store_holds_meta_and_genesis_state(store: Store, genesis: Genesis) -> None:
    assert store.chain_id == CHAIN_ID
    assert store.genesis_hash == genesis.hash()
    assert store.initial_height == 1
    assert store.head_height == 0
    assert store.head_hash == genesis.hash()
    assert store.get_block(1) is None
    for key in USER_KEYS:
        assert store.get_account(key.address) == Account(FUNDS, 0)
    assert store.get_account(bytes(20)) == Account(0, 0)
    assert store.get_states(genesis_state(genesis)) == genesis_state(genesis)


def test_genesis_contracts_become_state(tmp_path: Path) -> None:
    address = sha256(b"contract")[:20]
    contract = Contract(address, b"\x01\x02code", 55, ((b"k1", b"v1"), (b"k2", b"v2")))
    genesis = make_genesis(contracts=[contract])
    with Store.open(tmp_path / "c.sqlite", genesis) as store:
        assert store.get_account(address) == Account(55, 0)
        assert store.get_state(code_key(address)) == b"\x01\x02code"
        assert store.get_state(storage_key(address, b"k2")) == b"v2"
        assert store.get_state(storage_key(address, b"k3")) is None


def test_account_encoding_round_trips() -> None:
    account = Account(2**64 - 1, 7)
    assert Account.decode(account.encode()) == account
    with pytest.raises(ValueError):
        account_key(b"short")


def test_store_is_sqlite_in_wal_mode(store: Store, store_path: Path) -> None:
    assert raw_sql(store_path, "PRAGMA journal_mode") == [("wal",)]
    schema = dict(raw_sql(store_path, "SELECT key, value FROM meta"))
    assert schema["schema_version"] == str(SCHEMA_VERSION).encode()


def test_append_and_read_back(store: Store, genesis: Genesis, store_path: Path) -> None:
    txs = [transfer(USER_KEYS[0], n) for n in range(5)]
    changes: dict[bytes, bytes | None] = {
        account_key(USER_KEYS[0].address): Account(FUNDS - 5, 5).encode(),
        account_key(USER_KEYS[1].address): None,
        b"x:new": b"value",
    }
    block, cert, receipts, update = next_block(store, txs, genesis, changes)
    store.append_block(
        block, cert, receipts, changes, tree_update=update, consensus_meta={"guard": b"g1"}
    )

    assert store.head_height == 1
    assert store.head_hash == block.hash()
    assert store.state_root == block.header.state_root != store.genesis_state_root
    assert store.head_timestamp_ms == block.header.timestamp_ms
    assert store.get_block(1) == block
    assert store.get_header(1) == block.header
    assert store.get_block_hash(1) == block.hash()
    assert store.get_certificate(1) == cert
    assert store.get_block_receipts(1) == receipts
    for position, tx in enumerate(txs):
        assert store.get_transaction(tx.hash) == (tx, 1, position)
        assert store.get_receipt(tx.hash) == (receipts[position], 1, position)
    assert store.get_transaction(sha256(b"nothing")) is None
    assert store.get_receipt(sha256(b"nothing")) is None
    assert store.get_account(USER_KEYS[0].address) == Account(FUNDS - 5, 5)
    assert store.get_account(USER_KEYS[1].address) == Account(0, 0)  # deleted
    assert store.get_state(b"x:new") == b"value"
    assert store.get_consensus_meta("guard") == b"g1"

    # Upsert over an existing key, and a block with no transactions.
    empty, cert2, _, update2 = next_block(store, [], genesis, {b"x:new": b"second"})
    store.append_block(empty, cert2, [], {b"x:new": b"second"}, tree_update=update2)
    assert store.get_state(b"x:new") == b"second"
    assert store.get_block(2) == empty
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get_block(1)

    with Store.open(store_path, genesis) as again:
        assert (again.head_height, again.head_hash) == (2, empty.hash())
        assert again.state_root == empty.header.state_root
        assert again.head_timestamp_ms == empty.header.timestamp_ms
        assert again.get_block(1) == block
        assert again.get_consensus_meta("guard") == b"g1"
        again.check_integrity()


def test_consensus_meta_put_get(store: Store, store_path: Path, genesis: Genesis) -> None:
    assert store.get_consensus_meta("last-vote") is None
    store.put_consensus_meta("last-vote", b"\x00\x01")
    store.put_consensus_meta("last-vote", b"\x00\x02")
    store.close()
    with Store.open(store_path, genesis) as again:
        assert again.get_consensus_meta("last-vote") == b"\x00\x02"


def test_get_states_returns_present_keys_only(store: Store, genesis: Genesis) -> None:
    keys = [account_key(k.address) for k in USER_KEYS]
    many = [*keys, *(sha256(b"%d" % i) for i in range(1200))]  # more than one chunk
    found = store.get_states(many)
    assert set(found) == set(keys)


def test_in_memory_store(genesis: Genesis) -> None:
    with Store.open(":memory:", genesis) as store:
        append_transfers(store, genesis, 3)
        assert store.head_height == 1
        store.check_integrity()


def test_initial_height_above_one(tmp_path: Path) -> None:
    genesis = build_genesis(
        CHAIN_ID,
        [(f"v{i}", k.public_key) for i, k in enumerate(VALIDATOR_KEYS)],
        genesis_time=GENESIS_TIME,
        initial_height=100,
    )
    path = tmp_path / "h.sqlite"
    with Store.open(path, genesis) as store:
        assert store.head_height == 99
        assert store.state_root == EMPTY_ROOT  # no accounts: the empty tree, no nodes
        block, cert, receipts, update = next_block(store, [transfer(USER_KEYS[0], 1)], genesis)
        assert block.height == 100
        store.append_block(block, cert, receipts, {}, tree_update=update)
    with Store.open(path, genesis) as store:
        assert store.head_height == 100
        assert store.state_root == EMPTY_ROOT
        store.check_integrity()


# ----------------------------------------------------------------------------- state tree


def test_genesis_state_root_is_the_tree_of_the_genesis_state(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    nodes = MemoryNodeStore()
    expected = StateTree.empty(nodes).apply(genesis_state(genesis))
    nodes.commit(expected)
    assert store.state_root == store.genesis_state_root == expected.new_root != EMPTY_ROOT
    assert store.head_timestamp_ms == genesis.genesis_time_ms
    meta = dict(raw_sql(store_path, "SELECT key, value FROM meta"))
    assert meta["genesis_state_root"] == expected.new_root
    stored = dict(raw_sql(store_path, "SELECT key, node FROM state_nodes"))
    assert stored == dict(expected.node_writes)
    assert_tree_matches_flat_state(store, store_path)
    store.check_integrity()


def test_tip_is_the_committed_head(store: Store, genesis: Genesis) -> None:
    tip = store.tip()
    assert (tip.height, tip.block_hash, tip.timestamp_ms, tip.state_root) == (
        0,
        genesis.hash(),
        genesis.genesis_time_ms,
        store.genesis_state_root,
    )
    block = append_transfers(store, genesis, 3)
    tip = store.tip()
    header = block.header
    assert (tip.height, tip.block_hash, tip.timestamp_ms, tip.state_root) == (
        header.height,
        header.hash(),
        header.timestamp_ms,
        header.state_root,
    )
    key = account_key(USER_KEYS[0].address)
    assert tip.get_state(key) == store.get_state(key)
    # The tip's node reader (the shared cache) sees the committed tree.
    root = tip.nodes.get_node(tip.state_root)
    assert root is not None and root == store.get_node(tip.state_root)
    keys = list(StateTree.at(tip.state_root, store).iter_node_keys())
    assert dict(tip.nodes.get_nodes(keys)) == dict(store.get_nodes(keys))


def test_executed_blocks_commit_through_the_tip(store: Store, genesis: Genesis) -> None:
    """Execution on store.tip() (pipelined two deep) produces what append_block takes."""
    rules = ChainRules.from_genesis(genesis)
    recipient = sha256(b"recipient")[:20]

    def execute(tip: ChainTip, nonce: int) -> ExecutedBlock:
        txs = [
            Transaction.create(k, CHAIN_ID, nonce, Transfer(recipient, 5), gas_limit=21_000)
            for k in USER_KEYS
        ]
        executed, skipped = execute_block(
            tip,
            txs,
            view=0,
            proposer=0,
            timestamp_ms=tip.timestamp_ms + 1000,
            rules=rules,
            signature_ok=lambda tx: True,
        )
        assert not skipped
        return executed

    first = execute(store.tip(), 0)
    second = execute(first, 1)  # built on the pending block, before it commits
    for executed in (first, second):
        block = executed.block
        store.append_block(
            block,
            certify(block),
            executed.receipts,
            executed.overlay.writes,
            tree_update=executed.tree_update,
        )
        assert store.state_root == block.header.state_root
    assert store.get_account(recipient) == Account(5 * 2 * len(USER_KEYS), 0)
    assert store.get_account(USER_KEYS[3].address).nonce == 2
    store.check_integrity()
    third = execute(store.tip(), 2)
    assert third.tree_update.old_root == store.state_root


def test_append_refuses_a_tree_update_from_another_root(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    append_transfers(store, genesis, 2)
    # The update of the same change made on the genesis tree, not on the head's.
    nodes = MemoryNodeStore()
    stale = StateTree.empty(nodes).apply(genesis_state(genesis))
    nodes.commit(stale)
    wrong = StateTree.at(stale.new_root, nodes).apply(TOUCHED)
    block, cert, receipts = build_block(
        genesis, 2, store.head_hash, [transfer(USER_KEYS[0], 9)], state_root=wrong.new_root
    )
    refused(
        store,
        store_path,
        block,
        cert,
        receipts,
        "cannot append block 2: its state tree update starts at root [0-9a-f]+.., "
        "the store's state root is",
        update=wrong,
    )


def test_append_refuses_a_tree_update_that_misses_the_header_root(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    append_transfers(store, genesis, 2)
    # A right update, but the header commits to another state (here: no change at all).
    block, cert, receipts = build_block(
        genesis, 2, store.head_hash, [transfer(USER_KEYS[0], 9)], state_root=store.state_root
    )
    refused(
        store,
        store_path,
        block,
        cert,
        receipts,
        "its state tree update ends at root [0-9a-f]+.., the header's state root is",
    )


def test_state_nodes_hold_exactly_the_live_tree(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    """Inserts, updates, deletes (down to one key under a prefix, and back): no leaks."""
    for height in range(1, 13):
        extra: dict[bytes, bytes | None] = {b"x:k%d" % i: b"v%d" % height for i in range(height)}
        extra.update({b"x:k%d" % i: None for i in range(0, height - 1, 3)})
        extra[account_key(USER_KEYS[height % len(USER_KEYS)].address)] = None
        append_transfers(store, genesis, height % 4, extra=extra)
        assert_tree_matches_flat_state(store, store_path)
    store.check_integrity()
    store.close()
    with Store.open(store_path, genesis) as again:
        assert_tree_matches_flat_state(again, store_path)


def test_state_proofs_verify_against_the_head_header(store: Store, genesis: Genesis) -> None:
    for _ in range(3):
        block = append_transfers(store, genesis, 4, extra={account_key(bytes(20)): None})
    root = block.header.state_root
    tree = StateTree.at(store.state_root, store)
    present = [account_key(k.address) for k in USER_KEYS] + [COUNTER_KEY]
    for key in present:
        value = store.get_state(key)
        assert value is not None
        proof = Proof.decode(tree.prove(key).encode())  # as a light client receives it
        assert verify_proof(root, key, value, proof)
        assert not verify_proof(root, key, value + b"!", proof)
        assert not verify_proof(root, key, None, proof)
    for key in (account_key(bytes(20)), b"x:never"):
        assert store.get_state(key) is None
        proof = tree.prove(key)
        assert verify_proof(root, key, None, proof)
        assert not verify_proof(root, key, b"anything", proof)
    assert not verify_proof(store.genesis_state_root, COUNTER_KEY, b"3", tree.prove(COUNTER_KEY))


def _node_keys_by_depth(store: Store) -> tuple[bytes, bytes]:
    """(the root's storage key, a leaf's storage key) of the store's tree."""
    keys = list(StateTree.at(store.state_root, store).iter_node_keys())
    nodes = store.get_nodes(keys)
    leaf = next(k for k in keys if k != store.state_root and nodes[k][0] == LEAF_KIND)
    return store.state_root, leaf


def test_get_state_cache_follows_appends_deletes_and_reopen(
    store_path: Path, genesis: Genesis
) -> None:
    keys = [account_key(k.address) for k in USER_KEYS] + [b"x:a", b"x:b", b"x:c", COUNTER_KEY]

    def assert_cache_matches_file(store: Store) -> None:
        on_disk = dict(raw_sql(store_path, "SELECT key, value FROM state"))
        for _ in range(2):  # the second round is served from the cache
            assert {k: store.get_state(k) for k in keys} == {k: on_disk.get(k) for k in keys}

    for capacity in (200_000, 3, 0):  # default; evicting on almost every write; disabled
        store_path.unlink(missing_ok=True)
        with Store.open(store_path, genesis, state_cache_entries=capacity) as store:
            assert_cache_matches_file(store)  # caches every key, present or absent
            append_transfers(store, genesis, 2, extra={b"x:a": b"1", b"x:b": b"2"})
            assert_cache_matches_file(store)
            append_transfers(store, genesis, 2, extra={b"x:a": None, b"x:c": b"3"})
            assert store.get_state(b"x:a") is None
            assert_cache_matches_file(store)
            append_transfers(store, genesis, 1, extra={b"x:a": b"back", b"x:c": None})
            assert store.get_state(b"x:a") == b"back"
            assert_cache_matches_file(store)
        with Store.open(store_path, genesis, state_cache_entries=capacity) as again:
            assert_cache_matches_file(again)
            assert again.get_state(b"x:c") is None
    with pytest.raises(ValueError, match="must not be negative"):
        Store.open(store_path, genesis, state_cache_entries=-1)
    with pytest.raises(ValueError, match="or zero"):
        Store.open(store_path, genesis, node_cache_nodes=0)


def test_get_state_cache_is_bounded(store: Store, genesis: Genesis) -> None:
    store.close()
    with Store.open(store.path, genesis, state_cache_entries=16) as small:
        for i in range(100):
            assert small.get_state(b"x:absent %d" % i) is None
        append_transfers(small, genesis, 8, extra={b"x:n%d" % i: b"v" for i in range(40)})
        cache = small._state_cache  # white box: the bound holds
        assert 0 < len(cache) <= 16
        assert small.get_state(b"x:n0") == b"v"  # evicted long ago, read again from the file


def test_tip_node_cache_stays_bounded_and_right(store_path: Path, genesis: Genesis) -> None:
    with Store.open(store_path, genesis, node_cache_nodes=40) as store:
        for _ in range(8):
            append_transfers(store, genesis, 6)  # each block rewrites ~20 nodes
            nodes = store.tip().nodes
            keys = list(StateTree.at(store.state_root, store).iter_node_keys())
            assert dict(nodes.get_nodes(keys)) == dict(store.get_nodes(keys))
            assert all(nodes.get_node(k) == store.get_node(k) for k in keys)
            assert len(nodes) <= 40  # type: ignore[arg-type]
        store.check_integrity()


def test_reads_from_another_thread_during_appends(store: Store, genesis: Genesis) -> None:
    """Readers (state, tip nodes) and the appender share the store under its lock."""
    errors: list[BaseException] = []
    stop = threading.Event()
    key = account_key(USER_KEYS[0].address)

    def read() -> None:
        try:
            while not stop.is_set():
                tip = store.tip()
                assert tip.get_state(key) is not None
                try:
                    found = StateTree.at(tip.state_root, tip.nodes).value_hash(key) is not None
                except StateTreeError:
                    found = False
                # A tip's tree is only promised until the next append.
                assert found or store.head_height != tip.height
        except BaseException as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(10):
            append_transfers(store, genesis, 8)
    finally:
        stop.set()
        reader.join(timeout=10)
    assert not errors, errors
    store.check_integrity()
