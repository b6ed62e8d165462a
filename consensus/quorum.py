"""Quorum arithmetic for n validators, in one place (like etcd's quorum/majority.go).

f = ⌊(n−1)/3⌋ faulty validators are tolerated; a quorum is q = ⌈(n+f+1)/2⌉, which is
2f+1 when n = 3f+1. Any two quorums intersect in at least f+1 validators, hence in at
least one honest one — the property every safety argument in PBFT rests on. A tally
reports what one vote did as a :class:`VoteResult`, never a string.

House rule: arithmetic and small enums only; nothing here holds votes or state.
"""

from __future__ import annotations

import enum


def max_faulty(n: int) -> int:
    """f: how many Byzantine validators a set of n tolerates."""
    if n < 1:
        raise ValueError(f"a validator set needs at least one member, got {n}")
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """q = ⌈(n + f + 1) / 2⌉ matching votes decide."""
    f = max_faulty(n)
    return (n + f + 2) // 2


def weak_quorum_size(n: int) -> int:
    """f + 1: enough votes that at least one comes from an honest validator."""
    return max_faulty(n) + 1


class VoteResult(enum.Enum):
    """What adding one vote to a tally did (etcd's ``quorum.VoteResult``, for PBFT's votes)."""

    #: The sender's first vote here: counted.
    NEW = "new"
    #: The sender voted the same before: ignored.
    DUPLICATE = "duplicate"
    #: The sender voted differently before: ignored (the first vote stays), and counted as
    #: evidence of a Byzantine sender.
    EQUIVOCATION = "equivocation"
