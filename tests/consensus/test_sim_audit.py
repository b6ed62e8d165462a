"""The simulator's auditor has teeth: every property it checks flags a deliberately broken
run, and the same seeds unbroken are clean.

Each test breaks one thing — a check in the production core (PBFT §4.2 signature and
certificate checks, §4.4 carry-over of prepared requests into a new view), the simulated
execution, or an honest replica's discipline — runs real seeds with the ``forge``
impersonators where that matters, and asserts the auditor reports the matching kind.
The auditor itself imports nothing from the consensus code it judges.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

import consensus.catchup
import consensus.certificates
import consensus.config
import consensus.intake
import consensus.view_changes
import consensus.viewchange
from consensus.messages import Kind, Prepare, sign
from consensus.ready import Outbound, ProposalRequest
from consensus.sim import SimParams
from consensus.sim.audit import Auditor, _Bad, faulty_bound, quorum_of
from consensus.sim.driver import SimDriver
from consensus.sim.epochs import SetState
from consensus.sim.model import draw_plan, next_state_root, parse_block
from consensus.sim.world import CRASH, RESTART, Simulation
from consensus.votes import commit_vote_body
from crypto.hashing import sha256

PARAMS = SimParams(validators=4, byzantine=1)


def _seeds_with(strategy: str, count: int, start: int = 0) -> list[int]:
    found: list[int] = []
    seed = start
    while len(found) < count:
        if strategy in draw_plan(random.Random(seed), PARAMS).strategies.values():
            found.append(seed)
        seed += 1
    return found


def _kinds(seeds: list[int]) -> Iterator[set[str]]:
    for seed in seeds:
        sim = Simulation(seed, PARAMS)
        sim.run()
        yield {v.kind for v in sim.violations}


def _flagged(kind: str, seeds: list[int]) -> int:
    return sum(kind in kinds for kinds in _kinds(seeds))


FORGE_SEEDS = _seeds_with("forge", 8)
ANY_SEEDS = list(range(100, 112))


def test_the_same_seeds_unbroken_are_clean() -> None:
    for kinds in _kinds(FORGE_SEEDS + ANY_SEEDS[:4]):
        assert kinds == set()


#: The auditor's modules: they may import each other, and nothing else of ``consensus``.
AUDITOR_MODULES = ("consensus.sim.audit", "consensus.sim.audit_sets")


def _imports(module: str) -> list[str]:
    source = Path(consensus.__file__).parent.parent / (module.replace(".", "/") + ".py")
    tree = ast.parse(source.read_text())
    return [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]


@pytest.mark.parametrize("module", AUDITOR_MODULES)
def test_the_auditor_shares_no_code_with_consensus(module: str) -> None:
    """audit.py and its chain of sets (audit_sets.py) import nothing from the consensus
    code they judge: not the quorum arithmetic, the signing domain or the set rules."""
    imported = _imports(module)
    foreign = [m for m in imported if m.startswith("consensus") and m not in AUDITOR_MODULES]
    assert imported and not foreign


@pytest.mark.parametrize(
    ("n", "f", "q"), [(1, 0, 1), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (10, 3, 7)]
)
def test_own_quorum_arithmetic_any_two_quorums_share_an_honest_validator(
    n: int, f: int, q: int
) -> None:
    assert (faulty_bound(n), quorum_of(n)) == (f, q)
    assert 2 * q - n >= f + 1 and q <= n - f  # intersection, and availability with f silent


def test_agreement_is_flagged_when_the_quorum_is_too_small(monkeypatch: pytest.MonkeyPatch) -> None:
    """PBFT §4.2: two quorums must intersect in an honest replica. With q = f + 1 an
    equivocating primary gets two blocks committed at one height."""
    monkeypatch.setattr(consensus.config, "quorum_size", lambda n: n // 2)
    seeds = _seeds_with("equivocate", 6) + _seeds_with("twins", 6)
    assert _flagged("agreement", seeds) >= 1


def test_validity_is_flagged_when_execution_accepts_an_unsubmitted_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Execution is the stand-in for client signatures: with its check off, a primary's
    invented request commits."""
    original_propose = SimDriver.do_propose

    def propose_with_a_stranger(
        self: SimDriver, incarnation: int, request: ProposalRequest
    ) -> None:
        self.mempool.setdefault(10**6 + request.height, None)
        original_propose(self, incarnation, request)

    def accept_all(
        self: SimDriver, height: int, parent: bytes, payload: bytes
    ) -> tuple[bool, bytes, tuple[int, ...], SetState]:
        _, _, ids = parse_block(payload)
        ancestry = self.ancestry(parent, height)
        if ancestry is None:
            return False, b"", (), self.sets
        return True, next_state_root(ancestry[1], ids), tuple(ids), ancestry[2]

    monkeypatch.setattr(SimDriver, "do_propose", propose_with_a_stranger)
    monkeypatch.setattr(SimDriver, "execute", accept_all)
    assert _flagged("validity", ANY_SEEDS[:3]) == 3


def test_certificates_are_flagged_when_catch_up_skips_signatures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fetched block is trusted only through its commit certificate (PBFT §4.3 state
    transfer): with the check off, the forgers' stuffed certificates get fake blocks in."""
    monkeypatch.setattr(consensus.catchup, "verify_commit_proof", lambda config, proof: None)
    assert _flagged("certificate", FORGE_SEEDS) >= 1


def test_unjustified_votes_are_flagged_when_signatures_are_not_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PBFT §4.2: a backup accepts a PRE-PREPARE only if it is signed by the primary."""
    monkeypatch.setattr(consensus.intake, "signature_valid", lambda config, message: True)
    monkeypatch.setattr(consensus.certificates, "signature_valid", lambda config, message: True)
    assert _flagged("justified", FORGE_SEEDS) >= 1


def test_a_new_view_that_drops_a_committed_block_is_flagged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PBFT §4.4: the new primary must carry prepared requests into the new view."""
    select = consensus.viewchange.select_new_view

    def forgetful(config, view, view_changes):  # type: ignore[no-untyped-def]
        return select(config, view, [replace(vc, prepared=()) for vc in view_changes])

    monkeypatch.setattr(consensus.viewchange, "select_new_view", forgetful)
    monkeypatch.setattr(consensus.view_changes, "select_new_view", forgetful)
    seeds = list(range(0, 40))
    assert _flagged("carry_over", seeds) >= 1


def test_double_signing_by_an_honest_replica_is_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    original_send = SimDriver.send

    def send_twice(self: SimDriver, out: Outbound) -> None:
        original_send(self, out)
        if self.honest and out.message.kind == Kind.PREPARE and out.message.sender == self.index:
            vote = Prepare.decode(out.message.body)
            other = sign(
                self.key,
                self.world.config.chain_id,
                self.index,
                Prepare(vote.view, vote.height, sha256(vote.digest)),
            )
            original_send(self, Outbound(out.to, other))

    monkeypatch.setattr(SimDriver, "send", send_twice)
    assert _flagged("double_sign", ANY_SEEDS[:2]) == 2


def test_liveness_is_flagged_when_a_request_is_never_proposed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = SimDriver.on_request

    def ignore_first(self: SimDriver, request: int) -> None:
        if request != 0:
            original(self, request)

    monkeypatch.setattr(SimDriver, "on_request", ignore_first)
    assert _flagged("liveness", ANY_SEEDS[:2]) == 2


def test_a_forged_commit_certificate_fed_directly_is_refused() -> None:
    """The auditor's own certificate check, without any simulation: duplicate, unknown,
    outsider and too few signers are each refused; q distinct valid signers pass."""
    sim = Simulation(0, PARAMS)
    reports: list[tuple[str, str]] = []
    auditor = Auditor(
        sim.config.chain_id,
        sim.config.validators,
        (0, sim.config.genesis_digest, sim.config.genesis_state_root),
        [0, 1, 2, 3],
        lambda kind, detail: reports.append((kind, detail)),
    )
    digest = sha256(b"block")
    body = commit_vote_body(0, 1, digest)
    votes = [(i, sim.keys[i].sign(sim.config.chain_id, "commit", body)) for i in range(4)]
    genesis_set = auditor.epochs[0]
    auditor._commit_certificate(genesis_set, 0, 1, digest, [list(v) for v in votes[:3]])
    outsider = sim.keys[0].sign(sim.config.chain_id, "commit", body)
    for bad in (
        [votes[0], votes[0], votes[1]],
        [votes[0], votes[1], (4, votes[2][1])],
        [votes[0], votes[1], (2, outsider)],
        votes[:2],
    ):
        with pytest.raises(_Bad):
            auditor._commit_certificate(genesis_set, 0, 1, digest, [list(v) for v in bad])
    assert reports == []


def test_forgers_reach_honest_replicas_and_every_forgery_is_rejected_and_counted() -> None:
    """The impersonation attacks are real traffic: honest replicas see forged signatures
    (PBFT §4.2) and stuffed catch-up certificates, reject each and count it, and the run
    stays clean."""
    rejected: dict[str, int] = {}
    for seed in FORGE_SEEDS[:4]:
        sim = Simulation(seed, PARAMS)
        sim.run()
        assert sim.violations == []
        for endpoint in sim.endpoints:
            replica = endpoint.driver.replica
            if endpoint.honest and replica is not None:
                for key, value in replica.statistics().items():
                    if key.startswith("rejected."):
                        rejected[key] = rejected.get(key, 0) + value
    assert rejected.get("rejected.bad_signature", 0) > 0
    assert sum(v for k, v in rejected.items() if "certificate" in k or "view_change" in k) > 0


@pytest.mark.parametrize(
    ("validators", "byzantine", "seed"),
    [(4, 1, 33), (7, 2, 556), (7, 2, 760), (7, 2, 980)],
)
def test_seeds_that_found_bugs_stay_clean(validators: int, byzantine: int, seed: int) -> None:
    """Found by the forgers and the auditor: (4, 33) and (7, 556/980) — blocks below a
    NEW-VIEW base certified only at a Byzantine replica, never fetchable (fixed by
    re-certification, PBFT §4.4); (7, 760) — a replica restarted in view 0 answered its
    view-0 proposal request after jumping to view 1 by a NEW-VIEW, and PREPAREd in view 1 a
    block the view-1 primary never proposed (§4.2); (4, 33) again once the forgers also
    stuffed prepared certificates — honest replicas holding a certified block above a gap
    that only the Byzantine replica could fill counted themselves "trailing a live view"
    for ever and never timed out (now only while something still commits, §4.4 liveness)."""
    sim = Simulation(seed, SimParams(validators=validators, byzantine=byzantine))
    sim.run()
    assert sim.violations == []
    assert sim.finished_at is not None


def _crash_the_primary_after_its_first_proposal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The view-0 primary crashes the moment its first PRE-PREPARE leaves and restarts
    30 ms later, still in view 0, its mempool empty (clients resubmit)."""
    original_send = SimDriver.send
    crashed: set[int] = set()

    def send(self: SimDriver, out: Outbound) -> None:
        original_send(self, out)
        world = self.world
        if (
            self.honest
            and self.index == 0
            and out.message.kind == Kind.PRE_PREPARE
            and self.eid not in crashed
            and isinstance(world, Simulation)
        ):
            crashed.add(self.eid)
            world.schedule(world.time, CRASH, self.eid)
            world.schedule(world.time + 30, RESTART, self.eid)

    monkeypatch.setattr(SimDriver, "send", send)


def test_a_primary_restarted_mid_view_only_repeats_what_it_signed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PBFT §4.2 with crash recovery: the double-sign guard's records are persisted before
    a vote leaves and come back after a restart, so the restarted primary repeats its
    PRE-PREPARE instead of proposing another block at the same view and height."""
    _crash_the_primary_after_its_first_proposal(monkeypatch)
    seeds = [s for s in range(0, 40) if 0 not in draw_plan(random.Random(s), PARAMS).byzantine]
    for kinds in _kinds(seeds[:12]):
        assert kinds == set()
