"""Child process for the store's kill -9 test: append blocks forever, report each commit.

Usage: ``python tests/store_worker.py STORE_PATH``. Opens (or creates) the store for the
test genesis, then appends blocks of a few transfers with receipts and state changes —
including ``COUNTER_KEY`` set to the block's height and a deletion — printing each height
on stdout only after ``append_block`` returned (so every printed height is acknowledged).
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
    transfer,
    transfer_changes,
)

from genesis.document import Genesis
from ledger.chain.store import Store
from ledger.chain.types import Block, CommitCertificate, Receipt

TXS_PER_BLOCK = 8

Pending = tuple[Block, CommitCertificate, list[Receipt], dict[bytes, bytes | None]]


def build(store_head: tuple[int, bytes], genesis: Genesis) -> Pending:
    height, prev_hash = store_head[0] + 1, store_head[1]
    txs = [transfer(USER_KEYS[i % len(USER_KEYS)], height * 1000 + i) for i in range(TXS_PER_BLOCK)]
    block, cert, receipts = build_block(genesis, height, prev_hash, txs)
    changes = transfer_changes(txs, height)
    changes[b"x:height:%d" % height] = b"present"
    changes[b"x:height:%d" % (height - 1)] = None
    return block, cert, receipts, changes


def main(path: str) -> None:
    genesis = make_genesis()
    with Store.open(path, genesis) as store:
        pending = build((store.head_height, store.head_hash), genesis)
        while True:
            block, cert, receipts, changes = pending
            store.append_block(block, cert, receipts, changes)
            # Build the next block BEFORE acknowledging this one, so that the parent's
            # SIGKILL (sent as soon as it reads the line) lands inside append_block.
            pending = build((block.height, block.hash()), genesis)
            sys.stdout.write(f"{block.height}\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
