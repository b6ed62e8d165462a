"""The SQLite store refuses what it must not serve or write: a damaged or foreign file on
open, a block that does not extend the head, tampered rows found by the full check, and
damage found on read (headers, transactions, state values). Helpers: tests/test_store.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crypto.hashing import sha256
from genesis.builder import build_genesis
from genesis.document import Genesis
from ledger.chain.accounts import (
    Account,
    account_key,
)
from ledger.chain.state_tree import EMPTY_ROOT
from ledger.chain.store import SCHEMA_VERSION, Store, StoreError
from ledger.chain.store_schema import state_checksum
from ledger.chain.types import (
    BlockHeader,
    CommitCertificate,
)
from tests.test_store import (
    CHAIN_ID,
    FUNDS,
    TOUCHED,
    USER_KEYS,
    VALIDATOR_KEYS,
    _node_keys_by_depth,
    append_transfers,
    build_block,
    certify,
    make_genesis,
    next_block,
    raw_sql,
    refused,
    transfer,
)


def test_open_refuses_a_tree_without_its_root_node(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 3)
    root, _leaf = _node_keys_by_depth(store)
    store.close()
    raw_sql(store_path, "DELETE FROM state_nodes WHERE key = ?", [root])
    with pytest.raises(
        StoreError,
        match=r"chain\.sqlite is inconsistent: the state tree is missing its root node "
        r"[0-9a-f]+\.\.: the store is damaged",
    ):
        Store.open(store_path, genesis)


def test_open_refuses_a_genesis_tree_without_its_root_node(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    store.close()
    raw_sql(store_path, "DELETE FROM state_nodes WHERE key = ?", [store.genesis_state_root])
    with pytest.raises(StoreError, match="missing its root node"):
        Store.open(store_path, genesis)


def test_check_integrity_finds_a_missing_or_damaged_node(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 3)
    _root, leaf = _node_keys_by_depth(store)
    store.close()
    (node,) = raw_sql(store_path, "SELECT node FROM state_nodes WHERE key = ?", [leaf])[0]
    raw_sql(store_path, "DELETE FROM state_nodes WHERE key = ?", [leaf])
    with (
        Store.open(store_path, genesis) as reopened,  # the root is there: open is cheap
        pytest.raises(
            StoreError, match=f"state tree under root .* is damaged: state node {leaf.hex()}"
        ),
    ):
        reopened.check_integrity()
    damaged = node[:-1] + bytes([node[-1] ^ 1])
    raw_sql(store_path, "INSERT INTO state_nodes VALUES (?, ?)", [leaf, damaged])
    with (
        Store.open(store_path, genesis) as reopened,
        pytest.raises(StoreError, match="does not match its key"),
    ):
        reopened.check_integrity()


def test_check_integrity_finds_flat_state_the_tree_does_not_hold(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 3)
    store.close()
    key = account_key(USER_KEYS[2].address)
    # Forgeries with valid row checksums: only the tree can tell.
    forged = Account(FUNDS * 2, 0).encode()
    tampers: list[tuple[str, list[object], str]] = [
        (
            "UPDATE state SET value = ?, checksum = ? WHERE key = ?",
            [forged, state_checksum(key, forged), key],
            f"state key {key.hex()} has a value the state tree does not commit to",
        ),
        (
            "INSERT INTO state VALUES (?, ?, ?)",
            [b"x:forged", b"1", state_checksum(b"x:forged", b"1")],
            "state key 783a666f72676564",
        ),
        ("DELETE FROM state WHERE key = ?", [key], r"the state tree holds (\d+) keys, the state"),
    ]
    original = raw_sql(store_path, "SELECT value FROM state WHERE key = ?", [key])[0][0]
    for sql, params, match in tampers:
        raw_sql(store_path, sql, params)
        with Store.open(store_path, genesis) as reopened, pytest.raises(StoreError, match=match):
            reopened.check_integrity()
        raw_sql(store_path, "DELETE FROM state WHERE key IN (?, ?)", [key, b"x:forged"])
        raw_sql(
            store_path,
            "INSERT INTO state VALUES (?, ?, ?)",
            [key, original, state_checksum(key, original)],
        )
    with Store.open(store_path, genesis) as restored:
        restored.check_integrity()


def test_a_damaged_state_value_is_never_served(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 3)
    store.close()
    key = account_key(USER_KEYS[2].address)
    (value,) = raw_sql(store_path, "SELECT value FROM state WHERE key = ?", [key])[0]
    damaged = bytes(value[:-1]) + bytes([value[-1] ^ 0x04])  # one bit, checksum untouched
    raw_sql(store_path, "UPDATE state SET value = ? WHERE key = ?", [damaged, key])
    damage = f"state key {key.hex()} is damaged"
    with Store.open(store_path, genesis, state_cache_entries=0) as reopened:
        with pytest.raises(StoreError, match=damage):
            reopened.get_account(USER_KEYS[2].address)
        with pytest.raises(StoreError, match=damage):
            reopened.get_states([key, account_key(USER_KEYS[1].address)])
        assert reopened.get_account(USER_KEYS[1].address).nonce > 0  # the rest still reads
        with pytest.raises(StoreError, match=damage):
            reopened.check_integrity()


def test_a_damaged_header_below_the_head_is_refused_at_open(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    for _ in range(4):
        append_transfers(store, genesis, 2)
    store.close()
    (header,) = raw_sql(store_path, "SELECT header FROM blocks WHERE height = 2")[0]
    damaged = bytes(header[:30]) + bytes([header[30] ^ 0x01]) + bytes(header[31:])
    raw_sql(store_path, "UPDATE blocks SET header = ? WHERE height = 2", [damaged])
    with pytest.raises(StoreError, match="block 2's header is damaged"):
        Store.open(store_path, genesis)


def test_a_block_whose_transactions_were_swapped_is_not_served(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 3)
    append_transfers(store, genesis, 3)  # block 1 is below the head (open checks the head)
    store.close()
    rows = raw_sql(store_path, "SELECT hash, position FROM transactions WHERE height = 1")
    (a, pa), (b, pb) = rows[0], rows[1]
    raw_sql(store_path, "UPDATE transactions SET position = -1 WHERE hash = ?", [a])
    raw_sql(store_path, "UPDATE transactions SET position = ? WHERE hash = ?", [pa, b])
    raw_sql(store_path, "UPDATE transactions SET position = ? WHERE hash = ?", [pb, a])
    with (
        Store.open(store_path, genesis) as reopened,
        pytest.raises(StoreError, match="block 1's transactions do not match its header"),
    ):
        reopened.get_block(1)


def test_check_integrity_finds_a_forged_genesis_state_root(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    append_transfers(store, genesis, 1)  # the head's root no longer depends on the meta row
    store.close()
    raw_sql(store_path, "UPDATE meta SET value = ? WHERE key = 'genesis_state_root'", [EMPTY_ROOT])
    with (
        Store.open(store_path, genesis) as reopened,
        pytest.raises(StoreError, match="genesis_state_root is not the root of the genesis"),
    ):
        reopened.check_integrity()


# ----------------------------------------------------------------------------- refusals on open


def test_refuses_another_chains_genesis(store: Store, store_path: Path) -> None:
    store.close()
    other = make_genesis("other-chain")
    with pytest.raises(
        StoreError,
        match=r"belongs to chain 'store-test' \(genesis [0-9a-f]+\.\.\), not 'other-chain'",
    ):
        Store.open(store_path, other)


def test_refuses_same_chain_id_other_genesis(store: Store, store_path: Path) -> None:
    store.close()
    other = build_genesis(
        CHAIN_ID,
        [(f"v{i}", k.public_key) for i, k in enumerate(VALIDATOR_KEYS)],
        genesis_time="2027-01-01T00:00:00Z",
    )
    with pytest.raises(StoreError, match="belongs to chain"):
        Store.open(store_path, other)


def test_refuses_unknown_schema_version(store: Store, store_path: Path, genesis: Genesis) -> None:
    store.close()
    raw_sql(store_path, "UPDATE meta SET value = ? WHERE key = 'schema_version'", [b"99"])
    with pytest.raises(
        StoreError, match=f"store schema version 99, this build reads {SCHEMA_VERSION}"
    ):
        Store.open(store_path, genesis)


def test_refuses_a_file_that_is_not_sqlite(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "garbage.sqlite"
    data = b"this is not a database at all, just some text\n" * 100
    path.write_bytes(data)
    with pytest.raises(StoreError, match=r"garbage\.sqlite.*not an SQLite database"):
        Store.open(path, genesis)
    assert path.read_bytes() == data  # left untouched


def test_refuses_a_foreign_sqlite_database(tmp_path: Path, genesis: Genesis) -> None:
    path = tmp_path / "foreign.sqlite"
    raw_sql(path, "CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not a ledger store"):
        Store.open(path, genesis)


def test_refuses_a_missing_directory(tmp_path: Path, genesis: Genesis) -> None:
    with pytest.raises(StoreError, match=r"cannot open store at .*nowhere"):
        Store.open(tmp_path / "nowhere" / "chain.sqlite", genesis)


def test_refuses_a_truncated_file(store: Store, store_path: Path, genesis: Genesis) -> None:
    for _ in range(30):
        append_transfers(store, genesis, 20)
    store.close()
    size = store_path.stat().st_size
    assert not Path(f"{store_path}-wal").exists()  # checkpointed on close
    with open(store_path, "r+b") as fh:
        fh.truncate(size // 2)
    with pytest.raises(StoreError, match=r"chain\.sqlite.*damaged"):
        Store.open(store_path, genesis)


def test_refuses_a_tampered_head_header(store: Store, store_path: Path, genesis: Genesis) -> None:
    for _ in range(3):
        append_transfers(store, genesis, 2)
    store.close()
    header = BlockHeader.decode(
        raw_sql(store_path, "SELECT header FROM blocks WHERE height = 3")[0][0]
    )
    forged = dataclasses.replace(header, state_root=sha256(b"forged"))
    raw_sql(store_path, "UPDATE blocks SET header = ? WHERE height = 3", [forged.encode()])
    with pytest.raises(StoreError, match="block 3's header hashes to"):
        Store.open(store_path, genesis)


def test_refuses_a_head_whose_certificate_does_not_verify(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    block = append_transfers(store, genesis, 1)
    store.close()
    weak = certify(block, signers=2)  # under the quorum of 3
    raw_sql(store_path, "UPDATE blocks SET certificate = ? WHERE height = 1", [weak.encode()])
    with pytest.raises(StoreError, match="certificate does not verify"):
        Store.open(store_path, genesis)


def test_refuses_a_head_missing_a_receipt(store: Store, store_path: Path, genesis: Genesis) -> None:
    block = append_transfers(store, genesis, 3)
    store.close()
    raw_sql(store_path, "DELETE FROM receipts WHERE tx_hash = ?", [block.transactions[1].hash])
    with pytest.raises(
        StoreError, match="3 transactions but 3 transaction rows and 2 receipt rows"
    ):
        Store.open(store_path, genesis)


def test_refuses_a_gap_in_the_chain(store: Store, store_path: Path, genesis: Genesis) -> None:
    for _ in range(3):
        append_transfers(store, genesis, 0)
    store.close()
    raw_sql(store_path, "DELETE FROM blocks WHERE height = 2")
    with pytest.raises(StoreError, match="holds 2 blocks"):
        Store.open(store_path, genesis)


# ----------------------------------------------------------------------------- refusals on append


def test_append_refuses_wrong_height(store: Store, genesis: Genesis, store_path: Path) -> None:
    append_transfers(store, genesis, 1)
    block, cert, receipts = build_block(genesis, 3, store.head_hash, [transfer(USER_KEYS[0], 9)])
    refused(store, store_path, block, cert, receipts, "cannot append block 3: the next height is 2")
    block, cert, receipts = build_block(genesis, 1, store.head_hash, [transfer(USER_KEYS[0], 9)])
    refused(store, store_path, block, cert, receipts, "cannot append block 1")


def test_append_refuses_wrong_prev_hash(store: Store, genesis: Genesis, store_path: Path) -> None:
    append_transfers(store, genesis, 1)
    block, cert, receipts = build_block(
        genesis, 2, sha256(b"elsewhere"), [transfer(USER_KEYS[0], 9)]
    )
    refused(store, store_path, block, cert, receipts, "prev_hash .* is not the head hash")


def test_append_refuses_another_chain(store: Store, genesis: Genesis, store_path: Path) -> None:
    tx = transfer(USER_KEYS[0], 9, chain_id="other-chain")
    block, cert, receipts = build_block(genesis, 1, store.head_hash, [tx], chain_id="other-chain")
    refused(store, store_path, block, cert, receipts, "it is for chain 'other-chain'")


def test_append_refuses_a_certificate_for_another_block(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    block, _, receipts, _ = next_block(store, [transfer(USER_KEYS[0], 1)], genesis, TOUCHED)
    _other, other_cert, _, _ = next_block(store, [transfer(USER_KEYS[0], 2)], genesis, TOUCHED)
    refused(store, store_path, block, other_cert, receipts, "commit certificate is for block 1")
    wrong_height = CommitCertificate(0, 2, block.hash(), other_cert.votes)
    refused(store, store_path, block, wrong_height, receipts, "commit certificate is for block 2")


def test_append_refuses_mismatched_receipts(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    txs = [transfer(USER_KEYS[0], n) for n in range(3)]
    block, cert, receipts, _ = next_block(store, txs, genesis, TOUCHED)
    refused(store, store_path, block, cert, receipts[:2], "2 receipts for 3 transactions")
    swapped = [receipts[0], receipts[2], receipts[1]]
    refused(store, store_path, block, cert, swapped, "receipt 1 is for transaction")


def test_append_refuses_a_transaction_already_stored(
    store: Store, genesis: Genesis, store_path: Path
) -> None:
    tx = transfer(USER_KEYS[0], 1)
    block, cert, receipts, update = next_block(store, [tx], genesis)
    store.append_block(block, cert, receipts, {}, tree_update=update)
    assert store.get_state(b"x:touched") is None  # cached as absent
    again, cert2, receipts2, _ = next_block(store, [tx], genesis, TOUCHED)
    refused(store, store_path, again, cert2, receipts2, "cannot append block 2: UNIQUE constraint")
    # The cached head and state survived the failed write; the store takes the next block.
    append_transfers(store, genesis, 2)
    assert store.head_height == 2
    store.check_integrity()


# ----------------------------------------------------------------------------- full check


def test_check_integrity_finds_a_tampered_middle_block(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    for _ in range(6):
        append_transfers(store, genesis, 3)
    store.check_integrity()
    store.close()
    header = BlockHeader.decode(
        raw_sql(store_path, "SELECT header FROM blocks WHERE height = 3")[0][0]
    )
    forged = dataclasses.replace(header, timestamp_ms=header.timestamp_ms + 1)
    # A consistent forgery of the row (header and its hash) still breaks the link to block 4
    # and the certificate.
    raw_sql(
        store_path,
        "UPDATE blocks SET header = ?, hash = ? WHERE height = 3",
        [forged.encode(), forged.hash()],
    )
    # The head is fine, so open succeeds; the full check finds block 3.
    with (
        Store.open(store_path, genesis) as reopened,
        pytest.raises(StoreError, match="block 3's commit certificate is for another block"),
    ):
        reopened.check_integrity()


def test_check_integrity_finds_a_tampered_middle_transaction(
    store: Store, store_path: Path, genesis: Genesis
) -> None:
    for _ in range(4):
        append_transfers(store, genesis, 3)
    store.close()
    stranger = transfer(USER_KEYS[5], 777)
    tx_hash = raw_sql(
        store_path, "SELECT hash FROM transactions WHERE height = 2 AND position = 1"
    )[0][0]
    raw_sql(store_path, "UPDATE transactions SET raw = ? WHERE hash = ?", [stranger.raw, tx_hash])
    with Store.open(store_path, genesis) as reopened:
        with pytest.raises(StoreError, match="block 2: transaction row 1 is damaged"):
            reopened.check_integrity()
        with pytest.raises(StoreError, match="stored with other bytes"):
            reopened.get_block(2)
