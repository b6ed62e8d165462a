"""The replica's output: what the driver must do after each input, and the status snapshot.

Every input method of :class:`consensus.replica.Replica` returns one :class:`Ready`. The
order in which the driver handles it is part of the contract (see the module docstring of
consensus/replica.py): persist, then commit, then send, then start validations, the
proposal and fetches.

House rule: values only; nothing here acts on a Ready (consensus/testing.py is the
reference driver that does).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from consensus.messages import CommitProof, SignedMessage
from consensus.records import PersistBatch, PreparedRecord, SignedSlot


class DriverMisuse(RuntimeError):
    """The driver broke the contract (e.g. proposed a payload that does not hash to its digest)."""


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
    #: The last block of this epoch: the driver starts the next epoch's replica on it.
    ends_epoch: bool = False

    def certificate(self) -> CommitProof:
        return CommitProof(self.view, self.height, self.digest, self.votes)


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """This replica is behind: fetch committed blocks ``from_height..to_height`` (inclusive)
    with their commit certificates from peers and feed them, in height order, to
    ``committed_block_from_peer``."""

    from_height: int
    to_height: int


class ViewChangeReason(enum.Enum):
    """Why a replica left its view (or entered a new one), for the operator's log and metrics."""

    #: Work was waiting (an includable request, a block in flight) and nothing committed
    #: for the view-change timeout: the primary is silent or the view cannot progress.
    NO_PROGRESS = "no_progress"
    #: Blocks commit, but the same includable request stayed the oldest waiting one for
    #: CENSORSHIP_TIMEOUT_FACTOR timeouts: the primary leaves it out.
    CENSORSHIP = "censorship"
    #: f+1 validators asked for a higher view (§4.5.2): at least one honest one timed out.
    JOINED = "joined"
    #: A view change stalled without its NEW-VIEW for the (backed-off) timeout.
    NEW_VIEW_TIMEOUT = "new_view_timeout"
    #: A valid NEW-VIEW was received or sent: the replica is active in the new view.
    ENTERED = "entered"


@dataclass(frozen=True, slots=True)
class ViewChangeNote:
    """A view transition at this replica: ``view`` is the view moved to (or entered)."""

    view: int
    reason: ViewChangeReason
    detail: str


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
    #: View transitions in this step, in order (the driver logs and counts them).
    notes: tuple[ViewChangeNote, ...] = ()

    def is_empty(self) -> bool:
        return (
            self.persist is None
            and not self.messages
            and not self.committed
            and not self.validate
            and self.propose is None
            and self.fetch is None
            and self.halt is None
            and not self.notes
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


def merge_readies(readies: list[Ready]) -> Ready:
    """Several Readies, in order, as one: records merged (later wins per key, as the
    writes would), commits, messages and validations concatenated, the latest proposal
    and fetch requests (an older one was superseded by the core's later steps)."""
    hard_state = None
    signed: list[SignedSlot] = []
    prepared: list[PreparedRecord] = []
    for ready in readies:
        if ready.persist is not None:
            hard_state = ready.persist.hard_state or hard_state
            signed.extend(ready.persist.signed)
            prepared.extend(ready.persist.prepared)
    persist = (
        PersistBatch(hard_state, tuple(signed), tuple(prepared))
        if hard_state is not None or signed or prepared
        else None
    )
    return Ready(
        persist,
        tuple(m for r in readies for m in r.messages),
        tuple(c for r in readies for c in r.committed),
        tuple(v for r in readies for v in r.validate),
        next((r.propose for r in reversed(readies) if r.propose is not None), None),
        next((r.fetch for r in reversed(readies) if r.fetch is not None), None),
        next((r.halt for r in readies if r.halt is not None), None),
        tuple(n for r in readies for n in r.notes),
    )
