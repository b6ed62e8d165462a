"""A damaged block store: the node must refuse it (exit 1, one clear line naming the file,
no traceback), and the operator's repair — move ``data/`` aside, start — must rebuild it
from certified blocks (docs/OPERATIONS.md, "Recovery"). Jepsen's Tendermint analysis
truncated the WAL; here the SQLite file itself is truncated or bit-flipped."""

from __future__ import annotations

import pytest

from ledger.chaos.scenarios import ChaosContext, corrupt_store, truncate_wal
from tests.chaos.conftest import run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["truncate", "flip_head"])
def test_a_corrupted_store_is_refused_and_the_repair_resyncs(ctx: ChaosContext, kind: str) -> None:
    record = run(ctx, f"corrupt_{kind}", lambda c: corrupt_store(c, kind))
    details = record.result.details
    assert details["exit_code"] == 1
    assert details["error"].startswith("error:") and "chain.db" in details["error"]
    node = details["node"]
    assert ctx.net.height(node) == record.audit.height  # rebuilt from its peers


def test_a_bit_flip_below_the_head_is_refused_at_start(ctx: ChaosContext) -> None:
    record = run(ctx, "corrupt_flip_old_header", lambda c: corrupt_store(c, "flip_old_header"))
    assert record.result.details["exit_code"] == 1
    assert "header is damaged" in record.result.details["error"]


def test_a_damaged_state_value_is_never_served_and_stops_the_node(ctx: ChaosContext) -> None:
    record = run(ctx, "corrupt_flip_state", lambda c: corrupt_store(c, "flip_state"))
    details = record.result.details
    assert details["probe"] == "503 store_damaged"
    assert details["exit_code"] == 1 and "is damaged" in details["error"]


def test_a_truncated_wal_after_kill_minus_nine_never_forks(ctx: ChaosContext) -> None:
    run(ctx, "truncate_wal", truncate_wal)
