"""contracts.lang: every expression of the subset, compiled and run on the VM.

Literals and constants, names, arithmetic with the VM's overflow rules (a result outside
u64 halts the call, as a Python int outside [0, 2**64) would be refused), bit operations
and shifts, comparisons, and/or/not (short-circuit, as in Python), conditional
expressions, bytes (+, len, indexing, slicing), and every contracts.lang function.
"""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from contracts.lang.compiler import compile_source
from contracts.limits import U64_MAX
from contracts.state import EventRecord
from crypto.hashing import sha256
from tests.contracts.lang_support import compile_body, deploy_body
from tests.contracts.vm_support import ALICE, BOB, Chain


@pytest.fixture
def chain() -> Chain:
    return Chain()


BINARY = """
class C(Contract):
    def f(self, a: int, b: int) -> int:
        return a {op} b
"""


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("+", 2, 3, 5), ("+", U64_MAX, 1, None), ("-", 5, 3, 2), ("-", 3, 5, None),
        ("*", 2**32, 2**31, 2**63), ("*", 2**32, 2**32, None), ("//", 7, 2, 3), ("//", 7, 0, None),
        ("%", 7, 3, 1), ("%", 7, 0, None), ("&", 12, 10, 8), ("|", 12, 10, 14),
        ("^", 12, 10, 6), ("<<", 3, 4, 48), ("<<", 1, 63, 2**63), ("<<", 2, 63, None),
        ("<<", 0, 64, None), (">>", 48, 4, 3), (">>", 1, 64, None),
    ],
)  # fmt: skip
def test_integer_operators_follow_python_or_halt(
    chain: Chain, op: str, a: int, b: int, expected: int | None
) -> None:
    """Where Python's result is a u64 the VM gives it; where it is not (or Python raises)
    the call halts: status invalid, nothing written."""
    contract = deploy_body(chain, BINARY.format(op=op))
    result = chain.call(contract, "f", a, b)
    if expected is None:
        assert result.status is ExecutionStatus.INVALID, result
    else:
        assert result.ok and result.return_value == expected


@pytest.mark.parametrize(
    ("op", "pairs"),
    [
        ("<", [(1, 2, 1), (2, 2, 0)]), ("<=", [(2, 2, 1), (3, 2, 0)]),
        (">", [(3, 2, 1), (2, 2, 0)]), (">=", [(2, 2, 1), (1, 2, 0)]),
        ("==", [(2, 2, 1), (1, 2, 0)]), ("!=", [(1, 2, 1), (2, 2, 0)]),
    ],
)  # fmt: skip
def test_comparisons(chain: Chain, op: str, pairs: list[tuple[int, int, int]]) -> None:
    contract = deploy_body(
        chain,
        f"""
        class C(Contract):
            def f(self, a: int, b: int) -> bool:
                return a {op} b

            def g(self, a: int, b: int) -> int:
                if a {op} b:
                    return 1
                return 0

            def n(self, a: int, b: int) -> bool:
                return not (a {op} b)
        """,
    )
    for a, b, expected in pairs:
        assert chain.call(contract, "f", a, b).return_value == expected
        assert chain.call(contract, "g", a, b).return_value == expected
        assert chain.call(contract, "n", a, b).return_value == 1 - expected


def test_bytes_and_address_equality(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, who: Address, data: bytes, text: str) -> int:
                score = 0
                if who == sender():
                    score += 1
                if data != b"":
                    score += 10
                if who == data:
                    score += 100
                if text == text:
                    score += 1000
                return score
        """,
    )
    assert chain.call(contract, "f", ALICE, b"", "").return_value == 1001
    assert chain.call(contract, "f", BOB, BOB, "x").return_value == 1110


def test_and_or_not_short_circuit(chain: Chain) -> None:
    """The right operand runs only when Python would run it: here it would divide by 0."""
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, x: int) -> bool:
                return x != 0 and 10 // x > 1

            def g(self, x: int) -> bool:
                return x == 0 or 10 // x > 1

            def h(self, x: int) -> int:
                if not (x == 0 or 10 // x == 0) and not x > 5:
                    return 1
                return 0

            def k(self, a: bool, b: bool, c: bool) -> bool:
                return a and b or not c
        """,
    )
    assert [chain.call(contract, "f", x).return_value for x in (0, 2, 7)] == [0, 1, 0]
    assert [chain.call(contract, "g", x).return_value for x in (0, 2, 7)] == [1, 1, 0]
    assert [chain.call(contract, "h", x).return_value for x in (0, 2, 7, 20)] == [0, 1, 0, 0]
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                expected = int((a and b) or not c)
                assert chain.call(contract, "k", a, b, c).return_value == expected


def test_conditional_expression_and_constants(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        LIMIT = 10
        DOUBLE = LIMIT * 2
        TAG = b"t" + b"ag"
        ON = True
        WIDTH = 3

        class C(Contract):
            def f(self, x: int) -> int:
                return x if x < LIMIT else DOUBLE

            def g(self) -> bytes:
                return TAG if ON else b""

            def h(self) -> bytes:
                return bytes(WIDTH) + bytes(WIDTH - 1)

            def nothing(self) -> None:
                return None
        """,
    )
    assert chain.call(contract, "f", 3).return_value == 3
    assert chain.call(contract, "f", 30).return_value == 20
    assert chain.call(contract, "g").return_value == b"tag"
    assert chain.call(contract, "h").return_value == bytes(5)
    assert chain.call(contract, "nothing").ok


def test_bytes_operations(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, data: bytes) -> bytes:
                return data[1:3] + data[:1] + data[2:] + bytes(2)

            def g(self, data: bytes, i: int) -> int:
                return data[i] + len(data)

            def h(self, data: bytes) -> bytes:
                return sha256(data) + to_bytes(from_bytes(data[:2]) + 1)
        """,
    )
    assert chain.call(contract, "f", b"abcd").return_value == b"bc" + b"a" + b"cd" + bytes(2)
    assert chain.call(contract, "g", b"\x05\x07", 1).return_value == 7 + 2
    out_of_range = chain.call(contract, "g", b"\x05", 1)  # Python: IndexError
    assert out_of_range.status is ExecutionStatus.INVALID
    assert chain.call(contract, "f", b"a").status is ExecutionStatus.INVALID  # [1:3] of 1 byte
    expected = sha256(b"\x01\x02") + (0x0103).to_bytes(8, "big")
    assert chain.call(contract, "h", b"\x01\x02").return_value == expected


def test_environment_functions(chain: Chain) -> None:
    chain.height, chain.timestamp_ms = 42, 1_700_000_123_456
    chain.fund(ALICE, 500)
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            @payable
            def f(self) -> None:
                emit("Env", sender(), origin(), self_address(), block_height(), block_time())
                emit("Value", call_value(), balance(self_address()), balance(sender()))
        """,
    )
    result = chain.call(contract, "f", value=30)
    assert result.ok, result.error
    assert result.events == (
        EventRecord(contract, "Env", (ALICE, ALICE, contract, 42, 1_700_000_123_456)),
        EventRecord(contract, "Value", (30, 30, 470)),
    )


def test_transfer_and_address_cast(chain: Chain) -> None:
    chain.fund(ALICE, 100)
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            @payable
            def pay(self, to: bytes, amount: int) -> None:
                transfer(Address(to), amount)
        """,
    )
    assert chain.call(contract, "pay", BOB, 40, value=100).ok
    assert chain.host.get_balance(BOB) == 40 and chain.host.get_balance(contract) == 60
    short = chain.call(contract, "pay", b"short", 1)
    assert short.status is ExecutionStatus.INVALID and "assert" in short.error


def test_cross_contract_call_returns_success(chain: Chain) -> None:
    chain.fund(ALICE, 100)
    callee = deploy_body(
        chain,
        """
        class Callee(Contract):
            hits: int

            @payable
            def ping(self, n: int) -> int:
                require(n < 5, "too big")
                self.hits += n
                return self.hits
        """,
    )
    caller = deploy_body(
        chain,
        """
        class Caller(Contract):
            @payable
            def go(self, target: Address, n: int) -> bool:
                return call(target, "ping", n, value=call_value())

            def go_bytes(self, target: Address, method: bytes, n: int) -> None:
                ok = call(target, method, n)
                require(ok, "the call failed")
        """,
    )
    assert chain.call(caller, "go", callee, 3, value=10).return_value == 1
    assert chain.host.get_balance(callee) == 10
    assert chain.call(caller, "go", callee, 9).return_value == 0  # reverted: its flag is 0
    assert chain.call(caller, "go_bytes", callee, b"ping", 1).ok
    missing = chain.call(caller, "go_bytes", callee, b"nope", 1)
    assert missing.status is ExecutionStatus.REVERTED and missing.error == "the call failed"
    assert chain.host.storage_of(callee) == {b"\x00": (4).to_bytes(8, "big")}


def test_evaluation_order_of_a_map_assignment(chain: Chain) -> None:
    """``self.m[k()] = v()``: Python evaluates v before k; both fail here, and the one that
    fails first decides the revert message."""
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            m: Map[int, int]

            def key(self) -> int:
                revert("key first")

            def value(self) -> int:
                revert("value first")

            def f(self) -> None:
                self.m[self.key()] = self.value()
        """,
    )
    assert chain.call(contract, "f").error == "value first"


def test_a_second_read_of_a_slot_is_not_stale(chain: Chain) -> None:
    """The compiler keeps a storage read for a second read of the same slot in straight-line
    code; a write, a call or a join in between must make it read again."""
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            n: int
            m: Map[Address, int]

            def _inc(self) -> int:
                self.n += 1
                return 0

            def f(self, c: bool) -> int:
                a = self.n + self._inc() + self.n
                if c:
                    self.n = 10
                    b = self.n
                else:
                    b = 0
                return a * 1000 + b * 100 + self.n

            def g(self, who: Address) -> int:
                self.m[who] += self.m[who] + 1
                return self.m[who] + self.m[who]
        """,
    )
    assert chain.call(contract, "f", 0).return_value == 1 * 1000 + 0 + 1
    assert chain.call(contract, "f", 1).return_value == 3 * 1000 + 10 * 100 + 10
    assert chain.call(contract, "g", BOB).return_value == 2
    assert chain.call(contract, "g", BOB).return_value == 6


def test_the_token_transfer_reads_the_balance_once() -> None:
    from contracts.examples import source

    assembly = compile_source(source("token", "py"), "token.py").assembly
    transfer = assembly.split(".method transfer")[1].split(".method")[0]
    assert transfer.count("\n    sload") == 2  # the sender's balance once, the recipient's


def test_the_compiled_code_is_small_and_readable() -> None:
    compiled = compile_body(
        """
        class C(Contract):
            def f(self, x: int) -> int:
                require(not (x == 0), "zero")
                return x
        """
    )
    assert '; 4: require(not (x == 0), "zero")' in compiled.assembly
    # `not (x == 0)` in a condition folds into one branch: no eq, no not
    assert "\n    eq\n" not in compiled.assembly and "\n    not\n" not in compiled.assembly
