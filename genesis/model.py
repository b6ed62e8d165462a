"""The genesis document as values: frozen dataclasses, their canonical value and hash.

What it is for: :class:`ConsensusParams`, :class:`Validator`, :class:`Account`,
:class:`Contract`, :class:`Permissions` and :class:`Genesis`, each with ``to_value()`` (the
canonical value: bytes as bytes, ``None`` for "anyone", what :meth:`Genesis.hash` covers,
encoded with :func:`crypto.encoding.encode` and hashed with ``tagged_hash("genesis", ...)``)
and ``to_json()`` (the JSON form that :func:`genesis.jsonform.parse_genesis` inverts).

What it must never do: exist in an invalid state (the constructors of :class:`Genesis` and
:class:`ConsensusParams` run the checks of :mod:`genesis.checks`, the same ones the parser
runs, so documents from the parser, the builder and ``dataclasses.replace`` are held to one
standard); parse JSON or touch files; or import ``genesis.jsonform`` or ``genesis.document``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar, cast

from consensus.quorum import max_faulty, quorum_size
from crypto.encoding import EncodingError, Value, encode
from crypto.hashing import tagged_hash
from genesis.checks import (
    _BAD,
    ANY,
    GENESIS_FORMAT_VERSION,
    KIB,
    MIB,
    GenesisError,
    _AccountRaw,
    _Bad,
    _check_consensus,
    _check_document,
    _ContractRaw,
    _idx,
    _Problems,
    _ValidatorRaw,
)

_T = TypeVar("_T")


# --------------------------------------------------------------------------- consensus


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsensusParams:
    """Consensus limits and timers. Raises :class:`GenesisError` when invalid."""

    max_block_txs: int = 2000
    max_block_bytes: int = 4 * MIB
    max_tx_bytes: int = 64 * KIB
    max_block_gas: int = 100_000_000
    max_tx_gas: int = 10_000_000
    #: Blocks between checkpoints.
    checkpoint_interval: int = 64
    #: Heights accepted above the stable checkpoint: >= 2 checkpoints, a multiple of one.
    watermark_window: int = 256
    view_change_timeout_ms: int = 2000
    max_view_change_timeout_ms: int = 60_000
    max_clock_skew_ms: int = 5000
    #: Heights in flight at once (1..watermark_window).
    max_pipeline: int = 4

    def __post_init__(self) -> None:
        p = _Problems()
        _check_consensus(p, self.to_value())
        p.raise_if_any()

    def to_value(self) -> dict[str, int]:
        """The canonical value (and the JSON form): every parameter by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> dict[str, int]:
        return self.to_value()


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True, slots=True)
class Validator:
    """A member of the validator set: a short unique name and an Ed25519 public key."""

    name: str
    public_key: bytes

    def to_value(self) -> dict[str, Value]:
        return {"name": self.name, "public_key": self.public_key}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "public_key": self.public_key.hex()}


@dataclass(frozen=True, slots=True)
class Account:
    """A funded account at genesis."""

    address: bytes
    balance: int

    def to_value(self) -> dict[str, Value]:
        return {"address": self.address, "balance": self.balance}

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address.hex(), "balance": self.balance}


@dataclass(frozen=True, slots=True)
class Contract:
    """A contract deployed at genesis. ``storage`` pairs are held sorted by key."""

    address: bytes
    code: bytes
    balance: int = 0
    storage: tuple[tuple[bytes, bytes], ...] = ()

    def __post_init__(self) -> None:
        storage: object = self.storage
        if isinstance(storage, Mapping):  # a dict of key -> value is accepted too
            storage = tuple(storage.items())
            object.__setattr__(self, "storage", storage)
        if isinstance(storage, tuple | list) and all(
            isinstance(e, tuple | list) and len(e) == 2 and isinstance(e[0], bytes) for e in storage
        ):
            pairs = cast("list[tuple[bytes, bytes]]", [tuple(e) for e in storage])
            object.__setattr__(self, "storage", tuple(sorted(pairs, key=lambda e: e[0])))

    def to_value(self) -> dict[str, Value]:
        return {
            "address": self.address,
            "code": self.code,
            "balance": self.balance,
            "storage": [[k, v] for k, v in self.storage],
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address.hex(),
            "code": self.code.hex(),
            "balance": self.balance,
            "storage": {k.hex(): v.hex() for k, v in self.storage},
        }


@dataclass(frozen=True, slots=True)
class Permissions:
    """Who may submit transactions, deploy contracts, administer. ``None`` means anyone.

    ``admin_threshold`` (k) is how many distinct admins must vote for the same role change
    before it takes effect (ledger/chain/roles.py). It is in the canonical value and the
    JSON form only when it is not 1, so documents written before it existed keep their hash.
    """

    submit: tuple[bytes, ...] | None = None
    deploy: tuple[bytes, ...] | None = None
    admin: tuple[bytes, ...] = ()
    admin_threshold: int = 1

    def __post_init__(self) -> None:
        for name in ("submit", "deploy", "admin"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))

    def allows_submit(self, address: bytes) -> bool:
        return self.submit is None or address in self.submit

    def allows_deploy(self, address: bytes) -> bool:
        return self.deploy is None or address in self.deploy

    def is_admin(self, address: bytes) -> bool:
        return address in self.admin

    @property
    def is_open(self) -> bool:
        """Anyone may submit and deploy, and nobody administers: nothing to keep in state."""
        return self == Permissions()

    def to_value(self) -> dict[str, Value]:
        value: dict[str, Value] = {
            "submit": None if self.submit is None else list(self.submit),
            "deploy": None if self.deploy is None else list(self.deploy),
            "admin": list(self.admin),
        }
        if self.admin_threshold != 1:
            value["admin_threshold"] = self.admin_threshold
        return value

    def to_json(self) -> dict[str, Any]:
        def spell(v: tuple[bytes, ...] | None) -> str | list[str]:
            return ANY if v is None else [a.hex() for a in v]

        doc: dict[str, Any] = {
            "submit": spell(self.submit),
            "deploy": spell(self.deploy),
            "admin": [a.hex() for a in self.admin],
        }
        if self.admin_threshold != 1:
            doc["admin_threshold"] = self.admin_threshold
        return doc


# --------------------------------------------------------------------------- whole document


@dataclass(frozen=True, slots=True, kw_only=True)
class Genesis:
    """A validated genesis document. Construction raises :class:`GenesisError` if invalid."""

    chain_id: str
    #: RFC 3339 UTC, seconds precision: ``"2026-11-26T07:00:00Z"``.
    genesis_time: str
    #: ``genesis_time`` in milliseconds since the Unix epoch (derived; not in the JSON).
    genesis_time_ms: int = field(init=False)
    #: Height of the first block (the block after genesis).
    initial_height: int = 1
    consensus: ConsensusParams = field(default_factory=ConsensusParams)
    #: In order: the primary of view v is ``validators[v % n]``.
    validators: tuple[Validator, ...]
    accounts: tuple[Account, ...] = ()
    contracts: tuple[Contract, ...] = ()
    permissions: Permissions = field(default_factory=Permissions)

    _digest: bytes = field(init=False, repr=False, compare=False)
    _validators_digest: bytes = field(init=False, repr=False, compare=False)
    _index: dict[bytes, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("validators", "accounts", "contracts"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        p = _Problems()
        if not isinstance(self.consensus, ConsensusParams):
            p.add("consensus", f"expected ConsensusParams, got {type(self.consensus).__name__}")
        time_ms = _check_document(
            p,
            chain_id=self.chain_id,
            genesis_time=self.genesis_time,
            initial_height=self.initial_height,
            validators=_entries(p, "validators", self.validators, Validator, _validator_raw, 2),
            accounts=_entries(p, "accounts", self.accounts, Account, _account_raw, 2),
            contracts=_entries(p, "contracts", self.contracts, Contract, _contract_raw, 4),
            permissions=(
                (
                    self.permissions.submit,
                    self.permissions.deploy,
                    self.permissions.admin,
                    self.permissions.admin_threshold,
                )
                if isinstance(self.permissions, Permissions)
                else _type_problem(p, "permissions", "Permissions", self.permissions)
            ),
        )
        p.raise_if_any()
        assert time_ms is not None
        object.__setattr__(self, "genesis_time_ms", time_ms)
        try:
            encoded = encode(self.to_value())
        except EncodingError as exc:  # only size can fail once the checks above passed
            raise GenesisError(f"genesis: {exc}") from None
        object.__setattr__(self, "_digest", tagged_hash("genesis", encoded))
        object.__setattr__(
            self,
            "_validators_digest",
            tagged_hash("validators", encode([[v.name, v.public_key] for v in self.validators])),
        )
        object.__setattr__(self, "_index", {v.public_key: i for i, v in enumerate(self.validators)})

    # -- identity

    def hash(self) -> bytes:
        """32 bytes naming this document: ``tagged_hash("genesis", encode(to_value()))``."""
        return self._digest

    def validators_hash(self) -> bytes:
        """``tagged_hash("validators", encode([[name, public_key], ...]))``, in order."""
        return self._validators_digest

    # -- the validator set

    @property
    def n(self) -> int:
        return len(self.validators)

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def quorum(self) -> int:
        return quorum_size(self.n)

    def validator_index(self, public_key: bytes) -> int | None:
        """Position of ``public_key`` in the validator set, or None if it is not a member."""
        return self._index.get(public_key)

    def primary(self, view: int) -> Validator:
        """The primary of ``view``: ``validators[view mod n]``."""
        if view < 0:
            raise ValueError(f"view must be non-negative, got {view}")
        return self.validators[view % self.n]

    @property
    def total_supply(self) -> int:
        return sum(a.balance for a in self.accounts) + sum(c.balance for c in self.contracts)

    # -- representations

    def to_value(self) -> dict[str, Value]:
        """The canonical value that :meth:`hash` covers (bytes as bytes, None = anyone)."""
        return {
            "format": GENESIS_FORMAT_VERSION,
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "initial_height": self.initial_height,
            "consensus": self.consensus.to_value(),
            "validators": [v.to_value() for v in self.validators],
            "accounts": [a.to_value() for a in self.accounts],
            "contracts": [c.to_value() for c in self.contracts],
            "permissions": self.permissions.to_value(),
        }

    def to_json(self) -> dict[str, Any]:
        """The JSON form (what genesis files contain); ``parse_genesis`` inverts it."""
        return {
            "chain_id": self.chain_id,
            "genesis_time": self.genesis_time,
            "initial_height": self.initial_height,
            "consensus": self.consensus.to_json(),
            "validators": [v.to_json() for v in self.validators],
            "accounts": [a.to_json() for a in self.accounts],
            "contracts": [c.to_json() for c in self.contracts],
            "permissions": self.permissions.to_json(),
        }


# --------------------------------------------------------------------------- constructor checks
# The constructors hand their fields to genesis.checks as raw tuples.


def _type_problem(p: _Problems, path: str, expected: str, value: object) -> _Bad:
    p.add(path, f"expected {expected}, got {type(value).__name__}")
    return _BAD


def _entries(
    p: _Problems,
    path: str,
    items: object,
    kind: type[_T],
    raw: Callable[[_T], tuple[object, ...]],
    width: int,
) -> list[Any] | _Bad:
    """Turn constructed entries into raw tuples for the checker (wrong types reported)."""
    if not isinstance(items, tuple | list):
        return _type_problem(p, path, "a tuple", items)
    out: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, kind):
            out.append(raw(item))
        else:
            _type_problem(p, _idx(path, i), kind.__name__, item)
            out.append((_BAD,) * width)
    return out


def _validator_raw(v: Validator) -> _ValidatorRaw:
    return (v.name, v.public_key)


def _account_raw(a: Account) -> _AccountRaw:
    return (a.address, a.balance)


def _contract_raw(c: Contract) -> _ContractRaw:
    return (c.address, c.code, c.balance, c.storage)
