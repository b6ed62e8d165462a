"""The block store's SQLite layout, connection settings and precompiled SQL.

``ledger.chain.store`` owns the data; this module only says what the tables look like,
how a connection is set up (WAL, ``synchronous=FULL``, foreign keys, BEGIN on every
SQLAlchemy transaction), and the statements the hot path runs. Those are built with
SQLAlchemy Core once, at import, and compiled to SQLite's positional (``?``) SQL, so that
the store can hand plain tuples to the driver with ``exec_driver_sql``: SQLAlchemy's
per-row parameter processing costs more than SQLite's own work at thousands of rows per
block, and a point read through a Core ``select`` costs several times a driver-level one.

Never: execute SQL or hold a connection, keep mutable state beyond the memo of compiled
``IN`` lists, or change a table or the state key layout without bumping
:data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

#: Version of the table layout below (and of the state key layout in accounts.py).
#: 2: the authenticated state tree (``state_nodes``, meta ``genesis_state_root``).
#: 3: a checksum per flat state row (``state.checksum``), verified on every read.
#: 4: state snapshots at checkpoints (``snapshots``, ``snapshot_state``, ``snapshot_nodes``)
#:    and a store may start at a certified base block (meta ``base``) instead of genesis.
#:    A version-3 store is upgraded in place on open (the new tables start empty).
#: 5: state sync's staging area (``sync_state``, ``sync_nodes``, meta ``sync_target``).
SCHEMA_VERSION: Final = 5
#: Versions :func:`ledger.chain.store_snapshot.upgrade` brings up to SCHEMA_VERSION (each
#: only lacks tables, created empty).
UPGRADABLE_VERSIONS: Final = (3, 4)

#: SQLite's page cache per store, in KiB (its default is 2 MiB). A block's state and tree
#: writes land on random pages all over both tables; measured at 100k accounts, 64 MiB cuts
#: the CPU time of appending a 1000-transfer block by about a quarter.
PAGE_CACHE_KIB: Final = 65_536

#: Sizes the ``IN (...)`` node query is compiled for; a batch is padded up to the next one,
#: so SQLite's statement cache holds a dozen statements, not one per batch size.
IN_LIST_SIZES: Final = tuple(1 << i for i in range(13))  # 1 .. 4096

# ----------------------------------------------------------------------------- tables

metadata: Final = MetaData()

meta_table: Final = Table(
    "meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

blocks_table: Final = Table(
    "blocks",
    metadata,
    Column("height", Integer, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary, nullable=False, unique=True),
    Column("header", LargeBinary, nullable=False),
    Column("tx_count", Integer, nullable=False),
    Column("certificate", LargeBinary, nullable=False),
)

transactions_table: Final = Table(
    "transactions",
    metadata,
    Column("hash", LargeBinary, primary_key=True),
    Column("height", Integer, ForeignKey("blocks.height"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Index("ix_transactions_height_position", "height", "position", unique=True),
)

receipts_table: Final = Table(
    "receipts",
    metadata,
    Column("tx_hash", LargeBinary, primary_key=True),
    Column("height", Integer, ForeignKey("blocks.height"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    Index("ix_receipts_height_position", "height", "position", unique=True),
)

#: The flat state (key -> value) at the head: what execution and queries read.
state_table: Final = Table(
    "state",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    #: :func:`state_checksum` of key and value. Reads serve the flat table, not the tree,
    #: so without it a flipped bit in a value would be served (and executed on) silently.
    Column("checksum", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

#: The authenticated state tree at the head: node storage key -> node bytes
#: (``ledger.chain.state_tree_build`` says how keys are formed). Exactly the nodes
#: reachable from the head's state root; it commits to the same set as ``state``.
state_nodes_table: Final = Table(
    "state_nodes",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("node", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

#: The snapshots kept for state sync: one row per checkpoint height whose state is kept.
snapshots_table: Final = Table(
    "snapshots",
    metadata,
    Column("height", Integer, primary_key=True, autoincrement=False),
    Column("state_root", LargeBinary, nullable=False),
    Column("key_count", Integer, nullable=False),
)

#: The flat state of each kept snapshot, by tree path (``sha256(key)``): a chunk is a range.
snapshot_state_table: Final = Table(
    "snapshot_state",
    metadata,
    Column("height", Integer, primary_key=True, autoincrement=False),
    Column("path", LargeBinary, primary_key=True),
    Column("key", LargeBinary, nullable=False),
    Column("value", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

#: The top levels of each kept snapshot's state tree (what chunk proofs are made of).
snapshot_nodes_table: Final = Table(
    "snapshot_nodes",
    metadata,
    Column("height", Integer, primary_key=True, autoincrement=False),
    Column("key", LargeBinary, primary_key=True),
    Column("node", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

#: State sync's staging area: the verified chunks of the snapshot being synced, written as
#: they arrive (flat rows with their checksums, and the tree nodes each chunk proves). Read
#: by nothing but the install, which moves them into ``state`` and ``state_nodes`` in the
#: same transaction that replaces the chain: a half-written sync is never served.
sync_state_table: Final = Table(
    "sync_state",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    Column("checksum", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

sync_nodes_table: Final = Table(
    "sync_nodes",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("node", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

consensus_meta_table: Final = Table(
    "consensus_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

# ----------------------------------------------------------------------------- compiled SQL


def _compile(statement: Any, columns: Sequence[str]) -> str:
    """``statement`` as SQLite qmark SQL, checking its parameters come in ``columns`` order."""
    compiled = statement.compile(
        dialect=sqlite_dialect(paramstyle="qmark"), compile_kwargs={"render_postcompile": True}
    )
    order = tuple(compiled.positiontup or ())
    if order != tuple(columns):  # the tuples the store builds rely on this order
        raise AssertionError(f"{compiled}: parameters {order}, expected {tuple(columns)}")
    return str(compiled)


@dataclass(frozen=True, slots=True)
class BatchStatement:
    """A Core statement compiled once to SQLite's positional SQL, for executemany.

    ``columns`` is the order the parameter tuples must follow, taken from the compiler.
    """

    sql: str
    columns: tuple[str, ...]

    @classmethod
    def compile(cls, statement: Any, columns: Sequence[str]) -> BatchStatement:
        return cls(_compile(statement, columns), tuple(columns))


def state_checksum(key: bytes, value: bytes) -> bytes:
    """8 bytes of SHA-256 over a flat state row: catches damage at rest, not forgery (the
    state tree under the certified state root is what authenticates the state)."""
    return hashlib.sha256(len(key).to_bytes(2, "big") + key + value).digest()[:8]


def state_rows(items: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes, bytes]]:
    """``(key, value, checksum)`` rows for :data:`STATE_UPSERT`."""
    return [(k, v, state_checksum(k, v)) for k, v in items]


def _upsert(table: Table, columns: Sequence[str] = ("value",)) -> Any:
    insert = sqlite_insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.key], set_={c: insert.excluded[c] for c in columns}
    )


def _delete_by_key(table: Table) -> Any:
    return table.delete().where(table.c.key == bindparam("k"))


INSERT_BLOCK: Final = BatchStatement.compile(
    blocks_table.insert(), ("height", "hash", "header", "tx_count", "certificate")
)
INSERT_TX: Final = BatchStatement.compile(
    transactions_table.insert(), ("hash", "height", "position", "raw")
)
INSERT_RECEIPT: Final = BatchStatement.compile(
    receipts_table.insert(), ("tx_hash", "height", "position", "raw")
)
STATE_UPSERT: Final = BatchStatement.compile(
    _upsert(state_table, ("value", "checksum")), ("key", "value", "checksum")
)
STATE_DELETE: Final = BatchStatement.compile(_delete_by_key(state_table), ("k",))
# Nodes are content-addressed (a key names one byte string), so replacing is harmless.
NODE_PUT: Final = BatchStatement.compile(
    state_nodes_table.insert().prefix_with("OR REPLACE"), ("key", "node")
)
NODE_DELETE: Final = BatchStatement.compile(_delete_by_key(state_nodes_table), ("k",))
# Chunks share their top nodes (content-addressed: replacing is harmless).
SYNC_STATE_PUT: Final = BatchStatement.compile(
    sync_state_table.insert().prefix_with("OR REPLACE"), ("key", "value", "checksum")
)
SYNC_NODE_PUT: Final = BatchStatement.compile(
    sync_nodes_table.insert().prefix_with("OR REPLACE"), ("key", "node")
)
CONSENSUS_META_UPSERT: Final = BatchStatement.compile(
    _upsert(consensus_meta_table), ("key", "value")
)
CONSENSUS_META_DELETE: Final = BatchStatement.compile(_delete_by_key(consensus_meta_table), ("k",))

#: ``(key,) -> (value, checksum)``: one state read.
STATE_GET_SQL: Final = _compile(
    select(state_table.c.value, state_table.c.checksum).where(state_table.c.key == bindparam("k")),
    ("k",),
)
#: ``() -> (key, value, checksum)*``: the whole flat state (integrity check).
STATE_SCAN_SQL: Final = _compile(
    select(state_table.c.key, state_table.c.value, state_table.c.checksum), ()
)
#: ``(key,) -> node``: one node read.
NODE_GET_SQL: Final = _compile(
    select(state_nodes_table.c.node).where(state_nodes_table.c.key == bindparam("k")), ("k",)
)

_select_nodes_memo: dict[int, str] = {}


def select_nodes_sql(size: int) -> str:
    """``(key, ...) -> (key, node)*`` for exactly ``size`` keys, ``size`` in IN_LIST_SIZES."""
    sql = _select_nodes_memo.get(size)
    if sql is None:
        statement = select(state_nodes_table.c.key, state_nodes_table.c.node).where(
            state_nodes_table.c.key.in_([b""] * size)
        )
        sql = _compile(statement, tuple(f"key_1_{i}" for i in range(1, size + 1)))
        _select_nodes_memo[size] = sql
    return sql


def select_nodes_batches(
    node_keys: Sequence[bytes], chunk: int
) -> Iterator[tuple[str, tuple[bytes, ...]]]:
    """``(sql, parameters)`` selecting ``node_keys``: one statement per ``chunk`` keys.

    ``chunk`` comes from :func:`in_list_chunk`. Each batch is padded with a repeat of its
    first key up to a compiled size (``IN`` ignores duplicates).
    """
    for start in range(0, len(node_keys), chunk):
        part = tuple(node_keys[start : start + chunk])
        size = 1 << (len(part) - 1).bit_length()  # the next power of two
        if size > len(part):
            part += (part[0],) * (size - len(part))
        yield select_nodes_sql(size), part


def in_list_chunk(variable_limit: int) -> int:
    """The largest IN-list size usable under SQLite's bound-parameter limit."""
    return max(size for size in IN_LIST_SIZES if size <= max(1, variable_limit))


# ----------------------------------------------------------------------------- engine


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Take transaction control away from pysqlite (which would BEGIN only before DML and
    # never around reads); _on_begin below issues BEGIN for every SQLAlchemy transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Persistent in the file; the store checks that it took (it cannot on some
        # filesystems).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")  # negative: KiB, not pages
    finally:
        cursor.close()
    # Snapshots key the flat state by tree path; SQLite has no SHA-256 of its own.
    dbapi_connection.create_function(
        "quorum_sha256", 1, lambda data: hashlib.sha256(data).digest(), deterministic=True
    )


def _on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def make_engine(path: str) -> Engine:
    """An engine for one long-lived connection to the SQLite file at ``path``."""
    url = URL.create("sqlite", database=path)
    # One connection for the store's lifetime, closed by close(): NullPool keeps nothing
    # behind. check_same_thread is off because a trio driver may call us from worker
    # threads; the Store's lock serialises all use of the connection.
    engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def variable_limit(connection: Connection) -> int:
    """SQLite's bound-parameter limit on this connection."""
    dbapi = connection.connection.dbapi_connection
    if isinstance(dbapi, sqlite3.Connection):
        return dbapi.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return 999  # SQLite's historical default; never reached with pysqlite


def describe_db_error(exc: BaseException) -> str:
    """A sentence for people about a driver or SQLAlchemy error."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    if isinstance(orig, sqlite3.DatabaseError):
        lowered = text.lower()
        if "file is not a database" in lowered:
            return "the file is not an SQLite database (or is encrypted or corrupt)"
        if "malformed" in lowered or "corrupt" in lowered:
            return f"the SQLite file is damaged ({text}); restore it from a backup or resync"
    return text
