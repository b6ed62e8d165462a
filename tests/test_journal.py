"""The mempool journal a graceful stop writes: round trip, and a damaged one is ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.node.journal import JOURNAL_NAME, save_journal, take_journal


def test_round_trip_then_gone(tmp_path: Path) -> None:
    raws = [b"a" * 10, b"b" * 300, b"c"]
    assert save_journal(tmp_path, raws) == tmp_path / JOURNAL_NAME
    assert take_journal(tmp_path) == raws
    assert not (tmp_path / JOURNAL_NAME).exists()
    assert take_journal(tmp_path) == []


def test_nothing_waiting_writes_nothing(tmp_path: Path) -> None:
    assert save_journal(tmp_path, []) is None
    assert not (tmp_path / JOURNAL_NAME).exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated
        lambda b: b[:5] + bytes([b[5] ^ 1]) + b[6:],  # a flipped bit
        lambda b: b"XXXX" + b[4:],  # not a journal
        lambda b: b"",
    ],
)
def test_a_damaged_journal_is_ignored_and_removed(tmp_path: Path, damage: object) -> None:
    save_journal(tmp_path, [b"tx-one", b"tx-two"])
    path = tmp_path / JOURNAL_NAME
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    assert take_journal(tmp_path) == []
    assert not path.exists()
