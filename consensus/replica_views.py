"""The view-change half of :class:`consensus.replica.Replica` (Castro & Liskov §4.4).

Split from replica.py along the seam between the normal case and view changes; these
functions read and write the replica's state directly and are only called by it.

* :func:`start_view_change` — leave the current view: sign (once per view, through the
  guard) a VIEW-CHANGE with the stable checkpoint, the last commit certificate and the
  prepared certificates above both; stop taking part in the old view.
* :func:`on_view_change` — check a peer's VIEW-CHANGE completely, keep the latest per
  sender, join a higher view once f+1 validators ask for one, and, as the new primary,
  send NEW-VIEW once q agree.
* :func:`on_new_view` — recompute the selection from the q embedded VIEW-CHANGEs, reject
  any difference, and enter the view.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from consensus import housekeeping, intake, normal_case
from consensus.certificates import Rejected, verify_view_change
from consensus.limits import MAX_BACKOFF_EXPONENT
from consensus.log import Slot
from consensus.messages import NewView, PrePrepare, SignedMessage, ViewChange
from consensus.ready import ViewChangeReason
from consensus.records import Phase
from consensus.viewchange import NewViewPlan, select_new_view, verify_new_view

if TYPE_CHECKING:
    from consensus.replica import Replica


def start_view_change(r: Replica, new_view: int) -> None:
    """Move to ``new_view`` (not active until its NEW-VIEW) and announce it."""
    assert new_view > r.view, "views only grow"
    r.view, r.active = new_view, False
    r.vc_timer = 0
    r.censor_timer = 0
    r.consecutive_view_changes = min(r.consecutive_view_changes + 1, MAX_BACKOFF_EXPONENT)
    r.slots.clear()
    r.new_view_message = None
    r.proposal_outstanding = None
    r.pending_validations.clear()
    _forget_old_views(r)
    committed = r.commit_proof if r.committed_height > r.stable.height else None
    floor = max(r.committed_height, r.stable.height)
    prepared = tuple(r.prepared[h] for h in sorted(r.prepared) if h > floor)
    body = ViewChange(new_view, r.stable, committed, prepared)
    message = r.sign_once(new_view, Phase.VIEW_CHANGE, body)
    r.my_view_change = message
    r.hard_dirty = True
    r.send(None, message)
    r.count("view_change.started")
    r.view_changes.add(r.index, message, ViewChange.decode(message.body))
    r.view_changes.prune_below(new_view)
    intake.replay_buffered(r)
    maybe_send_new_view(r)


def on_view_change(r: Replica, message: SignedMessage, vc: ViewChange) -> None:
    if vc.new_view < r.view or (vc.new_view == r.view and r.active):
        r.count("view_change.old")
        return
    known = r.view_changes.get(message.sender, vc.new_view)
    if known is not None:
        same = known[0].content() == message.content()
        r.count("duplicate.view-change" if same else "equivocation.view-change")
        return
    verify_view_change(r.config, vc)
    r.view_changes.add(message.sender, message, vc)
    if vc.committed is not None:
        normal_case.adopt_certificate(r, vc.committed)
    _maybe_join_higher_view(r)
    maybe_send_new_view(r)


def _maybe_join_higher_view(r: Replica) -> None:
    """§4.5.2: f+1 validators asking for views above ours include an honest one; join the
    highest view that f+1 of them ask for (or above)."""
    higher = r.view_changes.highest_views(r.view, exclude=r.index)
    if len(higher) >= r.config.weak_quorum:
        target = higher[r.config.weak_quorum - 1]
        r.note(
            target,
            ViewChangeReason.JOINED,
            f"{r.config.weak_quorum} validators asked for view {target} or above",
        )
        start_view_change(r, higher[r.config.weak_quorum - 1])


def maybe_send_new_view(r: Replica) -> None:
    """As primary of a view we are moving to: once q VIEW-CHANGEs are in, send NEW-VIEW."""
    if r.active or r.config.primary(r.view) != r.index:
        return
    chosen = r.view_changes.for_view(r.view)[: r.config.quorum]
    if len(chosen) < r.config.quorum:
        return
    known_nv = r.signed.get((r.view, 0, Phase.NEW_VIEW))
    if known_nv is not None:  # signed before a restart: never sign another one
        message = known_nv.message
        plan = verify_new_view(r.config, message, NewView.decode(message.body), {})
    else:
        plan = select_new_view(r.config, r.view, [b for _, _, b in chosen])
        pre_prepares = []
        for header in plan.reissue:
            pp = r.sign_slot(header.view, header.height, Phase.PRE_PREPARE, header.digest, header)
            assert pp is not None, "nothing else is pre-prepared in a view before its NEW-VIEW"
            pre_prepares.append(pp)
        body = NewView(r.view, tuple(m for _, m, _ in chosen), tuple(pre_prepares))
        message = r.sign_once(r.view, Phase.NEW_VIEW, body)
    r.count("new_view.sent")
    r.send(None, message)
    enter_view(r, plan, message)


def on_new_view(r: Replica, message: SignedMessage, nv: NewView) -> None:
    if nv.view < r.view or (nv.view == r.view and r.active):
        r.count("new_view.old")
        return
    known = {s: m for s, m, _ in r.view_changes.for_view(nv.view)}
    plan = verify_new_view(r.config, message, nv, known)
    r.count("new_view.accepted")
    enter_view(r, plan, message)


def enter_view(r: Replica, plan: NewViewPlan, message: SignedMessage) -> None:
    """Start view ``plan.view`` with the re-issued PRE-PREPAREs fixed in its log."""
    r.view, r.active = plan.view, True
    r.view_base = plan.base_height
    r.vc_timer = 0
    r.censor_timer = 0
    # A new primary proposes what is pending at once, whatever it skipped in older views.
    r.proposal_skipped = False
    r.note(
        plan.view,
        ViewChangeReason.ENTERED,
        f"primary {r.config.name(r.config.primary(plan.view))}, base height {plan.base_height}",
    )
    r.my_view_change = None
    r.new_view_message = message
    r.hard_dirty = True
    r.view_changes.prune_below(plan.view + 1)
    if plan.checkpoint.height > r.stable.height:
        housekeeping.set_stable(r, plan.checkpoint)
    housekeeping.raise_target(r, plan.base_height)
    _install_reissued(r, plan, NewView.decode(message.body).pre_prepares)
    _forget_old_views(r)
    r.pending_validations.clear()  # answers to old-view requests are ignored; kept blocks are asked again
    keep = {(h.height, h.digest) for h in plan.reissue} | {
        (p.header.height, p.header.digest) for p in r.prepared.values()
    }
    for key in [k for k in r.payloads if k not in keep]:
        del r.payloads[key]
    keep |= {k for k in r.verdicts if k[0] <= plan.base_height}  # the chain up to the base
    normal_case.prune_verdicts(r, keep)
    if plan.base_proof is not None:
        normal_case.adopt_certificate(r, plan.base_proof)
    intake.replay_buffered(r)
    normal_case.advance(r)


def _forget_old_views(r: Replica) -> None:
    """Guard records of views below ours can never matter again: views only grow."""
    for key in [k for k in r.signed if k[0] < r.view]:
        del r.signed[key]


def _install_reissued(r: Replica, plan: NewViewPlan, messages: tuple[SignedMessage, ...]) -> None:
    r.slots.clear()
    for header, pp in zip(plan.reissue, messages, strict=True):
        if header.height <= r.stable.height:
            continue
        slot = Slot()
        slot.header, slot.pre_prepare, slot.fixed_by_new_view = header, pp, True
        r.slots[header.height] = slot


def restore_view(r: Replica) -> None:
    """After restart: rebuild the current view's fixed headers and our own votes in it."""
    if not r.active:
        if r.my_view_change is not None:
            vc = ViewChange.decode(r.my_view_change.body)
            r.view_changes.add(r.index, r.my_view_change, vc)
        return
    if r.new_view_message is not None:
        try:
            plan = verify_new_view(
                r.config, r.new_view_message, NewView.decode(r.new_view_message.body), {}
            )
        except Rejected as exc:  # our own disk disagrees with our own code: a bug, loudly
            raise AssertionError(f"persisted NEW-VIEW does not verify: {exc}") from None
        r.view_base = plan.base_height
        _install_reissued(r, plan, NewView.decode(r.new_view_message.body).pre_prepares)
    for (view, height, phase), record in sorted(r.signed.items()):
        if view != r.view or height <= r.stable.height:
            continue
        slot = r.slots.setdefault(height, Slot())
        if phase == Phase.PRE_PREPARE and slot.header is None:
            slot.header = PrePrepare.decode(record.message.body)
            slot.pre_prepare = record.message.without_payload()
            if record.message.payload:
                r.payloads[(height, record.digest)] = record.message.payload
        elif phase == Phase.PREPARE:
            slot.add_prepare(r.index, record.digest, record.message)
        elif phase == Phase.COMMIT:
            slot.add_commit(r.index, record.digest, record.message.signature)
