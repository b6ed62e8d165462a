"""Snapshots in the block store: kept at checkpoints, served as chunks that verify against
the certified header, installed in one transaction as the base of a new store."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from genesis.document import Genesis
from ledger.chain.snapshot import all_prefixes, verify_chunk
from ledger.chain.store import SCHEMA_VERSION, Store, StoreError, genesis_tree
from ledger.chain.store_snapshot import KEEP_SNAPSHOTS
from tests.test_store import append_transfers, make_genesis, raw_sql, transfer_changes, tree_update

INTERVAL = 4


@pytest.fixture
def genesis() -> Genesis:
    base = make_genesis()
    return replace(
        base, consensus=replace(base.consensus, checkpoint_interval=INTERVAL, watermark_window=8)
    )


def _chunks_items(store: Store, height: int) -> list[tuple[bytes, bytes]]:
    header = store.get_header(height)
    assert header is not None
    items: list[tuple[bytes, bytes]] = []
    for prefix in all_prefixes(1):
        chunk = store.read_chunk(height, prefix)
        assert chunk is not None
        verify_chunk(header.state_root, chunk)
        items.extend(chunk.entries)
    return items


def test_snapshots_are_kept_at_checkpoints_and_install_as_a_base(
    store: Store, genesis: Genesis, tmp_path: Path
) -> None:
    for _ in range(3 * INTERVAL + 1):
        append_transfers(store, genesis, 5)
    kept = store.snapshots()
    assert [s.height for s in kept] == [3 * INTERVAL, 2 * INTERVAL][:KEEP_SNAPSHOTS]
    assert store.read_chunk(INTERVAL, b"\x00") is None  # dropped
    height = kept[0].height
    items = _chunks_items(store, height)
    assert len(items) == kept[0].key_count
    header, certificate = store.get_header(height), store.get_certificate(height)
    assert header is not None and certificate is not None
    tree = genesis_tree(dict(items))
    assert tree.new_root == header.state_root

    path = tmp_path / "synced.db"
    with Store.open(path, genesis) as synced:
        synced.install_snapshot(header, certificate, items, tree)
        assert (synced.head_height, synced.head_hash) == (height, header.hash())
        assert synced.base_height == height
        assert synced.get_certificate(height) == certificate
        assert [s.height for s in synced.snapshots()] == [height]
    with Store.open(path, genesis) as synced:  # reopened: the base holds
        assert synced.state_root == header.state_root
        block = store.get_block(height + 1)
        assert block is not None
        changes = transfer_changes(block.transactions, height + 1)
        synced.append_block(
            block,
            store.get_certificate(height + 1),  # type: ignore[arg-type]
            store.get_block_receipts(height + 1),
            changes,
            tree_update=tree_update(synced, changes),
        )
        assert synced.state_root == store.state_root
        synced.check_integrity()
        assert synced.get_block(height) is None  # history below the base lives elsewhere


def test_a_forged_base_is_refused_on_open(store: Store, genesis: Genesis, tmp_path: Path) -> None:
    for _ in range(INTERVAL):
        append_transfers(store, genesis, 2)
    header, certificate = store.get_header(INTERVAL), store.get_certificate(INTERVAL)
    assert header is not None and certificate is not None
    items = _chunks_items(store, INTERVAL)
    path = tmp_path / "synced.db"
    with Store.open(path, genesis) as synced:
        synced.install_snapshot(header, certificate, items, genesis_tree(dict(items)))
    forged = replace(certificate, votes=certificate.votes[:1])
    from ledger.chain.store_snapshot import encode_base

    raw_sql(path, "UPDATE meta SET value = ? WHERE key = 'base'", (encode_base(header, forged),))
    with pytest.raises(StoreError, match="not certified"):
        Store.open(path, genesis)


def test_staging_for_another_snapshot_or_incomplete_is_not_installed(
    store: Store, genesis: Genesis, tmp_path: Path
) -> None:
    """The install takes the staging area only whole and only for the snapshot it names;
    a refused install changes nothing."""
    for _ in range(2 * INTERVAL):
        append_transfers(store, genesis, 3)
    header, certificate = store.get_header(INTERVAL), store.get_certificate(INTERVAL)
    assert header is not None and certificate is not None
    items = _chunks_items(store, INTERVAL)
    tree = genesis_tree(dict(items))
    with Store.open(tmp_path / "synced.db", genesis) as synced:
        synced.begin_staging(header.height, header.state_root)
        synced.stage_chunks([(items[1:], tree.node_writes)])  # a key short
        with pytest.raises(StoreError, match="incomplete"):
            synced.install_staged(header, certificate, (), len(items))
        synced.begin_staging(header.height + 1, header.state_root)  # another snapshot
        synced.stage_chunks([(items, tree.node_writes)])
        with pytest.raises(StoreError, match="not the state of block"):
            synced.install_staged(header, certificate, (), len(items))
        assert synced.head_height == 0 and synced.base_height is None
        synced.check_integrity()


def test_a_version_4_store_is_upgraded_with_an_empty_staging_area(
    store: Store, genesis: Genesis, tmp_path: Path
) -> None:
    append_transfers(store, genesis, 2)
    path = Path(store.path)
    store.close()
    raw_sql(path, "DROP TABLE sync_state")
    raw_sql(path, "DROP TABLE sync_nodes")
    raw_sql(path, "UPDATE meta SET value = ? WHERE key = 'schema_version'", (b"4",))
    with Store.open(path, genesis) as upgraded:
        assert upgraded.head_height == 1
        upgraded.begin_staging(5, bytes(32))  # the staging tables exist again
    assert raw_sql(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION).encode(),)
    ]
