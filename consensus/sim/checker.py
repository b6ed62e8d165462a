"""What the simulator checks at every step, and where each violation is recorded.

The safety and liveness properties (agreement, validity, hash chain, certificates,
carry-over of committed blocks into new views, justified votes, no double signing,
liveness after the heal) are judged by :class:`consensus.sim.audit.Auditor`, which shares
no code with the consensus core it checks. This module adds what needs the core's own
numbers — bounded memory: every log, buffer and table of every replica stays under its
cap — and an honest replica halting (it found a quorum-certified block invalid).

A violation is recorded (kind, time, detail); the run goes on so the report is complete.

House rule: observes only; it never changes a replica or the course of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consensus.config import ReplicaConfig
from consensus.limits import (
    MAX_BUFFERED_PER_SENDER,
    MAX_CATCHUP_BLOCKS,
    MAX_VIEW_CHANGES_PER_SENDER,
)
from consensus.messages import Kind, SignedMessage, decode_body
from consensus.ready import CommittedBlock
from consensus.replica import Replica
from consensus.sim.audit import Auditor, SetRules

_SLOT_VOTES: Final = frozenset({Kind.PRE_PREPARE, Kind.PREPARE, Kind.COMMIT})
#: Keep at most this many violations per run in the report (all are counted).
MAX_VIOLATIONS_KEPT: Final = 20


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str
    time_ms: int
    detail: str


def memory_caps(config: ReplicaConfig) -> dict[str, int]:
    """Upper bounds for Replica.memory_footprint(), derived from the configuration."""
    n, window = config.n, config.watermark_window
    checkpoint_heights = 2 * window // config.checkpoint_interval + 2
    return {
        "slots": window,
        "slot_votes": 2 * n * window,
        "prepared": window,
        "payloads": 2 * window,
        "verdicts": 2 * window + MAX_CATCHUP_BLOCKS,
        "pending_validations": 2 * window + MAX_CATCHUP_BLOCKS,
        "signed": 3 * window + 4,
        "checkpoint_votes": n * checkpoint_heights,
        "view_changes": n * MAX_VIEW_CHANGES_PER_SENDER,
        "buffered": n * MAX_BUFFERED_PER_SENDER,
        "catchup": MAX_CATCHUP_BLOCKS,
        "committed_digests": window + config.max_pipeline + 2,
    }


class Checker:
    def __init__(
        self, config: ReplicaConfig, honest: list[int], sets: SetRules | None = None
    ) -> None:
        self.config = config
        self.honest = honest
        #: Memory caps by set size (the set changes size across epochs).
        self.caps = {config.n: memory_caps(config)}
        genesis = (config.genesis_height, config.genesis_digest, config.genesis_state_root)
        self.auditor = Auditor(
            config.chain_id, config.validators, genesis, honest, self._violate, sets=sets
        )
        self.violations: list[Violation] = []
        self.violation_count = 0
        #: Every violation counted by kind (the list above keeps only the first ones).
        self.kinds: dict[str, int] = {}
        self.commits = 0
        self.time_ms = 0

    def _violate(self, kind: str, detail: str) -> None:
        self.violation_count += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        if len(self.violations) < MAX_VIOLATIONS_KEPT:
            self.violations.append(Violation(kind, self.time_ms, detail))

    def on_halt(self, index: int, reason: str) -> None:
        """An honest replica found a quorum-certified block invalid (only possible with
        more than f Byzantine validators, or a bug in validation)."""
        self._violate("halt", f"replica {index}: {reason}")

    def on_commit(
        self,
        index: int,
        block: CommittedBlock,
        ids: list[int] | None,
        previous: bytes,
        submitted: set[int],
    ) -> None:
        """An honest replica's driver is about to apply ``block`` (ids parsed from it)."""
        self.commits += 1
        self.auditor.on_commit(index, block, ids, previous, submitted)

    def observe(self, message: SignedMessage) -> None:
        """Any endpoint put ``message`` on the network."""
        self.auditor.observe(message)

    def on_send(self, index: int, message: SignedMessage, epoch: int = 0) -> None:
        """Honest validator ``index`` (global) is releasing ``message`` from its replica of
        ``epoch`` (as its driver believes: the auditor checks the signature)."""
        self.auditor.on_send(index, message, epoch)

    def finish(self, submitted: set[int], detail: str = "") -> None:
        self.auditor.finish(submitted, detail)

    def check_window(self, index: int, replica: Replica, message: SignedMessage) -> None:
        """PBFT §4.2/§4.3: a replica votes for no height above its high watermark (its
        stable checkpoint plus one window). (The low side is not checked here: a replica may
        finish a slot in the very step whose checkpoint made that height stable.)"""
        if message.sender != replica.index or message.kind not in _SLOT_VOTES:
            return
        height = decode_body(message).height  # type: ignore[union-attr]
        low = replica.stable.height
        if height > low + self.config.watermark_window:
            self._violate(
                "window",
                f"node{index} signed a {message.kind} at height {height}, outside its "
                f"watermarks ({low}, {low + self.config.watermark_window}]",
            )

    def check_memory(self, index: int, replica: Replica) -> None:
        caps = self.caps.get(replica.config.n)
        if caps is None:
            caps = self.caps[replica.config.n] = memory_caps(replica.config)
        for name, size in replica.memory_footprint().items():
            cap = caps[name]
            if size > cap:
                self._violate("memory", f"node{index} {name} holds {size} entries, cap {cap}")
