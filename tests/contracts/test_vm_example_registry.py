"""contracts/examples/registry.qasm and registry.py (the same tests for both): owned key/value entries."""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from contracts.state import EventRecord
from tests.contracts.vm_support import ALICE, BOB, CAROL, EXAMPLE_LANGUAGES, Chain, example_code


@pytest.fixture(params=EXAMPLE_LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def code(language: str) -> bytes:
    return example_code("registry", language)


@pytest.fixture
def chain() -> Chain:
    return Chain()


@pytest.fixture
def registry(chain: Chain, code: bytes) -> bytes:
    return chain.deployed(code)


def test_set_claims_a_new_key(chain: Chain, registry: bytes) -> None:
    result = chain.call(registry, "set", "name", b"alice")
    assert result.ok
    assert result.events == (EventRecord(registry, "Set", (b"name", ALICE)),)
    assert chain.query(registry, "get", "name") == b"alice"
    assert chain.query(registry, "owner", "name") == ALICE


def test_missing_key_reads_empty(chain: Chain, registry: bytes) -> None:
    assert chain.query(registry, "get", "nothing") == b""
    assert chain.query(registry, "owner", "nothing") == b""


def test_only_the_owner_updates(chain: Chain, registry: bytes) -> None:
    assert chain.call(registry, "set", "k", b"v1").ok
    refused = chain.call(registry, "set", "k", b"evil", sender=BOB)
    assert refused.status is ExecutionStatus.REVERTED
    assert refused.error == "only the key's owner may change it"
    assert chain.call(registry, "set", "k", b"v2").ok
    assert chain.query(registry, "get", "k") == b"v2"


def test_transfer_ownership(chain: Chain, registry: bytes) -> None:
    assert chain.call(registry, "set", "k", b"v").ok
    assert chain.call(registry, "transfer_ownership", "k", BOB, sender=CAROL).status is (
        ExecutionStatus.REVERTED
    )
    result = chain.call(registry, "transfer_ownership", "k", BOB)
    assert result.ok
    assert result.events == (EventRecord(registry, "OwnershipTransferred", (b"k", BOB)),)
    assert chain.query(registry, "owner", "k") == BOB
    assert chain.call(registry, "set", "k", b"x").status is ExecutionStatus.REVERTED
    assert chain.call(registry, "set", "k", b"bob's", sender=BOB).ok


def test_transfer_or_delete_of_a_missing_key(chain: Chain, registry: bytes) -> None:
    for method, args in (("transfer_ownership", ("k", BOB)), ("delete", ("k",))):
        result = chain.call(registry, method, *args)
        assert result.status is ExecutionStatus.REVERTED and result.error == "no such key"


def test_delete_by_owner_frees_the_key(chain: Chain, registry: bytes) -> None:
    assert chain.call(registry, "set", "k", b"v").ok
    assert chain.call(registry, "delete", "k", sender=BOB).status is ExecutionStatus.REVERTED
    result = chain.call(registry, "delete", "k")
    assert result.ok and result.events == (EventRecord(registry, "Deleted", (b"k",)),)
    assert chain.host.storage_of(registry) == {}
    assert chain.call(registry, "set", "k", b"mine now", sender=BOB).ok
    assert chain.query(registry, "owner", "k") == BOB


def test_empty_value_clears_but_keeps_owner(chain: Chain, registry: bytes) -> None:
    assert chain.call(registry, "set", "k", b"v").ok
    assert chain.call(registry, "set", "k", b"").ok
    assert chain.query(registry, "get", "k") == b""
    assert chain.query(registry, "owner", "k") == ALICE


def test_over_long_keys_revert(chain: Chain, registry: bytes) -> None:
    assert chain.call(registry, "set", "k" * 127, b"v").ok
    result = chain.call(registry, "set", "k" * 128, b"v")
    assert result.status is ExecutionStatus.REVERTED
    assert result.error == "keys are at most 127 bytes"
