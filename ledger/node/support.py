"""Parts of the node driver that hold no node state: running a job inline or in a worker
thread, a client's wait for its transaction, a one-shot timer.

Never: block the event loop for more than a small job (:data:`INLINE_MAX_TXS`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

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
    return await trio.to_thread.run_sync(work)


class NodeHalted(Exception):
    """The node stopped itself: its own data (or code) cannot be trusted any more."""


@dataclass(slots=True)
class Waiter:
    event: trio.Event
    result: dict[str, Any] | None = None


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
