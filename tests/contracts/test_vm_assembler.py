"""Assembler syntax and errors; the disassembler round trip."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from contracts.abi import AbiType
from contracts.assembler import AssemblyError, assemble, disassemble
from contracts.examples import EXAMPLES, load, source
from contracts.opcodes import Op
from contracts.validate import CodeError, validate_code
from tests.contracts.vm_support import random_containers


def ops(raw: bytes) -> list[tuple[Op, object]]:
    return [(ins.spec.op, ins.imm) for ins in validate_code(raw).instructions]


def test_literals_comments_and_labels() -> None:
    raw = assemble(
        """
        ; a comment line
        .method main() -> bytes   ; trailing comment
        start: push 10            ; decimal
            push 0xAB01           ; hex bytes
            push "a;b\\"c\\\\\\n\\t\\x00\\xff"
            push "é"
            push 0x
            pushint 3
            pushbytes "z"
            jump end
        end:
        last:
            return
        """
    )
    assert ops(raw) == [
        (Op.PUSHINT, 10),
        (Op.PUSHBYTES, b"\xab\x01"),
        (Op.PUSHBYTES, b'a;b"c\\\n\t\x00\xff'),
        (Op.PUSHBYTES, "é".encode()),
        (Op.PUSHBYTES, b""),
        (Op.PUSHINT, 3),
        (Op.PUSHBYTES, b"z"),
        (Op.JUMP, 51),
        (Op.RETURN, None),
    ]


def test_directives_build_the_abi() -> None:
    raw = assemble(
        """
        .constructor(k: u64, members: address...)
            halt
        .method zeta(name: str) -> u64 readonly
        .method alpha(data: bytes)
            push 1
            return
        .method beta() payable
            halt
        """
    )
    abi = validate_code(raw).abi
    assert [m.name for m in abi.methods] == ["alpha", "beta", "zeta"]  # sorted
    assert abi.method("zeta").entry_pc == abi.method("alpha").entry_pc == 1  # type: ignore[union-attr]
    assert abi.method("zeta").read_only and abi.method("beta").payable  # type: ignore[union-attr]
    assert abi.method("zeta").returns is AbiType.U64  # type: ignore[union-attr]
    assert abi.constructor is not None and abi.constructor.variadic
    assert abi.constructor.param_type(5) is AbiType.ADDRESS
    assert abi.method("zeta").signature() == "zeta(name: str) -> u64 readonly"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no instructions"),
        (".method m()\n bogus", "line 2: unknown instruction 'bogus'"),
        (".method m()\n push", "line 2: push needs a literal"),
        (".method m()\n push 18446744073709551616\n halt", "does not fit in a u64"),
        (".method m()\n push 0xabc\n halt", "odd number of digits"),
        (".method m()\n push abc\n halt", "is not a literal"),
        ('.method m()\n push "abc\n halt', "unterminated string"),
        ('.method m()\n push "a\\qb"\n halt', "unknown escape"),
        (".method m()\n jump nowhere", "line 2: unknown label 'nowhere'"),
        (".method m()\n jump 12", "needs a label"),
        (".method m()\n x:\n x:\n halt", "label 'x' defined twice"),
        (".method m()\n halt\n jump y\n y:", "label 'y' marks no instruction"),
        (".method m()\n dup 256\n halt", r"dup 256 is outside \[0, 255\]"),
        (".method m()\n swap 0\n halt", "outside"),
        (".method m()\n dup x\n halt", "'x' is not a literal"),
        (".method m()\n dup 0x01\n halt", "dup needs a decimal integer"),
        (".method m()\n pop 1\n halt", "pop takes no operand"),
        (".method m()\n pushbytes 5\n halt", "pushbytes needs a hex or string literal"),
        (".method m()\n push 1", "falls through"),
        (".method m()", "directive with no instruction"),
        (".method m(a u64)\n halt", "not 'name: type'"),
        (".method m(a: float)\n halt", "unknown type 'float'"),
        (".method m(a: u64..., b: u64)\n halt", "only the last parameter may be variadic"),
        (".method m(a: u64, a: bytes)\n halt", "distinct"),
        (".method m() -> u64 fast\n halt", "unexpected 'fast'"),
        (".method m() readonly payable\n halt", "cannot be payable"),
        (".method m()\n.method m()\n halt", "declared twice"),
        (".constructor()\n.constructor()\n halt", "a second .constructor"),
        (".constructor() -> u64\n halt", "no result"),
        (".method constructor()\n halt", "use .constructor"),
        (".function m()\n halt", "unknown directive"),
    ],
)
def test_assembly_errors(text: str, message: str) -> None:
    with pytest.raises(AssemblyError, match=message):
        assemble(text)


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_round_trip(name: str) -> None:
    raw = load(name)
    text = disassemble(raw)
    assert assemble(text) == raw
    assert disassemble(assemble(text)) == text
    assert source(name).startswith(f"; {name}")


def test_disassembly_reads_well() -> None:
    raw = assemble('.method m(a: u64) -> bytes\n l: push "hi"\n jz l\n push 0x00ff\n return')
    assert disassemble(raw).splitlines()[1:] == [
        "L0:",
        ".method m(a: u64) -> bytes",
        '    push "hi"',
        "    jz L0",
        "    push 0x00ff",
        "    return",
    ]


def test_disassemble_refuses_invalid_code() -> None:
    with pytest.raises(CodeError):
        disassemble(b"QVM\x01junk")


def test_unknown_example() -> None:
    with pytest.raises(KeyError, match="no example contract"):
        source("nope")


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_containers())
def test_round_trip_property(raw: bytes) -> None:
    assert assemble(disassemble(raw)) == raw
