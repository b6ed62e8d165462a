"""Seeded random programs and a digest of what running them gives: a consensus pin.

Every receipt field the VM decides -- status, gas used, return value, events, error text,
writes -- and the state after, for thousands of random programs (random opcodes and
immediates, random gas limits, calls and queries, a second contract to call), reduced to
one SHA-256. The digest recorded in test_vm_engines.py was computed on the VM before
issue 20 split it into categories and engines; any change to gas, ordering of checks or
error words changes it.

Uses only ``random.Random(seed)`` (no hypothesis), so the programs are the same on every
run and every machine, and only the entry points' original signatures, so the same
script runs against an older tree (``sys.path`` first) to record a digest.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from contracts.abi import AbiType, ContractAbi, MethodAbi, Param
from contracts.container import build_container
from contracts.opcodes import OPCODES, Imm, Op, OpSpec
from contracts.state import BlockContext, MemoryHost
from contracts.validate import encode_instruction
from crypto.hashing import sha256

SENDER = bytes.fromhex("a1" * 20)
MAIN = bytes.fromhex("11" * 20)
OTHER = bytes.fromhex("22" * 20)
BLOCK = BlockContext(7, 1_000)
#: Gas limits tried per program above its intrinsic gas: one for every gas unit.
GAS_SWEEP = 48
#: More gas than any of these programs can use.
GAS_PLENTY = 10**6
#: What a transaction's call costs before its first instruction (contracts.gas names it;
#: spelled here so the module also runs against trees from before contracts.gas).
CALL_INTRINSIC_GAS = 200
_INTERESTING_BYTES = [b"", b"k", b"main", b"other", MAIN, OTHER, SENDER, bytes(8)]
_SPECS = list(OPCODES.values())
_PUSHES = [OPCODES[Op.PUSHINT], OPCODES[Op.PUSHBYTES]]
_TERMINALS = [spec for spec in _SPECS if spec.terminal and spec.imm is None]
_RETURNS = [None, AbiType.U64, AbiType.BYTES, AbiType.STR, AbiType.ADDRESS]

#: (host, sender, to, method, args, value, gas_limit, block) -> result; value None: a query.
Runner = Callable[..., Any]


def _immediate(rng: random.Random, spec: OpSpec, count: int) -> int | bytes | None:
    if spec.imm is Imm.U8:
        if rng.random() < 0.7:
            return rng.randint(spec.imm_min, min(spec.imm_max, 3))
        return rng.randint(spec.imm_min, spec.imm_max)
    if spec.imm is Imm.U64:
        return rng.choice(
            [0, 1, 2, 7, 8, 64, 2**63, 2**64 - 1, rng.randint(0, 2**64 - 1), rng.randint(0, 40)]
        )
    if spec.imm is Imm.BYTES:
        if rng.random() < 0.6:
            return rng.choice(_INTERESTING_BYTES)
        return rng.randbytes(rng.randint(0, 24))
    if spec.imm is Imm.TARGET:
        return rng.randint(0, count)  # an instruction index, resolved below
    return None


def seeded_container(rng: random.Random) -> bytes:
    """A valid container: random instructions (in some programs, most opcodes get pushes
    of random type before them, so they get past the stack check) and a terminal, ``main``
    at pc 0 (variadic u64 arguments, a random result type) and maybe ``other`` somewhere.
    Jump targets are instruction indexes below the first ``count``: always valid."""
    count = rng.randint(1, 40)
    push_share = rng.choice([0.35, 0.6])
    feed_share = rng.choice([0.0, 0.7])  # how often an opcode gets its operands pushed first
    instructions: list[tuple[OpSpec, int | bytes | None]] = []
    while len(instructions) < count:
        spec = rng.choice(_PUSHES) if rng.random() < push_share else rng.choice(_SPECS)
        imm = _immediate(rng, spec, count)
        if rng.random() < feed_share:
            for _ in range(min(spec.stack_effect(imm)[0], 4)):
                push = rng.choice(_PUSHES)
                instructions.append((push, _immediate(rng, push, count)))
        instructions.append((spec, imm))
    instructions.append((rng.choice(_TERMINALS), None))
    pcs, pc = [], 0
    for spec, imm in instructions:
        pcs.append(pc)
        pc += len(encode_instruction(spec, 0 if spec.imm is Imm.TARGET else imm))
    code = b"".join(
        encode_instruction(spec, pcs[imm] if spec.imm is Imm.TARGET else imm)  # type: ignore[index]
        for spec, imm in instructions
    )
    returns = rng.choice(_RETURNS)
    main = MethodAbi(
        "main",
        (Param("xs", AbiType.U64),),
        returns,
        0,
        variadic=True,
        read_only=rng.random() < 0.3,
    )
    methods = [main]
    if rng.random() < 0.5:
        methods.append(MethodAbi("other", (), None, rng.choice(pcs), payable=True))
    return build_container(ContractAbi(tuple(methods)), code)


def seeded_digest(count: int, seed: int, call: Runner, query: Runner) -> tuple[str, dict[str, int]]:
    """Run ``count`` seeded programs through ``call`` / ``query``; return the digest of
    every result and the state after each, and how many ended with each status.

    Gas limits are chosen to find where the order of gas and operand checks shows: each
    program runs with every limit from its intrinsic gas up to ``GAS_SWEEP`` more (so it
    runs out at each of its first instructions in turn), with ``GAS_PLENTY``, and then --
    by bisection -- with the least limit that ends the same way as with plenty, and one
    less: there the last instruction's base cost and its checks meet.
    """
    rng = random.Random(seed)
    lines = []
    statuses: dict[str, int] = {}
    for _ in range(count):
        main = seeded_container(rng)
        other = seeded_container(rng) if rng.random() < 0.6 else None
        args = [
            rng.choice([0, 1, 2, 5, 2**64 - 1, rng.randint(0, 2**64 - 1)])
            for _ in range(rng.randint(0, 4))
        ]
        method = rng.choice(["main", "main", "other"])
        value = None if rng.random() < 0.2 else rng.randint(0, 3)

        def run(gas_limit: int) -> Any:
            host = MemoryHost(balances={SENDER: 1000, MAIN: 50})
            host.code[MAIN] = main  # noqa: B023 (run is called only in this iteration)
            if other is not None:  # noqa: B023
                host.code[OTHER] = other  # noqa: B023
            host.storage[(MAIN, b"k")] = b"\x00\x01"
            if value is None:  # noqa: B023
                result = query(host, SENDER, MAIN, method, args, gas_limit, BLOCK)  # noqa: B023
            else:
                result = call(host, SENDER, MAIN, method, args, value, gas_limit, BLOCK)  # noqa: B023
            host.apply(result.writes)
            lines.append(repr((gas_limit, *_canonical(result, host))))
            statuses[result.status.name] = statuses.get(result.status.name, 0) + 1
            return result

        intrinsic = CALL_INTRINSIC_GAS + 8 * len(args)
        for extra in range(GAS_SWEEP):
            run(intrinsic + extra)
        plenty = run(GAS_PLENTY)
        low, high = intrinsic, GAS_PLENTY
        while low < high:
            middle = (low + high) // 2
            probe = run(middle)
            if (probe.status, probe.error) == (plenty.status, plenty.error):
                high = middle
            else:
                low = middle + 1
        run(low - 1)
    return sha256("\n".join(lines).encode()).hex(), statuses


def _canonical(result: Any, host: MemoryHost) -> tuple[object, ...]:
    """A result and the state after it as plain ints, bytes and strings."""
    writes = result.writes
    return (
        int(result.status),
        result.gas_used,
        result.return_value,
        tuple((e.address, e.name, tuple(e.args)) for e in result.events),
        result.error,
        tuple(writes.storage),
        tuple(writes.balances),
        tuple(writes.code),
        tuple(sorted(host.storage.items())),
        tuple(sorted(host.balances.items())),
    )


# ----------------------------------------------------------------------------- each opcode alone

#: Operands for each opcode run alone: u64 extremes and byte strings that are empty, a
#: storage key that exists, an address, not UTF-8, and too long for a name or a key (two
#: of them too long for one byte string).
_OPERANDS: list[int | bytes] = [0, 2**64 - 1, b"", b"k", SENDER, b"\xff", b"q" * 2100]
#: Fewer for opcodes with three operands.
_OPERANDS_3: list[int | bytes] = [0, 1, b"", b"k", SENDER]
#: Opcodes that behave differently in a read-only call: run both ways.
_STATIC_MATTERS = frozenset({Op.SSTORE, Op.SDELETE, Op.EMIT, Op.TRANSFER, Op.CALL})
_ALONE_ARGS = [7, 2**64 - 1]


def _alone_immediate(spec: OpSpec) -> int | bytes | None:
    if spec.op is Op.PUSHBYTES:
        return b"k"
    if spec.op is Op.PUSHINT:
        return 5
    if spec.op is Op.EMIT:
        return 1
    if spec.imm is Imm.U8:
        return spec.imm_min
    return None  # TARGET: filled in with the pc of the final halt


def _push(value: int | bytes) -> bytes:
    return encode_instruction(
        OPCODES[Op.PUSHBYTES if isinstance(value, bytes) else Op.PUSHINT], value
    )


def opcode_digest(call: Runner, query: Runner) -> tuple[str, dict[str, int]]:
    """Run every opcode alone -- pushes of its operands, the opcode, ``halt`` -- with
    every combination of typical operands, read-only and not where it matters, and gas
    limits where its base cost runs out and (by bisection) where its whole price does.
    Return the digest of every result and how many ended with each status."""
    lines = []
    statuses: dict[str, int] = {}
    for spec in OPCODES.values():
        imm = _alone_immediate(spec)
        stack_in = spec.stack_effect(imm)[0]
        pool = _OPERANDS if stack_in < 3 else _OPERANDS_3
        statics = [False, True] if spec.op in _STATIC_MATTERS else [False]
        results = [None, AbiType.U64, AbiType.BYTES] if spec.op is Op.RETURN else [None]
        if spec.op is Op.HALT:
            results = [None, AbiType.U64]
        for operands in _combinations(pool, stack_in):
            setup = b"".join(_push(value) for value in operands)
            halt_pc = len(setup) + len(encode_instruction(spec, 0 if imm is None else imm))
            if spec.imm is Imm.TARGET:
                imm = halt_pc
            code = setup + encode_instruction(spec, imm) + bytes([Op.HALT])
            for static in statics:
                for returns in results:
                    main = MethodAbi(
                        "main", (Param("xs", AbiType.U64),), returns, 0, variadic=True,
                        read_only=static,
                    )  # fmt: skip
                    container = build_container(ContractAbi((main,)), code)
                    at_op = CALL_INTRINSIC_GAS + 8 * len(_ALONE_ARGS) + len(operands)

                    def run(gas_limit: int) -> Any:
                        host = MemoryHost(balances={SENDER: 1000, MAIN: 50})
                        host.code[MAIN] = container  # noqa: B023 (called in this iteration)
                        host.storage[(MAIN, b"k")] = b"\x00\x01"
                        result = call(host, SENDER, MAIN, "main", _ALONE_ARGS, 0, gas_limit, BLOCK)
                        host.apply(result.writes)
                        lines.append(repr((spec.mnemonic, gas_limit, *_canonical(result, host))))  # noqa: B023
                        statuses[result.status.name] = statuses.get(result.status.name, 0) + 1
                        return result

                    run(at_op + spec.base_gas - 1)
                    run(at_op + spec.base_gas)
                    plenty = run(GAS_PLENTY)
                    low, high = at_op, GAS_PLENTY
                    while low < high:
                        middle = (low + high) // 2
                        probe = run(middle)
                        if (probe.status, probe.error) == (plenty.status, plenty.error):
                            high = middle
                        else:
                            low = middle + 1
                    run(low - 1)
    return sha256("\n".join(lines).encode()).hex(), statuses


def _combinations(pool: list[int | bytes], size: int) -> list[tuple[int | bytes, ...]]:
    out: list[tuple[int | bytes, ...]] = [()]
    for _ in range(size):
        out = [(*head, value) for head in out for value in pool]
    return out
