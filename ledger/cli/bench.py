"""The `quorum bench` program: load a running network through its HTTP API and measure it.

What it measures (DESIGN sections 6 and 8, issue 6): committed throughput of signed
transactions on ALL nodes, submit-to-commit latency, and this machine's Ed25519
verification rate, which bounds throughput at ``verify_per_s * cores / validators``
(every validator verifies every client signature once).

Theory of operation, in phases:

1. **Setup** (blocking client, not timed). Read every node's status (unreachable: exit 5),
   time ``crypto.keys.verify`` on one core, pick the sender accounts (the testnet's funded
   accounts; when ``--accounts`` asks for more, fresh keys funded from them by transfers
   that are waited for), and for ``--kind contract`` deploy one token contract from the
   first sender and hand every other sender a token balance (waited for). The bench then
   calls ``transfer(next sender, 1)`` on that one shared token, so every call touches the
   same contract's storage, as a real token's users would.
2. **Pre-signing** (not timed: signing is not what we measure). Each sender gets its own
   run of nonces starting at its committed nonce; transfers go to the next sender. How
   many: rate x time (open loop), 0.6 x the verification ceiling x time (closed loop), or
   exactly ``--max-txs``; at most a million (about 250 bytes each in memory). The report
   says ``exhausted`` when the load used them all before the time was up. Senders are
   split across nodes (sender ``s`` always goes to node ``s mod n``) so each node sees
   its senders' nonces in order; batches of ``--batch`` transactions alternate between
   nodes round-robin. Signing uses every core (fork) when there is a lot of it.
3. **Load.** ``--clients`` trio tasks, each with its own :class:`AsyncQuorumClient` per
   node. Closed loop (default): a client posts a batch with ``wait: true`` and posts its
   next one when the node answers that the batch committed, so at most clients x batch
   transactions are outstanding (default 8 x 250: on a 2-core machine bigger windows
   make bigger blocks and lower throughput). Open loop (``--rate``): batches leave on
   the clock whatever happened to earlier ones (each still with ``wait: true``, in its
   own task); the batch shrinks to ``rate / 50`` so that requests leave smoothly, at
   least 50 a second. Rejections that
   are the node saying "later" (mempool full, nonce too far ahead, HTTP 429/503,
   transport errors) are retried, so a sender's nonce sequence never gets a hole.
4. **Latency and following.** A transaction's commit time is when the node it was sent
   to answered that it committed (the ``wait: true`` answer: what a client sees, at no
   polling cost to the nodes). One background task per node polls ``GET /v1/status``
   (every 100 ms on the first node, 250 ms on the others) and records when each height
   first appeared: that times the throughput window, and it is the commit time of a
   transaction whose answer timed out (``latency_from_answers`` counts the others).
5. **Drain and audit.** After the load, the first node's blocks since the start are
   walked until every accepted transaction is found (or ``--drain-timeout`` passes: the
   rest are ``lost``); then every node is walked to the same height, checking that the
   nodes hold the same block hashes and all accepted transactions.

Figures: ``tx_per_s`` = accepted transactions submitted after the warmup and committed,
divided by the time from the first of them being submitted to the last of them being
committed on every node (so the drain counts). Latency percentiles cover the same
transactions. Exit codes: 0 ok, 1 transactions lost or failed (or nodes disagree), 5 a
node unreachable.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from contracts import examples
from contracts.interpreter import contract_address
from crypto import keys
from crypto.keys import PrivateKey
from ledger.chain.types import Call, Deploy, Payload, Transaction, Transfer
from ledger.cli.output import EXIT_UNREACHABLE, CommandError
from ledger.client import (
    AsyncQuorumClient,
    ClientError,
    NodeUnreachable,
    QuorumClient,
    RequestFailed,
)

KINDS: Final = ("transfer", "contract")
DEFAULT_DURATION_S: Final = 10.0
DEFAULT_CLIENTS: Final = 8
DEFAULT_CLOSED_BATCH: Final = 250
#: Open loop: at least this many requests a second, so arrivals are smooth.
OPEN_LOOP_REQUESTS_PER_S: Final = 50
#: Closed loop: pre-sign for this fraction of the verification ceiling (DESIGN aims at
#: half of it); the report says ``exhausted`` if the nodes outran it (raise --max-txs).
CLOSED_PRESIGN_FRACTION: Final = 0.6
#: Most transactions pre-signed at all (about 250 bytes each in memory).
MAX_PRESIGNED: Final = 1_000_000
DEFAULT_DRAIN_TIMEOUT_S: Final = 30.0
DEFAULT_VERIFY_SAMPLES: Final = 20_000
#: Outstanding transactions wanted per sender (the mempool's nonce window is 256).
OUTSTANDING_PER_SENDER: Final = 100
MAX_ACCOUNTS: Final = 10_000
#: Most transactions of one sender in one setup request (below the nonce window).
SETUP_CHUNK: Final = 200
SETUP_REQUEST_TXS: Final = 2_000
SETUP_WAIT_MS: Final = 60_000
TRANSFER_GAS: Final = 10_000
DEPLOY_GAS: Final = 2_000_000
SETUP_CALL_GAS: Final = 200_000
FUND_AMOUNT: Final = 10**9
TOKEN_SUPPLY: Final = 2**63
CLOSED_WAIT_MS: Final = 30_000
#: Status polling for progress, throughput and the drain (latency comes from the answers).
FOLLOW_FIRST_S: Final = 0.1
FOLLOW_OTHERS_S: Final = 0.25
RETRY_BACKOFF_S: Final = 0.05
WALK_CONCURRENCY: Final = 8
RECEIPT_SAMPLE: Final = 64
#: Rejection codes that mean "not now": the transaction is sent again.
RETRYABLE_CODES: Final = frozenset(
    {"mempool_full", "nonce_too_high", "busy", "overloaded", "rate_limited", "syncing"}
)
#: Results that mean the node holds the transaction.
ACCEPTED_STATUSES: Final = frozenset({"pending", "committed", "failed"})


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """What `quorum bench` was asked to do."""

    nodes: tuple[str, ...]
    funded: tuple[PrivateKey, ...]
    duration_s: float = DEFAULT_DURATION_S
    warmup_s: float = 0.0
    kind: str = "transfer"
    rate: float | None = None
    clients: int = DEFAULT_CLIENTS
    batch: int | None = None
    accounts: int | None = None
    max_txs: int | None = None
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S
    verify_samples: int = DEFAULT_VERIFY_SAMPLES

    @property
    def mode(self) -> str:
        return "closed" if self.rate is None else "open"

    def effective_batch(self) -> int:
        if self.batch is not None:
            return self.batch
        if self.rate is None:
            return DEFAULT_CLOSED_BATCH
        return max(1, min(DEFAULT_CLOSED_BATCH, math.ceil(self.rate / OPEN_LOOP_REQUESTS_PER_S)))


# ----------------------------------------------------------------------------- helpers


def _unreachable(exc: ClientError, what: str) -> CommandError:
    if isinstance(exc, NodeUnreachable):
        return CommandError(f"{what}: {exc}", EXIT_UNREACHABLE)
    return CommandError(f"{what}: {exc}")


def measure_verify_rate(samples: int = DEFAULT_VERIFY_SAMPLES) -> float:
    """Ed25519 verifications per second on one core (``crypto.keys.verify``, a 150-byte body)."""
    key = PrivateKey(bytes(range(32)))
    message = bytes(150)
    signature = key.sign("bench", "tx", message)
    verify = keys.verify
    public = key.public_key
    start = time.perf_counter()
    for _ in range(samples):
        verify(public, "bench", "tx", message, signature)
    elapsed = time.perf_counter() - start
    return samples / elapsed if elapsed > 0 else 0.0


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) by the nearest-rank method; 0.0 when empty."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


# Pre-signing happens in worker processes when there is a lot of it (it is CPU-bound and
# not what we measure). A job: (seed, chain_id, first nonce, count, payload spec, gas).
_SignJob = tuple[bytes, str, int, int, tuple[Any, ...], int]


def _payload_from_spec(spec: tuple[Any, ...]) -> Payload:
    if spec[0] == "transfer":
        return Transfer(spec[1], spec[2])
    return Call(spec[1], "transfer", (spec[2], spec[3]))


def _sign_job(job: _SignJob) -> tuple[list[bytes], list[bytes]]:
    seed, chain_id, first, count, spec, gas = job
    key = PrivateKey(seed)
    payload = _payload_from_spec(spec)
    raws: list[bytes] = []
    hashes: list[bytes] = []
    for nonce in range(first, first + count):
        tx = Transaction.create(key, chain_id, nonce, payload, gas_limit=gas)
        raws.append(tx.raw)
        hashes.append(tx.hash)
    return raws, hashes


def sign_all(jobs: list[_SignJob]) -> list[tuple[list[bytes], list[bytes]]]:
    """Run the signing jobs, on every core when there is enough work to pay for processes."""
    total = sum(job[3] for job in jobs)
    cores = os.cpu_count() or 1
    if cores > 1 and total >= 20_000 and "fork" in multiprocessing.get_all_start_methods():
        # fork: the CLI may run as `python -m ledger.cli`, which spawn would re-execute.
        with multiprocessing.get_context("fork").Pool(cores) as pool:
            return pool.map(_sign_job, jobs, chunksize=1)
    return [_sign_job(job) for job in jobs]


@dataclass(slots=True)
class _Batch:
    node: int
    raws: list[bytes]
    hashes: list[bytes]
    t_submit: float = -1.0


@dataclass(frozen=True, slots=True)
class _Plan:
    chain_id: str
    validators: int
    start_heights: tuple[int, ...]
    senders: tuple[PrivateKey, ...]
    created_accounts: int
    contract: bytes | None
    gas_limit: int
    batches: list[_Batch]
    presigned: int
    sign_s: float
    setup_s: float
    verify_per_s: float


# ----------------------------------------------------------------------------- setup


def _submit_and_wait(
    clients: Sequence[QuorumClient], txs: list[Transaction], what: str
) -> list[dict[str, Any]]:
    """Submit setup transactions (``wait``), spread over the nodes; all must commit."""
    results: list[dict[str, Any]] = []
    for i in range(0, len(txs), SETUP_REQUEST_TXS):
        chunk = txs[i : i + SETUP_REQUEST_TXS]
        client = clients[(i // SETUP_REQUEST_TXS) % len(clients)]
        try:
            answer = client.submit(chunk, wait=True, timeout_ms=SETUP_WAIT_MS)
        except ClientError as exc:
            raise _unreachable(exc, f"{what} failed") from None
        for tx, result in zip(chunk, answer, strict=True):
            if result.get("status") != "committed":
                detail = result.get("error") or (result.get("receipt") or {}).get("error") or ""
                raise CommandError(
                    f"{what}: transaction {tx.hash.hex()} ended {result.get('status')}"
                    f" {result.get('code', '')} {detail}".rstrip()
                )
        results.extend(answer)
    return results


def _rounds(
    clients: Sequence[QuorumClient],
    chain_id: str,
    work: dict[PrivateKey, list[Payload]],
    gas: int,
    what: str,
) -> list[dict[str, Any]]:
    """Send each key's payloads in nonce order, at most SETUP_CHUNK per key per round."""
    nonces: dict[PrivateKey, int] = {}
    for key in work:
        try:
            nonces[key] = int(clients[0].account(key.address)["nonce"])
        except ClientError as exc:
            raise _unreachable(exc, "reading an account") from None
    results: list[dict[str, Any]] = []
    offset = 0
    while any(offset < len(p) for p in work.values()):
        round_txs = []
        for key, payloads in work.items():
            for payload in payloads[offset : offset + SETUP_CHUNK]:
                round_txs.append(
                    Transaction.create(key, chain_id, nonces[key], payload, gas_limit=gas)
                )
                nonces[key] += 1
        results.extend(_submit_and_wait(clients, round_txs, what))
        offset += SETUP_CHUNK
    return results


def _fund_accounts(
    clients: Sequence[QuorumClient],
    chain_id: str,
    funded: Sequence[PrivateKey],
    extra: Sequence[PrivateKey],
    per_sender: int,
) -> None:
    """Give each new account native currency from the funded ones (waited for)."""
    recipients: dict[PrivateKey, list[bytes]] = {}
    for i, new in enumerate(extra):
        recipients.setdefault(funded[i % len(funded)], []).append(new.address)
    work: dict[PrivateKey, list[Payload]] = {}
    for funder, addresses in recipients.items():
        try:
            balance = int(clients[0].account(funder.address)["balance"])
        except ClientError as exc:
            raise _unreachable(exc, "reading an account") from None
        amount = min(FUND_AMOUNT, balance // (len(addresses) + 1))
        if amount < 2 * per_sender:
            raise CommandError(
                f"account {funder.address.hex()} holds {balance}: too little to fund "
                f"{len(addresses)} bench accounts"
            )
        work[funder] = [Transfer(address, amount) for address in addresses]
    _rounds(clients, chain_id, work, TRANSFER_GAS, "funding bench accounts")


def _deploy_token(
    clients: Sequence[QuorumClient], chain_id: str, senders: Sequence[PrivateKey]
) -> tuple[bytes, int]:
    """Deploy the token from the first sender and give every sender a balance.

    Returns the contract address and the gas limit for bench calls (twice the most any
    distribution call used: the distribution writes new balance keys, the bench does not).
    """
    owner = senders[0]
    try:
        nonce = int(clients[0].account(owner.address)["nonce"])
    except ClientError as exc:
        raise _unreachable(exc, "reading an account") from None
    deploy = Transaction.create(
        owner,
        chain_id,
        nonce,
        Deploy(examples.load("token"), (TOKEN_SUPPLY,)),
        gas_limit=DEPLOY_GAS,
    )
    (result,) = _submit_and_wait(clients, [deploy], "deploying the token contract")
    address = contract_address(owner.address, nonce)
    created = (result.get("receipt") or {}).get("created_address")
    if created is not None and created != address.hex():
        raise CommandError(f"the token was created at {created}, expected {address.hex()}")
    share = TOKEN_SUPPLY // (2 * len(senders))
    payloads: list[Payload] = [Call(address, "transfer", (s.address, share)) for s in senders[1:]]
    results = _rounds(clients, chain_id, {owner: payloads}, SETUP_CALL_GAS, "distributing tokens")
    used = max((int(r["receipt"]["gas_used"]) for r in results if r.get("receipt")), default=0)
    return address, max(2 * used, 10_000)


def _plan_payloads(
    senders: Sequence[PrivateKey], contract: bytes | None, gas: int
) -> list[tuple[tuple[Any, ...], int]]:
    specs: list[tuple[tuple[Any, ...], int]] = []
    for i in range(len(senders)):
        to = senders[(i + 1) % len(senders)].address
        if contract is None:
            specs.append((("transfer", to, 1), gas))
        else:
            specs.append((("call", contract, to, 1), gas))
    return specs


def _build_batches(
    per_node_streams: list[list[tuple[list[bytes], list[bytes]]]], batch: int
) -> list[_Batch]:
    """Interleave each node's senders nonce by nonce, cut into batches, alternate nodes."""
    per_node: list[list[_Batch]] = []
    for node, streams in enumerate(per_node_streams):
        raws: list[bytes] = []
        hashes: list[bytes] = []
        longest = max((len(r) for r, _ in streams), default=0)
        for i in range(longest):
            for r, h in streams:
                if i < len(r):
                    raws.append(r[i])
                    hashes.append(h[i])
        per_node.append(
            [
                _Batch(node, raws[j : j + batch], hashes[j : j + batch])
                for j in range(0, len(raws), batch)
            ]
        )
    out: list[_Batch] = []
    for k in range(max((len(b) for b in per_node), default=0)):
        for batches in per_node:
            if k < len(batches):
                out.append(batches[k])
    return out


def default_accounts(opts: BenchOptions, funded: int, nodes: int) -> int:
    """Senders needed so that each has about OUTSTANDING_PER_SENDER transactions in flight."""
    if opts.accounts is not None:
        return opts.accounts
    if opts.rate is None:
        outstanding = opts.clients * opts.effective_batch()
    else:
        outstanding = math.ceil(opts.rate * 2)  # about two seconds of arrivals in flight
    wanted = max(funded, math.ceil(outstanding / OUTSTANDING_PER_SENDER), 2)
    return min(MAX_ACCOUNTS, math.ceil(wanted / nodes) * nodes)


def prepare(opts: BenchOptions, note: Callable[[str], None]) -> _Plan:
    """Setup and pre-signing (phases 1 and 2); nothing here is timed."""
    started = time.perf_counter()
    clients = [QuorumClient(url, timeout_s=30.0) for url in opts.nodes]
    try:
        statuses = []
        for client in clients:
            try:
                statuses.append(client.status())
            except ClientError as exc:
                raise _unreachable(exc, f"node {client.base_url}") from None
        chain_ids = {s["chain_id"] for s in statuses}
        if len(chain_ids) != 1:
            raise CommandError(f"the nodes are on different chains: {sorted(chain_ids)}")
        chain_id = str(statuses[0]["chain_id"])
        try:
            validators = len(clients[0].validators())
        except ClientError as exc:
            raise _unreachable(exc, "reading the validator set") from None

        note(f"timing {opts.verify_samples:,} Ed25519 verifications on one core...")
        verify_per_s = measure_verify_rate(opts.verify_samples)
        cores = os.cpu_count() or 1
        ceiling = verify_per_s * cores / max(1, validators)

        wanted = default_accounts(opts, len(opts.funded), len(opts.nodes))
        if wanted < 2:
            raise CommandError("the bench needs at least 2 sender accounts", 2)
        batch = opts.effective_batch()
        if opts.max_txs is not None:
            total = opts.max_txs
        elif opts.rate is not None:
            total = math.ceil(opts.rate * (opts.warmup_s + opts.duration_s)) + batch
        else:
            total = math.ceil(CLOSED_PRESIGN_FRACTION * ceiling * (opts.warmup_s + opts.duration_s))
        total = min(MAX_PRESIGNED, max(total, batch * len(opts.nodes)))
        per_sender = math.ceil(total / wanted)

        funded = list(opts.funded[:wanted])
        extra = [PrivateKey.generate() for _ in range(wanted - len(funded))]
        if extra:
            note(f"creating and funding {len(extra)} bench accounts...")
            _fund_accounts(clients, chain_id, funded, extra, per_sender)
        senders = tuple(funded + extra)

        contract: bytes | None = None
        gas = TRANSFER_GAS
        if opts.kind == "contract":
            note(f"deploying the token contract and giving {len(senders) - 1} senders tokens...")
            contract, gas = _deploy_token(clients, chain_id, senders)

        jobs: list[_SignJob] = []
        for key, (spec, gas_limit) in zip(
            senders, _plan_payloads(senders, contract, gas), strict=True
        ):
            try:
                nonce = int(clients[0].account(key.address)["nonce"])
            except ClientError as exc:
                raise _unreachable(exc, "reading an account") from None
            jobs.append((key.seed, chain_id, nonce, per_sender, spec, gas_limit))
        note(
            f"pre-signing {per_sender * len(senders):,} transactions from {len(senders)} accounts..."
        )
        sign_start = time.perf_counter()
        signed = sign_all(jobs)
        sign_s = time.perf_counter() - sign_start
        streams: list[list[tuple[list[bytes], list[bytes]]]] = [[] for _ in opts.nodes]
        for i, stream in enumerate(signed):
            streams[i % len(opts.nodes)].append(stream)
        batches = _build_batches(streams, batch)

        start_heights = []
        for client in clients:
            try:
                start_heights.append(int(client.status()["height"]))
            except ClientError as exc:
                raise _unreachable(exc, f"node {client.base_url}") from None
    finally:
        for client in clients:
            client.close()
    return _Plan(
        chain_id=chain_id,
        validators=validators,
        start_heights=tuple(start_heights),
        senders=senders,
        created_accounts=len(extra),
        contract=contract,
        gas_limit=gas,
        batches=batches,
        presigned=sum(len(b.raws) for b in batches),
        sign_s=sign_s,
        setup_s=time.perf_counter() - started,
        verify_per_s=verify_per_s,
    )


# ----------------------------------------------------------------------------- the run


class _LiveView:
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

    def __enter__(self) -> _LiveView:
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
class _Run:
    opts: BenchOptions
    plan: _Plan
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

    def take_batch(self) -> _Batch | None:
        if self.next_batch >= len(self.plan.batches):
            self.exhausted = True
            return None
        batch = self.plan.batches[self.next_batch]
        self.next_batch += 1
        return batch

    async def send(self, client_index: int, batch: _Batch, wait: bool) -> None:
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

    async def ticker(self, view: _LiveView) -> None:
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


@dataclass(slots=True)
class _Walk:
    """What one node's blocks in the window hold."""

    block_hashes: dict[int, str] = field(default_factory=dict)
    tx_counts: dict[int, int] = field(default_factory=dict)
    ours: dict[bytes, int] = field(default_factory=dict)  # our tx hash -> height
    error: str | None = None


async def _walk(
    client: AsyncQuorumClient,
    heights: range,
    accepted: dict[bytes, float],
    into: _Walk,
) -> list[bytes]:
    """Fetch the blocks at ``heights`` (a few at a time); returns our hashes found.

    Never raises (trio would wrap it in an exception group): failures go to ``into.error``.
    """
    limiter = trio.CapacityLimiter(WALK_CONCURRENCY)
    found: list[bytes] = []

    async def one(h: int) -> None:
        try:
            async with limiter:
                block = await client.block(h)
        except ClientError as exc:
            into.error = str(exc)
            return
        if block is None:
            into.error = f"{client.base_url} has no block {h}"
            return
        into.block_hashes[h] = str(block["hash"])
        into.tx_counts[h] = int(block["header"]["tx_count"])
        for text in block["transactions"]:
            digest = bytes.fromhex(text)
            if digest in accepted:
                into.ours[digest] = h
                found.append(digest)

    async with trio.open_nursery() as nursery:
        for h in heights:
            nursery.start_soon(one, h)
    return found


async def _run(opts: BenchOptions, plan: _Plan, console: Console | None) -> dict[str, Any]:
    n = len(opts.nodes)
    clients = [
        [AsyncQuorumClient(url, timeout_s=30.0, max_connections=16) for url in opts.nodes]
        for _ in range(max(1, opts.clients))
    ]
    run = _Run(opts, plan, clients)
    run.heights = list(plan.start_heights)
    run.seen = [{} for _ in range(n)]
    try:
        return await _drive(run, console)
    finally:
        for row in clients:
            for client in row:
                await client.aclose()


async def _drive(run: _Run, console: Console | None) -> dict[str, Any]:
    opts, plan = run.opts, run.plan
    n = len(opts.nodes)
    total_s = opts.warmup_s + opts.duration_s
    walks = [_Walk() for _ in range(n)]
    start = min(plan.start_heights)
    with _LiveView(console, total_s) as view:
        async with trio.open_nursery() as background:
            for node in range(n):
                background.start_soon(
                    run.follow, node, FOLLOW_FIRST_S if node == 0 else FOLLOW_OTHERS_S
                )
            background.start_soon(run.ticker, view)

            run.t0 = trio.current_time()
            run.t_measure = run.t0 + opts.warmup_s
            run.t_load_end = run.t0 + total_s
            run.retry_deadline = run.t_load_end + opts.drain_timeout_s
            async with trio.open_nursery() as load:
                if opts.rate is None:
                    for c in range(opts.clients):
                        load.start_soon(run.closed_client, c)
                else:
                    load.start_soon(run.open_scheduler)
            t_load_done = trio.current_time()

            # Drain: walk the reference node (the first one, unless another is ahead of
            # it: a stalled node must not hide what the others committed) until every
            # accepted transaction is in one of its blocks.
            run.phase = "drain"
            ref = run.reference = max(range(n), key=lambda i: (run.heights[i], -i))
            drain_deadline = t_load_done + opts.drain_timeout_s
            outstanding = set(run.accepted)
            run.drain_outstanding = len(outstanding)
            walked = start
            while outstanding and trio.current_time() < drain_deadline:
                head = run.heights[ref]
                if head > walked:
                    found = await _walk(
                        clients_of(run, ref),
                        range(walked + 1, head + 1),
                        run.accepted,
                        walks[ref],
                    )
                    outstanding.difference_update(found)
                    walked = head
                    run.drain_outstanding = len(outstanding)
                else:
                    await trio.sleep(FOLLOW_FIRST_S)
            final = max(start, max(walks[ref].ours.values(), default=walked))
            # Every node must reach the final height.
            while trio.current_time() < drain_deadline and min(run.heights) < final:
                await trio.sleep(FOLLOW_FIRST_S)
            t_drained = trio.current_time()
            run.phase = "done"
            background.cancel_scope.cancel()
        view.update("done ", total_s, f"{len(run.accepted) - len(outstanding):,} committed")

    async with trio.open_nursery() as nursery:
        for node in range(n):
            if node == ref:
                continue
            # Normally every node is walked to the final height; when transactions are
            # missing, each node to its own head, so the report shows what each holds.
            top = run.heights[node] if outstanding else min(final, run.heights[node])
            nursery.start_soon(
                _walk, clients_of(run, node), range(start + 1, top + 1), run.accepted, walks[node]
            )
    unreachable = [url for url, w in zip(opts.nodes, walks, strict=True) if w.error]
    # The reference node may have been walked past the final height: trim it.
    for h in [h for h in walks[ref].block_hashes if h > final]:
        del walks[ref].block_hashes[h]
        del walks[ref].tx_counts[h]
    failed_sample = await _sample_receipts(run, walks[ref])
    return _report(run, walks, start, final, t_load_done, t_drained, unreachable, failed_sample)


def clients_of(run: _Run, node: int) -> AsyncQuorumClient:
    return run.clients[0][node]


async def _sample_receipts(run: _Run, walk: _Walk) -> tuple[int, int]:
    """Look up a random sample of committed transactions: (checked, failed)."""
    committed = list(walk.ours)
    if not committed:
        return 0, 0
    sample = random.Random(0).sample(committed, min(RECEIPT_SAMPLE, len(committed)))
    failed = 0
    checked = 0
    client = clients_of(run, run.reference)
    for digest in sample:
        try:
            found = await client.transaction(digest)
        except ClientError:
            continue
        checked += 1
        if found is None or found.get("status") != "committed":
            failed += 1
            run.failed_hashes.add(digest)
    return checked, failed


def _commit_time_all(run: _Run, height: int) -> float | None:
    times = [seen.get(height) for seen in run.seen]
    if any(t is None for t in times):
        return None
    return max(t for t in times if t is not None)


def _report(
    run: _Run,
    walks: list[_Walk],
    start: int,
    final: int,
    t_load_done: float,
    t_drained: float,
    unreachable: list[str],
    failed_sample: tuple[int, int],
) -> dict[str, Any]:
    opts, plan = run.opts, run.plan
    accepted = run.accepted
    ref = run.reference
    first_walk = walks[ref]
    seen0 = run.seen[ref]

    # Latency and throughput over the transactions submitted after the warmup.
    latencies: list[float] = []
    measured_first = math.inf
    measured_last_height = start
    by_submit: dict[int, list[float]] = {}
    for digest, height in first_walk.ours.items():
        t_submit = accepted[digest]
        if t_submit < run.t_measure:
            continue
        t_commit = run.answered.get(digest, seen0.get(height))
        if t_commit is None:
            continue
        latency = t_commit - t_submit
        latencies.append(latency)
        measured_first = min(measured_first, t_submit)
        measured_last_height = max(measured_last_height, height)
        by_submit.setdefault(int(t_submit - run.t0), []).append(latency)
    latencies.sort()
    end_all = _commit_time_all(run, measured_last_height) or t_drained
    if latencies and end_all is not None and end_all > measured_first:
        elapsed = end_all - measured_first
        tx_per_s = len(latencies) / elapsed
    else:
        elapsed = 0.0
        tx_per_s = 0.0

    committed_per_node = [sum(1 for _ in w.ours) for w in walks]
    committed = min(committed_per_node) if committed_per_node else 0
    reference = first_walk.block_hashes
    # Agreement: no two nodes hold different blocks at the same height (a node that lags
    # is not a disagreement; what it lacks shows up in committed_per_node and lost).
    forks = sorted(
        h
        for w in walks
        for h, digest in w.block_hashes.items()
        if h in reference and digest != reference[h]
    )
    agree = not forks
    lost = len(accepted) - committed
    cores = os.cpu_count() or 1
    ceiling = plan.verify_per_s * cores / max(1, plan.validators)

    # Throughput and latency over time, in one-second bins of the bench clock.
    commits_per_bin: Counter[int] = Counter()
    for h, count in first_walk.tx_counts.items():
        t = seen0.get(h)
        if t is not None:
            commits_per_bin[int(t - run.t0)] += count
    last_bin = max([*commits_per_bin, *by_submit, 0])
    timeline = []
    for b in range(last_bin + 1):
        lat = sorted(by_submit.get(b, []))
        timeline.append(
            {
                "t_s": b,
                "committed": commits_per_bin.get(b, 0),
                "p50_ms": round(percentile(lat, 0.5) * 1000, 1) if lat else None,
                "p99_ms": round(percentile(lat, 0.99) * 1000, 1) if lat else None,
            }
        )

    blocks = len(reference)
    total_block_txs = sum(first_walk.tx_counts.values())
    checked, failed_sampled = failed_sample

    def ms(q: float) -> float:
        return round(percentile(latencies, q) * 1000, 1)

    return {
        "tx_per_s": round(tx_per_s, 1),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else 0.0,
        "mean_ms": round(sum(latencies) / len(latencies) * 1000, 1) if latencies else 0.0,
        "submitted": run.submitted,
        "accepted": len(accepted),
        "rejected": sum(run.rejected.values()),
        "rejected_codes": dict(sorted(run.rejected.items())),
        "committed": committed,
        "committed_per_node": committed_per_node,
        "failed": len(run.failed_hashes),
        "receipts_sampled": checked,
        "lost": lost,
        "agree": agree,
        "forked_heights": forks[:10],
        "height_per_node": [max(w.block_hashes, default=start) for w in walks],
        "measured": len(latencies),
        "measured_s": round(elapsed, 3),
        "validators": plan.validators,
        "cores": cores,
        "verify_per_s": round(plan.verify_per_s, 1),
        "ceiling_tx_per_s": round(ceiling, 1),
        "ceiling_fraction": round(tx_per_s / ceiling, 4) if ceiling else 0.0,
        "duration_s": opts.duration_s,
        "warmup_s": opts.warmup_s,
        "load_s": round(t_load_done - run.t0, 3),
        "drain_s": round(t_drained - t_load_done, 3),
        "kind": opts.kind,
        "mode": opts.mode,
        "rate": opts.rate,
        "offered_tx_per_s": round(run.submitted / max(1e-9, t_load_done - run.t0), 1),
        "clients": opts.clients,
        "batch": opts.effective_batch(),
        "accounts": len(plan.senders),
        "accounts_created": plan.created_accounts,
        "nodes": list(opts.nodes),
        "unreachable": unreachable,
        "contract": plan.contract.hex() if plan.contract else None,
        "gas_limit": plan.gas_limit,
        "start_height": start,
        "end_height": final,
        "blocks": blocks,
        "avg_block_txs": round(total_block_txs / blocks, 1) if blocks else 0.0,
        "retries": run.retries,
        "transport_errors": run.transport_errors,
        "late_batches": run.late_batches,
        "presigned": plan.presigned,
        "exhausted": run.exhausted,
        "sign_s": round(plan.sign_s, 3),
        "setup_s": round(plan.setup_s, 3),
        "reference_node": opts.nodes[ref],
        "latency_from_answers": sum(1 for d in run.accepted if d in run.answered),
        "latency_resolution_ms": (FOLLOW_FIRST_S if ref == 0 else FOLLOW_OTHERS_S) * 1000,
        "failed_sampled": failed_sampled,
        "timeline": timeline,
    }


def run_bench(
    opts: BenchOptions, console: Console | None, note: Callable[[str], None]
) -> dict[str, Any]:
    """Setup, pre-sign, load, drain, audit; the report document (see module docstring)."""
    plan = prepare(opts, note)
    note(
        f"{plan.presigned:,} transactions ready in {plan.sign_s:.1f} s; "
        f"{opts.mode} loop for {opts.warmup_s + opts.duration_s:g} s against {len(opts.nodes)} nodes"
    )
    try:
        return trio.run(_run, opts, plan, console)
    except BaseExceptionGroup as group:
        error = _command_error(group)
        if error is not None:
            raise error from None
        raise


def _command_error(error: BaseException) -> CommandError | None:
    """The first CommandError inside (nested) exception groups, if any."""
    if isinstance(error, CommandError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _command_error(inner)
            if found is not None:
                return found
    return None
