"""Reads of blocks, transactions, receipts and consensus records (part of ``Store``).

Every read takes the store's lock and runs in a transaction (``Store._reading``), checks
what it returns against its hash (headers, transactions) and raises :class:`StoreError`
for damage. A store installed from a snapshot starts at a *base* block: its header and
certificate are served from the base record; its transactions are not here (peers hold
them).

Never: write, or hand out bytes that do not match the hash they are stored under.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Connection, select

from crypto.encoding import DecodeError
from ledger.chain.store_check import Head, StoreInfo, short
from ledger.chain.store_schema import (
    blocks_table,
    consensus_meta_table,
    receipts_table,
    transactions_table,
)
from ledger.chain.types import Block, BlockHeader, CommitCertificate, Receipt, Transaction, tx_root

_T = TypeVar("_T")


class BlockReads:
    """The read half of the block store (mixed into ``ledger.chain.store.Store``)."""

    _conn: Connection
    _info: StoreInfo
    #: The certified block the stored chain starts after, if installed from a snapshot.
    _base: tuple[Head, CommitCertificate] | None

    def _reading(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @property
    def base_height(self) -> int | None:
        """Height of the snapshot block this store was installed from (None: genesis)."""
        return None if self._base is None else self._base[0].height

    def get_block_receipt_raws(self, height: int) -> list[bytes]:
        """Block ``height``'s receipts as stored (canonical bytes, the receipts_root leaves)."""
        with self._reading():
            return [
                bytes(r)
                for r in self._conn.execute(
                    select(receipts_table.c.raw)
                    .where(receipts_table.c.height == height)
                    .order_by(receipts_table.c.position)
                ).scalars()
            ]

    def get_block_tx_hashes(self, height: int) -> list[bytes]:
        """The hashes of block ``height``'s transactions, in order (the tx_root leaves)."""
        with self._reading():
            return [
                bytes(h)
                for h in self._conn.execute(
                    select(transactions_table.c.hash)
                    .where(transactions_table.c.height == height)
                    .order_by(transactions_table.c.position)
                ).scalars()
            ]

    def get_consensus_meta(self, key: str) -> bytes | None:
        return self._scalar(
            select(consensus_meta_table.c.value).where(consensus_meta_table.c.key == key)
        )

    def get_block_hash(self, height: int) -> bytes | None:
        base = self._base
        if base is not None and height == base[0].height:
            return base[0].block_hash
        return self._scalar(select(blocks_table.c.hash).where(blocks_table.c.height == height))

    def get_header(self, height: int) -> BlockHeader | None:
        base = self._base
        if base is not None and height == base[0].height:
            return base[0].header
        with self._reading():
            row = self._conn.execute(
                select(blocks_table.c.header, blocks_table.c.hash).where(
                    blocks_table.c.height == height
                )
            ).first()
        if row is None:
            return None
        return self._checked_header(height, row[0], row[1])

    def get_certificate(self, height: int) -> CommitCertificate | None:
        base = self._base
        if base is not None and height == base[0].height:
            return base[1]
        raw = self._scalar(
            select(blocks_table.c.certificate).where(blocks_table.c.height == height)
        )
        if raw is None:
            return None
        return self._decode(CommitCertificate.decode, raw, f"block {height}'s certificate")

    def get_block(self, height: int) -> Block | None:
        with self._reading():
            header_row = self._conn.execute(
                select(blocks_table.c.header, blocks_table.c.hash).where(
                    blocks_table.c.height == height
                )
            ).first()
            if header_row is None:
                return None
            rows = self._conn.execute(
                select(transactions_table.c.hash, transactions_table.c.raw)
                .where(transactions_table.c.height == height)
                .order_by(transactions_table.c.position)
            ).all()
        header = self._checked_header(height, header_row[0], header_row[1])
        txs = tuple(self._decode_tx(tx_hash, raw) for tx_hash, raw in rows)
        if len(txs) != header.tx_count:
            self._corrupt(f"block {height} has {len(txs)} of its {header.tx_count} transactions")
        if tx_root(txs) != header.tx_root:
            self._corrupt(f"block {height}'s transactions do not match its header's tx_root")
        return Block(header, txs)

    def get_block_receipts(self, height: int) -> list[Receipt]:
        """The receipts of block ``height`` in transaction order (empty if no such block)."""
        return [
            self._decode(Receipt.decode, raw, f"a receipt of block {height}")
            for raw in self.get_block_receipt_raws(height)
        ]

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
        receipt = self._decode(Receipt.decode, row[0], f"receipt {short(tx_hash)}")
        return receipt, int(row[1]), int(row[2])

    def _scalar(self, statement: Any) -> bytes | None:
        with self._reading():
            value = self._conn.execute(statement).scalar()
        return None if value is None else bytes(value)

    def _checked_header(self, height: int, raw: bytes, block_hash: bytes) -> BlockHeader:
        header = self._decode(BlockHeader.decode, bytes(raw), f"block {height}'s header")
        if header.hash() != block_hash:
            self._corrupt(
                f"block {height}'s header is damaged (it does not hash to its block hash)"
            )
        return header

    def _decode_tx(self, tx_hash: bytes, raw: bytes) -> Transaction:
        tx = self._decode(Transaction.decode, raw, f"transaction {short(tx_hash)}")
        if tx.hash != tx_hash:
            self._corrupt(f"transaction {short(tx_hash)} is stored with other bytes")
        return tx

    def _decode(self, decoder: Callable[[bytes], _T], raw: bytes, what: str) -> _T:
        try:
            return decoder(raw)
        except DecodeError as exc:
            self._corrupt(f"{what} does not decode: {exc}")

    def _corrupt(self, detail: str) -> NoReturn:
        self._info.corrupt(detail)
