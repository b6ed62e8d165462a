"""The Python examples (contracts/examples/*.py) against the assembly ones: the same ABI,
gas within bounds (the table in docs/CONTRACTS.md is this measurement), and a contract
file that does nothing when CPython runs it.

The behaviour of both versions is tested by the same tests: test_vm_example_*.py run
over both languages.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import contracts.lang as lang
from contracts.abi import MethodAbi
from contracts.container import parse_container
from contracts.examples import EXAMPLES, load, load_python, source
from contracts.interpreter import ExecutionStatus
from contracts.lang.compiler import compile_source
from tests.contracts.lang_gas import measure, table
from tests.contracts.vm_support import ALICE, BOB, Chain

DOCS = Path(__file__).resolve().parents[2] / "docs" / "CONTRACTS.md"
#: The issue's bound: a compiled token transfer costs at most 1.5x the hand-written one.
MAX_TRANSFER_RATIO = 1.5


def _shape(method: MethodAbi | None) -> object:
    """A method's ABI without its entry pc (which differs between the two codes)."""
    if method is None:
        return None
    return (method.name, method.params, method.returns, method.read_only, method.payable,
            method.variadic)  # fmt: skip


@pytest.mark.parametrize("name", EXAMPLES)
def test_python_and_assembly_examples_have_the_same_abi(name: str) -> None:
    hand = parse_container(load(name)).abi
    compiled = parse_container(load_python(name)).abi
    assert _shape(compiled.constructor) == _shape(hand.constructor)
    assert [_shape(m) for m in compiled.methods] == [_shape(m) for m in hand.methods]


@pytest.mark.parametrize("name", EXAMPLES)
def test_compiling_is_deterministic(name: str) -> None:
    text = source(name, "py")
    first, second = compile_source(text, f"{name}.py"), compile_source(text, f"{name}.py")
    assert first.container == second.container and first.assembly == second.assembly


def test_running_a_contract_file_under_cpython_does_nothing() -> None:
    module = importlib.import_module("contracts.examples.token")
    token = module.Token
    assert issubclass(token, lang.Contract) and token.__annotations__
    with pytest.raises(lang.OnChainOnly, match=r"sender\(\) has a value only on the VM"):
        lang.sender()
    with pytest.raises(lang.Reverted, match="insufficient"):
        lang.require(False, "insufficient")
    lang.require(True, "fine")
    assert lang.from_bytes(lang.to_bytes(258)) == 258
    assert len(lang.sha256(b"")) == 32
    with pytest.raises(ValueError, match="20 bytes"):
        lang.Address(b"short")


def test_gas_table_in_the_docs_is_the_measured_one() -> None:
    rows = measure()
    transfer = next(r for r in rows if (r.contract, r.step) == ("token", "transfer"))
    assert transfer.compiled <= MAX_TRANSFER_RATIO * transfer.hand_written
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- gas-table -->\n(.*?)\n<!-- /gas-table -->", text, re.S)
    assert found is not None, "docs/CONTRACTS.md lost its gas table markers"
    assert found.group(1).splitlines() == table(rows), (
        "docs/CONTRACTS.md's gas table is stale: PYTHONPATH=. python -m tests.contracts.lang_gas"
    )


ISSUE_17_TOKEN = """\
from contracts.lang import Contract, Map, emit, require, sender, view

class Token(Contract):
    supply: int
    balances: Map[bytes, int]

    def __init__(self, supply: int):
        self.supply = supply
        self.balances[sender()] = supply

    def transfer(self, to: bytes, amount: int) -> None:
        require(amount > 0, "amount must be positive")
        require(self.balances[sender()] >= amount, "insufficient balance")
        self.balances[sender()] -= amount
        self.balances[to] += amount
        emit("Transfer", sender(), to, amount)

    @view
    def balance_of(self, who: bytes) -> int:
        return self.balances[who]
"""


def test_the_surface_as_the_issue_writes_it() -> None:
    """Issue 17's own example, verbatim: it compiles, and behaves."""
    compiled = compile_source(ISSUE_17_TOKEN, "issue.py")
    assert compiled.abi.constructor is not None
    assert compiled.abi.constructor.signature() == "constructor(supply: u64)"
    chain = Chain()
    token = chain.deployed(compiled.container, [100])
    assert chain.call(token, "transfer", BOB, 30).ok
    assert chain.query(token, "balance_of", BOB) == 30
    assert chain.query(token, "balance_of", ALICE) == 70
    zero = chain.call(token, "transfer", BOB, 0)
    assert zero.status is ExecutionStatus.REVERTED and zero.error == "amount must be positive"
