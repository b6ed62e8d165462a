"""How fast a validator replays certified blocks: the node's catch-up path, in-process.

A program that prints figures (docs/PERFORMANCE.md, "Catch-up"): it builds a chain of
``--blocks`` executed, certified blocks of ``--txs`` signed transfers (a 4-validator
genesis made up here), then feeds it to a fresh validator (the real ``ledger.node.node.Node``
and its SQLite store, no network) as catch-up replies of 64 blocks, and times it until the
store's head is the chain's: wall seconds, blocks and transactions a second, and the
process's CPU milliseconds per block (which a loaded machine inflates less than the wall
time). Each reply goes through what the node's intake does with one (decoded and its
signatures checked off the event loop) when the node has that step::

    python -m ledger.bench.replay --blocks 128 --txs 280

Never: use the network, or a store outside a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from consensus.quorum import quorum_size
from consensus.votes import COMMIT_KIND, commit_vote_body
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from genesis.builder import build_genesis
from genesis.document import Genesis
from ledger.chain.execute import ChainRules, build_block
from ledger.chain.store import Store
from ledger.chain.types import CommitCertificate, Transaction, Transfer
from ledger.config import HostPort, NodeConfig
from ledger.engine.events import Fetched
from ledger.node.node import Node

VALIDATORS = tuple(PrivateKey(sha256(b"replay bench validator %d" % i)) for i in range(4))
SENDERS = tuple(PrivateKey(sha256(b"replay bench sender %d" % i)) for i in range(8))
REPLY_BLOCKS = 64


def make_chain(directory: Path, blocks: int, txs: int) -> tuple[Genesis, list[tuple[bytes, bytes]]]:
    """A genesis and ``blocks`` certified blocks of ``txs`` transfers each (wire form)."""
    genesis = build_genesis(
        "replay-bench",
        [(f"v{i}", k.public_key) for i, k in enumerate(VALIDATORS)],
        [(k.address, 10**15) for k in SENDERS],
        genesis_time="2026-01-01T00:00:00Z",
    )
    rules = ChainRules.from_genesis(genesis)
    nonces = [0] * len(SENDERS)
    chain = []
    with Store.open(directory / "source.db", genesis) as source:
        for _ in range(blocks):
            batch = []
            for i in range(txs):
                k = i % len(SENDERS)
                to = SENDERS[(k + 1) % len(SENDERS)].address
                batch.append(
                    Transaction.create(
                        SENDERS[k], genesis.chain_id, nonces[k], Transfer(to, 1), gas_limit=21_000
                    )
                )
                nonces[k] += 1
            tip = source.tip()
            executed, _ = build_block(
                tip,
                batch,
                view=0,
                proposer=0,
                timestamp_ms=genesis.genesis_time_ms + tip.height + 1,
                rules=rules,
                signature_ok=lambda tx: True,
            )
            block = executed.block
            body = commit_vote_body(0, block.height, block.hash())
            votes = {
                i: VALIDATORS[i].sign(genesis.chain_id, COMMIT_KIND, body)
                for i in range(quorum_size(len(VALIDATORS)))
            }
            certificate = CommitCertificate.assemble(0, block.height, block.hash(), votes)
            source.append_block(
                block,
                certificate,
                executed.receipts,
                executed.overlay.writes,
                tree_update=executed.tree_update,
            )
            chain.append((block.encode(), certificate.encode()))
    return genesis, chain


def replay(directory: Path, genesis: Genesis, chain: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """Feed ``chain`` to a fresh validator as catch-up replies; the figures."""
    config = NodeConfig(
        home=directory,
        name="v3",
        rpc_listen=HostPort("127.0.0.1", 1),
        p2p_listen=HostPort("127.0.0.1", 2),
    )
    store = Store.open(directory / "target.db", genesis)
    node = Node(config=config, genesis=genesis, key=VALIDATORS[3], store=store)
    try:
        from ledger.node.replay import prepare_fetched
    except ImportError:  # an older build (to compare): the core gets the reply as it arrives
        prepare_fetched = None  # type: ignore[assignment]

    async def main() -> tuple[float, float]:
        await node._handle([node.engine.start()])
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(chain), REPLY_BLOCKS):
            reply = chain[i : i + REPLY_BLOCKS]
            if prepare_fetched is None:
                fetched = Fetched(tuple(reply))
            else:
                limit = node.engine.blocks.max_bytes
                decoded = await prepare_fetched(reply, node.replica.config, limit, node.verified)
                fetched = Fetched(tuple(reply), decoded)
            await node._handle([node.engine.step(fetched)])
        return time.perf_counter() - started, time.process_time() - cpu

    try:
        wall_s, cpu_s = trio.run(main)
        if store.head_height != len(chain):
            raise SystemExit(f"replayed to {store.head_height}, not {len(chain)}")
    finally:
        store.close()
    return {
        "blocks": len(chain),
        "seconds": round(wall_s, 2),
        "blocks_per_s": round(len(chain) / wall_s, 1),
        "cpu_ms_per_block": round(cpu_s * 1000 / len(chain), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=128)
    parser.add_argument("--txs", type=int, default=280, help="transfers per block")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="quorum-replay-bench-") as tmp:
        genesis, chain = make_chain(Path(tmp), args.blocks, args.txs)
        figures = replay(Path(tmp), genesis, chain)
    figures["txs_per_block"] = args.txs
    figures["tx_per_s"] = round(figures["blocks_per_s"] * args.txs)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
