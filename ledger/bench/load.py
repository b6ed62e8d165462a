"""The load phase of `quorum bench`: clients posting the pre-signed batches (closed or
open loop), followers recording when each height appears on each node, and the progress
bar a person watches.

Backpressure, as a well-behaved client meets it. A transaction the node refuses "for
now" (``busy``, ``sender_busy``, ``mempool_full``, ... or any refusal that carries
``retry_after_ms``; also HTTP 429/503 and transport errors) goes to its node's
:class:`RetryQueue` and is posted again no sooner than ``max(RETRY_BACKOFF_S, the largest
retry_after_ms of that answer)``, until the retry deadline. Refusals are counted by code
(``refused``), re-posts in ``retries``.

Nonce order. A sender's transactions all go to one node, in nonce order. Once the
client knows one of them was refused, none of the sender's later transactions is posted
before it: they join the queue behind it (``held_back``), which keeps each sender's
transactions in nonce order and posts a sender's run only up to its first one not yet
due. One worker per node drains its queue, one request at a time, everything due in one
request (so the held-back traffic is coalesced, not a request per batch). When the
client gives up on a transaction (deadline, or a final refusal that leaves a hole), the
sender's later transactions are not sent at all (``abandoned``): they could never
commit. What was already in flight when a refusal became known can arrive ahead of the
retry; the node keeps such transactions behind the gap until the retry fills it.

Posts from the queue do not wait for commits (their commit times come from the
followers). Each accepted transaction records two start times: its first submission
(the latency a client sees, retries included) and the post the node accepted (the
latency the node is answerable for once it took the transaction).

Never: give up on a transaction the node asked to have sent later before the retry
deadline, post a sender's transaction while an earlier one of it waits in the queue, or
keep sending a sender's transactions after one of its nonces was abandoned.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.bench.plan import (
    ACCEPTED_STATUSES,
    ALREADY_HELD_CODES,
    CLOSED_WAIT_MS,
    RETRY_BACKOFF_S,
    RETRYABLE_CODES,
    Batch,
    BenchOptions,
    Plan,
)
from ledger.client import AsyncQuorumClient, ClientError, NodeUnreachable, RequestFailed

#: A refusal without a figure (HTTP 429/503 with no per-transaction results): wait this.
DEFAULT_RETRY_AFTER_S: Final = 1.0
#: Most transactions in one post from a retry queue (the API takes 5,000).
MAX_RETRY_POST: Final = 1_000
#: Rejection codes that do not leave a hole in the sender's nonces (the nonce is used or
#: held by another transaction): the sender's later transactions still go.
NO_HOLE_CODES: Final = frozenset({"nonce_too_low", "nonce_taken", "nonce_used"})
#: What a transaction behind an abandoned nonce of its sender is counted as (not sent).
ABANDONED: Final = "abandoned"
GAVE_UP: Final = "gave_up_retrying"


class Ticket:
    """A batch's transactions still in a retry queue; set when there are none left."""

    def __init__(self) -> None:
        self.remaining = 0
        self.event = trio.Event()

    def hold(self) -> None:
        self.remaining += 1
        if self.event.is_set():
            self.event = trio.Event()

    def done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.event.set()

    async def wait(self) -> None:
        while self.remaining > 0:
            await self.event.wait()


@dataclass(slots=True, eq=False)
class Waiting:
    """One transaction in a retry queue: item ``index`` of ``batch``, not to be posted
    before ``due`` (bench clock); ``posted``: it was posted before (a re-post is a retry)."""

    batch: Batch
    index: int
    due: float
    ticket: Ticket
    posted: bool

    @property
    def nonce(self) -> int:
        return self.batch.nonces[self.index]


class RetryQueue:
    """One node's transactions waiting to be posted (again), per sender in nonce order."""

    def __init__(self, node: int) -> None:
        self.target = node  # where posts go (the next node after a transport failure)
        self.by_sender: dict[int, list[Waiting]] = {}
        self.size = 0
        self.wake = trio.Event()

    def has(self, sender: int) -> bool:
        return sender in self.by_sender

    def add(self, item: Waiting) -> None:
        sender = item.batch.senders[item.index]
        bisect.insort(self.by_sender.setdefault(sender, []), item, key=lambda w: w.nonce)
        item.ticket.hold()
        self.size += 1
        self.wake.set()

    def remove(self, item: Waiting) -> None:
        sender = item.batch.senders[item.index]
        items = self.by_sender[sender]
        items.remove(item)
        if not items:
            del self.by_sender[sender]
        self.size -= 1
        item.ticket.done()

    def due(self, now: float, limit: int) -> tuple[list[Waiting], float]:
        """What may be posted now: each sender's run of due transactions from its first
        one (at most its share of ``limit``), interleaved nonce by nonce; and when the
        next one is due (``now`` when some due ones were left for the next post; ``inf``:
        nothing waits)."""
        runs: list[list[Waiting]] = []
        next_due = math.inf
        share = max(1, -(-limit // max(1, len(self.by_sender))))
        for items in self.by_sender.values():
            run: list[Waiting] = []
            for item in items:
                if item.due > now:
                    next_due = min(next_due, item.due)
                    break
                if len(run) >= share:
                    next_due = now
                    break
                run.append(item)
            if run:
                runs.append(run)
        out: list[Waiting] = []
        longest = max((len(r) for r in runs), default=0)
        for k in range(longest):
            for run in runs:
                if k < len(run):
                    out.append(run[k])
                    if len(out) >= limit:
                        return out, now
        return out, next_due


class LiveView:
    """The progress bar on stderr (a person's view; absent under --json)."""

    def __init__(self, console: Console | None, total_s: float) -> None:
        self.progress: Progress | None = None
        self.task = None
        if console is not None:
            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[info]}"),
                console=console,
                auto_refresh=False,
                transient=False,
            )
            self.task = self.progress.add_task("load", total=total_s, info="")

    def __enter__(self) -> LiveView:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()

    def update(self, description: str, completed: float, info: str) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=description, completed=completed, info=info)
            self.progress.refresh()


@dataclass(slots=True)
class LoadRun:
    opts: BenchOptions
    plan: Plan
    clients: list[list[AsyncQuorumClient]]  # [client][node]
    t0: float = 0.0
    t_measure: float = 0.0
    t_load_end: float = 0.0
    retry_deadline: float = 0.0
    next_batch: int = 0
    exhausted: bool = False
    submitted: int = 0
    #: Accepted transactions and when they were first submitted (bench clock).
    accepted: dict[bytes, float] = field(default_factory=dict)
    #: Accepted transactions taken on a later post: when that post left.
    accepted_post: dict[bytes, float] = field(default_factory=dict)
    #: When the node answered "committed" (bench clock), for transactions it answered so.
    answered: dict[bytes, float] = field(default_factory=dict)
    #: Final answers other than "taken" (``abandoned``, ``gave_up_retrying`` included).
    rejected: Counter[str] = field(default_factory=Counter)
    #: Refusals "for now" by code, one per refused post of a transaction.
    refused: Counter[str] = field(default_factory=Counter)
    refused_hashes: set[bytes] = field(default_factory=set)
    #: Taken, then let go by the node without a block (the answer said why), by code.
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_hashes: set[bytes] = field(default_factory=set)
    failed_hashes: set[bytes] = field(default_factory=set)
    retries: int = 0
    held_back: int = 0
    queues: list[RetryQueue] = field(default_factory=list)
    #: Senders with an abandoned nonce: the lowest one.
    broken: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    late_batches: int = 0
    in_flight: int = 0
    heights: list[int] = field(default_factory=list)
    seen: list[dict[int, float]] = field(default_factory=list)
    phase: str = "load"
    reference: int = 0  # the node whose blocks give commit times (see _drive)
    drain_outstanding: int = 0

    def __post_init__(self) -> None:
        if not self.queues:
            self.queues = [RetryQueue(node) for node in range(len(self.opts.nodes))]

    def take_batch(self) -> Batch | None:
        if self.next_batch >= len(self.plan.batches):
            self.exhausted = True
            return None
        batch = self.plan.batches[self.next_batch]
        self.next_batch += 1
        return batch

    def waiting(self) -> int:
        return sum(q.size for q in self.queues)

    def is_broken(self, batch: Batch, i: int) -> bool:
        """An earlier nonce of item ``i``'s sender was abandoned: it can never commit."""
        low = self.broken.get(batch.senders[i])
        return low is not None and batch.nonces[i] > low

    async def send(self, client_index: int, batch: Batch, wait: bool) -> None:
        """Post ``batch`` to its node (``wait``: answered when it commits); returns when
        every transaction of it was taken or finally refused. What is refused for now,
        and what of it follows a sender's transaction waiting in the retry queue, goes to
        the queue (module docstring)."""
        count = len(batch.raws)
        self.in_flight += count
        try:
            if batch.t_submit < 0:
                batch.t_submit = trio.current_time()
                self.submitted += count
            queue = self.queues[batch.node]
            ticket = Ticket()
            direct: list[int] = []
            for i in range(count):
                if self.is_broken(batch, i):
                    self.rejected[ABANDONED] += 1
                elif queue.has(batch.senders[i]):
                    queue.add(Waiting(batch, i, batch.t_submit, ticket, posted=False))
                    self.held_back += 1
                else:
                    direct.append(i)
            if direct:
                posted_at = trio.current_time()
                answer = await self._post(
                    client_index, batch.node, [batch.raws[i] for i in direct], wait
                )
                if isinstance(answer, _Failed):
                    if answer.code is not None:
                        for i in direct:
                            self._final(batch, i, answer.code)
                    else:
                        if answer.next_node and queue.target == batch.node:
                            queue.target = (batch.node + 1) % len(self.opts.nodes)
                        due = trio.current_time() + answer.delay
                        for i in direct:
                            queue.add(Waiting(batch, i, due, ticket, posted=True))
                else:
                    refused, delay = self._take(batch, direct, answer, posted_at, first=True)
                    due = trio.current_time() + delay
                    for i in refused:
                        queue.add(Waiting(batch, i, due, ticket, posted=True))
            await ticket.wait()
        finally:
            self.in_flight -= count

    async def retry_worker(self, node: int) -> None:
        """Drain ``node``'s retry queue, one request at a time, until cancelled."""
        queue = self.queues[node]
        client_index = node % len(self.clients)
        while True:
            now = trio.current_time()
            if queue.size and now > self.retry_deadline:
                for items in list(queue.by_sender.values()):
                    for item in list(items):
                        queue.remove(item)
                        self._final(item.batch, item.index, GAVE_UP)
                continue
            self._drop_abandoned(queue)
            ready, next_due = queue.due(now, MAX_RETRY_POST)
            if not ready:
                queue.wake = trio.Event()
                # Something waits: until it is due (or the deadline); nothing: until added.
                until = min(next_due, self.retry_deadline + RETRY_BACKOFF_S)
                with trio.move_on_at(until if queue.size else math.inf):
                    await queue.wake.wait()
                continue
            self.retries += sum(1 for item in ready if item.posted)
            for item in ready:
                item.posted = True
            posted_at = trio.current_time()
            answer = await self._post(
                client_index,
                queue.target,
                [item.batch.raws[item.index] for item in ready],
                wait=False,
            )
            if isinstance(answer, _Failed):
                if answer.code is not None:
                    for item in ready:
                        queue.remove(item)
                        self._final(item.batch, item.index, answer.code)
                    continue
                if answer.next_node:
                    queue.target = (queue.target + 1) % len(self.opts.nodes)
                due = trio.current_time() + answer.delay
                for item in ready:
                    item.due = due
                continue
            again: list[Waiting] = []
            delay = RETRY_BACKOFF_S
            for item, result in zip(ready, answer, strict=True):
                refused, item_delay = self._take(
                    item.batch, [item.index], [result], posted_at, first=False
                )
                if refused:
                    again.append(item)
                    delay = max(delay, item_delay)
                else:
                    queue.remove(item)
            due = trio.current_time() + delay
            for item in again:
                item.due = due

    def _drop_abandoned(self, queue: RetryQueue) -> None:
        for items in list(queue.by_sender.values()):
            for item in list(items):
                if self.is_broken(item.batch, item.index):
                    queue.remove(item)
                    self.rejected[ABANDONED] += 1

    async def _post(
        self, client_index: int, node: int, raws: list[bytes], wait: bool
    ) -> list[dict[str, Any]] | _Failed:
        """One submission; the per-transaction results, or why there are none."""
        client = self.clients[client_index][node]
        try:
            return await client.submit(
                raws, wait=wait, timeout_ms=CLOSED_WAIT_MS, binary=self.opts.binary
            )
        except NodeUnreachable:
            self.transport_errors += 1
            return _Failed(None, RETRY_BACKOFF_S, next_node=True)
        except RequestFailed as exc:
            if exc.status in (429, 503):  # busy, not gone: the same node, later
                self.transport_errors += 1
                return _Failed(None, DEFAULT_RETRY_AFTER_S, next_node=False)
            if exc.status >= 500:
                self.transport_errors += 1
                return _Failed(None, RETRY_BACKOFF_S, next_node=True)
            return _Failed(exc.code, 0.0, next_node=False)

    def _take(
        self,
        batch: Batch,
        items: list[int],
        results: list[dict[str, Any]],
        posted_at: float,
        *,
        first: bool,
    ) -> tuple[list[int], float]:
        """Record the node's answers to a post of ``items`` that left at ``posted_at``;
        returns the refused items (to post again) and how long to wait first."""
        refused: list[int] = []
        retry_after_ms = 0.0
        answered_at = trio.current_time()
        for i, result in zip(items, results, strict=True):
            status = result.get("status")
            code = str(result.get("code"))
            digest = batch.hashes[i]
            if status in ("committed", "failed") and "height" in result:
                self.answered[digest] = answered_at
            if status in ACCEPTED_STATUSES or code in ALREADY_HELD_CODES:
                self._accept(batch, i, posted_at, first)
                if status == "failed":
                    self.failed_hashes.add(digest)
            elif status == "dropped":
                # Taken, then let go without a block (the answer says why): it counts as
                # accepted and not committed, and the sender's later nonces cannot commit.
                self._accept(batch, i, posted_at, first)
                self.dropped[code] += 1
                self.dropped_hashes.add(digest)
                self._abandon(batch, i)
            elif code in RETRYABLE_CODES or "retry_after_ms" in result:
                self.refused[code] += 1
                self.refused_hashes.add(digest)
                refused.append(i)
                retry_after_ms = max(retry_after_ms, float(result.get("retry_after_ms") or 0))
            else:
                self._final(batch, i, code)
        return refused, max(RETRY_BACKOFF_S, retry_after_ms / 1000)

    def _accept(self, batch: Batch, i: int, posted_at: float, first: bool) -> None:
        digest = batch.hashes[i]
        self.accepted[digest] = batch.t_submit
        if not first:
            self.accepted_post[digest] = posted_at

    def _final(self, batch: Batch, i: int, code: str) -> None:
        """The node refused item ``i`` for good (or the client gave up on it)."""
        self.rejected[code] += 1
        if code not in NO_HOLE_CODES:
            self._abandon(batch, i)

    def _abandon(self, batch: Batch, i: int) -> None:
        sender, nonce = batch.senders[i], batch.nonces[i]
        self.broken[sender] = min(nonce, self.broken.get(sender, nonce))
        self.queues[batch.node].wake.set()

    async def closed_client(self, index: int) -> None:
        while trio.current_time() < self.t_load_end:
            batch = self.take_batch()
            if batch is None:
                return
            await self.send(index, batch, wait=True)

    async def open_scheduler(self) -> None:
        assert self.opts.rate is not None
        interval = self.opts.effective_batch() / self.opts.rate
        async with trio.open_nursery() as nursery:
            k = 0
            while True:
                target = self.t0 + k * interval
                if target >= self.t_load_end:
                    break
                batch = self.take_batch()
                if batch is None:
                    break
                if trio.current_time() > target + interval:
                    self.late_batches += 1
                else:
                    await trio.sleep_until(target)
                # Waiting for the commit answer costs the node a waiter, not a poll: the
                # latency is what a client sees, with no polling overhead or resolution.
                nursery.start_soon(self.send, k % self.opts.clients, batch, True)
                k += 1

    async def follow(self, node: int, every_s: float) -> None:
        """Record when each height first appears on ``node`` (bench clock)."""
        client = self.clients[0][node]
        seen = self.seen[node]
        while True:
            try:
                height = int((await client.status())["height"])
            except ClientError:
                height = -1
            now = trio.current_time()
            if height > self.heights[node]:
                for h in range(self.heights[node] + 1, height + 1):
                    seen[h] = now
                self.heights[node] = height
            await trio.sleep(every_s)

    async def ticker(self, view: LiveView) -> None:
        total = self.opts.warmup_s + self.opts.duration_s
        while True:
            now = trio.current_time()
            if self.phase == "load":
                info = (
                    f"submitted {self.submitted:,}  accepted {len(self.accepted):,}  "
                    f"refused {sum(self.refused.values()):,}  waiting {self.waiting():,}  "
                    f"in flight {self.in_flight:,}  height {max(self.heights)}"
                )
                view.update("load ", min(total, now - self.t0), info)
            elif self.phase == "drain":
                info = f"waiting for {self.drain_outstanding:,} to commit  height {self.heights[0]}"
                view.update("drain", total, info)
            await trio.sleep(0.25)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A submission without results: refused for good (``code``), or to be posted again
    after ``delay`` seconds (to the next node when this one did not answer)."""

    code: str | None
    delay: float
    next_node: bool
