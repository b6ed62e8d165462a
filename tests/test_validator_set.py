"""The validator set in state: votes, the quorum, the floor of 4, the switch at a checkpoint."""

from __future__ import annotations

import pytest

from consensus.config import epoch_chain_id
from crypto.encoding import DecodeError
from crypto.hashing import sha256
from crypto.keys import PrivateKey, valid_chain_id
from ledger.chain import validators as vset
from ledger.chain.types import SetAction, Transaction, ValidatorChange

KEYS = [PrivateKey(sha256(f"v{i}".encode())) for i in range(8)]
ACCOUNT = PrivateKey(sha256(b"an account"))
GENESIS = vset.ValidatorSet(
    0, 0, tuple(vset.Member(f"node{i}", KEYS[i].public_key) for i in range(4))
)
ADD4 = ValidatorChange(SetAction.ADD, "node4", KEYS[4].public_key, "127.0.0.1:7004")


class State(dict[bytes, bytes]):
    def get_state(self, key: bytes) -> bytes | None:
        return self.get(key)

    def set_state(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value


def vote(
    state: State,
    key: PrivateKey,
    change: ValidatorChange,
    height: int = 1,
    completing: tuple[SetAction, ...] = vset.ALL_ACTIONS,
) -> str | None:
    """One vote through the rules; ``completing`` defaults to every action (the mechanics);
    the node's own guard is :data:`vset.SWITCHABLE_ACTIONS`."""
    tx = Transaction.create(key, "test-chain", 0, change, gas_limit=10_000)
    refusal = vset.vote_refusal(state, GENESIS, change, tx.sender, completing=completing)
    if refusal is not None:
        return refusal
    receipt = vset.apply_validator_vote(state, tx, change, GENESIS, height)
    return receipt.error or str(receipt.return_value)


def test_a_vote_signed_by_an_account_key_is_refused() -> None:
    state = State()
    refusal = vote(state, ACCOUNT, ADD4)
    assert refusal is not None and "not a current validator" in refusal
    assert state == {}


def test_q_votes_schedule_the_change_and_the_checkpoint_activates_it() -> None:
    state = State()
    assert vote(state, KEYS[0], ADD4) == "pending"
    assert "already voted" in (vote(state, KEYS[0], ADD4) or "")
    assert vote(state, KEYS[1], ADD4) == "pending"
    assert vset.read_next(state) is None
    assert vote(state, KEYS[2], ADD4, height=5) == "scheduled"  # q = 3 of 4
    assert vset.read_active(state, GENESIS) == GENESIS
    assert vset.end_of_block(state, 7, 0, 4) is None  # not a checkpoint height
    active = vset.end_of_block(state, 8, 0, 4)
    assert active is not None and active.epoch == 1 and active.start_height == 8
    assert [m.name for m in active.members] == ["node0", "node1", "node2", "node3", "node4"]
    assert vset.read_active(state, GENESIS) == active and vset.read_next(state) is None
    # Epoch 1: five validators, q = 4; node4 votes now, an old outsider does not.
    assert vote(state, KEYS[4], ValidatorChange(SetAction.REMOVE, "node3")) == "pending"


def test_a_completing_vote_the_node_cannot_switch_for_is_refused() -> None:
    """The guard: the q-th vote for a change the node cannot carry through the epoch
    switch is refused (admission and block validity), so no vote can stall the chain.
    The node carries both actions through today; the mechanism is checked with a guard
    that leaves adding out."""
    assert vset.SWITCHABLE_ACTIONS == vset.ALL_ACTIONS
    state = State()
    guard = (SetAction.REMOVE,)
    assert vote(state, KEYS[0], ADD4, completing=guard) == "pending"
    assert vote(state, KEYS[1], ADD4, completing=guard) == "pending"
    before = dict(state)
    refusal = vote(state, KEYS[2], ADD4, completing=guard)
    assert refusal is not None and "would complete the change" in refusal
    assert "cannot switch epochs" in refusal
    assert state == before and vset.read_next(state) is None


def test_votes_while_a_change_is_scheduled_revert() -> None:
    state = State()
    for i in range(3):
        vote(state, KEYS[i], ADD4)
    other = ValidatorChange(SetAction.ADD, "node5", KEYS[5].public_key, "h:1")
    assert "already scheduled" in (vote(state, KEYS[0], other) or "")


def test_a_change_leaving_fewer_than_four_is_refused() -> None:
    refusal = vote(State(), KEYS[0], ValidatorChange(SetAction.REMOVE, "node3"))
    assert refusal is not None and "at least 4" in refusal


def test_genesis_set_hash_is_the_genesis_validators_hash_form() -> None:
    from crypto.encoding import encode
    from crypto.hashing import tagged_hash

    expected = tagged_hash("validators", encode([[m.name, m.public_key] for m in GENESIS.members]))
    assert GENESIS.hash() == expected
    assert vset.ValidatorSet.decode(GENESIS.encode()) == GENESIS


def test_malformed_changes_do_not_decode() -> None:
    with pytest.raises(DecodeError):
        ValidatorChange.from_value(["add", "x", b"\x01" * 31, "h:1"])
    with pytest.raises(DecodeError):
        ValidatorChange.from_value(["remove", "x", b"", "h:1"])
    with pytest.raises(DecodeError):
        ValidatorChange.from_value(["add", "x", b"\x01" * 32, "no-port"])


def test_epoch_signing_domains_are_valid_and_distinct() -> None:
    ids = {epoch_chain_id("quorum-testnet", e) for e in range(5)}
    assert len(ids) == 5 and all(valid_chain_id(i) for i in ids)
    assert epoch_chain_id("quorum-testnet", 0) == "quorum-testnet"
