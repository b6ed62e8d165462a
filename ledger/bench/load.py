"""The load phase of `quorum bench`: clients posting the pre-signed batches (closed or
open loop), followers recording when each height appears on each node, and the progress
bar a person watches.

Never: give up on a transaction the node asked to have sent later before the retry
deadline, or let a retry leave a hole in a sender's nonce sequence (a retry goes to the
next node, in order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ledger.bench.plan import (
    ACCEPTED_STATUSES,
    CLOSED_WAIT_MS,
    RETRY_BACKOFF_S,
    RETRYABLE_CODES,
    Batch,
    BenchOptions,
    Plan,
)
from ledger.client import AsyncQuorumClient, ClientError, NodeUnreachable, RequestFailed


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
    accepted: dict[bytes, float] = field(default_factory=dict)
    #: When the node answered "committed" (bench clock), for transactions it answered so.
    answered: dict[bytes, float] = field(default_factory=dict)
    rejected: Counter[str] = field(default_factory=Counter)
    failed_hashes: set[bytes] = field(default_factory=set)
    retries: int = 0
    transport_errors: int = 0
    late_batches: int = 0
    in_flight: int = 0
    heights: list[int] = field(default_factory=list)
    seen: list[dict[int, float]] = field(default_factory=list)
    phase: str = "load"
    reference: int = 0  # the node whose blocks give commit times (see _drive)
    drain_outstanding: int = 0

    def take_batch(self) -> Batch | None:
        if self.next_batch >= len(self.plan.batches):
            self.exhausted = True
            return None
        batch = self.plan.batches[self.next_batch]
        self.next_batch += 1
        return batch

    async def send(self, client_index: int, batch: Batch, wait: bool) -> None:
        """Post ``batch`` to its node; retry what the node asks to have sent later."""
        pending = list(range(len(batch.raws)))
        node = batch.node
        nodes = len(self.opts.nodes)
        self.in_flight += len(pending)
        try:
            while pending:
                now = trio.current_time()
                if batch.t_submit < 0:
                    batch.t_submit = now
                    self.submitted += len(pending)
                elif now > self.retry_deadline:
                    for _ in pending:
                        self.rejected["gave_up_retrying"] += 1
                    return
                client = self.clients[client_index][node]
                try:
                    results = await client.submit(
                        [batch.raws[i] for i in pending], wait=wait, timeout_ms=CLOSED_WAIT_MS
                    )
                except NodeUnreachable:
                    self.transport_errors += 1
                    results = None
                except RequestFailed as exc:
                    if exc.status in (429, 503) or exc.status >= 500:
                        self.transport_errors += 1
                        results = None
                    else:
                        for _ in pending:
                            self.rejected[exc.code] += 1
                        return
                if results is None:
                    self.retries += len(pending)
                    node = (node + 1) % nodes
                    await trio.sleep(RETRY_BACKOFF_S)
                    continue
                again = []
                answered_at = trio.current_time()
                for i, result in zip(pending, results, strict=True):
                    status = result.get("status")
                    code = result.get("code")
                    if status in ("committed", "failed") and "height" in result:
                        self.answered[batch.hashes[i]] = answered_at
                    if status in ACCEPTED_STATUSES or code == "duplicate":
                        self.accepted[batch.hashes[i]] = batch.t_submit
                        if status == "failed":
                            self.failed_hashes.add(batch.hashes[i])
                    elif code in RETRYABLE_CODES:
                        again.append(i)
                    else:
                        self.rejected[str(code)] += 1
                if again:
                    self.retries += len(again)
                    await trio.sleep(RETRY_BACKOFF_S)
                pending = again
        finally:
            self.in_flight -= len(batch.raws)

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
                    f"in flight {self.in_flight:,}  height {max(self.heights)}"
                )
                view.update("load ", min(total, now - self.t0), info)
            elif self.phase == "drain":
                info = f"waiting for {self.drain_outstanding:,} to commit  height {self.heights[0]}"
                view.update("drain", total, info)
            await trio.sleep(0.25)
