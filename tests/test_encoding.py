"""Canonical encoding: round trips, determinism, and refusal of every other spelling.

The contract under test (crypto/encoding.py): one value has exactly one encoding, and
:func:`decode` accepts exactly the bytes :func:`encode` produces, raising
:class:`DecodeError` for anything else — whatever the bytes.
"""

from __future__ import annotations

import random
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.encoding import (
    MAX_DEPTH,
    MAX_ENCODED_BYTES,
    DecodeError,
    EncodingError,
    as_bytes,
    as_int,
    as_list,
    as_optional_bytes,
    as_str,
    decode,
    decode_record,
    encode,
    encode_record,
    record_fields,
)

# --- strategies and helpers -------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)

values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=6).map(tuple)
        | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=30,
)


def normalise(value: Any) -> Any:
    """What decode(encode(value)) should give: tuples become lists."""
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def same(a: Any, b: Any) -> bool:
    """Equality that also compares types (so True is not 1 and b'a' is not 'a')."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def shuffled_maps(value: Any, rng: random.Random) -> Any:
    """The same value with every dict rebuilt in a random insertion order."""
    if isinstance(value, list | tuple):
        return [shuffled_maps(v, rng) for v in value]
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled_maps(v, rng) for k, v in items}
    return value


def nest(depth: int) -> list[Any]:
    """An empty list wrapped in ``depth`` more lists."""
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert isinstance(data, bytes)
    assert same(decode(data), normalise(value))
    assert encode(decode(data)) == data


@settings(max_examples=100, deadline=None)
@given(values, st.randoms(use_true_random=False))
def test_encoding_ignores_dict_insertion_order(value: Any, rng: random.Random) -> None:
    assert encode(shuffled_maps(value, rng)) == encode(value)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.integers(0, 9), min_size=2, max_size=8))
def test_decoded_map_keys_are_sorted_by_utf8_bytes(value: dict[str, int]) -> None:
    decoded = decode(encode(value))
    keys = [k.encode("utf-8") for k in decoded]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("value", "hex_"),
    [
        (None, "c0"),
        (False, "c2"),
        (True, "c3"),
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (255, "ccff"),
        (256, "cd0100"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-32, "e0"),
        (-33, "d0df"),
        (-129, "d1ff7f"),
        (-(2**63), "d38000000000000000"),
        (b"", "c400"),
        (b"ab", "c4026162"),
        ("", "a0"),
        ("ab", "a26162"),
        ("é", "a2c3a9"),
        ([], "90"),
        ((1, 2), "920102"),
        ({}, "80"),
        # Keys in UTF-8 byte order: "a" < "aa" < "b" < "z" < "é" (0xc3 0xa9).
        ({"b": 1, "é": 4, "z": 5, "aa": 2, "a": 3}, "85a16103a2616102a16201a17a05a2c3a904"),
    ],
)
def test_known_encodings(value: Any, hex_: str) -> None:
    assert encode(value).hex() == hex_
    assert same(decode(bytes.fromhex(hex_)), normalise(value))


def test_bool_and_int_stay_distinct() -> None:
    assert encode(True) != encode(1)
    assert decode(encode(True)) is True
    assert type(decode(encode(1))) is int


def test_bytes_like_inputs_encode_as_bytes() -> None:
    assert encode(bytearray(b"xy")) == encode(b"xy") == encode(memoryview(b"xy"))
    assert decode(bytearray(encode(b"xy"))) == b"xy"  # type: ignore[arg-type]
    assert decode(memoryview(encode([1]))) == [1]  # type: ignore[arg-type]


def test_depth_limit_is_the_same_for_encode_and_decode() -> None:
    deepest = nest(MAX_DEPTH)
    data = encode(deepest)
    assert data == b"\x91" * MAX_DEPTH + b"\x90"
    assert decode(data) == deepest
    with pytest.raises(EncodingError, match="nested deeper"):
        encode(nest(MAX_DEPTH + 1))
    with pytest.raises(DecodeError, match="nested deeper"):
        decode(b"\x91" * (MAX_DEPTH + 1) + b"\x90")
    # Far deeper than the limit, and through maps too: still a clean DecodeError.
    with pytest.raises(DecodeError):
        decode(b"\x91" * 5000 + b"\xc0")
    with pytest.raises(DecodeError):
        decode(b"\x81\xa1k" * (MAX_DEPTH + 1) + b"\xc0")


# --- values with no canonical encoding --------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        0.0,
        float("nan"),
        2**64,
        -(2**63) - 1,
        {1: "int key"},
        {b"k": "bytes key"},
        {None: 1},
        {1, 2},
        frozenset(),
        object(),
        [1, [2, [3.0]]],
        {"ok": {"nested": 1.0}},
        "\ud800",  # a lone surrogate is not text
        {"\udfff": 1},
    ],
)
def test_encode_refuses(value: Any) -> None:
    with pytest.raises(EncodingError):
        encode(value)


def test_encode_refuses_oversize_output() -> None:
    with pytest.raises(EncodingError, match="over"):
        encode(bytes(MAX_ENCODED_BYTES))


def test_errors_are_value_errors() -> None:
    assert issubclass(EncodingError, ValueError)
    assert issubclass(DecodeError, ValueError)


# --- bytes that are not a canonical encoding --------------------------------------------------


@pytest.mark.parametrize(
    ("hex_", "why"),
    [
        # integers in a longer form than needed
        ("cc01", "uint8 for a fixint"),
        ("cd0001", "uint16 for a fixint"),
        ("cd00ff", "uint16 for a uint8"),
        ("ce00000001", "uint32 for a fixint"),
        ("cf0000000000000001", "uint64 for a fixint"),
        ("d001", "int8 for a positive fixint"),
        ("d07f", "int8 for 127"),
        ("d0ff", "int8 for -1"),
        ("d1ffff", "int16 for -1"),
        ("d10080", "int16 for 128"),
        ("d2ffffffff", "int32 for -1"),
        ("d3ffffffffffffffff", "int64 for -1"),
        ("d30000000000000001", "int64 for 1"),
        # strings, bytes and containers with a longer length prefix than needed
        ("d90161", "str8 where fixstr fits"),
        ("da000161", "str16 where fixstr fits"),
        ("db0000000161", "str32 where fixstr fits"),
        ("c5000161", "bin16 where bin8 fits"),
        ("c600000001 61", "bin32 where bin8 fits"),
        ("dc000101", "array16 where fixarray fits"),
        ("dd0000000101", "array32 where fixarray fits"),
        ("de0001a16101", "map16 where fixmap fits"),
        ("df00000001a16101", "map32 where fixmap fits"),
        # maps
        ("82a16201a16102", "keys out of order"),
        ("82a16101a16102", "duplicate key"),
        ("82a2616101a16102", "longer key first"),
        ("81c4016101", "bin map key"),
        ("810101", "int map key"),
        ("81c001", "nil map key"),
        ("819001", "array map key"),
        # floats, anywhere
        ("cb0000000000000000", "float64"),
        ("cb3ff0000000000000", "float64 1.0"),
        ("ca00000000", "float32"),
        ("ca3f800000", "float32 1.0"),
        ("91cb3ff0000000000000", "float in a list"),
        ("81a161ca3f800000", "float as a map value"),
        # extension types, including msgpack's timestamp (type -1)
        ("d40100", "fixext1"),
        ("d5010000", "fixext2"),
        ("c7010500", "ext8"),
        ("d6ff00000001", "timestamp32"),
        ("d7ff0000000000000001", "timestamp64"),
        ("c703ff000000", "malformed timestamp"),
        ("91d40100", "ext in a list"),
        # not msgpack at all, or cut short
        ("c1", "reserved byte"),
        ("a2 61", "truncated str"),
        ("92 01", "truncated array"),
        ("cd01", "truncated uint16"),
        ("a1ff", "invalid UTF-8"),
        ("a3eda080", "UTF-8-encoded surrogate"),
        ("ddffffffff", "array claiming 4 billion items"),
        ("dbffffffff", "str claiming 4 GiB"),
        ("c6ffffffff", "bin claiming 4 GiB"),
        # trailing bytes
        ("0102", "two values"),
        ("c000", "trailing zero"),
        ("90c0", "value after a list"),
    ],
)
def test_decode_refuses(hex_: str, why: str) -> None:
    data = bytes.fromhex(hex_.replace(" ", ""))
    with pytest.raises(DecodeError):
        decode(data)


def test_decode_messages_say_what_is_wrong() -> None:
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(b"\x01\x02")
    with pytest.raises(DecodeError, match="non-canonical"):
        decode(b"\xcc\x01")
    with pytest.raises(DecodeError, match="floats"):
        decode(b"\xcb" + bytes(8))
    with pytest.raises(DecodeError, match="extension type 1"):
        decode(b"\xd4\x01\x00")
    with pytest.raises(DecodeError, match="empty"):
        decode(b"")
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("c0")  # type: ignore[arg-type]
    with pytest.raises(DecodeError, match=r"malformed encoding: \S"):
        decode(b"\xc1")  # the message names the problem even when msgpack's is blank


@pytest.mark.parametrize("not_bytes", ["c0", 0, None, [0xC0], 1.0])
def test_decode_refuses_non_bytes(not_bytes: Any) -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode(not_bytes)


def test_decode_size_limit() -> None:
    data = encode(b"12345")  # 7 bytes
    assert decode(data, max_bytes=7) == b"12345"
    with pytest.raises(DecodeError, match="over the limit of 6"):
        decode(data, max_bytes=6)
    with pytest.raises(DecodeError, match="over the limit"):
        decode(b"\x00" * (MAX_ENCODED_BYTES + 1))


def test_non_canonical_spellings_of_every_round_trip_value_are_refused() -> None:
    # Re-pack values the lax way msgpack allows (floats for ints would change the type;
    # here: unsorted keys) and check decode notices.
    value = {"b": 1, "a": 2}
    lax = msgpack.packb(value, use_bin_type=True)  # keeps insertion order: b, a
    assert lax != encode(value)
    with pytest.raises(DecodeError, match="non-canonical"):
        decode(lax)


# --- fuzzing ----------------------------------------------------------------------------------


def _decode_or_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


@settings(max_examples=1500, deadline=None)
@given(st.binary(max_size=48))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_error(data)


@settings(max_examples=250, deadline=None)
@given(values, st.data())
def test_fuzz_mutated_encodings(value: Any, draw: st.DataObject) -> None:
    data = bytearray(encode(value))
    kind = draw.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    at = draw.draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        data[at] ^= draw.draw(st.integers(1, 255))
    elif kind == "insert":
        data.insert(at, draw.draw(st.integers(0, 255)))
    elif kind == "delete":
        del data[at]
    else:
        del data[at:]
    _decode_or_error(bytes(data))


# --- records ----------------------------------------------------------------------------------


def test_record_round_trip() -> None:
    data = encode_record("transfer", 2, [b"\x01" * 20, 5, None])
    assert data == encode(["transfer", 2, b"\x01" * 20, 5, None])
    assert decode_record(data, "transfer", 2, 3) == [b"\x01" * 20, 5, None]
    assert record_fields(decode(data), "transfer", 2, 3) == [b"\x01" * 20, 5, None]


def test_record_with_no_fields() -> None:
    assert decode_record(encode_record("ping", 1, []), "ping", 1, 0) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["other", 1, 0], "expected a 'tx' record, got 'other'"),
        (["tx", 2, 0], "unsupported 'tx' record version 2"),
        (["tx", 1], "'tx' record has 0 fields, expected 1"),
        (["tx", 1, 0, 0], "'tx' record has 2 fields, expected 1"),
        (["tx"], "expected a 'tx' record"),
        ({"tx": 1}, "expected a 'tx' record"),
        ("tx", "expected a 'tx' record"),
        ([b"tx", 1, 0], "expected a 'tx' record"),
    ],
)
def test_record_mismatches(value: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        record_fields(value, "tx", 1, 1)
    with pytest.raises(DecodeError):
        decode_record(encode(value), "tx", 1, 1)


def test_record_version_true_is_not_version_1() -> None:
    # True == 1 in Python; a record must not pass a version check with a bool.
    with pytest.raises(DecodeError):
        record_fields(["tx", True, 0], "tx", 1, 1)


def test_decode_record_checks_canonical_form_and_size() -> None:
    data = encode_record("tx", 1, [b"x" * 100])
    with pytest.raises(DecodeError, match="over the limit"):
        decode_record(data, "tx", 1, 1, max_bytes=50)
    with pytest.raises(DecodeError):
        decode_record(data + b"\x00", "tx", 1, 1)


# --- field readers ----------------------------------------------------------------------------


def test_as_int() -> None:
    assert as_int(0, "n") == 0
    assert as_int(2**64 - 1, "n") == 2**64 - 1
    assert as_int(-5, "n", lo=-10) == -5
    assert as_int(7, "n", lo=7, hi=7) == 7
    with pytest.raises(DecodeError, match="nonce: expected an integer, got bool"):
        as_int(True, "nonce")
    with pytest.raises(DecodeError, match="nonce: expected an integer, got bytes"):
        as_int(b"\x01", "nonce")
    with pytest.raises(DecodeError, match=r"nonce: -1 is outside \[0, "):
        as_int(-1, "nonce")
    with pytest.raises(DecodeError, match=r"height: 11 is outside \[0, 10\]"):
        as_int(11, "height", hi=10)
    with pytest.raises(DecodeError, match=r"height: 4 is outside \[5, 10\]"):
        as_int(4, "height", lo=5, hi=10)


def test_as_bytes() -> None:
    assert as_bytes(b"abc", "data") == b"abc"
    assert as_bytes(b"abc", "data", size=3) == b"abc"
    assert as_bytes(b"abc", "data", max_size=3) == b"abc"
    with pytest.raises(DecodeError, match="sender: expected bytes, got str"):
        as_bytes("abc", "sender")
    with pytest.raises(DecodeError, match="sender: expected bytes, got bytearray"):
        as_bytes(bytearray(b"abc"), "sender")
    with pytest.raises(DecodeError, match="sender: expected 32 bytes, got 3"):
        as_bytes(b"abc", "sender", size=32)
    with pytest.raises(DecodeError, match="payload: 4 bytes is over the limit of 3"):
        as_bytes(b"abcd", "payload", max_size=3)


def test_as_str() -> None:
    assert as_str("hello", "name") == "hello"
    assert as_str("é" * 128, "name") == "é" * 128  # 256 UTF-8 bytes: at the limit
    with pytest.raises(DecodeError, match="name: longer than 256 bytes"):
        as_str("é" * 129, "name")  # 129 characters, 258 bytes
    with pytest.raises(DecodeError, match="name: longer than 4 bytes"):
        as_str("abcde", "name", max_size=4)
    with pytest.raises(DecodeError, match="name: expected a string, got bytes"):
        as_str(b"abc", "name")


def test_as_list() -> None:
    assert as_list([1, 2], "items", max_len=2) == [1, 2]
    with pytest.raises(DecodeError, match="items: 3 items is over the limit of 2"):
        as_list([1, 2, 3], "items", max_len=2)
    with pytest.raises(DecodeError, match="items: expected a list, got tuple"):
        as_list((1,), "items", max_len=2)
    with pytest.raises(DecodeError, match="items: expected a list, got dict"):
        as_list({}, "items", max_len=2)


def test_as_optional_bytes() -> None:
    assert as_optional_bytes(None, "to", size=20) is None
    assert as_optional_bytes(b"\x00" * 20, "to", size=20) == b"\x00" * 20
    with pytest.raises(DecodeError, match="to: expected 20 bytes, got 19"):
        as_optional_bytes(b"\x00" * 19, "to", size=20)
    with pytest.raises(DecodeError, match="to: expected bytes, got int"):
        as_optional_bytes(0, "to", size=20)
