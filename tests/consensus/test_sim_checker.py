"""The simulator's checker has teeth: each property flags a run broken in exactly that way.

Each test feeds the checker (consensus/sim/checker.py, which hands them to the independent auditor consensus/sim/audit.py) a deliberately broken run — two
blocks at one height, a request nobody submitted, a certificate that does not verify, an
honest replica signing twice, a network that delivers nothing — and a correct twin of it
that must pass. These are the killing tests of the checker mutants of ``make mutants``
(tests/mutants/table.py).
"""

from __future__ import annotations

from consensus.messages import Commit, Prepare, PrePrepare, sign
from consensus.ready import CommittedBlock
from consensus.sim import SimParams
from consensus.sim.checker import Checker
from consensus.sim.model import GENESIS_DIGEST, block_payload
from consensus.sim.world import Simulation
from crypto.hashing import sha256


def _world() -> Simulation:
    return Simulation(0, SimParams(validators=4, byzantine=0))


def _block(sim: Simulation, ids: list[int], *, signers: int | None = None) -> CommittedBlock:
    """Block 1 on genesis holding ``ids``, with COMMIT signatures of the first ``signers``
    validators (default: a quorum)."""
    config = sim.config
    payload = block_payload(1, GENESIS_DIGEST, ids)
    digest = sha256(payload)
    count = config.quorum if signers is None else signers
    votes = tuple(
        (i, sign(sim.keys[i], config.chain_id, i, Commit(0, 1, digest)).signature)
        for i in range(count)
    )
    return CommittedBlock(0, 1, digest, GENESIS_DIGEST, payload, sha256(b"root"), votes)


def _kinds(checker: Checker) -> set[str]:
    return {v.kind for v in checker.violations}


def test_the_checker_flags_two_blocks_at_one_height() -> None:
    sim = _world()
    checker = Checker(sim.config, [0, 1, 2, 3])
    first, other = _block(sim, [1]), _block(sim, [2])
    checker.on_commit(0, first, [1], GENESIS_DIGEST, {1, 2})
    checker.on_commit(1, first, [1], GENESIS_DIGEST, {1, 2})
    assert checker.violations == []
    checker.on_commit(2, other, [2], GENESIS_DIGEST, {1, 2})
    assert _kinds(checker) == {"agreement"}


def test_the_checker_flags_a_request_nobody_submitted() -> None:
    sim = _world()
    checker = Checker(sim.config, [0, 1, 2, 3])
    checker.on_commit(0, _block(sim, [1]), [1], GENESIS_DIGEST, {1})
    assert checker.violations == []
    checker.on_commit(1, _block(sim, [1]), [1], GENESIS_DIGEST, {2})
    assert _kinds(checker) == {"validity"}


def test_the_checker_flags_a_commit_without_a_valid_certificate() -> None:
    sim = _world()
    checker = Checker(sim.config, [0, 1, 2, 3])
    checker.on_commit(0, _block(sim, [1]), [1], GENESIS_DIGEST, {1})
    assert checker.violations == []
    short = _block(sim, [1], signers=sim.config.quorum - 1)
    checker.on_commit(1, short, [1], GENESIS_DIGEST, {1})
    assert _kinds(checker) == {"certificate"}


def test_the_checker_flags_an_honest_double_sign() -> None:
    sim = _world()
    checker = Checker(sim.config, [0, 1, 2, 3])
    chain_id, key = sim.config.chain_id, sim.keys[1]
    for content in (b"a", b"b"):  # the primary (validator 0) proposed both: a Byzantine primary
        proposal = PrePrepare(0, 1, sha256(content), GENESIS_DIGEST)
        checker.observe(sign(sim.keys[0], chain_id, 0, proposal))
    vote = sign(key, chain_id, 1, Prepare(0, 1, sha256(b"a")))
    checker.on_send(1, vote)
    checker.on_send(1, vote)  # the same vote again (a retransmission) is fine
    assert checker.violations == []
    checker.on_send(1, sign(key, chain_id, 1, Prepare(0, 1, sha256(b"b"))))
    assert _kinds(checker) == {"double_sign"}


def test_a_run_where_nothing_is_delivered_is_a_liveness_violation() -> None:
    sim = _world()
    sim._transmit = lambda *args: None  # type: ignore[method-assign]
    sim.run()
    assert sim.finished_at is None
    assert "liveness" in {v.kind for v in sim.violations}
