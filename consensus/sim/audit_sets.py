"""The auditor's own chain of validator sets: which set, under which signing domain,
certifies each height (docs/CONSENSUS.md §12), written again without consensus code.

Like audit.py, this module imports nothing from ``consensus``: its quorum arithmetic, its
copy of the epoch signing domain and its replay of the set rules (votes as request ids,
the q-th vote schedules the change, the next checkpoint block activates it) are written
here a second time, so a bug in the simulator's or the core's version is not shared. The
auditor feeds it the decided blocks in height order (:meth:`SetReplay.after_block`) and
asks it for the set of an epoch (:class:`AuditEpoch`).

Inputs are data, as a genesis file is: every validator's public key by global index, the
plan's changes as (action, target) pairs, the checkpoint interval.

House rule: observes only; pure functions of the decided chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from crypto.hashing import sha256

#: The auditor's copy of the vote encoding (consensus/sim/epochs.py): base and stride.
VOTE_BASE: Final = 10_000_000
VOTE_STRIDE: Final = 1024
MIN_MEMBERS: Final = 4


def faulty_bound(n: int) -> int:
    """The most Byzantine validators n can tolerate: the largest f with 3f < n."""
    return (n - 1) // 3


def quorum_of(n: int) -> int:
    """The smallest q whose any two quorums share f+1 validators: 2q - n >= f + 1."""
    return (n + faulty_bound(n)) // 2 + 1


def vote_change(request: int) -> int | None:
    """The change a vote request is for (None: an ordinary request)."""
    return (request - VOTE_BASE) // VOTE_STRIDE if request >= VOTE_BASE else None


def signing_domain(chain_id: str, epoch: int) -> str:
    """The chain id consensus messages of ``epoch`` are signed under: the chain's own for
    epoch 0, ``e<epoch>-<first 24 hex digits of SHA-256(chain id)>`` after."""
    if epoch == 0:
        return chain_id
    return f"e{epoch}-{sha256(chain_id.encode()).hex()[:24]}"


@dataclass(frozen=True, slots=True)
class SetRules:
    """What the auditor is told about the sets, as data."""

    #: Public key of every validator that may ever be a member, by global index.
    keys: tuple[bytes, ...]
    #: The planned changes in order: ("add" | "remove", global index).
    changes: tuple[tuple[str, int], ...] = ()
    checkpoint_interval: int = 1


@dataclass(slots=True)
class AuditEpoch:
    number: int
    #: The anchor: the block after which this set certifies (genesis, or the switch block).
    start: int
    anchor: bytes
    root: bytes
    members: tuple[int, ...]
    keys: tuple[bytes, ...]
    domain: str
    n: int = field(init=False)
    q: int = field(init=False)
    #: The epoch's last block, once decided (None: still open).
    end: int | None = None

    def __post_init__(self) -> None:
        self.n = len(self.members)
        self.q = quorum_of(self.n)

    def holds(self, height: int) -> bool:
        return self.start < height and (self.end is None or height <= self.end)


class SetReplay:
    """The set state of the decided chain, block by block."""

    def __init__(self, rules: SetRules, members: tuple[int, ...], genesis_height: int) -> None:
        self.rules = rules
        self.genesis_height = genesis_height
        self.members = members
        self.epoch = 0
        self.scheduled: tuple[int, ...] | None = None
        self.votes: dict[int, list[int]] = {}

    def after_block(self, height: int, ids: Sequence[int]) -> tuple[tuple[int, ...] | None, str]:
        """Apply a decided block: (the set it activated or None, why a vote in it should
        have been refused or "")."""
        problem = ""
        for request in ids:
            if request >= VOTE_BASE:
                problem = problem or self._vote(*divmod(request - VOTE_BASE, VOTE_STRIDE))
        offset = height - self.genesis_height
        if self.scheduled is None or offset % self.rules.checkpoint_interval:
            return None, problem
        self.members, self.scheduled = self.scheduled, None
        self.epoch += 1
        return self.members, problem

    def _vote(self, number: int, voter: int) -> str:
        if not 0 <= number < len(self.rules.changes):
            return f"a vote for change {number}, which no plan holds"
        action, target = self.rules.changes[number]
        if number != self.epoch:
            return f"a vote for change {number} in epoch {self.epoch}"
        if voter not in self.members:
            return f"a vote from node{voter}, not a member"
        if action == "remove" and (target not in self.members or len(self.members) <= MIN_MEMBERS):
            return f"a vote to remove node{target}, which the set cannot lose"
        if action == "add" and target in self.members:
            return f"a vote to add node{target}, already a member"
        if self.scheduled is not None:
            return ""
        voters = [v for v in self.votes.get(number, []) if v in self.members]
        if voter in voters:
            return ""
        voters.append(voter)
        if len(voters) < quorum_of(len(self.members)):
            self.votes[number] = voters
            return ""
        if action == "add":
            self.scheduled = (*self.members, target)
        else:
            self.scheduled = tuple(m for m in self.members if m != target)
        self.votes = {}
        return ""
