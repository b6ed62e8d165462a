"""Why is this replica not progressing? One sentence naming the missing quorum.

Read-only over the replica's state; used by ``Replica.status()`` (and through it by
``quorum testnet status`` and the simulator's failure reports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus.ready import ReplicaStatus

if TYPE_CHECKING:
    from consensus.replica import Replica


def _names(r: Replica, indices: list[int]) -> str:
    return ",".join(r.config.name(i) for i in indices) or "nobody"


def waiting_for(r: Replica) -> str:
    config = r.config
    q = config.quorum
    if not r.active:
        senders = [s for s, _, _ in r.view_changes.for_view(r.view)]
        missing = [i for i in range(config.n) if i not in senders]
        next_primary = config.name(config.primary(r.view))
        return (
            f"view change to {r.view}: have {len(senders)}/{q} view-change messages "
            f"(missing from {_names(r, missing)}); waiting for NEW-VIEW from {next_primary}"
        )
    if r.catchup_target > r.committed_height and r.committed_height + 1 not in r.slots:
        return f"catching up: committed {r.committed_height}, a quorum is at {r.catchup_target} or above"
    height = r.committed_height + 1
    slot = r.slots.get(height)
    primary = r.primary
    if slot is None or slot.header is None:
        if primary == r.index:
            if not r.pending:
                return f"height {height}: idle, no requests pending"
            if r.proposal_outstanding is not None:
                return f"height {height}: waiting for the driver to build a proposal"
            return f"height {height}: nothing to propose yet"
        if not r.pending and r.oldest_waiting is None:
            return f"height {height}: idle, no requests pending"
        return f"height {height}: waiting for PRE-PREPARE from {config.name(primary)}"
    digest = slot.header.digest
    if (height, digest) not in r.payloads and r.verdicts.get((height, digest)) is None:
        return f"height {height}: waiting for the block payload from peers"
    verdict = r.verdicts.get((height, digest))
    if verdict is None:
        return f"height {height}: waiting for the driver to validate the proposal"
    if not verdict.ok:
        return f"height {height}: the proposal is invalid; waiting for a view change"
    if not slot.prepared:
        have = sorted(s for s, (d, _) in slot.prepares.items() if d == digest and s != primary)
        missing = [i for i in range(config.n) if i != primary and i not in have]
        return f"height {height}: pre-prepared, have {len(have)}/{q - 1} prepares, missing from {_names(r, missing)}"
    have = sorted(s for s, (d, _) in slot.commits.items() if d == digest)
    missing = [i for i in range(config.n) if i not in have]
    return f"height {height}: prepared, have {len(have)}/{q} commits, missing from {_names(r, missing)}"


def replica_status(r: Replica) -> ReplicaStatus:
    in_flight = tuple(
        h for h in sorted(r.slots) if h > r.committed_height and r.slots[h].header is not None
    )
    return ReplicaStatus(
        index=r.index,
        view=r.view,
        primary=r.primary,
        view_active=r.active,
        committed_height=r.committed_height,
        committed_digest=r.committed_digest,
        stable_checkpoint=r.stable.height,
        in_flight=in_flight,
        waiting_for=waiting_for(r),
        statistics=r.statistics(),
    )
