"""The overload storm of issue 12, found and fixed in the load simulator: the real engine
(consensus core, mempool, proposer policy, execution) on virtual time and CPUs.

PBFT (Castro & Liskov, OSDI'99) §4.4: a backup starts its timer when it *receives a
request* and the timer's expiry means the primary failed to order it; §4.5.2 bounds how
eagerly views change. The storm came from timers run for requests no primary could
order (behind nonce gaps), so every primary looked faulty; these tests pin the cause.
"""

from __future__ import annotations

import pytest

from consensus.ready import Ready
from ledger.engine.engine import Engine
from ledger.engine.events import Tick
from ledger.loadsim.world import LoadParams, LoadReport, Workload, run_load


class LegacyPendingEngine(Engine):
    """The rule before the fix: anything in the mempool counts as pending (gapped or not),
    and nothing leaves while no block commits (the TTL was counted in blocks)."""

    def _tell_pending(self, *, force: bool = False) -> Ready:
        state = (len(self.mempool) > 0, self.mempool.oldest_includable())
        if not force and state == self._told:
            return Ready()
        self._told = state
        return self.replica.requests_pending(*state)

    def _on_tick(self, event: Tick) -> Ready:
        self.now_ms = max(self.now_ms, event.now_ms)
        return self._merge(self.replica.tick(), self._tell_pending())


#: A short burst well under capacity, then idle: the storm needs only senders with gaps.
STORM = LoadParams(
    workload=Workload(senders=100, rate_per_s=300, burst_ms=3_000, idle_ms=40_000, gap_permille=100)
)


def test_storm_seed_reproduces_with_the_old_pending_rule_and_not_with_the_shared_rule() -> None:
    """The storm seed: with the old rule, transactions behind nonce gaps keep every
    backup's timer running at idle, and the view climbs with nothing to order (issue 12's
    "25 to 79 in one minute"). With one includability rule for primary and backups: no
    view change at all, and the gapped transactions leave with a final status."""
    legacy = run_load(3, STORM, engine_factory=LegacyPendingEngine)
    assert legacy.view_changes_idle >= 3, legacy
    fixed = run_load(3, STORM)
    assert fixed.view_changes_burst == 0 and fixed.view_changes_idle == 0, fixed
    assert fixed.stranded == 0, fixed
    assert fixed.dropped.get("gap_timeout", 0) > 0  # told, not forgotten
    assert fixed.final_mempools == [0, 0, 0, 0]
    assert fixed.probe_ms is not None and fixed.probe_ms < 1_000


def _overload(validators: int, rate: int) -> LoadReport:
    return run_load(
        11,
        LoadParams(
            validators=validators,
            workload=Workload(rate_per_s=rate, burst_ms=10_000, idle_ms=45_000),
        ),
    )


@pytest.mark.slow
@pytest.mark.parametrize(("validators", "rate"), [(4, 2_400), (7, 1_500)])
def test_overload_at_three_times_capacity_changes_no_view(validators: int, rate: int) -> None:
    """A long burst at ~3x what the network commits, with gaps, duplicates and conflicting
    nonces: all validators honest and the network timely, so no view changes (§4.4's timer
    is for faulty primaries, not busy ones); clients are refused with retry_after, every
    accepted transaction commits or leaves with a final status, the pools drain, and a
    probe transfer after the idle period commits at once."""
    report = _overload(validators, rate)
    assert report.view_changes_burst == 0 and report.view_changes_idle == 0, report
    assert report.refused_backpressure > 0
    assert report.stranded == 0, report
    assert len(set(report.heights)) == 1
    assert report.probe_ms is not None and report.probe_ms < 1_000, report
    assert report.ready_p99_ms < 10_000, report


def test_a_seed_replays_exactly() -> None:
    params = LoadParams(
        workload=Workload(senders=30, rate_per_s=200, burst_ms=1_000, idle_ms=2_000)
    )
    assert run_load(5, params).trace_hash == run_load(5, params).trace_hash


def test_each_transaction_is_decoded_and_hashed_once_per_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 20: on every path a transaction takes through a validator (client admission,
    gossip, the primary's proposal, a backup's validation, commit) it is hashed and decoded
    once: the mempool keeps the decoded transaction, proposals reuse it by its bytes, and
    gossip of something already held or committed is recognised by its bytes."""
    from crypto.hashing import sha256 as real_sha256
    from ledger.chain import types
    from ledger.engine import admission
    from ledger.loadsim import world

    raws: set[bytes] = set()
    hashed: dict[bytes, int] = {}
    decoded: dict[bytes, int] = {}
    original_create = types.Transaction.create.__func__  # type: ignore[attr-defined]
    original_from_value = types.Transaction.from_value.__func__  # type: ignore[attr-defined]

    def create(cls: type[types.Transaction], *args: object, **kw: object) -> types.Transaction:
        tx: types.Transaction = original_create(cls, *args, **kw)
        raws.add(tx.raw)
        return tx

    def from_value(cls: type[types.Transaction], value: object, **kw: object) -> types.Transaction:
        raw = kw.get("raw")
        if isinstance(raw, bytes):
            decoded[raw] = decoded.get(raw, 0) + 1
        return original_from_value(cls, value, **kw)  # type: ignore[no-any-return]

    def counting_sha256(data: bytes) -> bytes:
        if data in raws:
            hashed[data] = hashed.get(data, 0) + 1
        return real_sha256(data)

    monkeypatch.setattr(types.Transaction, "create", classmethod(create))
    monkeypatch.setattr(types.Transaction, "from_value", classmethod(from_value))
    for module in (types, admission, world):
        monkeypatch.setattr(module, "sha256", counting_sha256)
    params = LoadParams(
        workload=Workload(
            senders=40,
            rate_per_s=200,
            burst_ms=2_000,
            idle_ms=3_000,
            gap_permille=0,
            duplicate_permille=0,
            conflict_permille=0,
        )
    )
    report = run_load(7, params)
    assert report.committed > 300 and report.stranded == 0
    n = params.validators
    submitted = [r for r in raws if r in decoded]
    assert len(submitted) >= report.committed
    assert max(decoded[r] for r in submitted) <= n, "a validator decoded a transaction twice"
    # The client hashes once when it signs; each validator once when the bytes arrive.
    assert max(hashed[r] for r in submitted) <= n + 1, "a validator hashed a transaction twice"
