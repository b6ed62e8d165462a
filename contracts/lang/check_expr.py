"""Stage 2a: the type of every expression, and what every name and call refers to.

The subset's expressions: literals (int as u64, bool, bytes; str only as a message, an
event name or a called method's name), local variables, parameters and module constants,
``self.field`` and ``self.map[key]``, arithmetic and bit operations on int, ``+`` on
bytes, one comparison at a time, ``and``/``or``/``not`` on bool, ``x if c else y``, calls
of methods (``self.m(...)``), helper functions and the contracts.lang functions,
``len``, ``bytes(n)``, ``Address(b)``, ``s.encode()``, and indexing and slicing of bytes.

Must never: accept an expression whose meaning on the VM differs from its meaning in
Python, except where docs/CONTRACTS.md says so (u64 overflow halts; slices must lie inside
the bytes).
"""

from __future__ import annotations

import ast
from typing import Final

from contracts.lang.model import (
    ADDRESS,
    BOOL,
    BYTE_TYPES,
    BYTES,
    INT,
    NONE,
    STR,
    CallKind,
    CallRef,
    Checked,
    CompileError,
    ConstRef,
    Field,
    Function,
    Kind,
    LangType,
    LocalRef,
    MapType,
    NameRef,
    Program,
    VarArgsRef,
    assignable,
    common_type,
    error,
    function_key,
)
from contracts.lang.parse import checked_bytes, checked_int, constant_value
from contracts.limits import MAX_ARGS, MAX_ERROR_TEXT_BYTES, MAX_NAME_BYTES

#: contracts.lang functions with fixed signatures: name -> (parameter types, result).
SIMPLE_BUILTINS: Final[dict[str, tuple[tuple[LangType, ...], LangType]]] = {
    "sender": ((), ADDRESS),
    "origin": ((), ADDRESS),
    "self_address": ((), ADDRESS),
    "block_height": ((), INT),
    "block_time": ((), INT),
    "call_value": ((), INT),
    "balance": ((ADDRESS,), INT),
    "transfer": ((ADDRESS, INT), NONE),
    "sha256": ((BYTES,), BYTES),
    "to_bytes": ((INT,), BYTES),
    "from_bytes": ((BYTES,), INT),
}
#: Builtins that change state (a @view method may not use them).
WRITING_BUILTINS: Final = frozenset({"transfer", "emit"})
INT_OPS: Final = (
    ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod,
    ast.BitAnd, ast.BitOr, ast.BitXor, ast.LShift, ast.RShift,
)  # fmt: skip
_ORDER_OPS: Final = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_EXPRESSION_HINTS: Final[dict[type, str]] = {
    ast.Lambda: "lambdas are not allowed: define a helper function with def",
    ast.JoinedStr: "f-strings are not allowed: messages are fixed strings",
    ast.List: "lists are not allowed: store sequences in a Map keyed by index",
    ast.Dict: "dicts are not allowed: use a storage Map field",
    ast.Set: "sets are not allowed: use a storage Map field",
    ast.Tuple: "tuples are only map keys (self.m[a, b]); return or assign one value",
    ast.ListComp: "comprehensions are not allowed: write a for loop",
    ast.SetComp: "comprehensions are not allowed: write a for loop",
    ast.DictComp: "comprehensions are not allowed: write a for loop",
    ast.GeneratorExp: "generators are not allowed: write a for loop",
    ast.NamedExpr: "the := operator is not allowed: assign in a statement",
    ast.Await: "await is not allowed: contracts run to completion",
    ast.Yield: "yield is not allowed: contracts run to completion",
    ast.YieldFrom: "yield is not allowed: contracts run to completion",
    ast.Starred: "*args in a call is not allowed: pass each argument",
}
_PYTHON_BUILTIN_HINT: Final = (
    "is not available in a contract: call the contracts.lang functions, len(), bytes(n), "
    "Address(b), your helper functions and self's methods"
)


class ExprChecker:
    """Types expressions of one function; :class:`contracts.lang.check.BodyChecker` adds
    the statements and drives it."""

    def __init__(self, program: Program, function: Function) -> None:
        self.program = program
        self.function = function
        self.out = Checked(function)
        self.params: dict[str, NameRef] = {}
        self.locals: dict[str, LocalRef] = {}
        self.assigned: set[str] = set()  # names definitely assigned at this point
        self.bound: frozenset[str] = frozenset()  # names the body assigns anywhere

    # ------------------------------------------------------------------------- dispatch

    def expr(self, node: ast.expr) -> LangType:
        """Check ``node``; return its type (recorded for the lowering)."""
        method = getattr(self, f"_expr_{type(node).__name__}", None)
        if method is None:
            hint = _EXPRESSION_HINTS.get(type(node), "this expression is not in the subset")
            raise error(node, hint)
        found: LangType = method(node)
        self.out.types[node] = found
        return found

    def expect(self, node: ast.expr, wanted: LangType, what: str) -> LangType:
        found = self.expr(node)
        if not assignable(found, wanted):
            hint = ""
            if wanted is ADDRESS and found is BYTES:
                hint = " (cast with Address(...))"
            elif wanted is BYTES and found is STR:
                hint = " (use s.encode())"
            elif wanted is BOOL and found in (INT, BYTES):
                hint = " (compare explicitly, e.g. x != 0 or len(b) > 0)"
            raise error(node, f"{what} must be {article(wanted)}, not {article(found)}{hint}")
        return found

    # ------------------------------------------------------------------------- leaves

    def _expr_Constant(self, node: ast.Constant) -> LangType:
        value = node.value
        if isinstance(value, bool):
            return BOOL
        if isinstance(value, int):
            checked_int(node, value)
            return INT
        if isinstance(value, bytes):
            checked_bytes(node, value)
            return BYTES
        if isinstance(value, str):
            raise error(
                node,
                "a string literal is only a message (require, revert), an event name (emit) "
                'or a method name (call); for data use bytes: b"..."',
            )
        if isinstance(value, float):
            raise error(
                node, "floats are not allowed: the VM has u64 integers only (scale, e.g. cents)"
            )
        raise error(node, f"{value!r} is not a value in the subset")

    def _expr_Name(self, node: ast.Name) -> LangType:
        ref = self.lookup(node)
        if isinstance(ref, VarArgsRef):
            raise error(node, f"*{node.id} can only be indexed, iterated or measured with len()")
        self.out.names[node] = ref
        return ref.type

    def lookup(self, node: ast.Name) -> NameRef:
        name = node.id
        if name in self.locals:
            if name not in self.assigned:
                raise error(node, f"{name} may be used before it is assigned on some path")
            return self.locals[name]
        if name in self.params:
            return self.params[name]
        if name in self.program.constants:
            const_type, value = self.program.constants[name]
            return ConstRef(value, const_type)
        if name == "self":
            raise error(node, "self is only used as self.field or self.method(...)")
        if name in self.program.imports or name in self.program.helpers:
            raise error(node, f"{name} is a function: call it")
        if name in self.bound:
            raise error(node, f"{name} may be used before it is assigned on some path")
        raise error(node, f"unknown name {name}")

    # ------------------------------------------------------------------------- storage

    def field_of(self, node: ast.expr) -> Field | None:
        """The storage field ``node`` (``self.f``) names, or None if it is not ``self.x``."""
        if not (isinstance(node, ast.Attribute) and _is_self(node.value)):
            return None
        if self.function.kind is Kind.HELPER:
            raise error(node, "a helper function has no self: make it a method")
        found = self.program.fields.get(node.attr)
        if found is None:
            if node.attr in self.program.methods:
                raise error(node, f"call the method: self.{node.attr}(...)")
            raise error(node, f"{self.program.name} has no storage field {node.attr}")
        return found

    def _expr_Attribute(self, node: ast.Attribute) -> LangType:
        found = self.field_of(node)
        if found is None:
            raise error(
                node,
                "attribute access is only self.field and self.method(...): no dynamic or "
                "other attributes",
            )
        if isinstance(found.type, MapType):
            raise error(node, f"{found.name} is a Map: read a key, self.{found.name}[key]")
        self.out.fields[node] = found
        return found.type

    def map_key(self, node: ast.Subscript, found: Field) -> LangType:
        """Check ``self.map[key]``: the key's parts against the map's key type."""
        assert isinstance(found.type, MapType)
        keys = found.type.keys
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if len(parts) != len(keys):
            raise error(node, f"{found.name} takes a key of {len(keys)} part(s): {found.type}")
        for part, key_type in zip(parts, keys, strict=True):
            self.expect(part, key_type, f"a key of {found.name}")
        self.out.fields[node] = found
        return found.type.value

    def _expr_Subscript(self, node: ast.Subscript) -> LangType:
        found = self.field_of(node.value)
        if found is not None:
            if not isinstance(found.type, MapType):
                raise error(node, f"{found.name} is {article(found.type)}, not a Map")
            return self.map_key(node, found)
        if isinstance(node.value, ast.Name) and isinstance(self._peek(node.value), VarArgsRef):
            ref = self._peek(node.value)
            assert isinstance(ref, VarArgsRef)
            self.out.names[node.value] = ref
            self.expect(node.slice, INT, "an index")
            return ref.elem
        base = self.expr(node.value)
        if base is STR:
            raise error(node, "index the bytes of a str: s.encode()[i]")
        if base not in BYTE_TYPES:
            raise error(node, f"{article(base)} cannot be indexed")
        if isinstance(node.slice, ast.Slice):
            if node.slice.step is not None:
                raise error(node.slice, "slices take no step")
            for bound in (node.slice.lower, node.slice.upper):
                if bound is not None:
                    self.expect(bound, INT, "a slice bound")
            return BYTES
        self.expect(node.slice, INT, "an index")
        return INT

    def _peek(self, node: ast.Name) -> NameRef | None:
        return self.params.get(node.id) if node.id not in self.locals else None

    # ------------------------------------------------------------------------- operators

    def _expr_BinOp(self, node: ast.BinOp) -> LangType:
        left = self.expr(node.left)
        right = self.expr(node.right)
        if isinstance(node.op, ast.Add) and left in BYTE_TYPES and right in BYTE_TYPES:
            if STR in (left, right):
                raise error(node, "join the bytes of strs: a.encode() + b.encode()")
            return BYTES
        if isinstance(node.op, ast.Div):
            raise error(node, "/ makes floats: use // (integer division)")
        if isinstance(node.op, ast.Pow):
            raise error(node, "** is not in the VM: multiply, or use a loop")
        if not isinstance(node.op, INT_OPS) or left is not INT or right is not INT:
            raise error(
                node,
                f"{article(left)} {_op(node.op)} {article(right)} is not allowed: arithmetic and bit "
                "operations take two ints, + also joins two bytes",
            )
        return INT

    def _expr_UnaryOp(self, node: ast.UnaryOp) -> LangType:
        if isinstance(node.op, ast.Not):
            self.expect(node.operand, BOOL, "the operand of not")
            return BOOL
        if isinstance(node.op, ast.USub):
            raise error(node, "integers are unsigned (u64): there are no negative numbers")
        if isinstance(node.op, ast.Invert):
            raise error(node, "~x is negative in Python: use x ^ 0xFFFFFFFFFFFFFFFF")
        raise error(node, "unary + is not needed: write the value")

    def _expr_BoolOp(self, node: ast.BoolOp) -> LangType:
        for value in node.values:
            self.expect(value, BOOL, f"an operand of {_op(node.op)}")
        return BOOL

    def _expr_Compare(self, node: ast.Compare) -> LangType:
        if len(node.ops) != 1:
            raise error(node, "one comparison at a time: write a < b and b < c")
        op = node.ops[0]
        left = self.expr(node.left)
        right = self.expr(node.comparators[0])
        if isinstance(op, ast.Is | ast.IsNot | ast.In | ast.NotIn):
            raise error(node, f"{_op(op)} is not allowed: compare values with == or !=")
        if isinstance(op, _ORDER_OPS):
            if left is not INT or right is not INT:
                raise error(node, f"{_op(op)} compares two ints")
            return BOOL
        same = left is right or (left in BYTE_TYPES - {STR} and right in BYTE_TYPES - {STR})
        if not same:
            raise error(
                node, f"{article(left)} {_op(op)} {article(right)}: compare values of one type"
            )
        return BOOL

    def _expr_IfExp(self, node: ast.IfExp) -> LangType:
        self.expect(node.test, BOOL, "the condition")
        body = self.expr(node.body)
        orelse = self.expr(node.orelse)
        found = common_type(body, orelse)
        if found is None:
            raise error(node, f"both branches must have one type, not {body} and {orelse}")
        return found

    # ------------------------------------------------------------------------- calls

    def _expr_Call(self, node: ast.Call) -> LangType:
        ref = self.call(node)
        if ref.returns is NONE:
            raise error(node, f"{ref.name}(...) returns nothing: call it as a statement")
        return ref.returns

    def call(self, node: ast.Call) -> CallRef:
        """Check a call in any position (a statement too); record what it calls."""
        ref = self._call(node)
        self.out.calls[node] = ref
        self.out.types[node] = ref.returns
        return ref

    def _call(self, node: ast.Call) -> CallRef:
        func = node.func
        if isinstance(func, ast.Attribute):
            if _is_self(func.value):
                return self._method_call(node, func.attr)
            if func.attr == "encode" and not node.args and not node.keywords:
                self.expect(func.value, STR, "the receiver of encode()")
                return CallRef(CallKind.BUILTIN, "encode", BYTES)
            raise error(node, "the only method calls are self.method(...) and s.encode()")
        if not isinstance(func, ast.Name):
            raise error(node, "call a function by its name")
        name = func.id
        if name in self.program.helpers:
            return self._function_call(node, self.program.helpers[name])
        lang_name = self.program.imports.get(name)
        if lang_name is not None:
            return self._builtin(node, lang_name)
        if name == "len":
            return self._len(node)
        if name == "bytes":
            return self._zero_bytes(node)
        if name in ("getattr", "setattr", "hasattr", "delattr", "vars", "globals"):
            raise error(node, f"{name}() is dynamic attribute access: name fields directly")
        if name == "range":
            raise error(node, "range() is only the iterable of a for loop")
        if name in self.locals or name in self.params or name in self.program.constants:
            raise error(node, f"{name} is a value, not a function")
        raise error(node, f"{name}() {_PYTHON_BUILTIN_HINT}")

    def _no_keywords(self, node: ast.Call, name: str) -> None:
        if node.keywords:
            raise error(node.keywords[0], f"{name}() takes its arguments by position")

    def _method_call(self, node: ast.Call, name: str) -> CallRef:
        if self.function.kind is Kind.HELPER:
            raise error(node, "a helper function has no self: make it a method")
        callee = self.program.methods.get(name)
        if callee is None:
            raise error(node, f"{self.program.name} has no method {name}")
        if callee.kind is Kind.CONSTRUCTOR:
            raise error(node, "__init__ runs once, at deploy; it cannot be called")
        return self._function_call(node, callee)

    def _function_call(self, node: ast.Call, callee: Function) -> CallRef:
        self._no_keywords(node, callee.name)
        if callee.variadic is not None:
            raise error(
                node,
                f"{callee.display} takes *{callee.variadic.name}: only a transaction can call it",
            )
        if len(node.args) != len(callee.params):
            raise error(
                node,
                f"{callee.display} takes {len(callee.params)} argument(s), got {len(node.args)}",
            )
        for arg, param in zip(node.args, callee.params, strict=True):
            self.expect(arg, param.type, f"argument {param.name} of {callee.display}")
        self.out.callees.append((function_key(callee), node))
        kind = CallKind.HELPER if callee.kind is Kind.HELPER else CallKind.METHOD
        return CallRef(kind, callee.name, callee.returns)

    def _builtin(self, node: ast.Call, name: str) -> CallRef:
        if name == "Address":
            self._no_keywords(node, name)
            if len(node.args) != 1:
                raise error(node, "Address(b) takes one bytes value")
            self.expect(node.args[0], BYTES, "the argument of Address()")
            return CallRef(CallKind.BUILTIN, name, ADDRESS)
        special = {"require": self._require, "revert": self._revert, "emit": self._emit}
        if name in special:
            return special[name](node)
        if name == "call":
            return self._contract_call(node)
        if name not in SIMPLE_BUILTINS:
            raise error(node, f"{name} is not a function")
        self._no_keywords(node, name)
        params, returns = SIMPLE_BUILTINS[name]
        if len(node.args) != len(params):
            raise error(node, f"{name}() takes {len(params)} argument(s), got {len(node.args)}")
        for arg, wanted in zip(node.args, params, strict=True):
            self.expect(arg, wanted, f"the argument of {name}()")
        if name in WRITING_BUILTINS:
            self.note_write(node)
        return CallRef(CallKind.BUILTIN, name, returns)

    def _require(self, node: ast.Call) -> CallRef:
        self._no_keywords(node, "require")
        if len(node.args) != 2:
            raise error(node, 'require takes a condition and a message: require(ok, "why")')
        self.expect(node.args[0], BOOL, "the condition of require")
        message_text(node.args[1], "the message", MAX_ERROR_TEXT_BYTES)
        return CallRef(CallKind.BUILTIN, "require", NONE)

    def _revert(self, node: ast.Call) -> CallRef:
        self._no_keywords(node, "revert")
        if len(node.args) != 1:
            raise error(node, 'revert takes a message: revert("why")')
        message_text(node.args[0], "the message", MAX_ERROR_TEXT_BYTES)
        return CallRef(CallKind.BUILTIN, "revert", NONE)

    def _emit(self, node: ast.Call) -> CallRef:
        self._no_keywords(node, "emit")
        if not node.args:
            raise error(node, 'emit takes an event name and its values: emit("Paid", who, 5)')
        message_text(node.args[0], "an event name", MAX_NAME_BYTES, nonempty=True)
        if len(node.args) - 1 > MAX_ARGS:
            raise error(node, f"an event carries at most {MAX_ARGS} values")
        for arg in node.args[1:]:
            self.value(arg, "an event value")
        self.note_write(node)
        return CallRef(CallKind.BUILTIN, "emit", NONE)

    def _contract_call(self, node: ast.Call) -> CallRef:
        if len(node.args) < 2:
            raise error(node, "call(target, method, *args, value=0)")
        self.expect(node.args[0], ADDRESS, "the target of call()")
        method = node.args[1]
        if isinstance(method, ast.Constant) and isinstance(method.value, str):
            message_text(method, "a method name", MAX_NAME_BYTES, nonempty=True)
        elif self.expr(method) not in BYTE_TYPES - {ADDRESS}:
            raise error(method, "the method of call() is a str or bytes")
        if len(node.args) - 2 > MAX_ARGS:
            raise error(node, f"a call passes at most {MAX_ARGS} arguments")
        for arg in node.args[2:]:
            self.value(arg, "an argument of call()")
        for keyword in node.keywords:
            if keyword.arg != "value":
                raise error(keyword, "call() takes one keyword, value=")
            self.expect(keyword.value, INT, "value=")
            if not (isinstance(keyword.value, ast.Constant) and keyword.value.value == 0):
                self.note_write(keyword)
        return CallRef(CallKind.BUILTIN, "call", BOOL)

    def value(self, node: ast.expr, what: str) -> LangType:
        """An expression passed on as a VM value (event values, call arguments)."""
        found = self.expr(node)
        if found is NONE:
            raise error(node, f"{what} must be a value")
        return found

    def _len(self, node: ast.Call) -> CallRef:
        self._no_keywords(node, "len")
        if len(node.args) != 1:
            raise error(node, "len() takes one value")
        arg = node.args[0]
        if isinstance(arg, ast.Name) and isinstance(self._peek(arg), VarArgsRef):
            ref = self._peek(arg)
            assert ref is not None
            self.out.names[arg] = ref
            return CallRef(CallKind.BUILTIN, "len", INT)
        found = self.expr(arg)
        if found is STR:
            raise error(
                node, "len() of a str counts characters, the VM counts bytes: len(s.encode())"
            )
        if found not in BYTE_TYPES:
            raise error(node, f"len() takes bytes, not {article(found)}")
        return CallRef(CallKind.BUILTIN, "len", INT)

    def _zero_bytes(self, node: ast.Call) -> CallRef:
        self._no_keywords(node, "bytes")
        if len(node.args) != 1:
            raise error(node, "bytes(n) takes a constant size")
        try:
            size_type, size = constant_value(node.args[0], self.program.constants)
        except CompileError:
            size_type, size = NONE, 0
        if size_type is not INT or not isinstance(size, int):
            raise error(node, "bytes(n) takes a constant int size")
        checked_bytes(node, bytes(size))
        return CallRef(CallKind.BUILTIN, "bytes", BYTES)

    def note_write(self, node: ast.AST) -> None:
        if self.out.first_write is None:
            self.out.first_write = node


def message_text(node: ast.expr, what: str, limit: int, *, nonempty: bool = False) -> str:
    """A string literal in a message position, within ``limit`` bytes of UTF-8."""
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        raise error(node, f"{what} is a string literal")
    try:
        raw = node.value.encode("utf-8")
    except UnicodeEncodeError:
        raise error(node, f"{what} must be valid UTF-8 text") from None
    if len(raw) > limit or (nonempty and not raw):
        raise error(node, f"{what} is {'1 to ' if nonempty else 'at most '}{limit} bytes of UTF-8")
    return node.value


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def article(found: LangType | MapType) -> str:
    text = str(found)
    return ("an " if text[0] in "AEIOUaeiou" else "a ") + text


def _op(op: ast.AST) -> str:
    symbols = {
        ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
        ast.Mod: "%", ast.Pow: "**", ast.LShift: "<<", ast.RShift: ">>", ast.BitOr: "|",
        ast.BitXor: "^", ast.BitAnd: "&", ast.MatMult: "@", ast.And: "and", ast.Or: "or",
        ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
        ast.GtE: ">=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    }  # fmt: skip
    return symbols.get(type(op), type(op).__name__)
