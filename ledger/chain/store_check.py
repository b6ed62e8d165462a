"""Consistency checks of a block store's file, and the store's error type.

``ledger.chain.store`` runs the cheap checks on every open (meta against the genesis, the
head block whole and certified, the state tree's root node present) and everything in
:meth:`Store.check_integrity` (every block, link and certificate; the state tree re-hashed
node by node; the flat ``state`` table and the tree holding the same key→value set).
The refusals of :meth:`Store.append_block` (a block that does not extend the head) are
here too. The functions here read through the connection they are given, inside the
caller's transaction and lock.

Never: write or repair anything, let a raw driver error or decoder error escape as
anything but a :class:`StoreError` naming the path, or re-verify a certificate the caller
did not ask about (certificates cost a signature check per vote).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

from sqlalchemy import Connection, func, select

from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.merkle import merkle_root
from crypto.smt_proof import EMPTY_ROOT, HASH_SIZE, node_hash
from ledger.chain.state_tree import StateTree, StateTreeError
from ledger.chain.state_tree_nodes import NodeReader, TreeUpdate
from ledger.chain.store_schema import (
    SCHEMA_VERSION,
    UPGRADABLE_VERSIONS,
    blocks_table,
    meta_table,
    receipts_table,
    transactions_table,
)
from ledger.chain.types import Block, BlockHeader, CommitCertificate, InvalidCertificate, Receipt

#: How many hex digits of a hash go into messages for people.
_SHORT_HEX: Final = 16

_sha256: Final = hashlib.sha256


class StoreError(Exception):
    """The store cannot be opened, is inconsistent, or refuses a write. Message is for people."""


def short(digest: bytes) -> str:
    return digest.hex()[:_SHORT_HEX] + ".."


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """What a store is for: its file and the genesis facts its contents must agree with."""

    path: str
    chain_id: str
    genesis_hash: bytes
    initial_height: int
    validators: tuple[bytes, ...]
    #: The signing domain and keys of the set whose hash a header names as its certifier
    #: (validator-set epochs); None: a set this store cannot name from its state.
    certifiers: Callable[[bytes], tuple[str, tuple[bytes, ...]] | None] | None = None

    def signers(self, validators_hash: bytes) -> tuple[str, tuple[bytes, ...]] | None:
        if self.certifiers is None:
            return self.chain_id, self.validators
        return self.certifiers(validators_hash)

    def corrupt(self, detail: str) -> NoReturn:
        raise StoreError(f"store at {self.path} is inconsistent: {detail}")


@dataclass(frozen=True, slots=True)
class Head:
    """The last committed block (``header`` None before the first block)."""

    height: int
    block_hash: bytes
    header: BlockHeader | None


def check_journal_mode(conn: Connection, info: StoreInfo) -> None:
    """The connection really is in WAL mode (it cannot be on some filesystems)."""
    mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
    if str(mode).lower() not in ("wal", "memory"):
        raise StoreError(
            f"store at {info.path}: SQLite refused WAL mode (journal_mode is {mode}); "
            "is the file on a network filesystem?"
        )


def is_new_file(conn: Connection, info: StoreInfo) -> bool:
    """True for an empty database (to create); False for a store; refuse anything else."""
    tables = set(
        conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars()
    )
    if "meta" in tables:
        return False
    if tables:
        raise StoreError(
            f"{info.path} is an SQLite database but not a ledger store "
            f"(it has tables {', '.join(sorted(tables))} and no meta table)"
        )
    return True


def check_meta(conn: Connection, info: StoreInfo) -> bytes:
    """Check the meta table against the genesis; return the genesis state root it records."""
    rows = dict(conn.execute(select(meta_table.c.key, meta_table.c.value)).all())
    version_raw = rows.get("schema_version")
    if version_raw is None or not version_raw.isdigit():
        raise StoreError(f"store at {info.path} has no readable schema version")
    version = int(version_raw)
    if version != SCHEMA_VERSION and version not in UPGRADABLE_VERSIONS:
        raise StoreError(
            f"store at {info.path} has store schema version {version}, "
            f"this build reads {SCHEMA_VERSION}"
        )
    chain_raw = rows.get("chain_id", b"")
    genesis_hash = rows.get("genesis_hash", b"")
    initial_raw = rows.get("initial_height", b"")
    try:
        chain_id = chain_raw.decode("utf-8")
    except UnicodeDecodeError:
        chain_id = repr(chain_raw)
    if chain_id != info.chain_id or genesis_hash != info.genesis_hash:
        raise StoreError(
            f"store at {info.path} belongs to chain {chain_id!r} "
            f"(genesis {short(genesis_hash)}), not {info.chain_id!r} "
            f"(genesis {short(info.genesis_hash)})"
        )
    if initial_raw != str(info.initial_height).encode():
        info.corrupt(f"meta initial_height {initial_raw!r} disagrees with the genesis")
    root = rows.get("genesis_state_root")
    if root is None or len(root) != HASH_SIZE:
        info.corrupt("meta genesis_state_root is missing or malformed")
    return bytes(root)


def genesis_base(info: StoreInfo) -> Head:
    """What a store's chain starts after when it was not installed from a snapshot."""
    return Head(info.initial_height - 1, info.genesis_hash, None)


def load_head(conn: Connection, info: StoreInfo, base: Head) -> Head:
    """The highest stored block, its header decoded (not otherwise checked); ``base`` when
    the store holds no block above it."""
    row = conn.execute(
        select(blocks_table.c.height, blocks_table.c.hash, blocks_table.c.header)
        .order_by(blocks_table.c.height.desc())
        .limit(1)
    ).first()
    if row is None:
        return base
    height = int(row[0])
    try:
        header = BlockHeader.decode(row[2])
    except DecodeError as exc:
        info.corrupt(f"block {height}'s header does not decode: {exc}")
    return Head(height, bytes(row[1]), header)


def check_sqlite(conn: Connection, info: StoreInfo) -> None:
    """SQLite's own integrity check, and every row's block reference (foreign keys)."""
    problems = conn.exec_driver_sql("PRAGMA integrity_check").scalars().all()
    if problems != ["ok"]:
        info.corrupt("SQLite integrity check: " + "; ".join(map(str, problems[:5])))
    fk_problems = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if fk_problems:
        info.corrupt(f"{len(fk_problems)} rows refer to blocks that do not exist")


def check_head(conn: Connection, info: StoreInfo, head: int, base: Head) -> None:
    """Cheap checks run on every open: the head block is whole and certified, and the
    blocks run without a gap from just above ``base`` (genesis or an installed snapshot)."""
    first = base.height + 1
    if head < first:
        if _count_above(conn, -1):
            info.corrupt("transactions or receipts exist but no blocks do")
        return
    count = conn.execute(select(func.count()).select_from(blocks_table)).scalar_one()
    lowest = conn.execute(select(func.min(blocks_table.c.height))).scalar_one()
    if lowest != first or count != head - first + 1:
        info.corrupt(
            f"it holds {count} blocks from height {lowest} to {head}; expected every "
            f"height from {first}"
        )
    if head > first:
        prev_hash = conn.execute(
            select(blocks_table.c.hash).where(blocks_table.c.height == head - 1)
        ).scalar_one()
    else:
        prev_hash = base.block_hash
    check_block(conn, info, head, prev_hash, verify_certificate=True)
    if _count_above(conn, head):
        info.corrupt(f"transactions or receipts exist above the head block {head}")


def check_header_hashes(conn: Connection, info: StoreInfo) -> int:
    """Every stored header hashes to its recorded block hash (run on every open: about a
    microsecond a block, so a damaged older block is refused at start, not served)."""
    count = 0
    for height, block_hash, header in conn.execute(
        select(blocks_table.c.height, blocks_table.c.hash, blocks_table.c.header)
    ):
        if sha256(header) != block_hash:
            info.corrupt(f"block {height}'s header is damaged (it does not hash to its block hash)")
        count += 1
    return count


def check_chain(conn: Connection, info: StoreInfo, head: int, base: Head) -> None:
    """Every block from the first above ``base`` to ``head``: whole, linked and certified."""
    prev_hash = base.block_hash
    for height in range(base.height + 1, head + 1):
        prev_hash = check_block(
            conn, info, height, prev_hash, verify_certificate=True, strict_set=False
        )


def _count_above(conn: Connection, height: int) -> int:
    total = 0
    for table in (transactions_table, receipts_table):
        total += conn.execute(
            select(func.count()).select_from(table).where(table.c.height > height)
        ).scalar_one()
    return total


def check_block(
    conn: Connection,
    info: StoreInfo,
    height: int,
    prev_hash: bytes,
    *,
    verify_certificate: bool,
    strict_set: bool = True,
) -> bytes:
    """Check one stored block against its predecessor's hash; return its hash.
    ``strict_set``: a header naming a set the store's state does not know is damage (the
    head's set always is known; a block of an older epoch is checked without it)."""
    row = conn.execute(
        select(
            blocks_table.c.hash,
            blocks_table.c.header,
            blocks_table.c.tx_count,
            blocks_table.c.certificate,
        ).where(blocks_table.c.height == height)
    ).first()
    if row is None:
        info.corrupt(f"block {height} is missing")
    stored_hash, header_raw, tx_count, cert_raw = row
    try:
        header = BlockHeader.decode(header_raw)
    except DecodeError as exc:
        info.corrupt(f"block {height}'s header does not decode: {exc}")
    block_hash = header.hash()
    if block_hash != stored_hash:
        info.corrupt(
            f"block {height}'s header hashes to {short(block_hash)}, stored as {short(stored_hash)}"
        )
    if header.height != height or header.chain_id != info.chain_id:
        info.corrupt(
            f"block {height}'s header names height {header.height} of chain {header.chain_id!r}"
        )
    if header.prev_hash != prev_hash:
        info.corrupt(
            f"block {height}'s prev_hash {short(header.prev_hash)} does not match the "
            f"hash {short(prev_hash)} of the block before it"
        )
    if header.tx_count != tx_count:
        info.corrupt(
            f"block {height}: header says {header.tx_count} transactions, row says {tx_count}"
        )
    try:
        certificate = CommitCertificate.decode(cert_raw)
    except DecodeError as exc:
        info.corrupt(f"block {height}'s commit certificate does not decode: {exc}")
    if certificate.height != height or certificate.block_hash != block_hash:
        info.corrupt(f"block {height}'s commit certificate is for another block")
    signers = info.signers(header.validators_hash) if verify_certificate else None
    if verify_certificate and signers is None and strict_set:
        info.corrupt(f"block {height}'s header names a validator set this store does not know")
    if signers is not None:
        try:
            certificate.verify(*signers)
        except InvalidCertificate as exc:
            info.corrupt(f"block {height}'s commit certificate does not verify: {exc}")
    tx_rows = conn.execute(
        select(transactions_table.c.hash, transactions_table.c.position, transactions_table.c.raw)
        .where(transactions_table.c.height == height)
        .order_by(transactions_table.c.position)
    ).all()
    receipt_rows = conn.execute(
        select(receipts_table.c.tx_hash, receipts_table.c.position, receipts_table.c.raw)
        .where(receipts_table.c.height == height)
        .order_by(receipts_table.c.position)
    ).all()
    if len(tx_rows) != tx_count or len(receipt_rows) != tx_count:
        info.corrupt(
            f"block {height} has {tx_count} transactions but {len(tx_rows)} transaction "
            f"rows and {len(receipt_rows)} receipt rows"
        )
    tx_hashes = []
    for i, (tx_hash, position, raw) in enumerate(tx_rows):
        if position != i or sha256(raw) != tx_hash:
            info.corrupt(f"block {height}: transaction row {i} is damaged")
        tx_hashes.append(tx_hash)
    if merkle_root(tx_hashes) != header.tx_root:
        info.corrupt(f"block {height}'s transactions do not match its tx_root")
    for i, (tx_hash, position, _raw) in enumerate(receipt_rows):
        if position != i or tx_hash != tx_hashes[i]:
            info.corrupt(f"block {height}: receipt row {i} is damaged")
    if merkle_root([r[2] for r in receipt_rows]) != header.receipts_root:
        info.corrupt(f"block {height}'s receipts do not match its receipts_root")
    return block_hash


def check_root_node(info: StoreInfo, root: bytes, node: bytes | None) -> None:
    """The state root's node (``node``, as read under the key ``root``) is there and fits."""
    if root == EMPTY_ROOT:
        return
    if node is None:
        info.corrupt(f"the state tree is missing its root node {short(root)}: the store is damaged")
    if node_hash(node) != root:
        info.corrupt(f"the state tree's root node {short(root)} does not match its key")


def check_state(
    info: StoreInfo,
    root: bytes,
    nodes: NodeReader,
    flat_state: Callable[[], Iterable[tuple[bytes, bytes]]],
) -> int:
    """Re-hash the whole tree under ``root``; check it holds exactly the flat state.

    ``flat_state`` is called for each pass over the ``state`` table. The sets are compared
    by count and by a sum of per-entry hashes (constant memory at any size); only when they
    differ is the flat state walked again, key by key through the tree, to name the first
    key that disagrees. Returns the number of keys.
    """
    tree = StateTree.at(root, nodes)
    try:
        leaves = tree.check_integrity()
        tree_sum = 0
        for path, value_hash in tree.iter_leaves():
            tree_sum += int.from_bytes(_sha256(path + value_hash).digest(), "big")
        rows = 0
        flat_sum = 0
        for key, value in flat_state():
            entry = _sha256(key).digest() + _sha256(value).digest()
            flat_sum += int.from_bytes(_sha256(entry).digest(), "big")
            rows += 1
        if rows != leaves or flat_sum != tree_sum:
            for key, value in flat_state():
                if tree.value_hash(key) != _sha256(value).digest():
                    info.corrupt(
                        f"state key {key.hex()} has a value the state tree does not commit to"
                    )
            # Every flat entry is in the tree, so the tree holds entries the table does not.
            info.corrupt(f"the state tree holds {leaves} keys, the state table {rows}")
    except StateTreeError as exc:
        info.corrupt(f"the state tree under root {short(root)} is damaged: {exc}")
    return leaves


def check_append(
    info: StoreInfo,
    head: Head,
    state_root: bytes,
    block: Block,
    certificate: CommitCertificate,
    receipts: Sequence[Receipt],
    tree_update: TreeUpdate,
) -> tuple[list[tuple[bytes, int, int, bytes]], list[tuple[bytes, int, int, bytes]]]:
    """Refuse a block that does not extend ``head``; else its transaction and receipt rows.

    ``state_root`` is the store's current one: ``tree_update`` must lead from it to the
    header's. Rows are ``(tx_hash, height, position, raw bytes)``.
    """
    header = block.header
    height = header.height
    where = f"cannot append block {height}"
    if height != head.height + 1:
        raise StoreError(f"{where}: the next height is {head.height + 1}")
    if header.chain_id != info.chain_id:
        raise StoreError(
            f"{where}: it is for chain {header.chain_id!r}, this store holds {info.chain_id!r}"
        )
    if header.prev_hash != head.block_hash:
        raise StoreError(
            f"{where}: its prev_hash {short(header.prev_hash)} "
            f"is not the head hash {short(head.block_hash)}"
        )
    txs = block.transactions
    if header.tx_count != len(txs):
        raise StoreError(
            f"{where}: header says {header.tx_count} transactions, body has {len(txs)}"
        )
    block_hash = header.hash()
    if certificate.height != height or certificate.block_hash != block_hash:
        raise StoreError(
            f"{where}: the commit certificate is for block {certificate.height} "
            f"{short(certificate.block_hash)}, not {short(block_hash)}"
        )
    if len(receipts) != len(txs):
        raise StoreError(f"{where}: {len(receipts)} receipts for {len(txs)} transactions")
    if tree_update.old_root != state_root:
        raise StoreError(
            f"{where}: its state tree update starts at root {short(tree_update.old_root)}, "
            f"the store's state root is {short(state_root)}"
        )
    if tree_update.new_root != header.state_root:
        raise StoreError(
            f"{where}: its state tree update ends at root {short(tree_update.new_root)}, "
            f"the header's state root is {short(header.state_root)}"
        )
    tx_rows = []
    receipt_rows = []
    for position, (tx, receipt) in enumerate(zip(txs, receipts, strict=True)):
        tx_hash = tx.hash
        if receipt.tx_hash != tx_hash:
            raise StoreError(
                f"{where}: receipt {position} is for transaction {short(receipt.tx_hash)}, "
                f"not {short(tx_hash)}"
            )
        tx_rows.append((tx_hash, height, position, tx.raw))
        receipt_rows.append((tx_hash, height, position, receipt.encode()))
    return tx_rows, receipt_rows
