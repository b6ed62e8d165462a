"""The block store's snapshots (state sync's serving side) and its certified base block.

Theory of operation. At every checkpoint height the block store keeps a copy of the state
in the same SQLite transaction as the block (:func:`capture`): the flat state keyed by tree
path (``snapshot_state``, so a chunk of ``ledger.chain.snapshot`` is one range scan) and
the top :data:`~ledger.chain.snapshot.MAX_CHUNK_DEPTH` levels of the tree
(``snapshot_nodes``, what chunk proofs are made of). The last :data:`KEEP_SNAPSHOTS` are
kept. A syncing node installs a verified snapshot with :func:`install`: ONE transaction
replaces blocks, state and tree and records the snapshot's block as the store's *base*
(meta ``base``: its header and commit certificate), so a crash leaves either the old store
or the new one, never a mix. Above the base, blocks follow one another as usual.

The functions here run inside the caller's transaction and lock (``ledger.chain.store``).

Never: serve a chunk from anything but a captured snapshot, write part of an install, or
trust a base whose certificate does not verify against the genesis validators.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, delete, insert, select, update

from crypto.encoding import DecodeError, as_bytes, decode, encode_record, record_fields
from crypto.smt_proof import EMPTY_ROOT, HASH_SIZE, INTERNAL_HEADER_SIZE, INTERNAL_KIND
from ledger.chain.snapshot import (
    MAX_CHUNK_BYTES,
    MAX_CHUNK_DEPTH,
    MAX_CHUNK_ENTRIES,
    StateChunk,
    path_range,
    prove_chunk,
)
from ledger.chain.state_tree_nodes import TreeUpdate
from ledger.chain.store_check import Head, StoreError, StoreInfo
from ledger.chain.store_schema import (
    NODE_PUT,
    SCHEMA_VERSION,
    STATE_UPSERT,
    BatchStatement,
    blocks_table,
    meta_table,
    metadata,
    receipts_table,
    snapshot_nodes_table,
    snapshot_state_table,
    snapshots_table,
    state_nodes_table,
    state_rows,
    state_table,
    transactions_table,
)
from ledger.chain.types import BlockHeader, CommitCertificate, InvalidCertificate

#: Snapshots kept (the newest checkpoints'); older ones are deleted as new ones are taken.
KEEP_SNAPSHOTS: Final = 2
BASE_META_KEY: Final = "base"

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
    del version  # every upgradable version only lacks the snapshot tables


# ----------------------------------------------------------------------------- the base


def encode_base(header: BlockHeader, certificate: CommitCertificate) -> bytes:
    return encode_record("store-base", 1, [header.encode(), certificate.encode()])


def load_base(conn: Connection, info: StoreInfo) -> tuple[Head, CommitCertificate] | None:
    """The certified block this store starts after (None: the genesis), verified."""
    raw = conn.execute(select(meta_table.c.value).where(meta_table.c.key == BASE_META_KEY)).scalar()
    if raw is None:
        return None
    try:
        header_raw, cert_raw = record_fields(decode(bytes(raw)), "store-base", 1, 2)
        header = BlockHeader.decode(as_bytes(header_raw, "header"))
        certificate = CommitCertificate.decode(as_bytes(cert_raw, "certificate"))
        certificate.verify(
            info.chain_id, info.validators, height=header.height, block_hash=header.hash()
        )
    except (DecodeError, InvalidCertificate) as exc:
        info.corrupt(f"the base block (meta {BASE_META_KEY}) is not certified: {exc}")
    if header.chain_id != info.chain_id or header.height < info.initial_height:
        info.corrupt(f"the base block is block {header.height} of chain {header.chain_id!r}")
    return Head(header.height, header.hash(), header), certificate


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


def install(
    conn: Connection,
    header: BlockHeader,
    certificate: CommitCertificate,
    items: Sequence[tuple[bytes, bytes]],
    tree: TreeUpdate,
    executemany: Callable[[BatchStatement, list[tuple[Any, ...]]], None],
) -> None:
    """Replace blocks, state and tree with a verified snapshot at ``header`` (the caller's
    single transaction). Consensus records stay (the double-sign guard outlives state)."""
    if tree.new_root != header.state_root or tree.old_root != EMPTY_ROOT:
        raise StoreError("the snapshot's tree is not the header's state")
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
    executemany(STATE_UPSERT, list(state_rows(sorted(items))))
    executemany(NODE_PUT, sorted(tree.node_writes.items()))
    conn.execute(delete(meta_table).where(meta_table.c.key == BASE_META_KEY))
    conn.execute(
        insert(meta_table), {"key": BASE_META_KEY, "value": encode_base(header, certificate)}
    )
