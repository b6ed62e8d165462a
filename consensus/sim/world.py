"""The simulated world: endpoints, a network with faults, clients, and virtual time.

One event queue ordered by (virtual ms, sequence number) drives everything; the sequence
number makes ties deterministic. Every event processed is folded into ``trace`` (SHA-256),
so two runs of one seed that differ in anything observable differ in their trace hash.

Endpoints: one per validator, plus a second one for each twin. A twin pair shares a key
and an index; each twin sees (and is seen by) one group of honest validators only. The
network drops messages on blocked links during partitions, loses and duplicates them at
the plan's rates until the heal, and delays each by ``base + jitter`` ms (reordering).
Clients submit each request to every endpoint and resubmit what is not committed.

Epochs (``SimParams(epochs=True)``; consensus/sim/epochs.py): validators are numbered
globally (genesis 0..n-1, then each added key); an added one runs from the start as a
follower. A replica's messages name its index in its epoch's set and go to that set's
members. The votes of change c are submitted (the clients resubmit them like any request)
``delay_ms`` after change c-1 took effect at an honest replica; while a change is under
way clients keep adding requests, so blocks keep coming up to the switch block. Per change
the plan picks how its votes meet a view change (epochs.MODES): the epoch's primary is
crashed just before or just after they are submitted. A removed Byzantine validator turns
into a :class:`~consensus.sim.zombie.Zombie`.

House rule: the only randomness is the run's ``random.Random(seed)``; no clock, no I/O.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import random
from dataclasses import dataclass
from typing import Any, Final

from consensus.config import ReplicaConfig, epoch_chain_id
from consensus.messages import PrePrepare, SignedMessage, sign
from consensus.ready import CommittedBlock, ProposalRequest, ValidateRequest
from consensus.sim.audit import SetRules
from consensus.sim.byzantine import STRATEGY_TYPES, Strategy
from consensus.sim.checker import Checker, Violation
from consensus.sim.driver import FOLLOWER, MAX_BLOCKS_PER_FETCH_REPLY, FetchedBlock, SimDriver
from consensus.sim.epochs import ADD, VOTE_BASE, SetState, dead_vote, final_members, vote_id
from consensus.sim.forgery import Forge
from consensus.sim.model import (
    GENESIS_DIGEST,
    GENESIS_STATE_ROOT,
    MAX_REQUESTS_PER_BLOCK,
    SIM_CHAIN_ID,
    SimParams,
    block_digest,
    block_payload,
    draw_plan,
    memo_verify,
    validator_key,
)
from consensus.sim.zombie import Zombie
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
    FOLLOW,
    VOTES,
    FILL,
    DISRUPT,
) = range(15)
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
#: A follower asks a peer for blocks above its head this often (virtual ms).
FOLLOW_MS: Final = 50
#: While a set change is under way, clients add a request this often (virtual ms).
FILL_MS: Final = 60
#: A primary crashed around a change's votes restarts after this long (virtual ms, range).
DISRUPT_DOWN_MS: Final = (150, 600)


@dataclass
class EpochStats:
    """What the epoch scenarios did in one run (all zero without epochs)."""

    #: Set changes that took effect (an honest replica switched).
    switches: int = 0
    #: ... whose switch block was certified in a view entered after the votes went out.
    switch_view_changes: int = 0
    #: Votes submitted while an honest member was between views (a view change running).
    votes_in_view_change: int = 0
    #: Primaries crashed around a change's votes.
    disruptions: int = 0
    #: Messages removed Byzantine validators sent with their old keys.
    zombie_messages: int = 0
    #: Old-epoch PRE-PREPAREs of the switch block's child from Byzantine old primaries.
    overreaches: int = 0
    #: Certified blocks followers refused (forged or corrupted fetch replies).
    follower_refused: int = 0


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
        self.changes = self.plan.changes
        total = n + sum(1 for c in self.changes if c.action == ADD)
        self.keys = [validator_key(i) for i in range(total)]
        self.config = ReplicaConfig(
            chain_id=SIM_CHAIN_ID,
            validators=tuple(k.public_key for k in self.keys[:n]),
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
        honest = [i for i in range(total) if i not in self.plan.byzantine]
        sets = None
        if self.changes:
            sets = SetRules(
                tuple(k.public_key for k in self.keys),
                tuple((c.action, c.target) for c in self.changes),
                params.checkpoint_interval,
            )
        self.checker = Checker(self.config, honest, sets)
        self.genesis_sets = SetState(0, self.config.genesis_height, tuple(range(n)))
        self.final_members = frozenset(final_members(n, self.changes))
        self.stats = EpochStats()
        #: The highest epoch an honest replica switched into, and the configs built so far.
        self.epoch_reached = 0
        self._configs: dict[tuple[int, bytes], ReplicaConfig] = {}
        #: Per change: the highest view honest members were in when its votes went out.
        self._vote_views: dict[int, int] = {}
        self.next_request = len(self.plan.request_times)
        self.planned_submitted = 0
        self.queue: list[tuple[int, int, int, int, Any]] = []
        self.seq = 0
        self.time = 0
        self.trace = hashlib.sha256()
        self.submitted: set[int] = set()
        self.requests_total = len(self.plan.request_times)
        self.finished_at: int | None = None
        self.events = 0
        self.endpoints: list[Endpoint] = []
        for index in range(total):
            self._add_endpoint(index)
        self.by_index: list[list[Endpoint]] = [
            [e for e in self.endpoints if e.index == i] for i in range(total)
        ]
        #: A broadcast's receivers: every endpoint of the other members of the sender's set.
        self._receivers: dict[tuple[int, tuple[int, ...]], list[Endpoint]] = {}
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
        members = driver.members
        if to is None:
            receivers = self._receivers.get((driver.index, members))
            if receivers is None:
                receivers = [e for e in self.endpoints if e.index in members]
                receivers = [e for e in receivers if e.index != driver.index]
                self._receivers[(driver.index, members)] = receivers
        else:
            receivers = self.by_index[members[to]] if 0 <= to < len(members) else []
        for receiver in receivers:
            if receiver.eid != sender.eid:
                self._transmit(sender, receiver, DELIVER, data)

    def spray(self, driver: SimDriver, message: SignedMessage) -> None:
        """A removed Byzantine validator sends ``message`` to every other endpoint."""
        self.checker.observe(message)
        self.stats.zombie_messages += 1
        data = self._wire(message.encode())
        sender = self.endpoints[driver.eid]
        for receiver in self.endpoints:
            if receiver.index != driver.index:
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

    def epoch_config(self, sets: SetState, anchor: bytes, root: bytes) -> ReplicaConfig:
        """The config of ``sets``' epoch, anchored at its switch block (``anchor``, with
        state ``root``): the genesis config with the set, the signing domain and the anchor
        replaced (ledger/engine/epochs.py ``epoch_config``)."""
        if sets.epoch == 0:
            return self.config
        key = (sets.epoch, anchor)
        config = self._configs.get(key)
        if config is None:
            config = dataclasses.replace(
                self.config,
                chain_id=epoch_chain_id(SIM_CHAIN_ID, sets.epoch),
                validators=tuple(self.keys[g].public_key for g in sets.members),
                validator_names=tuple(f"node{g}" for g in sets.members),
                genesis_height=sets.start_height,
                genesis_digest=anchor,
                genesis_state_root=root,
            )
            self._configs[key] = config
        return config

    def on_switch(self, driver: SimDriver, config: ReplicaConfig) -> None:
        """``driver`` committed the block that ended its epoch; ``config`` is the next's."""
        endpoint = self.endpoints[driver.eid]
        member = driver.key.public_key in config.validators
        if not endpoint.honest and not member and driver.replica is not None:
            endpoint.strategy = Zombie(self, driver, config)
            driver.outgoing = endpoint.strategy.outgoing
        epoch = driver.sets.epoch
        if not endpoint.honest or epoch <= self.epoch_reached:
            return
        self.epoch_reached = epoch
        self.stats.switches += 1
        certified_in = driver.chain[-1].view
        if certified_in > self._vote_views.get(epoch - 1, certified_in):
            self.stats.switch_view_changes += 1
        if epoch < len(self.changes):
            self.schedule(self.time + self.changes[epoch].delay_ms, VOTES, -1, (epoch, 0))

    def on_epoch_end(self, driver: SimDriver, height: int, digest: bytes) -> None:
        """A Byzantine validator's execution found that block ``digest`` at ``height`` ends
        its epoch. If it leads the view, it overreaches: it proposes that block's child in
        the old epoch (a real block, signed under the old domain) to the old members, while
        they still prepare or commit the last block. Every honest one must refuse to
        validate or vote on it (the epoch rule, docs/CONSENSUS.md §12)."""
        replica = driver.replica
        if replica is None or replica.primary != replica.index or not replica.active:
            return
        ancestry = driver.ancestry(digest, height + 1)
        if ancestry is None:
            return
        before = ancestry[0]
        pool = sorted(
            r
            for r in self.submitted
            if r not in driver.applied and r not in before and r < VOTE_BASE
        )
        payload = block_payload(height + 1, digest, pool[:MAX_REQUESTS_PER_BLOCK])
        header = PrePrepare(replica.view, height + 1, sha256(payload), digest)
        message = sign(driver.key, driver.config.chain_id, replica.index, header, payload)
        self.stats.overreaches += 1
        self.send(driver, None, message)

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
        for endpoint in self.endpoints:
            if endpoint.driver.role == FOLLOWER:
                self.schedule(self.rng.randint(1, FOLLOW_MS), FOLLOW, endpoint.eid)
        if self.changes:
            self.schedule(self.changes[0].delay_ms, VOTES, -1, (0, 0))
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
            self.planned_submitted += 1
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
        else:
            self._dispatch_epochs(kind, eid, data)

    # ------------------------------------------------------------------ epochs

    def _dispatch_epochs(self, kind: int, eid: int, data: Any) -> None:
        if kind == FOLLOW:
            driver = self.endpoints[eid].driver
            if driver.role == FOLLOWER:
                height = driver.head[0]
                self.fetch(driver, height + 1, height + MAX_BLOCKS_PER_FETCH_REPLY)
                self.schedule(self.time + FOLLOW_MS, FOLLOW, eid)
        elif kind == VOTES:
            number, phase = data
            mode = self.changes[number].mode
            if mode == "crash-then-vote" and phase == 0:
                self._disrupt()
                timeout = self.params.view_change_timeout_ms
                later = self.time + self.rng.randint(timeout, 2 * timeout)
                self.schedule(later, VOTES, -1, (number, 1))
                return
            self._submit_votes(number)
            if mode == "vote-then-crash":
                self.schedule(self.time + self.rng.randint(0, 20), DISRUPT, -1)
            self.schedule(self.time + FILL_MS, FILL, -1, number)
        elif kind == FILL:
            if self.epoch_reached <= data:
                request = self.next_request
                self.next_request += 1
                self.submitted.add(request)
                self._client_send(request)
                self.schedule(self.time + FILL_MS, FILL, -1, data)
        elif kind == DISRUPT:
            self._disrupt()

    def _current_members(self) -> list[SimDriver]:
        """Honest drivers running a replica of the newest epoch an honest one reached."""
        return [
            e.driver
            for e in self.endpoints
            if e.honest and e.driver.replica is not None and e.driver.epoch == self.epoch_reached
        ]

    def _submit_votes(self, number: int) -> None:
        members = self._current_members()
        self._vote_views[number] = max((d.replica.view for d in members if d.replica), default=0)
        if any(d.replica is not None and not d.replica.active for d in members):
            self.stats.votes_in_view_change += 1
        for voter in self.changes[number].voters:
            request = vote_id(number, voter)
            self.submitted.add(request)
            self._client_send(request)

    def _disrupt(self) -> None:
        """Crash the primary of the newest epoch (as its most advanced honest member sees
        it) if it is honest and up; it restarts a little later."""
        members = self._current_members()
        if not members:
            return
        lead = max(members, key=lambda d: (d.head[0], -d.eid))
        assert lead.replica is not None
        primary = lead.members[lead.replica.primary]
        endpoint = self.by_index[primary][0]
        if not endpoint.honest or endpoint.driver.replica is None:
            return
        self.stats.disruptions += 1
        endpoint.driver.crash()
        down = self.rng.randint(*DISRUPT_DOWN_MS)
        self.schedule(self.time + down, RESTART, endpoint.eid)

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
        if self.planned_submitted < self.requests_total or not self.healed():
            return False
        if self.epoch_reached < len(self.changes):
            return False
        for endpoint in self.endpoints:
            driver = endpoint.driver
            if not endpoint.honest or endpoint.index not in self.final_members:
                continue
            if not driver.up or any(
                not dead_vote(driver.sets, r) for r in self.submitted - driver.applied
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
        for endpoint in self.endpoints:
            self.stats.follower_refused += endpoint.driver.refused
        self.checker.finish(self.submitted, " | ".join(waiting))

    @property
    def violations(self) -> list[Violation]:
        return self.checker.violations
