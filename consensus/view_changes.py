"""The view-change protocol (Castro & Liskov §4.4); the selection rule itself is in
consensus/viewchange.py, the view's own state in consensus/view.py.

* :meth:`ViewChanges.leave` — leave the current view: sign (once per view, through the
  guard) a VIEW-CHANGE with the stable checkpoint, the last commit certificate and the
  prepared certificates above both; stop taking part in the old view.
* :meth:`ViewChanges.on_view_change` — check a peer's VIEW-CHANGE completely and keep the
  latest per sender; :meth:`ViewChanges.join_target` says when f+1 validators ask for a
  higher view (§4.5.2), and :meth:`ViewChanges.new_view_due` when, as the new primary,
  q agree and our NEW-VIEW goes out.
* :meth:`ViewChanges.on_new_view` — recompute the selection from the q embedded
  VIEW-CHANGEs and reject any difference; :meth:`ViewChanges.enter` starts the view.

House rules: these methods decide and say so by their return values; the replica
sequences what follows (replaying buffered messages, the normal case). The view's fields
change only through :class:`~consensus.view.ViewState`'s transitions.
"""

from __future__ import annotations

from consensus.catchup import Catchup
from consensus.certificates import Rejected, verify_view_change
from consensus.checkpoints import Checkpoints
from consensus.committed import CommittedChain
from consensus.config import ReplicaConfig
from consensus.limits import MAX_VIEW_CHANGES_PER_SENDER
from consensus.messages import NewView, SignedMessage, ViewChange
from consensus.outbox import Outbox
from consensus.proposals import Proposals
from consensus.ready import ViewChangeReason
from consensus.records import Phase
from consensus.signer import Signer
from consensus.slots import SlotLog
from consensus.view import ViewChangeVotes, ViewState
from consensus.viewchange import NewViewPlan, select_new_view, verify_new_view


class ViewChanges:
    def __init__(
        self,
        config: ReplicaConfig,
        out: Outbox,
        signer: Signer,
        view: ViewState,
        log: SlotLog,
        chain: CommittedChain,
        checkpoints: Checkpoints,
        catchup: Catchup,
        proposals: Proposals,
    ) -> None:
        self._config = config
        self._index = signer.index
        self._out = out
        self._signer = signer
        self._view = view
        self._log = log
        self._chain = chain
        self._checkpoints = checkpoints
        self._catchup = catchup
        self._proposals = proposals
        #: Valid VIEW-CHANGEs for views above ours (or ours while it is not active).
        self.votes = ViewChangeVotes(MAX_VIEW_CHANGES_PER_SENDER)

    # ------------------------------------------------------------------ leaving a view

    def leave(self, new_view: int) -> None:
        """Move to ``new_view`` (not active until its NEW-VIEW) and announce it."""
        chain, stable = self._chain, self._checkpoints.stable
        committed = chain.proof if chain.height > stable.height else None
        prepared = self._log.prepared_above(max(chain.height, stable.height))
        body = ViewChange(new_view, stable, committed, prepared)
        message = self._signer.sign_once(new_view, Phase.VIEW_CHANGE, body)
        self._view.leave(new_view, message)
        self._log.leave_view()
        self._proposals.withdraw()
        self._signer.forget_views_below(new_view)
        self._out.persist_hard_state()
        self._out.send(None, message)
        self._out.count("view_change.started")
        self.votes.add(self._index, message, ViewChange.decode(message.body))
        self.votes.prune_below(new_view)

    def on_view_change(self, message: SignedMessage, vc: ViewChange) -> bool:
        """A peer's VIEW-CHANGE; True if it was new and valid (and is now kept)."""
        view = self._view
        if vc.new_view < view.view or (vc.new_view == view.view and view.active):
            self._out.count("view_change.old")
            return False
        known = self.votes.get(message.sender, vc.new_view)
        if known is not None:
            same = known[0].content() == message.content()
            self._out.count("duplicate.view-change" if same else "equivocation.view-change")
            return False
        verify_view_change(self._config, vc)
        self.votes.add(message.sender, message, vc)
        if vc.committed is not None:
            self._catchup.adopt(vc.committed, self._chain.height, self._log)
        return True

    def join_target(self) -> int | None:
        """§4.5.2: f+1 validators asking for views above ours include an honest one; the
        highest view that f+1 of them ask for (or above) is the one to join, if any."""
        weak = self._config.weak_quorum
        higher = self.votes.highest_views(self._view.view, exclude=self._index)
        if len(higher) < weak:
            return None
        target = higher[weak - 1]
        self._out.note(
            target, ViewChangeReason.JOINED, f"{weak} validators asked for view {target} or above"
        )
        return target

    # ------------------------------------------------------------------ the new view

    def new_view_due(self) -> tuple[NewViewPlan, SignedMessage] | None:
        """As primary of a view we are moving to: once q VIEW-CHANGEs are in, send NEW-VIEW
        (and return it, with its plan, to be entered)."""
        view, config = self._view, self._config
        if view.active or config.primary(view.view) != self._index:
            return None
        chosen = self.votes.for_view(view.view)[: config.quorum]
        if len(chosen) < config.quorum:
            return None
        known = self._signer.signed_at(view.view, 0, Phase.NEW_VIEW)
        if known is not None:  # signed before a restart: never sign another one
            message = known.message
            plan = verify_new_view(config, message, NewView.decode(message.body), {})
        else:
            plan = select_new_view(config, view.view, [b for _, _, b in chosen])
            pre_prepares = []
            for header in plan.reissue:
                pp = self._signer.sign_slot(
                    header.view, header.height, Phase.PRE_PREPARE, header.digest, header
                )
                assert pp is not None, "nothing else is pre-prepared in a view before its NEW-VIEW"
                pre_prepares.append(pp)
            body = NewView(view.view, tuple(m for _, m, _ in chosen), tuple(pre_prepares))
            message = self._signer.sign_once(view.view, Phase.NEW_VIEW, body)
        self._out.count("new_view.sent")
        self._out.send(None, message)
        return plan, message

    def on_new_view(self, message: SignedMessage, nv: NewView) -> NewViewPlan | None:
        """A peer's NEW-VIEW, recomputed here; its plan if it is for a view to enter."""
        view = self._view
        if nv.view < view.view or (nv.view == view.view and view.active):
            self._out.count("new_view.old")
            return None
        known = {s: m for s, m, _ in self.votes.for_view(nv.view)}
        plan = verify_new_view(self._config, message, nv, known)
        self._out.count("new_view.accepted")
        return plan

    def enter(self, plan: NewViewPlan, message: SignedMessage) -> None:
        """Start view ``plan.view`` with the re-issued PRE-PREPAREs fixed in its log."""
        config = self._config
        self._view.enter(plan.view, plan.view_base, message)
        # An answer to a request of an older view would be stale (we may jump here from a
        # view we never left, e.g. after a restart); a new primary proposes what is pending
        # at once, whatever it skipped in older views.
        self._proposals.withdraw()
        self._proposals.reopen()
        self._out.note(
            plan.view,
            ViewChangeReason.ENTERED,
            f"primary {config.name(config.primary(plan.view))}, base height {plan.base_height}",
        )
        self._out.persist_hard_state()
        self.votes.prune_below(plan.view + 1)
        if plan.checkpoint.height > self._checkpoints.low:
            self._checkpoints.advance_to(plan.checkpoint)
        self._catchup.raise_target(plan.base_height)
        pre_prepares = NewView.decode(message.body).pre_prepares
        # Blocks committed here already are not voted on again (we serve them on fetch).
        self._log.install(
            plan.reissue, pre_prepares, max(self._checkpoints.low, self._chain.height)
        )
        self._signer.forget_views_below(plan.view)
        self._log.enter_view(plan.reissue, plan.base_height, self._committed_digest_at)
        if plan.base_proof is not None:
            self._catchup.adopt(plan.base_proof, self._chain.height, self._log)

    def _committed_digest_at(self, height: int) -> bytes | None:
        return self._chain.digest_at(height, self._checkpoints.stable)

    # ------------------------------------------------------------------ restart

    def restore(self) -> None:
        """After restart: our own VIEW-CHANGE back among the votes, or the current view's
        fixed headers and our own votes in it back into the log."""
        view = self._view
        if not view.active:
            if view.my_view_change is not None:
                vc = ViewChange.decode(view.my_view_change.body)
                self.votes.add(self._index, view.my_view_change, vc)
            return
        stable_height = self._checkpoints.low
        if view.new_view_message is not None:
            message = view.new_view_message
            try:
                plan = verify_new_view(self._config, message, NewView.decode(message.body), {})
            except Rejected as exc:  # our own disk disagrees with our own code: a bug, loudly
                raise AssertionError(f"persisted NEW-VIEW does not verify: {exc}") from None
            view.resume_base(plan.view_base)
            self._log.install(
                plan.reissue,
                NewView.decode(message.body).pre_prepares,
                max(stable_height, self._chain.height),
            )
        records = [record for _, record in self._signer.records()]
        self._log.restore_own_votes(records, view.view, stable_height, self._index)
