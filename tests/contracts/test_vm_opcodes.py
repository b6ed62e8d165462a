"""The opcode table is the single source of truth: check it, and that the machine obeys it."""

from __future__ import annotations

import contextlib

import pytest

from contracts.abi import ContractAbi, MethodAbi, StackValue
from contracts.container import build_container
from contracts.frame import ExceptionalHalt, Frame, OutOfGas, TxEnv
from contracts.gas import GAS_CALL_INTRINSIC
from contracts.instructions import IMPLEMENTATIONS
from contracts.interpreter import ExecutionStatus, call
from contracts.opcodes import BY_BYTE, BY_MNEMONIC, OPCODES, Imm, Op, OpSpec, Variadic
from contracts.programs import ProgramCache
from contracts.state import BlockContext, MemoryHost, WorldState
from contracts.validate import encode_instruction
from ledger.bench.vm import run_spin_loop, run_token_transfers
from tests.contracts.vm_support import ALICE

CONTRACT = bytes([0x5C]) * 20
HALT = OPCODES[Op.HALT]


def _run(code: bytes, gas_limit: int = 10_000) -> tuple[ExecutionStatus, str, int]:
    raw = build_container(ContractAbi((MethodAbi("main", (), None, 0),)), code)
    host = MemoryHost(code={CONTRACT: raw})
    result = call(host, ALICE, CONTRACT, "main", (), 0, gas_limit, BlockContext(1, 0))
    return result.status, result.error, result.gas_used


def _imm(spec: OpSpec) -> int | bytes | None:
    if spec.imm is Imm.BYTES:
        return b"x"
    if spec.imm is Imm.TARGET:
        return 0
    if spec.imm is not None:
        return spec.imm_max if spec.variadic is not Variadic.NONE else spec.imm_min
    return None


def test_table_shape() -> None:
    assert list(OPCODES) == list(Op) == list(IMPLEMENTATIONS)
    assert len(BY_BYTE) == len(BY_MNEMONIC) == len(OPCODES)
    for op, spec in OPCODES.items():
        assert spec.op is op and spec.mnemonic == op.name.lower()
        assert spec.base_gas >= 1, "every instruction costs gas, so every loop ends"
        assert spec.summary
        if spec.imm is Imm.U8:
            assert 0 <= spec.imm_min <= spec.imm_max <= 255


@pytest.mark.parametrize("spec", [s for s in OPCODES.values() if s.stack_in > 0], ids=str)
def test_stack_inputs_are_checked_before_the_body(spec: OpSpec) -> None:
    """Each opcode with inputs, run on an empty stack, halts for underflow (from the table)."""
    code = encode_instruction(spec, _imm(spec)) + encode_instruction(HALT, None)
    status, error, _ = _run(code)
    assert status is ExecutionStatus.INVALID
    assert f"{spec.mnemonic} at pc 0: stack underflow" in error


@pytest.mark.parametrize("spec", list(OPCODES.values()), ids=str)
def test_base_gas_is_charged_before_the_body(spec: OpSpec) -> None:
    """With one gas too few for an opcode's base gas, it never runs."""
    setup = b"".join(
        encode_instruction(OPCODES[Op.PUSHINT], 0) for _ in range(spec.stack_effect(_imm(spec))[0])
    )
    code = setup + encode_instruction(spec, _imm(spec)) + encode_instruction(HALT, None)
    limit = GAS_CALL_INTRINSIC + len(setup) // 9 + spec.base_gas - 1
    status, error, gas_used = _run(code, limit)
    assert status is ExecutionStatus.OUT_OF_GAS and gas_used == limit
    assert error == f"out of gas at pc {len(setup)}"


def _frame(gas: int, operands: list[StackValue]) -> Frame:
    """A frame of a contract whose one method returns nothing, holding ``operands``."""
    raw = build_container(ContractAbi((MethodAbi("main", (), None, 0),)), bytes([Op.HALT]))
    program = ProgramCache().load(raw)
    world = WorldState(MemoryHost(balances={CONTRACT: 10}))
    env = TxEnv(world, ALICE, BlockContext(1, 0))
    method = program.abi.methods[0]
    frame = Frame(env, program, method, CONTRACT, ALICE, 0, (), gas, False, 1, world.checkpoint())
    frame.stack.extend(operands)
    return frame


@pytest.mark.parametrize("spec", list(OPCODES.values()), ids=str)
def test_each_body_charges_the_tables_base_cost_first(spec: OpSpec) -> None:
    """Run alone on u64 operands: one gas short of the table's base cost, the body halts
    out of gas having taken nothing; with exactly that, it takes it all and goes on (to
    its operation, which may then refuse the operands)."""
    body = IMPLEMENTATIONS[spec.op]
    operands: list[StackValue] = [0] * spec.stack_effect(_imm(spec))[0]
    short = _frame(spec.base_gas - 1, operands)
    with pytest.raises(OutOfGas):
        body(short, _imm(spec))
    assert short.gas == spec.base_gas - 1
    exact = _frame(spec.base_gas, operands)
    with contextlib.suppress(ExceptionalHalt):
        try:
            body(exact, _imm(spec))
        except OutOfGas:
            pytest.fail(f"{spec.mnemonic} charged more than its base cost up front")
    assert exact.gas == 0


#: For each opcode with a cost per byte: operands, immediate, and the bytes it pays for.
PER_BYTE_CASES: dict[Op, tuple[list[StackValue], int | None, int]] = {
    Op.CONCAT: ([b"ab", b"cde"], None, 5),
    Op.SLICE: ([b"abcdef", 1, 4], None, 3),
    Op.SHA256: ([b"abcd"], None, 4),
    Op.SSTORE: ([b"k1", b"vvv"], None, 5),
    Op.EMIT: ([1, b"xy", b"Ev"], 2, 2 + 8 + 2),  # name, a u64 (8), a byte string
}


def test_per_byte_cases_cover_every_opcode_with_a_per_byte_cost() -> None:
    assert sorted(PER_BYTE_CASES) == sorted(op for op, s in OPCODES.items() if s.byte_gas)


@pytest.mark.parametrize("op", list(PER_BYTE_CASES), ids=lambda op: op.name.lower())
def test_each_body_charges_the_tables_cost_per_byte(op: Op) -> None:
    spec = OPCODES[op]
    operands, imm, size = PER_BYTE_CASES[op]
    frame = _frame(10_000, operands)
    assert IMPLEMENTATIONS[op](frame, imm) is None
    assert 10_000 - frame.gas == spec.base_gas + spec.byte_gas * size


def test_bench_workloads_run() -> None:
    assert run_spin_loop(10) == 4 + 10 * 10 + 2
    assert run_token_transfers(3) == 3
