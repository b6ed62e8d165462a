"""The JSON form of a genesis document: parsing it, and the text genesis files contain.

What it is for: :func:`parse_genesis` turns decoded JSON into a :class:`~genesis.model.Genesis`,
reporting every problem (unknown, duplicate and missing fields, bad hex, wrong types) as
``"field.path: what is wrong"``; :func:`genesis_from_json_text` and
:func:`genesis_to_json_text` go between that form and text. In the JSON form bytes are hex
strings, amounts are integers and ``"any"`` means "anyone". JSON arrays keep their order (it
can matter: validator order picks primaries); JSON objects do not, so contract storage (an
object) is held sorted by key.

What it must never do: open or write files (:mod:`genesis.document` does); decide on its
own what is valid (it reshapes JSON into raw tuples for :mod:`genesis.checks`, and the
constructors check again); or accept duplicate keys, ``NaN`` or ``Infinity``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar

from crypto.hashing import from_hex
from crypto.keys import ADDRESS_SIZE, PUBLIC_KEY_SIZE
from genesis.checks import (
    _BAD,
    ANY,
    MAX_ACCOUNTS,
    MAX_CONTRACTS,
    MAX_PERMISSION_ENTRIES,
    MAX_STORAGE_ENTRIES,
    MAX_VALIDATORS,
    PARAM_NAMES,
    ROLE_NAMES,
    GenesisError,
    _AccountRaw,
    _Bad,
    _check_consensus,
    _check_document,
    _ContractRaw,
    _dot,
    _idx,
    _json_type,
    _PermissionsRaw,
    _Problems,
    _short,
    _ValidatorRaw,
)
from genesis.model import Account, ConsensusParams, Contract, Genesis, Permissions, Validator

_HEX_RE: Final = re.compile(r"(?:0[xX])?[0-9a-fA-F]*")

_T = TypeVar("_T")


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
    known = (*ROLE_NAMES, "admin_threshold")
    obj = _object(p, "permissions", value, required=(), optional=known)
    if obj is None:
        return _BAD
    if any(key not in known for key in obj):
        p.add(
            "permissions",
            f"the roles are {', '.join(ROLE_NAMES)} (each a list of addresses; submit and "
            f"deploy may be {ANY!r}); admin_threshold is how many admins must agree",
        )
    return (
        _parse_address_list(p, "permissions.submit", obj.get("submit", ANY), allow_any=True),
        _parse_address_list(p, "permissions.deploy", obj.get("deploy", ANY), allow_any=True),
        _parse_address_list(p, "permissions.admin", obj.get("admin", []), allow_any=False),
        obj.get("admin_threshold", 1),
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
    submit, deploy, admin, threshold = permissions
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
            admin_threshold=_as(int, threshold),
        ),
    )


def _as(kind: type[_T], value: object) -> _T:
    assert isinstance(value, kind), (kind, value)
    return value


# --------------------------------------------------------------------------- text


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
