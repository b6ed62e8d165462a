"""What ``GET /health`` answers: whether this node can make progress, and if not, why.

A node is healthy while it commits, or is idle with nothing includable waiting, and is
linked to a quorum of the validators (itself included). It is not — 503, with one reason
per problem — when:

* ``starting``: the consensus loop does not run yet;
* ``no_quorum_of_peers``: fewer than q - 1 other members of the active set are linked, so
  no block can gather a quorum through this node;
* ``syncing``: it installs a state snapshot, or is more than ``far_behind_blocks``
  behind the height a quorum of peers claims;
* ``pending_not_committed``: the oldest includable transaction in its mempool has been
  the oldest for longer than the bound (several view-change timeouts: the view changes
  that should have got it committed did not);
* ``retiring``: it was voted out of the validator set and only serves its blocks until
  the new set has taken over (ledger/node/retire.py); ``validator`` says since when.

``/v1/status`` keeps its ``waiting_for`` sentence; the health document repeats it.

Never: read the store (it answers from memory, so a load balancer's probe is cheap), or
call a node idle that has a transaction waiting.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

from ledger.node.epochs import peer_ids
from ledger.node.node import Node
from ledger.node.retire import validator_state

#: The pending bound is this many view-change timeouts, and at least PENDING_BOUND_MIN_MS.
PENDING_BOUND_TIMEOUTS: Final = 5
PENDING_BOUND_MIN_MS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Problem:
    code: str
    message: str


class PendingWatch:
    """How long the mempool's oldest includable transaction has been the oldest.

    Sampled often (ledger/node/observe.py): a change of the oldest means the previous one
    left the mempool (committed, or dropped with an answer), so the waiting is measured
    per transaction, not per node uptime."""

    def __init__(self) -> None:
        self._oldest: bytes | None = None
        self._since_s = 0.0

    def observe(self, oldest: bytes | None, now_s: float) -> None:
        if oldest != self._oldest:
            self._oldest, self._since_s = oldest, now_s

    def oldest(self, now_s: float) -> tuple[bytes, float] | None:
        """The oldest includable transaction and for how many seconds it has been so."""
        if self._oldest is None:
            return None
        return self._oldest, now_s - self._since_s


def pending_bound_ms(node: Node) -> int:
    return max(
        PENDING_BOUND_MIN_MS,
        PENDING_BOUND_TIMEOUTS * node.genesis.consensus.view_change_timeout_ms,
    )


def linked_members(node: Node) -> list[str]:
    """The other members of the active validator set this node has a live link to."""
    config = node.replica_config
    connected = set(node.net.connected_peers()) if node.net is not None else set()
    ids = peer_ids(config, node.genesis)
    return [
        config.name(i)
        for i, peer in enumerate(ids)
        if i != node.replica.index and peer is not None and peer in connected
    ]


def assess(node: Node, watch: PendingWatch, now_s: float | None = None) -> dict[str, Any]:
    """The health document: ``healthy``, its ``problems`` and the facts behind them."""
    now_s = time.monotonic() if now_s is None else now_s
    replica, config = node.replica, node.replica_config
    problems: list[Problem] = []
    if not node.started:
        problems.append(Problem("starting", "the node is starting; consensus does not run yet"))
    linked = linked_members(node)
    quorum = config.quorum
    if len(linked) + 1 < quorum:
        others = [config.name(i) for i in range(config.n) if i != replica.index]
        problems.append(
            Problem(
                "no_quorum_of_peers",
                f"linked to {len(linked)} of the {len(others)} other validators "
                f"({', '.join(linked) or 'none'}); a quorum needs {quorum} of {config.n} "
                "including this node",
            )
        )
    syncing = node.syncing()
    behind = max(0, replica.catchup_target - replica.committed_height)
    far = node.state_sync_min_blocks
    if isinstance(syncing, dict) and syncing.get("mode") == "state_sync":
        problems.append(Problem("syncing", f"installing a state snapshot ({syncing.get('phase')})"))
    elif behind > far:
        problems.append(
            Problem(
                "syncing",
                f"{behind} blocks behind (head {replica.committed_height}, peers at "
                f"{replica.catchup_target} or above; more than {far} is far)",
            )
        )
    bound_ms = pending_bound_ms(node)
    oldest = watch.oldest(now_s)
    oldest_ms = None if oldest is None else int(oldest[1] * 1000)
    status = replica.status()
    if oldest is not None and oldest_ms is not None and oldest_ms > bound_ms:
        problems.append(
            Problem(
                "pending_not_committed",
                f"transaction {oldest[0].hex()[:16]} has waited {oldest_ms // 1000} s without "
                f"a commit (bound {bound_ms // 1000} s); {status.waiting_for}",
            )
        )
    retiring = node.retirement
    if retiring is not None:
        problems.append(
            Problem(
                "retiring",
                f"voted out of the validator set at block {retiring.removed_at}: it takes no "
                f"transactions and stops once the new set certifies block {retiring.removed_at + 1}",
            )
        )
    last_commit_ms = node.last_commit_ms
    return {
        "healthy": not problems,
        "problems": [{"code": p.code, "message": p.message} for p in problems],
        "name": node.names[node.index],
        "height": node.store.head_height,
        "view": status.view,
        "primary": config.name(status.primary),
        "peers": linked,
        "quorum": quorum,
        "validators": config.n,
        "behind_blocks": behind,
        "last_commit_time_ms": last_commit_ms or None,
        "oldest_pending_ms": oldest_ms,
        "pending_bound_ms": bound_ms,
        "waiting_for": status.waiting_for,
        "validator": validator_state(retiring),
    }
