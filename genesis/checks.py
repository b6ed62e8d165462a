"""Genesis validation: the limits, the error, and every field check.

What it is for: one place that knows what a valid genesis document is. Each check takes
field values that may be ``_BAD`` (already reported by the JSON parser: skip silently) or of
a wrong type (reported here), so the JSON parser (:mod:`genesis.jsonform`) and the
constructors (:mod:`genesis.model`) hold every document to one standard. Problems are
collected as ``"field.path: what is wrong"`` into a :class:`_Problems`, and
:meth:`_Problems.raise_if_any` raises one :class:`GenesisError` carrying them all.

What it must never do: build documents, read JSON or touch files; stop at the first
problem (a check reports and returns, only ``raise_if_any`` raises); or import
``genesis.model``, ``genesis.jsonform`` or ``genesis.document`` (it is their bottom layer).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from crypto.encoding import MAX_ENCODED_BYTES
from crypto.keys import (
    ADDRESS_SIZE,
    PUBLIC_KEY_SIZE,
    InvalidKeyError,
    check_public_key,
    valid_chain_id,
)

# --------------------------------------------------------------------------- limits

#: The roles of ``permissions`` (each a list of accounts, submit and deploy also ``"any"``).
ROLE_NAMES: Final = ("submit", "deploy", "admin")
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
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)

ANY: Final = "any"


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


PARAM_NAMES: Final = tuple(_PARAM_RANGES)


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


# --------------------------------------------------------------------------- document checks

# Raw entries handed to the checker: tuples of field values, each possibly _BAD.
_ValidatorRaw = tuple[object, object]
_AccountRaw = tuple[object, object]
_ContractRaw = tuple[object, object, object, object]
_PermissionsRaw = tuple[object, object, object, object]


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
        submit, deploy, admin, threshold = permissions
        _check_address_list(p, "permissions.submit", submit, allow_any=True)
        _check_address_list(p, "permissions.deploy", deploy, allow_any=True)
        _check_address_list(p, "permissions.admin", admin, allow_any=False)
        _check_admin_threshold(p, threshold, admin)
    return time_ms


def _check_admin_threshold(p: _Problems, threshold: object, admin: object) -> None:
    """k of the m admins: 1 <= k <= m (k = 1 when there are no admins: nobody administers)."""
    path = "permissions.admin_threshold"
    if not _check_int(p, path, threshold, 1, MAX_PERMISSION_ENTRIES):
        return
    assert isinstance(threshold, int)
    if isinstance(admin, tuple | list) and threshold > max(1, len(admin)):
        p.add(
            path,
            f"{threshold} is more than the {len(admin)} admins listed in permissions.admin "
            "(a role change needs this many distinct admins' votes: it could never pass)",
        )


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
