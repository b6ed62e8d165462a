"""A validator voted out retires (ledger/node/retire.py, docs/CONSENSUS.md §12): it stops
only on block E+1 certified by the NEW set — a certificate of the old set, one under the
wrong epoch's domain, one short of a quorum or one for another block ends nothing early —
or after its grace period. The end-to-end test is tests/integration/test_validator_epochs.py.

PBFT (Castro & Liskov, OSDI'99 §4.1, §4.3): a block is committed once q replicas' COMMITs
for it are in; q COMMIT signatures of the new set over E+1 mean q members of the new set
committed E+1, so at least f+1 honest ones hold E and serve it to every straggler.
"""

from __future__ import annotations

import collections
import dataclasses

import pytest
import trio
import trio.testing

from consensus.config import ReplicaConfig, epoch_chain_id
from consensus.quorum import quorum_size
from consensus.ready import Ready
from consensus.votes import COMMIT_KIND, commit_vote_body
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from ledger.chain.types import Block, BlockHeader, CommitCertificate, tx_root
from ledger.engine.events import Wake
from ledger.node.retire import (
    NOT_A_VALIDATOR,
    RETIRE_GRACE_MIN_MS,
    RETIRE_GRACE_VIEW_CHANGES,
    NotEvidence,
    Retired,
    Retirement,
    check_takeover,
    grace_ms,
    refusals,
    validator_state,
)

CHAIN = "quorum-retire"
SWITCH = 8  # block E: the old set's last
SWITCH_HASH = sha256(b"block 8")
KEYS = [PrivateKey(sha256(f"retire{i}".encode())) for i in range(5)]
LEAVER = 4


def old_config() -> ReplicaConfig:
    return ReplicaConfig(
        chain_id=CHAIN,
        validators=tuple(k.public_key for k in KEYS),
        genesis_height=0,
        genesis_digest=bytes(32),
        block_digest=sha256,
    )


def new_config() -> ReplicaConfig:
    """Epoch 1: node4 voted out, anchored at the switch block."""
    return dataclasses.replace(
        old_config(),
        chain_id=epoch_chain_id(CHAIN, 1),
        validators=tuple(k.public_key for k in KEYS[:LEAVER]),
        genesis_height=SWITCH,
        genesis_digest=SWITCH_HASH,
    )


def child(prev_hash: bytes = SWITCH_HASH, height: int = SWITCH + 1) -> Block:
    header = BlockHeader(
        chain_id=CHAIN,
        height=height,
        view=0,
        proposer=0,
        timestamp_ms=1,
        prev_hash=prev_hash,
        tx_root=tx_root([]),
        receipts_root=bytes(32),
        state_root=bytes(32),
        validators_hash=bytes(32),
        tx_count=0,
    )
    return Block(header, ())


def certify(
    block: Block, signers: list[int], domain: str, block_hash: bytes | None = None
) -> CommitCertificate:
    digest = block.hash() if block_hash is None else block_hash
    body = commit_vote_body(0, block.height, digest)
    votes = {i: KEYS[i].sign(domain, COMMIT_KIND, body) for i in signers}
    return CommitCertificate.assemble(0, block.height, digest, votes)


def served(block: Block, certificate: CommitCertificate) -> tuple[bytes, bytes]:
    return block.encode(), certificate.encode()


def check(raw: tuple[bytes, bytes]) -> None:
    check_takeover(
        *raw,
        switch_height=SWITCH,
        switch_hash=SWITCH_HASH,
        new_config=new_config(),
        max_block_bytes=1 << 20,
    )


NEW_DOMAIN = epoch_chain_id(CHAIN, 1)
GOOD = served(child(), certify(child(), [0, 1, 2], NEW_DOMAIN))


def test_block_e_plus_1_certified_by_a_quorum_of_the_new_set_is_evidence() -> None:
    assert new_config().quorum == quorum_size(4) == 3
    check(GOOD)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        # the old set (the leaver among them) under the old domain: not the new set's word
        (served(child(), certify(child(), [1, 2, 3, LEAVER], CHAIN)), "signature"),
        # the new set's keys, but signing under the old epoch's domain
        (served(child(), certify(child(), [0, 1, 2], CHAIN)), "signature"),
        # one short of the new quorum
        (served(child(), certify(child(), [0, 1], NEW_DOMAIN)), "need 3"),
        # a certificate for another block
        (served(child(), certify(child(), [0, 1, 2], NEW_DOMAIN, sha256(b"x"))), "another"),
        # not the switch block's child
        (served(child(sha256(b"fork")), certify(child(sha256(b"fork")), [0, 1, 2], NEW_DOMAIN)),
         "not the child"),
        (served(child(height=SWITCH + 2), certify(child(height=SWITCH + 2), [0, 1, 2],
                                                  NEW_DOMAIN)), "not the child"),
        ((b"\x00garbage", GOOD[1]), "malformed"),
    ],
)  # fmt: skip
def test_a_forged_or_foreign_certificate_is_not_evidence(
    raw: tuple[bytes, bytes], why: str
) -> None:
    with pytest.raises(NotEvidence, match=why):
        check(raw)


class FakeLinks:
    def __init__(self, peers: list[int]) -> None:
        self.peers = peers
        self.sent: list[tuple[int, bytes]] = []

    def connected_peers(self) -> list[int]:
        return list(self.peers)

    def send(self, peer_index: int, message: bytes, *, bulk: bool = False) -> None:
        self.sent.append((peer_index, message))


def retire_with(replies: list[tuple[int, list[tuple[bytes, bytes]]]]) -> tuple[Retired, float]:
    """Run a retirement on a mock clock; each reply is handed in after the first asks went
    out. Returns how it ended and when (seconds)."""
    counters: collections.Counter[str] = collections.Counter()
    retirement = Retirement(new_config(), old_config(), 1 << 20, counters)
    links = FakeLinks([1, 2, 7])
    ended: list[Retired] = []

    async def main() -> float:
        async def feed() -> None:
            while not links.sent:
                await trio.sleep(0.01)
            for sender, blocks in replies:
                retirement.on_blocks(sender, blocks)
                await trio.sleep(0.5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(feed)
            try:
                await retirement.run(links, {1: "node1", 2: "node2", 7: "node7", 9: "node9"})
            except Retired as exc:
                ended.append(exc)
                nursery.cancel_scope.cancel()
        return trio.current_time()

    when = trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert {peer for peer, _ in links.sent} == {1, 2, 7}  # it asked every linked peer
    assert len(ended) == 1  # it never returns without retiring
    return ended[0], when


def test_a_retiring_validator_stops_once_a_peer_serves_e_plus_1_certified_by_the_new_set() -> None:
    forged = served(child(), certify(child(), [1, 2, 3, LEAVER], CHAIN))
    retired, when = retire_with([(9, [GOOD]), (1, [forged]), (7, []), (2, [GOOD])])
    assert retired.reason == "taken_over" and retired.removed_at == SWITCH
    assert "retired after block 9 was certified by the new set (served by node2)" in str(retired)
    assert when < grace_ms(old_config()) / 1000


def test_forged_evidence_or_none_does_not_end_retirement_before_the_grace_period() -> None:
    forged = served(child(), certify(child(), [0, 1], NEW_DOMAIN))
    retired, when = retire_with([(1, [forged]), (2, [])])
    assert retired.reason == "grace_period"
    assert "retired after the grace period" in str(retired)
    grace_s = grace_ms(old_config()) / 1000
    assert grace_s <= when < grace_s + 1
    # a peer never asked (9) is not even read: unsolicited
    retired, when = retire_with([(9, [GOOD])])
    assert retired.reason == "grace_period"


def test_the_grace_period_is_view_change_timeouts_with_a_floor() -> None:
    slow = dataclasses.replace(old_config(), view_change_timeout_ms=5_000)
    assert grace_ms(slow) == RETIRE_GRACE_VIEW_CHANGES * 5_000
    assert grace_ms(old_config()) == max(RETIRE_GRACE_MIN_MS, RETIRE_GRACE_VIEW_CHANGES * 2_000)


def test_a_retiring_validator_takes_no_transactions_and_says_so() -> None:
    answers = refusals(2, SWITCH)
    assert [a["code"] for a in answers] == [NOT_A_VALIDATOR] * 2
    assert "removed from the validator set at block 8" in answers[0]["error"]
    counters: collections.Counter[str] = collections.Counter()
    retirement = Retirement(new_config(), old_config(), 1 << 20, counters)
    state = validator_state(retirement)
    assert state["state"] == "retiring" and state["removed_at"] == SWITCH
    assert validator_state(None) == {"state": "member"}
    # Everything but ticks and consensus messages is ignored (no engine, no mempool).
    ready = retirement.step(None, Wake(0))  # type: ignore[arg-type]
    assert ready == Ready() and counters["retire.ignored_events"] == 1
