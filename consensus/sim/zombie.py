"""A Byzantine validator voted out of the set that keeps sending with its old key.

Once the set that no longer holds it takes over (docs/CONSENSUS.md §12), the removed
validator has no replica; every few ticks it sprays every endpoint, the new members and
the stragglers of its old epoch alike, with messages signed by its own (old) key:

* ``old-above``   its old epoch's domain, for the height right after the block that ended
                  the epoch: a PRE-PREPARE (as the old primary of a view it led) and its
                  COMMIT — what a straggler still in the old epoch must not act on (the
                  epoch rule) and a new member cannot even verify;
* ``new-votes``   the new epoch's domain, claiming its old index (another member's now, or
                  none): PREPAREs and COMMITs for the next heights, a VIEW-CHANGE for the
                  next views, a STATUS claiming far heights;
* ``old-views``   its old epoch's domain: a VIEW-CHANGE for a later view of the old epoch
                  and a STATUS claiming far heights (what could stall a straggler).

It also serves corrupted blocks to fetches. Every one of them must be ignored: the
auditor flags any honest vote, commit or view change that leaned on one.

House rule: like byzantine.py, it reaches the world only through its Network protocol,
and every choice comes from the run's seeded generator.
"""

from __future__ import annotations

from typing import Final, Protocol

from consensus.certificates import genesis_checkpoint
from consensus.config import ReplicaConfig
from consensus.messages import Commit, Prepare, PrePrepare, SignedMessage, Status, ViewChange, sign
from consensus.sim.byzantine import Network, Strategy, corrupt_fetched
from consensus.sim.driver import FetchedBlock, SimDriver
from consensus.sim.model import block_payload
from crypto.hashing import sha256

#: One tick in this many launches an attack.
ATTACK_EVERY: Final = 3


class Spray(Network, Protocol):
    def spray(self, driver: SimDriver, message: SignedMessage) -> None: ...


class Zombie(Strategy):
    name = "zombie"

    def __init__(self, world: Spray, driver: SimDriver, new: ReplicaConfig) -> None:
        super().__init__(world, driver)
        self.sprayer = world
        self.old = driver.config
        self.old_index = driver.local
        self.new = new
        #: Messages sent since it was removed.
        self.sent = 0

    def serve_fetch(self, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
        return corrupt_fetched(self.rng, blocks)

    def _spray(self, config: ReplicaConfig, body: object, payload: bytes = b"") -> None:
        message = sign(self.driver.key, config.chain_id, self.old_index, body, payload)  # type: ignore[arg-type]
        self.sent += 1
        self.sprayer.spray(self.driver, message)

    def on_tick(self) -> None:
        if self.rng.randrange(ATTACK_EVERY) != 0:
            return
        end, end_digest = self.new.genesis_height, self.new.genesis_digest
        junk = sha256(self.rng.randbytes(8))
        attack = self.rng.randrange(3)
        if attack == 0:
            old = self.old
            view = self.old_index + old.n * self.rng.randrange(3)  # a view it led
            payload = block_payload(end + 1, end_digest, [10**9 + self.rng.randrange(100)])
            digest = sha256(payload)
            self._spray(old, PrePrepare(view, end + 1, digest, end_digest), payload)
            self._spray(old, Commit(view, end + 1, digest))
        elif attack == 1:
            new = self.new
            height = end + 1 + self.rng.randrange(3)
            view = self.rng.randrange(3)
            self._spray(new, Prepare(view, height, junk))
            self._spray(new, Commit(view, height, junk))
            self._spray(new, ViewChange(view + 1, genesis_checkpoint(new), None, ()))
            self._spray(new, Status(view + 50, True, end + 10**6, end + 10**6))
        else:
            old = self.old
            view = self.rng.randrange(1, 4)
            self._spray(old, ViewChange(view, genesis_checkpoint(old), None, ()))
            self._spray(old, Status(view, True, end + 10**6, end + 10**6))
