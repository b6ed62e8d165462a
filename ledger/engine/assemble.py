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
from crypto import keys
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
#: Consensus signatures remembered as valid (a few blocks' votes, certificates and
#: retransmissions; each entry is a vote's ~200 bytes).
MAX_REMEMBERED_SIGNATURES = 4096


class RememberedSignatures:
    """``crypto.keys.verify`` for consensus messages, remembering the ones that verified.

    Under load a replica that saw no commit for a while resends its in-flight votes, and
    certificates repeat votes already received one by one: a node measured under `quorum
    bench` got each PREPARE and COMMIT about twice. A repeat of exactly the same key,
    domain, bytes and signature is answered from memory instead of running Ed25519 again
    (~55 us). Only successes are kept, so a forgery is checked (and refused) every time;
    the answer is a pure function of the arguments, so remembering changes no outcome.
    Shared by the event loop and worker threads: single dict operations only.
    """

    __slots__ = ("_capacity", "_valid")

    def __init__(self, capacity: int = MAX_REMEMBERED_SIGNATURES) -> None:
        self._valid: dict[tuple[bytes, bytes, str, str, bytes], None] = {}
        self._capacity = capacity

    def verify(
        self, public_key: bytes, chain_id: str, kind: str, message: bytes, signature: bytes
    ) -> bool:
        key = (public_key, signature, chain_id, kind, message)
        if key in self._valid:
            return True
        if not keys.verify(public_key, chain_id, kind, message, signature):
            return False
        if len(self._valid) >= self._capacity:
            self._valid.clear()
        self._valid[key] = None
        return True


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
        verify_signature=RememberedSignatures().verify,
    )
    return config
