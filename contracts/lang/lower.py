"""Stage 3b: statements and functions to stack code; the program's layout.

Calling convention. A public method that no other function calls is an entry of its own:
its parameters are read with ``arg i`` (copied into a local only if it assigns them, or
to make a bool exactly 0 or 1). Every other function -- private methods, helpers, public
methods that are also called from the contract -- is a subroutine: the caller pushes the
arguments and ``callsub``s it, the subroutine stores them into its fresh locals and
leaves its result (if any) on the stack at ``retsub``. A called public method gets a small
entry that pushes its arguments and calls the subroutine. Statements leave the stack as
they found it; loop counters and bounds live in locals, so ``return`` works anywhere.

Layout: each function in source order (an entry with its ABI directive, or a subroutine),
then one ``push message; revert`` stub per distinct require message.

Must never: leave values on the stack across statements, or emit an entry whose ABI
directive does not match its Python signature.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

from contracts.lang.ir import Directive, Ins, Item, Label
from contracts.lang.lower_expr import ExprLowerer, Labels
from contracts.lang.model import (
    ABI_TYPES,
    BOOL,
    INT,
    NONE,
    Checked,
    Function,
    Kind,
    LangType,
    Program,
    VarArgsRef,
    function_key,
)


@dataclass(slots=True)
class _Loop:
    test: str  # continue jumps here
    end: str  # break jumps here


def lower_program(program: Program, checked: dict[str, Checked]) -> list[Item]:
    """The whole program as one list of instructions, labels and directives."""
    labels = Labels()
    code: list[Item] = []
    for function in program.functions():
        lowerer = FunctionLowerer(program, checked[function_key(function)], labels)
        code.extend(lowerer.lower())
    for message, label in labels.reverts.items():
        code += [Label(label), Ins("push", message.encode("utf-8")), Ins("revert")]
    return code


def directive(function: Function) -> str:
    """The assembler's ABI directive for an external function."""
    params = [f"{p.name}: {ABI_TYPES[p.type]}" for p in function.params]
    if function.variadic is not None:
        params.append(f"{function.variadic.name}: {ABI_TYPES[function.variadic.type]}...")
    if function.kind is Kind.CONSTRUCTOR:
        return f".constructor({', '.join(params)})"
    text = f".method {function.name}({', '.join(params)})"
    if function.returns is not NONE:
        text += f" -> {ABI_TYPES[function.returns]}"
    if function.view:
        text += " readonly"
    if function.payable:
        text += " payable"
    return text


class FunctionLowerer(ExprLowerer):
    def __init__(self, program: Program, checked: Checked, labels: Labels) -> None:
        super().__init__(program, checked, labels)
        function = checked.function
        self.function = function
        self.subroutine = not (
            function.kind is Kind.CONSTRUCTOR
            or (function.kind is Kind.PUBLIC and function.name not in program.called_methods)
        )
        self.loops: list[_Loop] = []

    def lower(self) -> list[Item]:
        function = self.function
        if function.external and self.subroutine:
            self._entry_stub()
        if self.subroutine:
            self.place(f"S{function.index}")
            # the checker gave parameter i of a subroutine local slot i
            for index in reversed(range(len(function.params))):
                self.emit("store", index)
        else:
            self.code.append(Directive(directive(function)))
            self.place(f"F{function.index}")
            for index, slot, param_type in self.checked.copied_params:
                self.emit("arg", index)
                if param_type is BOOL:
                    self.normalise_bool()
                self.emit("store", slot)
        body = function.node.body
        self.statements(body)
        if self.checked.falls_through:
            self.line = _last_line(function.node)
            self.emit("retsub" if self.subroutine else "halt")
        return self.code

    def _entry_stub(self) -> None:
        """The ABI entry of a public method that the contract also calls."""
        function = self.function
        self.code.append(Directive(directive(function)))
        self.place(f"F{function.index}")
        for index, param in enumerate(function.params):
            self.emit("arg", index)
            if param.type is BOOL:
                self.normalise_bool()
        self.emit("callsub", f"S{function.index}")
        self.emit("halt" if function.returns is NONE else "return")

    # ------------------------------------------------------------------------- statements

    def statements(self, body: list[ast.stmt]) -> None:
        """Lower checked statements (the checker dropped docstrings and dead code)."""
        for statement in body:
            self.line = statement.lineno
            getattr(self, f"_stmt_{type(statement).__name__}")(statement)

    def _stmt_Pass(self, node: ast.Pass) -> None:
        return

    def _stmt_Expr(self, node: ast.Expr) -> None:
        assert isinstance(node.value, ast.Call)
        self.call(node.value, keep=False)

    def _stmt_Assign(self, node: ast.Assign) -> None:
        self._assign(node.targets[0], node.value)

    def _stmt_AnnAssign(self, node: ast.AnnAssign) -> None:
        assert node.value is not None
        self._assign(node.target, node.value)

    def _assign(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.value(value)
            self.emit("store", self.checked.targets[target].slot)
            return
        assert isinstance(target, ast.Attribute | ast.Subscript)
        found = self.checked.fields[target]
        value_type = self.type_of(target) if isinstance(target, ast.Subscript) else found.type
        assert isinstance(value_type, LangType)
        if isinstance(target, ast.Attribute):
            self.emit("push", found.prefix)
            self.stored(value, value_type)
        elif self.safe(target):  # the key cannot fail: build it first, as the VM wants
            self.key(target, found)
            self.stored(value, value_type)
        else:  # Python evaluates the value first
            self.stored(value, value_type)
            self.key(target, found)
            self.emit("swap", 1)
        self.emit("sstore")

    def _stmt_AugAssign(self, node: ast.AugAssign) -> None:
        target = node.target
        if isinstance(target, ast.Name):
            slot = self.checked.targets[target].slot
            self.emit("load", slot)
            self.binary(node.op, node.value, self.checked.targets[target].type)
            self.emit("store", slot)
            return
        assert isinstance(target, ast.Attribute | ast.Subscript)
        found = self.checked.fields[target]
        if isinstance(target, ast.Subscript):
            self.key(target, found)
        else:
            self.emit("push", found.prefix)
        current = self.type_of(target)
        self.read_storage(target, key_pushed=True)
        self.binary(node.op, node.value, current)
        if current is INT:
            self.emit("itob")
        self.emit("sstore")

    def _stmt_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            found = self.checked.fields[target]
            if isinstance(target, ast.Subscript):
                self.key(target, found)
            else:
                self.emit("push", found.prefix)
            self.emit("sdelete")

    def _stmt_If(self, node: ast.If) -> None:
        end = self.labels.fresh()
        if not node.orelse:
            self.jump_if(node.test, end, when=False)
            self.statements(node.body)
            self.place(end)
            return
        orelse = self.labels.fresh()
        self.jump_if(node.test, orelse, when=False)
        self.statements(node.body)
        self.emit("jump", end)
        self.place(orelse)
        self.statements(node.orelse)
        self.place(end)

    def _stmt_While(self, node: ast.While) -> None:
        body, test, end = self.labels.fresh(), self.labels.fresh(), self.labels.fresh()
        self.emit("jump", test)
        self.place(body)
        self.loops.append(_Loop(test, end))
        self.statements(node.body)
        self.loops.pop()
        self.place(test)
        self.line = node.lineno
        self.jump_if(node.test, body, when=True)
        self.place(end)

    def _stmt_For(self, node: ast.For) -> None:
        """``for x in range(a, b)`` and ``for x in args``: a hidden counter runs from the
        start to the bound, both evaluated once, before the first iteration."""
        assert isinstance(node.target, ast.Name)
        iterable = node.iter
        counter = self.temp(node)
        used = 1
        varargs: VarArgsRef | None = None
        bound_const: int | bytes | None = None
        bound_slot = 0
        if isinstance(iterable, ast.Name):  # arguments fixed .. nargs - 1
            ref = self.checked.names[iterable]
            assert isinstance(ref, VarArgsRef)
            varargs = ref
            self.emit("push", ref.fixed)
            self.emit("store", counter)
        else:
            assert isinstance(iterable, ast.Call)
            if len(iterable.args) == 2:
                self.value(iterable.args[0])
            else:
                self.emit("push", 0)
            self.emit("store", counter)
            bound_const = self.fold(iterable.args[-1])
            if bound_const is None:
                bound_slot = self.temp(node)
                used += 1
                self.value(iterable.args[-1])
                self.emit("store", bound_slot)
        body, test, end = self.labels.fresh(), self.labels.fresh(), self.labels.fresh()
        self.emit("jump", test)
        self.place(body)
        self.emit("load", counter)
        if varargs is not None:
            self.emit("argx")
            if varargs.elem is BOOL:
                self.normalise_bool()
        self.emit("store", self.checked.targets[node.target].slot)
        self.emit("load", counter)
        self.emit("push", 1)
        self.emit("add")
        self.emit("store", counter)
        self.loops.append(_Loop(test, end))
        self.statements(node.body)
        self.loops.pop()
        self.place(test)
        self.line = node.lineno
        self.emit("load", counter)
        if varargs is not None:
            self.emit("nargs")
        elif bound_const is not None:
            self.emit("push", bound_const)
        else:
            self.emit("load", bound_slot)
        self.emit("lt")
        self.emit("jnz", body)
        self.place(end)
        self.release(used)

    def _stmt_Break(self, node: ast.Break) -> None:
        self.emit("jump", self.loops[-1].end)

    def _stmt_Continue(self, node: ast.Continue) -> None:
        self.emit("jump", self.loops[-1].test)

    def _stmt_Return(self, node: ast.Return) -> None:
        if node.value is not None:
            self.value(node.value)
        if self.subroutine:
            self.emit("retsub")
        else:
            self.emit("halt" if node.value is None else "return")


def _last_line(node: ast.FunctionDef) -> int:
    return getattr(node, "end_lineno", None) or node.lineno
