"""contracts.lang, differentially: random programs in the subset, run by CPython on plain
ints and dicts and by the VM, must agree -- results, storage, events, reverts with their
messages, and halts (u64 overflow, division by zero, shifts of 64 or more).

The CPython side runs the very source the compiler gets, with two changes made on its
syntax tree: every integer operation goes through :func:`_u64`, which computes it with
Python ints and raises :class:`_Halt` where the VM's rule (a result outside [0, 2**64),
a zero divisor, a shift of 64 or more) halts; and augmented assignments are spelled out
with the same order of evaluation. Storage is plain ints and a dict whose missing keys
read as 0. Everything else (if/while/for, and/or/not, calls, require) is CPython's own.

The default run draws a few dozen programs; the slow tier draws many more.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.interpreter import ExecutionStatus
from contracts.lang.compiler import compile_source
from contracts.limits import U64_MAX
from tests.contracts.vm_support import Chain

GAS = 20_000_000
INT_OPS = ["+", "-", "*", "//", "%", "&", "|", "^", "<<", ">>"]
AUG_OPS = ["+", "-", "*", "//", "%", "|", "^"]
COMPARE_OPS = ["<", "<=", ">", ">=", "==", "!="]
INTERESTING = [0, 1, 2, 3, 7, 63, 64, 2**32, 2**63, U64_MAX - 1, U64_MAX]
INT_LOCALS = ["v0", "v1", "v2"]
#: Storage reads the compiler may remember within straight-line code (a second read of
#: the same slot loads the first one's value): programs read them often.
STORAGE_READS = ["self.a", "self.b", "self.m[x]", "self.m[y]", "self.m[0]"]
BOOL_LOCALS = ["f0", "f1"]

PRELUDE = """\
from contracts.lang import Contract, Map, emit, require, view


def helper(p: int, q: int) -> int:
    require(p % 5 != 4, "helper refuses")
    {helper}


class P(Contract):
    a: int
    b: int
    flag: bool
    m: Map[int, int]

    def run(self, x: int, y: int) -> int:
{body}

    def total(self, k: int) -> int:
        return self.a + self.m[k]

    def _bump(self, v: int) -> int:
        require(v % 4 != 3, "bump refuses")
        self.b += v % 7
        self.m[v % 5] += 1
        return self.b
"""


# ----------------------------------------------------------------------------- programs


@dataclass
class _Gen:
    draw: st.DrawFn
    ints: list[str] = field(default_factory=lambda: ["x", "y"])
    bools: list[str] = field(default_factory=list)
    depth: int = 0  # statement nesting
    loops: int = 0
    counters: int = 0
    messages: int = 0

    def int_expr(self, level: int = 0, *, pure: bool = False) -> str:
        draw = self.draw
        choices = ["literal", "name"] + (["storage"] if not pure else [])
        if level < 3:
            choices += ["binop", "binop", "ifexp"] + ([] if pure else ["helper", "call"])
        kind = draw(st.sampled_from(choices))
        if kind == "literal":
            return str(draw(st.integers(0, 3) | st.sampled_from(INTERESTING) | st.integers(0, 20)))
        if kind == "name":
            return draw(st.sampled_from(self.ints))
        if kind == "storage":
            return draw(st.sampled_from([*STORAGE_READS, f"self.m[{self.int_expr(3)}]"]))
        if kind == "binop":
            op = draw(st.sampled_from(INT_OPS))
            left = self.int_expr(level + 1, pure=pure)
            return f"({left} {op} {self.int_expr(level + 1, pure=pure)})"
        if kind == "ifexp":
            then = self.int_expr(level + 1, pure=pure)
            return f"({then} if {self.bool_expr(level + 1, pure=pure)} else {self.int_expr(level + 1, pure=pure)})"
        if kind == "helper":
            return f"helper({self.int_expr(level + 1)}, {self.int_expr(level + 1)})"
        method = draw(st.sampled_from(["self._bump", "self.total"]))
        return f"{method}({self.int_expr(level + 1)})"

    def bool_expr(self, level: int = 0, *, pure: bool = False) -> str:
        draw = self.draw
        choices = ["compare", "compare", "name"] + ([] if pure else ["flag"])
        if level < 3:
            choices += ["not", "notcompare", "andor", "guarded"]
        kind = draw(st.sampled_from(choices))
        if kind == "compare":
            op = draw(st.sampled_from(COMPARE_OPS))
            left = self.int_expr(level + 1, pure=pure)
            return f"({left} {op} {self.int_expr(level + 1, pure=pure)})"
        if kind == "name":
            return draw(st.sampled_from(["True", "False", *self.bools]))
        if kind == "flag":
            return "self.flag"
        if kind == "not":
            return f"(not {self.bool_expr(level + 1, pure=pure)})"
        if kind == "notcompare":
            op = draw(st.sampled_from(COMPARE_OPS))
            left, right = draw(st.sampled_from(self.ints)), draw(st.sampled_from(self.ints))
            return f"(not ({left} {op} {right}))"
        if kind == "guarded":  # the right operand may fail: only short-circuit saves it
            op = draw(st.sampled_from(["and", "or"]))
            risky = draw(st.sampled_from(["-", "//", "%", "*", "<<"]))
            left, right = draw(st.sampled_from(self.ints)), draw(st.sampled_from(self.ints))
            guard = self.bool_expr(level + 1, pure=pure)
            return f"({guard} {op} (({left} {risky} {right}) > {self.int_expr(3, pure=pure)}))"
        op = draw(st.sampled_from(["and", "or"]))
        left = self.bool_expr(level + 1, pure=pure)
        return f"({left} {op} {self.bool_expr(level + 1, pure=pure)})"

    def block(self, indent: int) -> list[str]:
        count = self.draw(st.integers(1, 3))
        lines: list[str] = []
        for _ in range(count):
            lines += self.statement(indent)
        return lines

    def statement(self, indent: int) -> list[str]:
        draw = self.draw
        pad = " " * indent
        kinds = ["assign", "assign", "aug", "store", "store", "require", "emit", "reread"]
        if self.depth < 2:
            kinds += ["if", "for", "while"]
        if self.loops:
            kinds += ["break"]
        kind = draw(st.sampled_from(kinds))
        if kind == "assign":
            if draw(st.booleans()):
                return [f"{pad}{draw(st.sampled_from(INT_LOCALS))} = {self.int_expr()}"]
            return [f"{pad}{draw(st.sampled_from(BOOL_LOCALS))} = {self.bool_expr()}"]
        if kind == "aug":
            target = draw(st.sampled_from([*INT_LOCALS, "self.a", "self.m[x % 3]", "self.m[x]"]))
            return [f"{pad}{target} {draw(st.sampled_from(AUG_OPS))}= {self.int_expr()}"]
        if kind == "store":
            which = draw(st.sampled_from(["a", "flag", "m", "del"]))
            if which == "a":
                return [f"{pad}self.a = {self.int_expr()}"]
            if which == "flag":
                return [f"{pad}self.flag = {self.bool_expr()}"]
            if which == "m":
                return [f"{pad}self.m[{self.int_expr(2)}] = {self.int_expr()}"]
            return [f"{pad}del self.m[{self.int_expr(2)}]"]
        if kind == "reread":  # one slot before and after something that may change it
            first = draw(st.sampled_from(STORAGE_READS))
            second = draw(st.sampled_from([first, first, *STORAGE_READS]))
            between = self.int_expr(1)
            if draw(st.booleans()):
                between = f"self._bump({self.int_expr(2)})"
            target = draw(st.sampled_from(INT_LOCALS))
            return [f"{pad}{target} = ({first} + {between}) ^ {second}"]
        if kind == "require":
            self.messages += 1
            return [f'{pad}require({self.bool_expr()}, "r{self.messages}")']
        if kind == "emit":
            return [f'{pad}emit("E", {self.int_expr()}, {self.bool_expr()})']
        if kind == "break":
            word = draw(st.sampled_from(["break", "continue"]))
            return [f"{pad}if {self.bool_expr()}:", f"{pad}    {word}"]
        self.depth += 1
        try:
            if kind == "if":
                lines = [f"{pad}if {self.bool_expr()}:", *self.block(indent + 4)]
                if draw(st.booleans()):
                    lines += [f"{pad}else:", *self.block(indent + 4)]
                if draw(st.booleans()):
                    lines += [f"{pad}    return {self.int_expr()}"]
                return lines
            self.loops += 1
            if kind == "for":
                var = f"i{self.depth}"
                bound = f"range({self.int_expr(2)} % 4)"
                if draw(st.booleans()):
                    bound = f"range({self.int_expr(2)} % 3, {self.int_expr(2)} % 5)"
                self.ints.append(var)
                lines = [f"{pad}for {var} in {bound}:", *self.block(indent + 4)]
                self.ints.remove(var)
                return lines
            self.counters += 1
            counter = f"c{self.counters}"
            return [
                f"{pad}{counter} = 0",
                f"{pad}while {counter} < 3 and {self.bool_expr()}:",
                f"{pad}    {counter} += 1",
                *self.block(indent + 4),
            ]
        finally:
            self.depth -= 1
            if kind in ("for", "while"):
                self.loops -= 1


@st.composite
def programs(draw: st.DrawFn) -> str:
    gen = _Gen(draw)
    pure = _Gen(draw, ints=["p", "q"])
    helper = f"return {pure.int_expr(pure=True)}"
    body = ["        " + line for line in _declarations(gen)]
    body += ["        " + line for line in gen.block(0)]
    body.append(f"        return {gen.int_expr()}")
    return PRELUDE.format(helper=helper, body="\n".join(body))


def _declarations(gen: _Gen) -> list[str]:
    """Every local, assigned once at the top (later statements only reassign them)."""
    lines = []
    for name in INT_LOCALS:
        lines.append(f"{name} = {gen.int_expr(2)}")
        gen.ints.append(name)
    for name in BOOL_LOCALS:
        lines.append(f"{name} = {gen.bool_expr(2)}")
        gen.bools.append(name)
    return lines


# ----------------------------------------------------------------------------- CPython


class _Halt(Exception):
    """Where the VM halts: the u64 rules."""


class _Revert(Exception):
    pass


class _ZeroMap(dict[int, int]):
    """A storage map: missing keys read as 0, deleting one that is missing is fine."""

    def __missing__(self, key: int) -> int:
        return 0

    def __delitem__(self, key: int) -> None:
        self.pop(key, None)


def _u64(op: str, a: int, b: int) -> int:
    if op in ("//", "%") and b == 0:
        raise _Halt("division by zero")
    if op in ("<<", ">>") and b >= 64:
        raise _Halt("shift of 64 or more")
    result: int = {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
        "%": lambda: a % b, "&": lambda: a & b, "|": lambda: a | b, "^": lambda: a ^ b,
        "<<": lambda: a << b, ">>": lambda: a >> b,
    }[op]()  # fmt: skip
    if not 0 <= result <= U64_MAX:
        raise _Halt(f"{op} leaves u64")
    return result


def _aug_item(mapping: dict[int, int], key: int, op: str, value: Callable[[], int]) -> None:
    """``mapping[key] op= value()`` in Python's order: key, load, value, store."""
    current = mapping[key]
    mapping[key] = _u64(op, current, value())


_OP_NAMES = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.FloorDiv: "//", ast.Mod: "%",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
}  # fmt: skip


class _Checked(ast.NodeTransformer):
    """Route integer operations through _u64; spell out augmented assignments."""

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        return None

    def visit_BinOp(self, node: ast.BinOp) -> ast.expr:
        self.generic_visit(node)
        op = ast.Constant(_OP_NAMES[type(node.op)])
        return ast.Call(ast.Name("_u64", ast.Load()), [op, node.left, node.right], [])

    def visit_AugAssign(self, node: ast.AugAssign) -> ast.stmt:
        self.generic_visit(node)
        op = ast.Constant(_OP_NAMES[type(node.op)])
        target = node.target
        if isinstance(target, ast.Subscript):
            thunk = ast.Lambda(ast.arguments([], [], None, [], [], None, []), node.value)
            call = ast.Call(
                ast.Name("_aug_item", ast.Load()), [target.value, target.slice, op, thunk], []
            )
            return ast.Expr(call)
        load = copy.deepcopy(target)
        load.ctx = ast.Load()
        value = ast.Call(ast.Name("_u64", ast.Load()), [op, load, node.value], [])
        return ast.Assign([target], value)


@dataclass
class _Model:
    """The contract's storage and events as CPython sees them."""

    state: dict[str, Any] = field(
        default_factory=lambda: {"a": 0, "b": 0, "flag": False, "m": _ZeroMap()}
    )
    events: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)


def _run_cpython(source: str, calls: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
    tree = ast.fix_missing_locations(_Checked().visit(ast.parse(source)))
    model = _Model()

    def require(condition: bool, message: str) -> None:
        if not condition:
            raise _Revert(message)

    def emit(name: str, *args: int) -> None:
        model.events.append((name, tuple(int(a) for a in args)))

    class Contract:
        def __getattr__(self, name: str) -> Any:
            return model.state[name]

        def __setattr__(self, name: str, value: Any) -> None:
            model.state[name] = value

        def __delattr__(self, name: str) -> None:
            raise AssertionError("not generated")

    namespace: dict[str, Any] = {
        "Contract": Contract, "Map": dict, "emit": emit, "require": require,
        "view": lambda f: f, "_u64": _u64, "_aug_item": _aug_item,
    }  # fmt: skip
    exec(compile(tree, "<program>", "exec"), namespace)  # the test's own program
    instance = namespace["P"]()
    outcomes: list[tuple[Any, ...]] = []
    for x, y in calls:
        saved = copy.deepcopy(model.state)
        model.events.clear()
        try:
            result = instance.run(x, y)
        except _Revert as exc:
            model.state = saved
            outcomes.append(("revert", str(exc)))
            continue
        except _Halt:
            model.state = saved
            outcomes.append(("halt",))
            continue
        outcomes.append(("ok", result, _storage_view(model.state), list(model.events)))
    return outcomes


def _storage_view(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "a": state["a"],
        "b": state["b"],
        "flag": int(state["flag"]),
        "m": {k: v for k, v in sorted(state["m"].items()) if v != 0},
    }


# ----------------------------------------------------------------------------- the VM


def _run_vm(source: str, calls: list[tuple[int, int]]) -> list[tuple[Any, ...]]:
    chain = Chain()
    contract = chain.deployed(compile_source(source, "program.py").container, gas=GAS)
    outcomes: list[tuple[Any, ...]] = []
    for x, y in calls:
        result = chain.call(contract, "run", x, y, gas=GAS)
        if result.status is ExecutionStatus.REVERTED:
            outcomes.append(("revert", result.error))
        elif result.status is ExecutionStatus.INVALID:
            outcomes.append(("halt",))
        else:
            assert result.ok, result  # out of gas would be a test that is too big
            storage = chain.host.storage_of(contract)
            events = [(e.name, tuple(int(a) for a in e.args)) for e in result.events]
            outcomes.append(("ok", result.return_value, _vm_storage(storage), events))
    return outcomes


def _vm_storage(storage: dict[bytes, bytes]) -> dict[str, Any]:
    view: dict[str, Any] = {
        "a": int.from_bytes(storage.get(b"\x00", b""), "big"),
        "b": int.from_bytes(storage.get(b"\x01", b""), "big"),
        "flag": len(storage.get(b"\x02", b"")),
        "m": {},
    }
    for key, value in sorted(storage.items()):
        if key[:1] == b"\x03" and int.from_bytes(value, "big"):
            view["m"][int.from_bytes(key[1:], "big")] = int.from_bytes(value, "big")
    return view


# ----------------------------------------------------------------------------- the tests

_ARGS = st.integers(0, 5) | st.sampled_from(INTERESTING) | st.integers(0, 2**64 - 1)
_CALLS = st.lists(st.tuples(_ARGS, _ARGS), min_size=1, max_size=3)


def _agree(source: str, calls: list[tuple[int, int]]) -> None:
    expected = _run_cpython(source, calls)
    assert _run_vm(source, calls) == expected, source


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), _CALLS)
def test_random_programs_agree_with_cpython(source: str, calls: list[tuple[int, int]]) -> None:
    _agree(source, calls)


@pytest.mark.slow
@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), _CALLS)
def test_many_random_programs_agree_with_cpython(source: str, calls: list[tuple[int, int]]) -> None:
    _agree(source, calls)


def test_the_model_sees_overflow_reverts_and_storage() -> None:
    """The harness itself: a hand-written program whose outcomes are known."""
    body = "\n".join(
        [
            "        v0 = x + y",
            '        require(v0 != 5, "r1")',
            "        self.m[x] += 1",
            "        self.flag = v0 > 3",
            '        emit("E", v0, self.flag)',
            "        return v0",
        ]
    )
    source = PRELUDE.format(helper="return p", body=body)
    calls = [(1, 1), (2, 3), (U64_MAX, 1), (2, 2)]
    expected = [
        ("ok", 2, {"a": 0, "b": 0, "flag": 0, "m": {1: 1}}, [("E", (2, 0))]),
        ("revert", "r1"),
        ("halt",),
        ("ok", 4, {"a": 0, "b": 0, "flag": 1, "m": {1: 1, 2: 1}}, [("E", (4, 1))]),
    ]
    assert _run_cpython(source, calls) == expected
    assert _run_vm(source, calls) == expected
