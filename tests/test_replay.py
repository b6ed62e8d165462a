"""Fast replay of certified blocks (issue 15): a node fed fetched blocks executes each run
at once and writes it in ONE SQLite transaction; the result is the chain the validators
certified, signature checks included (a certified block with a forged signature halts
the node, as re-executing it one by one would).

The node here is the real one (ledger/node/node.py) with no network: its engine is stepped
with ``Fetched`` replies built from a source store of real, executed, certified blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import trio

from consensus.limits import MAX_CATCHUP_BLOCKS
from consensus.ready import FetchRequest
from genesis.document import Genesis
from ledger.chain.execute import ChainRules, build_block
from ledger.chain.store import BlockWrite, Store
from ledger.chain.types import Block, Transaction, Transfer
from ledger.config import HostPort, NodeConfig
from ledger.engine.events import Fetched
from ledger.node import wire
from ledger.node.node import Node
from ledger.node.peer_limits import Fetcher
from ledger.node.replay import prepare_fetched
from ledger.node.support import NodeHalted
from tests.test_store import USER_KEYS, VALIDATOR_KEYS, certify, make_genesis

TXS_PER_BLOCK = 40
OWN = 3


def _transfers(genesis: Genesis, nonces: list[int], count: int) -> list[Transaction]:
    txs = []
    for i in range(count):
        k = i % len(USER_KEYS)
        to = USER_KEYS[(k + 1) % len(USER_KEYS)].address
        txs.append(
            Transaction.create(
                USER_KEYS[k], genesis.chain_id, nonces[k], Transfer(to, 1), gas_limit=21_000
            )
        )
        nonces[k] += 1
    return txs


def _forged(tx: Transaction) -> Transaction:
    """The same transaction with a signature that does not verify."""
    return Transaction(
        tx.chain_id, tx.sender, tx.nonce, tx.payload, tx.gas_limit, tx.expiry_height, bytes(64)
    )


def make_chain(
    store: Store, genesis: Genesis, blocks: int, *, forged_at: int | None = None
) -> list[tuple[bytes, bytes]]:
    """Append ``blocks`` executed, certified blocks of transfers to ``store``; their wire
    form (block, certificate). At height ``forged_at`` one signature does not verify (the
    'validators' certify it anyway)."""
    rules = ChainRules.from_genesis(genesis)
    nonces = [0] * len(USER_KEYS)
    out = []
    for _ in range(blocks):
        tip = store.tip()
        txs = _transfers(genesis, nonces, TXS_PER_BLOCK)
        if tip.height + 1 == forged_at:
            txs[3] = _forged(txs[3])
        executed, skipped = build_block(
            tip,
            txs,
            view=0,
            proposer=0,
            timestamp_ms=genesis.genesis_time_ms + tip.height + 1,
            rules=rules,
            signature_ok=lambda tx: True,
        )
        assert not skipped
        certificate = certify(executed.block)
        store.append_blocks(
            [
                BlockWrite(
                    executed.block,
                    certificate,
                    executed.receipts,
                    executed.overlay.writes,
                    executed.tree_update,
                )
            ]
        )
        out.append((executed.block.encode(), certificate.encode()))
    return out


def _node(tmp_path: Path, genesis: Genesis, store: Store) -> Node:
    config = NodeConfig(
        home=tmp_path,
        name=f"v{OWN}",
        rpc_listen=HostPort("127.0.0.1", 1),
        p2p_listen=HostPort("127.0.0.1", 2),
    )
    return Node(config=config, genesis=genesis, key=VALIDATOR_KEYS[OWN], store=store)


def _feed(
    node: Node,
    replies: Sequence[Sequence[tuple[bytes, bytes]]],
    written: list[list[int]] | None = None,
    *,
    prepared: bool = False,
) -> list[list[int]]:
    """Step the node's engine with each catch-up reply and act on it; the heights of each
    SQLite transaction the store wrote (also appended to ``written`` as they happen)."""
    written = [] if written is None else written
    store = node.store
    append = store.append_blocks

    def recording(writes: Sequence[BlockWrite]) -> None:
        written.append([w.block.height for w in writes])
        append(writes)

    store.append_blocks = recording  # type: ignore[method-assign]

    async def main() -> None:
        await node._handle([node.engine.start()])
        for reply in replies:
            decoded: tuple[Block | None, ...] = ()
            if prepared:  # as the node's intake does: decoded and checked off the loop
                limit = node.engine.blocks.max_bytes
                decoded = await prepare_fetched(reply, node.replica.config, limit, node.verified)
            await node._handle([node.engine.step(Fetched(tuple(reply), decoded))])

    trio.run(main)
    return written


@pytest.fixture
def genesis() -> Genesis:
    return make_genesis()


@pytest.mark.parametrize("prepared", [False, True])
def test_fetched_runs_are_executed_at_once_and_written_in_one_transaction_each(
    tmp_path: Path, genesis: Genesis, prepared: bool
) -> None:
    source = Store.open(tmp_path / "source.db", genesis)
    chain = make_chain(source, genesis, 70)
    target = Store.open(tmp_path / "target.db", genesis)
    node = _node(tmp_path, genesis, target)
    written = _feed(node, [chain[:64], chain[64:]], prepared=prepared)
    assert written == [list(range(1, 65)), list(range(65, 71))]
    assert (target.head_height, target.head_hash, target.state_root) == (
        source.head_height,
        source.head_hash,
        source.state_root,
    )
    assert node.counters["replay.blocks"] == 70
    # Each signature is checked once: before the core saw the reply, or in the replay.
    assert len(node.verified) == 70 * TXS_PER_BLOCK
    assert node.counters["replay.signatures_verified"] == (0 if prepared else 70 * TXS_PER_BLOCK)
    assert node.replica.committed_height == 70
    # The snapshot at the checkpoint inside the first run holds that height's state.
    assert [s.height for s in target.snapshots()] == [s.height for s in source.snapshots()]
    assert target.snapshots()[0].state_root == source.snapshots()[0].state_root
    target.check_integrity()


def test_a_certified_block_with_a_forged_signature_halts_the_node(
    tmp_path: Path, genesis: Genesis
) -> None:
    source = Store.open(tmp_path / "source.db", genesis)
    chain = make_chain(source, genesis, 12, forged_at=9)
    target = Store.open(tmp_path / "target.db", genesis)
    node = _node(tmp_path, genesis, target)
    written: list[list[int]] = []
    with pytest.raises(NodeHalted, match=r"block 9 .* does not validate here"):
        written = _feed(node, [chain], written)
    # The blocks before it are the chain's: written (in one transaction), then block 9 is
    # asked for again, found invalid, and the node stops before anything else is written.
    assert written == [list(range(1, 9))]
    assert target.head_height == 8 and target.head_hash == source.get_block_hash(8)


def test_signatures_are_not_checked_ahead_for_a_block_whose_certificate_fails(
    tmp_path: Path, genesis: Genesis
) -> None:
    source = Store.open(tmp_path / "source.db", genesis)
    chain = make_chain(source, genesis, 3)
    raw_block, _ = chain[1]
    block = Block.decode(raw_block)
    chain[1] = (raw_block, certify(block, signers=2).encode())  # under a quorum
    target = Store.open(tmp_path / "target.db", genesis)
    node = _node(tmp_path, genesis, target)
    engine = node.engine

    async def main() -> tuple[Block | None, ...]:
        limit = engine.blocks.max_bytes
        return await prepare_fetched(chain, node.replica.config, limit, node.verified)

    decoded = trio.run(main)
    assert len(node.verified) == 2 * TXS_PER_BLOCK  # blocks 1 and 3 only
    assert [b.hash() for b in decoded if b is not None] == [
        Block.decode(raw).hash() for raw, _ in chain
    ]


class _Net:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int]] = []

    def connected_peers(self) -> list[int]:
        return [0, 1, 2]

    def send(self, peer: int, payload: bytes, bulk: bool = False) -> None:
        wanted = wire.BlocksWanted.decode(wire.split(payload)[1])
        self.sent.append((wanted.from_height, wanted.to_height))


def test_asking_ahead_stops_where_the_core_could_not_hold_the_blocks(
    tmp_path: Path, genesis: Genesis
) -> None:
    """A full reply makes the node ask for the next range at once, but never past what the
    core holds above its head (MAX_CATCHUP_BLOCKS), and never for heights it holds or that
    are still being prepared (asking again and again for those was a bug found measuring)."""
    source = Store.open(tmp_path / "source.db", genesis)
    chain = make_chain(source, genesis, 64)
    fetcher = Fetcher(OWN)
    reply = chain[:64]
    assert fetcher.following(reply, 0) == FetchRequest(65, 128)
    assert fetcher.following(reply[:63], 0) is None  # the peer had no more
    # With the head 193 blocks below the reply's end, the next 64 would reach 257 above it.
    assert fetcher.following(reply, -MAX_CATCHUP_BLOCKS + 127) is None
    net = _Net()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            with fetcher.arriving(reply, 0):
                assert not fetcher.ask(net, nursery, FetchRequest(1, 64), lambda h: False)
                fetcher.ask(net, nursery, FetchRequest(1, 70), lambda h: h == 65)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert net.sent == [(66, 70)]
