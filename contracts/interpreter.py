"""The interpreter: runs a deploy, a call or a read-only query to completion.

Theory of operation. A transaction's execution is a stack of :class:`~contracts.frame.Frame`
objects kept in a Python list -- a contract calling a contract pushes a frame, and the
interpreter loop never recurses. Within a frame, the reference loop (:func:`run_frame`)
takes one instruction at a time: decode it at the pc, check the stack's height against
the opcode table, run its body from the implementation table (which charges the gas, then
does the operation). The fast path (contracts.fastpath) runs the same bodies from
pre-decoded basic blocks; :class:`Machine` holds the switch (:class:`Engine`) and the
program cache, and both loops give identical results. Every frame opens with a checkpoint of the
journaled :class:`WorldState`:

* ``return`` / ``halt``: the frame's changes stay (its parent may still roll back);
  unused gas goes back to the caller;
* ``revert``: changes since the checkpoint are undone; unused gas goes back;
* exceptional halt or out of gas: changes are undone and all of the frame's gas is used.

A failed nested call is not a failure of its caller: the caller sees ``ok == 0`` (and the
revert reason, or empty bytes) and decides. Calls that cannot start (no contract, unknown
method, arguments that do not fit, value to a non-payable method, depth limit) fail the
same way but give all forwarded gas back.

Results carry the writes (empty unless the whole transaction succeeded) for the ledger to
apply; see contracts.state for the conventions. Status numbers match the ledger's
ReceiptStatus.

Must never: let an exception escape for anything a contract or its deployer did wrong
(only our own bugs raise), recurse through Python for contract calls, read anything but
the host and the arguments, or keep anything between executions but in a :class:`Machine`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from contracts.abi import (
    NAME_PATTERN,
    AbiError,
    AbiValue,
    MethodAbi,
    StackValue,
    args_to_stack,
    from_stack,
    stack_value_fits,
)
from contracts.fastpath import run_frame as run_frame_fast
from contracts.frame import (
    CallRequest,
    ExceptionalHalt,
    ExecutionStatus,
    Frame,
    Outcome,
    Program,
    Revert,
    Signal,
    TxEnv,
    check_stack,
    halted,
)
from contracts.gas import call_intrinsic_gas, deploy_intrinsic_gas
from contracts.instructions import IMPLEMENTATIONS
from contracts.limits import (
    ADDRESS_BYTES,
    MAX_CALL_DEPTH,
    MAX_ERROR_TEXT_BYTES,
    U64_BYTES,
    U64_MAX,
)
from contracts.programs import ProgramCache
from contracts.state import (
    NO_WRITES,
    BlockContext,
    EventRecord,
    Host,
    StateWrites,
    WorldState,
)
from contracts.validate import CodeError, decode_instruction
from crypto.hashing import tagged_hash

__all__ = [
    "Engine",
    "ExecutionResult",
    "ExecutionStatus",
    "Machine",
    "call",
    "contract_address",
    "deploy",
    "query",
    "run_frame",
]

CONTRACT_ADDRESS_TAG: Final = "contract"


class Engine(enum.Enum):
    """Which loop runs a frame's instructions; both give identical results."""

    REFERENCE = "reference"  # run_frame: decode and run one instruction at a time
    FAST = "fast"  # contracts.fastpath.run_frame: pre-decoded basic blocks


@dataclass(frozen=True, slots=True)
class Machine:
    """What whoever runs the VM keeps between executions: its program cache, and the one
    switch deciding which loop runs instructions. A node keeps one for its lifetime and
    passes it to every entry point; without one, an execution starts with an empty cache
    (and validates every contract it touches)."""

    programs: ProgramCache = field(default_factory=ProgramCache)
    engine: Engine = Engine.FAST


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    status: ExecutionStatus
    gas_used: int
    return_value: AbiValue | None = None  # typed by the method's declared result
    events: tuple[EventRecord, ...] = ()
    error: str = ""  # the revert reason, or why the execution was invalid
    writes: StateWrites = NO_WRITES  # empty unless status is SUCCESS
    created_address: bytes | None = None  # a successful deploy's address

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.SUCCESS


def contract_address(sender_address: bytes, nonce: int) -> bytes:
    """The address of the contract ``sender_address`` deploys with transaction ``nonce``."""
    if len(sender_address) != ADDRESS_BYTES or not 0 <= nonce <= U64_MAX:
        raise ValueError("contract_address takes a 20-byte address and a u64 nonce")
    data = sender_address + nonce.to_bytes(U64_BYTES, "big")
    return tagged_hash(CONTRACT_ADDRESS_TAG, data)[:ADDRESS_BYTES]


# ----------------------------------------------------------------------------- entry points


def deploy(
    host: Host,
    sender: bytes,
    address: bytes,
    code: bytes,
    args: Sequence[AbiValue],
    value: int,
    gas_limit: int,
    block: BlockContext,
    *,
    machine: Machine | None = None,
) -> ExecutionResult:
    """Create the contract ``code`` at ``address`` (chosen by the ledger, see
    :func:`contract_address`), moving ``value`` from ``sender`` and running the constructor.

    The code is written only when the constructor succeeds, so while it runs the contract
    has its address and balance but no code: calls into it fail softly.
    """
    machine = Machine() if machine is None else machine
    intrinsic = deploy_intrinsic_gas(code, args)
    if intrinsic > gas_limit:
        return _out_of_gas(gas_limit, "out of gas before the constructor started")
    world = WorldState(host)
    if world.code(address) is not None:
        return _invalid(intrinsic, f"address {address.hex()} already holds a contract")
    try:
        program = machine.programs.load(code)
    except CodeError as exc:
        return _invalid(intrinsic, f"invalid code: {exc}")
    env = TxEnv(world, sender, block)
    constructor = program.abi.constructor
    if constructor is None:
        if args:
            return _invalid(intrinsic, "the contract has no constructor, so takes no arguments")
        start = world.checkpoint()
        failure = _move_value(world, sender, address, value)
        if failure:
            world.rollback(start)
            return _invalid(intrinsic, failure)
        world.set_code(address, code)
        return _success(intrinsic, None, None, world, created=address)
    try:
        stack_args = args_to_stack(constructor, args)
    except AbiError as exc:
        return _invalid(intrinsic, str(exc))
    opened = _open_frame(
        env, program, constructor, sender, address, stack_args, value, gas_limit - intrinsic, 1
    )
    if isinstance(opened, str):
        return _invalid(intrinsic, opened)
    outcome = _run(opened, machine)
    if outcome.status is ExecutionStatus.SUCCESS:
        world.set_code(address, code)
        return _success(gas_limit - outcome.gas_left, None, None, world, created=address)
    return _failure(gas_limit, outcome)


def call(
    host: Host,
    sender: bytes,
    to: bytes,
    method: str,
    args: Sequence[AbiValue],
    value: int,
    gas_limit: int,
    block: BlockContext,
    *,
    machine: Machine | None = None,
) -> ExecutionResult:
    """Call ``method`` of the contract at ``to`` as ``sender``, moving ``value`` to it."""
    return _call(
        host, sender, to, method, args, value, gas_limit, block, static=False, machine=machine
    )


def query(
    host: Host,
    sender: bytes,
    to: bytes,
    method: str,
    args: Sequence[AbiValue],
    gas_limit: int,
    block: BlockContext,
    *,
    machine: Machine | None = None,
) -> ExecutionResult:
    """Run ``method`` without a transaction: any state change halts it (status INVALID).
    Its result never has writes; the ledger runs it against committed state."""
    return _call(host, sender, to, method, args, 0, gas_limit, block, static=True, machine=machine)


def _call(
    host: Host,
    sender: bytes,
    to: bytes,
    method_name: str,
    args: Sequence[AbiValue],
    value: int,
    gas_limit: int,
    block: BlockContext,
    *,
    static: bool,
    machine: Machine | None,
) -> ExecutionResult:
    machine = Machine() if machine is None else machine
    intrinsic = call_intrinsic_gas(args)
    if intrinsic > gas_limit:
        return _out_of_gas(gas_limit, "out of gas before the call started")
    world = WorldState(host)
    env = TxEnv(world, sender, block)
    loaded = _load_method(machine.programs, world, to, method_name)
    if isinstance(loaded, str):
        return _invalid(intrinsic, loaded)
    program, method = loaded
    try:
        stack_args = args_to_stack(method, args)
    except AbiError as exc:
        return _invalid(intrinsic, str(exc))
    opened = _open_frame(
        env, program, method, sender, to, stack_args, value, gas_limit - intrinsic, 1, static
    )
    if isinstance(opened, str):
        return _invalid(intrinsic, opened)
    outcome = _run(opened, machine)
    if outcome.status is ExecutionStatus.SUCCESS:
        return _success(gas_limit - outcome.gas_left, outcome.value, method, world)
    return _failure(gas_limit, outcome)


# ----------------------------------------------------------------------------- frames


def _load_method(
    programs: ProgramCache, world: WorldState, address: bytes, name: str
) -> tuple[Program, MethodAbi] | str:
    """The program and method to run, or why there is none."""
    code = world.code(address) if len(address) == ADDRESS_BYTES else None
    if code is None:
        return f"no contract at address {address.hex()}"
    try:
        program = programs.load(code)
    except CodeError as exc:
        return f"the contract's code is invalid: {exc}"
    method = program.abi.method(name)
    if method is None:
        return f"the contract has no method {_quoted(name)}"
    return program, method


def _open_frame(
    env: TxEnv,
    program: Program,
    method: MethodAbi,
    caller: bytes,
    address: bytes,
    args: tuple[StackValue, ...],
    value: int,
    gas: int,
    depth: int,
    static: bool = False,
) -> Frame | str:
    """A frame ready to run (its value already moved), or why the call cannot start."""
    if depth > MAX_CALL_DEPTH:
        return f"call depth limit of {MAX_CALL_DEPTH} reached"
    if not method.accepts_count(len(args)):
        return f"{method.name} does not take {len(args)} arguments"
    for i, arg in enumerate(args):
        if not stack_value_fits(arg, method.param_type(i)):
            return f"{method.name}: argument {i} is not a valid {method.param_type(i)}"
    if value and not method.payable:
        return f"{method.name} does not accept value"
    checkpoint = env.world.checkpoint()
    failure = _move_value(env.world, caller, address, value)
    if failure:
        env.world.rollback(checkpoint)
        return failure
    return Frame(
        env, program, method, address, caller, value, args, gas,
        static or method.read_only, depth, checkpoint,
    )  # fmt: skip


def _move_value(world: WorldState, sender: bytes, to: bytes, value: int) -> str:
    """Move ``value`` from ``sender`` to ``to``; return why not, or "" when done."""
    if value == 0:
        return ""
    available = world.balance(sender)
    if value > available:
        return f"value {value} exceeds the sender's balance of {available}"
    if sender == to:
        return ""
    received = world.balance(to) + value
    if received > U64_MAX:
        return "value overflows the recipient's balance"
    world.set_balance(sender, available - value)
    world.set_balance(to, received)
    return ""


def _run(top: Frame, machine: Machine) -> Outcome:
    """Run ``top`` and every call it makes to the end, with an explicit frame stack."""
    run = run_frame_fast if machine.engine is Engine.FAST else run_frame
    frames = [top]
    frame = top
    while True:
        signal = run(frame)
        if isinstance(signal, CallRequest):
            child = _open_child(machine.programs, frame, signal)
            if isinstance(child, Frame):
                frames.append(child)
                frame = child
            else:  # it never started: the forwarded gas comes back
                frame.gas += signal.gas
                frame.stack.extend((b"", 0))
            continue
        outcome = _close_frame(frame, signal)
        frames.pop()
        if not frames:
            return outcome
        frame = frames[-1]
        frame.gas += outcome.gas_left
        ok = outcome.status is ExecutionStatus.SUCCESS
        result = outcome.value if outcome.value is not None else b""
        frame.stack.extend((result, 1 if ok else 0))


def _open_child(programs: ProgramCache, frame: Frame, request: CallRequest) -> Frame | str:
    try:
        name = request.method.decode("utf-8")
    except UnicodeDecodeError:
        return "the method name is not UTF-8 text"
    loaded = _load_method(programs, frame.env.world, request.address, name)
    if isinstance(loaded, str):
        return loaded
    program, method = loaded
    return _open_frame(
        frame.env, program, method, frame.address, request.address, request.args,
        request.value, request.gas, frame.depth + 1, frame.static,
    )  # fmt: skip


def _close_frame(frame: Frame, signal: Signal | Outcome) -> Outcome:
    """Turn how a frame stopped into its outcome, rolling back if it failed."""
    if isinstance(signal, Outcome):  # exceptional halt or out of gas
        frame.env.world.rollback(frame.checkpoint)
        return signal
    if isinstance(signal, Revert):
        frame.env.world.rollback(frame.checkpoint)
        return Outcome(
            ExecutionStatus.REVERTED, frame.gas, signal.reason, _reason_text(signal.reason)
        )
    return Outcome(ExecutionStatus.SUCCESS, frame.gas, signal.value)


# ----------------------------------------------------------------------------- the reference loop


def run_frame(frame: Frame) -> Signal | Outcome:
    """The reference loop: run ``frame``, one instruction at a time, until it stops or
    calls out."""
    code = frame.program.code
    while True:
        # Decode the instruction at pc (the validator vouched for the code).
        instruction = decode_instruction(code, frame.pc)
        spec = instruction.spec
        stack_in, stack_out = spec.stack_effect(instruction.imm)
        try:
            # The opcode table's stack effect: enough operands, room for the results.
            check_stack(len(frame.stack), stack_in, stack_out - stack_in)
            # The body: its stack, gas and operation steps.
            frame.pc = instruction.next_pc
            signal = IMPLEMENTATIONS[spec.op](frame, instruction.imm)
        except ExceptionalHalt as halt:
            return halted(halt, instruction.pc, spec.mnemonic)
        if signal is not None:
            return signal


# ----------------------------------------------------------------------------- results


def _reason_text(reason: bytes) -> str:
    """A revert reason as text: itself if UTF-8 without control characters, else hex.

    Error texts are hashed into receipts, so the rule uses no Unicode tables (their
    answers change between Python versions): only the byte values decide.
    """
    try:
        text = reason.decode("utf-8")
    except UnicodeDecodeError:
        return _clip("0x" + reason.hex())
    if any(byte < 0x20 or byte == 0x7F for byte in reason):
        return _clip("0x" + reason.hex())
    return _clip(text)


def _quoted(name: str) -> str:
    """A caller-supplied name for an error text, spelled the same on every validator."""
    if NAME_PATTERN.fullmatch(name):
        return f"'{name}'"
    return "0x" + name.encode("utf-8", "replace").hex()


def _clip(text: str) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= MAX_ERROR_TEXT_BYTES:
        return text
    return raw[: MAX_ERROR_TEXT_BYTES - 3].decode("utf-8", "ignore") + "..."


def _success(
    gas_used: int,
    value: StackValue | None,
    method: MethodAbi | None,
    world: WorldState,
    *,
    created: bytes | None = None,
) -> ExecutionResult:
    returns = None if method is None else method.returns
    typed = None if value is None or returns is None else from_stack(value, returns)
    return ExecutionResult(
        ExecutionStatus.SUCCESS, gas_used, typed, tuple(world.events), "", world.writes(), created
    )


def _failure(gas_limit: int, outcome: Outcome) -> ExecutionResult:
    return ExecutionResult(outcome.status, gas_limit - outcome.gas_left, error=_clip(outcome.error))


def _invalid(gas_used: int, error: str) -> ExecutionResult:
    return ExecutionResult(ExecutionStatus.INVALID, gas_used, error=_clip(error))


def _out_of_gas(gas_limit: int, error: str) -> ExecutionResult:
    return ExecutionResult(ExecutionStatus.OUT_OF_GAS, gas_limit, error=error)
