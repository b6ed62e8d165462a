"""Byzantine behaviour: filters on what a faulty validator's (otherwise real) replica sends.

A Byzantine endpoint runs the real core with its own key and a :class:`Strategy` between
the core and the network. Twins are not a filter: the world runs two endpoints sharing
one key (see world.py). Every strategy draws from the run's one seeded generator.

* ``silent``      sends nothing at all (a crash that keeps listening);
* ``withhold``    hides some kinds of message from some validators;
* ``equivocate``  as primary, shows one block to one group and another block (same view,
                  height and parent) to the other, and votes for both;
* ``mutate``      small-scope mutations of its real messages, re-signed with its key: view
                  ±1, height ±1, another digest, a replay of an old message, an old-view
                  commit, a body under the wrong kind, a broken signature;
* ``flood``       bursts of well-signed far-future messages: heights and views beyond every
                  window, view changes for distant views, absurd status claims.

``mutate`` and ``flood`` validators also serve corrupted blocks to catch-up fetches.

With epochs a strategy acts in the epoch its driver's replica is in: ``config`` is the
driver's current one and messages name the driver's index in that set (``driver.local``).

House rule: a strategy reaches the world only through the :class:`Network` protocol (this
module never imports world.py).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace
from typing import Final, Protocol

from consensus.certificates import genesis_checkpoint
from consensus.config import ReplicaConfig
from consensus.messages import (
    BlockRequest,
    Checkpoint,
    Commit,
    Kind,
    Prepare,
    PrePrepare,
    SignedMessage,
    Status,
    ViewChange,
    decode_body,
    sign,
)
from consensus.ready import Outbound
from consensus.sim.driver import FetchedBlock, SimDriver
from consensus.sim.model import Plan, block_payload, parse_block
from crypto.encoding import DecodeError
from crypto.hashing import sha256

#: Old messages a mutating validator remembers for replays.
REPLAY_HISTORY: Final = 64
#: Messages in one flood burst.
FLOOD_BURST: Final = 6

Sends = list[tuple[int | None, SignedMessage]]


class Network(Protocol):
    """What a strategy uses of the simulated world (consensus/sim/world.py)."""

    @property
    def rng(self) -> random.Random: ...

    @property
    def config(self) -> ReplicaConfig: ...

    @property
    def plan(self) -> Plan: ...

    @property
    def submitted(self) -> set[int]: ...

    def send(self, driver: SimDriver, to: int | None, message: SignedMessage) -> None: ...


def _to(targets: list[int], message: SignedMessage) -> Sends:
    return [(i, message) for i in targets]


class Strategy:
    name = "honest"

    def __init__(self, world: Network, driver: SimDriver) -> None:
        self.world = world
        self.driver = driver
        self.rng: random.Random = world.rng

    @property
    def config(self) -> ReplicaConfig:
        """The config of the epoch this validator's replica is in."""
        return self.driver.config

    def outgoing(self, out: Outbound) -> Sends:
        return [(out.to, out.message)]

    def on_tick(self) -> None:
        return None

    def observe(self, message: SignedMessage) -> None:
        """A message the network delivered to this validator (what it can replay)."""
        return None

    def serve_fetch(self, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
        """What this validator answers to a catch-up fetch."""
        return blocks

    def _sign(self, body: object, payload: bytes = b"") -> SignedMessage:
        return sign(self.driver.key, self.config.chain_id, self.driver.local, body, payload)  # type: ignore[arg-type]

    def _others(self) -> list[int]:
        me = self.driver.local
        return [i for i in range(self.config.n) if i != me]


class Silent(Strategy):
    name = "silent"

    def outgoing(self, out: Outbound) -> Sends:
        return []


class Withhold(Strategy):
    name = "withhold"

    def __init__(self, world: Network, driver: SimDriver) -> None:
        super().__init__(world, driver)
        others = self._others()
        self.victims = [i for i in others if self.rng.randrange(2) == 0] or [
            self.rng.choice(others)
        ]
        self.kinds = self.rng.choice(
            (
                (Kind.COMMIT,),
                (Kind.PREPARE, Kind.COMMIT),
                (Kind.PRE_PREPARE,),
                tuple(k.value for k in Kind),
            )
        )

    def outgoing(self, out: Outbound) -> Sends:
        if out.message.kind not in self.kinds:
            return [(out.to, out.message)]
        targets = self._others() if out.to is None else [out.to]
        return [(to, out.message) for to in targets if to not in self.victims]


class Equivocate(Strategy):
    name = "equivocate"

    def __init__(self, world: Network, driver: SimDriver) -> None:
        super().__init__(world, driver)
        self.alternative: dict[tuple[int, int], bytes] = {}

    def _group(self, index: int) -> int:
        """The group of the validator at ``index`` of the current set."""
        return self.world.plan.groups.get(self.driver.members[index], 0)

    def outgoing(self, out: Outbound) -> Sends:
        message = out.message
        if out.to is not None or message.kind not in (Kind.PRE_PREPARE, Kind.COMMIT):
            return [(out.to, message)]
        body = decode_body(message)
        first = [i for i in self._others() if self._group(i) == 0]
        second = [i for i in self._others() if self._group(i) == 1]
        if isinstance(body, PrePrepare) and message.payload:
            try:
                height, parent, ids = parse_block(message.payload)
            except DecodeError:
                return [(None, message)]
            other_payload = block_payload(height, parent, ids[::-1] if len(ids) > 1 else [])
            other = replace(body, digest=sha256(other_payload))
            self.alternative[(body.view, body.height)] = other.digest
            twin = self._sign(other, other_payload)
            return _to(first, message) + _to(second, twin)
        if isinstance(body, Commit) and (body.view, body.height) in self.alternative:
            twin = self._sign(replace(body, digest=self.alternative[(body.view, body.height)]))
            return _to(first, message) + _to(second, twin)
        return [(None, message)]


class Mutate(Strategy):
    name = "mutate"

    def serve_fetch(self, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
        return corrupt_fetched(self.rng, blocks)

    def __init__(self, world: Network, driver: SimDriver) -> None:
        super().__init__(world, driver)
        self.history: deque[SignedMessage] = deque(maxlen=REPLAY_HISTORY)

    def outgoing(self, out: Outbound) -> Sends:
        sends: Sends = [(out.to, out.message)]
        if self.rng.randrange(10) < 4:
            sends.append((self.rng.choice(self._others()), self._mutant(out.message)))
        self.history.append(out.message)
        return sends

    def _mutant(self, message: SignedMessage) -> SignedMessage:
        choice = self.rng.randrange(8)
        if choice == 0 and self.history:
            return self.rng.choice(list(self.history))
        if choice == 1:
            signature = bytes([message.signature[0] ^ 1]) + message.signature[1:]
            return replace(message, signature=signature)
        if choice == 2:  # a body signed under another kind's domain
            kind = self.rng.choice([k.value for k in Kind if k.value != message.kind])
            raw = message.body
            return SignedMessage(
                message.sender, kind, raw, self.driver.key.sign(self.config.chain_id, kind, raw)
            )
        try:
            body = decode_body(message)
        except DecodeError:
            return message
        delta = self.rng.choice((-1, 1))
        if isinstance(body, PrePrepare | Prepare | Commit):
            if choice == 3:
                body = replace(body, view=max(0, body.view + delta))
            elif choice == 4:
                body = replace(body, height=max(0, body.height + delta))
            elif choice == 5:
                body = replace(body, digest=sha256(self.rng.randbytes(8)))
            elif choice == 6:
                body = Commit(max(0, body.view - 1), body.height, body.digest)
            else:
                body = Prepare(body.view + 1, body.height, body.digest)
            return self._sign(body, message.payload if isinstance(body, PrePrepare) else b"")
        if isinstance(body, Checkpoint):
            return self._sign(replace(body, state_root=sha256(self.rng.randbytes(8))))
        return replace(message, signature=bytes(64))


class Flood(Strategy):
    name = "flood"

    def serve_fetch(self, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
        return corrupt_fetched(self.rng, blocks)

    def on_tick(self) -> None:
        if self.rng.randrange(5) != 0:
            return
        replica = self.driver.replica
        if replica is None:
            return
        far = replica.stable.height + self.config.watermark_window
        for _ in range(FLOOD_BURST):
            choice = self.rng.randrange(6)
            junk = sha256(self.rng.randbytes(8))
            body: object
            if choice == 0:
                body = Prepare(
                    replica.view + self.rng.randrange(3), far + self.rng.randrange(1, 10**6), junk
                )
            elif choice == 1:
                body = Commit(
                    replica.view, replica.committed_height + self.rng.randrange(1, 8), junk
                )
            elif choice == 2:
                checkpoint = genesis_checkpoint(self.config)
                body = ViewChange(replica.view + self.rng.randrange(2, 50), checkpoint, None, ())
            elif choice == 3:
                body = Status(replica.view + 100, True, 10**9, 10**9)
            elif choice == 4:
                body = BlockRequest(replica.committed_height + 1, junk)
            else:
                body = Prepare(
                    replica.view + 1 + self.rng.randrange(100), replica.committed_height + 1, junk
                )
            self.world.send(self.driver, None, self._sign(body))


def corrupt_fetched(rng: random.Random, blocks: list[FetchedBlock]) -> list[FetchedBlock]:
    """What a Byzantine validator serves to a fetch: certified blocks with one thing wrong
    (a forged vote, another digest or parent, a tampered payload, a vote dropped)."""
    corrupted = []
    for block in blocks:
        choice = rng.randrange(5)
        cert = block.certificate
        if choice == 0:
            votes = ((cert.votes[0][0], bytes(64)), *cert.votes[1:])
            block = replace(block, certificate=replace(cert, votes=votes))
        elif choice == 1:
            block = replace(block, digest=sha256(block.digest))
        elif choice == 2:
            block = replace(block, parent=sha256(block.parent))
        elif choice == 3:
            block = replace(block, payload=block.payload + b"\x00")
        else:
            block = replace(block, certificate=replace(cert, votes=cert.votes[1:]))
        corrupted.append(block)
    return corrupted


STRATEGY_TYPES: Final[dict[str, type[Strategy]]] = {
    s.name: s for s in (Silent, Withhold, Equivocate, Mutate, Flood)
}
