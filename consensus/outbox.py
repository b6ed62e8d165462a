"""The Ready under construction: where every part of the replica leaves its effects.

Each driver input runs to completion, the parts append what the driver must do (records
to persist, messages, commits, validations, a proposal or fetch request, a halt, view
notes) and count what happened; :meth:`Outbox.flush` then hands it all over as one
:class:`~consensus.ready.Ready` and starts empty again.

House rules: append-only between flushes, in the order things happened (the driver
contract depends on it); it reads no part's state, and only the replica flushes it.
"""

from __future__ import annotations

from consensus.messages import SignedMessage
from consensus.quorum import VoteResult
from consensus.ready import (
    CommittedBlock,
    FetchRequest,
    Outbound,
    ProposalRequest,
    Ready,
    ValidateRequest,
    ViewChangeNote,
    ViewChangeReason,
)
from consensus.records import HardState, PersistBatch, PreparedRecord, SignedSlot

#: The one Ready of every input that left nothing to do (Ready is an immutable value).
EMPTY_READY = Ready()


class Outbox:
    """Effects of the current input, and the replica's counters (``statistics()``)."""

    def __init__(self) -> None:
        #: The hard state (view, checkpoint, view-change messages) changed: persist it.
        self.hard_state_changed = False
        self.signed: list[SignedSlot] = []
        self.prepared: list[PreparedRecord] = []
        self.messages: list[Outbound] = []
        self.committed: list[CommittedBlock] = []
        self.validations: list[ValidateRequest] = []
        self.proposal: ProposalRequest | None = None
        self.fetch_request: FetchRequest | None = None
        self.halt_reason: str | None = None
        self.notes: list[ViewChangeNote] = []
        self.stats: dict[str, int] = {}

    # ------------------------------------------------------------------ effects

    def persist_hard_state(self) -> None:
        self.hard_state_changed = True

    def persist_signed(self, record: SignedSlot) -> None:
        self.signed.append(record)

    def persist_prepared(self, record: PreparedRecord) -> None:
        self.prepared.append(record)

    def send(self, to: int | None, message: SignedMessage) -> None:
        """To validator ``to``, or to every other validator when ``to`` is None."""
        self.messages.append(Outbound(to, message))

    def commit(self, block: CommittedBlock) -> None:
        self.committed.append(block)

    def validate(self, request: ValidateRequest) -> None:
        self.validations.append(request)

    def propose(self, request: ProposalRequest) -> None:
        self.proposal = request

    def fetch(self, request: FetchRequest) -> None:
        self.fetch_request = request

    def halt(self, reason: str) -> None:
        self.halt_reason = reason

    def note(self, view: int, reason: ViewChangeReason, detail: str) -> None:
        self.notes.append(ViewChangeNote(view, reason, detail))
        self.count(f"view_change.{reason.value}")

    # ------------------------------------------------------------------ counters

    def count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def count_vote(self, result: VoteResult, kind: str) -> None:
        """Duplicates and equivocations are counted per message kind; new votes are not."""
        if result is VoteResult.EQUIVOCATION:
            self.count("equivocation." + kind)
        elif result is VoteResult.DUPLICATE:
            self.count("duplicate." + kind)

    # ------------------------------------------------------------------ hand-over

    def flush(self, hard_state: HardState | None) -> Ready:
        """Everything since the last flush, as one Ready; ``hard_state`` must be given
        when :attr:`hard_state_changed` is set."""
        if not (
            self.hard_state_changed
            or self.signed
            or self.prepared
            or self.messages
            or self.committed
            or self.validations
            or self.notes
            or self.proposal is not None
            or self.fetch_request is not None
            or self.halt_reason is not None
        ):
            return EMPTY_READY  # most ticks and many messages change nothing to act on
        persist = None
        if self.hard_state_changed or self.signed or self.prepared:
            persist = PersistBatch(hard_state, tuple(self.signed), tuple(self.prepared))
        ready = Ready(
            persist,
            tuple(self.messages),
            tuple(self.committed),
            tuple(self.validations),
            self.proposal,
            self.fetch_request,
            self.halt_reason,
            tuple(self.notes),
        )
        self.hard_state_changed = False
        self.signed, self.prepared, self.messages = [], [], []
        self.committed, self.validations = [], []
        self.proposal, self.fetch_request, self.halt_reason = None, None, None
        self.notes = []
        return ready
