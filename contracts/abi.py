"""The contract ABI: which methods a contract has, their typed parameters and results.

A contract's code container carries its ABI (see :mod:`contracts.container`), so a client
holding only the deployed code can call ``transfer <address> 250`` and show typed results.

ABI types and how they live on the VM's stack (which holds only u64 and byte strings):

=========  ===============================  ==========================================
type       ABI value (transactions, JSON)   stack value
=========  ===============================  ==========================================
u64        int in [0, 2**64)                int
bytes      bytes (at most 4096)             bytes
address    20 bytes                         bytes of length 20
str        str (UTF-8, at most 4096 bytes)  its UTF-8 bytes; results must be valid UTF-8
=========  ===============================  ==========================================

A method may be ``variadic``: its last parameter then repeats zero or more times (the
whole argument list stays within ``MAX_ARGS``). ``read_only`` methods run with state
changes refused; only ``payable`` methods (and constructors) accept value.

Must never: accept a value that does not fit its declared type; raise anything but
:class:`AbiError` on bad input; put a repr() of foreign input in a message that can end up
in a receipt (repr of text depends on the Python version's Unicode tables).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from contracts.limits import ADDRESS_BYTES, MAX_ARGS, MAX_BYTES_LENGTH, MAX_METHODS, U64_MAX
from crypto.encoding import DecodeError, Value, record_fields
from crypto.hashing import from_hex

StackValue = int | bytes
AbiValue = int | bytes | str

ABI_TAG: Final = "abi"
ABI_VERSION: Final = 1
CONSTRUCTOR_NAME: Final = "constructor"
#: Method and parameter names: identifiers, so CLIs and languages can use them as is.
NAME_PATTERN: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class AbiError(ValueError):
    """An ABI, an argument list or a value that does not fit its declared type."""


class AbiType(enum.StrEnum):
    U64 = "u64"
    BYTES = "bytes"
    ADDRESS = "address"
    STR = "str"


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: AbiType


@dataclass(frozen=True, slots=True)
class MethodAbi:
    """One callable entry point. The constructor is a MethodAbi named ``constructor``."""

    name: str
    params: tuple[Param, ...]
    returns: AbiType | None
    entry_pc: int
    read_only: bool = False
    payable: bool = False
    variadic: bool = False

    def param_type(self, index: int) -> AbiType:
        """The declared type of argument ``index`` (a variadic tail repeats the last type)."""
        if self.variadic and index >= len(self.params) - 1:
            return self.params[-1].type
        return self.params[index].type

    def accepts_count(self, count: int) -> bool:
        if self.variadic:
            return len(self.params) - 1 <= count <= MAX_ARGS
        return count == len(self.params)

    def signature(self) -> str:
        """Human-readable form, the same as the assembler's directive body."""
        params = ", ".join(f"{p.name}: {p.type}" for p in self.params)
        if self.variadic:
            params += "..."
        text = f"{self.name}({params})"
        if self.returns is not None:
            text += f" -> {self.returns}"
        if self.name == CONSTRUCTOR_NAME:  # always payable, never read-only: no flags
            return text
        flags = [
            flag for flag, on in (("readonly", self.read_only), ("payable", self.payable)) if on
        ]
        return " ".join([text, *flags])


@dataclass(frozen=True, slots=True)
class ContractAbi:
    methods: tuple[MethodAbi, ...]  # sorted by name, names unique
    constructor: MethodAbi | None = None
    _by_name: dict[str, MethodAbi] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {m.name: m for m in self.methods})

    def method(self, name: str) -> MethodAbi | None:
        return self._by_name.get(name)

    def to_value(self) -> Value:
        ctor = self.constructor
        return [
            ABI_TAG,
            ABI_VERSION,
            [
                [
                    m.name,
                    _params_value(m),
                    None if m.returns is None else str(m.returns),
                    m.entry_pc,
                    m.read_only,
                    m.payable,
                    m.variadic,
                ]
                for m in self.methods
            ],
            None if ctor is None else [_params_value(ctor), ctor.entry_pc, ctor.variadic],
        ]

    def describe(self) -> dict[str, object]:
        """A JSON-friendly description for CLIs and APIs."""
        return {
            "constructor": None if self.constructor is None else _describe(self.constructor),
            "methods": [_describe(m) for m in self.methods],
        }

    @classmethod
    def from_value(cls, value: Value) -> ContractAbi:
        """Decode :meth:`to_value` output, refusing anything else with :class:`AbiError`."""
        try:
            fields = record_fields(value, ABI_TAG, ABI_VERSION, 2)
        except DecodeError:
            raise AbiError(
                f"not an {ABI_TAG!r} record, version {ABI_VERSION}, of 2 fields"
            ) from None
        raw_methods = _list(fields[0], "methods", MAX_METHODS)
        methods = tuple(_method_from_value(item, i) for i, item in enumerate(raw_methods))
        names = [m.name for m in methods]
        if names != sorted(names) or len(set(names)) != len(names):
            raise AbiError("methods must be sorted by name, each name once")
        constructor = None
        if fields[1] is not None:
            ctor = _list(fields[1], "constructor", 3)
            if len(ctor) != 3:
                raise AbiError("constructor: expected [params, entry_pc, variadic]")
            constructor = _checked_method(
                constructor_abi(
                    _params_from_value(ctor[0], CONSTRUCTOR_NAME),
                    _uint(ctor[1], "constructor.entry_pc"),
                    variadic=_bool(ctor[2], "constructor.variadic"),
                )
            )
        return cls(methods, constructor)


def constructor_abi(params: Sequence[Param], entry_pc: int, *, variadic: bool = False) -> MethodAbi:
    """The constructor's entry: it returns nothing, may write state and accepts value."""
    return MethodAbi(CONSTRUCTOR_NAME, tuple(params), None, entry_pc, False, True, variadic)


def _params_value(method: MethodAbi) -> list[Value]:
    return [[p.name, str(p.type)] for p in method.params]


def _describe(method: MethodAbi) -> dict[str, object]:
    return {
        "name": method.name,
        "params": [{"name": p.name, "type": str(p.type)} for p in method.params],
        "variadic": method.variadic,
        "returns": None if method.returns is None else str(method.returns),
        "read_only": method.read_only,
        "payable": method.payable,
        "signature": method.signature(),
    }


def _list(value: Value, name: str, max_len: int) -> list[Value]:
    if not isinstance(value, list):
        raise AbiError(f"{name}: expected a list")
    if len(value) > max_len:
        raise AbiError(f"{name}: {len(value)} items is over the limit of {max_len}")
    return value


def _bool(value: Value, name: str) -> bool:
    if not isinstance(value, bool):
        raise AbiError(f"{name}: expected true or false")
    return value


def _uint(value: Value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AbiError(f"{name}: expected a non-negative integer")
    return value


def _name(value: Value, what: str) -> str:
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise AbiError(f"{what}: the name is not an identifier of at most 64 characters")
    return value


def _type(value: Value, what: str) -> AbiType:
    if isinstance(value, str):
        for abi_type in AbiType:
            if abi_type.value == value:
                return abi_type
    raise AbiError(f"{what}: unknown type (u64, bytes, address, str)")


def _params_from_value(value: Value, where: str) -> tuple[Param, ...]:
    params = []
    for i, item in enumerate(_list(value, f"{where}.params", MAX_ARGS)):
        pair = _list(item, f"{where}.params[{i}]", 2)
        if len(pair) != 2:
            raise AbiError(f"{where}.params[{i}]: expected [name, type]")
        params.append(Param(_name(pair[0], f"{where}.params[{i}]"), _type(pair[1], where)))
    if len({p.name for p in params}) != len(params):
        raise AbiError(f"{where}: parameter names must be distinct")
    return tuple(params)


def _method_from_value(value: Value, index: int) -> MethodAbi:
    where = f"methods[{index}]"
    items = _list(value, where, 7)
    if len(items) != 7:
        raise AbiError(f"{where}: expected 7 fields")
    name = _name(items[0], where)
    if name == CONSTRUCTOR_NAME:
        raise AbiError(f"{where}: {CONSTRUCTOR_NAME!r} is reserved")
    returns = None if items[2] is None else _type(items[2], f"{name}.returns")
    method = MethodAbi(
        name,
        _params_from_value(items[1], name),
        returns,
        _uint(items[3], f"{name}.entry_pc"),
        _bool(items[4], f"{name}.read_only"),
        _bool(items[5], f"{name}.payable"),
        _bool(items[6], f"{name}.variadic"),
    )
    return _checked_method(method)


def _checked_method(method: MethodAbi) -> MethodAbi:
    if method.variadic and not method.params:
        raise AbiError(f"{method.name}: a variadic method needs a parameter to repeat")
    if method.read_only and method.payable:
        raise AbiError(f"{method.name}: a read-only method cannot accept value")
    return method


# ----------------------------------------------------------------------------- values


def stack_value_fits(value: StackValue, abi_type: AbiType) -> bool:
    """Whether a stack value may stand for ``abi_type`` (argument or result)."""
    if abi_type is AbiType.U64:
        return type(value) is int
    if type(value) is not bytes:
        return False
    if abi_type is AbiType.ADDRESS:
        return len(value) == ADDRESS_BYTES
    if abi_type is AbiType.STR:
        try:
            value.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def to_stack(value: AbiValue, abi_type: AbiType, where: str) -> StackValue:
    """An ABI value (from a transaction) as its stack value; AbiError if it does not fit."""
    if abi_type is AbiType.U64:
        if type(value) is not int or not 0 <= value <= U64_MAX:
            raise AbiError(f"{where}: expected a u64 integer")
        return value
    if abi_type is AbiType.STR:
        if type(value) is not str:
            raise AbiError(f"{where}: expected a string")
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError:
            raise AbiError(f"{where}: not valid UTF-8 text") from None
    elif type(value) is bytes:
        raw = value
    else:
        raise AbiError(f"{where}: expected bytes")
    if abi_type is AbiType.ADDRESS and len(raw) != ADDRESS_BYTES:
        raise AbiError(f"{where}: an address is {ADDRESS_BYTES} bytes, got {len(raw)}")
    if len(raw) > MAX_BYTES_LENGTH:
        raise AbiError(f"{where}: {len(raw)} bytes is over the limit of {MAX_BYTES_LENGTH}")
    return raw


def from_stack(value: StackValue, abi_type: AbiType) -> AbiValue:
    """A stack value that :func:`stack_value_fits` ``abi_type`` as its ABI value."""
    if abi_type is AbiType.STR and isinstance(value, bytes):
        return value.decode("utf-8")
    return value


def args_to_stack(method: MethodAbi, args: Sequence[AbiValue]) -> tuple[StackValue, ...]:
    """Check a transaction's arguments against ``method`` and convert them for the stack."""
    if not method.accepts_count(len(args)):
        raise AbiError(f"{method.name}: {_count_text(method)}, got {len(args)}")
    return tuple(
        to_stack(arg, method.param_type(i), _arg_name(method, i)) for i, arg in enumerate(args)
    )


def _count_text(method: MethodAbi) -> str:
    n = len(method.params)
    if method.variadic:
        return f"takes at least {n - 1} and at most {MAX_ARGS} arguments"
    return f"takes {n} argument{'s' if n != 1 else ''}"


def _arg_name(method: MethodAbi, index: int) -> str:
    if method.variadic and index >= len(method.params) - 1:
        return f"argument {method.params[-1].name}[{index - len(method.params) + 1}]"
    return f"argument {method.params[index].name}"


# ----------------------------------------------------------------------------- CLI


def parse_cli_args(method: MethodAbi, texts: Sequence[str]) -> tuple[AbiValue, ...]:
    """Typed ABI values from command-line words: u64 in decimal, address and bytes in hex
    (``0x`` optional), str as is. Raises :class:`AbiError` naming the bad argument."""
    if not method.accepts_count(len(texts)):
        raise AbiError(f"{method.signature()}: {_count_text(method)}, got {len(texts)}")
    values: list[AbiValue] = []
    for i, text in enumerate(texts):
        where = _arg_name(method, i)
        abi_type = method.param_type(i)
        value: AbiValue
        if abi_type is AbiType.U64:
            if not text.isascii() or not text.isdigit():
                raise AbiError(f"{where}: {text!r} is not a decimal integer")
            value = int(text)
        elif abi_type is AbiType.STR:
            value = text
        else:
            size = ADDRESS_BYTES if abi_type is AbiType.ADDRESS else None
            try:
                value = from_hex(text, size=size, name=where)
            except ValueError as exc:
                raise AbiError(str(exc)) from None
        to_stack(value, abi_type, where)  # range and size checks
        values.append(value)
    return tuple(values)


def format_return(value: AbiValue | None, abi_type: AbiType | None) -> int | str | None:
    """A result for display or JSON: u64 as an integer, bytes and addresses as hex, str as is."""
    if value is None or abi_type is None:
        return None
    return format_value(value)


def format_value(value: AbiValue) -> int | str:
    """An untyped ABI value (an event argument) for display or JSON."""
    if isinstance(value, bytes):
        return value.hex()
    return value
