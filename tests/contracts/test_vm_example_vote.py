"""contracts/examples/vote.qasm and vote.py (the same tests for both): k-of-m approval of transfers and calls."""

from __future__ import annotations

import pytest

from contracts.interpreter import ExecutionStatus
from tests.contracts.vm_support import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    EXAMPLE_LANGUAGES,
    Chain,
    example_code,
)

TARGET = """
.method ping() -> u64 payable
    push "pings"
    push "pings"
    sload
    btoi
    push 1
    add
    itob
    sstore
    callvalue
    return
.method refuse()
    push "no"
    revert
"""


@pytest.fixture(params=EXAMPLE_LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def code(language: str) -> bytes:
    return example_code("vote", language)


@pytest.fixture
def chain() -> Chain:
    chain = Chain()
    chain.fund(ALICE, 10_000)
    return chain


@pytest.fixture
def vote(chain: Chain, code: bytes) -> bytes:
    return chain.deployed(code, [2, ALICE, BOB, CAROL], value=1000)


def test_constructor_records_members_and_threshold(chain: Chain, vote: bytes) -> None:
    assert chain.query(vote, "threshold") == 2
    assert [chain.query(vote, "is_member", a) for a in (ALICE, BOB, CAROL, DAVE)] == [1, 1, 1, 0]
    assert chain.host.get_balance(vote) == 1000


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([0, ALICE], "k must be between 1 and the number of members"),
        ([3, ALICE, BOB], "k must be between 1 and the number of members"),
        ([1], "k must be between 1 and the number of members"),
        ([1, ALICE, BOB, ALICE], "duplicate member"),
    ],
)
def test_constructor_refuses_bad_quorums(
    chain: Chain, code: bytes, args: list[object], error: str
) -> None:
    _, result = chain.deploy(code, args)  # type: ignore[arg-type]
    assert result.status is ExecutionStatus.REVERTED and result.error == error


def test_transfer_executes_at_k_approvals(chain: Chain, vote: bytes) -> None:
    proposed = chain.call(vote, "propose_transfer", DAVE, 300)
    assert proposed.ok and proposed.return_value == 0
    assert [e.name for e in proposed.events] == ["Proposed", "Approved"]
    assert chain.query(vote, "approvals", 0) == 1 and chain.query(vote, "executed", 0) == 0
    assert chain.host.get_balance(DAVE) == 0
    approved = chain.call(vote, "approve", 0, sender=BOB)
    assert approved.ok and approved.return_value == 2
    assert [e.name for e in approved.events] == ["Approved", "Executed"]
    assert chain.host.get_balance(DAVE) == 300 and chain.host.get_balance(vote) == 700
    assert chain.query(vote, "executed", 0) == 1
    late = chain.call(vote, "approve", 0, sender=CAROL)
    assert late.status is ExecutionStatus.REVERTED and late.error == "proposal already executed"


def test_no_double_approval(chain: Chain, vote: bytes) -> None:
    assert chain.call(vote, "propose_transfer", DAVE, 1).ok
    again = chain.call(vote, "approve", 0)
    assert again.status is ExecutionStatus.REVERTED and again.error == "already approved"
    assert chain.query(vote, "approvals", 0) == 1


def test_non_members_are_refused(chain: Chain, vote: bytes) -> None:
    for method, args in (("propose_transfer", (DAVE, 1)), ("approve", (0,))):
        result = chain.call(vote, method, *args, sender=DAVE)
        assert result.status is ExecutionStatus.REVERTED
        assert result.error == "only members may do this"


def test_unknown_proposal(chain: Chain, vote: bytes) -> None:
    result = chain.call(vote, "approve", 5, sender=BOB)
    assert result.status is ExecutionStatus.REVERTED and result.error == "no such proposal"


def test_underfunded_transfer_reverts_and_can_be_retried(chain: Chain, vote: bytes) -> None:
    assert chain.call(vote, "propose_transfer", DAVE, 5000).ok
    poor = chain.call(vote, "approve", 0, sender=BOB)
    assert poor.status is ExecutionStatus.REVERTED and "balance is too small" in poor.error
    assert chain.query(vote, "approvals", 0) == 1
    assert chain.call(vote, "deposit", value=4000).ok
    assert chain.call(vote, "approve", 0, sender=BOB).ok
    assert chain.host.get_balance(DAVE) == 5000


def test_call_proposal_executes_a_cross_contract_call(chain: Chain, vote: bytes) -> None:
    target = chain.deployed(TARGET)
    assert chain.call(vote, "propose_call", target, "ping", 25).return_value == 0
    assert chain.host.storage_of(target) == {}
    assert chain.call(vote, "approve", 0, sender=CAROL).ok
    assert chain.host.storage_of(target) == {b"pings": (1).to_bytes(8, "big")}
    assert chain.host.get_balance(target) == 25
    assert chain.host.get_balance(vote) == 975


def test_failed_call_proposal_reverts_the_approval(chain: Chain, vote: bytes) -> None:
    target = chain.deployed(TARGET)
    assert chain.call(vote, "propose_call", target, "refuse", 0).ok
    result = chain.call(vote, "approve", 0, sender=BOB)
    assert result.status is ExecutionStatus.REVERTED
    assert result.error == "the proposal's call failed"
    assert chain.query(vote, "executed", 0) == 0


def test_threshold_of_one_executes_at_proposal(chain: Chain, code: bytes) -> None:
    vote = chain.deployed(code, [1, ALICE], value=10)
    result = chain.call(vote, "propose_transfer", BOB, 10)
    assert result.ok and [e.name for e in result.events] == ["Proposed", "Approved", "Executed"]
    assert chain.host.get_balance(BOB) == 10


def test_proposals_are_numbered(chain: Chain, vote: bytes) -> None:
    ids = [chain.call(vote, "propose_transfer", DAVE, 1).return_value for _ in range(3)]
    assert ids == [0, 1, 2] and chain.query(vote, "proposal_count") == 3
    empty = chain.call(vote, "propose_call", DAVE, "", 0)
    assert empty.status is ExecutionStatus.REVERTED
