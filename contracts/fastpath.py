"""The fast path: runs a frame from pre-decoded basic blocks instead of decoding as it goes.

When a program is loaded, :func:`predecode` cuts its code into basic blocks -- straight
runs of instructions entered only at the first: a method entry, a jump target, or where
control comes back after ``jz`` / ``jnz`` / ``callsub`` / ``call`` -- each ending with an
instruction that may move the pc or stop the frame, or just before the next entry. For
each block it works out once the stack bounds that the reference interpreter
(contracts.interpreter) checks at every instruction.

:func:`run_frame` then checks the stack once per block and runs the block's bodies back to
back; only the last one can signal or move the pc. A block entered outside its bounds is
bound to halt on the stack check somewhere inside, so it runs one instruction at a time,
checked like the reference, and halts at the same instruction with the same words. The
bodies are the same ones (contracts.instructions), so they charge the same gas and make
the same changes, in the same order.

Must never: differ from the reference interpreter in anything a receipt or the state can
show -- result, gas, status, error text, events, writes. tests/contracts/test_vm_engines.py
runs both over every vector, the example contracts and random programs.
"""

from __future__ import annotations

from typing import Final

from contracts.frame import (
    Block,
    Body,
    ExceptionalHalt,
    Frame,
    Immediate,
    Outcome,
    Signal,
    check_stack,
    halted,
)
from contracts.instructions import IMPLEMENTATIONS
from contracts.limits import MAX_STACK_ITEMS
from contracts.opcodes import BY_BYTE, Imm, Op
from contracts.validate import Instruction, ValidatedCode

#: Opcodes whose body may move the pc or return a signal: each ends its block.
_ENDS_BLOCK: Final = frozenset(
    {Op.HALT, Op.RETURN, Op.REVERT, Op.JUMP, Op.JZ, Op.JNZ, Op.CALLSUB, Op.RETSUB, Op.CALL}
)
#: Opcodes after which control may come back to the next instruction from elsewhere
#: (a branch not taken, ``retsub``, the end of a call): that next instruction is an entry.
_RESUMES_AFTER: Final = frozenset({Op.JZ, Op.JNZ, Op.CALLSUB, Op.CALL})


def predecode(validated: ValidatedCode) -> tuple[Block, ...]:
    """The program's blocks, indexed by the pc that enters each (other pcs never run)."""
    entries = {method.entry_pc for method in validated.entry_points()}
    for ins in validated.instructions:
        if ins.spec.imm is Imm.TARGET and isinstance(ins.imm, int):
            entries.add(ins.imm)
        if ins.spec.op in _RESUMES_AFTER:
            entries.add(ins.next_pc)
    blocks = [_NOT_AN_ENTRY] * len(validated.code)
    run: list[Instruction] = []
    for ins in validated.instructions:
        run.append(ins)
        if ins.spec.op in _ENDS_BLOCK or ins.next_pc in entries:
            if run[0].pc in entries:  # else no pc can reach it: nothing to run
                blocks[run[0].pc] = _block(run)
            run = []
    return tuple(blocks)


def _block(run: list[Instruction]) -> Block:
    checked: list[tuple[int, Body, int, int, Immediate, int]] = []
    need = 0
    peak = -MAX_STACK_ITEMS
    growth_before = 0  # net stack growth of the block's instructions before this one
    for ins in run:
        stack_in, stack_out = ins.spec.stack_effect(ins.imm)
        growth = stack_out - stack_in
        # The reference checks depth + growth_before >= stack_in and
        # depth + growth_before + growth <= MAX_STACK_ITEMS at each instruction.
        need = max(need, stack_in - growth_before)
        peak = max(peak, growth_before + growth)
        growth_before += growth
        body = IMPLEMENTATIONS[ins.spec.op]
        checked.append((ins.pc, body, stack_in, growth, ins.imm, ins.next_pc))
    *head, last = checked
    return Block(
        need=need,
        room=MAX_STACK_ITEMS - peak,
        body=tuple((pc, body, imm) for pc, body, _, _, imm, _ in head),
        last=(last[0], last[1], last[4], last[5]),
        checked=tuple(checked),
    )


def run_frame(frame: Frame) -> Signal | Outcome:
    """The hot loop: run ``frame`` until it stops or calls out."""
    blocks = frame.program.blocks
    stack = frame.stack
    pc = frame.pc
    try:
        while True:
            block = blocks[pc]
            if block.need <= len(stack) <= block.room:
                for pc, body, imm in block.body:  # noqa: B007 (pc names a halt)
                    body(frame, imm)
                pc, body, imm, frame.pc = block.last
                signal = body(frame, imm)
            else:
                signal = None
                for pc, body, stack_in, growth, imm, next_pc in block.checked:  # noqa: B007
                    check_stack(len(stack), stack_in, growth)
                    frame.pc = next_pc
                    signal = body(frame, imm)
            if signal is not None:
                return signal
            pc = frame.pc
    except ExceptionalHalt as halt:
        return halted(halt, pc, BY_BYTE[frame.program.code[pc]].mnemonic)


def _not_an_entry(frame: Frame, _: None) -> None:
    raise AssertionError("the fast path reached a pc that starts no block")


#: Stands at every pc that starts no block; the validator and predecode make it unreachable.
_NOT_AN_ENTRY: Final = Block(0, MAX_STACK_ITEMS, (), (0, _not_an_entry, None, 0), ())
