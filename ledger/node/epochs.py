"""The node's side of validator-set epochs: which epoch's replica to run (and the engine
around it, built from the store), and where its messages go (docs/CONSENSUS.md §12,
ledger/engine/epochs.py).

Peer links are keyed by peer id (ledger/node/transport.py); a replica's message
names a recipient by its index in the epoch's set, so sends are mapped through the
members' public keys. The switch itself (clear the old epoch's records, build the next
replica, or retire: ledger/node/retire.py) runs in the consensus loop, after every output
of the old replica was acted on.

Never: decide anything about the set (it is executed state), or sign.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from consensus.config import ReplicaConfig
from consensus.messages import CommitProof
from consensus.ready import Outbound
from consensus.records import CommittedHead
from consensus.replica import Replica
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger import render
from ledger.chain.epoch_links import make_link
from ledger.chain.execute import ChainRules, ExecutedBlock
from ledger.chain.state_tree import StateTree
from ledger.chain.store import Store
from ledger.chain.types import BlockHeader, CommitCertificate
from ledger.chain.validators import ACTIVE_KEY, ValidatorSet, read_active
from ledger.config import NodeConfig
from ledger.engine.assemble import assemble_engine
from ledger.engine.engine import Engine
from ledger.engine.epochs import epoch_config
from ledger.engine.mempool import Mempool
from ledger.node import persist, wire
from ledger.node.logs import log_event
from ledger.node.membership import peer_id
from ledger.node.support import NotAMember

if TYPE_CHECKING:
    from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.node")


def active_set(store: Store, rules: ChainRules) -> ValidatorSet:
    """The set certifying the blocks after the store's head."""
    return read_active(store, rules.initial_set)


def config_at_head(store: Store, rules: ChainRules, base: ReplicaConfig) -> ReplicaConfig:
    """The config of the epoch the store's head belongs to (restart: the right epoch)."""
    active = active_set(store, rules)
    if active.epoch == 0:
        return base
    header = store.get_header(active.start_height)
    if header is None:  # installed from a snapshot after the switch: the link holds it
        header = next(
            (
                BlockHeader.decode(link.header)
                for link in store.epoch_links()
                if link.height == active.start_height
            ),
            None,
        )
    if header is None:
        raise NotAMember(
            f"the store does not hold block {active.start_height}, where epoch "
            f"{active.epoch} started; move the data directory aside to resynchronise"
        )
    return epoch_config(base, rules.chain_id, active, header.block_hash, header.state_root)


def restored_replica(
    store: Store,
    rules: ChainRules,
    key: PrivateKey,
    base: ReplicaConfig,
    records: list[tuple[str, bytes]],
    head: CommittedHead,
) -> Replica:
    """The replica of the epoch the store's head belongs to, from its consensus records."""
    config = config_at_head(store, rules, base)
    check_member(config, key.public_key, store.head_height)
    if head.height == config.genesis_height:
        head = CommittedHead(head.height, head.digest, None)  # the epoch's anchor
    return Replica.restore(config, key, persist.load_persisted(records), head)


def assemble(
    store: Store,
    genesis: Genesis,
    rules: ChainRules,
    key: PrivateKey,
    config: NodeConfig,
    tick_ms: int,
) -> tuple[Engine, set[str]]:
    """The engine (consensus core of the store head's epoch, an empty mempool, the
    executed-block tree) from the store, and the keys of the consensus records it holds:
    at start, and again after a state sync replaced the store's contents."""
    mempool = Mempool(max_txs=config.mempool_max_txs, max_bytes=config.mempool_max_bytes)
    items = store.consensus_meta_items()
    record_keys = {k for k, _ in items}
    certificate = (
        store.get_certificate(store.head_height)
        if store.head_height >= genesis.initial_height
        else None
    )
    head = CommittedHead(
        store.head_height,
        store.head_hash,
        None
        if certificate is None
        else CommitProof(
            certificate.view, certificate.height, certificate.block_hash, certificate.votes
        ),
    )
    if persist.records_epoch(items) != active_set(store, rules).epoch:
        items = []  # the old epoch's, left by a stop during the switch
    engine = assemble_engine(
        genesis,
        tip=store.tip(),
        genesis_state_root=store.genesis_state_root,
        mempool=mempool,
        replica=lambda base: restored_replica(store, rules, key, base, items, head),
        render_receipt=render.receipt_json,
        tick_ms=tick_ms,
    )
    return engine, record_keys


def link_record(executed: ExecutedBlock, certificate: CommitCertificate) -> dict[str, bytes]:
    """For a switch block, its epoch link (ledger/chain/epoch_links.py), to be written in
    the block's own transaction; else nothing."""
    raw = executed.overlay.writes.get(ACTIVE_KEY)
    if raw is None:
        return {}
    tree = StateTree.at(executed.state_root, executed.nodes)
    link = make_link(executed.block.header, certificate, raw, tree.prove)
    return {link.key(ValidatorSet.decode(raw).epoch): link.encode()}


def log_switch(config: ReplicaConfig, own_index: int, epoch: int) -> None:
    log_event(
        log, "epoch_switch", "epoch switch after block %d: %d validators (%s), this node is %s",
        config.genesis_height, config.n, ", ".join(config.validator_names),
        config.name(own_index), height=config.genesis_height, epoch=epoch,
        validators=list(config.validator_names),
    )  # fmt: skip


def check_member(config: ReplicaConfig, public_key: bytes, height: int) -> None:
    """Raise :class:`NotAMember` unless ``public_key`` is in the epoch's set."""
    if public_key not in config.validators:
        raise NotAMember(
            f"this validator's key is not in the validator set that took over after block "
            f"{config.genesis_height} (it was removed by the validators' votes); it no longer "
            f"takes part in consensus (the node's head is block {height})"
        )


def peer_ids(config: ReplicaConfig, genesis: Genesis) -> tuple[int | None, ...]:
    """The peer link (peer id, ledger/node/membership.py) of each member of the epoch's
    set, in set order."""
    return tuple(peer_id(genesis, key) for key in config.validators)


def route(
    messages: Sequence[Outbound], ids: Sequence[int | None], own_index: int
) -> list[tuple[Outbound, list[int]]]:
    """Each outbound message with the peer links it goes to (``to=None``: every other member)."""
    others = [i for i in ids if i is not None and i != own_index]
    routed: list[tuple[Outbound, list[int]]] = []
    for outbound in messages:
        if outbound.to is None:
            routed.append((outbound, others))
        elif 0 <= outbound.to < len(ids):
            peer = ids[outbound.to]
            if peer is not None and peer != own_index:
                routed.append((outbound, [peer]))
    return routed


def send_routed(
    net: PeerNetwork, messages: Sequence[Outbound], ids: Sequence[int | None], own_index: int
) -> None:
    """Queue each consensus message for its members' links (:func:`route`)."""
    for outbound, peers in route(messages, ids, own_index):
        payload = wire.frame(wire.Family.CONSENSUS, outbound.message.encode())
        for peer in peers:
            if net.knows(peer):
                net.send(peer, payload)
