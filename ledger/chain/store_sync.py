"""The block store's state-sync side (part of ``Store``): the snapshots it keeps and serves,
and a synced snapshot's staging and install (``ledger.chain.store_snapshot``).

A syncing node (ledger/node/statesync.py) calls :meth:`SyncStore.begin_staging` once it
chose a certified snapshot, :meth:`SyncStore.stage_chunks` with each batch of verified
chunks as they arrive (one transaction per batch; the rows are invisible to everything but
the install), and :meth:`SyncStore.install_staged` at the end: one transaction replaces the
chain with the staged state. An interrupted sync leaves the store as it was; the next sync
empties the staging area first.

Never: let staged rows reach ``state`` or ``state_nodes`` before the install, or move the
head before the install's transaction committed.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection

from genesis.document import Genesis
from ledger.chain.epoch_links import LINK_PREFIX, EpochLink
from ledger.chain.snapshot import StateChunk
from ledger.chain.state_tree_nodes import TreeUpdate
from ledger.chain.store_cache import SharedNodeCache, StateCache
from ledger.chain.store_check import Head, StoreInfo
from ledger.chain.store_schema import SYNC_NODE_PUT, SYNC_STATE_PUT, BatchStatement, state_rows
from ledger.chain.store_snapshot import (
    SnapshotInfo,
    begin_staging,
    capture,
    install_staged,
    load_base,
    read_chunk,
    snapshot_infos,
)
from ledger.chain.types import BlockHeader, CommitCertificate
from ledger.chain.validators import ValidatorSet

#: One verified chunk ready to stage: its (key, value) entries and the tree nodes it proves.
StagedChunk = tuple[Sequence[tuple[bytes, bytes]], Mapping[bytes, bytes]]


class SyncStore:
    """Snapshots and state-sync installs (mixed into ``ledger.chain.store.Store``)."""

    _conn: Connection
    _info: StoreInfo
    _lock: threading.RLock
    _genesis: Genesis
    _base: tuple[Head, CommitCertificate] | None
    _state_cache: StateCache
    _nodes: SharedNodeCache

    def _check_open(self) -> None:
        raise NotImplementedError

    def _db_errors(self, action: str) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _executemany(self, statement: BatchStatement, rows: Sequence[tuple[Any, ...]]) -> None:
        raise NotImplementedError

    def _set_head(self, head: Head) -> None:
        raise NotImplementedError

    def _chain_base(self) -> Head:
        raise NotImplementedError

    def get_nodes(self, node_keys: Collection[bytes]) -> Mapping[bytes, bytes]:
        raise NotImplementedError

    def consensus_meta_items(self, prefix: str = "") -> list[tuple[str, bytes]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ serving

    def snapshots(self) -> list[SnapshotInfo]:
        """The state snapshots kept for state sync, newest first."""
        with self._reading():
            return snapshot_infos(self._conn)

    def read_chunk(self, height: int, prefix: bytes) -> StateChunk | None:
        """Snapshot ``height``'s state under ``prefix`` with its proof (None: not kept).
        Raises ``ChunkTooLarge`` when the subtree is too big for one chunk."""
        with self._reading():
            return read_chunk(self._conn, height, prefix)

    def epoch_links(self) -> list[EpochLink]:
        """The chain of validator sets this store holds (one link per switch block up to
        its head, ledger/chain/epoch_links.py), in epoch order."""
        return [EpochLink.decode(value) for _, value in self.consensus_meta_items(LINK_PREFIX)]

    # ------------------------------------------------------------------ syncing

    def begin_staging(self, height: int, state_root: bytes) -> None:
        """Empty the staging area for a sync to the snapshot at ``height``."""
        with self._write("start staging a snapshot") as conn:
            begin_staging(conn, height, state_root)

    def stage_chunks(self, chunks: Sequence[StagedChunk]) -> None:
        """Stage verified chunks (one transaction): invisible until :meth:`install_staged`."""
        with self._write("stage snapshot chunks"):
            for entries, nodes in chunks:
                self._executemany(SYNC_STATE_PUT, state_rows(entries))
                self._executemany(SYNC_NODE_PUT, sorted(nodes.items()))

    def install_staged(
        self,
        header: BlockHeader,
        certificate: CommitCertificate,
        links: Sequence[EpochLink],
        staged_keys: int,
    ) -> None:
        """Replace everything with the staged snapshot at ``header``, in ONE transaction (the
        caller verified the certificate, every chunk it staged — ``staged_keys`` keys in
        all — and ``links``, the chain of sets up to ``header``). The snapshot is kept for
        serving others; the head moves only once the transaction committed."""
        records = [
            (link.key(ValidatorSet.decode(link.validator_set).epoch), link.encode())
            for link in links
        ]
        with self._write("install a snapshot") as conn:
            install_staged(conn, header, certificate, records, staged_keys)
            base = load_base(conn, self._info, ValidatorSet.genesis(self._genesis))
            capture(conn, header.height, header.state_root, self.get_nodes)
        self._base = base
        self._set_head(self._chain_base())
        self._state_cache.clear()

    def install_snapshot(
        self,
        header: BlockHeader,
        certificate: CommitCertificate,
        items: Sequence[tuple[bytes, bytes]],
        tree_update: TreeUpdate,
        links: Sequence[EpochLink] = (),
    ) -> None:
        """Stage and install a whole snapshot held in memory (tools and tests)."""
        self.begin_staging(header.height, header.state_root)
        self.stage_chunks([(items, tree_update.node_writes)])
        self.install_staged(header, certificate, links, len(items))
        self._nodes.remember(tree_update)

    @contextmanager
    def _write(self, action: str) -> Iterator[Connection]:
        """Lock, check open, and run one transaction on the connection."""
        with self._lock, self._db_errors(action):
            self._check_open()
            with self._conn.begin():
                yield self._conn
