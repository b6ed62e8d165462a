"""The invariants the simulator checks at every step, over honest replicas only.

* agreement — no two honest replicas commit different blocks at one height;
* validity — only submitted request ids are committed, each at most once per chain;
* hash chain — every committed block names the previous committed block as its parent,
  both in the replica's output and inside the payload;
* certificates — every commit certificate an honest replica outputs verifies (q distinct
  valid COMMIT signatures over that view, height and digest);
* no double signing — an honest replica (across crashes and restarts) never signs two
  different PRE-PREPAREs, PREPAREs or COMMITs for one (view, height), nor two different
  VIEW-CHANGEs or NEW-VIEWs for one view — checked on what it sends;
* bounded memory — every log, buffer and table of every replica stays under its cap;
* liveness — checked by the runner: after the heal, every request commits everywhere.

A violation is recorded (kind, time, detail); the run goes on so the report is complete.

House rule: observes only; it never changes a replica or the course of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from consensus.certificates import Rejected, verify_commit_proof
from consensus.config import ReplicaConfig
from consensus.limits import (
    MAX_BUFFERED_PER_SENDER,
    MAX_CATCHUP_BLOCKS,
    MAX_VIEW_CHANGES_PER_SENDER,
)
from consensus.messages import Kind, SignedMessage, decode_body
from consensus.ready import CommittedBlock
from consensus.replica import Replica
from crypto.encoding import DecodeError
from crypto.hashing import sha256

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
    def __init__(self, config: ReplicaConfig, honest: list[int]) -> None:
        self.config = config
        self.honest = honest
        self.caps = memory_caps(config)
        self.decided: dict[int, bytes] = {}
        self.signed: dict[tuple[int, str, int, int], bytes] = {}
        self.violations: list[Violation] = []
        self.violation_count = 0
        self.commits = 0
        self.time_ms = 0

    def _violate(self, kind: str, detail: str) -> None:
        self.violation_count += 1
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
        applied: set[int],
        submitted: set[int],
    ) -> None:
        """An honest replica's driver is about to apply ``block`` (ids parsed from it)."""
        self.commits += 1
        known = self.decided.setdefault(block.height, block.digest)
        if known != block.digest:
            self._violate(
                "agreement",
                f"height {block.height}: node{index} committed {block.digest.hex()[:12]}, "
                f"another honest replica {known.hex()[:12]}",
            )
        if block.parent_digest != previous:
            self._violate(
                "hash_chain", f"node{index} height {block.height}: parent is not the previous block"
            )
        if ids is None:
            self._violate(
                "validity", f"node{index} height {block.height}: undecodable or mis-chained payload"
            )
        else:
            for request in ids:
                if request not in submitted:
                    self._violate(
                        "validity", f"node{index} committed request {request} nobody submitted"
                    )
                elif request in applied:
                    self._violate("validity", f"node{index} committed request {request} twice")
            if len(set(ids)) != len(ids):
                self._violate(
                    "validity", f"node{index} height {block.height}: a request twice in one block"
                )
        try:
            verify_commit_proof(self.config, block.certificate())
        except Rejected as exc:
            self._violate("certificate", f"node{index} height {block.height}: {exc}")

    def on_send(self, index: int, message: SignedMessage) -> None:
        """An honest replica is releasing ``message``: it must not contradict anything it
        signed before, in this life or an earlier one."""
        if message.sender != index:
            return  # forwarding someone else's signed message (a NEW-VIEW, a checkpoint proof)
        kind = message.kind
        if kind in (Kind.PRE_PREPARE, Kind.PREPARE, Kind.COMMIT):
            try:
                body = decode_body(message)
            except DecodeError:
                self._violate("double_sign", f"node{index} sent an undecodable {kind}")
                return
            view, height = body.view, body.height  # type: ignore[union-attr]
            key = (index, kind, view, height)
            content = message.body
        elif kind in (Kind.VIEW_CHANGE, Kind.NEW_VIEW):
            try:
                body = decode_body(message)
            except DecodeError:
                self._violate("double_sign", f"node{index} sent an undecodable {kind}")
                return
            view = body.new_view if kind == Kind.VIEW_CHANGE else body.view  # type: ignore[union-attr]
            key = (index, kind, view, 0)
            content = message.body
        else:
            return
        digest = sha256(content)
        known = self.signed.setdefault(key, digest)
        if known != digest:
            self._violate(
                "double_sign", f"node{index} signed two different {kind} messages for view {view}"
            )

    def check_memory(self, index: int, replica: Replica) -> None:
        for name, size in replica.memory_footprint().items():
            cap = self.caps[name]
            if size > cap:
                self._violate("memory", f"node{index} {name} holds {size} entries, cap {cap}")
