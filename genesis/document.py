"""The genesis document: its types, its JSON form, validation, and its hash.

A genesis file fixes everything a chain starts from: the chain id, the validator set (in
order: the primary of view ``v`` is ``validators[v mod n]``), the consensus parameters,
funded accounts, predeployed contracts and permissions. Every node of a chain must load
the same document; :meth:`Genesis.hash` names it.

Two representations, one meaning:

* the JSON form (:meth:`Genesis.to_json`, :func:`parse_genesis`): what genesis files
  contain; bytes are hex strings, amounts are integers, ``"any"`` means "anyone";
* the canonical value (:meth:`Genesis.to_value`): bytes as bytes, ``None`` for "anyone",
  encoded with :func:`crypto.encoding.encode` and hashed with
  ``tagged_hash("genesis", ...)``. The hash therefore never depends on JSON key order,
  whitespace, hex letter case or ``0x`` prefixes.

JSON arrays keep their order (it can matter: validator order picks primaries); JSON
objects do not, so contract storage (an object) is held sorted by key.

Validation collects every problem it can find, each as ``"field.path: what is wrong"``,
and raises one :class:`GenesisError` carrying them all. A :class:`Genesis` (and a
:class:`ConsensusParams`) cannot be constructed in an invalid state: the constructors run
the same checks as the parser, so documents from :func:`parse_genesis`, from the builder
and from ``dataclasses.replace`` are held to one standard.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from consensus.quorum import max_faulty, quorum_size
from crypto.encoding import MAX_ENCODED_BYTES, EncodingError, Value, encode
from crypto.hashing import from_hex, tagged_hash
from crypto.keys import (
    ADDRESS_SIZE,
    PUBLIC_KEY_SIZE,
    InvalidKeyError,
    check_public_key,
    valid_chain_id,
)

# --------------------------------------------------------------------------- limits

#: Version of the canonical genesis value (part of what is hashed).
GENESIS_FORMAT_VERSION: Final = 1

U64_MAX: Final = 2**64 - 1
KIB: Final = 1024
MIB: Final = 1024 * 1024

MIN_VALIDATORS: Final = 1
MAX_VALIDATORS: Final = 128
MAX_ACCOUNTS: Final = 100_000
MAX_CONTRACTS: Final = 1_000
MAX_CONTRACT_CODE_BYTES: Final = 64 * KIB
MAX_STORAGE_ENTRIES: Final = 10_000
MAX_STORAGE_KEY_BYTES: Final = 64
MAX_STORAGE_VALUE_BYTES: Final = 4 * KIB
MAX_PERMISSION_ENTRIES: Final = 10_000
MAX_INITIAL_HEIGHT: Final = 2**62
#: Genesis files larger than this are refused before they are read.
MAX_GENESIS_FILE_BYTES: Final = 16 * MIB

_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_TIME_RE: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
_HEX_RE: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]*")
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

ANY: Final = "any"

_T = TypeVar("_T")


# --------------------------------------------------------------------------- errors


class GenesisError(ValueError):
    """An invalid or unreadable genesis document.

    ``problems`` lists everything found wrong, each as ``"field.path: what is wrong"``;
    ``str(error)`` is those lines joined by newlines.
    """

    #: ``str(error)`` shows at most this many problems (``problems`` keeps them all).
    MAX_SHOWN: Final = 200

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__(self.problems)

    def __str__(self) -> str:
        shown = self.problems[: self.MAX_SHOWN]
        more = len(self.problems) - len(shown)
        lines = [*shown, f"... and {more} more problems"] if more > 0 else shown
        return "\n".join(lines)


class _Bad:
    """Sentinel for a value that failed to parse (its problem is already reported)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<bad>"


_BAD: Final = _Bad()


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)

    def raise_if_any(self) -> None:
        if self.items:
            raise GenesisError(self.items)


def _idx(path: str, i: int) -> str:
    return f"{path}[{i}]"


def _dot(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number (not an integer)"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


# --------------------------------------------------------------------------- field checks
# Each check takes values that may be ``_BAD`` (already reported: skip silently) or of a
# wrong type (reported here), so the parser and the constructors share them.


def _check_int(p: _Problems, path: str, value: object, lo: int, hi: int) -> bool:
    if value is _BAD:
        return False
    if isinstance(value, bool) or not isinstance(value, int):
        p.add(path, f"expected an integer, got {_json_type(value)}")
        return False
    if not lo <= value <= hi:
        p.add(path, f"{value} is outside the allowed range [{lo}, {hi}]")
        return False
    return True


def _check_bytes(
    p: _Problems,
    path: str,
    value: object,
    *,
    size: int | None = None,
    lo: int = 0,
    hi: int = U64_MAX,
) -> bool:
    if value is _BAD:
        return False
    if not isinstance(value, bytes):
        p.add(path, f"expected bytes, got {type(value).__name__}")
        return False
    if size is not None and len(value) != size:
        p.add(path, f"expected {size} bytes, got {len(value)}")
        return False
    if len(value) < lo:
        p.add(
            path,
            "must not be empty" if lo == 1 else f"{len(value)} bytes is under the minimum of {lo}",
        )
        return False
    if len(value) > hi:
        p.add(path, f"{len(value)} bytes is over the limit of {hi}")
        return False
    return True


def _check_list(p: _Problems, path: str, value: object, max_len: int) -> bool:
    if value is _BAD:
        return False
    if not isinstance(value, tuple | list):
        p.add(path, f"expected an array, got {_json_type(value)}")
        return False
    if len(value) > max_len:
        p.add(path, f"{len(value)} entries is over the limit of {max_len}")
        return False
    return True


def _check_chain_id(p: _Problems, value: object) -> None:
    if value is _BAD:
        return
    if not isinstance(value, str):
        p.add("chain_id", f"expected a string, got {_json_type(value)}")
        return
    # valid_chain_id's pattern ends in ``$``, which also matches before a trailing
    # newline: refuse control characters here explicitly.
    if not valid_chain_id(value) or not value.isprintable():
        p.add(
            "chain_id",
            f"{_short(value)} is not a valid chain id (1 to 50 characters from a-z, 0-9, "
            "'.', '_', '-', starting with a letter or digit)",
        )


def parse_genesis_time(text: str) -> int:
    """Milliseconds since the Unix epoch of an RFC 3339 UTC time like ``2026-11-26T07:00:00Z``.

    Only that exact shape is accepted (seconds precision, ``T`` and ``Z``), so one instant
    has one spelling and the hash of a genesis document is unambiguous. Raises ValueError.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {_json_type(text)}")
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"{_short(text)} is not an RFC 3339 UTC time with seconds precision, "
            "like 2026-11-26T07:00:00Z"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        when = _dt.datetime(year, month, day, hour, minute, second, tzinfo=_dt.UTC)
    except ValueError as exc:
        raise ValueError(f"{_short(text)} is not a valid date and time ({exc})") from None
    if when < _EPOCH:
        raise ValueError(f"{_short(text)} is before 1970-01-01T00:00:00Z")
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def format_genesis_time(ms: int) -> str:
    """The RFC 3339 UTC spelling of ``ms`` (truncated to whole seconds)."""
    when = _EPOCH + _dt.timedelta(milliseconds=ms - ms % 1000)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_time(p: _Problems, value: object) -> int | None:
    if value is _BAD:
        return None
    if not isinstance(value, str):
        p.add("genesis_time", f"expected a string, got {_json_type(value)}")
        return None
    try:
        return parse_genesis_time(value)
    except ValueError as exc:
        p.add("genesis_time", str(exc))
        return None


# --------------------------------------------------------------------------- consensus


@dataclass(frozen=True, slots=True)
class _Range:
    lo: int
    hi: int


_PARAM_RANGES: Final[dict[str, _Range]] = {
    "max_block_txs": _Range(1, 100_000),
    "max_block_bytes": _Range(1, MAX_ENCODED_BYTES // 2),
    "max_tx_bytes": _Range(1, 1 * MIB),
    "max_block_gas": _Range(1, 10**12),
    "max_tx_gas": _Range(1, 10**12),
    "checkpoint_interval": _Range(1, 10_000),
    "watermark_window": _Range(2, 100_000),
    "view_change_timeout_ms": _Range(1, 600_000),
    "max_view_change_timeout_ms": _Range(1, 3_600_000),
    "max_clock_skew_ms": _Range(1, 3_600_000),
    "max_pipeline": _Range(1, 100_000),
}


def _check_consensus(p: _Problems, values: Mapping[str, object], path: str = "consensus") -> None:
    ok = {
        name: _check_int(p, _dot(path, name), values.get(name, _BAD), r.lo, r.hi)
        for name, r in _PARAM_RANGES.items()
    }

    def pair(a: str, b: str) -> tuple[int, int] | None:
        if ok[a] and ok[b]:
            x, y = values[a], values[b]
            assert isinstance(x, int) and isinstance(y, int)
            return x, y
        return None

    if (tb := pair("max_tx_bytes", "max_block_bytes")) and tb[0] > tb[1]:
        p.add(_dot(path, "max_tx_bytes"), f"must be at most max_block_bytes ({tb[1]})")
    if (tg := pair("max_tx_gas", "max_block_gas")) and tg[0] > tg[1]:
        p.add(_dot(path, "max_tx_gas"), f"must be at most max_block_gas ({tg[1]})")
    if wc := pair("watermark_window", "checkpoint_interval"):
        window, interval = wc
        if window < 2 * interval:
            p.add(
                _dot(path, "watermark_window"),
                f"must be at least 2 * checkpoint_interval ({2 * interval}), got {window}",
            )
        if window % interval:
            p.add(
                _dot(path, "watermark_window"),
                f"must be a multiple of checkpoint_interval ({interval})",
            )
    if (vt := pair("max_view_change_timeout_ms", "view_change_timeout_ms")) and vt[0] < vt[1]:
        p.add(
            _dot(path, "max_view_change_timeout_ms"),
            f"must be at least view_change_timeout_ms ({vt[1]})",
        )
    if (pw := pair("max_pipeline", "watermark_window")) and pw[0] > pw[1]:
        p.add(_dot(path, "max_pipeline"), f"must be at most watermark_window ({pw[1]})")


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


PARAM_NAMES: Final = tuple(_PARAM_RANGES)


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
    """Who may submit transactions, deploy contracts, administer. ``None`` means anyone."""

    submit: tuple[bytes, ...] | None = None
    deploy: tuple[bytes, ...] | None = None
    admin: tuple[bytes, ...] = ()

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

    def to_value(self) -> dict[str, Value]:
        return {
            "submit": None if self.submit is None else list(self.submit),
            "deploy": None if self.deploy is None else list(self.deploy),
            "admin": list(self.admin),
        }

    def to_json(self) -> dict[str, Any]:
        def spell(v: tuple[bytes, ...] | None) -> str | list[str]:
            return ANY if v is None else [a.hex() for a in v]

        return {
            "submit": spell(self.submit),
            "deploy": spell(self.deploy),
            "admin": [a.hex() for a in self.admin],
        }


# --------------------------------------------------------------------------- whole document

# Raw entries handed to the checker: tuples of field values, each possibly _BAD.
_ValidatorRaw = tuple[object, object]
_AccountRaw = tuple[object, object]
_ContractRaw = tuple[object, object, object, object]
_PermissionsRaw = tuple[object, object, object]


def _check_unique(
    p: _Problems, path: str, field_name: str, items: Sequence[tuple[int, object]]
) -> dict[object, int]:
    """Report entries whose value repeats an earlier one; return value -> first index."""
    first: dict[object, int] = {}
    for i, value in items:
        if value in first:
            p.add(
                _dot(_idx(path, i), field_name) if field_name else _idx(path, i),
                f"duplicate of {_idx(path, first[value])}",
            )
        else:
            first[value] = i
    return first


def _check_address_list(p: _Problems, path: str, value: object, *, allow_any: bool) -> None:
    if value is _BAD or (value is None and allow_any):
        return
    if value is None:
        p.add(path, f"must be a list of addresses ({ANY!r} is not allowed here)")
        return
    if not _check_list(p, path, value, MAX_PERMISSION_ENTRIES):
        return
    assert isinstance(value, tuple | list)
    good = [
        (i, a) for i, a in enumerate(value) if _check_bytes(p, _idx(path, i), a, size=ADDRESS_SIZE)
    ]
    _check_unique(p, path, "", good)


def _check_document(
    p: _Problems,
    *,
    chain_id: object,
    genesis_time: object,
    initial_height: object,
    validators: Sequence[_ValidatorRaw] | _Bad,
    accounts: Sequence[_AccountRaw] | _Bad,
    contracts: Sequence[_ContractRaw] | _Bad,
    permissions: _PermissionsRaw | _Bad,
) -> int | None:
    """Check everything but the consensus params; return genesis_time in ms if valid."""
    _check_chain_id(p, chain_id)
    time_ms = _check_time(p, genesis_time)
    _check_int(p, "initial_height", initial_height, 1, MAX_INITIAL_HEIGHT)

    if not isinstance(validators, _Bad):
        if len(validators) < MIN_VALIDATORS:
            p.add("validators", f"at least {MIN_VALIDATORS} validator is required")
        elif len(validators) > MAX_VALIDATORS:
            p.add(
                "validators", f"{len(validators)} validators is over the limit of {MAX_VALIDATORS}"
            )
        names: list[tuple[int, object]] = []
        keys: list[tuple[int, object]] = []
        for i, (name, key) in enumerate(validators):
            path = _idx("validators", i)
            if name is not _BAD:
                if not isinstance(name, str):
                    p.add(_dot(path, "name"), f"expected a string, got {_json_type(name)}")
                elif _NAME_RE.fullmatch(name) is None:
                    p.add(
                        _dot(path, "name"),
                        f"{_short(name)} is not a valid name (1 to 32 characters from a-z, "
                        "0-9, '_', '-', starting with a letter or digit)",
                    )
                else:
                    names.append((i, name))
            if _check_bytes(p, _dot(path, "public_key"), key, size=PUBLIC_KEY_SIZE):
                assert isinstance(key, bytes)
                try:
                    check_public_key(key)
                except InvalidKeyError:
                    p.add(
                        _dot(path, "public_key"),
                        "not a usable Ed25519 public key (not a curve point, or of small order)",
                    )
                else:
                    keys.append((i, key))
        _check_unique(p, "validators", "name", names)
        _check_unique(p, "validators", "public_key", keys)

    supply = 0
    account_addresses: dict[object, int] = {}
    if not isinstance(accounts, _Bad):
        if len(accounts) > MAX_ACCOUNTS:
            p.add("accounts", f"{len(accounts)} accounts is over the limit of {MAX_ACCOUNTS}")
        addrs: list[tuple[int, object]] = []
        for i, (address, balance) in enumerate(accounts):
            path = _idx("accounts", i)
            if _check_bytes(p, _dot(path, "address"), address, size=ADDRESS_SIZE):
                addrs.append((i, address))
            if _check_int(p, _dot(path, "balance"), balance, 0, U64_MAX):
                assert isinstance(balance, int)
                supply += balance
        account_addresses = _check_unique(p, "accounts", "address", addrs)

    if not isinstance(contracts, _Bad):
        if len(contracts) > MAX_CONTRACTS:
            p.add("contracts", f"{len(contracts)} contracts is over the limit of {MAX_CONTRACTS}")
        caddrs: list[tuple[int, object]] = []
        for i, (address, code, balance, storage) in enumerate(contracts):
            path = _idx("contracts", i)
            if _check_bytes(p, _dot(path, "address"), address, size=ADDRESS_SIZE):
                if address in account_addresses:
                    p.add(
                        _dot(path, "address"),
                        f"same address as {_idx('accounts', account_addresses[address])}",
                    )
                caddrs.append((i, address))
            _check_bytes(p, _dot(path, "code"), code, lo=1, hi=MAX_CONTRACT_CODE_BYTES)
            if _check_int(p, _dot(path, "balance"), balance, 0, U64_MAX):
                assert isinstance(balance, int)
                supply += balance
            _check_storage(p, _dot(path, "storage"), storage)
        _check_unique(p, "contracts", "address", caddrs)

    if supply > U64_MAX:
        p.add(
            "accounts",
            f"total supply of accounts and contracts is {supply}, over the u64 maximum {U64_MAX}",
        )

    if not isinstance(permissions, _Bad):
        submit, deploy, admin = permissions
        _check_address_list(p, "permissions.submit", submit, allow_any=True)
        _check_address_list(p, "permissions.deploy", deploy, allow_any=True)
        _check_address_list(p, "permissions.admin", admin, allow_any=False)
    return time_ms


def _check_storage_bytes(p: _Problems, path: str, what: str, value: object, limit: int) -> bool:
    if value is _BAD:
        return False
    if not isinstance(value, bytes):
        p.add(path, f"{what}: expected bytes, got {type(value).__name__}")
        return False
    if not value:
        hint = "omit the key instead" if what == "value" else f"keys are 1 to {limit} bytes"
        p.add(path, f"empty {what} ({hint})")
        return False
    if len(value) > limit:
        p.add(path, f"{what} is {len(value)} bytes, over the limit of {limit}")
        return False
    return True


def _check_storage(p: _Problems, path: str, storage: object) -> None:
    if storage is _BAD:
        return
    if not _check_list(p, path, storage, MAX_STORAGE_ENTRIES):
        return
    assert isinstance(storage, tuple | list)
    seen: dict[bytes, None] = {}
    for entry in storage:
        if not isinstance(entry, tuple | list) or len(entry) != 2:
            p.add(path, f"expected (key, value) pairs, got {_short(entry)}")
            continue
        key, value = entry
        kpath = f"{path}[{_short(key.hex(), 24)}]" if isinstance(key, bytes) and key else path
        if _check_storage_bytes(p, kpath, "key", key, MAX_STORAGE_KEY_BYTES):
            assert isinstance(key, bytes)
            if key in seen:
                p.add(path, f"duplicate key {key.hex()}")
            seen[key] = None
        _check_storage_bytes(p, kpath, "value", value, MAX_STORAGE_VALUE_BYTES)


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
                (self.permissions.submit, self.permissions.deploy, self.permissions.admin)
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


# --------------------------------------------------------------------------- JSON parsing


class _DupKeyDict(dict[str, Any]):
    """A JSON object that remembers keys the file repeated (json keeps only the last)."""

    duplicate_keys: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = _DupKeyDict()
    dups: list[str] = []
    for key, value in pairs:
        if key in out:
            dups.append(key)
        out[key] = value
    if dups:
        out.duplicate_keys = tuple(dups)
    return out


def _object(
    p: _Problems,
    path: str,
    value: object,
    *,
    required: Sequence[str],
    optional: Sequence[str] = (),
) -> Mapping[str, Any] | None:
    """Check a JSON object's shape: report unknown, duplicate and missing fields."""
    if not isinstance(value, Mapping):
        p.add(path, f"expected an object, got {_json_type(value)}")
        return None
    for key in getattr(value, "duplicate_keys", ()):
        p.add(path, f"duplicate field {key!r}")
    known = (*required, *optional)
    for key in value:
        if key not in known:
            p.add(path, f"unknown field {_short(key)}")
    for key in required:
        if key not in value:
            p.add(_dot(path, key), "required field is missing")
    return value


def _get(obj: Mapping[str, Any], key: str) -> object:
    return obj.get(key, _BAD)


def _hex(p: _Problems, path: str, value: object, *, size: int | None = None) -> bytes | _Bad:
    if value is _BAD:
        return _BAD
    if not isinstance(value, str):
        p.add(path, f"expected a hex string, got {_json_type(value)}")
        return _BAD
    if _HEX_RE.fullmatch(value) is None:
        p.add(path, f"{_short(value)} is not a hex string (digits 0-9 and a-f only)")
        return _BAD
    digits = len(value) - (2 if value[:2] in ("0x", "0X") else 0)
    if digits % 2:
        if size is not None:
            p.add(
                path,
                f"expected {size} bytes ({2 * size} hex characters), got {digits} hex characters",
            )
        else:
            p.add(path, f"odd number of hex characters ({digits})")
        return _BAD
    try:
        return from_hex(value, size=size, name=path)
    except ValueError as exc:  # from_hex names the field itself
        p.items.append(str(exc))
        return _BAD


def _list(p: _Problems, path: str, value: object, max_len: int) -> list[Any] | _Bad:
    if value is _BAD:
        return _BAD
    if not isinstance(value, list):
        p.add(path, f"expected an array, got {_json_type(value)}")
        return _BAD
    if len(value) > max_len:
        p.add(path, f"{len(value)} entries is over the limit of {max_len}")
        return _BAD
    return value


def _parse_consensus(p: _Problems, value: object) -> dict[str, object]:
    if value is _BAD:
        return {}
    obj = _object(p, "consensus", value, required=(), optional=PARAM_NAMES)
    if obj is None:
        return {}
    defaults = ConsensusParams().to_value()
    return {name: obj.get(name, defaults[name]) for name in PARAM_NAMES}


def _parse_validators(p: _Problems, value: object) -> list[_ValidatorRaw] | _Bad:
    items = _list(p, "validators", value, MAX_VALIDATORS)
    if isinstance(items, _Bad):
        return _BAD
    out: list[_ValidatorRaw] = []
    for i, item in enumerate(items):
        path = _idx("validators", i)
        obj = _object(p, path, item, required=("name", "public_key"))
        if obj is None:
            out.append((_BAD, _BAD))
            continue
        key = _hex(p, _dot(path, "public_key"), _get(obj, "public_key"), size=PUBLIC_KEY_SIZE)
        out.append((_get(obj, "name"), key))
    return out


def _parse_accounts(p: _Problems, value: object) -> list[_AccountRaw] | _Bad:
    items = _list(p, "accounts", value, MAX_ACCOUNTS)
    if isinstance(items, _Bad):
        return _BAD
    out: list[_AccountRaw] = []
    for i, item in enumerate(items):
        path = _idx("accounts", i)
        obj = _object(p, path, item, required=("address", "balance"))
        if obj is None:
            out.append((_BAD, _BAD))
            continue
        address = _hex(p, _dot(path, "address"), _get(obj, "address"), size=ADDRESS_SIZE)
        out.append((address, _get(obj, "balance")))
    return out


def _parse_storage(p: _Problems, path: str, value: object) -> list[tuple[object, object]] | _Bad:
    if value is _BAD:
        return _BAD
    if not isinstance(value, Mapping):
        p.add(path, f"expected an object of hex key to hex value, got {_json_type(value)}")
        return _BAD
    for key in getattr(value, "duplicate_keys", ()):
        p.add(path, f"duplicate key {_short(key)}")
    if len(value) > MAX_STORAGE_ENTRIES:
        p.add(path, f"{len(value)} entries is over the limit of {MAX_STORAGE_ENTRIES}")
        return _BAD
    out: list[tuple[object, object]] = []
    for key_text, value_text in value.items():
        kpath = f"{path}[{_short(key_text, 24)}]"
        key = _hex(p, kpath + " (key)", key_text)
        out.append((key, _hex(p, kpath, value_text)))
    return out


def _parse_contracts(p: _Problems, value: object) -> list[_ContractRaw] | _Bad:
    items = _list(p, "contracts", value, MAX_CONTRACTS)
    if isinstance(items, _Bad):
        return _BAD
    out: list[_ContractRaw] = []
    for i, item in enumerate(items):
        path = _idx("contracts", i)
        obj = _object(p, path, item, required=("address", "code", "balance", "storage"))
        if obj is None:
            out.append((_BAD, _BAD, _BAD, _BAD))
            continue
        out.append(
            (
                _hex(p, _dot(path, "address"), _get(obj, "address"), size=ADDRESS_SIZE),
                _hex(p, _dot(path, "code"), _get(obj, "code")),
                _get(obj, "balance"),
                _parse_storage(p, _dot(path, "storage"), _get(obj, "storage")),
            )
        )
    return out


def _parse_address_list(p: _Problems, path: str, value: object, *, allow_any: bool) -> object:
    if value == ANY and allow_any:
        return None
    if isinstance(value, str):
        hint = f"{ANY!r} or a list of hex addresses" if allow_any else "a list of hex addresses"
        p.add(path, f"expected {hint}, got {_short(value)}")
        return _BAD
    items = _list(p, path, value, MAX_PERMISSION_ENTRIES)
    if isinstance(items, _Bad):
        return _BAD
    return [_hex(p, _idx(path, i), a, size=ADDRESS_SIZE) for i, a in enumerate(items)]


def _parse_permissions(p: _Problems, value: object) -> _PermissionsRaw | _Bad:
    if value is _BAD:  # omitted: the defaults
        value = {}
    obj = _object(p, "permissions", value, required=(), optional=("submit", "deploy", "admin"))
    if obj is None:
        return _BAD
    return (
        _parse_address_list(p, "permissions.submit", obj.get("submit", ANY), allow_any=True),
        _parse_address_list(p, "permissions.deploy", obj.get("deploy", ANY), allow_any=True),
        _parse_address_list(p, "permissions.admin", obj.get("admin", []), allow_any=False),
    )


_REQUIRED: Final = ("chain_id", "genesis_time", "initial_height", "validators")
_OPTIONAL: Final = ("consensus", "accounts", "contracts", "permissions")


def parse_genesis(obj: object) -> Genesis:
    """Validate the JSON form of a genesis document (already decoded) and build it.

    Raises :class:`GenesisError` listing every problem found.
    """
    if not isinstance(obj, Mapping):
        raise GenesisError(f"genesis: expected a JSON object, got {_json_type(obj)}")
    p = _Problems()
    root = _object(p, "", obj, required=_REQUIRED, optional=_OPTIONAL)
    assert root is not None
    params = _parse_consensus(p, _get(root, "consensus"))
    if params:
        _check_consensus(p, params)
    validators = _parse_validators(p, _get(root, "validators"))
    accounts = _parse_accounts(p, root.get("accounts", []))
    contracts = _parse_contracts(p, root.get("contracts", []))
    permissions = _parse_permissions(p, _get(root, "permissions"))
    _check_document(
        p,
        chain_id=_get(root, "chain_id"),
        genesis_time=_get(root, "genesis_time"),
        initial_height=_get(root, "initial_height"),
        validators=validators,
        accounts=accounts,
        contracts=contracts,
        permissions=permissions,
    )
    p.raise_if_any()
    # Everything checked: the casts below cannot fail, and the constructors re-check.
    assert not isinstance(validators, _Bad) and not isinstance(permissions, _Bad)
    assert not isinstance(accounts, _Bad) and not isinstance(contracts, _Bad)
    submit, deploy, admin = permissions
    return Genesis(
        chain_id=_as(str, root["chain_id"]),
        genesis_time=_as(str, root["genesis_time"]),
        initial_height=_as(int, root["initial_height"]),
        consensus=ConsensusParams(**{k: _as(int, v) for k, v in params.items()}),
        validators=tuple(Validator(_as(str, n), _as(bytes, k)) for n, k in validators),
        accounts=tuple(Account(_as(bytes, a), _as(int, b)) for a, b in accounts),
        contracts=tuple(
            Contract(
                _as(bytes, a),
                _as(bytes, c),
                _as(int, b),
                tuple((_as(bytes, k), _as(bytes, v)) for k, v in _as(list, s)),
            )
            for a, c, b, s in contracts
        ),
        permissions=Permissions(
            submit=None if submit is None else tuple(_as(list, submit)),
            deploy=None if deploy is None else tuple(_as(list, deploy)),
            admin=tuple(_as(list, admin)),
        ),
    )


def _as(kind: type[_T], value: object) -> _T:
    assert isinstance(value, kind), (kind, value)
    return value


# --------------------------------------------------------------------------- files


def genesis_to_json_text(genesis: Genesis) -> str:
    """Pretty JSON (indent 2, trailing newline): what :func:`dump_genesis` writes."""
    return json.dumps(genesis.to_json(), indent=2, ensure_ascii=True) + "\n"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a genesis file")


def genesis_from_json_text(text: str) -> Genesis:
    """Parse genesis JSON text (duplicate keys, NaN and Infinity are refused)."""
    try:
        obj = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise GenesisError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise GenesisError(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise GenesisError(f"genesis: expected a JSON object, got {_json_type(obj)}")
    return parse_genesis(obj)


def load_genesis(path: str | os.PathLike[str]) -> Genesis:
    """Read, parse and validate a genesis file. Every failure is a :class:`GenesisError`."""
    where = os.fspath(path)
    try:
        with open(where, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_GENESIS_FILE_BYTES:
                raise GenesisError(
                    f"{where}: genesis file is {size} bytes, over the limit of "
                    f"{MAX_GENESIS_FILE_BYTES}"
                )
            data = fh.read(MAX_GENESIS_FILE_BYTES + 1)
    except FileNotFoundError:
        raise GenesisError(f"{where}: genesis file not found") from None
    except IsADirectoryError:
        raise GenesisError(f"{where}: is a directory, not a genesis file") from None
    except PermissionError:
        raise GenesisError(f"{where}: cannot read genesis file: permission denied") from None
    except OSError as exc:
        raise GenesisError(f"{where}: cannot read genesis file: {exc.strerror or exc}") from None
    if len(data) > MAX_GENESIS_FILE_BYTES:
        raise GenesisError(
            f"{where}: genesis file is over the limit of {MAX_GENESIS_FILE_BYTES} bytes"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenesisError(
            f"{where}: not valid UTF-8 (byte offset {exc.start}: {exc.reason})"
        ) from None
    return genesis_from_json_text(text)


def dump_genesis(genesis: Genesis, path: str | os.PathLike[str]) -> None:
    """Write ``genesis`` as pretty JSON, atomically (temp file, fsync, ``os.replace``)."""
    target = Path(path)
    text = genesis_to_json_text(genesis)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
