"""Conformance vectors: tests/vectors/vm/*.json, one parametrized case per vector.

A vector names contracts by role ("main", "callee", ...) and writes their code as
assembly lines, where ``@name`` stands for the hex address of contract (or account)
``name``. It gives the arguments as command-line words (parsed with the method's ABI),
the storage and balances before, the gas limit, and what must come out: status, exact gas
used, typed return value, events, error text (a substring) and storage and balances after.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from contracts.abi import format_return, format_value, parse_cli_args
from contracts.assembler import assemble
from contracts.instructions import CATEGORIES
from contracts.interpreter import ExecutionResult, Machine, call, contract_address, deploy, query
from contracts.opcodes import OPCODES, Op
from contracts.state import BlockContext, MemoryHost
from contracts.validate import validate_code
from crypto.hashing import sha256

VECTOR_DIR = Path(__file__).resolve().parent.parent / "vectors" / "vm"
BLOCK = BlockContext(height=42, timestamp_ms=1_700_000_000_123)
#: Keys a vector may use; anything else is a typo in the vector.
VECTOR_KEYS = {
    "name", "description", "code", "contracts", "method", "args", "value", "sender",
    "balances", "storage", "gas_limit", "mode", "expect",
}  # fmt: skip
EXPECT_KEYS = {"status", "gas_used", "return", "events", "error", "storage", "balances"}


def load_vectors() -> list[Any]:
    """Every vector of every file, as pytest params with ids ``<file>/<name>``."""
    params = []
    for path in sorted(VECTOR_DIR.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for vector in document["vectors"]:
            params.append(pytest.param(vector, id=f"{path.stem}/{vector['name']}"))
    return params


def address_of(name: str) -> bytes:
    """Every role in a vector gets a fixed address derived from its name."""
    return sha256(b"vector-account:" + name.encode())[:20]


def _source(lines: list[str]) -> str:
    text = "\n".join(lines)
    return re.sub(r"@([a-z_]+)", lambda m: "0x" + address_of(m.group(1)).hex(), text)


def _hex(text: str) -> bytes:
    assert text.startswith("0x"), text
    return bytes.fromhex(text[2:])


def _formatted_storage(host: MemoryHost, address: bytes) -> dict[str, str]:
    return {"0x" + k.hex(): "0x" + v.hex() for k, v in host.storage_of(address).items()}


def run_vector(
    vector: dict[str, Any], machine: Machine | None = None
) -> tuple[ExecutionResult, MemoryHost]:
    assert set(vector) <= VECTOR_KEYS, set(vector) - VECTOR_KEYS
    host = MemoryHost()
    contracts = {"main": vector["code"], **vector.get("contracts", {})}
    mode = vector.get("mode", "call")
    for name, lines in contracts.items():
        if name == "main" and mode == "deploy":
            continue
        host.code[address_of(name)] = assemble(_source(lines))
    for name, slots in vector.get("storage", {}).items():
        for key, value in slots.items():
            host.storage[(address_of(name), _hex(key))] = _hex(value)
    for name, amount in vector.get("balances", {}).items():
        host.balances[address_of(name)] = amount
    sender = address_of(vector.get("sender", "sender"))
    gas_limit = vector["gas_limit"]
    value = vector.get("value", 0)
    if mode == "deploy":
        code = assemble(_source(vector["code"]))
        ctor = validate_code(code).abi.constructor
        args = parse_cli_args(ctor, vector.get("args", [])) if ctor else ()
        result = deploy(
            host, sender, address_of("main"), code, args, value, gas_limit, BLOCK, machine=machine
        )
    else:
        abi = validate_code(host.code[address_of("main")]).abi
        method = abi.method(vector.get("method", "main"))
        assert method is not None
        args = parse_cli_args(method, vector.get("args", []))
        to = address_of("main")
        if mode == "query":
            result = query(host, sender, to, method.name, args, gas_limit, BLOCK, machine=machine)
        else:
            result = call(
                host, sender, to, method.name, args, value, gas_limit, BLOCK, machine=machine
            )
    host.apply(result.writes)
    return result, host


def _returns_type(vector: dict[str, Any], host: MemoryHost) -> Any:
    if vector.get("mode") == "deploy":
        return None
    abi = validate_code(host.code[address_of("main")]).abi
    method = abi.method(vector.get("method", "main"))
    assert method is not None
    return method.returns


@pytest.mark.parametrize("vector", load_vectors())
def test_vector(vector: dict[str, Any]) -> None:
    expect = vector["expect"]
    assert set(expect) <= EXPECT_KEYS, set(expect) - EXPECT_KEYS
    result, host = run_vector(vector)
    assert result.status.label == expect["status"], result.error
    assert result.gas_used == expect["gas_used"]
    assert result.gas_used <= vector["gas_limit"]
    assert format_return(result.return_value, _returns_type(vector, host)) == expect.get("return")
    assert expect.get("error", "") in result.error
    if not expect.get("error"):
        assert result.error == ""
    names = {address_of(n): n for n in ["main", "sender", *vector.get("contracts", {})]}
    events = [
        {"address": names[e.address], "name": e.name, "args": [format_value(a) for a in e.args]}
        for e in result.events
    ]
    assert events == expect.get("events", [])
    for name, slots in expect.get("storage", {}).items():
        want = {k: v for k, v in slots.items()}
        assert _formatted_storage(host, address_of(name)) == want, name
    for name, amount in expect.get("balances", {}).items():
        assert host.get_balance(address_of(name)) == amount, name


def _opcodes_used(vectors: list[Any]) -> set[Op]:
    used = set()
    for vector in vectors:
        for lines in [vector["code"], *vector.get("contracts", {}).values()]:
            code = assemble(_source(lines))
            used.update(ins.spec.op for ins in validate_code(code).instructions)
    return used


def test_vector_files_cover_every_opcode() -> None:
    """Each opcode appears in at least one vector's code."""
    used = _opcodes_used([param.values[0] for param in load_vectors()])
    missing = [spec.mnemonic for op, spec in OPCODES.items() if op not in used]
    assert not missing


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_each_instruction_category_has_its_vector_file(category: str) -> None:
    """contracts/instructions/<category>.py is tested by tests/vectors/vm/<category>.json,
    whose vectors use every opcode of that category."""
    path = VECTOR_DIR / f"{category}.json"
    assert path.exists(), f"no vector file for contracts/instructions/{category}.py"
    vectors = json.loads(path.read_text(encoding="utf-8"))["vectors"]
    missing = [op.name.lower() for op in CATEGORIES[category] if op not in _opcodes_used(vectors)]
    assert not missing, f"{path.name} never runs {missing}"


def test_at_least_forty_vectors() -> None:
    assert len(load_vectors()) >= 40


def test_contract_address_is_derived_from_sender_and_nonce() -> None:
    a = contract_address(address_of("sender"), 0)
    assert len(a) == 20
    assert a != contract_address(address_of("sender"), 1)
    assert a != contract_address(address_of("other"), 0)
    assert a == contract_address(address_of("sender"), 0)
