"""Fixtures shared by the store tests (tests/test_store*.py): a genesis, a store file path
and an open store on it. A module that defines a fixture of the same name uses its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from genesis.document import Genesis
from ledger.chain.store import Store
from tests.test_store import make_genesis


@pytest.fixture
def genesis() -> Genesis:
    return make_genesis()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "chain.sqlite"


@pytest.fixture
def store(store_path: Path, genesis: Genesis) -> Iterator[Store]:
    with Store.open(store_path, genesis) as opened:
        yield opened
