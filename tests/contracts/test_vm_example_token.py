"""contracts/examples/token.qasm and token.py (the same tests for both): mint at deploy, transfer, balances, Transfer events."""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from contracts.state import EventRecord
from tests.contracts.vm_support import (
    ALICE,
    BOB,
    CAROL,
    EXAMPLE_LANGUAGES,
    ZERO_ADDRESS,
    Chain,
    example_code,
)


@pytest.fixture(params=EXAMPLE_LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def code(language: str) -> bytes:
    return example_code("token", language)


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def token(chain: Chain, code: bytes) -> bytes:
    return chain.deployed(code, [1000])


def test_constructor_mints_the_supply_to_the_deployer(chain: Chain, code: bytes) -> None:
    address, result = chain.deploy(code, [1000], sender=BOB)
    assert result.ok
    assert result.events == (EventRecord(address, "Transfer", (ZERO_ADDRESS, BOB, 1000)),)
    assert chain.query(address, "balance_of", BOB) == 1000
    assert chain.query(address, "balance_of", ALICE) == 0
    assert chain.query(address, "total_supply") == 1000


def test_transfer_moves_balance_and_emits(chain: Chain, token: bytes) -> None:
    result = chain.call(token, "transfer", BOB, 250)
    assert result.ok and result.return_value == 1
    assert result.events == (EventRecord(token, "Transfer", (ALICE, BOB, 250)),)
    assert chain.query(token, "balance_of", ALICE) == 750
    assert chain.query(token, "balance_of", BOB) == 250
    assert chain.call(token, "transfer", CAROL, 50, sender=BOB).ok
    assert [chain.query(token, "balance_of", a) for a in (ALICE, BOB, CAROL)] == [750, 200, 50]


def test_transfer_of_everything_and_of_nothing(chain: Chain, token: bytes) -> None:
    assert chain.call(token, "transfer", BOB, 0).ok
    assert chain.call(token, "transfer", BOB, 1000).ok
    assert chain.query(token, "balance_of", ALICE) == 0
    assert chain.query(token, "balance_of", BOB) == 1000


def test_transfer_to_oneself_changes_nothing(chain: Chain, token: bytes) -> None:
    assert chain.call(token, "transfer", ALICE, 400).ok
    assert chain.query(token, "balance_of", ALICE) == 1000


def test_insufficient_balance_reverts(chain: Chain, token: bytes) -> None:
    result = chain.call(token, "transfer", BOB, 1001)
    assert result.status is ExecutionStatus.REVERTED
    assert result.error == "insufficient balance"
    assert result.events == () and not result.writes
    stranger = chain.call(token, "transfer", ALICE, 1, sender=CAROL)
    assert stranger.status is ExecutionStatus.REVERTED
    assert chain.query(token, "balance_of", ALICE) == 1000


def test_bad_arguments_are_refused_before_running(chain: Chain, token: bytes) -> None:
    assert chain.call(token, "transfer", b"short", 1).status is ExecutionStatus.INVALID
    assert chain.call(token, "transfer", BOB).status is ExecutionStatus.INVALID
    assert chain.call(token, "mint", BOB, 1).status is ExecutionStatus.INVALID


def test_readers_are_read_only(chain: Chain, token: bytes) -> None:
    result = chain.call(token, "balance_of", ALICE)
    assert result.ok and result.return_value == 1000 and not result.writes


def test_out_of_gas_transfer_changes_nothing(chain: Chain, token: bytes) -> None:
    result = chain.call(token, "transfer", BOB, 1, gas=900)
    assert result.status is ExecutionStatus.OUT_OF_GAS
    assert chain.query(token, "balance_of", BOB) == 0


#: A transfer's gas, hand-written and compiled (docs/CONTRACTS.md has the table).
TRANSFER_GAS = {"qasm": 2642, "py": 2663}


def test_transfer_gas_is_stable(chain: Chain, token: bytes, language: str) -> None:
    """The gas of a transfer is a consensus value: it changes only with the gas schedule
    (and, for the Python version, with the compiler's output)."""
    first = chain.call(token, "transfer", BOB, 1)
    second = chain.call(token, "transfer", BOB, 1)
    assert first.gas_used == second.gas_used == TRANSFER_GAS[language]
