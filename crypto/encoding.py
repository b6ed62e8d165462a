"""Canonical encoding: one byte string for one value, and only one.

Everything that is signed or hashed goes through :func:`encode`. The wire format is a
strict subset of MessagePack (see docs/PROTOCOL.md, "Canonical encoding"):

* values are ``None``, ``bool``, integers in ``[-2**63, 2**64)``, ``bytes``, ``str``
  (UTF-8), lists/tuples (encoded as arrays) and dicts with ``str`` keys;
* integers use the shortest MessagePack form, ``bytes`` use the ``bin`` family and
  ``str`` the ``str`` family, both with the shortest length prefix;
* map keys are sorted by their UTF-8 bytes and appear once;
* floats, extension types and timestamps do not exist here.

:func:`decode` accepts exactly the bytes :func:`encode` would produce: it decodes with
hard size limits, then re-encodes and compares, so any other spelling of a value
(a long-form integer, unsorted or duplicate map keys, a ``str`` where ``bin`` belongs,
trailing bytes) is rejected with :class:`DecodeError`.

House rule: never ``pickle``, never ``json`` for signed bytes, never iterate a set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgpack

#: Version of the canonical encoding rules described above. Typed records carry their own
#: record version as well (see :func:`encode_record`).
ENCODING_VERSION: Final = 1

#: Hard cap on any single encoded document. Larger inputs are refused before parsing.
MAX_ENCODED_BYTES: Final = 16 * 1024 * 1024
#: Cap on nesting depth: protects the decoder's recursion and memory.
MAX_DEPTH: Final = 32

_U64_MAX: Final = 2**64 - 1
_I64_MIN: Final = -(2**63)

Value = Any  # None | bool | int | bytes | str | list[Value] | dict[str, Value]


class EncodingError(ValueError):
    """A value that has no canonical encoding (a float, a huge int, a set, ...). Our bug."""


class DecodeError(ValueError):
    """Bytes that are not the canonical encoding of a value. Usually a peer's fault."""


def _check(value: Value, depth: int) -> Value:
    """Validate and normalise a value tree for packing (tuples become lists, maps sorted)."""
    kind = type(value)
    # Exact-type fast paths first: this walk runs for every signed or hashed value.
    if kind is bytes or kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if not _I64_MIN <= value <= _U64_MAX:
            raise EncodingError(f"integer {value} is outside [-2**63, 2**64)")
        return value
    if depth >= MAX_DEPTH and value:
        raise EncodingError(f"value nested deeper than {MAX_DEPTH} levels")
    if kind is list or kind is tuple:
        return [_check(v, depth + 1) for v in value]
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return _check(int(value), depth)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, list | tuple):
        return [_check(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodingError(f"map key {key!r} is not a str")
            try:
                key_bytes = key.encode("utf-8")
            except UnicodeEncodeError:
                raise EncodingError(f"map key {key!r} is not valid UTF-8 text") from None
            items.append((key_bytes, key, _check(item, depth + 1)))
        items.sort(key=lambda kv: kv[0])
        return {key: item for _, key, item in items}
    raise EncodingError(f"type {type(value).__name__} has no canonical encoding")


_SCALARS: Final = (bytes, str, int, bool, type(None))


def _check_decoded(value: Value, depth: int) -> None:
    """What re-packing cannot see in a freshly decoded value: floats, timestamps and other
    foreign types, map key order, nesting depth."""
    kind = type(value)
    if kind is list:
        if depth >= MAX_DEPTH and value:
            raise DecodeError(f"value nested deeper than {MAX_DEPTH} levels")
        for item in value:
            if type(item) not in _SCALARS:
                _check_decoded(item, depth + 1)
    elif kind is dict:
        if depth >= MAX_DEPTH and value:
            raise DecodeError(f"value nested deeper than {MAX_DEPTH} levels")
        keys = []
        for key in value:
            if type(key) is not str:
                raise DecodeError(f"map key {key!r} is not a str")
            keys.append(key.encode("utf-8"))
        if keys != sorted(keys):
            raise DecodeError("non-canonical encoding (map keys are not sorted)")
        for item in value.values():
            if type(item) not in _SCALARS:
                _check_decoded(item, depth + 1)
    elif kind is float:
        raise DecodeError("floats are not allowed")
    elif kind not in _SCALARS:
        raise DecodeError(f"{kind.__name__} values are not allowed")


_packer_opts: Final = {"use_bin_type": True, "strict_types": False, "datetime": False}


def encode(value: Value) -> bytes:
    """Return the one canonical encoding of ``value``."""
    try:
        data: bytes = msgpack.packb(_check(value, 0), **_packer_opts)
    except UnicodeEncodeError as exc:  # a str holding lone surrogates
        raise EncodingError(f"string is not valid UTF-8 text: {exc.reason}") from None
    if len(data) > MAX_ENCODED_BYTES:
        raise EncodingError(f"encoded value is {len(data)} bytes, over {MAX_ENCODED_BYTES}")
    return data


def _refuse_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(data: bytes, *, max_bytes: int = MAX_ENCODED_BYTES) -> Value:
    """Decode canonical bytes, or raise :class:`DecodeError` saying what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"input is {len(data)} bytes, over the limit of {max_bytes}")
    if not data:
        raise DecodeError("input is empty")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            timestamp=0,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError(f"{len(exc.extra)} trailing bytes after the value") from None
    except (ValueError, msgpack.UnpackException, RecursionError) as exc:
        raise DecodeError(f"malformed encoding: {str(exc) or type(exc).__name__}") from None
    _check_decoded(value, 0)
    # Unpacked values hold exact types only, so packing them directly gives the canonical
    # bytes exactly when the input was canonical (shortest ints and lengths, bin vs str).
    try:
        again = msgpack.packb(value, **_packer_opts)
    except (ValueError, OverflowError, UnicodeEncodeError) as exc:
        raise DecodeError(f"malformed encoding: {exc}") from None
    if again != data:
        raise DecodeError("non-canonical encoding (the value has a shorter or sorted form)")
    return value


def encode_record(tag: str, version: int, fields: Sequence[Value]) -> bytes:
    """Encode a typed record as ``[tag, version, *fields]``."""
    return encode([tag, version, *fields])


def decode_record(
    data: bytes, tag: str, version: int, field_count: int, *, max_bytes: int = MAX_ENCODED_BYTES
) -> list[Value]:
    """Decode a record written by :func:`encode_record`; return its fields."""
    value = decode(data, max_bytes=max_bytes)
    return record_fields(value, tag, version, field_count)


def record_fields(value: Value, tag: str, version: int, field_count: int) -> list[Value]:
    """Check that an already-decoded value is a ``tag`` record and return its fields."""
    if not isinstance(value, list) or len(value) < 2:
        raise DecodeError(f"expected a {tag!r} record")
    if value[0] != tag:
        raise DecodeError(f"expected a {tag!r} record, got {value[0]!r}")
    if isinstance(value[1], bool) or value[1] != version:  # True == 1, but is not 1
        raise DecodeError(f"unsupported {tag!r} record version {value[1]!r} (want {version})")
    if len(value) != 2 + field_count:
        raise DecodeError(f"{tag!r} record has {len(value) - 2} fields, expected {field_count}")
    return value[2:]


# Field readers used by the record decoders: each raises DecodeError naming the field.


def as_int(value: Value, name: str, *, lo: int = 0, hi: int = _U64_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{name}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"{name}: {value} is outside [{lo}, {hi}]")
    return value


def as_bytes(
    value: Value, name: str, *, size: int | None = None, max_size: int | None = None
) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{name}: expected bytes, got {type(value).__name__}")
    if size is not None and len(value) != size:
        raise DecodeError(f"{name}: expected {size} bytes, got {len(value)}")
    if max_size is not None and len(value) > max_size:
        raise DecodeError(f"{name}: {len(value)} bytes is over the limit of {max_size}")
    return value


def as_str(value: Value, name: str, *, max_size: int = 256) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{name}: expected a string, got {type(value).__name__}")
    if len(value.encode("utf-8")) > max_size:
        raise DecodeError(f"{name}: longer than {max_size} bytes")
    return value


def as_list(value: Value, name: str, *, max_len: int) -> list[Value]:
    if not isinstance(value, list):
        raise DecodeError(f"{name}: expected a list, got {type(value).__name__}")
    if len(value) > max_len:
        raise DecodeError(f"{name}: {len(value)} items is over the limit of {max_len}")
    return value


def as_optional_bytes(value: Value, name: str, *, size: int) -> bytes | None:
    return None if value is None else as_bytes(value, name, size=size)
