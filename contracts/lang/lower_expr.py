"""Stage 3a: expressions to stack code. Every expression leaves exactly one value.

Values on the stack: int and bool as u64 (bool is 0 or 1), bytes, str and Address as byte
strings. Storage: a scalar field lives at its one-byte prefix, a map entry at the prefix
followed by its key's parts (int and bool as 8 bytes big-endian, the rest as their bytes).
Stored ints are 8 bytes big-endian, bools ``0x01`` or absent, bytes and str as themselves;
an absent slot reads as the zero value (``btoi`` of empty bytes is 0, ``len`` of it is 0).

Evaluation order is Python's; where the VM needs operands in another order (the value of
``self.m[k] = v`` below its key, a call's arguments below its target), the lowering keeps
Python's order unless the reordered part can neither fail nor change anything.

Must never: leave more or less than one value per expression, or reorder two parts that
can fail or have effects.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Final

from contracts.lang.ir import Ins, Item, Label
from contracts.lang.model import (
    ADDRESS,
    BOOL,
    INT,
    NONE,
    ArgRef,
    CallKind,
    Checked,
    ConstRef,
    Field,
    LangType,
    LocalRef,
    MapType,
    Program,
    VarArgsRef,
    error,
)
from contracts.lang.parse import constant_value
from contracts.limits import ADDRESS_BYTES, MAX_BYTES_LENGTH, MAX_LOCALS, U64_BYTES, U64_MAX

_BINARY: Final = {
    ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.FloorDiv: "div", ast.Mod: "mod",
    ast.BitAnd: "band", ast.BitOr: "bor", ast.BitXor: "bxor", ast.RShift: "shr",
}  # fmt: skip
_COMPARE: Final = {
    ast.Eq: "eq",
    ast.NotEq: "ne",
    ast.Lt: "lt",
    ast.LtE: "le",
    ast.Gt: "gt",
    ast.GtE: "ge",
}
#: Builtins that read the environment: one instruction, no operands.
_ENVIRONMENT: Final = {
    "sender": "caller",
    "origin": "origin",
    "self_address": "self",
    "block_height": "height",
    "block_time": "timestamp",
    "call_value": "callvalue",
}
#: Builtins that are one instruction applied to their operands.
_UNARY_BUILTINS: Final = {
    "balance": "balance",
    "transfer": "transfer",
    "sha256": "sha256",
    "to_bytes": "itob",
    "from_bytes": "btoi",
}
#: Instructions after which a storage slot may hold something else.
_FORGETS_READS: Final = frozenset({"sstore", "sdelete", "callsub", "call"})
#: Builtins that can neither fail nor change state, given safe operands.
_SAFE_BUILTINS: Final = frozenset(
    {*_ENVIRONMENT, "encode", "bytes", "len", "balance", "sha256", "to_bytes"}
)


class Labels:
    """Fresh label names for a whole program, and its shared revert stubs."""

    def __init__(self) -> None:
        self._count = 0
        self.reverts: dict[str, str] = {}  # message -> label

    def fresh(self) -> str:
        self._count += 1
        return f"L{self._count}"

    def revert(self, message: str) -> str:
        if message not in self.reverts:
            self.reverts[message] = f"R{len(self.reverts)}"
        return self.reverts[message]


@dataclass(slots=True)
class _Read:
    """A storage read in the current straight-line code: ``at`` is where its value was on
    top of the stack (``dup 0; store slot`` goes there once a second read wants it)."""

    at: int
    slot: int | None = None


class ExprLowerer:
    """Lowers expressions of one function (contracts.lang.lower adds the statements).

    Redundant storage reads: within straight-line code (no label in between), a second
    read of the same slot -- same field, key parts that are constants, unassigned
    parameters or the environment -- loads the first read's value from a local instead of
    reading storage again. Any write, subroutine or contract call, or label forgets them.
    Those locals come from the top of the function's slots, down; when a temporary needs
    one, the remembered reads are forgotten first.
    """

    def __init__(self, program: Program, checked: Checked, labels: Labels) -> None:
        self.program = program
        self.checked = checked
        self.labels = labels
        self.code: list[Item] = []
        self.line = checked.function.node.lineno
        self.temps_used = checked.slots_used
        self.reads: dict[tuple[object, ...], _Read] = {}
        self.reads_floor = MAX_LOCALS  # the lowest local slot holding a remembered read

    def emit(self, op: str, arg: int | bytes | str | None = None) -> None:
        self.code.append(Ins(op, arg, self.line))
        if op in _FORGETS_READS:
            self.forget_reads()

    def place(self, label: str) -> None:
        self.code.append(Label(label))
        self.forget_reads()  # control may arrive here from elsewhere

    def forget_reads(self) -> None:
        self.reads.clear()
        self.reads_floor = MAX_LOCALS

    def temp(self, node: ast.AST) -> int:
        if self.temps_used >= self.reads_floor:
            self.forget_reads()
        if self.temps_used >= MAX_LOCALS:
            raise error(
                node,
                f"{self.checked.function.display} needs more than {MAX_LOCALS} local slots "
                "(variables, parameters, loop counters): move part of it into a helper",
            )
        self.temps_used += 1
        return self.temps_used - 1

    def release(self, count: int) -> None:
        self.temps_used -= count

    def type_of(self, node: ast.expr) -> LangType:
        return self.checked.types[node]

    # ------------------------------------------------------------------------- values

    def value(self, node: ast.expr) -> None:
        """Push the value of ``node``."""
        folded = self.fold(node)
        if folded is not None:
            self.emit("push", folded)
            return
        getattr(self, f"_value_{type(node).__name__}")(node)

    def fold(self, node: ast.expr) -> int | bytes | None:
        """The value of a constant expression, if ``node`` is one (and it cannot fail)."""
        if isinstance(node, ast.Constant) and isinstance(node.value, int | bytes):
            return int(node.value) if isinstance(node.value, bool) else node.value
        if isinstance(node, ast.Name):
            ref = self.checked.names.get(node)
            return ref.value if isinstance(ref, ConstRef) else None
        if isinstance(node, ast.Call) and self._builtin_name(node) == "bytes":
            _, size = constant_value(node.args[0], self.program.constants)  # checked
            return bytes(size) if isinstance(size, int) else None
        if isinstance(node, ast.BinOp):
            left, right = self.fold(node.left), self.fold(node.right)
            if isinstance(left, bytes) and isinstance(right, bytes):
                joined = left + right
                return joined if len(joined) <= MAX_BYTES_LENGTH else None
            if isinstance(left, int) and isinstance(right, int):
                return _fold_int(node.op, left, right)
        return None

    def _value_Name(self, node: ast.Name) -> None:
        ref = self.checked.names[node]
        if isinstance(ref, LocalRef):
            self.emit("load", ref.slot)
        elif isinstance(ref, ArgRef):
            self.emit("arg", ref.index)
        else:  # constants were folded; *args is never a value
            raise AssertionError(f"unexpected name reference {ref}")

    def _value_Attribute(self, node: ast.Attribute) -> None:
        self.read_storage(node, key_pushed=False)

    def _value_Subscript(self, node: ast.Subscript) -> None:
        if node in self.checked.fields:
            self.read_storage(node, key_pushed=False)
            return
        base = node.value
        ref = self.checked.names.get(base) if isinstance(base, ast.Name) else None
        if isinstance(ref, VarArgsRef):
            self.value(node.slice)
            if ref.fixed:
                self.emit("push", ref.fixed)
                self.emit("add")
            self.emit("argx")
            if ref.elem is BOOL:
                self.normalise_bool()
            return
        self.value(base)
        if isinstance(node.slice, ast.Slice):
            lower, upper = node.slice.lower, node.slice.upper
            if lower is None:
                self.emit("push", 0)
            else:
                self.value(lower)
            if upper is None:
                self.emit("dup", 1)
                self.emit("len")
            else:
                self.value(upper)
            self.emit("slice")
            return
        self.value(node.slice)  # b[i]: the one byte b[i:i+1] as an int
        self.emit("dup", 0)
        self.emit("push", 1)
        self.emit("add")
        self.emit("slice")
        self.emit("btoi")

    def normalise_bool(self) -> None:
        """Make the u64 on top 0 or 1 (a bool argument may arrive as any u64)."""
        self.emit("push", 0)
        self.emit("ne")

    def _value_BinOp(self, node: ast.BinOp) -> None:
        self.value(node.left)
        self.binary(node.op, node.right, self.type_of(node))

    def binary(self, op: ast.operator, right: ast.expr, result: LangType) -> None:
        """With the left operand pushed: push ``right`` and apply ``op``."""
        if isinstance(op, ast.LShift):  # a << b is a * 2**b: overflow halts, as for *
            self.emit("push", 1)
            self.value(right)
            self.emit("shl")
            self.emit("mul")
            return
        self.value(right)
        self.emit("concat" if result is not INT else _BINARY[type(op)])

    def _value_UnaryOp(self, node: ast.UnaryOp) -> None:
        self.value(node.operand)
        self.emit("not")

    def _value_BoolOp(self, node: ast.BoolOp) -> None:
        end = self.labels.fresh()
        skip = "jz" if isinstance(node.op, ast.And) else "jnz"
        self.value(node.values[0])
        for value in node.values[1:]:
            self.emit("dup", 0)
            self.emit(skip, end)
            self.emit("pop")
            self.value(value)
        self.place(end)

    def _value_Compare(self, node: ast.Compare) -> None:
        self.value(node.left)
        self.value(node.comparators[0])
        self.emit(_COMPARE[type(node.ops[0])])

    def _value_IfExp(self, node: ast.IfExp) -> None:
        orelse, end = self.labels.fresh(), self.labels.fresh()
        self.jump_if(node.test, orelse, when=False)
        self.value(node.body)
        self.emit("jump", end)
        self.place(orelse)
        self.value(node.orelse)
        self.place(end)

    def _value_Call(self, node: ast.Call) -> None:
        self.call(node, keep=True)

    # ------------------------------------------------------------------------- conditions

    def jump_if(self, node: ast.expr, target: str, *, when: bool) -> None:
        """Jump to ``target`` if the bool ``node`` is ``when``; otherwise fall through."""
        folded = self.fold(node)
        if isinstance(folded, int):
            if bool(folded) is when:
                self.emit("jump", target)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.jump_if(node.operand, target, when=not when)
            return
        if isinstance(node, ast.BoolOp):
            all_needed = isinstance(node.op, ast.And)  # and: any false decides it
            if when is not all_needed:  # every operand may decide: jump on each
                for value in node.values:
                    self.jump_if(value, target, when=when)
                return
            skip = self.labels.fresh()
            for value in node.values[:-1]:
                self.jump_if(value, skip, when=not when)
            self.jump_if(node.values[-1], target, when=when)
            self.place(skip)
            return
        self.value(node)
        self.emit("jnz" if when else "jz", target)

    # ------------------------------------------------------------------------- storage

    def key(self, node: ast.Subscript, found: Field) -> None:
        """Push the storage key of ``self.map[...]``: constant parts joined at compile time."""
        assert isinstance(found.type, MapType)
        parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        pending = found.prefix
        started = False
        for part, part_type in zip(parts, found.type.keys, strict=True):
            constant = self.fold(part)
            if constant is not None:
                pending += _key_bytes(constant)
                continue
            if not started or pending:
                self.emit("push", pending)
                if started:
                    self.emit("concat")
            started = True
            pending = b""
            self.value(part)
            if part_type in (INT, BOOL):
                self.emit("itob")
            self.emit("concat")
        if not started or pending:
            self.emit("push", pending)
            if started:
                self.emit("concat")

    def read_storage(self, node: ast.Attribute | ast.Subscript, *, key_pushed: bool) -> None:
        """Push the value of ``self.field`` or ``self.map[...]``. With ``key_pushed`` the
        slot's key is on the stack and stays under the value (for an update)."""
        found = self.checked.fields[node]
        signature = self._read_signature(node, found)
        slot = None if signature is None else self._recall(signature)
        if slot is not None:
            self.emit("load", slot)
            return
        if key_pushed:
            self.emit("dup", 0)
        elif isinstance(node, ast.Subscript):
            self.key(node, found)
        else:
            self.emit("push", found.prefix)
        self.emit("sload")
        self.decode(self.type_of(node))
        if signature is not None:
            self.reads[signature] = _Read(len(self.code))

    def _read_signature(
        self, node: ast.Attribute | ast.Subscript, found: Field
    ) -> tuple[object, ...] | None:
        """What identifies the slot read, if it cannot change within straight-line code."""
        signature: list[object] = [found.prefix]
        if isinstance(node, ast.Subscript):
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for part in parts:
                constant = self.fold(part)
                ref = self.checked.names.get(part) if isinstance(part, ast.Name) else None
                name = self._builtin_name(part) if isinstance(part, ast.Call) else None
                if constant is not None:
                    signature.append(_key_bytes(constant))
                elif isinstance(ref, ArgRef):  # arguments never change
                    signature.append(("arg", ref.index))
                elif name in _ENVIRONMENT:
                    signature.append(name)
                else:
                    return None
        return tuple(signature)

    def _recall(self, signature: tuple[object, ...]) -> int | None:
        """The local holding an earlier read of the same slot, if any (making the earlier
        read keep its value there)."""
        read = self.reads.get(signature)
        if read is None:
            return None
        if read.slot is None:
            if self.reads_floor - 1 < self.temps_used:
                return None
            self.reads_floor -= 1
            read.slot = self.reads_floor
            before = self.code[read.at - 1]
            line = before.line if isinstance(before, Ins) else self.line
            self.code[read.at : read.at] = [Ins("dup", 0, line), Ins("store", read.slot, line)]
            for other in self.reads.values():
                if other.at > read.at:
                    other.at += 2
        return read.slot

    def decode(self, found: LangType) -> None:
        """Turn a stored byte string (on top) into a value of type ``found``."""
        if found is INT:
            self.emit("btoi")
        elif found is BOOL:
            self.emit("len")

    def stored(self, node: ast.expr, found: LangType) -> None:
        """Push ``node``'s value as its stored bytes (an int as 8 bytes, a bool as 0x01 or
        empty bytes, which deletes the slot)."""
        folded = self.fold(node)
        if found is BOOL:
            if folded is not None:
                self.emit("push", b"\x01" if folded else b"")
                return
            self.emit("push", b"\x01")  # b"\x01"[0:v] is 0x01 for True, empty for False
            self.emit("push", 0)
            self.value(node)
            self.emit("slice")
            return
        if found is INT and isinstance(folded, int):
            self.emit("push", folded.to_bytes(U64_BYTES, "big"))
            return
        self.value(node)
        if found is INT:
            self.emit("itob")

    # ------------------------------------------------------------------------- calls

    def _builtin_name(self, node: ast.Call) -> str | None:
        ref = self.checked.calls.get(node)
        return ref.name if ref is not None and ref.kind is CallKind.BUILTIN else None

    def call(self, node: ast.Call, *, keep: bool) -> None:
        """Lower a call; ``keep``: leave its result (otherwise it is dropped)."""
        ref = self.checked.calls[node]
        if ref.kind is not CallKind.BUILTIN:
            for arg in node.args:
                self.value(arg)
            table = self.program.methods if ref.kind is CallKind.METHOD else self.program.helpers
            self.emit("callsub", f"S{table[ref.name].index}")
        elif ref.name == "call":
            self._contract_call(node, keep)
            return
        else:
            self._builtin(node, ref.name)
        if not keep and ref.returns is not NONE:
            self.emit("pop")

    def _builtin(self, node: ast.Call, name: str) -> None:
        args = node.args
        if name in _ENVIRONMENT:
            self.emit(_ENVIRONMENT[name])
        elif name in _UNARY_BUILTINS:
            for arg in args:
                self.value(arg)
            self.emit(_UNARY_BUILTINS[name])
        elif name == "encode":
            assert isinstance(node.func, ast.Attribute)
            self.value(node.func.value)
        elif name == "bytes":
            folded = self.fold(node)
            assert isinstance(folded, bytes)
            self.emit("push", folded)
        elif name == "len":
            self._len(args[0])
        elif name == "Address":
            self.value(args[0])
            if self.type_of(args[0]) is not ADDRESS:
                self.emit("dup", 0)
                self.emit("len")
                self.emit("push", ADDRESS_BYTES)
                self.emit("eq")
                self.emit("assert")
        elif name == "require":
            message = args[1]
            assert isinstance(message, ast.Constant) and isinstance(message.value, str)
            self.jump_if(args[0], self.labels.revert(message.value), when=False)
        elif name == "revert":
            message = args[0]
            assert isinstance(message, ast.Constant) and isinstance(message.value, str)
            self.emit("push", message.value.encode("utf-8"))
            self.emit("revert")
        elif name == "emit":
            for arg in args[1:]:
                self.value(arg)
            event = args[0]
            assert isinstance(event, ast.Constant) and isinstance(event.value, str)
            self.emit("push", event.value.encode("utf-8"))
            self.emit("emit", len(args) - 1)
        else:
            raise AssertionError(f"no lowering for builtin {name}")

    def _len(self, arg: ast.expr) -> None:
        ref = self.checked.names.get(arg) if isinstance(arg, ast.Name) else None
        if isinstance(ref, VarArgsRef):
            self.emit("nargs")
            if ref.fixed:
                self.emit("push", ref.fixed)
                self.emit("sub")
            return
        self.value(arg)
        self.emit("len")

    def _contract_call(self, node: ast.Call, keep: bool) -> None:
        """``call(target, method, *args, value=v)``: the VM takes the arguments first."""
        target, method, *args = node.args
        early = [part for part in (target, method) if not self.safe(part)]
        slots = []
        for part in early:  # evaluate them first, as Python does
            slot = self.temp(part)
            self.method_or_value(part)
            self.emit("store", slot)
            slots.append(slot)
        for arg in args:
            self.value(arg)
        for part in (target, method):
            if part in early:
                self.emit("load", slots[early.index(part)])
            else:
                self.method_or_value(part)
        value = next((k.value for k in node.keywords if k.arg == "value"), None)
        if value is None:
            self.emit("push", 0)
        else:
            self.value(value)
        self.emit("call", len(args))
        self.release(len(slots))
        if keep:  # leave the ok flag, drop the result
            self.emit("swap", 1)
            self.emit("pop")
        else:
            self.emit("pop")
            self.emit("pop")

    def method_or_value(self, node: ast.expr) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            self.emit("push", node.value.encode("utf-8"))
        else:
            self.value(node)

    # ------------------------------------------------------------------------- safety

    def safe(self, node: ast.expr) -> bool:
        """Whether evaluating ``node`` can neither fail nor change anything, so it may be
        moved past other code. (A storage key over the VM's size limit and running out of
        gas are the exceptions every expression shares.)"""
        if isinstance(node, ast.Constant | ast.Name) or self.fold(node) is not None:
            return True
        if isinstance(node, ast.Attribute):
            return True
        if isinstance(node, ast.Subscript):
            parts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            return node in self.checked.fields and all(self.safe(p) for p in parts)
        if isinstance(node, ast.BinOp):
            bits = isinstance(node.op, ast.BitAnd | ast.BitOr | ast.BitXor)
            return bits and self.safe(node.left) and self.safe(node.right)
        if isinstance(node, ast.UnaryOp | ast.Compare | ast.BoolOp | ast.IfExp):
            return all(self.safe(child) for child in ast.iter_child_nodes(node)
                       if isinstance(child, ast.expr))  # fmt: skip
        if isinstance(node, ast.Call):
            name = self._builtin_name(node)
            operands = [*node.args]
            if isinstance(node.func, ast.Attribute):
                operands.append(node.func.value)
            return name in _SAFE_BUILTINS and all(self.safe(a) for a in operands)
        return False


def _fold_int(op: ast.operator, a: int, b: int) -> int | None:
    """``a op b`` if it is a u64 and cannot halt; otherwise None (left to the VM)."""
    result: int | None = None
    if isinstance(op, ast.Add):
        result = a + b
    elif isinstance(op, ast.Sub):
        result = a - b
    elif isinstance(op, ast.Mult):
        result = a * b
    elif isinstance(op, ast.FloorDiv) and b:
        result = a // b
    elif isinstance(op, ast.Mod) and b:
        result = a % b
    elif isinstance(op, ast.BitAnd):
        result = a & b
    elif isinstance(op, ast.BitOr):
        result = a | b
    elif isinstance(op, ast.BitXor):
        result = a ^ b
    elif isinstance(op, ast.LShift) and b < 64:
        result = a << b
    elif isinstance(op, ast.RShift) and b < 64:
        result = a >> b
    return result if result is not None and 0 <= result <= U64_MAX else None


def _key_bytes(value: int | bytes) -> bytes:
    return value.to_bytes(U64_BYTES, "big") if isinstance(value, int) else value
