"""Why is this replica not progressing? One sentence naming the missing quorum.

Used by ``Replica.status()`` (and through it by ``quorum testnet status`` and the
simulator's failure reports).

House rule: read-only over the parts it is handed; it never changes anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.catchup import Catchup
from consensus.committed import CommittedChain
from consensus.config import ReplicaConfig
from consensus.proposals import Proposals
from consensus.ready import ReplicaStatus
from consensus.slots import SlotLog
from consensus.view import ViewChangeVotes, ViewState


@dataclass(frozen=True, slots=True)
class Parts:
    """What the diagnosis reads."""

    config: ReplicaConfig
    index: int
    view: ViewState
    votes: ViewChangeVotes
    log: SlotLog
    chain: CommittedChain
    stable_height: int
    catchup: Catchup
    proposals: Proposals


def _names(config: ReplicaConfig, indices: list[int]) -> str:
    return ",".join(config.name(i) for i in indices) or "nobody"


def waiting_for(p: Parts) -> str:
    config, view, log, chain = p.config, p.view, p.log, p.chain
    q = config.quorum
    if not view.active:
        senders = [s for s, _, _ in p.votes.for_view(view.view)]
        missing = [i for i in range(config.n) if i not in senders]
        next_primary = config.name(config.primary(view.view))
        return (
            f"view change to {view.view}: have {len(senders)}/{q} view-change messages "
            f"(missing from {_names(config, missing)}); waiting for NEW-VIEW from {next_primary}"
        )
    if p.catchup.target > chain.height and chain.height + 1 not in log.slots:
        return f"catching up: committed {chain.height}, a quorum is at {p.catchup.target} or above"
    height = chain.height + 1
    slot = log.get(height)
    primary = config.primary(view.view)
    if slot is None or slot.header is None:
        if primary == p.index:
            if not p.proposals.pending:
                return f"height {height}: idle, no requests pending"
            if p.proposals.outstanding is not None:
                return f"height {height}: waiting for the driver to build a proposal"
            return f"height {height}: nothing to propose yet"
        if not p.proposals.pending and p.proposals.oldest_waiting is None:
            return f"height {height}: idle, no requests pending"
        return f"height {height}: waiting for PRE-PREPARE from {config.name(primary)}"
    digest = slot.header.digest
    verdict = log.verdict(height, digest)
    if not log.has_payload(height, digest) and verdict is None:
        return f"height {height}: waiting for the block payload from peers"
    if verdict is None:
        return f"height {height}: waiting for the driver to validate the proposal"
    if not verdict.ok:
        return f"height {height}: the proposal is invalid; waiting for a view change"
    if not slot.prepared:
        have = sorted(s for s, (d, _) in slot.prepares.items() if d == digest and s != primary)
        missing = [i for i in range(config.n) if i != primary and i not in have]
        return (
            f"height {height}: pre-prepared, have {len(have)}/{q - 1} prepares, "
            f"missing from {_names(config, missing)}"
        )
    have = sorted(s for s, (d, _) in slot.commits.items() if d == digest)
    missing = [i for i in range(config.n) if i not in have]
    return (
        f"height {height}: prepared, have {len(have)}/{q} commits, "
        f"missing from {_names(config, missing)}"
    )


def replica_status(p: Parts, statistics: dict[str, int]) -> ReplicaStatus:
    in_flight = tuple(
        h for h in sorted(p.log.slots) if h > p.chain.height and p.log.slots[h].header is not None
    )
    return ReplicaStatus(
        index=p.index,
        view=p.view.view,
        primary=p.config.primary(p.view.view),
        view_active=p.view.active,
        committed_height=p.chain.height,
        committed_digest=p.chain.digest,
        stable_checkpoint=p.stable_height,
        in_flight=in_flight,
        waiting_for=waiting_for(p),
        statistics=statistics,
    )
