"""The compiler's shared vocabulary: types, compile errors, the parsed program, and what
the checker learns about each node for the lowering to use.

Pipeline (contracts.lang.compiler): ``parse`` (module and class structure, signatures,
storage layout) -> ``check`` (bodies: types, names, flow, calls, effects) -> ``lower``
(instructions with labels) -> ``optimize`` (peephole) -> ``emit`` (assembly text, then the
existing assembler builds and validates the container).

Must never: import a later stage, or depend on anything but the source text.
"""

from __future__ import annotations

import ast
import enum
from dataclasses import dataclass, field
from typing import Final

from contracts.abi import AbiType
from contracts.limits import MAX_LOCALS

#: The module contract files import the language from.
LANG_MODULE: Final = "contracts.lang"


class LangType(enum.Enum):
    INT = "int"
    BOOL = "bool"
    BYTES = "bytes"
    STR = "str"
    ADDRESS = "Address"
    NONE = "None"

    def __str__(self) -> str:
        return self.value


#: Short names for the types, for the checker and the lowering.
INT, BOOL, BYTES, STR, ADDRESS, NONE = (
    LangType.INT,
    LangType.BOOL,
    LangType.BYTES,
    LangType.STR,
    LangType.ADDRESS,
    LangType.NONE,
)


#: How each type crosses the ABI (bool results are u64 0 or 1).
ABI_TYPES: Final = {
    LangType.INT: AbiType.U64,
    LangType.BOOL: AbiType.U64,
    LangType.BYTES: AbiType.BYTES,
    LangType.STR: AbiType.STR,
    LangType.ADDRESS: AbiType.ADDRESS,
}
#: Types that are byte strings on the stack.
BYTE_TYPES: Final = frozenset({LangType.BYTES, LangType.STR, LangType.ADDRESS})
#: Types a storage field or map value may have (an Address value would read as empty
#: bytes when absent, which is not an address).
STORED_TYPES: Final = frozenset({LangType.INT, LangType.BOOL, LangType.BYTES, LangType.STR})
#: Map key types; keys of these encode to a fixed size and may come first in a tuple key.
KEY_TYPES: Final = frozenset(
    {LangType.INT, LangType.BOOL, LangType.BYTES, LangType.STR, LangType.ADDRESS}
)
FIXED_SIZE_KEYS: Final = frozenset({LangType.INT, LangType.BOOL, LangType.ADDRESS})


def assignable(source: LangType, target: LangType) -> bool:
    """Whether a ``source`` value may go where a ``target`` is expected."""
    return source is target or (source is LangType.ADDRESS and target is LangType.BYTES)


def common_type(a: LangType, b: LangType) -> LangType | None:
    """The type of ``x if c else y`` with branches ``a`` and ``b``, if they agree."""
    if assignable(a, b):
        return b
    if assignable(b, a):
        return a
    return None


class CompileError(ValueError):
    """Source outside the subset: where it is and what is allowed instead."""

    def __init__(self, message: str, line: int = 0, column: int = 0, filename: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column  # 1-based, as editors count
        self.filename = filename

    def __str__(self) -> str:
        where = ":".join(str(p) for p in (self.filename or "<source>", self.line, self.column))
        return f"{where}: {self.message}"


def error(node: ast.AST | None, message: str) -> CompileError:
    """A :class:`CompileError` at ``node`` (the compiler fills in the file name)."""
    line = getattr(node, "lineno", 0)
    column = getattr(node, "col_offset", -1) + 1
    return CompileError(message, line, column)


# ----------------------------------------------------------------------------- the program


@dataclass(frozen=True, slots=True)
class MapType:
    keys: tuple[LangType, ...]  # one, or the parts of a tuple key
    value: LangType

    def __str__(self) -> str:
        keys = ", ".join(map(str, self.keys))
        return f"Map[{keys if len(self.keys) == 1 else f'tuple[{keys}]'}, {self.value}]"


@dataclass(frozen=True, slots=True)
class Field:
    """A storage field: its slot (a scalar) or key prefix (a map) is one byte, its index."""

    name: str
    type: LangType | MapType
    prefix: bytes
    node: ast.AST


class Kind(enum.Enum):
    CONSTRUCTOR = "constructor"  # __init__
    PUBLIC = "public"  # a method in the ABI
    PRIVATE = "private"  # a method whose name starts with _
    HELPER = "helper"  # a function at module level


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: LangType
    node: ast.arg


@dataclass(slots=True)
class Function:
    name: str
    kind: Kind
    node: ast.FunctionDef
    params: tuple[Param, ...]
    returns: LangType
    variadic: Param | None = None  # *name: T, external entries only
    view: bool = False
    payable: bool = False
    index: int = 0  # position in the program, for labels

    @property
    def is_method(self) -> bool:
        return self.kind is not Kind.HELPER

    @property
    def external(self) -> bool:
        return self.kind in (Kind.CONSTRUCTOR, Kind.PUBLIC)

    @property
    def display(self) -> str:
        return f"self.{self.name}" if self.is_method else self.name


@dataclass(slots=True)
class Program:
    name: str  # the contract class
    node: ast.ClassDef
    imports: dict[str, str]  # local name -> contracts.lang name
    constants: dict[str, tuple[LangType, int | bytes]]
    fields: dict[str, Field] = field(default_factory=dict)
    methods: dict[str, Function] = field(default_factory=dict)  # __init__ included
    helpers: dict[str, Function] = field(default_factory=dict)
    #: Methods some function calls as ``self.name(...)``: compiled as subroutines.
    called_methods: frozenset[str] = frozenset()

    def functions(self) -> list[Function]:
        """Every function in program order (methods as written, then helpers)."""
        return sorted([*self.methods.values(), *self.helpers.values()], key=lambda f: f.index)


# ----------------------------------------------------------------------------- what the checker learns


@dataclass(frozen=True, slots=True)
class LocalRef:
    """A variable (or a parameter passed in a local) in local slot ``slot``."""

    slot: int
    type: LangType


@dataclass(frozen=True, slots=True)
class ArgRef:
    """A parameter of an external entry, read with ``arg index``."""

    index: int
    type: LangType


@dataclass(frozen=True, slots=True)
class ConstRef:
    value: int | bytes
    type: LangType


@dataclass(frozen=True, slots=True)
class VarArgsRef:
    """The ``*name`` parameter: arguments ``fixed`` and up."""

    fixed: int
    elem: LangType


NameRef = LocalRef | ArgRef | ConstRef | VarArgsRef


class CallKind(enum.Enum):
    BUILTIN = "builtin"  # a contracts.lang function, len, bytes(n), Address(b), s.encode()
    METHOD = "method"
    HELPER = "helper"


@dataclass(frozen=True, slots=True)
class CallRef:
    kind: CallKind
    name: str  # the builtin's canonical name, or the function's name
    returns: LangType


@dataclass(slots=True)
class Checked:
    """One function after checking: everything the lowering needs besides the AST."""

    function: Function
    types: dict[ast.expr, LangType] = field(default_factory=dict)
    names: dict[ast.Name, NameRef] = field(default_factory=dict)
    calls: dict[ast.Call, CallRef] = field(default_factory=dict)
    #: ``self.field`` and ``self.map[...]`` reads and writes.
    fields: dict[ast.expr, Field] = field(default_factory=dict)
    #: Loop targets and assigned names -> their slot.
    targets: dict[ast.Name, LocalRef] = field(default_factory=dict)
    #: Parameters of an external entry that live in a local (assigned, or a bool to
    #: normalise): (argument index, slot, type), copied in at entry.
    copied_params: list[tuple[int, int, LangType]] = field(default_factory=list)
    slots_used: int = 0
    #: Whether control can reach the end of the body (then it returns nothing).
    falls_through: bool = True
    #: Calls of other functions: (callee key, the call node) for the call graph.
    callees: list[tuple[str, ast.Call]] = field(default_factory=list)
    #: The first node that changes state, if any (for @view checks).
    first_write: ast.AST | None = None

    def fresh_slot(self, node: ast.AST) -> int:
        if self.slots_used >= MAX_LOCALS:
            raise error(
                node,
                f"{self.function.display} needs more than {MAX_LOCALS} local slots (variables, "
                "parameters, loop counters): move part of it into a helper function",
            )
        self.slots_used += 1
        return self.slots_used - 1


def function_key(function: Function) -> str:
    """A call-graph key that keeps methods and helpers of the same name apart."""
    return f"self.{function.name}" if function.is_method else function.name
