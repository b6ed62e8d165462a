"""The ABI: typed command-line arguments, result formatting, stack conversion."""

from __future__ import annotations

import json

import pytest

from contracts.abi import (
    AbiError,
    AbiType,
    ContractAbi,
    MethodAbi,
    Param,
    args_to_stack,
    format_return,
    format_value,
    from_stack,
    parse_cli_args,
    stack_value_fits,
)
from contracts.examples import load
from contracts.validate import validate_code

TRANSFER = MethodAbi(
    "transfer", (Param("to", AbiType.ADDRESS), Param("amount", AbiType.U64)), AbiType.U64, 0
)
MIXED = MethodAbi("m", (Param("note", AbiType.STR), Param("blob", AbiType.BYTES)), None, 0)
VARIADIC = MethodAbi(
    "v", (Param("k", AbiType.U64), Param("who", AbiType.ADDRESS)), None, 0, variadic=True
)
ADDRESS_HEX = "ab" * 20


def test_cli_transfer_address_250() -> None:
    assert parse_cli_args(TRANSFER, [ADDRESS_HEX, "250"]) == (bytes.fromhex(ADDRESS_HEX), 250)
    assert parse_cli_args(TRANSFER, ["0x" + ADDRESS_HEX, "0"]) == (bytes.fromhex(ADDRESS_HEX), 0)


def test_cli_str_and_bytes() -> None:
    assert parse_cli_args(MIXED, ["hello world", "0x00ff"]) == ("hello world", b"\x00\xff")
    assert parse_cli_args(MIXED, ["", ""]) == ("", b"")


def test_cli_variadic() -> None:
    assert parse_cli_args(VARIADIC, ["2"]) == (2,)
    assert parse_cli_args(VARIADIC, ["2", ADDRESS_HEX, ADDRESS_HEX]) == (
        2,
        bytes.fromhex(ADDRESS_HEX),
        bytes.fromhex(ADDRESS_HEX),
    )
    with pytest.raises(AbiError, match="at least 1"):
        parse_cli_args(VARIADIC, [])
    with pytest.raises(AbiError, match=r"argument who\[1\]"):
        parse_cli_args(VARIADIC, ["2", ADDRESS_HEX, "zz"])


@pytest.mark.parametrize(
    ("words", "message"),
    [
        ([ADDRESS_HEX], "takes 2 arguments, got 1"),
        (["abcd", "1"], "argument to: expected 20 bytes"),
        ([ADDRESS_HEX, "-1"], "argument amount: '-1' is not a decimal integer"),
        ([ADDRESS_HEX, "1.5"], "not a decimal integer"),
        ([ADDRESS_HEX, "٣"], "not a decimal integer"),
        ([ADDRESS_HEX, str(2**64)], "expected a u64"),
        (["xyz", "1"], "not valid hex"),
    ],
)
def test_cli_errors(words: list[str], message: str) -> None:
    with pytest.raises(AbiError, match=message):
        parse_cli_args(TRANSFER, words)


def test_cli_oversized_bytes() -> None:
    with pytest.raises(AbiError, match="over the limit"):
        parse_cli_args(MIXED, ["x" * 4097, ""])


def test_format_return_and_values() -> None:
    assert format_return(250, AbiType.U64) == 250
    assert format_return(b"\x01\x02", AbiType.BYTES) == "0102"
    assert format_return(bytes(20), AbiType.ADDRESS) == "00" * 20
    assert format_return("hi", AbiType.STR) == "hi"
    assert format_return(None, None) is None
    assert format_value(b"\xff") == "ff" and format_value(7) == 7
    json.dumps([format_return(b"\x00", AbiType.BYTES), format_value(2**64 - 1)])


def test_stack_conversion() -> None:
    assert args_to_stack(MIXED, ["é", b"x"]) == ("é".encode(), b"x")
    assert from_stack("é".encode(), AbiType.STR) == "é"
    assert stack_value_fits(b"\xff", AbiType.BYTES)
    assert not stack_value_fits(b"\xff", AbiType.STR)
    assert not stack_value_fits(5, AbiType.BYTES)
    assert not stack_value_fits(b"", AbiType.U64)
    assert not stack_value_fits(bytes(19), AbiType.ADDRESS)
    with pytest.raises(AbiError, match="expected a string"):
        args_to_stack(MIXED, [b"not str", b""])
    with pytest.raises(AbiError, match="expected a u64"):
        args_to_stack(TRANSFER, [bytes(20), True])
    with pytest.raises(AbiError, match="an address is 20 bytes"):
        args_to_stack(TRANSFER, [bytes(19), 1])
    with pytest.raises(AbiError, match="not valid UTF-8"):
        args_to_stack(MIXED, ["\ud800", b""])


def test_abi_value_round_trip_and_describe() -> None:
    abi = validate_code(load("vote")).abi
    assert ContractAbi.from_value(abi.to_value()) == abi
    described = abi.describe()
    json.dumps(described)
    ctor = described["constructor"]
    assert (
        isinstance(ctor, dict) and ctor["signature"] == "constructor(k: u64, members: address...)"
    )
    names = [m["name"] for m in described["methods"]]  # type: ignore[attr-defined]
    assert names == sorted(names) and "approve" in names
