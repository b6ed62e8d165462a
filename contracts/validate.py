"""Deploy-time validation: code that passes here can be run without further format checks.

Checked once, when a contract is deployed (and again, cheaply, whenever a node loads code
it has not cached): the container header and version, the size limits, a well-formed ABI,
known opcodes, immediates present and in range, jump and subroutine targets and method
entries at instruction starts, and a code section that ends with an instruction that
never falls through, so the program counter can never leave the code.

House rule: :func:`validate_code` raises :class:`CodeError` and nothing else, whatever
bytes it is given (a property test feeds it arbitrary bytes).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from contracts.abi import ContractAbi, MethodAbi
from contracts.container import ContainerError, parse_container
from contracts.limits import MAX_BYTES_LENGTH
from contracts.opcodes import BY_BYTE, IMM_SIZES, Imm, OpSpec
from crypto.hashing import sha256

#: Code bytes the code cache may hold before it forgets the oldest entries.
CODE_CACHE_BYTES: Final = 512 * 1024


class CodeError(ValueError):
    """Code that must not be deployed or run; the message says why."""


@dataclass(frozen=True, slots=True)
class Instruction:
    pc: int
    spec: OpSpec
    imm: int | bytes | None
    next_pc: int


@dataclass(frozen=True, slots=True, eq=False)
class ValidatedCode:
    code_hash: bytes  # sha256 of the whole container
    container: bytes
    abi: ContractAbi
    code: bytes  # the code section
    instructions: tuple[Instruction, ...]

    def entry_points(self) -> list[MethodAbi]:
        ctor = [] if self.abi.constructor is None else [self.abi.constructor]
        return [*ctor, *self.abi.methods]


def code_hash(raw: bytes) -> bytes:
    return sha256(raw)


def validate_code(raw: bytes) -> ValidatedCode:
    """Check a code container completely; raise :class:`CodeError` if it is not runnable."""
    if not isinstance(raw, bytes):
        raise CodeError(f"code must be bytes, not {type(raw).__name__}")
    try:
        container = parse_container(raw)
    except ContainerError as exc:
        raise CodeError(str(exc)) from None
    instructions = decode_instructions(container.code)
    starts = {ins.pc for ins in instructions}
    for ins in instructions:
        if ins.spec.imm is Imm.TARGET and ins.imm not in starts:
            raise CodeError(
                f"pc {ins.pc}: {ins.spec.mnemonic} target {ins.imm!r} is not an instruction start"
            )
    if not instructions[-1].spec.terminal:
        raise CodeError(
            f"pc {instructions[-1].pc}: the code ends with {instructions[-1].spec.mnemonic}, "
            "which falls through past the end (end with halt, return, revert, jump or retsub)"
        )
    validated = ValidatedCode(code_hash(raw), raw, container.abi, container.code, instructions)
    for method in validated.entry_points():
        if method.entry_pc not in starts:
            raise CodeError(
                f"method {method.name}: entry {method.entry_pc} is not an instruction start"
            )
    return validated


def decode_instructions(code: bytes) -> tuple[Instruction, ...]:
    """Split a code section into instructions, checking opcodes and immediates."""
    out: list[Instruction] = []
    pc = 0
    while pc < len(code):
        instruction = decode_instruction(code, pc)
        out.append(instruction)
        pc = instruction.next_pc
    if not out:
        raise CodeError("the code section is empty")
    return tuple(out)


def decode_instruction(code: bytes, pc: int) -> Instruction:
    """The instruction at ``pc``, its opcode and immediate checked. The reference
    interpreter decodes validated code with this as it runs."""
    end = len(code)
    spec = BY_BYTE.get(code[pc])
    if spec is None:
        raise CodeError(f"pc {pc}: unknown opcode 0x{code[pc]:02x}")
    imm: int | bytes | None = None
    next_pc = pc + spec.size
    if next_pc > end:
        raise CodeError(f"pc {pc}: {spec.mnemonic} immediate runs past the end of the code")
    if spec.imm is not None:
        field = code[pc + 1 : next_pc]
        imm = int.from_bytes(field, "big")
        if spec.imm is Imm.U8 and not spec.imm_min <= imm <= spec.imm_max:
            raise CodeError(
                f"pc {pc}: {spec.mnemonic} {imm} is outside [{spec.imm_min}, {spec.imm_max}]"
            )
        if spec.imm is Imm.BYTES:
            if imm > MAX_BYTES_LENGTH:
                raise CodeError(
                    f"pc {pc}: pushbytes of {imm} bytes is over the limit of {MAX_BYTES_LENGTH}"
                )
            start, next_pc = next_pc, next_pc + imm
            if next_pc > end:
                raise CodeError(f"pc {pc}: pushbytes data runs past the end of the code")
            imm = code[start:next_pc]
    return Instruction(pc, spec, imm, next_pc)


def encode_instruction(spec: OpSpec, imm: int | bytes | None) -> bytes:
    """The bytes of one instruction (the assembler's half of :func:`decode_instructions`)."""
    head = bytes([spec.op])
    if spec.imm is None:
        return head
    if spec.imm is Imm.BYTES:
        if not isinstance(imm, bytes):
            raise TypeError(f"{spec.mnemonic} takes bytes")
        return head + len(imm).to_bytes(IMM_SIZES[Imm.BYTES], "big") + imm
    if not isinstance(imm, int):
        raise TypeError(f"{spec.mnemonic} takes an integer")
    return head + imm.to_bytes(IMM_SIZES[spec.imm], "big")


_V = TypeVar("_V")


class CodeCache(Generic[_V]):
    """What a node derives from code (a ready-to-run program), keyed by code hash.

    Bounded by the total size of the code it remembers; the oldest entry goes first.
    Hits and misses never change results or gas, only time. Every step is a single dict
    or deque operation, so threads sharing a cache (say, block execution in a worker and
    queries elsewhere) at worst forget an entry early.
    """

    def __init__(self, capacity_bytes: int = CODE_CACHE_BYTES) -> None:
        self.capacity_bytes = capacity_bytes
        self._entries: dict[bytes, tuple[_V, int]] = {}
        self._order: deque[bytes] = deque()
        self._size_bytes = 0

    def get(self, key: bytes) -> _V | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: bytes, value: _V, size_bytes: int) -> None:
        if size_bytes > self.capacity_bytes or key in self._entries:
            return
        while self._order and self._size_bytes + size_bytes > self.capacity_bytes:
            evicted = self._entries.pop(self._order.popleft(), None)
            if evicted is not None:
                self._size_bytes -= evicted[1]
        self._entries[key] = (value, size_bytes)
        self._order.append(key)
        self._size_bytes += size_bytes

    def __len__(self) -> int:
        return len(self._entries)
