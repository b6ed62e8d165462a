"""The primary's batching and sizing policy, on an injected clock.

When the consensus core asks for a block (a free pipeline slot and includable requests):

* with nothing in flight, propose at once — an idle network answers a lone request in one
  round trip;
* with blocks in flight and fewer than ``batch_target_txs`` new transactions waiting,
  wait up to ``interval_ms`` after the previous proposal for more: every block costs every
  validator a validation, three signed votes and a commit whatever its size, so at moderate
  load a block per request spends the CPU on blocks, not transactions.

How big: at most the genesis ``max_block_txs``, and at most what a backup can execute
within ``validate_budget_ms`` (a fraction of the view-change timeout) at the per-transaction
execution cost measured here — a block a backup cannot validate before its timer fires makes
every primary look silent under load.

Never: read a clock (``now_ms`` is an argument) or decide anything about validity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: While blocks are in flight, propose once this many new transactions wait ...
BATCH_TARGET_TXS: Final = 64
#: ... or this long after the previous proposal.
PROPOSAL_INTERVAL_MS: Final = 25
#: A block must execute within this fraction of the view-change timeout at a backup.
VALIDATE_BUDGET_FRACTION: Final = 4
#: Blocks are never sized below this many transactions (the measurement may be noisy).
MIN_BLOCK_TXS: Final = 64
#: Weight of the newest measurement in the execution-cost average (1/this).
COST_SMOOTHING: Final = 8


@dataclass(frozen=True, slots=True)
class Defer:
    """Not now: ask again at ``wake_at_ms``."""

    wake_at_ms: int


class Proposer:
    """When to propose and how many transactions a block may carry."""

    def __init__(
        self,
        *,
        max_block_txs: int,
        view_change_timeout_ms: int,
        batch_target_txs: int = BATCH_TARGET_TXS,
        interval_ms: int = PROPOSAL_INTERVAL_MS,
    ) -> None:
        self.max_block_txs = max_block_txs
        self.validate_budget_us = view_change_timeout_ms * 1000 // VALIDATE_BUDGET_FRACTION
        self.batch_target_txs = batch_target_txs
        self.interval_ms = interval_ms
        self._last_proposal_ms: int | None = None
        #: Measured execution cost per transaction, in nanoseconds (0: not measured yet).
        self._cost_ns = 0

    def decide(self, now_ms: int, *, waiting: int, in_flight: bool) -> Defer | None:
        """None: propose now; or when to ask again. ``waiting``: includable transactions
        not already in the blocks in flight (an upper bound is fine)."""
        if not in_flight or waiting >= self.batch_target_txs or self._last_proposal_ms is None:
            return None
        wake = self._last_proposal_ms + self.interval_ms
        return Defer(wake) if wake > now_ms else None

    def proposed(self, now_ms: int) -> None:
        self._last_proposal_ms = now_ms

    def observe_execution(self, txs: int, elapsed_us: int) -> None:
        """A block of ``txs`` transactions took ``elapsed_us`` to execute here."""
        if txs <= 0:
            return
        sample = elapsed_us * 1000 // txs
        if self._cost_ns == 0:
            self._cost_ns = sample
        else:
            self._cost_ns += (sample - self._cost_ns) // COST_SMOOTHING

    def block_tx_limit(self) -> int:
        if self._cost_ns <= 0:
            return self.max_block_txs
        affordable = self.validate_budget_us * 1000 // self._cost_ns
        return max(MIN_BLOCK_TXS, min(self.max_block_txs, affordable))
