"""Stage 1: the shape of a contract file -- imports, constants, helper functions, the one
contract class, its storage fields and method signatures.

Function bodies are left to contracts.lang.check. Everything outside the subset at this
level is refused here with its position and a sentence saying what is allowed instead.

Must never: evaluate user code (the source is only parsed, with the standard ``ast``).
"""

from __future__ import annotations

import ast
from typing import Final

from contracts.abi import CONSTRUCTOR_NAME, NAME_PATTERN
from contracts.lang import __all__ as LANG_NAMES
from contracts.lang.model import (
    KEY_TYPES,
    LANG_MODULE,
    STORED_TYPES,
    CompileError,
    Field,
    Function,
    Kind,
    LangType,
    MapType,
    Param,
    Program,
    error,
)
from contracts.limits import MAX_ARGS, MAX_BYTES_LENGTH, MAX_METHODS, U64_MAX

#: Names a contract file may import that are not functions or types of the language.
_NOT_CODE: Final = frozenset({"OnChainOnly", "Reverted"})
_SCALARS: Final = {"int": LangType.INT, "bool": LangType.BOOL, "bytes": LangType.BYTES}
_SCALARS_WITH_STR: Final = {**_SCALARS, "str": LangType.STR}
_MAX_FIELDS: Final = 256
#: Names the language gives a meaning to: no function, parameter or variable may take one.
RESERVED_NAMES: Final = frozenset(
    {"self", "len", "bytes", "range", "int", "bool", "str", "True", "False", "None"}
)
_IMPORT_HINT: Final = (
    "contracts may import only from contracts.lang (`from contracts.lang import Contract, "
    "Map, ...`): the VM has no modules, files, clock or network"
)


def parse_program(source: str) -> Program:
    """The program structure of ``source``; raises :class:`CompileError`."""
    try:
        tree = ast.parse(source, type_comments=False)
    except SyntaxError as exc:
        raise CompileError(
            f"not valid Python: {exc.msg}", exc.lineno or 0, exc.offset or 0
        ) from None
    imports: dict[str, str] = {}
    constants: dict[str, tuple[LangType, int | bytes]] = {}
    helpers: list[ast.FunctionDef] = []
    contract: ast.ClassDef | None = None
    for index, statement in enumerate(tree.body):
        if index == 0 and is_docstring(statement):
            continue
        if isinstance(statement, ast.Import):
            name = statement.names[0].name
            raise error(statement, f"`import {name}` is not allowed: {_IMPORT_HINT}")
        if isinstance(statement, ast.ImportFrom):
            _read_import(statement, imports)
        elif isinstance(statement, ast.ClassDef):
            if contract is not None:
                raise error(
                    statement,
                    f"class {statement.name}: a file holds one contract class "
                    f"({contract.name}, line {contract.lineno}); move it to its own file",
                )
            contract = _contract_class(statement, imports)
        elif isinstance(statement, ast.FunctionDef):
            helpers.append(statement)
        elif isinstance(statement, ast.Assign | ast.AnnAssign):
            _read_constant(statement, imports, constants)
        else:
            raise error(
                statement,
                f"{_describe(statement)} is not allowed at module level: a contract file "
                "holds imports, constants (NAME = literal), helper functions and one "
                "class deriving Contract",
            )
    if contract is None:
        raise CompileError(
            "no contract class: define one class deriving Contract "
            f"(`from {LANG_MODULE} import Contract`)",
            1,
            1,
        )
    program = Program(contract.name, contract, imports, constants)
    _read_class(program, contract)
    for node in helpers:
        _add_function(program, node, Kind.HELPER)
    program.called_methods = _called_methods(program)
    return program


def is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _describe(node: ast.AST) -> str:
    """A few words naming a statement or expression kind, for error messages."""
    words = {
        ast.If: "an if statement",
        ast.For: "a for loop",
        ast.While: "a while loop",
        ast.Expr: "an expression statement",
        ast.Try: "try/except",
        ast.With: "a with statement",
        ast.Raise: "raise",
        ast.Assert: "assert",
        ast.AsyncFunctionDef: "an async function",
        ast.Global: "global",
        ast.Nonlocal: "nonlocal",
        ast.Match: "match",
        ast.Delete: "del",
    }
    return words.get(type(node), f"`{type(node).__name__}`")


def _read_import(statement: ast.ImportFrom, imports: dict[str, str]) -> None:
    module = statement.module or ""
    if statement.level == 0 and module == "__future__":
        return
    if statement.level != 0 or module != LANG_MODULE:
        shown = "." * statement.level + module
        raise error(statement, f"`from {shown} import ...` is not allowed: {_IMPORT_HINT}")
    for alias in statement.names:
        if alias.name == "*":
            raise error(statement, f"import the names you use: `from {LANG_MODULE} import a, b`")
        if alias.name not in LANG_NAMES:
            have = ", ".join(sorted(set(LANG_NAMES) - _NOT_CODE))
            raise error(statement, f"{LANG_MODULE} has no {alias.name}; it has: {have}")
        imports[alias.asname or alias.name] = alias.name


def _imported(node: ast.expr, imports: dict[str, str], name: str) -> bool:
    return isinstance(node, ast.Name) and imports.get(node.id) == name


def _contract_class(node: ast.ClassDef, imports: dict[str, str]) -> ast.ClassDef:
    if len(node.bases) != 1 or node.keywords or not _imported(node.bases[0], imports, "Contract"):
        raise error(
            node,
            f"class {node.name} must derive only Contract (`class {node.name}(Contract):`); "
            "a contract file holds no other classes",
        )
    if node.decorator_list:
        raise error(node.decorator_list[0], "a contract class takes no decorators")
    return node


# ----------------------------------------------------------------------------- constants


def _read_constant(
    statement: ast.Assign | ast.AnnAssign,
    imports: dict[str, str],
    constants: dict[str, tuple[LangType, int | bytes]],
) -> None:
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    if len(targets) != 1 or not isinstance(targets[0], ast.Name) or statement.value is None:
        raise error(statement, "a module-level constant is `NAME = value`, one name at a time")
    name = targets[0].id
    if name in constants or name in imports or name in RESERVED_NAMES:
        raise error(statement, f"{name} is defined twice or is a built-in name")
    constants[name] = constant_value(statement.value, constants)


def constant_value(
    node: ast.expr, constants: dict[str, tuple[LangType, int | bytes]]
) -> tuple[LangType, int | bytes]:
    """Evaluate a constant expression: literals, earlier constants, + - * // % on ints,
    + on bytes, bytes(n). Raises :class:`CompileError` for anything else."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return LangType.BOOL, int(value)
        if isinstance(value, int):
            return LangType.INT, checked_int(node, value)
        if isinstance(value, bytes):
            return LangType.BYTES, checked_bytes(node, value)
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.BinOp):
        left_type, left = constant_value(node.left, constants)
        right_type, right = constant_value(node.right, constants)
        if isinstance(left, int) and isinstance(right, int) and left_type is right_type:
            result = _fold_int(node.op, left, right)
            if result is not None and left_type is LangType.INT:
                return LangType.INT, checked_int(node, result)
        if isinstance(left, bytes) and isinstance(right, bytes) and isinstance(node.op, ast.Add):
            return LangType.BYTES, checked_bytes(node, left + right)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "bytes"
        and len(node.args) == 1
        and not node.keywords
    ):
        size_type, size = constant_value(node.args[0], constants)
        if size_type is LangType.INT and isinstance(size, int):
            return LangType.BYTES, checked_bytes(node, bytes(size))
    raise error(
        node,
        "a constant must be an int, bool or bytes literal, or + - * // % of constants",
    )


def _fold_int(op: ast.operator, a: int, b: int) -> int | None:
    if isinstance(op, ast.Add):
        return a + b
    if isinstance(op, ast.Sub):
        return a - b
    if isinstance(op, ast.Mult):
        return a * b
    if isinstance(op, ast.FloorDiv | ast.Mod) and b == 0:
        return None
    if isinstance(op, ast.FloorDiv):
        return a // b
    if isinstance(op, ast.Mod):
        return a % b
    return None


def checked_int(node: ast.AST, value: int) -> int:
    if not 0 <= value <= U64_MAX:
        raise error(node, f"{value} is not a u64: integers are 0 .. 2**64 - 1 on the VM")
    return value


def checked_bytes(node: ast.AST, value: bytes) -> bytes:
    if len(value) > MAX_BYTES_LENGTH:
        raise error(node, f"a byte string is at most {MAX_BYTES_LENGTH} bytes")
    return value


# ----------------------------------------------------------------------------- the class


def _read_class(program: Program, node: ast.ClassDef) -> None:
    for index, statement in enumerate(node.body):
        if index == 0 and is_docstring(statement):
            continue
        if isinstance(statement, ast.AnnAssign):
            _add_field(program, statement)
        elif isinstance(statement, ast.FunctionDef):
            kind = Kind.PRIVATE if statement.name.startswith("_") else Kind.PUBLIC
            if statement.name == "__init__":
                kind = Kind.CONSTRUCTOR
            _add_function(program, statement, kind)
        elif isinstance(statement, ast.Pass):
            continue
        else:
            raise error(
                statement,
                f"{_describe(statement)} is not allowed in a contract class: it holds "
                "storage fields (`name: type`) and methods",
            )
    public = [f for f in program.methods.values() if f.kind is Kind.PUBLIC]
    if len(public) > MAX_METHODS:
        raise error(node, f"a contract has at most {MAX_METHODS} public methods")
    if not public and "__init__" not in program.methods:
        raise error(node, f"contract {node.name} has no methods: add __init__ or a method")


def _add_field(program: Program, statement: ast.AnnAssign) -> None:
    if not isinstance(statement.target, ast.Name):
        raise error(statement, "a storage field is `name: type`")
    name = statement.target.id
    if statement.value is not None:
        raise error(
            statement,
            f"storage field {name} cannot have a value here: every field starts at its zero "
            "value (0, False, empty); set it in __init__",
        )
    if name in program.fields:
        raise error(statement, f"storage field {name} is declared twice")
    if len(program.fields) >= _MAX_FIELDS:
        raise error(statement, f"a contract has at most {_MAX_FIELDS} storage fields")
    field_type = _field_type(statement.annotation, program.imports)
    prefix = bytes([len(program.fields)])
    program.fields[name] = Field(name, field_type, prefix, statement)


def _field_type(node: ast.expr, imports: dict[str, str]) -> LangType | MapType:
    if isinstance(node, ast.Subscript) and _imported(node.value, imports, "Map"):
        parts = node.slice
        if not isinstance(parts, ast.Tuple) or len(parts.elts) != 2:
            raise error(node, "a map is Map[KeyType, ValueType]")
        key_node, value_node = parts.elts
        if isinstance(key_node, ast.Subscript) and _is_name(key_node.value, "tuple"):
            elts = key_node.slice.elts if isinstance(key_node.slice, ast.Tuple) else []
            keys = tuple(_key_type(k, imports) for k in elts)
            if len(keys) < 2:
                raise error(key_node, "a tuple key has two or more parts: tuple[int, Address]")
        else:
            keys = (_key_type(key_node, imports),)
        for key_part, key_type in zip(keys[:-1], _elements(key_node), strict=False):
            if key_part not in (LangType.INT, LangType.BOOL, LangType.ADDRESS):
                raise error(
                    key_type,
                    "only the last part of a tuple key may be bytes or str: variable-length "
                    "parts in front would make two different keys meet",
                )
        return MapType(keys, _stored_type(value_node, imports, "a map value"))
    return _stored_type(node, imports, "a storage field")


def _elements(key_node: ast.expr) -> list[ast.expr]:
    if isinstance(key_node, ast.Subscript) and isinstance(key_node.slice, ast.Tuple):
        return list(key_node.slice.elts)
    return [key_node]


def _is_name(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _key_type(node: ast.expr, imports: dict[str, str]) -> LangType:
    found = value_type(node, imports)
    if found not in KEY_TYPES:
        raise error(node, "a map key is int, bool, bytes, str, Address or a tuple of them")
    return found


def _stored_type(node: ast.expr, imports: dict[str, str], what: str) -> LangType:
    if isinstance(node, ast.Subscript) and _imported(node.value, imports, "Map"):
        raise error(node, "maps do not nest: use a tuple key, Map[tuple[K1, K2], V]")
    found = value_type(node, imports) if not _imported(node, imports, "Address") else None
    if found not in STORED_TYPES:
        raise error(
            node,
            f"{what} is int, bool, bytes or str"
            + (" or a Map" if what == "a storage field" else "")
            + " (store an address as bytes: an absent one reads as empty bytes)",
        )
    assert found is not None
    return found


def value_type(node: ast.expr | None, imports: dict[str, str]) -> LangType:
    """The type an annotation names: int, bool, bytes, str, Address (or None)."""
    if node is None or (isinstance(node, ast.Constant) and node.value is None):
        return LangType.NONE
    if isinstance(node, ast.Name):
        if node.id in _SCALARS_WITH_STR:
            return _SCALARS_WITH_STR[node.id]
        if imports.get(node.id) == "Address":
            return LangType.ADDRESS
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        raise error(node, "write annotations without quotes")
    raise error(
        node,
        f"unsupported type {ast.unparse(node)}: the types are int, bool, bytes, str and "
        "Address (and Map[K, V] for storage fields)",
    )


# ----------------------------------------------------------------------------- functions


def _add_function(program: Program, node: ast.FunctionDef, kind: Kind) -> None:
    name = node.name
    table = program.helpers if kind is Kind.HELPER else program.methods
    if name in table:
        raise error(node, f"{name} is defined twice")
    if kind is Kind.HELPER and (
        name in program.constants or name in program.imports or name in RESERVED_NAMES
    ):
        raise error(node, f"{name} is already a constant or a built-in name")
    if kind is not Kind.HELPER and name in program.fields:
        raise error(node, f"{name} is both a storage field and a method")
    if kind is Kind.PRIVATE and name.startswith("__"):
        raise error(node, f"{name}: the only special method is __init__")
    if kind is Kind.PUBLIC and (NAME_PATTERN.fullmatch(name) is None or name == CONSTRUCTOR_NAME):
        raise error(
            node,
            f"method name {name!r} cannot be in the ABI: use ASCII letters, digits and _ "
            f"(at most 64), and not {CONSTRUCTOR_NAME!r}",
        )
    view, payable = _decorators(program, node, kind)
    params, variadic = _params(program, node, kind)
    returns = value_type(node.returns, program.imports)
    if kind is Kind.CONSTRUCTOR and returns is not LangType.NONE:
        raise error(node, "__init__ returns nothing")
    index = len(program.methods) + len(program.helpers)
    function = Function(name, kind, node, params, returns, variadic, view, payable, index)
    table[name] = function


def _decorators(program: Program, node: ast.FunctionDef, kind: Kind) -> tuple[bool, bool]:
    found = set()
    for decorator in node.decorator_list:
        name = program.imports.get(decorator.id) if isinstance(decorator, ast.Name) else None
        if name not in ("view", "payable") or kind is not Kind.PUBLIC:
            where = "public methods" if kind is not Kind.PUBLIC else "methods"
            raise error(decorator, f"the only decorators are @view and @payable, on {where}")
        found.add(name)
    if found == {"view", "payable"}:
        raise error(node, "a @view method cannot be @payable: a query sends no value")
    return "view" in found, "payable" in found


def _params(
    program: Program, node: ast.FunctionDef, kind: Kind
) -> tuple[tuple[Param, ...], Param | None]:
    args = node.args
    if args.posonlyargs or args.kwonlyargs or args.kwarg or args.defaults or args.kw_defaults:
        raise error(
            node,
            f"{node.name}: parameters are plain `name: type` (and one `*name: type` last on "
            "public methods); no defaults, keyword-only or ** parameters",
        )
    positional = list(args.args)
    if kind is not Kind.HELPER:
        if not positional or positional[0].arg != "self" or positional[0].annotation:
            raise error(node, f"method {node.name} must take self first, without annotation")
        positional = positional[1:]
    elif positional and positional[0].arg == "self":
        raise error(
            node, f"{node.name} is a module function: it has no self (move it into the class)"
        )
    params = tuple(_param(program, arg) for arg in positional)
    variadic = None
    if args.vararg is not None:
        if kind not in (Kind.PUBLIC, Kind.CONSTRUCTOR):
            raise error(args.vararg, "only __init__ and public methods may take *args")
        variadic = _param(program, args.vararg)
    limit = MAX_ARGS - (1 if variadic else 0)
    if kind in (Kind.PUBLIC, Kind.CONSTRUCTOR) and len(params) > limit:
        raise error(node, f"{node.name} takes more than {MAX_ARGS} arguments (the ABI's limit)")
    return params, variadic


def _param(program: Program, arg: ast.arg) -> Param:
    if arg.annotation is None:
        raise error(arg, f"parameter {arg.arg} needs a type: int, bool, bytes, str or Address")
    found = value_type(arg.annotation, program.imports)
    if found is LangType.NONE:
        raise error(arg, f"parameter {arg.arg} cannot be None")
    if arg.arg in program.imports or arg.arg in program.constants or arg.arg in RESERVED_NAMES:
        raise error(arg, f"parameter {arg.arg} hides a constant or a built-in name")
    return Param(arg.arg, found, arg)


def _called_methods(program: Program) -> frozenset[str]:
    called = set()
    for function in program.functions():
        for node in ast.walk(function.node):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and _is_name(node.func.value, "self")
            ):
                called.add(node.func.attr)
    return frozenset(called)
