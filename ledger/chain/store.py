"""The node's durable record: blocks, commit certificates, transactions, receipts, state.

Theory of operation. One SQLite file in WAL mode with ``synchronous=FULL``, reached
through SQLAlchemy Core on a single connection. Each committed block is written by
:meth:`Store.append_block` in ONE SQLite transaction (block row and certificate, its
transactions, its receipts, the state delta, optional consensus metadata), so after any
crash — kill -9 included — a block is either wholly present or wholly absent, and a block
whose ``append_block`` returned is on disk. The head (height, hash) is cached in memory and
only moves after a commit succeeds.

:meth:`Store.open` creates a store (schema, meta and genesis state in one transaction) or
checks an existing one against the genesis it is given: schema version, chain id, genesis
hash, and the soundness of the head of the hash chain. :meth:`Store.check_integrity` checks
everything (SQLite's own integrity check, every header, link and certificate).

House rules: never use the ORM or log per row on the hot path; never write part of a
block; never re-verify commit certificate signatures on append (the caller has); never
let a raw sqlite3 or SQLAlchemy traceback escape for a bad file — every failure that is
about the data on disk is a :class:`StoreError` naming the path. Calls from several
threads are serialised by one lock; open one Store per file (a second writer's cached head
would go stale, and its appends would be refused).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, Self, TypeVar

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
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool

from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.merkle import merkle_root
from ledger.chain.accounts import EMPTY_ACCOUNT, Account, account_key, genesis_state
from ledger.chain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    InvalidCertificate,
    Receipt,
    Transaction,
)

if TYPE_CHECKING:
    from genesis.document import Genesis

#: Version of the table layout below (and of the state key layout in accounts.py).
SCHEMA_VERSION: Final = 1

#: How many hex digits of a hash go into messages for people.
_SHORT_HEX: Final = 16

StorePath = str | os.PathLike[str]
_T = TypeVar("_T")


class StoreError(Exception):
    """The store cannot be opened, is inconsistent, or refuses a write. Message is for people."""


# ----------------------------------------------------------------------------- schema

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

state_table: Final = Table(
    "state",
    metadata,
    Column("key", LargeBinary, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

consensus_meta_table: Final = Table(
    "consensus_meta",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)


@dataclass(frozen=True, slots=True)
class _BatchStatement:
    """A Core statement compiled once to SQLite's positional SQL, for executemany.

    The hot path hands tuples straight to the driver (``exec_driver_sql``): SQLAlchemy's
    per-row parameter processing costs more than SQLite's own insert at thousands of rows
    per block. ``columns`` is the order the tuples must follow, taken from the compiler.
    """

    sql: str
    columns: tuple[str, ...]

    @classmethod
    def compile(cls, statement: Any, columns: Sequence[str]) -> _BatchStatement:
        compiled = statement.compile(dialect=sqlite_dialect(paramstyle="qmark"))
        order = tuple(compiled.positiontup or ())
        if order != tuple(columns):  # the tuples built below rely on this order
            raise AssertionError(f"{compiled}: parameters {order}, expected {tuple(columns)}")
        return cls(str(compiled), order)


def _upsert(table: Table) -> Any:
    insert = sqlite_insert(table)
    return insert.on_conflict_do_update(
        index_elements=[table.c.key], set_={"value": insert.excluded.value}
    )


def _delete_by_key(table: Table) -> Any:
    return table.delete().where(table.c.key == bindparam("k"))


_INSERT_TX: Final = _BatchStatement.compile(
    transactions_table.insert(), ("hash", "height", "position", "raw")
)
_INSERT_RECEIPT: Final = _BatchStatement.compile(
    receipts_table.insert(), ("tx_hash", "height", "position", "raw")
)
_STATE_UPSERT: Final = _BatchStatement.compile(_upsert(state_table), ("key", "value"))
_STATE_DELETE: Final = _BatchStatement.compile(_delete_by_key(state_table), ("k",))
_CONSENSUS_META_UPSERT: Final = _BatchStatement.compile(
    _upsert(consensus_meta_table), ("key", "value")
)
_CONSENSUS_META_DELETE: Final = _BatchStatement.compile(
    _delete_by_key(consensus_meta_table), ("k",)
)


# ----------------------------------------------------------------------------- engine


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Take transaction control away from pysqlite (which would BEGIN only before DML and
    # never around reads); _on_begin below issues BEGIN for every SQLAlchemy transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # Persistent in the file; open() checks that it took (it cannot on some filesystems).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _on_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")


def _make_engine(path: str) -> Engine:
    url = URL.create("sqlite", database=path)
    # One connection for the store's lifetime, closed by close(): NullPool keeps nothing
    # behind. check_same_thread is off because a trio driver may call us from worker
    # threads; the Store's lock serialises all use of the connection.
    engine = create_engine(url, poolclass=NullPool, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


def _describe_db_error(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip() or type(orig).__name__
    if isinstance(orig, sqlite3.DatabaseError):
        lowered = text.lower()
        if "file is not a database" in lowered:
            return "the file is not an SQLite database (or is encrypted or corrupt)"
        if "malformed" in lowered or "corrupt" in lowered:
            return f"the SQLite file is damaged ({text}); restore it from a backup or resync"
    return text


def _short(digest: bytes) -> str:
    return digest.hex()[:_SHORT_HEX] + ".."


# ----------------------------------------------------------------------------- the store


class Store:
    """A ledger's SQLite store. Open with :meth:`Store.open`; use as a context manager."""

    def __init__(
        self,
        *,
        path: str,
        engine: Engine,
        connection: Connection,
        chain_id: str,
        genesis_hash: bytes,
        initial_height: int,
        validators: tuple[bytes, ...],
    ) -> None:
        self._path = path
        self._engine = engine
        self._conn = connection
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._initial_height = initial_height
        self._validators = validators
        self._lock = threading.RLock()
        self._closed = False
        self._head_height = initial_height - 1
        self._head_hash = genesis_hash

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(cls, path: StorePath, genesis: Genesis) -> Store:
        """Open the store at ``path`` for ``genesis``, creating it when the file is new/empty.

        Raises :class:`StoreError` when the file is not a store of this chain, has an
        unknown schema version, is not SQLite, is damaged, or its head is unsound.
        """
        where = os.fspath(path)
        chain_id = genesis.chain_id
        genesis_hash = genesis.hash()
        initial_height = genesis.initial_height
        validators = tuple(v.public_key for v in genesis.validators)
        engine = _make_engine(where)
        try:
            connection = engine.connect()
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            engine.dispose()
            raise StoreError(f"cannot open store at {where}: {_describe_db_error(exc)}") from None
        store = cls(
            path=where,
            engine=engine,
            connection=connection,
            chain_id=chain_id,
            genesis_hash=genesis_hash,
            initial_height=initial_height,
            validators=validators,
        )
        try:
            with store._db_errors("open"), connection.begin():
                store._check_journal_mode()
                tables = set(
                    connection.exec_driver_sql(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    ).scalars()
                )
                if "meta" not in tables:
                    if tables:
                        raise StoreError(
                            f"{where} is an SQLite database but not a ledger store "
                            f"(it has tables {', '.join(sorted(tables))} and no meta table)"
                        )
                    store._create(genesis)
                else:
                    store._check_meta()
                    store._load_head()
                    store._check_head()
        except BaseException:
            store.close()
            raise
        return store

    def _check_journal_mode(self) -> None:
        row = self._conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        if str(row).lower() not in ("wal", "memory"):
            raise StoreError(
                f"store at {self._path}: SQLite refused WAL mode (journal_mode is {row}); "
                "is the file on a network filesystem?"
            )

    def _create(self, genesis: Genesis) -> None:
        conn = self._conn
        metadata.create_all(conn)
        conn.execute(
            meta_table.insert(),
            [
                {"key": "schema_version", "value": str(SCHEMA_VERSION).encode()},
                {"key": "chain_id", "value": self._chain_id.encode()},
                {"key": "genesis_hash", "value": self._genesis_hash},
                {"key": "initial_height", "value": str(self._initial_height).encode()},
            ],
        )
        try:
            initial = genesis_state(genesis)
        except ValueError as exc:
            raise StoreError(f"cannot create store at {self._path}: {exc}") from None
        if initial:
            conn.execute(
                state_table.insert(), [{"key": k, "value": v} for k, v in sorted(initial.items())]
            )

    def _check_meta(self) -> None:
        rows = dict(self._conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
        version_raw = rows.get("schema_version")
        if version_raw is None or not version_raw.isdigit():
            raise StoreError(f"store at {self._path} has no readable schema version")
        version = int(version_raw)
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"store at {self._path} has store schema version {version}, "
                f"this build reads {SCHEMA_VERSION}"
            )
        chain_raw = rows.get("chain_id", b"")
        genesis_hash = rows.get("genesis_hash", b"")
        initial_raw = rows.get("initial_height", b"")
        try:
            chain_id = chain_raw.decode("utf-8")
        except UnicodeDecodeError:
            chain_id = repr(chain_raw)
        if chain_id != self._chain_id or genesis_hash != self._genesis_hash:
            raise StoreError(
                f"store at {self._path} belongs to chain {chain_id!r} "
                f"(genesis {_short(genesis_hash)}), not {self._chain_id!r} "
                f"(genesis {_short(self._genesis_hash)})"
            )
        if initial_raw != str(self._initial_height).encode():
            self._corrupt(f"meta initial_height {initial_raw!r} disagrees with the genesis")

    def _load_head(self) -> None:
        row = self._conn.execute(
            select(blocks_table.c.height, blocks_table.c.hash)
            .order_by(blocks_table.c.height.desc())
            .limit(1)
        ).first()
        if row is None:
            self._head_height = self._initial_height - 1
            self._head_hash = self._genesis_hash
        else:
            self._head_height = int(row[0])
            self._head_hash = bytes(row[1])

    def _check_head(self) -> None:
        """Cheap checks run on every open: the head block is whole and certified."""
        head = self._head_height
        if head < self._initial_height:
            if self._count_above(self._initial_height - 1):
                self._corrupt("transactions or receipts exist but no blocks do")
            return
        count = self._conn.execute(select(func.count()).select_from(blocks_table)).scalar_one()
        lowest = self._conn.execute(select(func.min(blocks_table.c.height))).scalar_one()
        if lowest != self._initial_height or count != head - self._initial_height + 1:
            self._corrupt(
                f"it holds {count} blocks from height {lowest} to {head}; expected every "
                f"height from {self._initial_height}"
            )
        if head > self._initial_height:
            prev_hash = self._conn.execute(
                select(blocks_table.c.hash).where(blocks_table.c.height == head - 1)
            ).scalar_one()
        else:
            prev_hash = self._genesis_hash
        self._check_block(head, prev_hash, verify_certificate=True)
        if self._count_above(head):
            self._corrupt(f"transactions or receipts exist above the head block {head}")

    def _count_above(self, height: int) -> int:
        total = 0
        for table in (transactions_table, receipts_table):
            total += self._conn.execute(
                select(func.count()).select_from(table).where(table.c.height > height)
            ).scalar_one()
        return total

    def _check_block(self, height: int, prev_hash: bytes, *, verify_certificate: bool) -> bytes:
        """Check one stored block against its predecessor's hash; return its hash."""
        row = self._conn.execute(
            select(
                blocks_table.c.hash,
                blocks_table.c.header,
                blocks_table.c.tx_count,
                blocks_table.c.certificate,
            ).where(blocks_table.c.height == height)
        ).first()
        if row is None:
            self._corrupt(f"block {height} is missing")
        stored_hash, header_raw, tx_count, cert_raw = row
        try:
            header = BlockHeader.decode(header_raw)
        except DecodeError as exc:
            self._corrupt(f"block {height}'s header does not decode: {exc}")
        block_hash = header.hash()
        if block_hash != stored_hash:
            self._corrupt(
                f"block {height}'s header hashes to {_short(block_hash)}, "
                f"stored as {_short(stored_hash)}"
            )
        if header.height != height or header.chain_id != self._chain_id:
            self._corrupt(
                f"block {height}'s header names height {header.height} of chain {header.chain_id!r}"
            )
        if header.prev_hash != prev_hash:
            self._corrupt(
                f"block {height}'s prev_hash {_short(header.prev_hash)} does not match the "
                f"hash {_short(prev_hash)} of the block before it"
            )
        if header.tx_count != tx_count:
            self._corrupt(
                f"block {height}: header says {header.tx_count} transactions, row says {tx_count}"
            )
        try:
            certificate = CommitCertificate.decode(cert_raw)
        except DecodeError as exc:
            self._corrupt(f"block {height}'s commit certificate does not decode: {exc}")
        if certificate.height != height or certificate.block_hash != block_hash:
            self._corrupt(f"block {height}'s commit certificate is for another block")
        if verify_certificate:
            try:
                certificate.verify(self._chain_id, self._validators)
            except InvalidCertificate as exc:
                self._corrupt(f"block {height}'s commit certificate does not verify: {exc}")
        tx_rows = self._conn.execute(
            select(
                transactions_table.c.hash, transactions_table.c.position, transactions_table.c.raw
            )
            .where(transactions_table.c.height == height)
            .order_by(transactions_table.c.position)
        ).all()
        receipt_rows = self._conn.execute(
            select(receipts_table.c.tx_hash, receipts_table.c.position, receipts_table.c.raw)
            .where(receipts_table.c.height == height)
            .order_by(receipts_table.c.position)
        ).all()
        if len(tx_rows) != tx_count or len(receipt_rows) != tx_count:
            self._corrupt(
                f"block {height} has {tx_count} transactions but {len(tx_rows)} transaction "
                f"rows and {len(receipt_rows)} receipt rows"
            )
        tx_hashes = []
        for i, (tx_hash, position, raw) in enumerate(tx_rows):
            if position != i or sha256(raw) != tx_hash:
                self._corrupt(f"block {height}: transaction row {i} is damaged")
            tx_hashes.append(tx_hash)
        if merkle_root(tx_hashes) != header.tx_root:
            self._corrupt(f"block {height}'s transactions do not match its tx_root")
        for i, (tx_hash, position, _raw) in enumerate(receipt_rows):
            if position != i or tx_hash != tx_hashes[i]:
                self._corrupt(f"block {height}: receipt row {i} is damaged")
        if merkle_root([r[2] for r in receipt_rows]) != header.receipts_root:
            self._corrupt(f"block {height}'s receipts do not match its receipts_root")
        return block_hash

    def check_integrity(self) -> None:
        """Full check: SQLite's integrity_check, then every block, link and certificate.

        Reads the whole store (slow on big stores); raises :class:`StoreError` at the
        first problem.
        """
        with self._lock, self._db_errors("check"):
            self._check_open()
            with self._conn.begin():
                problems = self._conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
                if problems != ["ok"]:
                    self._corrupt("SQLite integrity check: " + "; ".join(map(str, problems[:5])))
                fk_problems = self._conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if fk_problems:
                    self._corrupt(f"{len(fk_problems)} rows refer to blocks that do not exist")
                self._load_head()
                self._check_head()
                prev_hash = self._genesis_hash
                for height in range(self._initial_height, self._head_height + 1):
                    prev_hash = self._check_block(height, prev_hash, verify_certificate=True)

    def close(self) -> None:
        """Close the connection and dispose of the engine. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.close()
            finally:
                self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ properties

    @property
    def path(self) -> str:
        return self._path

    @property
    def chain_id(self) -> str:
        return self._chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    @property
    def initial_height(self) -> int:
        return self._initial_height

    @property
    def head_height(self) -> int:
        """Height of the last committed block; ``initial_height - 1`` before the first."""
        return self._head_height

    @property
    def head_hash(self) -> bytes:
        """Hash of the last committed block; the genesis hash before the first."""
        return self._head_hash

    # ------------------------------------------------------------------ writes

    def append_block(
        self,
        block: Block,
        certificate: CommitCertificate,
        receipts: Sequence[Receipt],
        state_changes: Mapping[bytes, bytes | None],
        *,
        consensus_meta: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """Durably commit the next block in ONE SQLite transaction, or write nothing.

        ``state_changes`` maps state keys to new values (``None`` deletes). The optional
        ``consensus_meta`` is written in the same transaction. The certificate's
        signatures are NOT verified here (the caller has); that it names this block is.
        Raises :class:`StoreError` when the block does not extend the head.
        """
        header = block.header
        height = header.height
        txs = block.transactions
        with self._lock:
            self._check_open()
            if height != self._head_height + 1:
                raise StoreError(
                    f"cannot append block {height}: the next height is {self._head_height + 1}"
                )
            if header.chain_id != self._chain_id:
                raise StoreError(
                    f"cannot append block {height}: it is for chain {header.chain_id!r}, "
                    f"this store holds {self._chain_id!r}"
                )
            if header.prev_hash != self._head_hash:
                raise StoreError(
                    f"cannot append block {height}: its prev_hash {_short(header.prev_hash)} "
                    f"is not the head hash {_short(self._head_hash)}"
                )
            if header.tx_count != len(txs):
                raise StoreError(
                    f"cannot append block {height}: header says {header.tx_count} "
                    f"transactions, body has {len(txs)}"
                )
            block_hash = header.hash()
            if certificate.height != height or certificate.block_hash != block_hash:
                raise StoreError(
                    f"cannot append block {height}: the commit certificate is for block "
                    f"{certificate.height} {_short(certificate.block_hash)}, not "
                    f"{_short(block_hash)}"
                )
            if len(receipts) != len(txs):
                raise StoreError(
                    f"cannot append block {height}: {len(receipts)} receipts for "
                    f"{len(txs)} transactions"
                )
            tx_rows = []
            receipt_rows = []
            for position, (tx, receipt) in enumerate(zip(txs, receipts, strict=True)):
                tx_hash = tx.hash
                if receipt.tx_hash != tx_hash:
                    raise StoreError(
                        f"cannot append block {height}: receipt {position} is for "
                        f"transaction {_short(receipt.tx_hash)}, not {_short(tx_hash)}"
                    )
                tx_rows.append((tx_hash, height, position, tx.raw))
                receipt_rows.append((tx_hash, height, position, receipt.encode()))
            upserts = [(k, v) for k, v in state_changes.items() if v is not None]
            deletes = [(k,) for k, v in state_changes.items() if v is None]
            conn = self._conn
            try:
                with conn.begin():
                    conn.execute(
                        blocks_table.insert(),
                        {
                            "height": height,
                            "hash": block_hash,
                            "header": header.encode(),
                            "tx_count": len(txs),
                            "certificate": certificate.encode(),
                        },
                    )
                    self._executemany(_INSERT_TX, tx_rows)
                    self._executemany(_INSERT_RECEIPT, receipt_rows)
                    self._executemany(_STATE_UPSERT, upserts)
                    self._executemany(_STATE_DELETE, deletes)
                    if consensus_meta:
                        self._write_consensus_meta(consensus_meta)
            except sa_exc.IntegrityError as exc:
                self._reload_head_after_failure()
                raise StoreError(
                    f"cannot append block {height}: {exc.orig} (a transaction already stored?)"
                ) from None
            except (sa_exc.DBAPIError, sqlite3.Error) as exc:
                self._reload_head_after_failure()
                raise StoreError(
                    f"store at {self._path}: writing block {height} failed: "
                    f"{_describe_db_error(exc)}"
                ) from None
            self._head_height = height
            self._head_hash = block_hash

    def _reload_head_after_failure(self) -> None:
        # A failed COMMIT may still have reached the disk; trust the file, not the cache.
        try:
            with self._conn.begin():
                self._load_head()
        except (sa_exc.DBAPIError, sqlite3.Error):
            pass

    def put_consensus_meta(self, key: str, value: bytes) -> None:
        """Durably store one consensus-core record (its own transaction, fsynced)."""
        with self._lock, self._db_errors("write consensus metadata"):
            self._check_open()
            with self._conn.begin():
                self._write_consensus_meta({key: value})

    def _write_consensus_meta(self, records: Mapping[str, bytes | None]) -> None:
        self._executemany(
            _CONSENSUS_META_UPSERT, [(k, v) for k, v in records.items() if v is not None]
        )
        self._executemany(_CONSENSUS_META_DELETE, [(k,) for k, v in records.items() if v is None])

    def _executemany(self, statement: _BatchStatement, rows: list[tuple[Any, ...]]) -> None:
        if rows:  # an empty parameter list would run the statement once, unbound
            self._conn.exec_driver_sql(statement.sql, rows)

    # ------------------------------------------------------------------ reads

    def get_consensus_meta(self, key: str) -> bytes | None:
        return self._scalar(
            select(consensus_meta_table.c.value).where(consensus_meta_table.c.key == key)
        )

    def get_block_hash(self, height: int) -> bytes | None:
        return self._scalar(select(blocks_table.c.hash).where(blocks_table.c.height == height))

    def get_header(self, height: int) -> BlockHeader | None:
        raw = self._scalar(select(blocks_table.c.header).where(blocks_table.c.height == height))
        if raw is None:
            return None
        return self._decode(BlockHeader.decode, raw, f"block {height}'s header")

    def get_certificate(self, height: int) -> CommitCertificate | None:
        raw = self._scalar(
            select(blocks_table.c.certificate).where(blocks_table.c.height == height)
        )
        if raw is None:
            return None
        return self._decode(CommitCertificate.decode, raw, f"block {height}'s certificate")

    def get_block(self, height: int) -> Block | None:
        with self._reading():
            header_raw = self._conn.execute(
                select(blocks_table.c.header).where(blocks_table.c.height == height)
            ).scalar()
            if header_raw is None:
                return None
            rows = self._conn.execute(
                select(transactions_table.c.hash, transactions_table.c.raw)
                .where(transactions_table.c.height == height)
                .order_by(transactions_table.c.position)
            ).all()
        header = self._decode(BlockHeader.decode, header_raw, f"block {height}'s header")
        txs = tuple(self._decode_tx(tx_hash, raw) for tx_hash, raw in rows)
        if len(txs) != header.tx_count:
            self._corrupt(f"block {height} has {len(txs)} of its {header.tx_count} transactions")
        return Block(header, txs)

    def get_block_receipts(self, height: int) -> list[Receipt]:
        """The receipts of block ``height`` in transaction order (empty if no such block)."""
        with self._reading():
            raws = (
                self._conn.execute(
                    select(receipts_table.c.raw)
                    .where(receipts_table.c.height == height)
                    .order_by(receipts_table.c.position)
                )
                .scalars()
                .all()
            )
        return [self._decode(Receipt.decode, raw, f"a receipt of block {height}") for raw in raws]

    def get_transaction(self, tx_hash: bytes) -> tuple[Transaction, int, int] | None:
        """``(transaction, height, position)`` of a committed transaction, or None."""
        with self._reading():
            row = self._conn.execute(
                select(
                    transactions_table.c.raw,
                    transactions_table.c.height,
                    transactions_table.c.position,
                ).where(transactions_table.c.hash == tx_hash)
            ).first()
        if row is None:
            return None
        return self._decode_tx(tx_hash, row[0]), int(row[1]), int(row[2])

    def get_receipt(self, tx_hash: bytes) -> tuple[Receipt, int, int] | None:
        """``(receipt, height, position)`` of a committed transaction, or None."""
        with self._reading():
            row = self._conn.execute(
                select(
                    receipts_table.c.raw, receipts_table.c.height, receipts_table.c.position
                ).where(receipts_table.c.tx_hash == tx_hash)
            ).first()
        if row is None:
            return None
        receipt = self._decode(Receipt.decode, row[0], f"receipt {_short(tx_hash)}")
        return receipt, int(row[1]), int(row[2])

    def get_state(self, key: bytes) -> bytes | None:
        return self._scalar(select(state_table.c.value).where(state_table.c.key == key))

    def get_states(self, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """Values of the present keys among ``keys`` (absent keys are left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[bytes, bytes] = {}
        # SQLite caps bound parameters per statement (32766 by default); stay well under.
        chunk = 500
        with self._reading():
            for start in range(0, len(wanted), chunk):
                part = wanted[start : start + chunk]
                rows = self._conn.execute(
                    select(state_table.c.key, state_table.c.value).where(
                        state_table.c.key.in_(part)
                    )
                )
                found.update((bytes(k), bytes(v)) for k, v in rows)
        return found

    def get_account(self, address: bytes) -> Account:
        """The account at ``address``; the zero account when nothing is stored."""
        raw = self.get_state(account_key(address))
        if raw is None:
            return EMPTY_ACCOUNT
        return self._decode(Account.decode, raw, f"account {address.hex()}")

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store at {self._path} is closed")

    @contextmanager
    def _db_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            raise StoreError(
                f"store at {self._path}: {action} failed: {_describe_db_error(exc)}"
            ) from None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._lock, self._db_errors("read"):
            self._check_open()
            with self._conn.begin():
                yield

    def _scalar(self, statement: Any) -> bytes | None:
        with self._reading():
            value = self._conn.execute(statement).scalar()
        return None if value is None else bytes(value)

    def _decode_tx(self, tx_hash: bytes, raw: bytes) -> Transaction:
        tx = self._decode(Transaction.decode, raw, f"transaction {_short(tx_hash)}")
        if tx.hash != tx_hash:
            self._corrupt(f"transaction {_short(tx_hash)} is stored with other bytes")
        return tx

    def _decode(self, decoder: Callable[[bytes], _T], raw: bytes, what: str) -> _T:
        try:
            return decoder(raw)
        except DecodeError as exc:
            self._corrupt(f"{what} does not decode: {exc}")

    def _corrupt(self, detail: str) -> NoReturn:
        raise StoreError(f"store at {self._path} is inconsistent: {detail}")
