"""What a replica is told at construction: the validator set, the genesis anchor, the limits.

The consensus core never imports ``genesis`` (imports flow crypto <- consensus <- genesis),
so the driver copies the genesis consensus parameters into a :class:`ReplicaConfig`. All
timers are integers: the driver calls ``tick()`` every ``tick_ms`` and every timeout is a
whole number of ticks computed here, once.

Two pure functions are injected rather than imported, so the core stays free of the ledger's
block format: ``block_digest`` (the block hash of an opaque payload, or None if the payload
is malformed) and ``verify_signature`` (defaults to :func:`crypto.keys.verify`; the
simulator passes a memoising wrapper so n replicas in one process verify each signature
once).

House rule: immutable once built; the core never reads a global setting, the genesis file
or an environment variable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from consensus.quorum import max_faulty, quorum_size, weak_quorum_size
from crypto import keys
from crypto.hashing import HASH_SIZE, ZERO_HASH, sha256

#: Largest validator set the message formats accept (same bound as the chain's certificates).
MAX_VALIDATORS: Final = 1024
#: Largest opaque block payload any configuration may allow (the encoding's hard cap is 16 MiB
#: for a whole message, and a PRE-PREPARE carries one payload plus a small header).
MAX_BLOCK_BYTES_HARD: Final = 15 * 1024 * 1024

DigestFn = Callable[[bytes], bytes | None]
VerifyFn = Callable[[bytes, str, str, bytes, bytes], bool]


def epoch_chain_id(chain_id: str, epoch: int) -> str:
    """The signing domain of consensus messages in ``epoch`` (docs/CONSENSUS.md §12).

    Epoch 0 (the genesis set) signs under the chain id itself, so chains without a set
    change are unchanged; epoch e >= 1 signs under ``e<e>-<24 hex of SHA-256(chain id)>``,
    a valid chain id of at most 50 characters. A message or certificate of one epoch
    therefore never verifies in another, even where the sets share keys and the views and
    heights coincide (a VIEW-CHANGE for view 1 of epoch 0 is not one of epoch 1).
    """
    if epoch < 0:
        raise ValueError(f"an epoch is >= 0, got {epoch}")
    if epoch == 0:
        return chain_id
    digest = sha256(chain_id.encode()).hex()[:24]
    return f"e{epoch}-{digest}"


class ConfigError(ValueError):
    """A replica configuration that cannot work (the driver's mistake, caught at startup)."""


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaConfig:
    """Everything every replica of one chain must agree on, plus this node's tick length."""

    chain_id: str
    #: Ed25519 public keys in genesis order; the primary of view v is validators[v mod n].
    validators: tuple[bytes, ...]
    #: The block every chain starts from (height initial_height - 1): the first stable
    #: checkpoint, which needs no certificate.
    genesis_height: int
    genesis_digest: bytes
    genesis_state_root: bytes = ZERO_HASH
    #: Pure function: the block hash of an opaque payload, or None if it is malformed.
    block_digest: DigestFn
    checkpoint_interval: int = 64
    watermark_window: int = 256
    max_pipeline: int = 4
    view_change_timeout_ms: int = 2000
    max_view_change_timeout_ms: int = 60_000
    max_block_bytes: int = 4 * 1024 * 1024
    tick_ms: int = 100
    #: Human names for diagnostics ("node0", ...); defaults to node{i}.
    validator_names: tuple[str, ...] = ()
    verify_signature: VerifyFn = field(default=keys.verify)

    # Derived quantities, computed once in __post_init__: the core reads them on every
    # message and tick. Not compared or printed (they follow from the fields above).
    n: int = field(init=False, repr=False, compare=False)
    f: int = field(init=False, repr=False, compare=False)
    quorum: int = field(init=False, repr=False, compare=False)
    weak_quorum: int = field(init=False, repr=False, compare=False)
    view_change_timeout_ticks: int = field(init=False, repr=False, compare=False)
    max_view_change_timeout_ticks: int = field(init=False, repr=False, compare=False)
    #: Ticks without progress before a replica resends its in-flight messages.
    retransmit_ticks: int = field(init=False, repr=False, compare=False)
    #: Ticks between STATUS announcements (how lagging replicas learn they are behind).
    status_ticks: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems: list[str] = []
        n = len(self.validators)
        if not keys.valid_chain_id(self.chain_id):
            problems.append(f"chain_id {self.chain_id!r} is not a valid chain id")
        if not 1 <= n <= MAX_VALIDATORS:
            problems.append(f"need 1..{MAX_VALIDATORS} validators, got {n}")
        if any(not isinstance(v, bytes) or len(v) != keys.PUBLIC_KEY_SIZE for v in self.validators):
            problems.append("every validator must be a 32-byte Ed25519 public key")
        if len(set(self.validators)) != n:
            problems.append("validator public keys must be distinct")
        if self.validator_names and len(self.validator_names) != n:
            problems.append("validator_names must name every validator")
        if self.genesis_height < 0:
            problems.append("genesis_height must be >= 0")
        if len(self.genesis_digest) != HASH_SIZE or len(self.genesis_state_root) != HASH_SIZE:
            problems.append("genesis digest and state root must be 32 bytes")
        if self.checkpoint_interval < 1:
            problems.append("checkpoint_interval must be >= 1")
        elif (
            self.watermark_window < 2 * self.checkpoint_interval
            or self.watermark_window % self.checkpoint_interval
        ):
            problems.append(
                "watermark_window must be a multiple of, and >= 2 *, checkpoint_interval"
            )
        if not 1 <= self.max_pipeline <= self.watermark_window:
            problems.append("max_pipeline must be in 1..watermark_window")
        if self.tick_ms < 1 or self.view_change_timeout_ms < 1:
            problems.append("tick_ms and view_change_timeout_ms must be >= 1")
        if self.max_view_change_timeout_ms < self.view_change_timeout_ms:
            problems.append("max_view_change_timeout_ms must be >= view_change_timeout_ms")
        if not 1 <= self.max_block_bytes <= MAX_BLOCK_BYTES_HARD:
            problems.append(f"max_block_bytes must be in 1..{MAX_BLOCK_BYTES_HARD}")
        if problems:
            raise ConfigError("; ".join(problems))
        base = max(1, _ceil_div(self.view_change_timeout_ms, self.tick_ms))
        derived = {
            "n": n,
            "f": max_faulty(n),
            "quorum": quorum_size(n),
            "weak_quorum": weak_quorum_size(n),
            "view_change_timeout_ticks": base,
            "max_view_change_timeout_ticks": max(
                base, _ceil_div(self.max_view_change_timeout_ms, self.tick_ms)
            ),
            "retransmit_ticks": max(1, base // 4),
            "status_ticks": max(1, base // 2),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ derived quantities

    def primary(self, view: int) -> int:
        """Index of the primary of ``view``."""
        return view % self.n

    def name(self, index: int) -> str:
        return self.validator_names[index] if self.validator_names else f"node{index}"

    def view_change_timeout(self, consecutive: int) -> int:
        """Ticks to wait after ``consecutive`` view changes without a commit (doubling, capped)."""
        base = self.view_change_timeout_ticks
        cap = self.max_view_change_timeout_ticks
        # Bound the shift so the integer stays small whatever the count.
        return min(cap, base << min(consecutive, 40))
