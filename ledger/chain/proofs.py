"""Proofs a node serves with its reads, so a client holding only the genesis can check them
against one untrusted node (DESIGN section 9, docs/PROTOCOL.md "Verifiable reads").

* :class:`StateProof` — state values (present or absent) at one committed height: the
  block header of that height, its commit certificate (q validators' COMMIT signatures over
  the header's hash), and for each key a sparse-Merkle proof against the header's
  ``state_root`` (``crypto.smt_proof``). At the genesis height there is no header: the
  client computes the genesis state root from the genesis document itself.
* :class:`TxProof` — a committed transaction and its receipt: the header and certificate
  of its block, and RFC 6962 audit paths of the transaction's hash under ``tx_root`` and of
  the receipt's bytes under ``receipts_root``, at its position.

Built under :meth:`Store.holding`, so the values, the tree and the header belong to one
height. JSON form: every byte string is lower-case hex; see :meth:`to_json`.

Never: build a proof from anything but the store's committed data, or decide validity
(the client does: ledger/light.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from crypto.merkle import MerkleLevels, leaf_hash
from crypto.smt_proof import Proof
from ledger.chain.epoch_links import LINK_PREFIX, EpochLink, stored_links
from ledger.chain.execute import ChainTip
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import NodeReader
from ledger.chain.store import Store
from ledger.chain.types import BlockHeader, CommitCertificate, Receipt, Transaction

#: Blocks whose Merkle trees a node keeps for transaction proofs.
BLOCK_TREES_CACHED = 32


class RecordingTip:
    """A committed tip that remembers every state key read through it (in first-read
    order), so a contract query can be served with the proofs of exactly what it read."""

    def __init__(self, tip: ChainTip) -> None:
        self._tip = tip
        self.read: dict[bytes, None] = {}

    @property
    def height(self) -> int:
        return self._tip.height

    @property
    def block_hash(self) -> bytes:
        return self._tip.block_hash

    @property
    def timestamp_ms(self) -> int:
        return self._tip.timestamp_ms

    @property
    def state_root(self) -> bytes:
        return self._tip.state_root

    @property
    def nodes(self) -> NodeReader:
        return self._tip.nodes

    def get_state(self, key: bytes) -> bytes | None:
        self.read[key] = None
        return self._tip.get_state(key)


@dataclass(frozen=True, slots=True)
class StateRead:
    key: bytes
    value: bytes | None
    proof: Proof


@dataclass(frozen=True, slots=True)
class StateProof:
    height: int
    header: BlockHeader | None
    certificate: CommitCertificate | None
    reads: tuple[StateRead, ...]
    #: The chain of validator sets up to the head (ledger/chain/epoch_links.py).
    epochs: tuple[EpochLink, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **epochs_json(self.epochs),
            "height": self.height,
            "header": None if self.header is None else self.header.raw.hex(),
            "certificate": None if self.certificate is None else self.certificate.encode().hex(),
            "state": [
                {
                    "key": r.key.hex(),
                    "value": None if r.value is None else r.value.hex(),
                    "proof": r.proof.to_hex(),
                }
                for r in self.reads
            ],
        }


@dataclass(frozen=True, slots=True)
class TxProof:
    height: int
    position: int
    tx_count: int
    header: BlockHeader
    certificate: CommitCertificate
    tx_path: tuple[bytes, ...]
    receipt: Receipt
    receipt_path: tuple[bytes, ...]
    epochs: tuple[EpochLink, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            **epochs_json(self.epochs),
            "height": self.height,
            "position": self.position,
            "tx_count": self.tx_count,
            "header": self.header.raw.hex(),
            "certificate": self.certificate.encode().hex(),
            "tx_path": [p.hex() for p in self.tx_path],
            "receipt": self.receipt.raw.hex(),
            "receipt_path": [p.hex() for p in self.receipt_path],
        }


def prove_state(store: Store, keys: Sequence[bytes]) -> StateProof:
    """The values of ``keys`` at the head, each with its proof, and what to check them by."""
    with store.holding():
        tip = store.tip()
        tree = StateTree.at(tip.state_root, tip.nodes)
        reads = tuple(StateRead(k, store.get_state(k), tree.prove(k)) for k in keys)
        if tip.height < store.initial_height:
            return StateProof(tip.height, None, None, reads)
        header = store.get_header(tip.height)
        certificate = store.get_certificate(tip.height)
        links = chain_of_sets(store)
    if header is None or certificate is None:
        raise AssertionError(f"the head block {tip.height} has no header or certificate")
    return StateProof(tip.height, header, certificate, reads, links)


def chain_of_sets(store: Store) -> tuple[EpochLink, ...]:
    """The store's epoch links, in order (none on a chain without a set change)."""
    return tuple(stored_links(store.consensus_meta_items(LINK_PREFIX)))


def epochs_json(links: tuple[EpochLink, ...]) -> dict[str, Any]:
    """The ``epochs`` field of a proof (absent when there is no link)."""
    return {"epochs": [link.to_json() for link in links]} if links else {}


class BlockTrees:
    """The tx_root and receipts_root trees of recently proven blocks (bounded, LRU): a
    block's leaves are read and hashed once, then every proof in it costs O(log n).
    Committed blocks never change, so an entry is never stale."""

    def __init__(self, capacity: int = BLOCK_TREES_CACHED) -> None:
        self._capacity = capacity
        self._trees: OrderedDict[int, tuple[MerkleLevels, MerkleLevels, list[bytes]]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()  # API reads run in several worker threads

    def get(self, store: Store, height: int) -> tuple[MerkleLevels, MerkleLevels, list[bytes]]:
        with self._lock:
            found = self._trees.get(height)
            if found is not None:
                self._trees.move_to_end(height)
                return found
        hashes = store.get_block_tx_hashes(height)
        receipts = store.get_block_receipt_raws(height)
        if not hashes or len(receipts) != len(hashes):
            raise AssertionError(f"block {height} is incomplete in the store")
        built = (
            MerkleLevels([leaf_hash(h) for h in hashes]),
            MerkleLevels([leaf_hash(r) for r in receipts]),
            receipts,
        )
        with self._lock:
            self._trees[height] = built
            while len(self._trees) > self._capacity:
                self._trees.popitem(last=False)
        return built


def prove_transaction(
    store: Store, tx_hash: bytes, trees: BlockTrees | None = None
) -> tuple[Transaction, TxProof] | None:
    """A committed transaction with the proof of it and its receipt, or None."""
    trees = trees or BlockTrees(1)
    with store.holding():
        found = store.get_transaction(tx_hash)
        if found is None:
            return None
        tx, height, position = found
        header = store.get_header(height)
        certificate = store.get_certificate(height)
        tx_tree, receipt_tree, receipts = trees.get(store, height)
        links = chain_of_sets(store)
    if header is None or certificate is None:
        raise AssertionError(f"block {height} is incomplete in the store")
    return tx, TxProof(
        height,
        position,
        tx_tree.size,
        header,
        certificate,
        tuple(tx_tree.audit_path(position)),
        Receipt.decode(receipts[position]),
        tuple(receipt_tree.audit_path(position)),
        links,
    )
