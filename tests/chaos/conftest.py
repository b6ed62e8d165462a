"""One real 4-validator network for the chaos suite, behind the harness's relays.

Package-scoped to fit `make test` (starting a network costs seconds; scenarios heal what
they break). Every test runs through :func:`run`, which injects the scenario under load,
heals, stops the load and audits every node; the autouse fixture heals and restarts
whatever a failing test left behind, so one failure does not cascade. Everything started
here is stopped in ``finally`` blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledger.chaos.net import ChaosNet, open_chaos_net, stray_pids
from ledger.chaos.run import RunRecord, make_context, run_one
from ledger.chaos.scenarios import ChaosContext, ScenarioResult

SEED = 7


@pytest.fixture(scope="package")
def chaos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chaos") / "testnet"


@pytest.fixture(scope="package")
def chaos_net(chaos_dir: Path) -> Iterator[ChaosNet]:
    try:
        with open_chaos_net(chaos_dir, seed=SEED) as net:
            yield net
    finally:
        if (chaos_dir / "testnet.json").exists():
            assert stray_pids(chaos_dir) == [], "node processes outlived the chaos suite"


@pytest.fixture(scope="package")
def session_ctx(chaos_net: ChaosNet) -> ChaosContext:
    return make_context(chaos_net, SEED, lambda _: None, load_pause_s=0.3)


@pytest.fixture
def ctx(session_ctx: ChaosContext) -> Iterator[ChaosContext]:
    try:
        yield session_ctx
    finally:
        session_ctx.load.stop()
        session_ctx.heal_everything()


def run(
    ctx: ChaosContext, name: str, scenario: Callable[[ChaosContext], ScenarioResult]
) -> RunRecord:
    """Run a scenario under load and audit; fail with everything that went wrong."""
    record = run_one(ctx, 0, name, scenario, receipt_sample=300)
    audit = record.audit
    problems = [*record.result.problems, *audit.problems]
    assert not problems, "\n".join(problems)
    assert audit.lost == [] and audit.divergent == [], audit.summary()
    assert audit.converged and audit.txs_checked > 0, audit.summary()
    assert record.result.recovery_s is not None and record.result.recovery_s <= ctx.recovery_bound_s
    return record
