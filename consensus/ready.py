"""The replica's output: what the driver must do after each input, and the status snapshot.

Every input method of :class:`consensus.replica.Replica` returns one :class:`Ready`. The
order in which the driver handles it is part of the contract (see the module docstring of
consensus/replica.py): persist, then commit, then send, then start validations, the
proposal and fetches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consensus.messages import CommitProof, SignedMessage
from consensus.records import PersistBatch


@dataclass(frozen=True, slots=True)
class Outbound:
    """Send ``message`` to validator ``to``, or to every other validator when ``to`` is None."""

    to: int | None
    message: SignedMessage


@dataclass(frozen=True, slots=True)
class ValidateRequest:
    """Decode and execute this block on top of its parent's state; answer with
    ``proposal_validated(view, height, digest, ok, state_root)``.

    The parent is either the last committed block or a block you reported ok=True at
    ``height - 1`` and still hold the execution result of.
    """

    view: int
    height: int
    digest: bytes
    parent_digest: bytes
    payload: bytes


@dataclass(frozen=True, slots=True)
class ProposalRequest:
    """This replica is primary with a free pipeline slot and requests are pending: build a
    block at ``height`` on ``parent_digest``, execute it, and call ``propose`` (or
    ``skip_proposal`` when nothing fits)."""

    view: int
    height: int
    parent_digest: bytes


@dataclass(frozen=True, slots=True)
class CommittedBlock:
    """Committed: write the block with its commit certificate (q COMMIT signatures over
    ``commit_vote_body(view, height, digest)``). Emitted once per height, in height order."""

    view: int
    height: int
    digest: bytes
    parent_digest: bytes
    payload: bytes
    state_root: bytes
    votes: tuple[tuple[int, bytes], ...]

    def certificate(self) -> CommitProof:
        return CommitProof(self.view, self.height, self.digest, self.votes)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """This replica is behind: fetch committed blocks ``from_height..to_height`` (inclusive)
    with their commit certificates from peers and feed them, in height order, to
    ``committed_block_from_peer``."""

    from_height: int
    to_height: int


@dataclass(frozen=True, slots=True)
class Ready:
    persist: PersistBatch | None = None
    messages: tuple[Outbound, ...] = ()
    committed: tuple[CommittedBlock, ...] = ()
    validate: tuple[ValidateRequest, ...] = ()
    propose: ProposalRequest | None = None
    fetch: FetchRequest | None = None
    #: Set when a block certified by a quorum fails validation here. With at most f
    #: Byzantine validators a certified block is valid, so this replica's own state (its
    #: store or its code) is wrong: the driver must stop, not go on with diverged state.
    halt: str | None = None

    def is_empty(self) -> bool:
        return (
            self.persist is None
            and not self.messages
            and not self.committed
            and not self.validate
            and self.propose is None
            and self.fetch is None
            and self.halt is None
        )


@dataclass(frozen=True, slots=True)
class ReplicaStatus:
    """An operator's view of one replica (``quorum testnet status``, diagnostics)."""

    index: int
    view: int
    primary: int
    view_active: bool
    committed_height: int
    committed_digest: bytes
    stable_checkpoint: int
    in_flight: tuple[int, ...]
    #: A sentence saying what this replica is waiting for, naming the missing validators.
    waiting_for: str
    statistics: dict[str, int] = field(default_factory=dict)
