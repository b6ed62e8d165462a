"""The node's side of an epoch switch: which records go, where messages go, the next
epoch's config (docs/CONSENSUS.md §12; the end-to-end test is
tests/integration/test_validator_epochs.py)."""

from __future__ import annotations

from consensus.config import ReplicaConfig, epoch_chain_id
from consensus.messages import SignedMessage
from consensus.ready import Outbound
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from ledger.chain.epoch_links import LINK_PREFIX
from ledger.chain.validators import Member, ValidatorSet
from ledger.engine.epochs import epoch_config
from ledger.node import persist
from ledger.node.epochs import route

KEYS = [PrivateKey(sha256(f"k{i}".encode())).public_key for i in range(5)]


def base_config() -> ReplicaConfig:
    return ReplicaConfig(
        chain_id="quorum-testnet",
        validators=tuple(KEYS),
        genesis_height=0,
        genesis_digest=bytes(32),
        block_digest=sha256,
    )


def test_the_switch_deletes_the_old_epochs_records_but_keeps_the_chain_of_sets() -> None:
    keys = ["hard", "signed/1/2/commit", f"{LINK_PREFIX}{1:020d}", "prepared/3"]
    records = persist.epoch_switch_records(keys, 2)
    assert records == {
        "hard": None,
        "prepared/3": None,
        "signed/1/2/commit": None,
        persist.EPOCH_KEY: b"2",
    }
    assert persist.records_epoch(list({persist.EPOCH_KEY: b"2"}.items())) == 2
    assert persist.records_epoch([]) == 0


def test_the_next_epochs_config_has_the_new_set_its_domain_and_anchor() -> None:
    base = base_config()
    survivors = tuple(Member(f"node{i}", KEYS[i]) for i in (0, 1, 2, 3))
    active = ValidatorSet(1, 8, survivors)
    config = epoch_config(base, "quorum-testnet", active, b"\x01" * 32, b"\x02" * 32)
    assert config.validators == tuple(KEYS[:4]) and config.n == 4 and config.quorum == 3
    assert config.chain_id == epoch_chain_id("quorum-testnet", 1)
    assert (config.genesis_height, config.genesis_digest) == (8, b"\x01" * 32)
    assert config.validator_names == ("node0", "node1", "node2", "node3")
    assert epoch_config(base, "quorum-testnet", ValidatorSet(0, 0, ()), b"", b"") is base


def test_messages_go_to_the_members_links_by_key() -> None:
    message = SignedMessage.__new__(SignedMessage)
    # node1 was removed: the epoch's index 1 is genesis validator 2, and so on.
    ids = (0, 2, 3, 4)
    routed = route([Outbound(None, message), Outbound(1, message), Outbound(0, message)], ids, 0)
    assert [peers for _, peers in routed] == [[2, 3, 4], [2]]
    assert route([Outbound(7, message)], ids, 0) == []
