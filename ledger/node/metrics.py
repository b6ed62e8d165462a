"""The node's live instruments: histograms and clocks the driver feeds as things happen.

Theory of operation. Most of what ``/metrics`` shows is read at scrape time from counters
the node keeps anyway (ledger/node/scrape.py). What cannot be read later is *when*
things happened: how long a client's transaction took to commit, how long a block waited
between its PRE-PREPARE and its prepare quorum, how long executing and writing it took.
The driver calls :class:`Instruments` at those moments; the values go into
:class:`LoopHistogram` buckets, exported through prometheus-client from the node's own
registry (never the process-global one, so several nodes can live in one test process),
next to the standard process, platform and garbage-collector collectors.

Never: import the node (the node imports this), slow the consensus loop by more than a
dictionary update per message and a histogram observation per block or transaction, or
keep unbounded state (every map here has a cap or is trimmed on commit).
"""

from __future__ import annotations

import bisect
import collections
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric

from consensus.ready import Ready
from consensus.records import Phase
from ledger.chain.types import Block
from ledger.engine.admission import AdmittedTx
from ledger.engine.events import Checked

#: Client transactions whose admission time is remembered (for submit-to-commit latency);
#: beyond this many waiting, new ones are not timed.
MAX_TIMED_TXS: Final = 100_000
#: A timed transaction not committed after this long is forgotten (dropped, or committed
#: while this node was elsewhere).
TIMED_TX_MAX_AGE_S: Final = 600.0
#: Heights whose phase times are remembered at once (a window of in-flight blocks).
MAX_TIMED_HEIGHTS: Final = 4_096

LATENCY_BUCKETS_S: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
INTERVAL_BUCKETS_S: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
PHASE_BUCKETS_S: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BLOCK_TX_BUCKETS: Final = (0, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
BLOCK_BYTE_BUCKETS: Final = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
HTTP_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)

#: How a block's execution is timed: built by this primary, or validated before the vote.
EXECUTION_MODES: Final = ("build", "validate")


class LoopHistogram:
    """A Prometheus histogram kept as plain numbers: observed and scraped on the event loop
    only (the consensus loop and the HTTP handlers share one thread), so no locks. About
    ten times cheaper per observation than prometheus-client's thread-safe Histogram,
    which matters for one observation per committed transaction."""

    def __init__(
        self,
        name: str,
        help_text: str,
        buckets: Iterable[float],
        labels: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.help_text = help_text
        self.bounds = tuple(float(b) for b in buckets)
        self.label_names = labels
        #: label values -> ([count per bucket, then +Inf], sum)
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def labels(self, *values: str) -> LoopHistogram:
        """Make the series for ``values`` exist (exported with zero counts)."""
        self._get(values)
        return self

    def _get(self, values: tuple[str, ...]) -> tuple[list[int], list[float]]:
        series = self._series.get(values)
        if series is None:
            series = self._series[values] = ([0] * (len(self.bounds) + 1), [0.0])
        return series

    def observe(self, value: float, *label_values: str) -> None:
        counts, total = self._get(label_values)
        counts[bisect.bisect_left(self.bounds, value)] += 1
        total[0] += value

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.help_text, labels=list(self.label_names))
        for values, (counts, total) in sorted(self._series.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            family.add_metric(list(values), buckets, total[0])
        yield family


class AdmissionClock:
    """When this node admitted each client transaction still waiting (monotonic seconds)."""

    def __init__(self, capacity: int = MAX_TIMED_TXS) -> None:
        self.capacity = capacity
        self._at: dict[bytes, float] = {}  # insertion order is admission order

    def __len__(self) -> int:
        return len(self._at)

    def admitted(self, tx_hashes: Iterable[bytes], now_s: float) -> None:
        at = self._at
        for tx_hash in tx_hashes:
            if len(at) >= self.capacity:
                return
            at.setdefault(tx_hash, now_s)

    def committed(self, tx_hashes: Iterable[bytes], now_s: float) -> list[float]:
        """Seconds from admission to commit of those of ``tx_hashes`` that were timed."""
        pop = self._at.pop
        return [now_s - at for at in (pop(h, None) for h in tx_hashes) if at is not None]

    def expire(self, now_s: float, max_age_s: float = TIMED_TX_MAX_AGE_S) -> None:
        at = self._at
        while at:
            oldest = next(iter(at))
            if now_s - at[oldest] <= max_age_s:
                return
            del at[oldest]


class PhaseClock:
    """When each block (view, height) reached PRE-PREPARE and its prepare quorum here.

    PRE-PREPARE: a backup is asked to validate the proposal (it just arrived); the primary
    signs its own. Prepared: the core hands over the prepared certificate to persist.
    Committed: the core hands over the commit certificate. Catch-up commits (no
    PRE-PREPARE seen) are not timed."""

    def __init__(self) -> None:
        self._pre_prepared: dict[tuple[int, int], float] = {}
        self._prepared: dict[tuple[int, int], float] = {}

    def on_ready(self, ready: Ready, now_s: float) -> tuple[list[float], list[float]]:
        """The prepare phases and commit phases (seconds) that ended in ``ready``."""
        started, prepared = self._pre_prepared, self._prepared
        for request in ready.validate:
            started.setdefault((request.view, request.height), now_s)
        prepare_s: list[float] = []
        commit_s: list[float] = []
        if ready.persist is not None:
            for slot in ready.persist.signed:
                if slot.phase == Phase.PRE_PREPARE:
                    started.setdefault((slot.view, slot.height), now_s)
            for record in ready.persist.prepared:
                key = (record.proof.header.view, record.height)
                if key not in prepared:
                    prepared[key] = now_s
                    began = started.get(key)
                    if began is not None:
                        prepare_s.append(now_s - began)
        for block in ready.committed:
            at = prepared.get((block.view, block.height))
            if at is not None:
                commit_s.append(now_s - at)
        if ready.committed:
            top = ready.committed[-1].height
            for table in (started, prepared):
                for key in [k for k in table if k[1] <= top]:
                    del table[key]
        for table in (started, prepared):
            if len(table) > MAX_TIMED_HEIGHTS:
                table.clear()  # a runaway window (should not happen): start afresh
        return prepare_s, commit_s


class Instruments:
    """The node's registry and the instruments the driver feeds (see the module docstring)."""

    def __init__(self) -> None:
        registry = self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)  # registers nothing off CPython
        self.tx_commit_latency = LoopHistogram(
            "quorum_tx_commit_latency_seconds",
            "From a client's submission admitted at this node to its block committed here.",
            LATENCY_BUCKETS_S,
        ).labels()
        self.block_interval = LoopHistogram(
            "quorum_block_interval_seconds",
            "Time between consecutive blocks, by their headers' timestamps (the primaries' clocks).",
            INTERVAL_BUCKETS_S,
        ).labels()
        self.prepare_phase = LoopHistogram(
            "quorum_consensus_prepare_seconds",
            "From a block's PRE-PREPARE (received, or sent by this primary) to its prepare quorum.",
            PHASE_BUCKETS_S,
        ).labels()
        self.commit_phase = LoopHistogram(
            "quorum_consensus_commit_seconds",
            "From a block's prepare quorum to its commit quorum (the commit certificate).",
            PHASE_BUCKETS_S,
        ).labels()
        self.execution = LoopHistogram(
            "quorum_block_execution_seconds",
            "Executing a block: built by this primary, or validated before the vote.",
            PHASE_BUCKETS_S,
            ("mode",),
        )
        for mode in EXECUTION_MODES:
            self.execution.labels(mode)
        self.persist = LoopHistogram(
            "quorum_block_persist_seconds",
            "Writing a committed block, its receipts, state and certificate (one SQLite transaction).",
            PHASE_BUCKETS_S,
        ).labels()
        self.block_transactions = LoopHistogram(
            "quorum_block_transactions", "Transactions per committed block.", BLOCK_TX_BUCKETS
        ).labels()
        self.block_bytes = LoopHistogram(
            "quorum_block_size_bytes", "Encoded size of each committed block.", BLOCK_BYTE_BUCKETS
        ).labels()
        self.http_duration = LoopHistogram(
            "quorum_http_request_duration_seconds",
            "HTTP API requests by route, from the handler's start to its response.",
            HTTP_BUCKETS_S,
            ("route",),
        )
        self.histograms = (
            self.tx_commit_latency, self.block_interval, self.prepare_phase, self.commit_phase,
            self.execution, self.persist, self.block_transactions, self.block_bytes,
            self.http_duration,
        )  # fmt: skip
        registry.register(self)
        #: Consensus messages sent, by kind (a broadcast counts once per destination).
        self.messages_sent: collections.Counter[str] = collections.Counter()
        #: HTTP responses by (route, status).
        self.http_responses: collections.Counter[tuple[str, int]] = collections.Counter()
        #: The last height each validator's COMMIT signature certified (by name).
        self.last_signed: dict[str, int] = {}
        self.admissions = AdmissionClock()
        self.phases = PhaseClock()
        self._last_header: tuple[int, int] | None = None  # (height, timestamp_ms)

    # ------------------------------------------------------------------ driver hooks

    def on_ready(self, ready: Ready, peers: int, now_s: float) -> None:
        """A Ready the driver is about to act on; ``peers``: destinations of a broadcast."""
        sent = self.messages_sent
        for outbound in ready.messages:
            sent[outbound.message.kind] += peers if outbound.to is None else 1
        prepare_s, commit_s = self.phases.on_ready(ready, now_s)
        for seconds in prepare_s:
            self.prepare_phase.observe(seconds)
        for seconds in commit_s:
            self.commit_phase.observe(seconds)

    def admitted(
        self, checked: Sequence[Checked], results: Sequence[dict[str, object]], now_s: float
    ) -> None:
        """A client batch, checked, and the mempool's answers: time the ones now pending."""
        self.admissions.admitted(
            (
                item.outcome.hash
                for item, result in zip(checked, results, strict=True)
                if result["status"] == "pending" and isinstance(item.outcome, AdmittedTx)
            ),
            now_s,
        )

    def collect(self) -> Iterator[Metric]:
        """The histograms (prometheus-client's collector interface)."""
        for histogram in self.histograms:
            yield from histogram.collect()

    def executed(self, mode: str, seconds: float) -> None:
        self.execution.observe(seconds, mode)

    def committed(
        self,
        block: Block,
        payload_bytes: int,
        signers: Iterable[str],
        persist_s: float,
        now_s: float,
    ) -> None:
        """A block was written: its size, how long the write took, who signed it, and the
        latency of the transactions this node admitted from clients."""
        header = block.header
        self.persist.observe(persist_s)
        self.block_transactions.observe(len(block.transactions))
        self.block_bytes.observe(payload_bytes)
        last = self._last_header
        if last is not None and last[0] + 1 == header.height:
            self.block_interval.observe(max(0, header.timestamp_ms - last[1]) / 1000)
        self._last_header = (header.height, header.timestamp_ms)
        for name in signers:
            self.last_signed[name] = header.height
        if self.admissions:
            observe = self.tx_commit_latency.observe
            for seconds in self.admissions.committed((tx.hash for tx in block.transactions), now_s):
                observe(seconds)

    def request(self, route: str, status: int, seconds: float) -> None:
        """An HTTP request finished (``route``: the route's path template)."""
        self.http_duration.observe(seconds, route)
        self.http_responses[(route, status)] += 1
