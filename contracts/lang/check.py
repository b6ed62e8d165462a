"""Stage 2b: function bodies -- statements, variables and their slots, definite
assignment, returns on every path -- and the whole-program rules: no recursion (the VM
bounds nested subroutines and a recursion's depth depends on its inputs) and no state
change reachable from a @view method.

The subset's statements: assignment (to a local, ``self.field`` or ``self.map[key]``),
annotated and augmented assignment, ``del self.map[key]``, calls, ``if/elif/else``,
``while``, ``for x in range(...)`` and ``for x in args`` (a ``*args`` parameter),
``break``, ``continue``, ``return``, ``pass``. Anything else is refused with a sentence
saying what to write instead.

Must never: let a name be read on a path where Python would find it unassigned (the VM
would read 0 where Python raises), or accept a function whose typed result can be missing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Final

from contracts.lang.check_expr import INT_OPS, ExprChecker, article
from contracts.lang.model import (
    BOOL,
    BYTES,
    INT,
    NONE,
    ArgRef,
    Checked,
    Function,
    Kind,
    LangType,
    LocalRef,
    MapType,
    Program,
    VarArgsRef,
    assignable,
    error,
    function_key,
)
from contracts.lang.parse import RESERVED_NAMES, is_docstring, value_type
from contracts.limits import MAX_SUBROUTINE_DEPTH

_STATEMENT_HINTS: Final[dict[type, str]] = {
    ast.Try: "try/except is not allowed: a failed require reverts the whole call; check "
    "conditions first with require(cond, msg)",
    ast.Raise: "raise is not allowed: use revert(msg) or require(cond, msg)",
    ast.Assert: "assert is not allowed: use require(cond, msg)",
    ast.With: "with is not allowed: contracts have no resources to manage",
    ast.Global: "global is not allowed: keep state in storage fields (self.x)",
    ast.Nonlocal: "nonlocal is not allowed: there are no nested functions",
    ast.Import: "imports belong at the top of the file, from contracts.lang only",
    ast.ImportFrom: "imports belong at the top of the file, from contracts.lang only",
    ast.FunctionDef: "nested functions are not allowed: define a helper at module level",
    ast.AsyncFunctionDef: "async functions are not allowed",
    ast.ClassDef: "classes are not allowed inside a contract: one contract class per file",
    ast.AsyncFor: "async for is not allowed",
    ast.AsyncWith: "async with is not allowed",
    ast.Match: "match is not allowed: use if/elif/else",
}


@dataclass(slots=True)
class _Loop:
    broke: bool = False


class BodyChecker(ExprChecker):
    """Checks one function's body (see the module docstring)."""

    def __init__(self, program: Program, function: Function) -> None:
        super().__init__(program, function)
        self.loops: list[_Loop] = []
        self.bound = _bound_names(function.node)
        self._parameters()

    def _parameters(self) -> None:
        function = self.function
        direct = function.kind is Kind.CONSTRUCTOR or (
            function.kind is Kind.PUBLIC and function.name not in self.program.called_methods
        )
        for index, param in enumerate(function.params):
            if direct and param.name not in self.bound and param.type is not BOOL:
                self.params[param.name] = ArgRef(index, param.type)
                continue
            ref = LocalRef(self.out.fresh_slot(param.node), param.type)
            self.locals[param.name] = ref
            self.assigned.add(param.name)
            if direct:  # copied in (bools normalised to 0 or 1) at entry
                self.out.copied_params.append((index, ref.slot, param.type))
        if function.variadic is not None:
            name = function.variadic.name
            if name in self.bound:
                raise error(function.variadic.node, f"*{name} cannot be assigned")
            self.params[name] = VarArgsRef(len(function.params), function.variadic.type)

    def run(self) -> Checked:
        body = self.function.node.body
        if body and is_docstring(body[0]):
            del body[0]
        falls = self.statements(body)
        if falls and self.function.returns is not NONE:
            raise error(
                self.function.node,
                f"{self.function.display} must return {article(self.function.returns)} on every "
                "path: control can reach the end of its body",
            )
        self.out.falls_through = falls
        return self.out

    # ------------------------------------------------------------------------- flow

    def statements(self, body: list[ast.stmt]) -> bool:
        """Check ``body``; False if its end cannot be reached. Statements after one that
        never falls through are dead code: they are dropped from the tree unchecked (as
        mypy skips them), so the lowering never sees them."""
        for index, statement in enumerate(body):
            method = getattr(self, f"_stmt_{type(statement).__name__}", None)
            if method is None:
                hint = _STATEMENT_HINTS.get(type(statement), "this statement is not in the subset")
                raise error(statement, hint)
            if not method(statement):
                del body[index + 1 :]
                return False
        return True

    def _branches(self, first: list[ast.stmt], second: list[ast.stmt]) -> bool:
        before = set(self.assigned)
        first_falls = self.statements(first)
        after_first = self.assigned
        self.assigned = set(before)
        second_falls = self.statements(second)
        if first_falls and second_falls:
            self.assigned = after_first & self.assigned
        elif first_falls:
            self.assigned = after_first
        return first_falls or second_falls

    def _loop(self, body: list[ast.stmt], infinite: bool) -> bool:
        before = set(self.assigned)
        self.loops.append(_Loop())
        self.statements(body)
        loop = self.loops.pop()
        self.assigned = before  # the body may not have run
        return loop.broke or not infinite

    # ------------------------------------------------------------------------- binding

    def bind(self, target: ast.Name, found: LangType, declared: LangType | None = None) -> None:
        name = target.id
        if name in self.params:
            raise error(target, f"*{name} cannot be assigned")
        program = self.program
        if name in RESERVED_NAMES or name in program.constants or name in program.imports:
            raise error(target, f"{name} is already a constant or a built-in name: pick another")
        if name in program.helpers:
            raise error(target, f"{name} is a helper function: pick another name")
        ref = self.locals.get(name)
        if ref is None:
            wanted = declared if declared is not None else found
            if wanted is NONE:
                raise error(target, f"{name} cannot hold None")
            ref = LocalRef(self.out.fresh_slot(target), wanted)
            self.locals[name] = ref
        elif declared is not None and declared is not ref.type:
            raise error(target, f"{name} is {article(ref.type)}: it cannot be declared {declared}")
        if not assignable(found, ref.type):
            raise error(target, f"{name} is {article(ref.type)}: it cannot hold {article(found)}")
        self.out.targets[target] = ref
        self.assigned.add(name)

    # ------------------------------------------------------------------------- statements

    def _stmt_Assign(self, node: ast.Assign) -> bool:
        if len(node.targets) != 1:
            raise error(node, "assign one target at a time: a = 1 then b = 1")
        target = node.targets[0]
        if isinstance(target, ast.Name):
            self.bind(target, self.value(node.value, "the value"))
            return True
        if isinstance(target, ast.Attribute):
            found = self.field_of(target)
            if found is None:
                raise error(target, "only locals, self.field and self.map[key] can be assigned")
            if isinstance(found.type, MapType):
                raise error(
                    target, f"{found.name} is a Map: assign a key, self.{found.name}[k] = v"
                )
            self.expect(node.value, found.type, f"the value of {found.name}")
            self.out.fields[target] = found
            self.note_write(node)
            return True
        if isinstance(target, ast.Subscript):
            value_type_ = self._map_target(target)
            self.expect(node.value, value_type_, "the value")
            self.note_write(node)
            return True
        if isinstance(target, ast.Tuple | ast.List):
            raise error(target, "assign one variable at a time")
        raise error(target, "only locals, self.field and self.map[key] can be assigned")

    def _map_target(self, target: ast.Subscript) -> LangType:
        found = self.field_of(target.value)
        if found is None or not isinstance(found.type, MapType):
            raise error(
                target, "only storage maps are assigned by key (self.map[key]); bytes are immutable"
            )
        found_type = self.map_key(target, found)
        self.out.types[target] = found_type
        return found_type

    def _stmt_AnnAssign(self, node: ast.AnnAssign) -> bool:
        if not isinstance(node.target, ast.Name):
            raise error(node, "storage fields are declared in the class body; annotate locals only")
        if node.value is None:
            raise error(node, f"give {node.target.id} a value: {node.target.id}: T = value")
        declared = value_type(node.annotation, self.program.imports)
        self.bind(node.target, self.value(node.value, "the value"), declared)
        return True

    def _stmt_AugAssign(self, node: ast.AugAssign) -> bool:
        target = node.target
        if isinstance(target, ast.Name):
            ref = self.lookup(target)
            if isinstance(ref, VarArgsRef):
                raise error(target, f"*{target.id} cannot be assigned")
            current = ref.type
        elif isinstance(target, ast.Attribute):
            found = self.field_of(target)
            if found is None or isinstance(found.type, MapType):
                raise error(target, "only locals, self.field and self.map[key] can be updated")
            self.out.fields[target] = found
            self.out.types[target] = current = found.type
            self.note_write(node)
        elif isinstance(target, ast.Subscript):
            current = self._map_target(target)
            self.note_write(node)
        else:
            raise error(target, "only locals, self.field and self.map[key] can be updated")
        operand = self.expr(node.value)
        if (
            isinstance(node.op, ast.Add)
            and current is BYTES
            and operand in (BYTES, LangType.ADDRESS)
        ):
            result = BYTES
        elif isinstance(node.op, INT_OPS) and current is INT and operand is INT:
            result = INT
        else:
            raise error(
                node, f"{article(current)} cannot be updated with {article(operand)} this way"
            )
        if isinstance(target, ast.Name):
            self.bind(target, result)
        return True

    def _stmt_Delete(self, node: ast.Delete) -> bool:
        for target in node.targets:
            if isinstance(target, ast.Subscript):
                self._map_target(target)
            elif (found := self.field_of(target)) is not None and not isinstance(
                found.type, MapType
            ):
                self.out.fields[target] = found
            else:
                raise error(target, "del clears storage: del self.map[key] or del self.field")
        self.note_write(node)
        return True

    def _stmt_Expr(self, node: ast.Expr) -> bool:
        if not isinstance(node.value, ast.Call):
            raise error(node, "this expression does nothing: only calls can be statements")
        ref = self.call(node.value)
        return ref.name != "revert"

    def _stmt_Pass(self, node: ast.Pass) -> bool:
        return True

    def _stmt_If(self, node: ast.If) -> bool:
        self.expect(node.test, BOOL, "the condition")
        return self._branches(node.body, node.orelse)

    def _stmt_While(self, node: ast.While) -> bool:
        if node.orelse:
            raise error(node, "while ... else is not supported: use a flag")
        self.expect(node.test, BOOL, "the condition")
        infinite = isinstance(node.test, ast.Constant) and node.test.value is True
        return self._loop(node.body, infinite)

    def _stmt_For(self, node: ast.For) -> bool:
        if node.orelse:
            raise error(node, "for ... else is not supported: use a flag")
        if not isinstance(node.target, ast.Name):
            raise error(node.target, "a for loop binds one variable")
        iterable = node.iter
        if isinstance(iterable, ast.Name) and isinstance(self._peek(iterable), VarArgsRef):
            ref = self._peek(iterable)
            assert isinstance(ref, VarArgsRef)
            self.out.names[iterable] = ref
            element = ref.elem
        elif (
            isinstance(iterable, ast.Call)
            and isinstance(iterable.func, ast.Name)
            and iterable.func.id == "range"
            and iterable.func.id not in self.locals
        ):
            if not 1 <= len(iterable.args) <= 2 or iterable.keywords:
                raise error(
                    iterable, "range takes a stop, or a start and a stop; for other steps use while"
                )
            for arg in iterable.args:
                self.expect(arg, INT, "a range bound")
            element = INT
        else:
            raise error(iterable, "a for loop runs over range(...) or a *args parameter")
        before = set(self.assigned)
        self.bind(node.target, element)
        falls = self._loop(node.body, infinite=False)
        self.assigned = before
        return falls

    def _stmt_Break(self, node: ast.Break) -> bool:
        if not self.loops:
            raise error(node, "break outside a loop")
        self.loops[-1].broke = True
        return False

    def _stmt_Continue(self, node: ast.Continue) -> bool:
        if not self.loops:
            raise error(node, "continue outside a loop")
        return False

    def _stmt_Return(self, node: ast.Return) -> bool:
        returns = self.function.returns
        if isinstance(node.value, ast.Constant) and node.value.value is None:
            node.value = None  # `return None` is a bare return
        if node.value is None:
            if returns is not NONE:
                raise error(
                    node, f"{self.function.display} returns {article(returns)}: return a value"
                )
        elif returns is NONE:
            raise error(node, f"{self.function.display} declares no result (add -> type)")
        else:
            self.expect(node.value, returns, "the result")
        return False


def _bound_names(node: ast.FunctionDef) -> frozenset[str]:
    """Every name the body assigns (Python makes them all locals of the function)."""
    names: set[str] = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store | ast.Del):
            names.add(child.id)
    return frozenset(names)


# ----------------------------------------------------------------------------- the program


def check_program(program: Program) -> dict[str, Checked]:
    """Check every function and the whole-program rules; keyed by :func:`function_key`."""
    checked = {function_key(f): BodyChecker(program, f).run() for f in program.functions()}
    order = _call_order(checked)
    _check_depth(checked, order)
    _check_views(checked, order)
    return checked


def _call_order(checked: dict[str, Checked]) -> list[str]:
    """Functions with every callee before its callers; refuses recursion."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in checked:
        if root in state:
            continue
        path: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while path:
            key, next_edge = path[-1]
            edges = checked[key].callees
            if next_edge == len(edges):
                path.pop()
                state[key] = 2
                order.append(key)
                continue
            path[-1] = (key, next_edge + 1)
            callee, call = edges[next_edge]
            if state.get(callee) == 1:
                names = [k for k, _ in path[[k for k, _ in path].index(callee) :]]
                cycle = " -> ".join([*names, callee])
                raise error(
                    call,
                    f"recursion is not allowed ({cycle}): the VM bounds nested subroutine calls "
                    f"at {MAX_SUBROUTINE_DEPTH} and a recursion's depth depends on its inputs; "
                    "use a loop",
                )
            if callee not in state:
                state[callee] = 1
                path.append((callee, 0))
    return order


def _check_depth(checked: dict[str, Checked], order: list[str]) -> None:
    """Every chain of calls fits the VM's subroutine stack (each call is one level; a
    public method called from the contract adds one for its entry)."""
    depth: dict[str, int] = {}
    for key in order:
        callees = checked[key].callees
        depth[key] = 1 + max((depth[callee] for callee, _ in callees), default=0)
        if depth[key] > MAX_SUBROUTINE_DEPTH - 1:
            raise error(
                checked[key].function.node,
                f"calls nest deeper than the VM's {MAX_SUBROUTINE_DEPTH} subroutine levels",
            )


def _check_views(checked: dict[str, Checked], order: list[str]) -> None:
    """A @view method runs read-only: refuse any state change it can reach."""
    reason: dict[str, tuple[ast.AST, str] | None] = {}
    for key in order:
        out = checked[key]
        found: tuple[ast.AST, str] | None = None
        if out.first_write is not None:
            found = (out.first_write, "it changes state here")
        else:
            for callee, call in out.callees:
                if reason[callee] is not None:
                    name = checked[callee].function.display
                    found = (call, f"it calls {name}, which changes state")
                    break
        reason[key] = found
        if out.function.view and found is not None:
            node, why = found
            raise error(node, f"@view method {out.function.name} cannot change state: {why}")
