"""The deploy-time validator: every check, and CodeError as the only failure on any input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.abi import AbiType, ContractAbi, MethodAbi, Param
from contracts.assembler import assemble
from contracts.container import HEADER_BYTES, MAGIC, MAX_CONTAINER_BYTES, build_container
from contracts.examples import EXAMPLES, load
from contracts.limits import MAX_BYTES_LENGTH, MAX_CODE_BYTES
from contracts.opcodes import OPCODES, Op
from contracts.validate import CodeCache, CodeError, encode_instruction, validate_code
from crypto.encoding import encode
from tests.contracts.vm_support import random_containers

MAIN = MethodAbi("main", (), None, 0)
HALT = bytes([Op.HALT])


def container(code: bytes, methods: tuple[MethodAbi, ...] = (MAIN,)) -> bytes:
    return build_container(ContractAbi(methods), code)


def raw_container(abi_value: object, code: bytes = HALT, version: int = 1) -> bytes:
    abi = encode(abi_value)
    return MAGIC + bytes([version]) + len(abi).to_bytes(2, "big") + abi + code


def test_examples_validate() -> None:
    for name in EXAMPLES:
        validated = validate_code(load(name))
        assert validated.instructions[0].pc == 0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no QVM header"),
        (b"QVX\x01\x00\x00\x00", "no QVM header"),
        (raw_container(ContractAbi((MAIN,)).to_value(), version=2), "unsupported code version 2"),
        (MAGIC + b"\x01\xff\xff" + HALT, "ABI section is 65535 bytes"),
        (MAGIC + b"\x01\x00\x10" + HALT, "runs past the end"),
        (raw_container(ContractAbi((MAIN,)).to_value(), code=b""), "code section is 0 bytes"),
        (raw_container(["abi", 1, [], None, 5]), "bad ABI section"),
        (
            raw_container(["abi", 1, [["main", [], None, 0, False, False, False]] * 2, None]),
            "sorted",
        ),
        (
            raw_container(
                [
                    "abi",
                    1,
                    [
                        ["b", [], None, 0, False, False, False],
                        ["a", [], None, 0, False, False, False],
                    ],
                    None,
                ]
            ),
            "sorted",
        ),
        (
            raw_container(["abi", 1, [["1x", [], None, 0, False, False, False]], None]),
            "not an identifier",
        ),
        (
            raw_container(
                ["abi", 1, [["m", [["a", "float"]], None, 0, False, False, False]], None]
            ),
            "unknown type",
        ),
        (
            raw_container(
                [
                    "abi",
                    1,
                    [["m", [["a", "u64"], ["a", "u64"]], None, 0, False, False, False]],
                    None,
                ]
            ),
            "distinct",
        ),
        (
            raw_container(["abi", 1, [["m", [], None, 0, True, True, False]], None]),
            "cannot accept value",
        ),
        (
            raw_container(["abi", 1, [["m", [], None, 0, False, False, True]], None]),
            "needs a parameter",
        ),
        (raw_container(["abi", 1, [["m", [], None, 0, 1, False, False]], None]), "true or false"),
        (
            raw_container(["abi", 1, [["constructor", [], None, 0, False, False, False]], None]),
            "reserved",
        ),
        (raw_container(["abi", 1, [], [[], 0]]), "constructor"),
        (b"\x00" * (MAX_CONTAINER_BYTES + 1), "over the limit"),
    ],
)
def test_container_and_abi_errors(raw: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        validate_code(raw)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (bytes([0xEE]), "pc 0: unknown opcode 0xee"),
        (bytes([Op.PUSHINT, 0, 0]), "immediate runs past the end"),
        (bytes([Op.PUSHBYTES, 0, 5, 1, 2]), "pushbytes data runs past the end"),
        (bytes([Op.PUSHBYTES]) + (MAX_BYTES_LENGTH + 1).to_bytes(2, "big"), "over the limit"),
        (bytes([Op.SWAP, 0]) + HALT, r"swap 0 is outside \[1, 255\]"),
        (bytes([Op.LOAD, 32]) + HALT, r"load 32 is outside \[0, 31\]"),
        (bytes([Op.EMIT, 17]) + HALT, r"emit 17 is outside \[0, 16\]"),
        (bytes([Op.JUMP, 0, 1]) + HALT, "target 1 is not an instruction start"),
        (bytes([Op.JZ, 0, 200]) + HALT, "target 200 is not an instruction start"),
        (bytes([Op.PUSHINT]) + bytes(8), "falls through past the end"),
        (bytes([Op.JNZ, 0, 0]), "falls through past the end"),
        (HALT + bytes([Op.CALLSUB, 0, 0]), "ends with callsub"),
    ],
)
def test_code_section_errors(code: bytes, message: str) -> None:
    with pytest.raises(CodeError, match=message):
        validate_code(container(code))


def test_method_entry_must_be_an_instruction_start() -> None:
    code = encode_instruction(OPCODES[Op.PUSHINT], 1) + HALT
    with pytest.raises(CodeError, match="entry 3 is not an instruction start"):
        validate_code(container(code, (MethodAbi("main", (), None, 3),)))
    with pytest.raises(CodeError, match="entry 10 is not"):
        validate_code(container(code, (MethodAbi("main", (), None, 10),)))


def test_code_size_limit() -> None:
    with pytest.raises(ValueError, match="code section"):
        container(bytes([Op.POP]) * MAX_CODE_BYTES + HALT)
    biggest = bytes([Op.POP]) * (MAX_CODE_BYTES - 1) + HALT
    assert len(validate_code(container(biggest)).instructions) == MAX_CODE_BYTES


def test_non_bytes_input_is_a_code_error() -> None:
    with pytest.raises(CodeError):
        validate_code("QVM")  # type: ignore[arg-type]


def test_code_hash_and_method_lookup() -> None:
    raw = assemble('.method f(a: u64, b: bytes) -> str readonly\n push "x"\n return')
    validated = validate_code(raw)
    method = validated.abi.method("f")
    assert method is not None
    assert method.params == (Param("a", AbiType.U64), Param("b", AbiType.BYTES))
    assert method.read_only and method.returns is AbiType.STR
    assert validated.abi.method("g") is None
    assert len(validated.code_hash) == 32


def test_code_cache_is_bounded_by_bytes() -> None:
    cache: CodeCache[int] = CodeCache(capacity_bytes=100)
    for i in range(10):
        cache.put(bytes([i]), i, 30)
    assert len(cache) == 3
    assert cache.get(bytes([9])) == 9 and cache.get(bytes([0])) is None
    cache.put(b"huge", 1, 101)
    assert cache.get(b"huge") is None


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_code_error(raw: bytes) -> None:
    with contextlib.suppress(CodeError):
        validate_code(raw)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_code_sections_raise_only_code_error(code: bytes) -> None:
    abi = encode(ContractAbi((MAIN,)).to_value())
    raw = MAGIC + b"\x01" + len(abi).to_bytes(2, "big") + abi + code
    try:
        validated = validate_code(raw)
    except CodeError:
        return
    assert validated.instructions[-1].spec.terminal


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_containers(), st.data())
def test_mutated_valid_code_raises_only_code_error(raw: bytes, data: st.DataObject) -> None:
    validate_code(raw)
    position = data.draw(st.integers(0, len(raw) - 1))
    byte = data.draw(st.integers(0, 255))
    mutated = raw[:position] + bytes([byte]) + raw[position + 1 :]
    cut = raw[: data.draw(st.integers(0, len(raw)))]
    for candidate in (mutated, cut, raw + b"\x00"):
        with contextlib.suppress(CodeError):
            validate_code(candidate)


def test_header_is_six_bytes() -> None:
    assert HEADER_BYTES == 6
