"""Shared helpers for the VM tests: named accounts and a tiny in-memory chain."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from contracts.abi import AbiType, AbiValue, ContractAbi, MethodAbi, Param
from contracts.assembler import assemble
from contracts.container import build_container
from contracts.examples import load, load_python
from contracts.interpreter import ExecutionResult, call, contract_address, deploy, query
from contracts.opcodes import OPCODES, Imm, Op, OpSpec
from contracts.state import BlockContext, MemoryHost
from contracts.validate import encode_instruction, validate_code

ALICE = bytes.fromhex("a1" * 20)
BOB = bytes.fromhex("b0" * 20)
CAROL = bytes.fromhex("c4" * 20)
DAVE = bytes.fromhex("d4" * 20)
ZERO_ADDRESS = bytes(20)
GAS = 1_000_000


#: The languages every example is written in: the example tests run over both.
EXAMPLE_LANGUAGES = ("qasm", "py")


@functools.cache
def example_code(name: str, language: str) -> bytes:
    """Example ``name``'s container, from its assembly or its Python source."""
    return load(name) if language == "qasm" else load_python(name)


@dataclass
class Chain:
    """Applies successful results to a MemoryHost, like the ledger would, block by block."""

    host: MemoryHost = field(default_factory=MemoryHost)
    height: int = 1
    timestamp_ms: int = 1_700_000_000_000
    nonce: int = 0

    @property
    def block(self) -> BlockContext:
        return BlockContext(self.height, self.timestamp_ms)

    def fund(self, address: bytes, amount: int) -> None:
        self.host.balances[address] = amount

    def deploy(
        self,
        code: bytes | str,
        args: Sequence[AbiValue] = (),
        *,
        sender: bytes = ALICE,
        value: int = 0,
        gas: int = GAS,
    ) -> tuple[bytes, ExecutionResult]:
        raw = assemble(code) if isinstance(code, str) else code
        address = contract_address(sender, self.nonce)
        self.nonce += 1
        result = deploy(self.host, sender, address, raw, args, value, gas, self.block)
        self.host.apply(result.writes)
        return address, result

    def deployed(self, code: bytes | str, args: Sequence[AbiValue] = (), **kw: object) -> bytes:
        address, result = self.deploy(code, args, **kw)  # type: ignore[arg-type]
        assert result.ok, result.error
        return address

    def call(
        self,
        to: bytes,
        method: str,
        *args: AbiValue,
        sender: bytes = ALICE,
        value: int = 0,
        gas: int = GAS,
    ) -> ExecutionResult:
        result = call(self.host, sender, to, method, args, value, gas, self.block)
        self.host.apply(result.writes)
        return result

    def query(
        self, to: bytes, method: str, *args: AbiValue, sender: bytes = ALICE
    ) -> AbiValue | None:
        result = query(self.host, sender, to, method, args, GAS, self.block)
        assert result.ok, result.error
        return result.return_value


# ----------------------------------------------------------------------------- random programs

#: Addresses random programs run at; their pushbytes favour these and method names.
RANDOM_MAIN = bytes.fromhex("11" * 20)
RANDOM_OTHER = bytes.fromhex("22" * 20)
_INTERESTING_BYTES = [b"", b"k", b"main", b"other", RANDOM_MAIN, RANDOM_OTHER, ALICE, bytes(8)]
_TERMINALS = [spec for spec in OPCODES.values() if spec.terminal and spec.imm is None]


def _immediate(draw: st.DrawFn, spec: OpSpec, count: int) -> int | bytes | None:
    if spec.imm is Imm.U8:
        small = st.integers(spec.imm_min, min(spec.imm_max, 3))
        return draw(small | st.integers(spec.imm_min, spec.imm_max))
    if spec.imm is Imm.U64:
        return draw(st.sampled_from([0, 1, 2, 7, 64, 2**63, 2**64 - 1]) | st.integers(0, 2**64 - 1))
    if spec.imm is Imm.BYTES:
        return draw(st.sampled_from(_INTERESTING_BYTES) | st.binary(max_size=24))
    if spec.imm is Imm.TARGET:
        return draw(st.integers(0, count))  # an index; `count` means the final terminal
    return None


@st.composite
def instruction_lists(
    draw: st.DrawFn, max_size: int = 40
) -> list[tuple[OpSpec, int | bytes | None]]:
    """Random instruction sequences; jump targets are indexes, resolved by `layout`.

    Pushes are drawn often, so that programs get past their first few instructions."""
    specs = list(OPCODES.values())
    pushes = [OPCODES[Op.PUSHINT], OPCODES[Op.PUSHBYTES]]
    count = draw(st.integers(1, max_size))
    out: list[tuple[OpSpec, int | bytes | None]] = []
    for _ in range(count):
        spec = draw(st.sampled_from(pushes) | st.sampled_from(specs))
        out.append((spec, _immediate(draw, spec, count)))
    out.append((draw(st.sampled_from(_TERMINALS)), None))
    return out


def instruction_pcs(instructions: list[tuple[OpSpec, int | bytes | None]]) -> list[int]:
    pcs = []
    pc = 0
    for spec, imm in instructions:
        pcs.append(pc)
        pc += len(encode_instruction(spec, 0 if spec.imm is Imm.TARGET else imm))
    return pcs


def layout(instructions: list[tuple[OpSpec, int | bytes | None]]) -> bytes:
    """Encode instructions, turning TARGET indexes into pcs."""
    pcs = instruction_pcs(instructions)
    return b"".join(
        encode_instruction(
            spec, pcs[imm] if spec.imm is Imm.TARGET and isinstance(imm, int) else imm
        )
        for spec, imm in instructions
    )


@st.composite
def random_containers(draw: st.DrawFn) -> bytes:
    """A valid container: random code, a `main` method at pc 0 and maybe a second entry."""
    instructions = draw(instruction_lists())
    code = layout(instructions)
    returns = draw(
        st.sampled_from([None, AbiType.U64, AbiType.BYTES, AbiType.STR, AbiType.ADDRESS])
    )
    main = MethodAbi(
        "main",
        (Param("xs", AbiType.U64),),
        returns,
        0,
        variadic=True,
        read_only=draw(st.booleans()),
    )
    methods = [main]
    if draw(st.booleans()):
        entry = draw(st.sampled_from(instruction_pcs(instructions)))
        methods.append(MethodAbi("other", (), None, entry, payable=True))
    return build_container(ContractAbi(tuple(methods)), code)


def op_names(code: bytes) -> list[Op]:
    return [ins.spec.op for ins in validate_code(code).instructions]
