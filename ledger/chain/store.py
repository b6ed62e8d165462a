"""The node's durable record: blocks, commit certificates, transactions, receipts, state.

Theory of operation. One SQLite file in WAL mode with ``synchronous=FULL``, reached
through SQLAlchemy Core on a single connection (tables, connection setup and the
precompiled hot-path SQL: ``ledger.chain.store_schema``). Each committed block is written
by :meth:`Store.append_block` in ONE SQLite transaction — block row and certificate,
transactions, receipts, the flat state delta, the state tree's node writes and deletions,
optional consensus metadata — so after any crash (kill -9 included) a block is either
wholly present or wholly absent, and a block whose ``append_block`` returned is on disk.
:meth:`Store.append_blocks` writes a run of consecutive blocks the same way in one
transaction (replay, several commits at once): after a crash, all of them or none.
The head (height, hash, timestamp, state root) is cached and moves only after a commit.

State is kept twice, committed together: the flat ``state`` table (what execution and
queries read) and the authenticated state tree (``state_nodes``: exactly the nodes
reachable from the head's state root, see ``ledger.chain.state_tree``), which serves state
proofs. The caller computes each block's :class:`TreeUpdate` on :meth:`Store.tip`; the
store checks that it leads from its state root to the header's and applies it. The store
is a ``NodeReader``; its tip hands execution a node cache in front of it, and point reads
of state go through a bounded cache (``ledger.chain.store_cache``), both fed after commits.

:meth:`Store.open` creates a store (schema, meta, genesis state and tree in one
transaction) or checks an existing one against its genesis: schema version, chain id,
genesis hash, the head of the hash chain, the state tree's root node.
:meth:`Store.check_integrity` checks everything (``ledger.chain.store_check``).

House rules: never use the ORM or log per row on the hot path; never write part of a
block; never re-verify commit certificate signatures on append (the caller has); never
let a raw sqlite3 or SQLAlchemy traceback escape for a bad file — every failure that is
about the data on disk is a :class:`StoreError` naming the path; never let a cache answer
differently from the file. Calls from several threads are serialised by one lock; open one
Store per file (a second writer's head and caches would go stale, its appends refused).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy import Connection, Engine, select
from sqlalchemy import exc as sa_exc

from consensus.config import epoch_chain_id
from ledger.chain.accounts import EMPTY_ACCOUNT, Account, account_key, genesis_state
from ledger.chain.state_tree import EMPTY_ROOT, StateTree, TreeUpdate
from ledger.chain.state_tree_nodes import DEFAULT_NODE_CACHE_NODES, MemoryNodeStore
from ledger.chain.store_cache import STATE_CACHE_ENTRIES, SharedNodeCache, StateCache
from ledger.chain.store_check import (
    Head,
    StoreError,
    StoreInfo,
    check_append,
    check_chain,
    check_head,
    check_header_hashes,
    check_journal_mode,
    check_meta,
    check_root_node,
    check_sqlite,
    check_state,
    genesis_base,
    is_new_file,
    load_head,
)
from ledger.chain.store_reads import BlockReads
from ledger.chain.store_schema import (
    CONSENSUS_META_DELETE,
    CONSENSUS_META_UPSERT,
    INSERT_BLOCK,
    INSERT_RECEIPT,
    INSERT_TX,
    NODE_DELETE,
    NODE_GET_SQL,
    NODE_PUT,
    SCHEMA_VERSION,
    STATE_DELETE,
    STATE_GET_SQL,
    STATE_SCAN_SQL,
    STATE_UPSERT,
    BatchStatement,
    consensus_meta_table,
    describe_db_error,
    in_list_chunk,
    make_engine,
    meta_table,
    metadata,
    select_nodes_batches,
    state_checksum,
    state_rows,
    state_table,
    variable_limit,
)
from ledger.chain.store_snapshot import (
    capture,
    load_base,
    upgrade,
)
from ledger.chain.store_sync import SyncStore
from ledger.chain.tip import CommittedTip
from ledger.chain.types import (
    Block,
    CommitCertificate,
    Receipt,
)
from ledger.chain.validators import ValidatorSet, known_sets

if TYPE_CHECKING:
    from genesis.document import Genesis

__all__ = [
    "SCHEMA_VERSION",
    "STATE_CACHE_ENTRIES",
    "BlockWrite",
    "CommittedTip",
    "Store",
    "StoreError",
    "genesis_tree",
]

StorePath = str | os.PathLike[str]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class BlockWrite:
    """One committed block as :meth:`Store.append_blocks` writes it (see ``append_block``)."""

    block: Block
    certificate: CommitCertificate
    receipts: Sequence[Receipt]
    state_changes: Mapping[bytes, bytes | None]
    tree_update: TreeUpdate
    consensus_meta: Mapping[str, bytes | None] | None = None


def genesis_tree(initial: Mapping[bytes, bytes]) -> TreeUpdate:
    """The state tree of a genesis state, built from nothing (all nodes are writes)."""
    return StateTree.empty(MemoryNodeStore()).apply(initial)


class Store(BlockReads, SyncStore):
    """A ledger's SQLite store. Open with :meth:`Store.open`; use as a context manager.

    Also a ``NodeReader`` of the state tree at :attr:`state_root`.
    """

    def __init__(
        self,
        *,
        path: str,
        engine: Engine,
        connection: Connection,
        genesis: Genesis,
        state_cache_entries: int,
        node_cache_nodes: int,
    ) -> None:
        self._info = StoreInfo(
            path=path,
            chain_id=genesis.chain_id,
            genesis_hash=genesis.hash(),
            initial_height=genesis.initial_height,
            validators=tuple(v.public_key for v in genesis.validators),
            certifiers=self._certifiers,
        )
        self._genesis = genesis
        self._engine = engine
        self._conn = connection
        self._lock = threading.RLock()
        self._closed = False
        self._base: tuple[Head, CommitCertificate] | None = None
        self._snapshot_interval = genesis.consensus.checkpoint_interval
        self._in_chunk = 1
        self._genesis_state_root = EMPTY_ROOT
        self._head_height = self._info.initial_height - 1
        self._head_hash = self._info.genesis_hash
        self._head_timestamp_ms = genesis.genesis_time_ms
        self._state_root = EMPTY_ROOT
        self._state_cache = StateCache(state_cache_entries)
        self._nodes = SharedNodeCache(self, node_cache_nodes, self._lock)

    # ------------------------------------------------------------------ open / close

    @classmethod
    def open(
        cls,
        path: StorePath,
        genesis: Genesis,
        *,
        state_cache_entries: int = STATE_CACHE_ENTRIES,
        node_cache_nodes: int = DEFAULT_NODE_CACHE_NODES,
    ) -> Store:
        """Open the store at ``path`` for ``genesis``, creating it when the file is new/empty.

        Raises :class:`StoreError` when the file is not a store of this chain, has an
        unknown schema version, is not SQLite, is damaged, its head is unsound, or its
        state tree has lost its root node. The cache sizes bound the state point-read cache
        (entries; 0 disables it) and the node cache behind :meth:`tip` (nodes).
        """
        if state_cache_entries < 0 or node_cache_nodes < 1:
            raise ValueError(
                f"cache sizes must not be negative (state {state_cache_entries}) "
                f"or zero (nodes {node_cache_nodes})"
            )
        where = os.fspath(path)
        engine = make_engine(where)
        try:
            connection = engine.connect()
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            engine.dispose()
            raise StoreError(f"cannot open store at {where}: {describe_db_error(exc)}") from None
        store = cls(
            path=where,
            engine=engine,
            connection=connection,
            genesis=genesis,
            state_cache_entries=state_cache_entries,
            node_cache_nodes=node_cache_nodes,
        )
        info = store._info
        try:
            with store._db_errors("open"), connection.begin():
                check_journal_mode(connection, info)
                store._in_chunk = in_list_chunk(variable_limit(connection))
                if is_new_file(connection, info):
                    store._create(genesis)
                else:
                    store._genesis_state_root = check_meta(connection, info)
                    store._upgrade_if_old()
                    store._base = load_base(connection, info, ValidatorSet.genesis(genesis))
                    base = store._chain_base()
                    store._set_head(load_head(connection, info, base))
                    check_head(connection, info, store._head_height, base)
                    check_header_hashes(connection, info)
                    root = store._state_root
                    check_root_node(info, root, store.get_node(root))
        except BaseException:
            store.close()
            raise
        return store

    def _create(self, genesis: Genesis) -> None:
        info = self._info
        try:
            initial = genesis_state(genesis)
        except ValueError as exc:
            raise StoreError(f"cannot create store at {info.path}: {exc}") from None
        tree = genesis_tree(initial)
        conn = self._conn
        metadata.create_all(conn)
        conn.execute(
            meta_table.insert(),
            [
                {"key": "schema_version", "value": str(SCHEMA_VERSION).encode()},
                {"key": "chain_id", "value": info.chain_id.encode()},
                {"key": "genesis_hash", "value": info.genesis_hash},
                {"key": "initial_height", "value": str(info.initial_height).encode()},
                {"key": "genesis_state_root", "value": tree.new_root},
            ],
        )
        self._executemany(STATE_UPSERT, state_rows(sorted(initial.items())))
        self._executemany(NODE_PUT, sorted(tree.node_writes.items()))
        self._genesis_state_root = tree.new_root
        self._set_head(Head(info.initial_height - 1, info.genesis_hash, None))
        self._nodes.remember(tree)

    def _set_head(self, head: Head) -> None:
        self._head_height = head.height
        self._head_hash = head.block_hash
        if head.header is None:
            self._head_timestamp_ms = self._genesis.genesis_time_ms
            self._state_root = self._genesis_state_root
        else:
            self._head_timestamp_ms = head.header.timestamp_ms
            self._state_root = head.header.state_root

    def check_integrity(self) -> None:
        """Full check: SQLite's integrity_check, every block, link and certificate, the tree.

        The state tree is re-hashed node by node and compared with the flat state, and the
        recorded genesis state root with the genesis. Reads the whole store (slow on big
        stores); raises :class:`StoreError` at the first problem.
        """
        info = self._info
        with self._lock, self._db_errors("check"):
            self._check_open()
            conn = self._conn
            with conn.begin():
                check_sqlite(conn, info)
                self._base = load_base(conn, info, ValidatorSet.genesis(self._genesis))
                base = self._chain_base()
                self._set_head(load_head(conn, info, base))
                check_head(conn, info, self._head_height, base)
                check_chain(conn, info, self._head_height, base)
                if genesis_tree(genesis_state(self._genesis)).new_root != self._genesis_state_root:
                    info.corrupt("meta genesis_state_root is not the root of the genesis state")
                root = self._state_root
                check_root_node(info, root, self.get_node(root))
                check_state(info, root, self, self._scan_state)  # reads join this transaction

    def _scan_state(self) -> Iterator[tuple[bytes, bytes]]:
        for key, value, checksum in self._conn.exec_driver_sql(STATE_SCAN_SQL):
            yield key, self._checked_state(key, value, checksum)

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
        return self._info.path

    @property
    def chain_id(self) -> str:
        return self._info.chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._info.genesis_hash

    @property
    def initial_height(self) -> int:
        return self._info.initial_height

    @property
    def head_height(self) -> int:
        """Height of the last committed block; ``initial_height - 1`` before the first."""
        return self._head_height

    @property
    def head_hash(self) -> bytes:
        """Hash of the last committed block; the genesis hash before the first."""
        return self._head_hash

    @property
    def head_timestamp_ms(self) -> int:
        """Timestamp of the last committed block; the genesis time before the first."""
        return self._head_timestamp_ms

    @property
    def state_root(self) -> bytes:
        """The head header's state root; the genesis state's root before the first block."""
        return self._state_root

    @property
    def genesis_state_root(self) -> bytes:
        """Root of the state tree of the genesis state."""
        return self._genesis_state_root

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Hold the store still: no block is appended while inside (one consistent height
        for a proof and the header and certificate it is checked against)."""
        with self._lock:
            self._check_open()
            yield

    def tip(self) -> CommittedTip:
        """The committed head, for execution to build the next block on."""
        with self._lock:
            self._check_open()
            return CommittedTip(
                height=self._head_height,
                block_hash=self._head_hash,
                timestamp_ms=self._head_timestamp_ms,
                state_root=self._state_root,
                nodes=self._nodes,
                store=self,
            )

    # ------------------------------------------------------------------ writes

    def append_block(
        self,
        block: Block,
        certificate: CommitCertificate,
        receipts: Sequence[Receipt],
        state_changes: Mapping[bytes, bytes | None],
        *,
        tree_update: TreeUpdate,
        consensus_meta: Mapping[str, bytes | None] | None = None,
    ) -> None:
        """Durably commit the next block in ONE SQLite transaction, or write nothing.

        ``state_changes`` maps state keys to new values (``None`` deletes);
        ``tree_update`` is the state tree's update for the same changes, which must lead
        from :attr:`state_root` to the header's ``state_root``. The optional
        ``consensus_meta`` is written in the same transaction. The certificate's
        signatures are NOT verified here (the caller has); that it names this block is.
        Raises :class:`StoreError` when the block does not extend the head.
        """
        self.append_blocks(
            [BlockWrite(block, certificate, receipts, state_changes, tree_update, consensus_meta)]
        )

    def append_blocks(self, writes: Sequence[BlockWrite]) -> None:
        """Durably commit several consecutive blocks in ONE SQLite transaction (one fsync),
        or write nothing: after a crash the head is before the first or at the last.

        Each block is checked and written as :meth:`append_block` would, in order, on top
        of the one before (a snapshot at a checkpoint height inside the run is taken with
        the state of that height). Replaying certified blocks in batches this way costs one
        commit per batch instead of one per block.
        """
        if not writes:
            return
        with self._lock:
            self._check_open()
            head = Head(self._head_height, self._head_hash, None)
            root = self._state_root
            rows = []
            for write in writes:
                header = write.block.header
                rows.append(
                    check_append(
                        self._info,
                        head,
                        root,
                        write.block,
                        write.certificate,
                        write.receipts,
                        write.tree_update,
                    )
                )
                head = Head(header.height, header.hash(), header)
                root = header.state_root
            first = writes[0].block.height
            what = f"block {first}" if first == head.height else f"blocks {first}..{head.height}"
            try:
                with self._conn.begin():
                    for write, (tx_rows, receipt_rows) in zip(writes, rows, strict=True):
                        self._write_block(write, tx_rows, receipt_rows)
            except sa_exc.IntegrityError as exc:
                self._reload_head_after_failure()
                raise StoreError(
                    f"cannot append {what}: {exc.orig} (a transaction already stored?)"
                ) from None
            except (sa_exc.DBAPIError, sqlite3.Error) as exc:
                self._reload_head_after_failure()
                raise StoreError(
                    f"store at {self._info.path}: writing {what} failed: {describe_db_error(exc)}"
                ) from None
            self._set_head(head)
            for write in writes:
                self._nodes.remember(write.tree_update)
                self._state_cache.write_through(write.state_changes)

    def _write_block(
        self,
        write: BlockWrite,
        tx_rows: Sequence[tuple[Any, ...]],
        receipt_rows: Sequence[tuple[Any, ...]],
    ) -> None:
        """One checked block's rows, inside the caller's transaction."""
        header = write.block.header
        height = header.height
        conn = self._conn
        conn.exec_driver_sql(
            INSERT_BLOCK.sql,
            (height, header.hash(), header.encode(), len(tx_rows), write.certificate.encode()),
        )
        changes = write.state_changes
        update = write.tree_update
        self._executemany(INSERT_TX, tx_rows)
        self._executemany(INSERT_RECEIPT, receipt_rows)
        self._executemany(
            STATE_UPSERT, state_rows((k, v) for k, v in changes.items() if v is not None)
        )
        self._executemany(STATE_DELETE, [(k,) for k, v in changes.items() if v is None])
        self._executemany(NODE_PUT, list(update.node_writes.items()))
        self._executemany(NODE_DELETE, [(k,) for k in update.stale_nodes])
        if write.consensus_meta:
            self._write_consensus_meta(write.consensus_meta)
        if (height - self._info.initial_height + 1) % self._snapshot_interval == 0:
            capture(conn, height, header.state_root, self.get_nodes)

    def _reload_head_after_failure(self) -> None:
        # A failed COMMIT may still have reached the disk; trust the file, not the caches.
        self._state_cache.clear()
        try:
            with self._conn.begin():
                self._set_head(load_head(self._conn, self._info, self._chain_base()))
        except (sa_exc.DBAPIError, sqlite3.Error, StoreError):
            pass

    def put_consensus_meta(self, key: str, value: bytes) -> None:
        """Durably store one consensus-core record (its own transaction, fsynced)."""
        with self._lock, self._db_errors("write consensus metadata"):
            self._check_open()
            with self._conn.begin():
                self._write_consensus_meta({key: value})

    def write_consensus_meta(self, records: Mapping[str, bytes | None]) -> None:
        """Durably upsert (value) or delete (None) several consensus records in one transaction."""
        if not records:
            return
        with self._lock, self._db_errors("write consensus metadata"):
            self._check_open()
            with self._conn.begin():
                self._write_consensus_meta(records)

    def consensus_meta_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        """Every consensus record (whose key starts with ``prefix``), sorted by key."""
        table = consensus_meta_table
        query = select(table.c.key, table.c.value).order_by(table.c.key)
        if prefix:
            query = query.where(table.c.key >= prefix, table.c.key < prefix + "\uffff")
        with self._reading():
            rows = self._conn.execute(query).all()
        return [(str(k), bytes(v)) for k, v in rows]

    def _write_consensus_meta(self, records: Mapping[str, bytes | None]) -> None:
        self._executemany(
            CONSENSUS_META_UPSERT, [(k, v) for k, v in records.items() if v is not None]
        )
        self._executemany(CONSENSUS_META_DELETE, [(k,) for k, v in records.items() if v is None])

    def _executemany(self, statement: BatchStatement, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:  # an empty parameter list would run the statement once, unbound
            self._conn.exec_driver_sql(statement.sql, list(rows))

    # ------------------------------------------------------------------ snapshots

    def _chain_base(self) -> Head:
        return genesis_base(self._info) if self._base is None else self._base[0]

    def _upgrade_if_old(self) -> None:
        version = self._conn.execute(
            select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar_one()
        if int(version) != SCHEMA_VERSION:
            upgrade(self._conn, int(version))

    # ------------------------------------------------------------------ state tree nodes

    def get_node(self, node_key: bytes) -> bytes | None:
        """The state-tree node stored under ``node_key``, or None (``NodeReader``)."""
        with self._reading():
            node: bytes | None = self._conn.exec_driver_sql(NODE_GET_SQL, (node_key,)).scalar()
        return node

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        """The present nodes among ``node_keys`` (``NodeReader``): one query per 4096 keys."""
        wanted = node_keys if isinstance(node_keys, list) else list(node_keys)
        found: dict[bytes, bytes] = {}
        with self._reading():
            run = self._conn.exec_driver_sql
            for sql, params in select_nodes_batches(wanted, self._in_chunk):
                found.update(run(sql, params).all())  # rows are (key, node)
        return found

    # ------------------------------------------------------------------ reads

    def _certifiers(self, validators_hash: bytes) -> tuple[str, tuple[bytes, ...]] | None:
        """The signing domain and keys of the set a header names (validator-set epochs:
        genesis, the active set or the one it replaced); None if the state names no such set."""
        reader = _TransactionReader(self)
        for candidate in known_sets(reader, ValidatorSet.genesis(self._genesis)):
            if candidate.hash() == validators_hash:
                return epoch_chain_id(self._info.chain_id, candidate.epoch), candidate.public_keys
        return None

    def _state_in_transaction(self, key: bytes) -> bytes | None:
        """A state value read inside the caller's open transaction (the checks at open)."""
        if not self._conn.in_transaction():
            return self.get_state(key)
        row = self._conn.exec_driver_sql(STATE_GET_SQL, (key,)).first()
        return None if row is None else self._checked_state(key, row[0], row[1])

    def get_state(self, key: bytes) -> bytes | None:
        """The value of state ``key`` at the head, or None.

        Served from the bounded state cache when it can be (present and absent keys are
        both cached; ``append_block`` writes its changes through after each commit).
        """
        with self._lock:
            self._check_open()
            try:
                return self._state_cache.entries[key]
            except KeyError:
                pass
            with self._db_errors("read"), self._conn.begin():
                row = self._conn.exec_driver_sql(STATE_GET_SQL, (key,)).first()
            value = None if row is None else self._checked_state(key, row[0], row[1])
            self._state_cache.put(key, value)
            return value

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
                    select(state_table.c.key, state_table.c.value, state_table.c.checksum).where(
                        state_table.c.key.in_(part)
                    )
                )
                for k, v, checksum in rows:
                    found[bytes(k)] = self._checked_state(k, v, checksum)
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
            raise StoreError(f"store at {self._info.path} is closed")

    @contextmanager
    def _db_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except (sa_exc.DBAPIError, sqlite3.Error) as exc:
            raise StoreError(
                f"store at {self._info.path}: {action} failed: {describe_db_error(exc)}"
            ) from None

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """Lock, check open, and read in a transaction (joining one the store has open)."""
        with self._lock, self._db_errors("read"):
            self._check_open()
            if self._conn.in_transaction():  # check_integrity walking the tree through us
                yield
            else:
                with self._conn.begin():
                    yield

    def _checked_state(self, key: bytes, value: bytes, checksum: bytes) -> bytes:
        value = bytes(value)
        if state_checksum(bytes(key), value) != checksum:
            self._corrupt(f"state key {bytes(key).hex()} is damaged (its checksum does not match)")
        return value


class _TransactionReader:
    """State reads for :func:`known_sets` that join an open transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get_state(self, key: bytes) -> bytes | None:
        return self._store._state_in_transaction(key)
