"""The chaos harness's load generator and its record of what the system said was committed.

What it is for: keep signed transfers flowing from several accounts through the HTTP API
of several nodes while faults are injected, and write down every transaction a node
*reported committed* (hash, height, receipt status, which node said so) in a
:class:`CommitLedger` — the set the invariant checks later hold the whole network to.

Theory of operation. One thread per sender account, each with its own nonce sequence and
its own HTTP connection pool. A sender signs a batch, posts it with ``wait: true`` to the
next node in its rotation and records whatever comes back committed or failed. What is not
yet committed stays *outstanding* and is posted again, byte for byte, to the next node: the
same bytes are the same transaction (same hash), so a retry can never double-spend, and a
node that already committed it answers with the original commit. Nodes that did not answer
are skipped for a moment (clients fail over, as they would in production). New
transactions are signed only when the outstanding ones are committed, so a sender's nonces
never have a hole the network could not fill.

Never: count a transaction as committed that no node reported committed, retry with new
bytes for an old nonce, or let a worker thread die with an exception (it is recorded).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from crypto.keys import PrivateKey
from ledger.chain.types import Transaction, Transfer

TRANSFER_GAS: Final = 10_000
DEFAULT_BATCH: Final = 10
#: Server-side wait for commits per request; the client waits this plus a margin.
DEFAULT_WAIT_MS: Final = 4_000
CLIENT_MARGIN_S: Final = 2.0
#: A node that failed to answer is skipped for this long.
SKIP_FAILED_NODE_S: Final = 3.0
#: Pause after a request that committed nothing (the network may be healing).
IDLE_BACKOFF_S: Final = 0.2
#: Rejection codes that mean "the node holds it already" or "not now": keep it outstanding.
RETRY_CODES: Final = frozenset(
    {"duplicate", "nonce_taken", "nonce_too_high", "mempool_full", "busy", "syncing"}
)
#: Codes a correct network may give the generator's valid transfers (anything else is a bug).
EXPECTED_CODES: Final = RETRY_CODES | {"nonce_too_low"}


@dataclass(frozen=True, slots=True)
class CommitRecord:
    """A node's report that a transaction committed (status committed or failed)."""

    tx_hash: str
    height: int
    status: str
    node: str
    sender: int
    nonce: int
    reported_at: float


@dataclass
class CommitLedger:
    """Every commit the system reported, and what the load generator did. Thread-safe."""

    records: dict[str, CommitRecord] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    submitted: int = 0
    requests: int = 0
    unreachable: int = 0
    superseded: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, record: CommitRecord) -> None:
        with self.lock:
            earlier = self.records.get(record.tx_hash)
            if earlier is None:
                self.records[record.tx_hash] = record
            elif (earlier.height, earlier.status) != (record.height, record.status):
                self.conflicts.append(
                    f"{record.tx_hash}: {earlier.node} reported height {earlier.height} "
                    f"({earlier.status}), {record.node} height {record.height} ({record.status})"
                )

    def snapshot(self) -> list[CommitRecord]:
        with self.lock:
            return list(self.records.values())

    def committed(self) -> int:
        with self.lock:
            return len(self.records)

    def max_height(self) -> int:
        with self.lock:
            return max((r.height for r in self.records.values()), default=0)

    def committed_between(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for r in self.records.values() if start <= r.reported_at < end)

    def note_rejected(self, code: str, message: str) -> None:
        with self.lock:
            self.rejected[code] += 1
            if code not in EXPECTED_CODES and len(self.unexpected) < 50:
                self.unexpected.append(f"{code}: {message}")


@dataclass
class _Sender:
    index: int
    key: PrivateKey
    recipient: bytes
    next_nonce: int | None = None
    outstanding: list[Transaction] = field(default_factory=list)


class LoadGenerator:
    """Threads that keep transfers flowing; see the module docstring.

    ``nodes`` maps node names to their RPC base URLs; ``senders`` are the account keys that
    send (each pays the next one). Call :meth:`start`, then :meth:`stop`.
    """

    def __init__(
        self,
        nodes: dict[str, str],
        senders: Sequence[PrivateKey],
        chain_id: str,
        ledger: CommitLedger,
        *,
        batch: int = DEFAULT_BATCH,
        wait_ms: int = DEFAULT_WAIT_MS,
        pause_s: float = 0.0,
    ) -> None:
        if len(senders) < 2:
            raise ValueError("the load generator needs at least two sender accounts")
        self.nodes = dict(nodes)
        self.chain_id = chain_id
        self.ledger = ledger
        self.batch = batch
        self.wait_ms = wait_ms
        self.pause_s = pause_s
        self._senders = [
            _Sender(i, key, senders[(i + 1) % len(senders)].address)
            for i, key in enumerate(senders)
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._failed_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stop.clear()
        for sender in self._senders:
            thread = threading.Thread(
                target=self._run, args=(sender,), name=f"chaos-load-{sender.index}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask the senders to stop and wait for their in-flight requests."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._threads = []

    @property
    def running(self) -> bool:
        return bool(self._threads)

    def outstanding(self) -> int:
        return sum(len(s.outstanding) for s in self._senders)

    # ------------------------------------------------------------------ one sender

    def _run(self, sender: _Sender) -> None:
        try:
            with httpx.Client(timeout=self.wait_ms / 1000 + CLIENT_MARGIN_S) as http:
                turn = sender.index
                while not self._stop.is_set():
                    node = self._next_node(turn)
                    turn += 1
                    if node is None:
                        self._stop.wait(IDLE_BACKOFF_S)
                        continue
                    progressed = self._step(http, sender, node)
                    if not progressed:
                        self._stop.wait(IDLE_BACKOFF_S)
                    elif self.pause_s:
                        self._stop.wait(self.pause_s)
        except Exception as exc:  # a bug in the generator: recorded, reported by the harness
            self.errors.append(f"sender {sender.index}: {type(exc).__name__}: {exc}")

    def _next_node(self, turn: int) -> str | None:
        names = list(self.nodes)
        now = time.monotonic()
        with self._lock:
            for i in range(len(names)):
                name = names[(turn + i) % len(names)]
                if self._failed_until.get(name, 0.0) <= now:
                    return name
        return None

    def _mark_failed(self, node: str) -> None:
        with self._lock:
            self._failed_until[node] = time.monotonic() + SKIP_FAILED_NODE_S
        with self.ledger.lock:
            self.ledger.unreachable += 1

    def _step(self, http: httpx.Client, sender: _Sender, node: str) -> bool:
        """One request; True if something committed."""
        url = self.nodes[node]
        if sender.next_nonce is None:
            try:
                response = http.get(f"{url}/v1/accounts/{sender.key.address.hex()}")
                sender.next_nonce = int(response.json()["nonce"])
            except (httpx.HTTPError, ValueError, KeyError):
                self._mark_failed(node)
                return False
        if not sender.outstanding:
            sender.outstanding = [
                Transaction.create(
                    sender.key,
                    self.chain_id,
                    sender.next_nonce + k,
                    Transfer(sender.recipient, 1),
                    gas_limit=TRANSFER_GAS,
                )
                for k in range(self.batch)
            ]
            sender.next_nonce += self.batch
            with self.ledger.lock:
                self.ledger.submitted += self.batch
        body = {
            "txs": [tx.raw.hex() for tx in sender.outstanding],
            "wait": True,
            "timeout_ms": self.wait_ms,
        }
        try:
            response = http.post(f"{url}/v1/transactions", json=body)
            with self.ledger.lock:
                self.ledger.requests += 1
            if response.status_code != 200:
                self._mark_failed(node)
                return False
            results: list[dict[str, Any]] = response.json()["results"]
        except (httpx.HTTPError, ValueError, KeyError):
            self._mark_failed(node)
            return False
        return self._absorb(http, sender, node, results)

    def _absorb(
        self, http: httpx.Client, sender: _Sender, node: str, results: list[dict[str, Any]]
    ) -> bool:
        now = time.monotonic()
        still: list[Transaction] = []
        committed = 0
        for tx, result in zip(sender.outstanding, results, strict=True):
            status = result.get("status")
            if status in ("committed", "failed") and isinstance(result.get("height"), int):
                self._record(sender, node, tx, str(status), result["height"], now)
                committed += 1
                continue
            if status == "rejected":
                code = str(result.get("code"))
                self.ledger.note_rejected(code, str(result.get("error")))
                if code == "nonce_too_low" and self._superseded(http, sender, node, tx):
                    continue
            still.append(tx)
        sender.outstanding = still
        return committed > 0

    def _record(
        self, sender: _Sender, node: str, tx: Transaction, status: str, height: int, now: float
    ) -> None:
        self.ledger.record(
            CommitRecord(tx.hash.hex(), height, status, node, sender.index, tx.nonce, now)
        )

    def _superseded(self, http: httpx.Client, sender: _Sender, node: str, tx: Transaction) -> bool:
        """After "nonce too low": record it if the node committed it, drop it if another
        transaction took its nonce (a sender restarted from a lagging node's nonce)."""
        url = self.nodes[node]
        try:
            found = http.get(f"{url}/v1/transactions/{tx.hash.hex()}")
            if found.status_code == 200:
                doc = found.json()
                if doc.get("status") in ("committed", "failed"):
                    self._record(
                        sender, node, tx, str(doc["status"]), int(doc["height"]), time.monotonic()
                    )
                    return True
                return False
            account = http.get(f"{url}/v1/accounts/{sender.key.address.hex()}").json()
            nonce = int(account["nonce"])
        except (httpx.HTTPError, ValueError, KeyError):
            return False
        if tx.nonce < nonce:
            sender.next_nonce = max(sender.next_nonce or 0, nonce)
            with self.ledger.lock:
                self.ledger.superseded += 1
            return True
        return False


def rpc_map(names: Sequence[str], rpc_of: Callable[[str], str]) -> dict[str, str]:
    return {name: rpc_of(name) for name in names}
