"""Child process for the store's kill -9 test: append blocks forever, report each commit.

Usage: ``python tests/store_worker.py STORE_PATH [BATCH]``. Opens (or creates) the store
for the test genesis, then appends blocks of a few transfers with receipts, state changes —
including ``COUNTER_KEY`` set to the block's height and a deletion — and the state tree
update they make (the header commits to its root), printing each height on stdout only
after ``append_block`` returned (so every printed height is acknowledged). With BATCH > 1
it appends BATCH blocks at a time in one ``append_blocks`` transaction (as replay does)
and prints the last height of each batch.
It never exits on its own: the test kills it. Never used outside tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_store import (
    USER_KEYS,
    build_block,
    make_genesis,
    next_block,
    transfer,
    transfer_changes,
)

from genesis.document import Genesis
from ledger.chain.state_tree import StateTree, TreeUpdate
from ledger.chain.state_tree_nodes import NodeReader, OverlayNodes
from ledger.chain.store import BlockWrite, Store
from ledger.chain.types import Block, CommitCertificate, Receipt

TXS_PER_BLOCK = 8

Pending = tuple[Block, CommitCertificate, list[Receipt], dict[bytes, bytes | None], TreeUpdate]


def build(store: Store, genesis: Genesis) -> Pending:
    """The block on top of the store's head, with its state changes and tree update."""
    height = store.head_height + 1
    txs = [transfer(USER_KEYS[i % len(USER_KEYS)], height * 1000 + i) for i in range(TXS_PER_BLOCK)]
    changes = transfer_changes(txs, height)
    changes[b"x:height:%d" % height] = b"present"
    changes[b"x:height:%d" % (height - 1)] = None
    block, cert, receipts, update = next_block(store, txs, genesis, changes)
    return block, cert, receipts, changes, update


def build_batch(store: Store, genesis: Genesis, count: int) -> list[BlockWrite]:
    """``count`` blocks on top of the head, each on the one before (not yet written)."""
    nodes: NodeReader = store
    root, height, prev = store.state_root, store.head_height, store.head_hash
    writes = []
    for _ in range(count):
        height += 1
        txs = [transfer(USER_KEYS[i % len(USER_KEYS)], height * 1000 + i) for i in range(8)]
        changes = transfer_changes(txs, height)
        changes[b"x:height:%d" % height] = b"present"
        changes[b"x:height:%d" % (height - 1)] = None
        update = StateTree.at(root, nodes).apply(changes)
        block, cert, receipts = build_block(genesis, height, prev, txs, state_root=update.new_root)
        writes.append(BlockWrite(block, cert, receipts, changes, update))
        nodes, root, prev = OverlayNodes(nodes, update), update.new_root, block.hash()
    return writes


def main(path: str, batch: int) -> None:
    genesis = make_genesis()
    with Store.open(path, genesis) as store:
        if batch > 1:
            writes = build_batch(store, genesis, batch)
            while True:
                store.append_blocks(writes)
                writes = build_batch(store, genesis, batch)
                sys.stdout.write(f"{store.head_height}\n")
                sys.stdout.flush()
        pending = build(store, genesis)
        while True:
            block, cert, receipts, changes, update = pending
            store.append_block(block, cert, receipts, changes, tree_update=update)
            # Build the next block BEFORE acknowledging this one, so that the parent's
            # SIGKILL (sent as soon as it reads the line) lands inside append_block.
            pending = build(store, genesis)
            sys.stdout.write(f"{block.height}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
