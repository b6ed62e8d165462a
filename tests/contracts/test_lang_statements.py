"""contracts.lang: every statement of the subset, compiled and run on the VM.

Each test compiles a small contract (tests/contracts/lang_support.py) and checks what the
VM does with it against what the same Python means: assignments to locals, storage
fields and map keys, augmented assignment, del, if/elif/else, while, for over range and
over *args, break/continue, return, pass, calls as statements, require and revert.
"""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from contracts.state import EventRecord
from tests.contracts.lang_support import compile_body, deploy_body
from tests.contracts.vm_support import ALICE, BOB, CAROL, Chain


@pytest.fixture
def chain() -> Chain:
    return Chain()


def test_assign_local_field_and_map_keys(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            total: int
            flag: bool
            note: bytes
            label: str
            by_owner: Map[Address, int]
            pairs: Map[tuple[int, Address], bytes]

            def set_all(self, n: int, who: Address, data: bytes, text: str) -> None:
                doubled = n * 2
                self.total = doubled
                self.flag = n > 3
                self.note = data
                self.label = text
                self.by_owner[who] = n
                self.pairs[n, who] = data

            @view
            def read(self, n: int, who: Address) -> int:
                return self.total + self.by_owner[who] + len(self.pairs[n, who])

            @view
            def read_flag(self) -> bool:
                return self.flag

            @view
            def read_label(self) -> str:
                return self.label
        """,
    )
    assert chain.call(contract, "set_all", 5, BOB, b"xyz", "héllo").ok
    assert chain.query(contract, "read", 5, BOB) == 10 + 5 + 3
    assert chain.query(contract, "read", 4, BOB) == 10 + 5
    assert chain.query(contract, "read_flag") == 1
    assert chain.query(contract, "read_label") == "héllo"
    storage = chain.host.storage_of(contract)
    assert storage[b"\x00"] == (10).to_bytes(8, "big")  # field 0: an int, 8 bytes
    assert storage[b"\x01"] == b"\x01"  # field 1: True is 0x01
    assert storage[b"\x04" + BOB] == (5).to_bytes(8, "big")  # a map entry: prefix ++ key
    assert storage[b"\x05" + (5).to_bytes(8, "big") + BOB] == b"xyz"  # a tuple key


def test_storage_zero_values_and_false_deletes(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            flag: bool
            data: Map[int, bytes]

            def flip(self, on: bool) -> None:
                self.flag = on

            @view
            def state(self) -> int:
                return (1 if self.flag else 0) + len(self.data[7])
        """,
    )
    assert chain.query(contract, "state") == 0
    assert chain.call(contract, "flip", 1).ok
    assert chain.query(contract, "state") == 1
    assert chain.call(contract, "flip", 0).ok
    assert chain.host.storage_of(contract) == {}  # False and empty values are absent slots


def test_annotated_assignment(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self) -> bytes:
                who: bytes = sender()
                who = b"x" + who
                return who
        """,
    )
    assert chain.call(contract, "f").return_value == b"x" + ALICE


@pytest.mark.parametrize(
    ("op", "start", "operand", "expected"),
    [
        ("+=", 7, 3, 10), ("-=", 7, 3, 4), ("*=", 7, 3, 21), ("//=", 7, 3, 2), ("%=", 7, 3, 1),
        ("&=", 6, 3, 2), ("|=", 6, 3, 7), ("^=", 6, 3, 5), ("<<=", 6, 3, 48), (">>=", 6, 1, 3),
    ],
)  # fmt: skip
def test_augmented_assignment_on_locals_fields_and_maps(
    chain: Chain, op: str, start: int, operand: int, expected: int
) -> None:
    contract = deploy_body(
        chain,
        f"""
        class C(Contract):
            x: int
            m: Map[int, int]

            def f(self, start: int, operand: int) -> int:
                local = start
                local {op} operand
                self.x = start
                self.x {op} operand
                self.m[1] = start
                self.m[1] {op} operand
                require(self.x == local and self.m[1] == local, "disagree")
                return local
        """,
    )
    result = chain.call(contract, "f", start, operand)
    assert result.ok, result.error
    assert result.return_value == expected


def test_bytes_augmented_assignment(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            log: bytes

            def add(self, data: bytes) -> bytes:
                self.log += data
                joined = b"<"
                joined += sender()
                return joined + self.log
        """,
    )
    assert chain.call(contract, "add", b"ab").ok
    assert chain.call(contract, "add", b"cd").return_value == b"<" + ALICE + b"abcd"


def test_del_resets_fields_and_keys(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            n: int
            m: Map[bytes, int]

            def __init__(self) -> None:
                self.n = 5
                self.m[b"k"] = 6

            def clear(self) -> int:
                del self.n
                del self.m[b"k"], self.m[b"never set"]
                return self.n + self.m[b"k"]
        """,
    )
    assert len(chain.host.storage_of(contract)) == 2
    assert chain.call(contract, "clear").return_value == 0
    assert chain.host.storage_of(contract) == {}


@pytest.mark.parametrize(("n", "expected"), [(0, b"zero"), (1, b"one"), (5, b"few"), (50, b"many")])
def test_if_elif_else(chain: Chain, n: int, expected: bytes) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def name(self, n: int) -> bytes:
                if n == 0:
                    return b"zero"
                elif n == 1:
                    return b"one"
                elif n < 10:
                    result = b"few"
                else:
                    result = b"many"
                return result
        """,
    )
    assert chain.call(contract, "name", n).return_value == expected


def test_while_with_break_and_continue(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, limit: int) -> int:
                total = 0
                i = 0
                while True:
                    i += 1
                    if i > limit:
                        break
                    if i % 2 == 0:
                        continue
                    total += i
                return total
        """,
    )
    assert chain.call(contract, "f", 9).return_value == 1 + 3 + 5 + 7 + 9
    assert chain.call(contract, "f", 0).return_value == 0


def test_for_over_range_evaluates_bounds_once(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, start: int, stop: int) -> int:
                total = 0
                for i in range(start, stop):
                    stop = 0  # the range was evaluated already
                    i += 100  # the next iteration takes the range's next value
                    total += i
                for j in range(3):
                    if j == 1:
                        continue
                    total = total * 10 + j
                for k in range(10):
                    if k == 2:
                        break
                    total += 1000
                return total
        """,
    )
    expected = sum(range(103, 106))
    expected = (expected * 10 + 0) * 10 + 2 + 2000
    assert chain.call(contract, "f", 3, 6).return_value == expected
    assert chain.call(contract, "f", 6, 3).return_value == 2 + 2000  # an empty range


def test_for_over_args_and_their_len_and_index(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def __init__(self, base: int, *members: Address) -> None:
                require(len(members) >= 1, "no members")
                for member in members:
                    emit("Member", member, base)
                emit("Last", members[len(members) - 1])

            @view
            def nothing(self) -> int:
                return 0
        """,
        [7, ALICE, BOB, CAROL],
    )
    assert chain.query(contract, "nothing") == 0
    _, result = chain.deploy(compile_body("""
        class C(Contract):
            def __init__(self, *flags: bool) -> None:
                count = 0
                for flag in flags:
                    if flag:
                        count += 1
                emit("Count", count, flags[0] == True)
    """).container, [0, 7, 1])  # fmt: skip
    assert result.ok and result.events[0].args == (2, 0)


def test_events_of_args_in_order(chain: Chain) -> None:
    code = compile_body(
        """
        class C(Contract):
            def __init__(self, *members: Address) -> None:
                for member in members:
                    emit("Member", member)
        """
    ).container
    address, result = chain.deploy(code, [ALICE, BOB])
    assert result.events == (
        EventRecord(address, "Member", (ALICE,)),
        EventRecord(address, "Member", (BOB,)),
    )


def test_pass_return_and_calls_as_statements(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            n: int

            def bump(self) -> int:
                self.n += 1
                return self.n

            def f(self) -> None:
                pass
                self.bump()
                self.bump()
                if self.n > 100:
                    return
                emit("N", self.n)
        """,
    )
    result = chain.call(contract, "f")
    assert result.ok and result.events == (EventRecord(contract, "N", (2,)),)
    assert result.return_value is None


def test_require_and_revert_roll_back_with_their_message(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            n: int

            def f(self, x: int) -> int:
                self.n = x
                emit("Set", x)
                require(x != 1, "x must not be 1")
                if x == 2:
                    revert("two is refused")
                return x
        """,
    )
    for x, message in ((1, "x must not be 1"), (2, "two is refused")):
        result = chain.call(contract, "f", x)
        assert result.status is ExecutionStatus.REVERTED and result.error == message
        assert result.events == () and not result.writes
    assert chain.call(contract, "f", 3).return_value == 3


def test_methods_and_helpers_call_each_other(chain: Chain) -> None:
    contract = deploy_body(
        chain,
        """
        def square(x: int) -> int:
            return x * x

        def sum_of_squares(a: int, b: int) -> int:
            return square(a) + square(b)

        class C(Contract):
            calls: int

            def f(self, a: int, b: int) -> int:
                return self._twice(sum_of_squares(a, b)) + self.g(a)

            def g(self, a: int) -> int:
                self.calls += 1
                return a

            def _twice(self, x: int) -> int:
                self.calls += 1
                return 2 * x

            @view
            def count(self) -> int:
                return self.calls
        """,
    )
    assert chain.call(contract, "f", 3, 4).return_value == 2 * 25 + 3
    assert chain.call(contract, "g", 9).return_value == 9  # g is public and a subroutine
    assert chain.query(contract, "count") == 3


def test_a_public_method_called_internally_keeps_its_abi(chain: Chain) -> None:
    compiled = compile_body(
        """
        class C(Contract):
            def check(self, flag: bool, who: Address) -> bool:
                return flag and who == sender()

            def f(self) -> bool:
                return self.check(True, sender())
        """
    )
    method = compiled.abi.method("check")
    assert method is not None and method.signature() == "check(flag: u64, who: address) -> u64"
    contract = chain.deployed(compiled.container)
    assert chain.call(contract, "check", 5, ALICE).return_value == 1  # any u64 is a bool
    assert chain.call(contract, "check", 0, ALICE).return_value == 0
    assert chain.call(contract, "f").return_value == 1


def test_dead_code_after_a_statement_that_never_falls_through_is_dropped(chain: Chain) -> None:
    """As mypy does, the compiler skips what cannot run (even what it would refuse)."""
    contract = deploy_body(
        chain,
        """
        class C(Contract):
            def f(self, x: int) -> int:
                if x > 0:
                    return 1
                else:
                    return 2
                y = 1.5

            def g(self) -> int:
                while True:
                    return 3
                return x

            def h(self) -> int:
                revert("no")
                print("unreachable")
        """,
    )
    assert [chain.call(contract, m, *a).return_value for m, a in (("f", (5,)), ("f", (0,)))] == [
        1,
        2,
    ]
    assert chain.call(contract, "g").return_value == 3
    assert chain.call(contract, "h").error == "no"
