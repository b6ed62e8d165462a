"""The node's observer: a task that samples the running node a few times a second and turns
changes into log events and health state.

Theory of operation. The consensus loop should not spend time on reporting, and some
changes happen where this layer does not reach (the core advances its stable
checkpoint; the state sync moves through its phases while the loop waits for it). So a
separate task looks every ``OBSERVE_INTERVAL_S`` and reports what changed since the last
look: a new stable checkpoint, catch-up starting and ending, each state-sync phase, the
health verdict turning (ledger/node/health.py), each with :func:`log_event`. It also
keeps the health's pending watch current and trims the metrics' admission clock.

Never: change the node's state, or block (everything it reads is in memory).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import trio

from ledger.node.health import PendingWatch, assess
from ledger.node.logs import log_event
from ledger.node.node import Node

log = logging.getLogger("quorum.node")

OBSERVE_INTERVAL_S: Final = 0.25


def _sync_phase(syncing: dict[str, Any] | bool) -> str | None:
    """None when up to date; "replay" while replaying blocks; the state sync's phase."""
    if not isinstance(syncing, dict):
        return None
    if syncing.get("mode") == "state_sync":
        return f"state_sync.{syncing.get('phase')}"
    return "replay"


class Observer:
    """Samples ``node``; see the module docstring."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.pending = PendingWatch()
        self._stable: int | None = None
        self._phase: str | None = None
        self._phase_since_s = 0.0
        self._phase_from_height = 0
        self._healthy: bool | None = None
        self._problems: tuple[str, ...] = ()

    async def run(self) -> None:
        while True:
            self.sample()
            await trio.sleep(OBSERVE_INTERVAL_S)

    def health(self) -> dict[str, Any]:
        return assess(self.node, self.pending)

    def sample(self, now_s: float | None = None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        node = self.node
        self.pending.observe(node.mempool.oldest_includable(), now_s)
        node.metrics.admissions.expire(now_s)
        self._checkpoint()
        self._syncing(now_s)
        self._health(now_s)

    def _checkpoint(self) -> None:
        stable = self.node.replica.stable.height
        if self._stable is not None and stable > self._stable:
            log_event(log, "checkpoint_stable", "checkpoint at height %d is stable", stable,
                      height=stable, previous=self._stable)  # fmt: skip
        self._stable = stable

    def _syncing(self, now_s: float) -> None:
        node = self.node
        syncing = node.syncing()
        phase = _sync_phase(syncing)
        if phase == self._phase:
            return
        replica = node.replica
        height, target = replica.committed_height, replica.catchup_target
        if phase is None:
            log_event(
                log, "sync_finished",
                "caught up at height %d (%s, %d blocks in %.1f s)", height, self._phase,
                height - self._phase_from_height, now_s - self._phase_since_s,
                height=height, mode=self._phase, blocks=height - self._phase_from_height,
                seconds=round(now_s - self._phase_since_s, 3),
            )  # fmt: skip
        else:
            progress = syncing.get("progress") if isinstance(syncing, dict) else None
            log_event(
                log, "sync_phase", "syncing: %s (head %d, peers at %d or above)", phase,
                height, target, phase=phase, height=height, target=target, progress=progress,
            )  # fmt: skip
            if self._phase is None:
                self._phase_since_s, self._phase_from_height = now_s, height
        self._phase = phase

    def _health(self, now_s: float) -> None:
        doc = assess(self.node, self.pending, now_s)
        healthy = bool(doc["healthy"])
        codes = tuple(p["code"] for p in doc["problems"])
        if healthy == self._healthy and codes == self._problems:
            return
        if self._healthy is not None or not healthy:
            log_event(
                log, "health",
                "healthy" if healthy else "unhealthy: %s",
                *(() if healthy else ("; ".join(p["message"] for p in doc["problems"]),)),
                level=logging.INFO if healthy else logging.WARNING,
                healthy=healthy, problems=doc["problems"],
            )  # fmt: skip
        self._healthy, self._problems = healthy, codes
