"""The replica's view: which view it is in, whether it is active there, and when to leave.

:class:`ViewState` holds the view, whether it is active (its NEW-VIEW is in), the view's
base (heights at or below it are decided for the whole view), the backoff (consecutive
view changes without a commit), the two view-change timers, this replica's VIEW-CHANGE
for the view it is moving to and the NEW-VIEW of the view it is in. Its transitions are
the only writers of those fields, as in etcd-raft's ``tracker/progress.go``:

* :meth:`ViewState.leave` — to view v+k, not active, timers reset, backoff up;
* :meth:`ViewState.enter` — active in the NEW-VIEW's view, timers reset;
* :meth:`ViewState.progress` — a commit in an active view: backoff and no-progress timer
  back to zero;
* :meth:`ViewState.on_tick` — the timer rules (below); says when to leave, never leaves.

:class:`ViewChangeVotes` keeps the valid VIEW-CHANGEs of views at or above ours.

House rules: nothing here signs, sends or touches the log; the view-change protocol
(consensus/view_changes.py) decides and calls these transitions. No clock: time is ticks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from consensus.config import ReplicaConfig
from consensus.limits import MAX_BACKOFF_EXPONENT
from consensus.messages import SignedMessage, ViewChange
from consensus.ready import ViewChangeReason
from consensus.records import HardState

#: The censorship timer fires after this many (backed-off) view-change timeouts during
#: which blocks committed but the same includable request stayed the oldest waiting one.
CENSORSHIP_TIMEOUT_FACTOR = 5


@dataclass(frozen=True, slots=True)
class Timeout:
    """A view-change timer fired: leave for ``view``, and tell the operator why."""

    view: int
    reason: ViewChangeReason
    detail: str


class ViewState:
    """View, activity, base, backoff, timers and this view's own view-change messages."""

    def __init__(self, genesis_height: int) -> None:
        self.view = 0
        self.active = True
        #: View changes since the last commit: the timeout doubles with each (capped).
        self.consecutive_view_changes = 0
        #: Ticks without a commit while work waits (reset by every commit): a silent or
        #: stuck primary. Its timeout doubles with each view change that made no progress.
        self.vc_timer = 0
        #: Ticks the same includable request has been the oldest one waiting (reset when
        #: it changes): a primary that commits blocks but leaves that request out.
        self.censor_timer = 0
        #: Heights at or below this are decided for the whole current view (the NEW-VIEW's
        #: base): nothing there is pre-prepared, prepared or committed again in this view.
        self.view_base = genesis_height
        #: Our VIEW-CHANGE for the view we are moving to (None while active).
        self.my_view_change: SignedMessage | None = None
        #: The NEW-VIEW of the view we are active in (None while moving).
        self.new_view_message: SignedMessage | None = None

    # ------------------------------------------------------------------ transitions

    def resume(self, hard: HardState) -> None:
        """After a restart: the persisted view and its messages."""
        self.view, self.active = hard.view, hard.view_active
        self.my_view_change = None if hard.view_active else hard.view_change
        self.new_view_message = hard.new_view if hard.view_active else None

    def resume_base(self, base_height: int) -> None:
        """After a restart: the base recomputed from the persisted NEW-VIEW."""
        self.view_base = base_height

    def leave(self, new_view: int, view_change: SignedMessage) -> None:
        """Move to ``new_view`` (not active until its NEW-VIEW), having signed ``view_change``."""
        assert new_view > self.view, "views only grow"
        self.view, self.active = new_view, False
        self._reset_timers()
        self.consecutive_view_changes = min(self.consecutive_view_changes + 1, MAX_BACKOFF_EXPONENT)
        self.my_view_change = view_change
        self.new_view_message = None

    def enter(self, view: int, base_height: int, new_view: SignedMessage) -> None:
        """Active in ``view``, whose NEW-VIEW fixed everything up to ``base_height``."""
        self.view, self.active = view, True
        self.view_base = base_height
        self._reset_timers()
        self.my_view_change = None
        self.new_view_message = new_view

    def progress(self) -> None:
        """A block committed. In an active view (PBFT §4.4, and Aardvark's reading of it)
        the view works, so the timeout goes back to its base and the timer restarts."""
        if self.active:
            self.consecutive_view_changes = 0
            self.vc_timer = 0

    def oldest_request_changed(self) -> None:
        """Another request is now the oldest waiting one: its censorship clock starts."""
        self.censor_timer = 0

    def _reset_timers(self) -> None:
        self.vc_timer = 0
        self.censor_timer = 0

    # ------------------------------------------------------------------ the timer rules

    def on_tick(
        self,
        config: ReplicaConfig,
        votes: ViewChangeVotes,
        *,
        requests_pending: bool,
        oldest_waiting: bytes | None,
        in_flight: Sequence[int],
        committed_height: int,
        trailing: Callable[[], bool],
    ) -> Timeout | None:
        """Leave the view when it cannot make progress (PBFT §4.4), for one of two reasons:

        * no progress: something waits (an includable request, a block in flight) and
          nothing has committed for the timeout, which doubles with each view change that
          committed nothing and returns to its base on the first commit;
        * censorship: blocks commit, but the same includable request stays the oldest
          waiting one for CENSORSHIP_TIMEOUT_FACTOR timeouts.
        Never while nothing includable waits: requests behind a nonce gap wait for their
        sender, not for the primary. ``trailing``: this replica is behind a live view (see
        ``NormalCase.trailing_a_live_view``), which is not the primary's fault.
        """
        timeout = config.view_change_timeout(self.consecutive_view_changes)
        if not self.active:
            # OSDI'99 §4.5.2: the timer for moving past view v starts only once 2f+1
            # VIEW-CHANGEs for v are in, so one replica cannot run ahead of the others.
            if len(votes.senders_at_or_above(self.view)) < config.quorum:
                self.vc_timer = 0
                return None
            self.vc_timer += 1
            if self.vc_timer >= timeout:
                return Timeout(
                    self.view + 1,
                    ViewChangeReason.NEW_VIEW_TIMEOUT,
                    f"no NEW-VIEW for view {self.view} from "
                    f"{config.name(config.primary(self.view))} "
                    f"within {timeout * config.tick_ms} ms",
                )
            return None
        if not (requests_pending or oldest_waiting is not None or in_flight) or trailing():
            # Idle, or the view is making progress and this replica is just slow to apply
            # it (a certificate above its head): not the primary's fault. Without the
            # second, a loaded replica a second behind times out alone and leaves the
            # others' view.
            self._reset_timers()
            return None
        self.vc_timer += 1
        self.censor_timer = self.censor_timer + 1 if oldest_waiting is not None else 0
        primary = config.name(config.primary(self.view))
        if self.vc_timer >= timeout:
            waiting = (
                f"block {min(in_flight)} in flight"
                if in_flight
                else f"request {oldest_waiting.hex()[:16]} waiting"
                if oldest_waiting is not None
                else "requests waiting"
            )
            return Timeout(
                self.view + 1,
                ViewChangeReason.NO_PROGRESS,
                f"nothing committed at height {committed_height + 1} for "
                f"{timeout * config.tick_ms} ms ({waiting}; primary {primary})",
            )
        if self.censor_timer >= CENSORSHIP_TIMEOUT_FACTOR * timeout:
            assert oldest_waiting is not None
            return Timeout(
                self.view + 1,
                ViewChangeReason.CENSORSHIP,
                f"request {oldest_waiting.hex()[:16]} includable for "
                f"{self.censor_timer * config.tick_ms} ms while {primary} committed blocks "
                "without it",
            )
        return None


class ViewChangeVotes:
    """Valid VIEW-CHANGEs by sender and view, for views at or above ours.

    A few views are kept per sender (the highest ones): a quorum for view v must not
    vanish because one of its members has already moved on to v+1.
    """

    def __init__(self, per_sender: int) -> None:
        self.per_sender = per_sender
        self.by_sender: dict[int, dict[int, tuple[SignedMessage, ViewChange]]] = {}

    def get(self, sender: int, view: int) -> tuple[SignedMessage, ViewChange] | None:
        return self.by_sender.get(sender, {}).get(view)

    def add(self, sender: int, message: SignedMessage, body: ViewChange) -> None:
        views = self.by_sender.setdefault(sender, {})
        views[body.new_view] = (message, body)
        while len(views) > self.per_sender:
            del views[min(views)]

    def for_view(self, view: int) -> list[tuple[int, SignedMessage, ViewChange]]:
        """Senders with a VIEW-CHANGE for exactly ``view``, in validator order."""
        found = []
        for sender in sorted(self.by_sender):
            entry = self.by_sender[sender].get(view)
            if entry is not None:
                found.append((sender, entry[0], entry[1]))
        return found

    def senders_at_or_above(self, view: int) -> list[int]:
        return [s for s in sorted(self.by_sender) if any(v >= view for v in self.by_sender[s])]

    def highest_views(self, above: int, exclude: int) -> list[int]:
        """Each other sender's highest view above ``above``, highest first."""
        highest = [
            max(views) for s, views in sorted(self.by_sender.items()) if s != exclude and views
        ]
        return sorted((v for v in highest if v > above), reverse=True)

    def prune_below(self, view: int) -> None:
        for sender in sorted(self.by_sender):
            views = self.by_sender[sender]
            for old in [v for v in views if v < view]:
                del views[old]
            if not views:
                del self.by_sender[sender]

    def size(self) -> int:
        return sum(map(len, self.by_sender.values()))
