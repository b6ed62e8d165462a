"""Entry points, rollback, limits and properties of the interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts.interpreter as interpreter
from contracts import limits
from contracts.assembler import assemble
from contracts.examples import load
from contracts.gas import GAS_CALL_INTRINSIC, GAS_DEPLOY_INTRINSIC, GAS_PER_CODE_BYTE
from contracts.interpreter import (
    ExecutionStatus,
    Machine,
    call,
    contract_address,
    deploy,
    query,
)
from contracts.programs import ProgramCache
from contracts.state import BlockContext, MemoryHost, StateWrites
from ledger.chain import types as chain_types
from tests.contracts.vm_support import (
    ALICE,
    BOB,
    GAS,
    RANDOM_MAIN,
    RANDOM_OTHER,
    Chain,
    random_containers,
)

BLOCK = BlockContext(7, 1_000)
COUNTER = """
.constructor(start: u64)
    push "n"
    arg 0
    itob
    sstore
    halt
.method bump() -> u64 payable
    push "n"
    sload
    btoi
    push 1
    add
    dup 0
    itob
    push "n"
    swap 1
    sstore
    return
.method get() -> u64 readonly
    push "n"
    sload
    btoi
    return
.method spin()
loop:
    push "n"
    push "x"
    sstore
    jump loop
"""


@pytest.fixture
def chain() -> Chain:
    return Chain()


def test_status_numbers_and_limits_match_the_ledger() -> None:
    for status in ExecutionStatus:
        assert chain_types.ReceiptStatus(status.value).name == status.name
    assert limits.MAX_EVENTS == chain_types.MAX_EVENTS_PER_RECEIPT
    assert limits.MAX_ERROR_TEXT_BYTES == chain_types.MAX_ERROR_TEXT_BYTES
    assert limits.MAX_ARGS == chain_types.MAX_ABI_ARGS
    assert limits.MAX_NAME_BYTES == chain_types.MAX_METHOD_NAME_BYTES


def test_results_fit_the_ledgers_receipt(chain: Chain) -> None:
    token = chain.deployed(load("token"), [100])
    result = chain.call(token, "transfer", BOB, 5)
    events = tuple(chain_types.Event(e.address, e.name, e.args) for e in result.events)
    receipt = chain_types.Receipt(
        bytes(32), chain_types.ReceiptStatus(result.status), result.gas_used,
        result.return_value, events, result.error,
    )  # fmt: skip
    assert chain_types.Receipt.decode(receipt.encode()) == receipt


def test_deploy_writes_code_storage_and_created_address(chain: Chain) -> None:
    address, result = chain.deploy(COUNTER, [5])
    assert result.ok and result.created_address == address
    assert result.writes.code == ((address, assemble(COUNTER)),)
    assert chain.query(address, "get") == 5
    assert chain.call(address, "bump").return_value == 6


@pytest.mark.parametrize(
    ("method", "args", "value", "error"),
    [
        ("nope", (), 0, "the contract has no method 'nope'"),
        ("constructor", (1,), 0, "no method 'constructor'"),
        ("bump", (1,), 0, "bump: takes 0 arguments, got 1"),
        ("get", (), 1, "get does not accept value"),
        ("bump", (), 10**6, "exceeds the sender's balance"),
    ],
)
def test_calls_that_cannot_start_cost_only_intrinsic_gas(
    chain: Chain, method: str, args: tuple[int, ...], value: int, error: str
) -> None:
    address = chain.deployed(COUNTER, [0])
    result = chain.call(address, method, *args, value=value)
    assert result.status is ExecutionStatus.INVALID
    assert error in result.error
    assert result.gas_used == GAS_CALL_INTRINSIC + 8 * len(args)
    assert not result.writes


def test_call_to_nothing_and_to_invalid_code(chain: Chain) -> None:
    result = chain.call(BOB, "get")
    assert result.status is ExecutionStatus.INVALID and "no contract at" in result.error
    chain.host.code[BOB] = b"QVM\x01garbage"
    result = chain.call(BOB, "get")
    assert result.status is ExecutionStatus.INVALID and "code is invalid" in result.error


def test_deploy_failures(chain: Chain) -> None:
    address = chain.deployed(COUNTER, [0])
    again = deploy(chain.host, ALICE, address, assemble(COUNTER), [0], 0, GAS, BLOCK)
    assert again.status is ExecutionStatus.INVALID and "already holds a contract" in again.error
    bad = deploy(chain.host, ALICE, BOB, b"QVM\x01\x00", [], 0, GAS, BLOCK)
    assert bad.status is ExecutionStatus.INVALID and bad.error.startswith("invalid code:")
    assert bad.gas_used == GAS_DEPLOY_INTRINSIC + 5 * GAS_PER_CODE_BYTE
    no_ctor = deploy(chain.host, ALICE, BOB, assemble(".method m()\n halt"), [1], 0, GAS, BLOCK)
    assert "has no constructor" in no_ctor.error
    wrong_args = deploy(chain.host, ALICE, BOB, assemble(COUNTER), ["x"], 0, GAS, BLOCK)
    assert "expected a u64" in wrong_args.error
    short = deploy(chain.host, ALICE, BOB, assemble(COUNTER), [1], 0, 2000, BLOCK)
    assert short.status is ExecutionStatus.OUT_OF_GAS and short.gas_used == 2000
    assert not (again.writes or bad.writes or no_ctor.writes or wrong_args.writes)
    assert BOB not in chain.host.code


def test_query_never_writes(chain: Chain) -> None:
    address = chain.deployed(COUNTER, [3])
    result = query(chain.host, ALICE, address, "bump", (), GAS, BLOCK)
    assert result.status is ExecutionStatus.INVALID and "read-only" in result.error
    ok = query(chain.host, ALICE, address, "get", (), GAS, BLOCK)
    assert ok.ok and ok.return_value == 3 and not ok.writes


def test_infinite_loop_runs_out_of_gas_with_state_unchanged(chain: Chain) -> None:
    address = chain.deployed(COUNTER, [3])
    chain.fund(ALICE, 1000)
    storage, balances = dict(chain.host.storage), dict(chain.host.balances)
    result = chain.call(address, "spin", gas=50_000)
    assert result.status is ExecutionStatus.OUT_OF_GAS
    assert result.gas_used == 50_000 and not result.writes and not result.events
    assert chain.host.storage == storage and chain.host.balances == balances


def test_revert_returns_unused_gas_and_rolls_back_value(chain: Chain) -> None:
    address = chain.deployed(
        '.method m() payable\n push "k"\n push "v"\n sstore\n push "stop"\n revert'
    )
    chain.fund(ALICE, 100)
    result = chain.call(address, "m", value=40)
    assert result.status is ExecutionStatus.REVERTED and result.error == "stop"
    assert result.gas_used == GAS_CALL_INTRINSIC + 1 + 1 + 520 + 1 + 1
    assert chain.host.balances == {ALICE: 100}


def test_revert_reason_is_clipped(chain: Chain) -> None:
    address = chain.deployed('.method m()\n push "' + "é" * 2000 + '"\n revert')
    result = chain.call(address, "m")
    assert result.status is ExecutionStatus.REVERTED
    assert len(result.error.encode()) <= limits.MAX_ERROR_TEXT_BYTES
    assert result.error.endswith("...")


CHAIN_LINK = """
.method hop() -> u64
    push "hit"
    push 0x01
    sstore
    push @next
    push "hop"
    push 0
    call 0
    jz stopped
    push 1
    add
    return
stopped:
    pop
    push 1
    return
"""


def test_deep_call_chain_stops_at_the_depth_limit(chain: Chain) -> None:
    """A chain of 20 distinct contracts: the 17th call fails softly, the rest unwinds."""
    count = limits.MAX_CALL_DEPTH + 4
    addresses = [bytes([0x40 + i]) * 20 for i in range(count)]
    for i, address in enumerate(addresses):
        following = addresses[(i + 1) % count]
        chain.host.code[address] = assemble(CHAIN_LINK.replace("@next", "0x" + following.hex()))
    result = chain.call(addresses[0], "hop")
    assert result.ok and result.return_value == limits.MAX_CALL_DEPTH
    hit = [a for a in addresses if chain.host.storage.get((a, b"hit"))]
    assert hit == addresses[: limits.MAX_CALL_DEPTH]


def test_frames_do_not_use_the_python_stack(monkeypatch: pytest.MonkeyPatch, chain: Chain) -> None:
    """With the depth limit lifted, 3000 nested calls run without a RecursionError."""
    monkeypatch.setattr(interpreter, "MAX_CALL_DEPTH", 3000)
    address = bytes([0x77]) * 20
    chain.host.code[address] = assemble(CHAIN_LINK.replace("@next", "0x" + address.hex()))
    result = chain.call(address, "hop", gas=10**40)
    assert result.ok and result.return_value == 3000


def test_program_cache_reuses_validated_code() -> None:
    raw = assemble(COUNTER)
    programs = ProgramCache()
    assert programs.load(raw) is programs.load(raw)
    assert len(programs) == 1
    assert ProgramCache().load(raw) is not programs.load(raw)


def test_the_machine_owns_the_program_cache(chain: Chain) -> None:
    """No module keeps programs: a Machine passed in does, and calls without one start empty."""
    address = chain.deployed(COUNTER, [1])
    machine = Machine(ProgramCache())
    first = call(chain.host, ALICE, address, "bump", (), 0, GAS, BLOCK, machine=machine)
    again = call(chain.host, ALICE, address, "bump", (), 0, GAS, BLOCK, machine=machine)
    assert first.ok and again.ok and first.gas_used == again.gas_used
    assert len(machine.programs) == 1
    alone = call(chain.host, ALICE, address, "bump", (), 0, GAS, BLOCK)
    assert alone == first
    bounded = Machine(ProgramCache(capacity_bytes=10))
    assert query(chain.host, ALICE, address, "get", (), GAS, BLOCK, machine=bounded).ok
    assert len(bounded.programs) == 0


def test_writes_are_sorted(chain: Chain) -> None:
    address = chain.deployed(
        '.method m()\n push "b"\n push "1"\n sstore\n push "a"\n push "1"\n sstore\n halt'
    )
    result = chain.call(address, "m")
    assert [key for _, key, _ in result.writes.storage] == [b"a", b"b"]
    assert StateWrites() == interpreter.NO_WRITES and not StateWrites()


def test_contract_address_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        contract_address(b"short", 0)
    with pytest.raises(ValueError):
        contract_address(ALICE, -1)


# ----------------------------------------------------------------------------- properties


def _random_host(main: bytes, other: bytes | None) -> MemoryHost:
    host = MemoryHost(balances={ALICE: 1000, RANDOM_MAIN: 50})
    host.code[RANDOM_MAIN] = main
    if other is not None:
        host.code[RANDOM_OTHER] = other
    host.storage[(RANDOM_MAIN, b"k")] = b"\x00\x01"
    return host


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    random_containers(),
    st.none() | random_containers(),
    st.lists(st.integers(0, 2**64 - 1), max_size=4),
    st.integers(0, 20_000),
    st.sampled_from(["main", "other"]),
    st.integers(0, 3),
    st.booleans(),
)
def test_random_programs_stay_within_their_gas(
    main: bytes,
    other: bytes | None,
    args: list[int],
    gas_limit: int,
    method: str,
    value: int,
    as_query: bool,
) -> None:
    """Never an escaping exception, never more gas than the limit, writes only on success,
    and the same inputs always give the same result."""
    results = []
    for _ in range(2):
        host = _random_host(main, other)
        if as_query:
            result = query(host, ALICE, RANDOM_MAIN, method, args, gas_limit, BLOCK)
        else:
            result = call(host, ALICE, RANDOM_MAIN, method, args, value, gas_limit, BLOCK)
        assert 0 <= result.gas_used <= gas_limit
        if not result.ok:
            assert not result.writes and not result.events and result.return_value is None
        if as_query:
            assert not result.writes
        results.append(result)
    assert results[0] == results[1]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([ALICE, BOB]),
            st.sampled_from([ALICE, BOB, bytes(20)]),
            st.integers(0, 2**64 - 1) | st.integers(0, 600),
            st.integers(0, 3000),
        ),
        max_size=12,
    )
)
def test_token_transfers_conserve_supply(moves: list[tuple[bytes, bytes, int, int]]) -> None:
    chain = Chain()
    token = chain.deployed(load("token"), [1000])
    for sender, to, amount, gas in moves:
        result = chain.call(token, "transfer", to, amount, sender=sender, gas=gas)
        assert result.gas_used <= gas
    holders = [ALICE, BOB, bytes(20)]
    total = sum(chain.query(token, "balance_of", h) for h in holders)  # type: ignore[misc]
    assert total == chain.query(token, "total_supply") == 1000


_SEED_SCRIPT = """
from contracts import MemoryHost, BlockContext, call, deploy
from contracts.examples import load
from crypto.hashing import sha256
host, block, out = MemoryHost(balances={b"a" * 20: 10**6}), BlockContext(5, 0), []
members = [bytes([i]) * 20 for i in range(1, 6)]
host.balances.update({m: 1000 for m in members})
for name, address, args in (("vote", b"v" * 20, [3, *members]), ("token", b"t" * 20, [10**6])):
    out.append(deploy(host, members[0], address, load(name), args, 500, 10**7, block))
    host.apply(out[-1].writes)
for i, m in enumerate(members):
    out.append(call(host, m, b"v" * 20, "propose_transfer", (members[-1 - i], 50 + i), 0, 10**6, block))
    host.apply(out[-1].writes)
    for other in members:
        out.append(call(host, other, b"v" * 20, "approve", (i,), 0, 10**6, block))
        host.apply(out[-1].writes)
    out.append(call(host, members[0], b"t" * 20, "transfer", (m, 7 * i), 0, 10**6, block))
    host.apply(out[-1].writes)
print(sha256(repr(out).encode()).hex())
"""


def test_results_do_not_depend_on_the_hash_seed() -> None:
    root = Path(__file__).resolve().parents[2]
    digests = [
        subprocess.run(
            [sys.executable, "-c", _SEED_SCRIPT],
            cwd=root,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for seed in ("0", "1", "12345")
    ]
    assert len(digests[0].strip()) == 64
    assert digests[0] == digests[1] == digests[2]
