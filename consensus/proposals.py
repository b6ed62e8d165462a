"""What the mempool says, and the proposal this replica asked its driver to build.

The driver reports whether a request a correct primary could include is pending and which
one has waited longest (the view-change timers watch it); as primary, the replica asks the
driver for at most one proposal at a time and remembers whether the driver had nothing to
propose (it asks again when the mempool changes, a block commits or a view starts).

House rules: the methods here are the only writers of these fields; when to ask for a
proposal is the normal case's decision (consensus/normal_case.py).
"""

from __future__ import annotations

from consensus.ready import ProposalRequest


class Proposals:
    def __init__(self) -> None:
        #: A request a correct primary could include in the next block exists.
        self.pending = False
        #: The longest-waiting such request (its hash), watched by the censorship timer.
        self.oldest_waiting: bytes | None = None
        #: The proposal asked of the driver and not answered yet.
        self.outstanding: ProposalRequest | None = None
        #: The driver had nothing to propose for the last request.
        self.skipped = False

    def mempool_changed(self, pending: bool, oldest_waiting: bytes | None) -> bool:
        """The driver's news; True if the oldest waiting request changed."""
        self.pending = pending
        changed = oldest_waiting != self.oldest_waiting
        if changed:
            self.oldest_waiting = oldest_waiting
        if pending:
            self.skipped = False
        else:
            self.outstanding = None
        return changed

    def ask(self, request: ProposalRequest) -> None:
        self.outstanding = request

    def answered(self) -> None:
        self.outstanding = None

    def skip(self, view: int, height: int) -> None:
        """The driver had nothing to propose for (view, height), if that is still asked."""
        request = self.outstanding
        if request is not None and (request.view, request.height) == (view, height):
            self.outstanding = None
            self.skipped = True

    def withdraw(self) -> None:
        """The view is left: an answer to the outstanding request would be stale."""
        self.outstanding = None

    def reopen(self) -> None:
        """A block committed or a view started: propose what is pending, even if skipped."""
        self.skipped = False
