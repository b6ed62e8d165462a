"""Validator-set epochs in the simulator: the plan's set changes, votes as requests, and the
simulated chain's set rules (ledger/chain/validators.py in miniature; docs/CONSENSUS.md §12).

A plan drawn with ``SimParams(epochs=True)`` holds a sequence of set changes: adds (a new
key, global index n, n+1, ..., joining) and removes (never below
:data:`MIN_VALIDATORS`, never leaving more Byzantine members than the smaller set
tolerates). Each change is voted inside the simulated chain: every voter's vote is a
client request whose id encodes (change, voter) (:func:`vote_id`), ordered into blocks like
any other request. Executing a block runs the ledger's rules on the set in its state
(:class:`SetState`):

* a vote from a key outside the active set, or for a change the active set cannot take
  (remove a non-member, fall below four, add a member) is refused: the block is invalid;
  so is a vote for change c outside epoch c (each change is voted in its own epoch: a
  vote left over when its change took effect is dead, never revived by a later set — the
  node's admission refuses such a vote and its mempool drops it, as the driver's does);
* while a set is scheduled a vote is spent without effect (one change per epoch), as is a
  validator's second vote for one change;
* the q-th distinct current member voting for the same change (q of the active set)
  schedules the next set and clears the other pending changes;
* at the end of the first checkpoint block E (``(E - genesis) % checkpoint_interval == 0``)
  at or after that, the scheduled set becomes active with epoch + 1 and start height E:
  block E ends its epoch, certified by the old set; E+1.. belong to the new one.

The set state is a pure function of the chain's request ids, so the state root (which
commits to every id) commits to it too. Votes for change c are submitted only after change
c-1 took effect at an honest replica, so every vote is valid when it is ordered.

House rule: the plan draws from the run's seeded generator only; the rules are pure.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Final

from consensus.quorum import max_faulty, quorum_size

ADD: Final = "add"
REMOVE: Final = "remove"
#: The smallest set that tolerates a Byzantine member (n = 3f + 1, f = 1).
MIN_VALIDATORS: Final = 4
#: Set changes one plan draws at most.
MAX_CHANGES: Final = 3
#: Request ids from here on are votes: VOTE_BASE + change * VOTE_STRIDE + voter.
VOTE_BASE: Final = 10_000_000
VOTE_STRIDE: Final = 1024
#: Pending changes a state keeps at most (ledger/chain/validators.py MAX_PENDING_CHANGES).
MAX_PENDING_CHANGES: Final = 64
#: How the world times a change's votes against a view change (the named scenarios):
#: ``crash-then-vote`` crashes the epoch's primary, then submits the votes while the view
#: change runs; ``vote-then-crash`` submits them and crashes the primary right after, so
#: the switch block is certified across the view change.
MODES: Final = ("plain", "crash-then-vote", "vote-then-crash")


@dataclass(frozen=True, slots=True)
class SetChange:
    action: str
    #: Global validator index added or removed.
    target: int
    #: Members of the set before the change who vote for it (at least its quorum).
    voters: tuple[int, ...]
    mode: str
    #: Virtual ms from the previous change's switch (the first: from the start) to its votes.
    delay_ms: int

    def describe(self) -> str:
        return f"{self.action} node{self.target} ({len(self.voters)} votes, {self.mode})"


def vote_id(change: int, voter: int) -> int:
    return VOTE_BASE + change * VOTE_STRIDE + voter


def parse_vote(request: int) -> tuple[int, int] | None:
    """(change, voter) of a vote request; None for an ordinary request."""
    if request < VOTE_BASE:
        return None
    change, voter = divmod(request - VOTE_BASE, VOTE_STRIDE)
    return change, voter


def applying(members: tuple[int, ...], change: SetChange) -> tuple[int, ...]:
    """The next set: an added member goes last, a removed one leaves the order."""
    if change.action == ADD:
        return (*members, change.target)
    return tuple(m for m in members if m != change.target)


def draw_changes(
    rng: random.Random, n: int, byzantine: tuple[int, ...], heal_at: int, *, lax: bool
) -> tuple[SetChange, ...]:
    """The plan's set changes, each valid against the set the previous ones leave. Unless
    ``lax`` (more Byzantine validators than f: the run checks the checker), no removal
    leaves more Byzantine members than the smaller set tolerates."""
    members = tuple(range(n))
    added = n
    changes: list[SetChange] = []
    for number in range(rng.randint(1, MAX_CHANGES)):
        size = len(members)
        faulty = sum(1 for m in members if m in byzantine)
        removable = [
            m
            for m in members
            if size - 1 >= MIN_VALIDATORS
            and (lax or faulty - (m in byzantine) <= max_faulty(size - 1))
        ]
        voters = tuple(sorted(rng.sample(members, rng.randint(quorum_size(size), size))))
        if removable and rng.randrange(2) == 0:
            bad = [m for m in removable if m in byzantine]
            target = rng.choice(bad) if bad and rng.randrange(10) < 6 else rng.choice(removable)
            change = SetChange(REMOVE, target, voters, rng.choice(MODES), 0)
        else:
            change = SetChange(ADD, added, voters, rng.choice(MODES), 0)
            added += 1
        delay = rng.randint(0, heal_at + 300) if number == 0 else rng.randint(0, 400)
        change = replace(change, delay_ms=delay)
        changes.append(change)
        members = applying(members, change)
    return tuple(changes)


def final_members(n: int, changes: tuple[SetChange, ...]) -> tuple[int, ...]:
    members = tuple(range(n))
    for change in changes:
        members = applying(members, change)
    return members


# ----------------------------------------------------------------------------- the rules


@dataclass(frozen=True, slots=True)
class SetState:
    """The validator set in a simulated chain's state after some block."""

    epoch: int
    #: The block after which this epoch's set certifies (its anchor; genesis for epoch 0).
    start_height: int
    members: tuple[int, ...]
    scheduled: tuple[int, ...] | None = None
    #: Pending changes: (change index, voters sorted), sorted by change.
    votes: tuple[tuple[int, tuple[int, ...]], ...] = ()


def refusal(state: SetState, changes: tuple[SetChange, ...], request: int) -> str | None:
    """Why this vote may not be ordered now (ledger/chain/validators.py vote_refusal)."""
    parsed = parse_vote(request)
    if parsed is None:
        return None
    number, voter = parsed
    if number >= len(changes):
        return f"no set change {number}"
    if number != state.epoch:
        return f"a vote for change {number} in epoch {state.epoch}"
    if voter not in state.members:
        return f"node{voter} is not a member of epoch {state.epoch}'s set"
    change = changes[number]
    if change.action == REMOVE:
        if change.target not in state.members:
            return f"node{change.target} is not a member"
        if len(state.members) - 1 < MIN_VALIDATORS:
            return f"removing node{change.target} leaves fewer than {MIN_VALIDATORS}"
    elif change.target in state.members:
        return f"node{change.target} is already a member"
    return None


def dead_vote(state: SetState, request: int) -> bool:
    """A vote whose change's epoch is over: it can never be ordered any more."""
    parsed = parse_vote(request)
    return parsed is not None and parsed[0] < state.epoch


def apply_vote(state: SetState, changes: tuple[SetChange, ...], request: int) -> SetState | None:
    """The state after one request (None: a refused vote makes the block invalid)."""
    parsed = parse_vote(request)
    if parsed is None:
        return state
    if refusal(state, changes, request) is not None:
        return None
    number, voter = parsed
    if state.scheduled is not None:
        return state  # spent without effect: one change per epoch
    voters = tuple(v for k, vs in state.votes if k == number for v in vs if v in state.members)
    if voter in voters:
        return state
    if not voters and len(state.votes) >= MAX_PENDING_CHANGES:
        return state
    voters = tuple(sorted((*voters, voter)))
    if len(voters) < quorum_size(len(state.members)):
        votes = tuple(sorted([*(p for p in state.votes if p[0] != number), (number, voters)]))
        return replace(state, votes=votes)
    return replace(state, scheduled=applying(state.members, changes[number]), votes=())


def execute_block(
    state: SetState,
    changes: tuple[SetChange, ...],
    height: int,
    ids: list[int] | tuple[int, ...],
    genesis_height: int,
    interval: int,
) -> SetState | None:
    """The state after a block: its votes, then (at a checkpoint height) the activation of
    a scheduled set. None: the block holds a refused vote."""
    for request in ids:
        if request >= VOTE_BASE:
            next_state = apply_vote(state, changes, request)
            if next_state is None:
                return None
            state = next_state
    if state.scheduled is not None and (height - genesis_height) % interval == 0:
        return SetState(state.epoch + 1, height, state.scheduled)
    return state
