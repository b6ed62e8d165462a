"""Parts of the node driver that hold no node state: running a job inline or in a worker
thread, a client's wait for its transaction, a one-shot timer.

Never: block the event loop for more than a small job (:data:`INLINE_MAX_TXS`).
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from consensus.ready import Ready, ViewChangeReason
from ledger.engine.mempool import Mempool
from ledger.node.logs import log_event

log = logging.getLogger("quorum.node")

_T = TypeVar("_T")

#: Jobs of at most this many transactions run on the event loop, not in a worker thread.
INLINE_MAX_TXS: Final = 24
#: Bytes of a typical transfer in a block, to size a payload in transactions.
APPROX_TX_BYTES: Final = 180


async def offload(work: Callable[[], _T], size: int) -> _T:
    """Run ``work`` (``size`` transactions' worth) in a worker thread, or inline when small.

    A worker-thread round trip costs two thread switches and a wake-up of the event loop;
    on a loaded machine each switch waits for a core, and a block passes through several
    of them on every node. Small jobs (up to INLINE_MAX_TXS transactions, about 2 ms) run
    on the event loop instead: the loop stalls that long, the block moves on sooner.
    """
    if size <= INLINE_MAX_TXS:
        result = work()
        await trio.lowlevel.checkpoint()
        return result
    return await in_worker(work)


async def in_worker(work: Callable[[], _T]) -> _T:
    """Run ``work`` in one of trio's cached worker threads and return (or raise) its result.

    ``trio.to_thread.run_sync`` without its extras: it names the OS thread before and after
    every job (two ``pthread_setname_np`` calls through ctypes, plus formatting the name),
    copies the context and takes a capacity limiter; at a few thousand jobs a second on
    every node that was 3-4 % of a node's CPU (py-spy under `quorum bench`). Like
    ``run_sync`` by default, the job cannot be cancelled: the task waits for it.
    """
    task = trio.lowlevel.current_task()
    token = trio.lowlevel.current_trio_token()

    def deliver(result: Any) -> None:  # an outcome.Outcome
        token.run_sync_soon(trio.lowlevel.reschedule, task, result)

    trio.lowlevel.start_thread_soon(work, deliver)
    done: _T = await trio.lowlevel.wait_task_rescheduled(_not_cancellable)
    return done


def _not_cancellable(_: Callable[[], BaseException]) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


class NodeHalted(Exception):
    """The node stopped itself: its own data (or code) cannot be trusted any more."""


@dataclass(slots=True)
class Waiter:
    event: trio.Event
    result: dict[str, Any] | None = None


class Waiters:
    """Clients waiting for their transactions' final answers, by transaction hash."""

    def __init__(self) -> None:
        self._by_hash: dict[bytes, list[Waiter]] = {}

    def wait_for(self, tx_hash: bytes) -> Waiter:
        waiter = Waiter(trio.Event())
        self._by_hash.setdefault(tx_hash, []).append(waiter)
        return waiter

    def forget(self, tx_hash: bytes, waiter: Waiter) -> None:
        waiting = self._by_hash.get(tx_hash)
        if waiting and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self._by_hash[tx_hash]

    def answer(self, tx_hash: bytes, answer: dict[str, Any]) -> None:
        for waiter in self._by_hash.pop(tx_hash, ()):
            waiter.result = answer
            waiter.event.set()

    def __len__(self) -> int:
        return len(self._by_hash)


class OneShotTimer:
    """Calls ``action`` once, ``seconds`` after :meth:`arm`; arming while armed does nothing."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action = action
        self._armed = False

    def arm(self, nursery: trio.Nursery, seconds: float) -> None:
        if self._armed:
            return
        self._armed = True

        async def fire() -> None:
            await trio.sleep(seconds)
            self._armed = False
            self._action()

        nursery.start_soon(fire)


class NotAMember(NodeHalted):
    """This validator's key is not in the active validator set (it was removed by a vote):
    it no longer takes part in consensus. Not damage: nothing to repair."""


def log_notes(
    ready: Ready, mempool: Mempool, gossip_queued: int, counters: collections.Counter[str]
) -> None:
    """Log the core's view-change notes with what this node's mempool holds."""
    for note in ready.notes:
        if note.reason is ViewChangeReason.ENTERED:
            log_event(log, "new_view", "entered view %d: %s", note.view, note.detail,
                      view=note.view, detail=note.detail)  # fmt: skip
        else:
            pool = mempool.statistics()
            oldest = mempool.oldest_includable()
            oldest_text = "none" if oldest is None else oldest.hex()[:16]
            log_event(
                log, "view_change",
                "view change to %d (%s): %s; here: %d waiting, %d includable from %d "
                "senders, oldest includable %s, gossip inbox %d",
                note.view, note.reason.value, note.detail, pool.transactions,
                pool.includable, pool.includable_senders, oldest_text, gossip_queued,
                view=note.view, reason=note.reason.value, detail=note.detail,
                waiting=pool.transactions, includable=pool.includable,
                oldest_includable=None if oldest is None else oldest.hex(),
                gossip_inbox=gossip_queued,
            )  # fmt: skip
        counters[f"view_change.{note.reason.value}"] += 1


def syncing_status(
    state_sync: dict[str, Any] | None, target: int, height: int
) -> dict[str, Any] | bool:
    """False when up to date; else what ``/v1/status`` shows: the state sync's phase and
    progress, or the blocks being replayed."""
    if state_sync is not None:
        return state_sync
    if target <= height:
        return False
    return {
        "mode": "replay",
        "phase": "replaying",
        "progress": {"height": height, "target": target},
    }
