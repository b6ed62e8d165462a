"""One validator's engine put together from its genesis: the consensus core's config, the
block cache it digests payloads with, the mempool, the proposer policy and backpressure.
The trio node and the load simulator build their engines here, so both run the same one.

Never: read a clock, a file or the network (the caller hands in the committed tip and the
replica, restored or fresh).
"""

from __future__ import annotations

from collections.abc import Callable

from consensus.config import ReplicaConfig
from consensus.replica import Replica
from genesis.document import Genesis
from ledger.chain.execute import ChainRules, ChainTip
from ledger.engine.admission import Backpressure
from ledger.engine.blocks import BlockCache
from ledger.engine.engine import Engine, ReceiptRenderer
from ledger.engine.mempool import Mempool
from ledger.engine.proposer import Proposer
from ledger.engine.speculative import SpeculativeBlocks

#: Room for a block's record framing around its transactions' bytes.
BLOCK_FRAMING_BYTES = 1024


def assemble_engine(
    genesis: Genesis,
    *,
    tip: ChainTip,
    genesis_state_root: bytes,
    mempool: Mempool,
    replica: Callable[[ReplicaConfig], Replica],
    render_receipt: ReceiptRenderer,
    tick_ms: int,
    engine_class: type[Engine] = Engine,
) -> Engine:
    """The engine of one validator; ``replica`` makes the core from the genesis epoch's
    config (a fresh ``Replica(config, key)`` or ``Replica.restore(config, key, persisted,
    head)``; after a set change, of the active epoch's config, ledger/engine/epochs.py)."""
    rules = ChainRules.from_genesis(genesis)
    params = genesis.consensus
    blocks = BlockCache(
        max_block_bytes=rules.max_block_bytes + BLOCK_FRAMING_BYTES, known=lambda: mempool.by_raw
    )
    config = genesis_config(genesis, genesis_state_root, blocks.digest, tick_ms)
    return engine_class(
        replica=replica(config),
        base_config=config,
        rules=rules,
        speculative=SpeculativeBlocks(tip),
        mempool=mempool,
        proposer=Proposer(
            max_block_txs=rules.max_block_txs,
            view_change_timeout_ms=params.view_change_timeout_ms,
        ),
        blocks=blocks,
        render_receipt=render_receipt,
        backpressure=Backpressure(),
    )


def genesis_config(
    genesis: Genesis,
    genesis_state_root: bytes,
    block_digest: Callable[[bytes], bytes | None],
    tick_ms: int,
) -> ReplicaConfig:
    """The genesis epoch's consensus config (the base of every later epoch's)."""
    rules = ChainRules.from_genesis(genesis)
    params = genesis.consensus
    config = ReplicaConfig(
        chain_id=genesis.chain_id,
        validators=rules.validators,
        genesis_height=genesis.initial_height - 1,
        genesis_digest=genesis.hash(),
        genesis_state_root=genesis_state_root,
        block_digest=block_digest,
        checkpoint_interval=params.checkpoint_interval,
        watermark_window=params.watermark_window,
        max_pipeline=params.max_pipeline,
        view_change_timeout_ms=params.view_change_timeout_ms,
        max_view_change_timeout_ms=params.max_view_change_timeout_ms,
        max_block_bytes=params.max_block_bytes,
        tick_ms=tick_ms,
        validator_names=tuple(v.name for v in genesis.validators),
    )
    return config
