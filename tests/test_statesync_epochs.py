"""State sync after a validator-set change (issue 15): the snapshot's certificate is signed by
the set of its epoch, which the syncing node learns from the peers' chain of sets (epoch
links, ledger/chain/epoch_links.py) followed from the genesis set. A peer that sends a
forged chain is dropped; an offer no verified chain certifies is refused, so with only
such peers nothing is installed.

The source chain is real: validator votes executed at block 1 add a fifth member, the
checkpoint at block 4 switches to epoch 1, and the blocks after it are certified by the
five members under epoch 1's signing domain.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from consensus.config import epoch_chain_id
from consensus.quorum import quorum_size
from consensus.votes import COMMIT_KIND, commit_vote_body
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.epoch_links import EpochLink
from ledger.chain.execute import ChainRules, build_block
from ledger.chain.store import BlockWrite, Store
from ledger.chain.types import (
    Block,
    CommitCertificate,
    SetAction,
    Transaction,
    Transfer,
    ValidatorChange,
)
from ledger.chain.validators import Member, ValidatorSet, read_active
from ledger.engine.assemble import genesis_config
from ledger.node import epochs
from tests.test_statesync import FakeNet, _assert_untouched, _sync
from tests.test_store import USER_KEYS, VALIDATOR_KEYS
from tests.test_store_snapshot import INTERVAL
from tests.test_store_snapshot import genesis as genesis

NEWCOMER = PrivateKey(sha256(b"store-test validator 4"))
ADD = ValidatorChange(SetAction.ADD, "v4", NEWCOMER.public_key, "127.0.0.1:7004")


def _certify(block: Block, signers: list[PrivateKey], chain_id: str) -> CommitCertificate:
    body = commit_vote_body(0, block.height, block.hash())
    count = quorum_size(len(signers))
    votes = {i: signers[i].sign(chain_id, COMMIT_KIND, body) for i in range(count)}
    return CommitCertificate.assemble(0, block.height, block.hash(), votes)


def _epoch_chain(store: Store, genesis: Genesis, blocks: int) -> None:
    """Blocks 1..``blocks``: three votes to add v4 in block 1 (q = 3 of 4), the switch at
    the checkpoint (block 4), then epoch 1 certified by all five."""
    rules = ChainRules.from_genesis(genesis)
    nonces = [0] * len(USER_KEYS)
    for height in range(1, blocks + 1):
        tip = store.tip()
        txs = []
        if height == 1:
            txs = [
                Transaction.create(VALIDATOR_KEYS[i], genesis.chain_id, 0, ADD, gas_limit=10_000)
                for i in range(3)
            ]
        for i in range(6):
            k = i % len(USER_KEYS)
            txs.append(
                Transaction.create(
                    USER_KEYS[k],
                    genesis.chain_id,
                    nonces[k],
                    Transfer(USER_KEYS[k - 1].address, 1),
                    gas_limit=21_000,
                )
            )
            nonces[k] += 1
        executed, skipped = build_block(
            tip,
            txs,
            view=0,
            proposer=0,
            timestamp_ms=genesis.genesis_time_ms + height,
            rules=rules,
            signature_ok=lambda tx: True,
        )
        assert not skipped
        certifying = read_active(store, rules.initial_set)
        signers = [VALIDATOR_KEYS[i] for i in range(4)]
        if certifying.epoch == 1:
            signers.append(NEWCOMER)
        certificate = _certify(
            executed.block, signers, epoch_chain_id(genesis.chain_id, certifying.epoch)
        )
        store.append_blocks(
            [
                BlockWrite(
                    executed.block,
                    certificate,
                    executed.receipts,
                    executed.overlay.writes,
                    executed.tree_update,
                    epochs.link_record(executed, certificate) or None,
                )
            ]
        )


@pytest.fixture
def source(tmp_path: Path, genesis: Genesis) -> Store:
    store = Store.open(tmp_path / "source.db", genesis)
    _epoch_chain(store, genesis, 3 * INTERVAL + 1)
    active = read_active(store, ValidatorSet.genesis(genesis))
    assert (active.epoch, active.start_height, active.n) == (1, INTERVAL, 5)
    assert [link.height for link in store.epoch_links()] == [INTERVAL]
    return store


@pytest.fixture
def target(tmp_path: Path, genesis: Genesis) -> Store:
    return Store.open(tmp_path / "target.db", genesis)


def test_a_snapshot_after_a_set_change_verifies_by_the_chain_of_sets(
    target: Store, source: Store, genesis: Genesis, tmp_path: Path
) -> None:
    installed, sync = _sync(target, source, genesis, {})
    assert installed and sync.counters["statesync.peers_dropped"] == 0
    snapshot = source.get_header(3 * INTERVAL)
    assert snapshot is not None and source.snapshots()[0].height == snapshot.height
    assert (target.head_height, target.head_hash, target.state_root) == (
        snapshot.height,
        snapshot.hash(),
        snapshot.state_root,
    )
    # The chain of sets came with it: the store reopens (its base verified by epoch 1's
    # set), and the replica of epoch 1 is built from the switch block's header in the link.
    assert [link.height for link in target.epoch_links()] == [INTERVAL]
    target.close()
    with Store.open(tmp_path / "target.db", genesis) as reopened:
        reopened.check_integrity()
        base = genesis_config(
            genesis, reopened.genesis_state_root, lambda raw: Block.decode(raw).hash(), 100
        )
        config = epochs.config_at_head(reopened, ChainRules.from_genesis(genesis), base)
        header = source.get_header(INTERVAL)
        assert header is not None
        assert (config.genesis_height, config.genesis_digest) == (INTERVAL, header.hash())
        assert NEWCOMER.public_key in config.validators and config.n == 5


def _forged(link: EpochLink) -> EpochLink:
    """The same link naming another newcomer key (the attacker's)."""
    chosen = ValidatorSet.decode(link.validator_set)
    attacker = Member("v4", PrivateKey(sha256(b"attacker")).public_key, "127.0.0.1:7004")
    forged = dataclasses.replace(chosen, members=(*chosen.members[:4], attacker))
    return dataclasses.replace(link, validator_set=forged.encode())


def test_a_forged_chain_is_refused_and_without_a_chain_nothing_verifies(
    target: Store, source: Store, genesis: Genesis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeNet, "links", _links_by_behaviour)
    installed, sync = _sync(target, source, genesis, {0: "no_links", 1: "forged_links"})
    assert installed, "the honest peer's chain and snapshot verify"
    # The forger is dropped; the peer without a chain offered the genuine snapshot (it
    # verifies by the honest chain) and served chunks.
    assert sync.counters["statesync.peers_dropped"] == 1
    other = Store.open(tmp_path / "other.db", genesis)
    installed, _ = _sync(other, source, genesis, {0: "no_links", 1: "forged_links", 2: "no_links"})
    assert not installed
    _assert_untouched(other, genesis, tmp_path / "other.db")


def _links_by_behaviour(self: FakeNet, how: str) -> list[EpochLink]:
    links = self.source.epoch_links()
    if how == "no_links":
        return []
    if how == "forged_links":
        return [_forged(link) for link in links]
    return links
