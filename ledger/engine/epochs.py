"""The next epoch's consensus config, from the block that ended the epoch (docs/CONSENSUS.md §12).

A block whose execution activated the next validator set (``validators.activated_by`` of
its state writes) ends its epoch: the engine tells the core so (``ends_epoch``), and once
that block is committed the replica of the next epoch starts with it as its genesis: the
new members in the set's order, view 0, no consensus records of the old epoch, messages
signed under ``epoch_chain_id``. The same config is rebuilt on restart from the store's
head and the active set in its state (:func:`epoch_config`).

Never: read the store, a clock or a key (the driver builds the replica from this config).
"""

from __future__ import annotations

import dataclasses

from consensus.config import ReplicaConfig, epoch_chain_id
from ledger.chain.execute import ExecutedBlock
from ledger.chain.validators import ValidatorSet, activated_by


def ends_epoch(executed: ExecutedBlock) -> bool:
    """Executing this block activated the next validator set: it is its epoch's last."""
    return activated_by(executed.overlay.writes) is not None


def epoch_config(
    base: ReplicaConfig,
    genesis_chain_id: str,
    active: ValidatorSet,
    start_digest: bytes,
    start_state_root: bytes,
) -> ReplicaConfig:
    """The config of ``active``'s epoch: ``base`` (the genesis epoch's config: limits,
    timers, the digest function) with the set, the signing domain and the anchor block
    (height ``active.start_height``, hash ``start_digest``) replaced. Epoch 0 is ``base``."""
    if active.epoch == 0:
        return base
    return dataclasses.replace(
        base,
        chain_id=epoch_chain_id(genesis_chain_id, active.epoch),
        validators=active.public_keys,
        validator_names=tuple(m.name for m in active.members),
        genesis_height=active.start_height,
        genesis_digest=start_digest,
        genesis_state_root=start_state_root,
    )
