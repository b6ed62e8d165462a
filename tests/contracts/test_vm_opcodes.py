"""The opcode table is the single source of truth: check it, and that the machine obeys it."""

from __future__ import annotations

import pytest

from contracts.abi import ContractAbi, MethodAbi
from contracts.container import build_container
from contracts.instructions import IMPLEMENTATIONS
from contracts.interpreter import ExecutionStatus, call
from contracts.limits import CALL_INTRINSIC_GAS
from contracts.opcodes import BY_BYTE, BY_MNEMONIC, OPCODES, Imm, Op, OpSpec, Variadic
from contracts.state import BlockContext, MemoryHost
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
    limit = CALL_INTRINSIC_GAS + len(setup) // 9 + spec.base_gas - 1
    status, error, gas_used = _run(code, limit)
    assert status is ExecutionStatus.OUT_OF_GAS and gas_used == limit
    assert error == f"out of gas at pc {len(setup)}"


def test_bench_workloads_run() -> None:
    assert run_spin_loop(10) == 4 + 10 * 10 + 2
    assert run_token_transfers(3) == 3
