"""`quorum bench` before the clock starts: the options, this machine's verification rate,
pre-signing every transaction (on every core), funding extra accounts and deploying the
token for contract runs, and cutting the load into batches (the plan).

Never: sign on the clock, or give a sender's nonces to two nodes (each node must see its
senders' nonces in order).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from contracts import examples
from contracts.interpreter import contract_address
from crypto import keys
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.types import Call, Deploy, Payload, Transaction, Transfer
from ledger.client import (
    ClientError,
    NodeUnreachable,
    QuorumClient,
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
RETRY_BACKOFF_S: Final = 0.05
#: Rejection codes that mean "not now": the transaction is sent again (so is any refusal
#: that carries ``retry_after_ms``: the node's backpressure, HTTP 429).
RETRYABLE_CODES: Final = frozenset(
    {
        "mempool_full",
        "sender_busy",
        "nonce_too_high",
        "busy",
        "overloaded",
        "rate_limited",
        "syncing",
    }
)
#: Codes of a transaction the node already holds or committed: it counts as accepted.
ALREADY_HELD_CODES: Final = frozenset({"duplicate"})
#: Results that mean the node holds the transaction.
ACCEPTED_STATUSES: Final = frozenset({"pending", "committed", "failed"})


class BenchError(Exception):
    """The bench cannot run or finish; ``unreachable`` when a node did not answer."""

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


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
    #: Post MessagePack (raw bytes, ledger/node/api_binary.py) rather than JSON with hex.
    binary: bool = True
    #: When known (a testnet's, or --genesis), every block walked is verified against it
    #: (commit certificate, transaction list): a commit is counted only from those.
    genesis: Genesis | None = None

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


def _unreachable(exc: ClientError, what: str) -> BenchError:
    return BenchError(f"{what}: {exc}", unreachable=isinstance(exc, NodeUnreachable))


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
class Batch:
    """Transactions posted together to ``node``; item ``i`` is sender ``senders[i]``'s
    transaction with nonce ``nonces[i]`` (a sender's items are in nonce order)."""

    node: int
    raws: list[bytes]
    hashes: list[bytes]
    senders: list[int]
    nonces: list[int]
    t_submit: float = -1.0


@dataclass(frozen=True, slots=True)
class Stream:
    """One sender's pre-signed run: nonces ``first``, ``first + 1``, ..."""

    sender: int
    first: int
    raws: list[bytes]
    hashes: list[bytes]


@dataclass(frozen=True, slots=True)
class Plan:
    chain_id: str
    validators: int
    start_heights: tuple[int, ...]
    senders: tuple[PrivateKey, ...]
    created_accounts: int
    contract: bytes | None
    gas_limit: int
    batches: list[Batch]
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
                raise BenchError(
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
            raise BenchError(
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
        raise BenchError(f"the token was created at {created}, expected {address.hex()}")
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


def _build_batches(per_node_streams: list[list[Stream]], batch: int) -> list[Batch]:
    """Interleave each node's senders nonce by nonce, cut into batches, alternate nodes."""
    per_node: list[list[Batch]] = []
    for node, streams in enumerate(per_node_streams):
        raws: list[bytes] = []
        hashes: list[bytes] = []
        senders: list[int] = []
        nonces: list[int] = []
        longest = max((len(s.raws) for s in streams), default=0)
        for i in range(longest):
            for s in streams:
                if i < len(s.raws):
                    raws.append(s.raws[i])
                    hashes.append(s.hashes[i])
                    senders.append(s.sender)
                    nonces.append(s.first + i)
        per_node.append(
            [
                Batch(
                    node,
                    raws[j : j + batch],
                    hashes[j : j + batch],
                    senders[j : j + batch],
                    nonces[j : j + batch],
                )
                for j in range(0, len(raws), batch)
            ]
        )
    out: list[Batch] = []
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


def prepare(opts: BenchOptions, note: Callable[[str], None]) -> Plan:
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
            raise BenchError(f"the nodes are on different chains: {sorted(chain_ids)}")
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
            raise ValueError("the bench needs at least 2 sender accounts")
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
        streams: list[list[Stream]] = [[] for _ in opts.nodes]
        for i, (job, (raws, hashes)) in enumerate(zip(jobs, signed, strict=True)):
            streams[i % len(opts.nodes)].append(Stream(i, job[2], raws, hashes))
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
    return Plan(
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
