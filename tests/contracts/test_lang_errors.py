"""contracts.lang: everything outside the subset is a compile error at its line and column
with a sentence saying what is allowed instead.

Each case is a contract body; line 1 of every source is the import line
(tests/contracts/lang_support.py), so the body's first line is line 2. Columns count
from 1, as editors do.
"""

from __future__ import annotations

import pytest

from contracts.lang.compiler import CompileError, compile_source
from tests.contracts.lang_support import compile_error

C = "class C(Contract):\n"
M = C + "    def f(self) -> None:\n"  # a method whose body starts at line 4, column 9
R = C + "    def f(self, x: int, b: bytes) -> int:\n"  # the same, with parameters and a result

CASES = [
    # module level
    ("import os\n" + C + "    x: int", 2, 1, "`import os` is not allowed: contracts may import only from contracts.lang"),
    ("from os import path\n" + C + "    x: int", 2, 1, "`from os import ...` is not allowed"),
    ("from contracts.lang import *\n" + C + "    x: int", 2, 1, "import the names you use"),
    ("from contracts.lang import nothing\n" + C + "    x: int", 2, 1, "contracts.lang has no nothing"),
    ("X = 1", 1, 1, "no contract class"),
    (C + "    x: int\nclass D(Contract):\n    y: int", 4, 1, "a file holds one contract class"),
    ("class D:\n    pass\n", 2, 1, "must derive only Contract"),
    ("print(1)\n" + C + "    x: int", 2, 1, "is not allowed at module level"),
    ("X = 2.5\n" + C + "    x: int", 2, 5, "a constant must be an int, bool or bytes literal"),
    ("X = 2**64\n" + C + "    x: int", 2, 5, "a constant must be"),
    ("X = 18446744073709551616\n" + C + "    x: int", 2, 5, "is not a u64"),
    (C + "    x: int = 5", 3, 5, "every field starts at its zero value"),
    (C + "    x: Address", 3, 8, "store an address as bytes"),
    (C + "    x: float", 3, 8, "unsupported type float"),
    (C + "    m: Map[tuple[bytes, int], int]", 3, 18, "only the last part of a tuple key"),
    (C + "    m: Map[int, Map[int, int]]", 3, 17, "maps do not nest: use a tuple key"),
    (C + "    def constructor(self) -> None:\n        pass", 3, 5, "cannot be in the ABI"),
    (C + "    @staticmethod\n    def f() -> None:\n        pass", 3, 6, "the only decorators are @view and @payable"),
    (C + "    @view\n    @payable\n    def f(self) -> None:\n        pass", 5, 5, "cannot be @payable"),
    (C + "    def f(self, x) -> None:\n        pass", 3, 17, "parameter x needs a type"),
    (C + "    def f(self, x: int = 1) -> None:\n        pass", 3, 5, "no defaults"),
    (C + "    def _f(self, *x: int) -> None:\n        pass", 3, 19, "only __init__ and public methods may take *args"),
    (C + "    def f(self) -> None:\n        pass\n    def f(self) -> None:\n        pass", 5, 5, "f is defined twice"),
    (C + "    x: int\n    def x(self) -> None:\n        pass", 4, 5, "both a storage field and a method"),
    (C + "    def __add__(self) -> None:\n        pass", 3, 5, "the only special method is __init__"),
    (C + "    pass", 2, 1, "has no methods"),
    # statements
    (M + "        try:\n            pass\n        except Exception:\n            pass", 4, 9, "try/except is not allowed"),
    (M + "        raise ValueError()", 4, 9, "use revert(msg) or require(cond, msg)"),
    (M + "        assert True", 4, 9, "assert is not allowed: use require"),
    (M + "        with x:\n            pass", 4, 9, "with is not allowed"),
    (M + "        global x", 4, 9, "global is not allowed"),
    (M + "        def g() -> None:\n            pass", 4, 9, "nested functions are not allowed"),
    (M + "        class D:\n            pass", 4, 9, "classes are not allowed inside a contract"),
    (M + "        import os", 4, 9, "imports belong at the top of the file"),
    (M + "        a, b = 1, 2", 4, 9, "assign one variable at a time"),
    (M + "        a = b = 1", 4, 9, "assign one target at a time"),
    (M + "        1 + 2", 4, 9, "only calls can be statements"),
    (M + "        while True:\n            break\n        else:\n            pass", 4, 9, "while ... else"),
    (M + "        for i in range(1, 10, 2):\n            pass", 4, 18, "for other steps use while"),
    (M + "        for c in b'abc':\n            pass", 4, 18, "runs over range(...) or a *args parameter"),
    (M + "        break", 4, 9, "break outside a loop"),
    (M + "        return 1", 4, 9, "declares no result"),
    (R + "        return b", 4, 16, "the result must be an int, not a bytes"),
    (R + "        if x > 1:\n            return x", 3, 5, "must return an int on every path"),
    (R + "        if x > 1:\n            y = 1\n        return y", 6, 16, "y may be used before it is assigned"),
    (R + "        y = 1\n        y = b\n        return y", 5, 9, "y is an int: it cannot hold a bytes"),
    (R + "        x.real = 1\n        return x", 4, 9, "only locals, self.field and self.map[key]"),
    (R + "        b[0] = 1\n        return x", 4, 9, "bytes are immutable"),
    (R + "        del x\n        return x", 4, 13, "del clears storage"),
    (R + "        len = 3\n        return x", 4, 9, "built-in name"),
    # expressions
    (R + "        return 1.5", 4, 16, "floats are not allowed"),
    (R + '        y = "text"\n        return x', 4, 13, "a string literal is only a message"),
    (R + '        require(x > 0, f"bad {x}")\n        return x', 4, 24, "is a string literal"),
    (R + "        g = lambda: 1\n        return x", 4, 13, "lambdas are not allowed"),
    (R + "        return [x][0]", 4, 16, "lists are not allowed"),
    (R + "        return {1: x}[1]", 4, 16, "dicts are not allowed"),
    (R + "        return [i for i in range(x)][0]", 4, 16, "comprehensions are not allowed"),
    (R + "        return (y := x)", 4, 17, "the := operator is not allowed"),
    (R + "        return -1", 4, 16, "there are no negative numbers"),
    (R + "        return ~x", 4, 16, "~x is negative in Python"),
    (R + "        return x / 2", 4, 16, "use // (integer division)"),
    (R + "        return x ** 2", 4, 16, "** is not in the VM"),
    (R + "        return 1 if 0 < x < 5 else 0", 4, 21, "one comparison at a time"),
    (R + "        return 1 if x in b else 0", 4, 21, "in is not allowed"),
    (R + "        return 1 if x == b else 0", 4, 21, "compare values of one type"),
    (R + "        return x + b", 4, 16, "arithmetic and bit operations take two ints"),
    (R + "        return x + (x > 1)", 4, 16, "arithmetic and bit operations take two ints"),
    (R + "        return 1 if b < b else 0", 4, 21, "< compares two ints"),
    (R + "        if x:\n            return 1\n        return 0", 4, 12, "compare explicitly"),
    (R + "        return x if b else 0", 4, 21, "compare explicitly"),
    (R + "        return getattr(self, 'x')", 4, 16, "dynamic attribute access"),
    (R + "        return self.nothing", 4, 16, "C has no storage field nothing"),
    (R + "        return b.hex()", 4, 16, "the only method calls are"),
    (R + "        return print(x)", 4, 16, "print() is not available in a contract"),
    (R + "        return int(b)", 4, 16, "int() is not available in a contract"),
    (R + "        return len(str(x))", 4, 20, "str() is not available"),
    (R + "        return 18446744073709551616", 4, 16, "is not a u64"),
    (R + "        return self.f(x)", 4, 16, "takes 2 argument(s), got 1"),
    (R + "        return self.f(x, b=b)", 4, 26, "takes its arguments by position"),
    (R + "        return self.f(b, x)", 4, 23, "argument x of self.f must be an int, not a bytes"),
    (R + "        return x if require(x > 0, 'm') else 0", 4, 21, "returns nothing"),
    (R + "        require(x > 0)\n        return x", 4, 9, "require takes a condition and a message"),
    (R + "        emit('', x)\n        return x", 4, 14, "an event name is 1 to 64 bytes"),
    (R + "        return len('abc'.encode())", 4, 20, "a string literal is only a message"),
    (R + "        return call(b, 'f')", 4, 21, "cast with Address"),
    (R + "        return 1 if call(sender(), 'f', value=x, gas=2) else 0", 4, 50, "call() takes one keyword, value="),
    (R + "        return bytes(x)[0]", 4, 16, "bytes(n) takes a constant int size"),
    (R + "        return self.__init__()", 4, 16, "C has no method __init__"),
    (C + "    def f(self, s: str) -> int:\n        return len(s)", 4, 16, "len(s.encode())"),
    (C + "    def f(self, s: str) -> bytes:\n        return s + s", 4, 16, "a.encode() + b.encode()"),
    (C + "    def f(self, *xs: int) -> int:\n        return self.f(1)", 4, 16, "only a transaction can call it"),
    (C + "    def f(self, *xs: int) -> int:\n        y = xs\n        return 0", 4, 13, "can only be indexed, iterated"),
    (C + "    m: Map[int, int]\n    def f(self) -> int:\n        return self.m", 5, 16, "is a Map: read a key"),
    (C + "    m: Map[int, int]\n    def f(self) -> int:\n        return self.m[1, 2]", 5, 16, "takes a key of 1 part(s)"),
    (C + "    m: Map[tuple[int, Address], int]\n    def f(self) -> int:\n        return self.m[1, b'x']", 5, 26, "must be an Address, not a bytes"),
    ("def g() -> int:\n    return self.x\n" + C + "    def f(self) -> int:\n        return g()", 3, 12, "a helper function has no self"),
    # whole-program rules
    (C + "    def f(self, n: int) -> int:\n        return self.f(n - 1)", 4, 16, "recursion is not allowed (self.f -> self.f)"),
    (C + "    def f(self) -> int:\n        return self._g()\n    def _g(self) -> int:\n        return self.f()", 6, 16, "recursion is not allowed (self.f -> self._g -> self.f)"),
    ("def a(n: int) -> int:\n    return b(n)\ndef b(n: int) -> int:\n    return a(n)\n" + C + "    def f(self) -> int:\n        return a(1)", 5, 12, "recursion is not allowed (a -> b -> a)"),
    (C + "    x: int\n    @view\n    def f(self) -> None:\n        self.x = 1", 6, 9, "@view method f cannot change state: it changes state here"),
    (C + "    @view\n    def f(self) -> None:\n        emit('E')", 5, 9, "cannot change state"),
    (C + "    x: int\n    @view\n    def f(self) -> int:\n        return self._g()\n    def _g(self) -> int:\n        self.x += 1\n        return 1", 6, 16, "it calls self._g, which changes state"),
    (C + "    @view\n    def f(self, to: Address) -> bool:\n        return call(to, 'm', value=1)", 5, 30, "cannot change state"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "line", "column", "needle"), CASES)
def test_outside_the_subset_is_a_compile_error_at_its_position(
    body: str, line: int, column: int, needle: str
) -> None:
    found = compile_error(body)
    assert needle in found.message, found.message
    assert (found.line, found.column) == (line, column), str(found)
    assert str(found).startswith(f"test.py:{line}:{column}: ")


def test_import_os_is_refused_naming_its_line() -> None:
    source = '"""A contract that wants the file system."""\n\nimport os\n'
    with pytest.raises(CompileError) as caught:
        compile_source(source, "evil.py")
    assert str(caught.value).startswith("evil.py:3:1: `import os` is not allowed")


def test_syntax_errors_have_a_position() -> None:
    with pytest.raises(CompileError) as caught:
        compile_source("class C(Contract:\n", "broken.py")
    assert caught.value.line == 1 and "not valid Python" in caught.value.message


def test_too_many_locals_names_the_function() -> None:
    lines = "".join(f"        v{i} = {i}\n" for i in range(33))
    found = compile_error(C + "    def f(self) -> None:\n" + lines)
    assert "needs more than 32 local slots" in found.message and found.line == 36


def test_a_contract_too_big_for_the_vm_is_a_compile_error() -> None:
    lines = "".join(f"        self.x = {i}\n" for i in range(2000))
    found = compile_error(C + "    x: int\n    def f(self) -> None:\n" + lines)
    assert "does not fit the VM" in found.message and "code section is" in found.message
    assert (found.line, found.column) == (2, 1)
