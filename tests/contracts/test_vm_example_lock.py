"""contracts/examples/lock.qasm and lock.py (the same tests for both): leases that expire by block height."""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from contracts.state import EventRecord
from tests.contracts.vm_support import ALICE, BOB, EXAMPLE_LANGUAGES, Chain, example_code


@pytest.fixture(params=EXAMPLE_LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def code(language: str) -> bytes:
    return example_code("lock", language)


@pytest.fixture
def chain() -> Chain:
    chain = Chain()
    chain.height = 100
    return chain


@pytest.fixture
def lock(chain: Chain, code: bytes) -> bytes:
    return chain.deployed(code)


def test_acquire_returns_expiry_and_sets_holder(chain: Chain, lock: bytes) -> None:
    result = chain.call(lock, "acquire", "db", 10)
    assert result.ok and result.return_value == 110
    assert result.events == (EventRecord(lock, "Acquired", (b"db", ALICE, 110)),)
    assert chain.query(lock, "holder", "db") == ALICE
    assert chain.query(lock, "expiry", "db") == 110
    assert chain.query(lock, "holder", "other") == b""
    assert chain.query(lock, "expiry", "other") == 0


def test_acquire_fails_while_another_account_holds_it(chain: Chain, lock: bytes) -> None:
    assert chain.call(lock, "acquire", "db", 10).ok
    chain.height = 109
    result = chain.call(lock, "acquire", "db", 10, sender=BOB)
    assert result.status is ExecutionStatus.REVERTED
    assert result.error == "lock is held by another account"
    assert chain.query(lock, "holder", "db") == ALICE


def test_lease_expires_by_block_height(chain: Chain, lock: bytes) -> None:
    assert chain.call(lock, "acquire", "db", 10).ok
    chain.height = 110
    assert chain.query(lock, "holder", "db") == b""
    assert chain.query(lock, "expiry", "db") == 0
    result = chain.call(lock, "acquire", "db", 5, sender=BOB)
    assert result.ok and result.return_value == 115
    assert chain.query(lock, "holder", "db") == BOB


def test_holder_renews(chain: Chain, lock: bytes) -> None:
    assert chain.call(lock, "acquire", "db", 10).ok
    chain.height = 105
    assert chain.call(lock, "acquire", "db", 10).return_value == 115


def test_locks_are_independent(chain: Chain, lock: bytes) -> None:
    assert chain.call(lock, "acquire", "a", 10).ok
    assert chain.call(lock, "acquire", "b", 10, sender=BOB).ok
    assert chain.query(lock, "holder", "a") == ALICE
    assert chain.query(lock, "holder", "b") == BOB


def test_release_by_holder_only(chain: Chain, lock: bytes) -> None:
    assert chain.call(lock, "acquire", "db", 10).ok
    refused = chain.call(lock, "release", "db", sender=BOB)
    assert refused.status is ExecutionStatus.REVERTED
    assert refused.error == "only the holder may release the lock"
    released = chain.call(lock, "release", "db")
    assert released.ok
    assert released.events == (EventRecord(lock, "Released", (b"db", ALICE)),)
    assert chain.query(lock, "holder", "db") == b""
    assert chain.host.storage_of(lock) == {}
    assert chain.call(lock, "acquire", "db", 1, sender=BOB).ok


def test_release_of_a_free_lock_reverts(chain: Chain, lock: bytes) -> None:
    result = chain.call(lock, "release", "db")
    assert result.status is ExecutionStatus.REVERTED and result.error == "lock is not held"


@pytest.mark.parametrize("ttl", [0, 2**32, 2**64 - 1])
def test_ttl_bounds(chain: Chain, lock: bytes, ttl: int) -> None:
    result = chain.call(lock, "acquire", "db", ttl)
    assert result.status is ExecutionStatus.REVERTED
    assert "ttl_blocks must be between 1 and" in result.error


def test_long_names_halt_cleanly(chain: Chain, lock: bytes) -> None:
    result = chain.call(lock, "acquire", "n" * 200, 5)
    assert result.status is ExecutionStatus.INVALID and "key of 201 bytes" in result.error
