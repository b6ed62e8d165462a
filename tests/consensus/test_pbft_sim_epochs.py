"""The simulator with validator-set epochs: set changes under faults and view changes keep
agreement (docs/CONSENSUS.md §12, docs/RELIABILITY.md §12).

PBFT leaves reconfiguration open (Castro & Liskov, TOCS 2002); the rule here ends an epoch
at a checkpoint block (§4.3 checkpoints) and must hold across the normal case (§4.2) and
view changes (§4.4). Each epoch seed (``SimParams(epochs=True)``) draws one to three set
changes — adds (a new key that follows the chain as a follower until its epoch) and
removes (a removed Byzantine validator keeps sending with its old key) — voted inside the
chain, timed against a crashed primary (the votes go out just before or during a view
change), on top of the usual faults and Byzantine strategies. The independent auditor
follows the chain of sets itself and judges every certificate with its height's set and
signing domain.

* fast tier: 40 seeds at n = 4 with zero violations, every change taking effect, and the
  named scenarios counted (a switch block certified across a view change, votes submitted
  while one ran, a removed validator spraying, an old primary overreaching the end);
* slow tier: 250 seeds at n = 4 and 50 at n = 7 (about 50 CPU-seconds);
* for every epoch property the auditor gained, a run broken on purpose is flagged.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from click.testing import CliRunner

import consensus.normal_case
import consensus.sim.driver
import consensus.sim.world
from consensus.config import ReplicaConfig
from consensus.replica import Replica
from consensus.sim import SimParams, run_seed, run_seeds
from consensus.sim.driver import REMOVED, SimDriver
from consensus.sim.epochs import VOTE_BASE
from consensus.sim.world import Simulation
from ledger.cli.sim_cmd import sim

PARAMS = SimParams(validators=4, byzantine=1, epochs=True)
#: Broken runs often never finish: a shorter liveness bound keeps them cheap (the clean
#: runs of the same seeds finish well within it).
TEETH_PARAMS = dataclasses.replace(PARAMS, liveness_bound_ms=6000)
#: The fast tier: seeds apart from the slow tier's.
FAST_SEEDS = 40
FAST_SEED_START = 7000
#: The slow tier, per n.
SLOW_SEEDS = {4: 250, 7: 50}


def _report(validators: int, seeds: int, seed_start: int) -> dict[str, object]:
    params = SimParams(validators=validators, byzantine=(validators - 1) // 3, epochs=True)
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                functools.partial(run_seed, params=params),
                range(seed_start, seed_start + seeds),
                chunksize=4,
            )
        )
    return run_seeds(seeds, seed_start, params=params, results=results).to_json()


def _run(seed: int, params: SimParams = PARAMS) -> Simulation:
    simulation = Simulation(seed, params)
    simulation.run()
    return simulation


def _kinds(seeds: list[int]) -> Iterator[set[str]]:
    """The kinds of violation each broken run had (all counted, not only those kept)."""
    for seed in seeds:
        yield set(_run(seed, TEETH_PARAMS).checker.kinds)


def _flagged(kind: str, seeds: list[int]) -> int:
    return sum(kind in kinds for kinds in _kinds(seeds))


# ----------------------------------------------------------------------------- tiers


def test_epoch_fast_tier_every_change_takes_effect_and_agrees() -> None:
    """§4.2/§4.3/§4.4 across set changes: no violation, every seed finishes (every planned
    change took effect and every honest member of the final set applied everything), and
    the scenarios the plan aims at really happened."""
    doc = _report(4, FAST_SEEDS, FAST_SEED_START)
    assert doc["violations"] == 0, json.dumps(doc["failures"][:3], indent=2)
    assert doc["seeds_finished"] == FAST_SEEDS
    epochs = doc["epochs"]
    assert isinstance(epochs, dict)
    assert epochs["switches"] >= FAST_SEEDS  # at least one change per seed
    assert epochs["switch_view_changes"] > 0, "a switch block certified across a view change"
    assert epochs["votes_in_view_change"] > 0, "votes submitted while a view change ran"
    assert epochs["zombie_messages"] > 0, "a removed Byzantine validator kept sending"
    assert epochs["overreaches"] > 0, "an old primary proposed above the epoch's end"
    assert epochs["follower_refused"] > 0, "followers met corrupted catch-up blocks"


@pytest.mark.slow
@pytest.mark.parametrize("validators", sorted(SLOW_SEEDS))
def test_epoch_slow_tier_zero_violations(validators: int) -> None:
    doc = _report(validators, SLOW_SEEDS[validators], 0)
    assert doc["violations"] == 0, json.dumps(doc["failures"][:3], indent=2)
    assert doc["seeds_finished"] == SLOW_SEEDS[validators]
    epochs = doc["epochs"]
    assert isinstance(epochs, dict)
    assert epochs["switch_view_changes"] > 0 and epochs["votes_in_view_change"] > 0


# ----------------------------------------------------------------------------- scenarios


#: Seeds (n = 4) whose change was voted while a view change ran AND whose switch block was
#: certified in a view entered after the votes went out.
VIEW_CHANGE_SEEDS = (1, 14, 16, 22)


@pytest.mark.parametrize("seed", VIEW_CHANGE_SEEDS)
def test_4_4_a_change_voted_during_a_view_change_switches_everywhere_at_one_block(
    seed: int,
) -> None:
    """§4.4: the epoch's primary crashes around the votes; the view change carries the
    scheduling and switch blocks over, and every honest replica switches after the same
    block, agrees before and after it, and the next set's certificates verify."""
    run = _run(seed)
    assert run.violations == []
    assert run.finished_at is not None
    assert run.stats.votes_in_view_change > 0 and run.stats.switch_view_changes > 0
    chains = [
        [(b.height, b.digest, b.ends_epoch) for b in e.driver.chain]
        for e in run.endpoints
        if e.honest and e.driver.chain
    ]
    longest = max(chains, key=len)
    assert all(chain == longest[: len(chain)] for chain in chains)
    assert sum(ends for _, _, ends in longest) == run.stats.switches == len(run.changes)


def test_a_removed_byzantine_validator_is_ignored_in_the_new_epoch() -> None:
    """§4.2: a validator voted out keeps signing with its old key (old domain above the
    end, new domain under its old index); honest replicas reject every message and the run
    stays clean."""
    seed = 22  # remove node1, the Byzantine equivocator
    run = _run(seed)
    assert run.violations == []
    assert run.stats.zombie_messages > 0
    rejected = 0
    for endpoint in run.endpoints:
        if endpoint.honest and endpoint.driver.role != REMOVED:
            stats = endpoint.driver.statistics()
            rejected += sum(v for k, v in stats.items() if k.startswith("rejected."))
    assert rejected > 0
    assert run.endpoints[1].driver.replica is None  # no replica in the new epoch


def test_4_2_an_old_primary_proposing_above_the_end_is_refused_and_counted() -> None:
    """§4.2 with the epoch rule: a Byzantine primary pre-prepares the switch block's child
    in the old epoch; honest replicas of the old epoch neither validate nor vote on it."""
    run = _run(26)
    assert run.violations == []
    assert run.stats.overreaches > 0
    refused = sum(
        e.driver.statistics().get("epoch.beyond_end", 0) for e in run.endpoints if e.honest
    )
    assert refused > 0


def test_an_added_validator_follows_then_signs_and_a_removed_one_stops() -> None:
    """§4.3: the joining key replays certified blocks (each certificate checked with its
    epoch's set, corrupted fetch replies refused) until the set names it, then signs the
    next epoch's certificates; an honest validator voted out stops at its switch."""
    run = _run(27)  # add node4, add node5, remove node1 (honest)
    assert run.violations == [] and run.finished_at is not None
    joiner = run.endpoints[run.by_index[4][0].eid].driver
    first_end = next(b.height for b in joiner.chain if b.ends_epoch)
    later = [b for b in joiner.chain if b.height > first_end]
    config = joiner.config
    position = config.validators.index(joiner.key.public_key)
    assert any(position in (i for i, _ in b.votes) for b in later[-4:])
    removed = run.by_index[1][0].driver
    assert removed.role == REMOVED and removed.replica is None
    assert run.stats.follower_refused > 0 or _run(5).stats.follower_refused > 0


def test_epoch_seeds_are_deterministic_and_reproducible_from_their_command() -> None:
    first, again = run_seed(3, PARAMS), run_seed(3, PARAMS)
    assert first == again
    assert first.trace_hash != run_seed(3, SimParams()).trace_hash
    assert PARAMS.command(3).endswith("--epochs")


def test_quorum_sim_epochs_json() -> None:
    result = CliRunner().invoke(sim, ["--seeds", "2", "--seed-start", "7", "--epochs", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["violations"] == 0 and doc["epochs"]["switches"] >= 2
    human = CliRunner().invoke(sim, ["--seeds", "1", "--epochs"])
    assert human.exit_code == 0 and "set changes" in human.output


# ----------------------------------------------------------------------------- teeth

TEETH_SEEDS = [3, 5, 22, 26]


def test_the_same_seeds_unbroken_are_clean() -> None:
    for kinds in _kinds(TEETH_SEEDS):
        assert kinds == set()


def test_certificates_are_checked_with_the_set_and_domain_of_their_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A driver that signs every epoch under the genesis chain id: the auditor, with its
    own copy of the domain, refuses the certificates of every later epoch."""
    monkeypatch.setattr(consensus.sim.world, "epoch_chain_id", lambda chain, epoch: chain)
    kinds = list(_kinds(TEETH_SEEDS[:2]))
    assert all("epoch" in k for k in kinds) and any("certificate" in k for k in kinds)


def test_the_old_set_kept_after_the_switch_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that starts the next epoch's replica with the old set (new domain): the
    auditor's own chain of sets says otherwise."""
    original = Simulation.epoch_config

    def keep_old_set(self: Simulation, sets, anchor: bytes, root: bytes) -> ReplicaConfig:  # type: ignore[no-untyped-def]
        config = original(self, sets, anchor, root)
        if sets.epoch == 0:
            return config
        return dataclasses.replace(config, validators=self.config.validators, validator_names=())

    monkeypatch.setattr(Simulation, "epoch_config", keep_old_set)
    assert _flagged("certificate", TEETH_SEEDS[:2]) == 2


def test_a_replica_unaware_of_the_epoch_end_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core is never told a block ends the epoch: its commits disagree with the set
    rules the auditor follows, and its replicas vote on above the end."""
    validated, propose = Replica.proposal_validated, Replica.propose

    def never_ends(self, view, height, digest, ok, root, ends_epoch=False):  # type: ignore[no-untyped-def]
        return validated(self, view, height, digest, ok, root, False)

    def propose_never_ends(self, view, height, digest, parent, payload, root, ends_epoch=False):  # type: ignore[no-untyped-def]
        return propose(self, view, height, digest, parent, payload, root, False)

    monkeypatch.setattr(Replica, "proposal_validated", never_ends)
    monkeypatch.setattr(Replica, "propose", propose_never_ends)
    assert _flagged("epoch_end", TEETH_SEEDS[:2]) == 2


def test_an_old_epoch_vote_above_its_end_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """§4.2 without the epoch rule: the old set proposes and votes on the switch block's
    child in its own domain; the auditor sees an honest vote above the end."""
    monkeypatch.setattr(
        consensus.normal_case.NormalCase, "_ends_epoch", lambda self, height, digest: False
    )
    assert _flagged("epoch", TEETH_SEEDS) >= 2


def test_a_removed_validator_that_keeps_voting_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """An honest validator voted out whose driver keeps it in the next set (as its last
    member): everything it signs there verifies under no epoch it belongs to."""
    original = SimDriver._config_at_head

    def keep_me(self: SimDriver) -> ReplicaConfig:
        config = original(self)
        if self.honest and self.key.public_key not in config.validators:
            validators = (*config.validators, self.key.public_key)
            return dataclasses.replace(config, validators=validators, validator_names=())
        return config

    monkeypatch.setattr(SimDriver, "_config_at_head", keep_me)
    assert _flagged("epoch", [17, 23, 27]) >= 1  # seeds that remove an honest validator


def test_a_follower_that_skips_certificates_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Followers trust a fetched block only through its certificate, checked with the set
    of the block's epoch (§4.3 state transfer); without it, corrupted replies get in."""
    monkeypatch.setattr(consensus.sim.driver, "verify_commit_proof", lambda config, proof: None)
    assert _flagged("certificate", [3, 5, 22, 23]) >= 1


def test_a_change_that_never_takes_effect_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Liveness after a change: if the votes never reach a mempool, the planned change
    never takes effect, and the auditor says so."""
    original = SimDriver.on_request

    def drop_votes(self: SimDriver, request: int) -> None:
        if request < VOTE_BASE:
            original(self, request)

    monkeypatch.setattr(SimDriver, "on_request", drop_votes)
    assert _flagged("liveness", TEETH_SEEDS[:2]) == 2
