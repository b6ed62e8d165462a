"""The block store's snapshots (state sync's serving side) and its certified base block.

Theory of operation. At every checkpoint height the block store keeps a copy of the state
in the same SQLite transaction as the block (:func:`capture`): the flat state keyed by tree
path (``snapshot_state``, so a chunk of ``ledger.chain.snapshot`` is one range scan) and
the top :data:`~ledger.chain.snapshot.MAX_CHUNK_DEPTH` levels of the tree
(``snapshot_nodes``, what chunk proofs are made of). The last :data:`KEEP_SNAPSHOTS` are
kept.

A syncing node stages the verified chunks of the snapshot it syncs to as they arrive
(:func:`begin_staging`, then the store's ``stage_chunks``: flat rows and the tree nodes
each chunk proves, in tables nothing else reads), so it never holds the whole state in
memory; :func:`install_staged` then moves them into place in ONE transaction that
replaces blocks, state and tree and records the snapshot's block as the store's *base*
(meta ``base``: its header and commit certificate) with the chain of validator sets up to
it (epoch links). A crash leaves the old store (plus a staging area the next sync empties)
or the new one, never a mix. Above the base, blocks follow one another as usual.

The functions here run inside the caller's transaction and lock (``ledger.chain.store``).

Never: serve a chunk from anything but a captured snapshot, write part of an install,
install a staging area filled for another snapshot, or trust a base whose certificate
does not verify with the set the chain of sets names for its height.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from consensus.config import epoch_chain_id
from crypto.encoding import DecodeError, as_bytes, as_int, decode, encode_record, record_fields
from crypto.smt_proof import (
    EMPTY_ROOT,
    HASH_SIZE,
    INTERNAL_HEADER_SIZE,
    INTERNAL_KIND,
    node_hash,
)
from ledger.chain.epoch_links import (
    LINK_PREFIX,
    ChainOfSetsError,
    follow,
    set_for_height,
    stored_links,
)
from ledger.chain.snapshot import (
    MAX_CHUNK_BYTES,
    MAX_CHUNK_DEPTH,
    MAX_CHUNK_ENTRIES,
    StateChunk,
    path_range,
    prove_chunk,
)
from ledger.chain.store_check import Head, StoreError, StoreInfo
from ledger.chain.store_schema import (
    SCHEMA_VERSION,
    blocks_table,
    consensus_meta_table,
    meta_table,
    metadata,
    receipts_table,
    snapshot_nodes_table,
    snapshot_state_table,
    snapshots_table,
    state_nodes_table,
    state_table,
    sync_nodes_table,
    sync_state_table,
    transactions_table,
)
from ledger.chain.types import BlockHeader, CommitCertificate, InvalidCertificate
from ledger.chain.validators import ValidatorSet

#: Snapshots kept (the newest checkpoints'); older ones are deleted as new ones are taken.
KEEP_SNAPSHOTS: Final = 2
BASE_META_KEY: Final = "base"
#: meta key naming the snapshot whose chunks are being staged (``["sync-target", 1, height,
#: state_root]``); the install checks it names the snapshot it installs.
SYNC_TARGET_KEY: Final = "sync_target"

_H: Final = HASH_SIZE


class ChunkTooLarge(Exception):
    """The subtree under a prefix holds more than a chunk may: ask for its children."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    height: int
    state_root: bytes
    key_count: int


def upgrade(conn: Connection, version: int) -> None:
    """Bring a store of an older schema version up to date (new tables start empty)."""
    metadata.create_all(conn, checkfirst=True)
    conn.execute(
        update(meta_table)
        .where(meta_table.c.key == "schema_version")
        .values(value=str(SCHEMA_VERSION).encode())
    )
    del version  # every upgradable version only lacks tables (snapshots, staging)


# ----------------------------------------------------------------------------- the base


def encode_base(header: BlockHeader, certificate: CommitCertificate) -> bytes:
    return encode_record("store-base", 1, [header.encode(), certificate.encode()])


def load_base(
    conn: Connection, info: StoreInfo, genesis_set: ValidatorSet
) -> tuple[Head, CommitCertificate] | None:
    """The certified block this store starts after (None: the genesis), verified with the
    set certifying its height: the genesis set, or one learnt by following the chain of
    sets (the epoch links installed with it, ledger/chain/epoch_links.py)."""
    raw = conn.execute(select(meta_table.c.value).where(meta_table.c.key == BASE_META_KEY)).scalar()
    if raw is None:
        return None
    try:
        header_raw, cert_raw = record_fields(decode(bytes(raw)), "store-base", 1, 2)
        header = BlockHeader.decode(as_bytes(header_raw, "header"))
        certificate = CommitCertificate.decode(as_bytes(cert_raw, "certificate"))
        certifying = set_for_height(stored_sets(conn, info, genesis_set), header.height)
        certificate.verify(
            epoch_chain_id(info.chain_id, certifying.epoch),
            certifying.public_keys,
            height=header.height,
            block_hash=header.hash(),
        )
    except (DecodeError, InvalidCertificate) as exc:
        info.corrupt(f"the base block (meta {BASE_META_KEY}) is not certified: {exc}")
    if header.chain_id != info.chain_id or header.height < info.initial_height:
        info.corrupt(f"the base block is block {header.height} of chain {header.chain_id!r}")
    return Head(header.height, header.hash(), header), certificate


def stored_sets(conn: Connection, info: StoreInfo, genesis_set: ValidatorSet) -> list[ValidatorSet]:
    """The validator sets from the genesis one, following the epoch links the store holds."""
    table = consensus_meta_table
    rows = conn.execute(
        select(table.c.key, table.c.value).where(
            table.c.key >= LINK_PREFIX, table.c.key < LINK_PREFIX + "\uffff"
        )
    ).all()
    try:
        return follow(info.chain_id, genesis_set, stored_links([(k, bytes(v)) for k, v in rows]))
    except (DecodeError, ChainOfSetsError) as exc:
        info.corrupt(f"the chain of validator sets it holds does not verify: {exc}")


# ----------------------------------------------------------------------------- capturing


def top_nodes(
    root: bytes, get_nodes: Callable[[Collection[bytes]], Mapping[bytes, bytes]]
) -> dict[bytes, bytes]:
    """The nodes of the tree at ``root`` above depth MAX_CHUNK_DEPTH, by storage key."""
    found: dict[bytes, bytes] = {}
    if root == EMPTY_ROOT:
        return found
    wanted = [root]
    for _depth in range(MAX_CHUNK_DEPTH):
        if not wanted:
            break
        nodes = get_nodes(wanted)
        following = []
        for key in wanted:
            node = nodes.get(key)
            if node is None:
                raise StoreError(f"state node {key.hex()} is missing while taking a snapshot")
            found[key] = node
            if node[0] != INTERNAL_KIND:
                continue
            position = key[:-_H]
            bitmap = (node[1] << 8) | node[2]
            offset = INTERNAL_HEADER_SIZE
            for nib in range(16):
                if bitmap & (1 << nib):
                    following.append(position + bytes((nib,)) + node[offset : offset + _H])
                    offset += _H
        wanted = following
    return found


def capture(
    conn: Connection,
    height: int,
    state_root: bytes,
    get_nodes: Callable[[Collection[bytes]], Mapping[bytes, bytes]],
) -> None:
    """Keep the state at ``height`` (the head, inside its block's transaction)."""
    conn.execute(delete(snapshot_state_table).where(snapshot_state_table.c.height == height))
    conn.execute(delete(snapshot_nodes_table).where(snapshot_nodes_table.c.height == height))
    conn.execute(delete(snapshots_table).where(snapshots_table.c.height == height))
    result = conn.exec_driver_sql(
        "INSERT INTO snapshot_state (height, path, key, value) "
        "SELECT ?, quorum_sha256(key), key, value FROM state",
        (height,),
    )
    nodes = top_nodes(state_root, get_nodes)
    if nodes:
        conn.execute(
            insert(snapshot_nodes_table),
            [{"height": height, "key": k, "node": v} for k, v in sorted(nodes.items())],
        )
    conn.execute(
        insert(snapshots_table),
        {"height": height, "state_root": state_root, "key_count": result.rowcount},
    )
    kept = conn.execute(
        select(snapshots_table.c.height)
        .order_by(snapshots_table.c.height.desc())
        .limit(KEEP_SNAPSHOTS)
    ).scalars()
    oldest = min(kept)
    for table in (snapshot_state_table, snapshot_nodes_table, snapshots_table):
        conn.execute(delete(table).where(table.c.height < oldest))


def snapshot_infos(conn: Connection) -> list[SnapshotInfo]:
    """The kept snapshots, newest first."""
    rows = conn.execute(
        select(
            snapshots_table.c.height, snapshots_table.c.state_root, snapshots_table.c.key_count
        ).order_by(snapshots_table.c.height.desc())
    ).all()
    return [SnapshotInfo(int(h), bytes(r), int(c)) for h, r, c in rows]


def read_chunk(conn: Connection, height: int, prefix: bytes) -> StateChunk | None:
    """The chunk of snapshot ``height`` under ``prefix``; None if that snapshot is not kept.

    Raises :class:`ChunkTooLarge` past MAX_CHUNK_ENTRIES entries or MAX_CHUNK_BYTES.
    """
    root = conn.execute(
        select(snapshots_table.c.state_root).where(snapshots_table.c.height == height)
    ).scalar()
    if root is None:
        return None
    low, high = path_range(prefix)
    table = snapshot_state_table
    query = select(table.c.key, table.c.value).where(table.c.height == height, table.c.path >= low)
    if high is not None:
        query = query.where(table.c.path < high)
    entries: list[tuple[bytes, bytes]] = []
    size = 0
    for key, value in conn.execute(query.order_by(table.c.path).limit(MAX_CHUNK_ENTRIES + 1)):
        size += len(key) + len(value) + 8
        if len(entries) >= MAX_CHUNK_ENTRIES or size > MAX_CHUNK_BYTES:
            raise ChunkTooLarge(f"prefix {prefix.hex()} of snapshot {height}")
        entries.append((bytes(key), bytes(value)))

    def get_node(key: bytes) -> bytes | None:
        node = conn.execute(
            select(snapshot_nodes_table.c.node).where(
                snapshot_nodes_table.c.height == height, snapshot_nodes_table.c.key == key
            )
        ).scalar()
        return None if node is None else bytes(node)

    ancestors, terminal = prove_chunk(bytes(root), get_node, prefix)
    return StateChunk(height, prefix, ancestors, terminal, tuple(entries))


# ----------------------------------------------------------------------------- installing


def begin_staging(conn: Connection, height: int, state_root: bytes) -> None:
    """Empty the staging area for a sync to the snapshot at ``height`` (``state_root``)."""
    conn.execute(delete(sync_state_table))
    conn.execute(delete(sync_nodes_table))
    conn.execute(delete(meta_table).where(meta_table.c.key == SYNC_TARGET_KEY))
    conn.execute(
        insert(meta_table),
        {"key": SYNC_TARGET_KEY, "value": encode_record("sync-target", 1, [height, state_root])},
    )


def staged_target(conn: Connection) -> tuple[int, bytes] | None:
    """(height, state root) of the snapshot being staged, or None."""
    raw = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == SYNC_TARGET_KEY)
    ).scalar()
    if raw is None:
        return None
    try:
        height, root = record_fields(decode(bytes(raw)), "sync-target", 1, 2)
        return as_int(height, "height"), as_bytes(root, "state_root", size=_H)
    except DecodeError:
        return None


def install_staged(
    conn: Connection,
    header: BlockHeader,
    certificate: CommitCertificate,
    links: Sequence[tuple[str, bytes]],
    staged_keys: int,
) -> None:
    """Replace blocks, state and tree with the staged snapshot at ``header`` (the caller's
    single transaction; the caller verified the certificate and every chunk it staged, and
    ``links``, the epoch links up to ``header``). Consensus records stay (the double-sign
    guard outlives state); the staging area is emptied."""
    if staged_target(conn) != (header.height, header.state_root):
        raise StoreError(f"the staged state is not the state of block {header.height}")
    root = header.state_root
    rows = conn.execute(select(func.count()).select_from(sync_state_table)).scalar_one()
    top = conn.execute(select(sync_nodes_table.c.node).where(sync_nodes_table.c.key == root))
    node = top.scalar()
    if rows != staged_keys or (root != EMPTY_ROOT and (node is None or node_hash(node) != root)):
        raise StoreError(
            f"the staged state of block {header.height} is incomplete ({rows} of "
            f"{staged_keys} keys, root node {'present' if node else 'missing'})"
        )
    for table in (
        receipts_table,
        transactions_table,
        blocks_table,
        state_table,
        state_nodes_table,
        snapshot_state_table,
        snapshot_nodes_table,
        snapshots_table,
    ):
        conn.execute(delete(table))
    conn.exec_driver_sql(
        "INSERT INTO state (key, value, checksum) SELECT key, value, checksum FROM sync_state"
    )
    conn.exec_driver_sql("INSERT INTO state_nodes (key, node) SELECT key, node FROM sync_nodes")
    conn.execute(delete(sync_state_table))
    conn.execute(delete(sync_nodes_table))
    conn.execute(delete(meta_table).where(meta_table.c.key.in_([BASE_META_KEY, SYNC_TARGET_KEY])))
    conn.execute(
        insert(meta_table), {"key": BASE_META_KEY, "value": encode_base(header, certificate)}
    )
    if links:
        conn.execute(
            sqlite_insert(consensus_meta_table)
            .values([{"key": k, "value": v} for k, v in links])
            .on_conflict_do_nothing()
        )
