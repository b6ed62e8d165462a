"""Process and network faults on a real network (Jepsen's Tendermint nemeses, CometBFT's
perturbations): after each, every transaction reported committed is on every node at the
same height with the same status, all nodes agree block by block (each certificate
verified), their state roots agree, and a fresh transaction commits everywhere within the
recovery bound (PBFT liveness after GST, Castro & Liskov OSDI'99 §4.4)."""

from __future__ import annotations

import pytest

from ledger.chaos.run import CATCHUP_FLOOD
from ledger.chaos.scenarios import (
    FLOOD_FLOOR_FRACTION,
    ChaosContext,
    duplicate_key,
    junk_flood,
    kill9_loop,
    partition,
    primary_pause,
)
from tests.chaos.conftest import run

pytestmark = pytest.mark.slow


def test_kill_minus_nine_of_validators_in_a_loop_loses_nothing(ctx: ChaosContext) -> None:
    record = run(ctx, "kill9_loop", lambda c: kill9_loop(c, rounds=3, max_down_s=3.0))
    assert record.result.faults["kill9"] == 3


def test_a_primary_paused_past_the_view_timeout_is_replaced_and_rejoins(
    ctx: ChaosContext,
) -> None:
    record = run(ctx, "primary_pause", lambda c: primary_pause(c, extra_pause_s=1.0))
    details = record.result.details
    assert min(details["new_views"]) > details["old_view"]
    timeout_s = ctx.net.genesis.consensus.view_change_timeout_ms / 1000
    assert details["paused_s"] > timeout_s


def test_an_isolated_primary_is_replaced_and_catches_up_after_heal(ctx: ChaosContext) -> None:
    record = run(ctx, "partition_primary", lambda c: partition(c, "primary", hold_s=1.0))
    assert "majority_commit_s" in record.result.details


def test_a_primary_whose_messages_are_held_one_way_is_replaced(ctx: ChaosContext) -> None:
    record = run(ctx, "partition_asymmetric", lambda c: partition(c, "asymmetric", hold_s=1.0))
    assert "majority_commit_s" in record.result.details


def test_two_processes_with_one_validator_key_do_not_split_the_chain(ctx: ChaosContext) -> None:
    record = run(ctx, "duplicate_key", lambda c: duplicate_key(c, seconds=4.0))
    details = record.result.details
    assert details["twin_height"] is not None and details["twin_chain_problems"] == []
    assert details["twin_height"] > 0


def test_a_validator_flooding_junk_keeps_memory_bounded_and_throughput_above_the_floor(
    ctx: ChaosContext,
) -> None:
    record = run(ctx, "junk_flood", lambda c: junk_flood(c, baseline_s=5.0, flood_s=7.0))
    details = record.result.details
    assert details["flood"]["links"] >= 1 and details["flood"]["messages_total"] > 1000
    assert details["floor_ratio"] >= FLOOD_FLOOR_FRACTION


def test_a_validator_asking_for_catch_up_blocks_in_a_loop_does_not_stall_consensus(
    ctx: ChaosContext,
) -> None:
    record = run(
        ctx,
        "catchup_flood",
        lambda c: junk_flood(
            c, baseline_s=3.0, flood_s=4.0, name="catchup_flood", flood_args=CATCHUP_FLOOD
        ),
    )
    assert record.result.details["floor_ratio"] >= FLOOD_FLOOR_FRACTION
