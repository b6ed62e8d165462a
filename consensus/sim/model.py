"""What one simulated run looks like: parameters, the fault plan drawn from the seed, and
the simulated blocks.

Simulated blocks are the canonical record ``["sim-block", 1, height, parent, [request
ids]]``; the digest is its SHA-256, and the state root after a block is
``SHA-256(parent state root || encode(ids))``. Executing a block means decoding it and
checking that it extends its parent, that every request id was really submitted (a
stand-in for client signatures) and that none was applied before on that chain.

Everything random is drawn from the run's own ``random.Random(seed)``; nothing else in
the simulator is random, and there is no clock — time is an integer of virtual ms.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

from consensus.quorum import max_faulty, quorum_size
from consensus.sim.epochs import ADD, SetChange, draw_changes
from crypto import keys
from crypto.encoding import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    decode,
    encode,
    encode_record,
    record_fields,
)
from crypto.hashing import HASH_SIZE, sha256

SIM_CHAIN_ID: Final = "quorum-sim"
GENESIS_DIGEST: Final = sha256(b"quorum-sim genesis")
GENESIS_STATE_ROOT: Final = sha256(b"quorum-sim genesis state")
#: Requests per simulated block at most.
MAX_REQUESTS_PER_BLOCK: Final = 8
#: Size of the shared signature-verification memo (entries).
MAX_VERIFY_MEMO_ENTRIES: Final = 200_000

STRATEGIES: Final = ("silent", "equivocate", "twins", "mutate", "flood", "withhold", "forge")


@dataclass(frozen=True, slots=True)
class SimParams:
    """Knobs of a run that are not drawn from the seed (``quorum sim`` options)."""

    validators: int = 4
    byzantine: int = 1
    #: Latest moment faults heal (virtual ms); each seed draws its own heal time below it.
    max_heal_ms: int = 2500
    #: After healing (and the last request), everything must commit within this (virtual ms).
    liveness_bound_ms: int = 20_000
    max_requests: int = 24
    tick_ms: int = 10
    view_change_timeout_ms: int = 150
    max_view_change_timeout_ms: int = 1200
    checkpoint_interval: int = 4
    watermark_window: int = 16
    max_pipeline: int = 3
    #: Draw validator-set changes (consensus/sim/epochs.py) voted inside the chain.
    epochs: bool = False

    def command(self, seed: int) -> str:
        """The exact command that reproduces one seed."""
        return (
            f"quorum sim --seeds 1 --seed-start {seed} --validators {self.validators} "
            f"--byzantine {self.byzantine} --max-heal-ms {self.max_heal_ms} "
            f"--max-requests {self.max_requests}" + (" --epochs" if self.epochs else "")
        )


@dataclass(frozen=True, slots=True)
class Partition:
    """Directed links (sender index, receiver index) that drop everything in [start, end)."""

    start: int
    end: int
    blocked: frozenset[tuple[int, int]]
    label: str


@dataclass(frozen=True, slots=True)
class Crash:
    index: int
    at: int
    restart_at: int


# Rates are per-mille integers: no floats in anything that decides behaviour.
@dataclass(frozen=True, slots=True)
class Plan:
    heal_at: int
    loss_permille: int
    duplicate_permille: int
    base_delay_ms: int
    jitter_ms: int
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    tick_periods: tuple[int, ...]
    request_times: tuple[int, ...]
    byzantine: tuple[int, ...]
    strategies: dict[int, str] = field(default_factory=dict)
    #: Twins and equivocators show each honest validator one of two faces: its group.
    groups: dict[int, int] = field(default_factory=dict)
    #: B > f: the Byzantine validators collude (twins everywhere, honest groups split).
    coalition: bool = False
    #: Validator-set changes, in order (``SimParams.epochs``; consensus/sim/epochs.py).
    changes: tuple[SetChange, ...] = ()

    def describe(self) -> str:
        parts = [
            f"heal at {self.heal_at} ms",
            f"loss {self.loss_permille}/1000",
            f"dup {self.duplicate_permille}/1000",
            f"delay {self.base_delay_ms}+{self.jitter_ms} ms",
            f"{len(self.partitions)} partitions ({', '.join(p.label for p in self.partitions) or '-'})",
            f"{len(self.crashes)} crash-restarts",
            f"{len(self.request_times)} requests",
            "byzantine " + (", ".join(f"{i}:{self.strategies[i]}" for i in self.byzantine) or "-"),
        ]
        if self.coalition:
            parts.append("colluding coalition")
        if self.changes:
            parts.append("set changes: " + ", ".join(c.describe() for c in self.changes))
        return "; ".join(parts)


def draw_plan(rng: random.Random, params: SimParams) -> Plan:
    """Draw every fault of one run from its seed."""
    n, b = params.validators, params.byzantine
    f, q = max_faulty(n), quorum_size(n)
    heal_at = rng.randint(params.max_heal_ms // 4, params.max_heal_ms)
    loss = rng.choice((0, 0, 10, 50, 150, 300))
    duplicate = rng.choice((0, 10, 100))
    base_delay = rng.randint(1, 5)
    jitter = rng.choice((1, 5, 20, 60, 200))
    partitions: list[Partition] = []
    for _ in range(rng.randint(0, 3)):
        start = rng.randint(0, heal_at - 1)
        end = rng.randint(start + 1, heal_at)
        shape = rng.choice(("split", "isolate", "asymmetric"))
        blocked: set[tuple[int, int]] = set()
        if shape == "split":
            side = [i for i in range(n) if rng.randrange(2) == 0]
            blocked = {(a, c) for a in range(n) for c in range(n) if (a in side) != (c in side)}
        elif shape == "isolate":
            victim = rng.randrange(n)
            blocked = {(victim, c) for c in range(n)} | {(c, victim) for c in range(n)}
        else:
            sender = rng.randrange(n)
            deaf = [c for c in range(n) if c != sender and rng.randrange(10) < 6]
            blocked = {(sender, c) for c in deaf}
            if rng.randrange(2) == 0:
                blocked = {(c, sender) for c in deaf}
        partitions.append(Partition(start, end, frozenset(blocked), shape))
    byzantine = tuple(range(b)) if b > f else tuple(sorted(rng.sample(range(n), b)))
    coalition = b > f and q - b <= (n - b) // 2 and rng.randrange(10) < 8
    strategies = {i: ("twins" if coalition else rng.choice(STRATEGIES)) for i in byzantine}
    honest = [i for i in range(n) if i not in byzantine]
    groups = {i: rng.randrange(2) for i in honest}
    if coalition:
        # Split the honest validators so that each half plus the twins is a quorum, and keep
        # the halves apart until the heal: each side then decides on its own.
        groups = {i: (0 if k < len(honest) // 2 else 1) for k, i in enumerate(honest)}
        split = {(a, c) for a in honest for c in honest if groups[a] != groups[c]}
        partitions.append(Partition(0, heal_at, frozenset(split), "coalition-split"))
    crashes: list[Crash] = []
    for _ in range(rng.randint(0, 2)):
        index = rng.choice(honest)
        at = rng.randint(0, max(1, heal_at - 50))
        crashes.append(Crash(index, at, rng.randint(at + 10, heal_at + 10)))
    periods = tuple(params.tick_ms + rng.randint(-2, 3) for _ in range(n))
    count = rng.randint(max(3, params.max_requests // 4), params.max_requests)
    times = tuple(sorted(rng.randint(0, heal_at + 300) for _ in range(count)))
    changes: tuple[SetChange, ...] = ()
    if params.epochs:  # drawn last: a plan without epochs draws exactly what it always did
        changes = draw_changes(rng, n, byzantine, heal_at, lax=b > f)
        joiners = sum(1 for c in changes if c.action == ADD)
        periods += tuple(params.tick_ms + rng.randint(-2, 3) for _ in range(joiners))
    return Plan(
        heal_at,
        loss,
        duplicate,
        base_delay,
        jitter,
        tuple(partitions),
        tuple(crashes),
        periods,
        times,
        byzantine,
        strategies,
        groups,
        coalition,
        changes,
    )


# ----------------------------------------------------------------------------- blocks


def block_payload(height: int, parent: bytes, ids: list[int]) -> bytes:
    return encode_record("sim-block", 1, [height, parent, ids])


def parse_block(payload: bytes) -> tuple[int, bytes, list[int]]:
    f = record_fields(decode(payload), "sim-block", 1, 3)
    ids = [as_int(i, "id") for i in as_list(f[2], "ids", max_len=MAX_REQUESTS_PER_BLOCK * 4)]
    return as_int(f[0], "height"), as_bytes(f[1], "parent", size=HASH_SIZE), ids


def block_digest(payload: bytes) -> bytes | None:
    try:
        parse_block(payload)
    except DecodeError:
        return None
    return sha256(payload)


def next_state_root(parent_root: bytes, ids: list[int]) -> bytes:
    return sha256(parent_root + encode(ids))


def request_key(request_id: int) -> bytes:
    return b"req-%d" % request_id


# ----------------------------------------------------------------------------- crypto memo
# Both memos are keyed by the exact bytes of every input (public key, signature, chain id,
# kind, message), so an altered or forged message can never hit an entry made for another.

_verify_memo: dict[tuple[bytes, bytes, str, str, bytes], bool] = {}
_sign_memo: dict[tuple[bytes, str, str, bytes], bytes] = {}


def memo_verify(
    public_key: bytes, chain_id: str, kind: str, message: bytes, signature: bytes
) -> bool:
    """crypto.keys.verify, memoised: n replicas in one process check each signature once.
    A pure function of its inputs, so the memo changes no outcome."""
    memo_key = (public_key, signature, chain_id, kind, message)
    known = _verify_memo.get(memo_key)
    if known is None:
        if len(_verify_memo) >= MAX_VERIFY_MEMO_ENTRIES:
            _verify_memo.clear()
        known = keys.verify(public_key, chain_id, kind, message, signature)
        _verify_memo[memo_key] = known
    return known


class SimKey(keys.PrivateKey):
    """A validator key whose signatures are memoised (Ed25519 is deterministic, so signing
    the same bytes again gives the same signature): a STATUS or a retransmitted vote is
    signed once. A signature made here is also remembered as valid for exactly this public
    key and these bytes — what ``keys.verify`` answers for a correct signer — so the n - 1
    receivers of an honest message do not each run Ed25519 again. Anything else (another
    key, a flipped bit, another kind or chain) misses the memo and is verified for real."""

    __slots__ = ()

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes:
        memo_key = (self.public_key, chain_id, kind, message)
        signature = _sign_memo.get(memo_key)
        if signature is None:
            if len(_sign_memo) >= MAX_VERIFY_MEMO_ENTRIES:
                _sign_memo.clear()
            signature = super().sign(chain_id, kind, message)
            _sign_memo[memo_key] = signature
            if len(_verify_memo) >= MAX_VERIFY_MEMO_ENTRIES:
                _verify_memo.clear()
            _verify_memo[(self.public_key, signature, chain_id, kind, message)] = True
        return signature


def validator_key(index: int) -> SimKey:
    return SimKey(sha256(b"quorum-sim validator %d" % index))
