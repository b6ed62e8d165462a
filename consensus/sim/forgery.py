"""Byzantine validators that impersonate: forged, borrowed, replayed and stuffed signatures.

A ``forge`` validator runs the real core (its own messages go out unchanged) and, every few
ticks, attacks with messages that claim to come from other validators or carry
certificates that only look full:

* a complete fake quorum for a fake block at the next height — a PRE-PREPARE in the
  primary's name, PREPAREs and COMMITs in every other validator's name — each signed in
  one of four wrong ways: with the attacker's own key, with random bytes, with a real
  signature the claimed sender made over another message (borrowed), or with the key of a
  party outside the validator set;
* a PRE-PREPARE it signs validly itself although it is not the view's primary;
* real messages of other validators replayed verbatim into later views and heights, and
  re-labelled (another view or height) under the original signature (cross-view);
* VIEW-CHANGEs in other validators' names, and its own validly signed VIEW-CHANGE whose
  commit certificate, stable checkpoint or prepared certificate is stuffed with duplicate,
  unknown, outsider or forged signers (a prepared certificate for a fake block it
  pre-prepared itself in a view it led, "prepared" by its own PREPARE repeated); as the next view's primary, a NEW-VIEW made of one view change repeated;
* catch-up answers with fake blocks whose certificates are stuffed the same ways.

All of it must be rejected by every honest replica: the auditor (audit.py) flags any
honest vote, commit or view change that leaned on one of these messages.

House rule: like byzantine.py, it reaches the world only through the Network protocol, and
every choice comes from the run's seeded generator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Final

from consensus.config import MAX_VALIDATORS
from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    Commit,
    CommitProof,
    Kind,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    SignedMessage,
    ViewChange,
    decode_body,
    sign,
)
from consensus.sim.byzantine import Network, Strategy
from consensus.sim.driver import FetchedBlock, SimDriver
from consensus.sim.model import MAX_REQUESTS_PER_BLOCK, block_payload
from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.keys import PrivateKey

#: Real messages of other validators remembered for borrowing and replaying.
HISTORY: Final = 48
#: One tick in this many launches an attack.
ATTACK_EVERY: Final = 3
FORGERIES: Final = ("own-key", "garbage", "borrowed", "outsider")
STUFFINGS: Final = ("duplicate", "unknown", "outsider", "own-key")


class Forge(Strategy):
    name = "forge"

    def __init__(self, world: Network, driver: SimDriver) -> None:
        super().__init__(world, driver)
        self.history: deque[SignedMessage] = deque(maxlen=HISTORY)
        self.outsider = PrivateKey(sha256(b"quorum-sim outsider %d" % driver.index))

    @property
    def n(self) -> int:
        return self.config.n

    @property
    def q(self) -> int:
        return self.config.quorum

    # ------------------------------------------------------------------ hooks

    def observe(self, message: SignedMessage) -> None:
        if message.sender != self.driver.local and message.kind in (
            Kind.PRE_PREPARE,
            Kind.PREPARE,
            Kind.COMMIT,
            Kind.CHECKPOINT,
            Kind.VIEW_CHANGE,
        ):
            self.history.append(message.without_payload())

    def on_tick(self) -> None:
        replica = self.driver.replica
        if replica is None or self.rng.randrange(ATTACK_EVERY) != 0:
            return
        attack = self.rng.randrange(6)
        if attack == 0:
            self._fake_quorum()
        elif attack == 1:
            self._own_pre_prepare()
        elif attack == 2:
            self._replay()
        elif attack == 3:
            self._cross_view()
        elif attack == 4:
            self._impersonated_view_changes()
        else:
            self._stuffed_view_change()

    def serve_fetch(self, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
        fakes = []
        for block in blocks:
            payload = block_payload(block.height, block.parent, self._ids(salt=block.height))
            digest = sha256(payload)
            view = block.certificate.view
            certificate = self._stuffed_certificate(view, block.height, digest)
            fakes.append(FetchedBlock(block.height, digest, block.parent, payload, certificate))
        return fakes

    # ------------------------------------------------------------------ pieces

    def _broadcast(self, message: SignedMessage) -> None:
        self.world.send(self.driver, None, message)

    def _ids(self, salt: int = 0) -> list[int]:
        """A plausible request list (submitted, not yet applied here) in a random order."""
        pool = sorted(i for i in self.world.submitted if i not in self.driver.applied)
        count = min(len(pool), self.rng.randint(1, MAX_REQUESTS_PER_BLOCK))
        ids = self.rng.sample(pool, count) if count else []
        return ids if ids else [10**9 + salt]

    def _forged(self, claimed: int, body: object, payload: bytes = b"") -> SignedMessage:
        """``body`` in validator ``claimed``'s name, signed the wrong way."""
        honest = sign(self.driver.key, self.config.chain_id, claimed, body, payload)  # type: ignore[arg-type]
        how = self.rng.choice(FORGERIES)
        if how == "garbage":
            return replace(honest, signature=self.rng.randbytes(64))
        if how == "borrowed":
            theirs = [m for m in self.history if m.sender == claimed]
            if theirs:
                return replace(honest, signature=self.rng.choice(theirs).signature)
        if how == "outsider":
            kind = honest.kind
            return replace(
                honest, signature=self.outsider.sign(self.config.chain_id, kind, honest.body)
            )
        return honest  # signed with the attacker's own key under another's index

    def _fake_block(self) -> tuple[int, int, bytes, bytes, bytes]:
        replica = self.driver.replica
        assert replica is not None
        height, parent = self.driver.head
        height += 1 + self.rng.randrange(2) * self.rng.randrange(2)
        payload = block_payload(height, parent, self._ids())
        return replica.view, height, sha256(payload), parent, payload

    def _fake_quorum(self) -> None:
        view, height, digest, parent, payload = self._fake_block()
        primary = self.config.primary(view)
        me = self.driver.local
        pre_prepare = PrePrepare(view, height, digest, parent)
        if primary != me:
            self._broadcast(self._forged(primary, pre_prepare, payload))
        for claimed in range(self.n):
            if claimed != me:
                if claimed != primary:
                    self._broadcast(self._forged(claimed, Prepare(view, height, digest)))
                self._broadcast(self._forged(claimed, Commit(view, height, digest)))

    def _own_pre_prepare(self) -> None:
        view, height, digest, parent, payload = self._fake_block()
        if self.config.primary(view) == self.driver.local:
            view += 1  # be the wrong primary either way
        self._broadcast(self._sign(PrePrepare(view, height, digest, parent), payload))
        self._broadcast(self._sign(Commit(view, height, digest)))

    def _replay(self) -> None:
        if self.history:
            message = self.rng.choice(list(self.history))
            self.world.send(self.driver, self.rng.choice(self._others()), message)

    def _cross_view(self) -> None:
        replica = self.driver.replica
        votes = [m for m in self.history if m.kind in (Kind.PREPARE, Kind.COMMIT)]
        if replica is None or not votes:
            return
        original = self.rng.choice(votes)
        try:
            body = decode_body(original)
        except DecodeError:
            return
        assert isinstance(body, Prepare | Commit)
        if self.rng.randrange(2) == 0:
            body = replace(body, view=replica.view + self.rng.randrange(2))
        else:
            body = replace(body, height=self.driver.head[0] + 1)
        self._broadcast(replace(original, body=body.encode()))

    def _view_change(self, view: int) -> ViewChange:
        replica = self.driver.replica
        assert replica is not None
        return ViewChange(view, replica.stable, None, ())

    def _impersonated_view_changes(self) -> None:
        replica = self.driver.replica
        assert replica is not None
        view = replica.view + 1
        for claimed in self._others():
            self._broadcast(self._forged(claimed, self._view_change(view)))

    def _stuffed_certificate(self, view: int, height: int, digest: bytes) -> CommitProof:
        body = Commit(view, height, digest).encode()
        chain = self.config.chain_id
        mine = self.driver.key.sign(chain, Kind.COMMIT, body)
        me = self.driver.local
        how = self.rng.choice(STUFFINGS)
        if how == "duplicate":
            votes = tuple((me, mine) for _ in range(self.q))
        elif how == "unknown":
            unknown = range(self.n, min(MAX_VALIDATORS, self.n + self.q - 1))
            votes = ((me, mine), *((i, mine) for i in unknown))
        elif how == "outsider":
            signature = self.outsider.sign(chain, Kind.COMMIT, body)
            votes = tuple((i, signature) for i in range(self.q))
        else:
            votes = tuple((i, mine) for i in range(self.q))
        return CommitProof(view, height, digest, votes)

    def _stuffed_prepared(self, view: int, checkpoint: CheckpointProof) -> PreparedProof | None:
        """A prepared certificate for a fake block above the checkpoint, pre-prepared by us
        in the last view before ``view`` that we led, with PREPAREs that only look like
        q-1 backups': ours repeated (we were that view's primary), or forged."""
        me = self.driver.local
        led = view - 1 - ((view - 1 - me) % self.n)
        if led < 0:
            return None
        height = checkpoint.height + 1
        payload = block_payload(height, checkpoint.block_hash, self._ids())
        digest = sha256(payload)
        pre_prepare = self._sign(PrePrepare(led, height, digest, checkpoint.block_hash))
        vote = Prepare(led, height, digest)
        if self.rng.randrange(2) == 0:
            prepares = tuple(self._sign(vote) for _ in range(self.q - 1))
        else:
            backups = [i for i in range(self.n) if i != me][: self.q - 1]
            prepares = tuple(self._forged(i, vote) for i in backups)
        return PreparedProof.of(pre_prepare, prepares)

    def _stuffed_view_change(self) -> None:
        replica = self.driver.replica
        assert replica is not None
        view = replica.view + 1
        vc = self._view_change(view)
        choice = self.rng.randrange(3)
        prepared = self._stuffed_prepared(view, vc.checkpoint) if choice == 2 else None
        if prepared is not None:
            vc = replace(vc, prepared=(prepared,))
        elif choice == 0:
            _, height, digest, _, _ = self._fake_block()
            height = max(height, vc.checkpoint.height + 1)
            vc = replace(vc, committed=self._stuffed_certificate(replica.view, height, digest))
        else:
            height = vc.checkpoint.height + self.config.checkpoint_interval
            fake = Checkpoint(height, sha256(b"fake %d" % height), sha256(b"root %d" % height))
            mine = self._sign(fake)
            vc = replace(
                vc,
                checkpoint=CheckpointProof(
                    height, fake.block_hash, fake.state_root, tuple(mine for _ in range(self.q))
                ),
            )
        message = self._sign(vc)
        self._broadcast(message)
        if self.config.primary(view) == self.driver.local:
            repeated = tuple(message for _ in range(self.q))
            self._broadcast(self._sign(NewView(view, repeated, ())))
