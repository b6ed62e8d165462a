"""Assembler and disassembler for contract code (``.qasm`` source <-> code container).

Source syntax, one statement per line::

    ; a comment runs from ';' to the end of the line
    .constructor(supply: u64)                      ; ABI directives bind to the next
    .method transfer(to: address, amount: u64) -> u64           ; instruction
    .method balance_of(owner: address) -> u64 readonly
    .method deposit() payable
    .method setup(k: u64, members: address...)     ; a variadic last parameter
    loop:                                          ; a label (may share a line)
        push 10             ; decimal u64       -> pushint
        push 0xdeadbeef     ; hex bytes         -> pushbytes  (0x alone is empty)
        push "text\\n"       ; UTF-8 bytes, escapes \\\\ \\" \\n \\t \\xHH
        jnz loop            ; jump targets are labels
        dup 0               ; count immediates are decimal

Mnemonics are the opcode table's (contracts.opcodes); ``push`` picks pushint or pushbytes
from its literal. The result is validated, so whatever assembles can be deployed.
:func:`disassemble` turns any valid container back into source that assembles to the
same bytes.

Must never: emit code the validator would refuse, or guess at an ambiguous line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from contracts.abi import (
    CONSTRUCTOR_NAME,
    NAME_PATTERN,
    AbiType,
    ContractAbi,
    MethodAbi,
    Param,
    constructor_abi,
)
from contracts.container import ContainerError, build_container
from contracts.limits import U64_MAX
from contracts.opcodes import BY_MNEMONIC, Imm, Op, OpSpec
from contracts.validate import CodeError, encode_instruction, validate_code

_LABEL: Final = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*:")
_HEX: Final = re.compile(r"0x([0-9a-fA-F]*)")
_DECIMAL: Final = re.compile(r"[0-9]+")
_ESCAPES: Final = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}
_VARIADIC: Final = "..."


class AssemblyError(ValueError):
    """Source that does not assemble; the message names the line."""


@dataclass(slots=True)
class _Statement:
    line: int
    spec: OpSpec
    operand: int | bytes | str | None  # str: a label still to resolve
    pc: int = 0


@dataclass(slots=True)
class _Source:
    statements: list[_Statement] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)  # label -> statement index
    methods: list[tuple[int, MethodAbi]] = field(default_factory=list)  # (statement index, abi)
    pending: list[tuple[int, MethodAbi]] = field(default_factory=list)  # (line, abi)


def assemble(source: str) -> bytes:
    """Assemble ``source`` into a validated code container."""
    parsed = _Source()
    for number, raw_line in enumerate(source.splitlines(), start=1):
        _parse_line(parsed, number, _strip_comment(raw_line, number))
    if parsed.pending:
        raise AssemblyError(
            f"line {parsed.pending[0][0]}: a directive with no instruction after it"
        )
    if not parsed.statements:
        raise AssemblyError("no instructions")
    pc = 0
    for statement in parsed.statements:
        statement.pc = pc
        pc += len(encode_instruction(statement.spec, _placeholder(statement)))
    code = b"".join(encode_instruction(s.spec, _resolve(parsed, s)) for s in parsed.statements)
    abi = _build_abi(parsed)
    try:
        container = build_container(abi, code)
        validate_code(container)
    except (ContainerError, CodeError) as exc:
        raise AssemblyError(str(exc)) from None
    return container


def _strip_comment(line: str, number: int) -> str:
    in_string = False
    escaped = False
    for i, char in enumerate(line):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == ";":
            return line[:i]
    if in_string:
        raise AssemblyError(f"line {number}: unterminated string")
    return line


def _parse_line(parsed: _Source, number: int, text: str) -> None:
    text = text.strip()
    if text.startswith("."):
        parsed.pending.append((number, _parse_directive(text, number)))
        return
    while (match := _LABEL.match(text)) is not None:
        label = match.group(1)
        if label in parsed.labels:
            raise AssemblyError(f"line {number}: label {label!r} defined twice")
        parsed.labels[label] = len(parsed.statements)
        text = text[match.end() :].strip()
    if not text:
        return
    words = text.split(None, 1)
    operand_text = words[1].strip() if len(words) > 1 else ""
    statement = _parse_instruction(words[0].lower(), operand_text, number)
    for _, method in parsed.pending:
        parsed.methods.append((len(parsed.statements), method))
    parsed.pending.clear()
    parsed.statements.append(statement)


def _parse_instruction(mnemonic: str, operand: str, number: int) -> _Statement:
    where = f"line {number}"
    if mnemonic == "push":
        if not operand:
            raise AssemblyError(f"{where}: push needs a literal")
        value = _literal(operand, where)
        spec = BY_MNEMONIC["pushint" if isinstance(value, int) else "pushbytes"]
        return _Statement(number, spec, value)
    spec_or_none = BY_MNEMONIC.get(mnemonic)
    if spec_or_none is None:
        raise AssemblyError(f"{where}: unknown instruction {mnemonic!r}")
    spec = spec_or_none
    if spec.imm is None:
        if operand:
            raise AssemblyError(f"{where}: {mnemonic} takes no operand")
        return _Statement(number, spec, None)
    if not operand:
        raise AssemblyError(f"{where}: {mnemonic} needs an operand")
    if spec.imm is Imm.TARGET:
        if NAME_PATTERN.fullmatch(operand) is None:
            raise AssemblyError(f"{where}: {mnemonic} needs a label, got {operand!r}")
        return _Statement(number, spec, operand)
    value = _literal(operand, where)
    if spec.imm is Imm.BYTES:
        if not isinstance(value, bytes):
            raise AssemblyError(f"{where}: pushbytes needs a hex or string literal")
    elif not isinstance(value, int):
        raise AssemblyError(f"{where}: {mnemonic} needs a decimal integer")
    elif spec.imm is Imm.U8 and not spec.imm_min <= value <= spec.imm_max:
        raise AssemblyError(
            f"{where}: {mnemonic} {value} is outside [{spec.imm_min}, {spec.imm_max}]"
        )
    return _Statement(number, spec, value)


def _literal(text: str, where: str) -> int | bytes:
    if _DECIMAL.fullmatch(text):
        value = int(text)
        if value > U64_MAX:
            raise AssemblyError(f"{where}: {text} does not fit in a u64")
        return value
    if (match := _HEX.fullmatch(text)) is not None:
        digits = match.group(1)
        if len(digits) % 2:
            raise AssemblyError(f"{where}: hex literal {text} has an odd number of digits")
        return bytes.fromhex(digits)
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return _unescape(text[1:-1], where)
    raise AssemblyError(f'{where}: {text!r} is not a literal (decimal, 0x hex or "string")')


def _unescape(body: str, where: str) -> bytes:
    """A string literal's bytes: UTF-8 text, with \\xHH standing for one raw byte."""
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            raise AssemblyError(f'{where}: a " inside a string must be escaped')
        if char != "\\":
            out += char.encode("utf-8")
            i += 1
            continue
        code = body[i + 1 : i + 2]
        if code in _ESCAPES:
            out += _ESCAPES[code].encode("ascii")
            i += 2
        elif code == "x" and re.fullmatch(r"[0-9a-fA-F]{2}", body[i + 2 : i + 4]):
            out.append(int(body[i + 2 : i + 4], 16))
            i += 4
        else:
            raise AssemblyError(f"{where}: unknown escape \\{code}")
    return bytes(out)


def _parse_directive(text: str, number: int) -> MethodAbi:
    where = f"line {number}"
    match = re.fullmatch(r"\.(method|constructor)\s*(.*)", text)
    if match is None:
        raise AssemblyError(f"{where}: unknown directive {text.split()[0]!r}")
    kind, rest = match.groups()
    name = CONSTRUCTOR_NAME
    if kind == "method":
        head = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\s*", rest)
        if head is None:
            raise AssemblyError(f"{where}: .method needs a name")
        name, rest = head.group(1), rest[head.end() :]
        if name == CONSTRUCTOR_NAME:
            raise AssemblyError(f"{where}: use .constructor(...) for the constructor")
    if not rest.startswith("(") or ")" not in rest:
        raise AssemblyError(f"{where}: expected ( parameters )")
    close = rest.index(")")
    params, variadic = _parse_params(rest[1:close], where)
    tail = rest[close + 1 :].split()
    returns = None
    if tail[:1] == ["->"]:
        if len(tail) < 2:
            raise AssemblyError(f"{where}: -> needs a type")
        returns = _abi_type(tail[1], where)
        tail = tail[2:]
    flags = set(tail)
    if kind == "constructor":
        if returns is not None or flags:
            raise AssemblyError(f"{where}: a constructor has no result and no flags")
        return constructor_abi(params, 0, variadic=variadic)
    if not flags <= {"readonly", "payable"} or len(flags) != len(tail):
        raise AssemblyError(f"{where}: unexpected {' '.join(tail)!r} (flags: readonly, payable)")
    if "readonly" in flags and "payable" in flags:
        raise AssemblyError(f"{where}: a read-only method cannot be payable")
    return MethodAbi(name, params, returns, 0, "readonly" in flags, "payable" in flags, variadic)


def _parse_params(text: str, where: str) -> tuple[tuple[Param, ...], bool]:
    if not text.strip():
        return (), False
    params: list[Param] = []
    variadic = False
    parts = [part.strip() for part in text.split(",")]
    for i, part in enumerate(parts):
        if variadic:
            raise AssemblyError(f"{where}: only the last parameter may be variadic")
        name, colon, type_text = part.partition(":")
        type_text = type_text.strip()
        if type_text.endswith(_VARIADIC):
            variadic = True
            type_text = type_text.removesuffix(_VARIADIC).strip()
            if i != len(parts) - 1:
                raise AssemblyError(f"{where}: only the last parameter may be variadic")
        name = name.strip()
        if not colon or NAME_PATTERN.fullmatch(name) is None:
            raise AssemblyError(f"{where}: parameter {part!r} is not 'name: type'")
        params.append(Param(name, _abi_type(type_text, where)))
    if len({p.name for p in params}) != len(params):
        raise AssemblyError(f"{where}: parameter names must be distinct")
    return tuple(params), variadic


def _abi_type(text: str, where: str) -> AbiType:
    for abi_type in AbiType:
        if abi_type.value == text:
            return abi_type
    raise AssemblyError(f"{where}: unknown type {text!r} (u64, bytes, address, str)")


def _placeholder(statement: _Statement) -> int | bytes | None:
    return 0 if isinstance(statement.operand, str) else statement.operand


def _resolve(parsed: _Source, statement: _Statement) -> int | bytes | None:
    if not isinstance(statement.operand, str):
        return statement.operand
    index = parsed.labels.get(statement.operand)
    if index is None:
        raise AssemblyError(f"line {statement.line}: unknown label {statement.operand!r}")
    if index >= len(parsed.statements):
        raise AssemblyError(
            f"line {statement.line}: label {statement.operand!r} marks no instruction"
        )
    return parsed.statements[index].pc


def _build_abi(parsed: _Source) -> ContractAbi:
    constructor: MethodAbi | None = None
    methods: dict[str, MethodAbi] = {}
    for index, method in parsed.methods:
        line = parsed.statements[index].line
        entry_pc = parsed.statements[index].pc
        placed = MethodAbi(
            method.name, method.params, method.returns, entry_pc,
            method.read_only, method.payable, method.variadic,
        )  # fmt: skip
        if method.name == CONSTRUCTOR_NAME:
            if constructor is not None:
                raise AssemblyError(f"line {line}: a second .constructor")
            constructor = placed
        elif method.name in methods:
            raise AssemblyError(f"line {line}: method {method.name!r} declared twice")
        else:
            methods[method.name] = placed
    return ContractAbi(tuple(methods[name] for name in sorted(methods)), constructor)


# ----------------------------------------------------------------------------- disassembler

_INDENT: Final = "    "


def disassemble(code: bytes) -> str:
    """Source for a code container; :func:`assemble` of it gives back the same bytes.

    Raises :class:`~contracts.validate.CodeError` if ``code`` is not valid.
    """
    validated = validate_code(code)
    targets = {ins.imm for ins in validated.instructions if ins.spec.imm is Imm.TARGET}
    directives: dict[int, list[str]] = {}
    for method in validated.entry_points():
        directives.setdefault(method.entry_pc, []).append(_directive(method))
    lines = [f"; QVM code, sha256 {validated.code_hash.hex()}"]
    for ins in validated.instructions:
        if ins.pc in targets:
            lines.append(f"L{ins.pc}:")
        lines.extend(directives.get(ins.pc, ()))
        lines.append(_INDENT + _instruction_text(ins.spec, ins.imm))
    return "\n".join(lines) + "\n"


def _directive(method: MethodAbi) -> str:
    if method.name == CONSTRUCTOR_NAME:
        return "." + method.signature()
    return ".method " + method.signature()


def _instruction_text(spec: OpSpec, imm: int | bytes | None) -> str:
    if spec.op in (Op.PUSHINT, Op.PUSHBYTES):
        return f"push {_literal_text(imm)}"
    if not isinstance(imm, int):
        return spec.mnemonic
    if spec.imm is Imm.TARGET:
        return f"{spec.mnemonic} L{imm}"
    return f"{spec.mnemonic} {imm}"


def _literal_text(value: int | bytes | None) -> str:
    if isinstance(value, int):
        return str(value)
    assert value is not None
    if all(0x20 <= byte < 0x7F for byte in value):
        text = value.decode("ascii").replace("\\", "\\\\").replace('"', '\\"')
        return f'"{text}"'
    return "0x" + value.hex()
