"""The epoch rule: a validator-set change takes effect after a checkpoint block, and no
height is certifiable by two sets (docs/CONSENSUS.md §12).

PBFT's reconfiguration is left open by the paper (Castro & Liskov, TOCS 2002, §4.3
checkpoints are the stable points it offers; §4.2 and §4.4 are the normal case and view
change the rule must hold across). Here a block whose execution activates the next set
ends the epoch: the replica of that epoch validates, votes and proposes nothing above it,
and the driver starts the next epoch's replica with that block as its genesis.
"""

from __future__ import annotations

from consensus.certificates import verify_commit_proof
from consensus.config import ReplicaConfig, epoch_chain_id
from consensus.messages import Commit, Prepare, PrePrepare, sign
from consensus.ready import ProposalRequest, ValidateRequest
from consensus.replica import Replica
from crypto.hashing import sha256
from tests.consensus.pbft_harness import KEYS, Cluster, Node, make_config, make_payload

#: The checkpoint height at which the new set takes over (checkpoint_interval 4).
SWITCH = 4


class EpochNode(Node):
    """A harness node whose driver says which block ends the epoch and then switches."""

    epoch = 0
    view_at_switch = 0

    def _ends(self, height: int) -> bool:
        return self.epoch == 0 and height == SWITCH

    def validate(self, request: ValidateRequest) -> None:
        cluster = self.cluster
        if not cluster.auto_validate or self.index in cluster.stalled:
            return
        ok = request.digest not in cluster.invalid
        root = sha256(b"state" + request.digest)
        ready = self.replica.proposal_validated(
            request.view, request.height, request.digest, ok, root, self._ends(request.height)
        )
        self.handle(ready)
        self._maybe_switch()

    def build_proposal(self, request: ProposalRequest) -> None:
        cluster = self.cluster
        if request.height > cluster.config.genesis_height + cluster.budget:
            self.handle(self.replica.skip_proposal(request.view, request.height))
            return
        cluster.labels += 1
        payload = make_payload(request.height, request.parent_digest, b"b%d" % cluster.labels)
        digest = sha256(payload)
        ready = self.replica.propose(
            request.view,
            request.height,
            digest,
            request.parent_digest,
            payload,
            sha256(b"state" + digest),
            self._ends(request.height),
        )
        self.handle(ready)
        self._maybe_switch()

    def _maybe_switch(self) -> None:
        if self.epoch == 0 and self.replica.epoch_over and self.cluster.auto_switch:  # type: ignore[attr-defined]
            head = self.committed[-1]
            assert head.height == SWITCH and head.ends_epoch
            self.epoch = 1
            self.view_at_switch = self.replica.view
            self.disk.start_epoch()
            self.replica = Replica(epoch_config(head.digest), KEYS[self.index])
            self.handle(self.replica.start())


def epoch_config(switch_digest: bytes) -> ReplicaConfig:
    """Epoch 1: node4 added; its genesis is the block that ended epoch 0."""
    return make_config(
        5,
        chain_id=epoch_chain_id("pbft-test", 1),
        genesis_height=SWITCH,
        genesis_digest=switch_digest,
        genesis_state_root=sha256(b"state" + switch_digest),
    )


class EpochCluster(Cluster):
    """Four validators in epoch 0; node4 joins the set that takes over after SWITCH."""

    def __init__(self) -> None:
        super().__init__(4)
        self.auto_switch = True
        config0 = self.config
        self.nodes = [EpochNode(self, i, Replica(config0, KEYS[i])) for i in range(4)]
        self.node4 = EpochNode(self, 4, Replica(config0, KEYS[0]))  # replaced on join
        self.node4.up = False
        self.nodes.append(self.node4)
        for node in self.nodes[:4]:
            self.handle(node.index, node.replica.start())

    def handle(self, i: int, ready: object) -> None:
        node = self.nodes[i]
        node.handle(ready)  # type: ignore[arg-type]
        if isinstance(node, EpochNode):
            node._maybe_switch()

    def join_node4(self) -> None:
        """node4 starts at the switch block (what state sync or catch-up would give it)."""
        source = next(n for n in self.nodes[:4] if n.epoch == 1)
        self.node4.disk.blocks.extend(source.committed[:SWITCH])
        self.node4.epoch = 1
        self.node4.replica = Replica(epoch_config(source.committed[SWITCH - 1].digest), KEYS[4])
        self.node4.up = True
        self.handle(4, self.node4.replica.start())

    def run(self, rounds: int) -> None:
        for _ in range(rounds):
            self.deliver()
            for node in self.nodes:
                if node.up:
                    self.handle(node.index, node.replica.requests_pending(True, b"r"))
            self.tick()


def _votes_above(node: Node, epoch0_chain: str) -> list[int]:
    """Heights above SWITCH this node voted for under the epoch-0 domain."""
    heights = []
    for message in node.sent:
        if message.kind in ("pre-prepare", "prepare", "commit"):
            body = {"pre-prepare": PrePrepare, "prepare": Prepare, "commit": Commit}[message.kind]
            decoded = body.decode(message.body)
            if decoded.height > SWITCH and _signed_in(message, epoch0_chain):
                heights.append(decoded.height)
    return heights


def _signed_in(message: object, chain_id: str) -> bool:
    from crypto import keys

    m = message  # SignedMessage
    return keys.verify(KEYS[m.sender].public_key, chain_id, m.kind, m.body, m.signature)  # type: ignore[attr-defined]


def test_set_change_takes_effect_after_the_checkpoint_block_and_agrees() -> None:
    """§4.3 (checkpoints) + §4.2: the set switches after block SWITCH on every replica;
    blocks up to SWITCH carry certificates of the old set, blocks above of the new one
    (in the new epoch's signing domain), and the new member's COMMITs count."""
    cluster = EpochCluster()
    cluster.budget = 12
    cluster.run(4)
    assert all(n.epoch == 1 for n in cluster.nodes[:4])
    cluster.join_node4()
    cluster.run(6)
    cluster.crash(3)  # with node4 in, a stopped member no longer stops the chain
    before = len(cluster.chain(0))
    cluster.budget += 4
    cluster.run(12)
    chains = [cluster.chain(i) for i in range(5)]
    assert len(chains[0]) > before
    shortest = min(len(c) for c in chains)
    assert all(c[:shortest] == chains[0][:shortest] for c in chains)
    old, new = cluster.config, epoch_config(cluster.nodes[0].committed[SWITCH - 1].digest)
    for block in cluster.nodes[0].committed:
        config = old if block.height <= SWITCH else new
        verify_commit_proof(config, block.certificate())
        assert block.ends_epoch == (block.height == SWITCH)
    signers = {i for b in cluster.nodes[0].committed[before:] for i, _ in b.votes}
    assert 4 in signers, "the added validator signs certificates of the new epoch"


def test_no_height_above_the_switch_is_voted_in_the_old_epoch() -> None:
    """§4.2 with pipelining: the old set never pre-prepares, prepares or commits a height
    above the block that ends its epoch, so no height is certifiable by two sets."""
    cluster = EpochCluster()
    cluster.budget = 10
    cluster.run(6)
    for node in cluster.nodes[:4]:
        assert _votes_above(node, "pbft-test") == []


def test_a_byzantine_old_primary_cannot_get_a_block_above_the_switch_prepared() -> None:
    """§4.2: a PRE-PREPARE of the old epoch for SWITCH+1 (from its primary, correctly
    signed) is neither validated nor prepared by an honest replica whose head ended the
    epoch, even while its driver has not yet switched."""
    cluster = EpochCluster()
    cluster.auto_switch = False
    cluster.budget = 10
    cluster.run(6)
    backup = cluster.nodes[1]
    assert backup.replica.epoch_over and backup.replica.committed_height == SWITCH
    switch = backup.committed[SWITCH - 1]
    payload = make_payload(SWITCH + 1, switch.digest, b"late")
    header = PrePrepare(backup.replica.view, SWITCH + 1, sha256(payload), switch.digest)
    primary = cluster.config.primary(header.view)
    forged = sign(KEYS[primary], "pbft-test", primary, header, payload)
    ready = backup.replica.receive(forged.encode())
    assert not ready.validate
    assert not any(m.message.kind == "prepare" for m in ready.messages)
    for node in cluster.nodes[:4]:
        assert _votes_above(node, "pbft-test") == []


def test_a_change_completed_during_a_view_change_still_switches_together() -> None:
    """§4.4: the primary of epoch 0 goes silent while the switch block is in flight; the
    view change carries the prepared switch block into view 1, and every replica still
    switches after it and agrees."""
    cluster = EpochCluster()
    cluster.budget = 10

    # Deliver everything except node0's messages once height SWITCH is pre-prepared.
    def silence_primary(frm: int, to: int, message: object) -> bool:
        del to
        m = message
        if frm != 0 or m.kind not in ("pre-prepare", "prepare", "commit"):  # type: ignore[attr-defined]
            return False
        body = {"pre-prepare": PrePrepare, "prepare": Prepare, "commit": Commit}[m.kind]  # type: ignore[attr-defined]
        return body.decode(m.body).height >= SWITCH - 1  # type: ignore[attr-defined]

    cluster.drop = silence_primary
    for _ in range(80):
        cluster.run(1)
        if all(n.epoch == 1 for n in cluster.nodes[1:4]):
            break
    assert all(n.epoch == 1 for n in cluster.nodes[1:4])
    assert all(n.view_at_switch >= 1 for n in cluster.nodes[1:4]), "a view change happened"
    chains = [cluster.chain(i) for i in range(4)]
    shortest = min(len(c) for c in chains)
    assert all(c[:shortest] == chains[1][:shortest] for c in chains)
    cluster.drop = lambda frm, to, message: False
    cluster.join_node4()
    cluster.run(20)
    chains = [cluster.chain(i) for i in range(5)]
    shortest = min(len(c) for c in chains)
    assert shortest > SWITCH
    assert all(c[:shortest] == chains[1][:shortest] for c in chains)
    assert _votes_above(cluster.nodes[0], "pbft-test") == []
