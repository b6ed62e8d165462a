"""The simulated world: endpoints, a network with faults, clients, and virtual time.

One event queue ordered by (virtual ms, sequence number) drives everything; the sequence
number makes ties deterministic. Every event processed is folded into ``trace`` (SHA-256),
so two runs of one seed that differ in anything observable differ in their trace hash.

Endpoints: one per validator, plus a second one for each twin. A twin pair shares a key
and an index; each twin sees (and is seen by) one group of honest validators only. The
network drops messages on blocked links during partitions, loses and duplicates them at
the plan's rates until the heal, and delays each by ``base + jitter`` ms (reordering).
Clients submit each request to every endpoint and resubmit what is not committed.

House rule: the only randomness is the run's ``random.Random(seed)``; no clock, no I/O.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import random
from dataclasses import dataclass
from typing import Any, Final

from consensus.config import ReplicaConfig
from consensus.messages import SignedMessage
from consensus.ready import CommittedBlock, ProposalRequest, ValidateRequest
from consensus.sim.byzantine import STRATEGY_TYPES, Strategy
from consensus.sim.checker import Checker, Violation
from consensus.sim.driver import FetchedBlock, SimDriver
from consensus.sim.forgery import Forge
from consensus.sim.model import (
    GENESIS_DIGEST,
    GENESIS_STATE_ROOT,
    SIM_CHAIN_ID,
    SimParams,
    block_digest,
    draw_plan,
    memo_verify,
    validator_key,
)
from crypto.encoding import DecodeError
from crypto.hashing import sha256

(
    TICK,
    DELIVER,
    VALIDATE,
    PROPOSE,
    FETCH_REQUEST,
    FETCH_REPLY,
    REQUEST,
    RESUBMIT,
    CRASH,
    RESTART,
    CHECK,
) = range(11)
#: Every Byzantine behaviour a plan can draw, by name (twins are built by the world).
STRATEGIES_BY_NAME: Final[dict[str, type[Strategy]]] = {**STRATEGY_TYPES, Forge.name: Forge}
#: Clients resubmit uncommitted requests this often (virtual ms).
RESUBMIT_MS: Final = 200
#: How often the run checks whether everything committed (virtual ms).
CHECK_MS: Final = 50
#: Execution time of a validation or proposal (virtual ms, drawn in [1, this]).
MAX_EXEC_MS: Final = 3
#: Decoded messages remembered by their exact bytes, per run (entries).
MAX_WIRE_MEMO_ENTRIES: Final = 4096


@dataclass
class Endpoint:
    eid: int
    index: int
    honest: bool
    #: For twins: which group of honest validators this copy talks to (None: everyone).
    face: int | None
    driver: SimDriver
    strategy: Strategy | None = None


class Simulation:
    def __init__(self, seed: int, params: SimParams) -> None:
        self.seed = seed
        self.params = params
        self.rng = random.Random(seed)
        self.plan = draw_plan(self.rng, params)
        n = params.validators
        self.keys = [validator_key(i) for i in range(n)]
        self.config = ReplicaConfig(
            chain_id=SIM_CHAIN_ID,
            validators=tuple(k.public_key for k in self.keys),
            genesis_height=0,
            genesis_digest=GENESIS_DIGEST,
            genesis_state_root=GENESIS_STATE_ROOT,
            block_digest=block_digest,
            checkpoint_interval=params.checkpoint_interval,
            watermark_window=params.watermark_window,
            max_pipeline=params.max_pipeline,
            view_change_timeout_ms=params.view_change_timeout_ms,
            max_view_change_timeout_ms=params.max_view_change_timeout_ms,
            tick_ms=params.tick_ms,
            verify_signature=memo_verify,
        )
        honest = [i for i in range(n) if i not in self.plan.byzantine]
        self.checker = Checker(self.config, honest)
        self.queue: list[tuple[int, int, int, int, Any]] = []
        self.seq = 0
        self.time = 0
        self.trace = hashlib.sha256()
        self.submitted: set[int] = set()
        self.requests_total = len(self.plan.request_times)
        self.finished_at: int | None = None
        self.events = 0
        self.endpoints: list[Endpoint] = []
        for index in range(n):
            self._add_endpoint(index)
        self.by_index: list[list[Endpoint]] = [
            [e for e in self.endpoints if e.index == i] for i in range(n)
        ]
        #: Every endpoint of the other validators, by sender index (a broadcast's receivers).
        self.others: list[list[Endpoint]] = [
            [e for e in self.endpoints if e.index != i] for i in range(n)
        ]
        self.wire_memo: dict[bytes, tuple[bytes | SignedMessage, bytes]] = {}
        #: message -> its wire data (keyed by value: a retransmission is the same message)
        self.sent_memo: dict[SignedMessage, tuple[bytes | SignedMessage, bytes]] = {}
        #: Partitions are over from this virtual ms on (links are checked only before it).
        self.partitions_end = max((p.end for p in self.plan.partitions), default=0)

    def _add_endpoint(self, index: int) -> None:
        honest = index not in self.plan.byzantine
        strategy = self.plan.strategies.get(index, "")
        faces: list[int | None] = [0, 1] if strategy == "twins" else [None]
        for face in faces:
            driver = SimDriver(self, len(self.endpoints), index, self.keys[index], honest)
            driver.variant = face == 1
            endpoint = Endpoint(len(self.endpoints), index, honest, face, driver)
            if strategy in STRATEGIES_BY_NAME:
                endpoint.strategy = STRATEGIES_BY_NAME[strategy](self, driver)
                driver.outgoing = endpoint.strategy.outgoing
            self.endpoints.append(endpoint)

    # ------------------------------------------------------------------ scheduling

    def schedule(self, at: int, kind: int, eid: int, data: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, eid, data))

    def healed(self) -> bool:
        return self.time >= self.plan.heal_at

    def _link_up(self, sender: Endpoint, receiver: Endpoint) -> bool:
        groups = self.plan.groups
        if sender.face is not None and receiver.face is not None and sender.face != receiver.face:
            return False
        if (
            sender.face is not None
            and receiver.honest
            and groups.get(receiver.index, 0) != sender.face
        ):
            return False
        if (
            receiver.face is not None
            and sender.honest
            and groups.get(sender.index, 0) != receiver.face
        ):
            return False
        if self.healed() or self.time >= self.partitions_end:
            return True
        link = (sender.index, receiver.index)
        return not any(
            p.start <= self.time < p.end and link in p.blocked for p in self.plan.partitions
        )

    def _below(self, n: int) -> int:
        """``self.rng.randrange(n)`` (n > 0), drawing exactly what it draws (CPython's
        ``_randbelow_with_getrandbits``) without its argument handling: it runs for every
        message sent."""
        getrandbits = self.rng.getrandbits
        k = n.bit_length()
        r = getrandbits(k)
        while r >= n:
            r = getrandbits(k)
        return r

    def _lost(self) -> bool:
        return not self.healed() and self._below(1000) < self.plan.loss_permille

    def _delay(self) -> int:
        return self.plan.base_delay_ms + self._below(self.plan.jitter_ms + 1)

    def _transmit(self, sender: Endpoint, receiver: Endpoint, kind: int, data: Any) -> None:
        if not self._link_up(sender, receiver) or self._lost():
            return
        self.schedule(self.time + self._delay(), kind, receiver.eid, data)
        if not self.healed() and self._below(1000) < self.plan.duplicate_permille:
            self.schedule(self.time + self._delay(), kind, receiver.eid, data)

    # ------------------------------------------------------------------ driver services

    def send(self, driver: SimDriver, to: int | None, message: SignedMessage) -> None:
        sender = self.endpoints[driver.eid]
        # Retransmissions send the very same message object again: skip even the encode.
        sent = self.sent_memo.get(message)
        if sent is not None:
            data = sent
        else:
            self.checker.observe(message)  # once per message: a retransmission adds nothing
            data = self._wire(message.encode())
            if len(self.sent_memo) >= MAX_WIRE_MEMO_ENTRIES:
                self.sent_memo.clear()
            self.sent_memo[message] = data
        receivers = self.others[driver.index] if to is None else self.by_index[to]
        for receiver in receivers:
            if receiver.eid != sender.eid:
                self._transmit(sender, receiver, DELIVER, data)

    def _wire(self, raw: bytes) -> tuple[bytes | SignedMessage, bytes]:
        """What every receiver gets off the wire for ``raw``, and its trace fingerprint.
        Decoded once for all receivers; bytes that do not decode are delivered raw, so
        the replica's own decoder rejects them. Memoised by the exact bytes (a STATUS or
        a retransmitted vote is the same bytes again): decoding is a pure function."""
        known = self.wire_memo.get(raw)
        if known is None:
            decoded: bytes | SignedMessage = raw
            with contextlib.suppress(DecodeError):
                decoded = SignedMessage.decode(raw)
            known = (decoded, sha256(raw)[:8])
            if len(self.wire_memo) >= MAX_WIRE_MEMO_ENTRIES:
                self.wire_memo.clear()
            self.wire_memo[raw] = known
        return known

    def after_exec(
        self, driver: SimDriver, what: str, request: ValidateRequest | ProposalRequest
    ) -> None:
        kind = VALIDATE if what == "validate" else PROPOSE
        self.schedule(
            self.time + self.rng.randint(1, MAX_EXEC_MS),
            kind,
            driver.eid,
            (driver.incarnation, request),
        )

    def fetch(self, driver: SimDriver, low: int, high: int) -> None:
        peers = [e for e in self.endpoints if e.index != driver.index]
        peer = self.rng.choice(peers)
        self._transmit(self.endpoints[driver.eid], peer, FETCH_REQUEST, (driver.eid, low, high))

    def note_commit(self, driver: SimDriver, block: CommittedBlock) -> None:
        self.trace.update(b"commit %d %d " % (driver.eid, block.height) + block.digest)

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        plan = self.plan
        for endpoint in self.endpoints:
            endpoint.driver.boot()
            period = plan.tick_periods[endpoint.index]
            self.schedule(self.rng.randint(1, period), TICK, endpoint.eid)
        for request, at in enumerate(plan.request_times):
            self.schedule(at, REQUEST, -1, request)
        for crash in plan.crashes:
            endpoint = self.by_index[crash.index][0]
            self.schedule(crash.at, CRASH, endpoint.eid)
            self.schedule(crash.restart_at, RESTART, endpoint.eid)
        self.schedule(RESUBMIT_MS, RESUBMIT, -1)
        self.schedule(CHECK_MS, CHECK, -1)
        last_request = plan.request_times[-1] if plan.request_times else 0
        deadline = max(plan.heal_at, last_request) + self.params.liveness_bound_ms
        queue, checker, trace_update = self.queue, self.checker, self.trace.update
        pop, dispatch = heapq.heappop, self._dispatch
        while queue and self.finished_at is None:
            at, _, kind, eid, data = pop(queue)
            if at > deadline:
                break
            self.time = checker.time_ms = at
            self.events += 1
            trace_update(b"%d %d %d;" % (at, kind, eid))
            dispatch(kind, eid, data)
        self._finish(deadline)

    def _dispatch(self, kind: int, eid: int, data: Any) -> None:
        if kind == DELIVER:
            message, fingerprint = data
            self.trace.update(fingerprint)
            endpoint = self.endpoints[eid]
            endpoint.driver.on_message(message)
            if endpoint.strategy is not None and not isinstance(message, bytes):
                endpoint.strategy.observe(message)
        elif kind == TICK:
            endpoint = self.endpoints[eid]
            endpoint.driver.on_tick()
            if endpoint.strategy is not None:
                endpoint.strategy.on_tick()
            self.schedule(self.time + self.plan.tick_periods[endpoint.index], TICK, eid)
        elif kind == VALIDATE:
            self.endpoints[eid].driver.do_validate(*data)
        elif kind == PROPOSE:
            self.endpoints[eid].driver.do_propose(*data)
        elif kind == FETCH_REQUEST:
            requester, low, high = data
            server = self.endpoints[eid]
            blocks = server.driver.serve_fetch(low, high)
            if server.strategy is not None:
                blocks = server.strategy.serve_fetch(blocks)
            if blocks:
                self._transmit(server, self.endpoints[requester], FETCH_REPLY, blocks)
        elif kind == FETCH_REPLY:
            self._on_fetch_reply(eid, data)
        elif kind == REQUEST:
            self.submitted.add(data)
            self._client_send(data)
        elif kind == RESUBMIT:
            for request in sorted(self.submitted):
                self._client_send(request)
            self.schedule(self.time + RESUBMIT_MS, RESUBMIT, -1)
        elif kind == CRASH:
            self.endpoints[eid].driver.crash()
        elif kind == RESTART:
            self.endpoints[eid].driver.restart()
        elif kind == CHECK:
            if self._all_committed():
                self.finished_at = self.time
            else:
                self.schedule(self.time + CHECK_MS, CHECK, -1)

    def _on_fetch_reply(self, eid: int, blocks: list[FetchedBlock]) -> None:
        self.trace.update(b"fetched %d" % len(blocks))
        self.endpoints[eid].driver.on_fetched(blocks)

    def _client_send(self, request: int) -> None:
        for endpoint in self.endpoints:
            driver = endpoint.driver
            if request in driver.applied or request in driver.mempool or not driver.up:
                continue
            if not self._lost():
                driver.on_request(request)

    def _all_committed(self) -> bool:
        if len(self.submitted) < self.requests_total or not self.healed():
            return False
        for endpoint in self.endpoints:
            if endpoint.honest and (
                not endpoint.driver.up or len(endpoint.driver.applied) < self.requests_total
            ):
                return False
        return True

    def _finish(self, deadline: int) -> None:
        """The auditor judges liveness itself, whatever the world believes."""
        waiting = []
        for endpoint in self.endpoints:
            replica = endpoint.driver.replica
            if endpoint.honest and replica is not None:
                waiting.append(f"node{endpoint.index}: {replica.status().waiting_for}")
        if self.finished_at is None:
            self.checker.time_ms = deadline
        self.checker.finish(self.requests_total, " | ".join(waiting))

    @property
    def violations(self) -> list[Violation]:
        return self.checker.violations
