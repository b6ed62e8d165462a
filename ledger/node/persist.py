"""How the consensus core's durable records live in the store's consensus_meta table.

Keys: ``hard`` (the HardState, replaced whole), ``signed/<view>/<height>/<phase>`` (the
double-sign guard, one per slot) and ``prepared/<height>`` (prepared certificates). Numbers
are zero-padded so keys sort numerically. Pruning follows consensus/records.py: guard
records below the current view or at/below the stable checkpoint, and prepared records at or
below the committed height, may go.

Never: drop a guard record the replica may still need (pruning only removes what the
records module says is safe), or write a PersistBatch in more than one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from consensus.ready import ReplicaStatus
from consensus.records import (
    HardState,
    PersistBatch,
    PersistedState,
    Phase,
    PreparedRecord,
    SignedSlot,
)
from ledger.chain.epoch_links import LINK_PREFIX

HARD_KEY: Final = "hard"
#: The validator-set epoch the records belong to (absent: epoch 0). Records of another
#: epoch than the active one are the old epoch's, left by a stop during the switch: dropped.
EPOCH_KEY: Final = "epoch"
_SIGNED: Final = "signed/"
_PREPARED: Final = "prepared/"


def signed_key(slot: SignedSlot) -> str:
    return f"{_SIGNED}{slot.view:020d}/{slot.height:020d}/{slot.phase}"


def prepared_key(record: PreparedRecord) -> str:
    return f"{_PREPARED}{record.height:020d}"


def batch_records(batch: PersistBatch) -> dict[str, bytes | None]:
    """A PersistBatch as consensus_meta upserts."""
    records: dict[str, bytes | None] = {}
    if batch.hard_state is not None:
        records[HARD_KEY] = batch.hard_state.encode()
    for slot in batch.signed:
        records[signed_key(slot)] = slot.encode()
    for record in batch.prepared:
        records[prepared_key(record)] = record.encode()
    return records


def records_epoch(items: Iterable[tuple[str, bytes]]) -> int:
    """The epoch the stored records belong to."""
    for key, value in items:
        if key == EPOCH_KEY:
            return int(value.decode("ascii"))
    return 0


def epoch_switch_records(keys: Iterable[str], epoch: int) -> dict[str, bytes | None]:
    """Delete every record of the old epoch and mark the new one, in one write (the chain
    of sets' links, ``epochs/...``, are not consensus records: they stay)."""
    records: dict[str, bytes | None] = dict.fromkeys(
        sorted(k for k in keys if not k.startswith(LINK_PREFIX))
    )
    records[EPOCH_KEY] = str(epoch).encode("ascii")
    return records


def load_persisted(items: Iterable[tuple[str, bytes]]) -> PersistedState:
    """Decode what the store holds; a record that does not decode is a corrupt store (raises)."""
    hard = None
    signed = []
    prepared = []
    for key, value in items:
        if key == HARD_KEY:
            hard = HardState.decode(value)
        elif key.startswith(_SIGNED):
            signed.append(SignedSlot.decode(value))
        elif key.startswith(_PREPARED):
            prepared.append(PreparedRecord.decode(value))
    return PersistedState(hard, tuple(signed), tuple(prepared))


def prunable(
    keys: Iterable[str], *, view: int, stable_height: int, committed_height: int
) -> list[str]:
    """Keys the records module says may be deleted now."""
    doomed = []
    for key in keys:
        if key.startswith(_SIGNED):
            _, view_s, height_s, phase = key.split("/")
            slot_view, height = int(view_s), int(height_s)
            ordering = phase in (Phase.PRE_PREPARE, Phase.PREPARE, Phase.COMMIT)
            if slot_view < view or (ordering and height <= stable_height):
                doomed.append(key)
        elif key.startswith(_PREPARED) and int(key[len(_PREPARED) :]) <= committed_height:
            doomed.append(key)
    return doomed


def prunable_now(keys: Iterable[str], status: ReplicaStatus) -> list[str]:
    """:func:`prunable` at the replica's current view, stable checkpoint and head."""
    return prunable(
        keys,
        view=status.view,
        stable_height=status.stable_checkpoint,
        committed_height=status.committed_height,
    )
