"""Garbage collection (OSDI'99 §4.3), the double-sign guard across restarts, and
catch-up of lagging replicas with certified blocks (TOCS 2002 §5.3 state transfer)."""

from __future__ import annotations

from pbft_harness import KEYS, Cluster, make_payload

from consensus.messages import CommitProof, Kind, Prepare, PrePrepare, decode_body, sign
from consensus.records import Phase
from consensus.replica import Replica
from crypto.hashing import sha256


def test_4_3_checkpoints_become_stable_with_a_quorum_and_the_log_is_collected() -> None:
    """§4.3: every K requests a replica multicasts CHECKPOINT; 2f+1 matching ones make it
    stable, the low watermark advances and log entries at or below it are discarded."""
    cluster = Cluster(4, checkpoint_interval=4, watermark_window=8, max_pipeline=2)
    cluster.submit(9)
    cluster.deliver()
    assert cluster.heights() == [9, 9, 9, 9]
    for node in cluster.nodes:
        replica = node.replica
        assert replica.stable.height == 8
        assert len(replica.stable.messages) == cluster.config.quorum
        assert all(h > 8 for h in replica.slots)
        assert all(s.height == 0 or s.height > 8 for s in replica.signed.values())
        assert node.disk.hard_state is not None and node.disk.hard_state.checkpoint.height == 8
    checkpoints = [decode_body(m) for m in cluster.nodes[1].sent if m.kind == Kind.CHECKPOINT]
    assert [c.height for c in checkpoints] == [4, 8]  # type: ignore[union-attr]
    # The window moved: height 8 is below it, 16 inside it, 17 above it.
    target = cluster.nodes[2].replica
    for height, reason in ((8, "below_watermark"), (17, "above_watermark")):
        target.receive(
            sign(KEYS[1], cluster.config.chain_id, 1, Prepare(0, height, b"\x01" * 32)).encode()
        )
        assert target.statistics()[f"rejected.{reason}"] == 1


def test_4_3_primary_stops_at_the_high_watermark() -> None:
    """Sequence numbers above h + L are not assigned until a checkpoint moves h."""
    cluster = Cluster(4, checkpoint_interval=4, watermark_window=8, max_pipeline=8)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.CHECKPOINT
    cluster.submit(12)
    cluster.deliver()
    assert cluster.heights() == [8, 8, 8, 8]
    cluster.drop = lambda frm, to, msg: False
    cluster.tick(2 * cluster.config.retransmit_ticks + 1)  # checkpoints are retransmitted
    assert cluster.heights() == [12, 12, 12, 12]


def test_double_sign_guard_survives_a_restart() -> None:
    """A replica that prepared A at (view 0, height 1), crashed and restarted from its
    persisted state never prepares B for the same slot, whatever the primary sends."""
    cluster = Cluster(4)
    chain, genesis = cluster.config.chain_id, cluster.config.genesis_digest
    cluster.drop = lambda frm, to, msg: to != 2 or msg.kind != Kind.PRE_PREPARE
    cluster.submit(1)
    cluster.deliver()
    node = cluster.nodes[2]
    first = [decode_body(m) for m in node.sent if m.kind == Kind.PREPARE]
    assert len(first) == 1
    cluster.crash(2)
    cluster.restart(2)
    b = make_payload(1, genesis, b"B")
    pp_b = sign(KEYS[0], chain, 0, PrePrepare(0, 1, sha256(b), genesis), b)
    cluster.handle(2, node.replica.receive(pp_b.encode()))
    prepares = [decode_body(m) for m in node.sent if m.kind == Kind.PREPARE]
    assert {p.digest for p in prepares} == {first[0].digest}  # type: ignore[union-attr]
    # Without its persisted records the same replica WOULD sign B: the guard is what stops it.
    amnesiac = Replica(cluster.config, KEYS[2])
    amnesiac.receive(pp_b.encode())
    ready = amnesiac.proposal_validated(0, 1, sha256(b), True, sha256(b"s"))
    assert [m.message.kind for m in ready.messages] == [Kind.PREPARE]


def test_double_sign_guard_refuses_a_conflicting_signature() -> None:
    cluster = Cluster(4)
    replica = cluster.nodes[1].replica
    a = replica.sign_slot(0, 1, Phase.PREPARE, b"\x01" * 32, Prepare(0, 1, b"\x01" * 32))
    again = replica.sign_slot(0, 1, Phase.PREPARE, b"\x01" * 32, Prepare(0, 1, b"\x01" * 32))
    other = replica.sign_slot(0, 1, Phase.PREPARE, b"\x02" * 32, Prepare(0, 1, b"\x02" * 32))
    assert a is not None and again == a and other is None
    assert replica.statistics()["guard.refused_conflicting_signature"] == 1


def test_restarted_replica_keeps_committing_without_equivocating() -> None:
    cluster = Cluster(4, checkpoint_interval=4, watermark_window=8)
    cluster.submit(3)
    cluster.deliver()
    for i in range(4):
        cluster.crash(i)
        cluster.restart(i)
    cluster.submit(3)
    cluster.tick(cluster.config.retransmit_ticks + 1)
    assert cluster.heights() == [6, 6, 6, 6]
    assert len({tuple(cluster.chain(i)) for i in range(4)}) == 1


def test_lagging_replica_learns_it_is_behind_and_fetches_certified_blocks() -> None:
    cluster = Cluster(4, checkpoint_interval=4, watermark_window=8)
    cluster.drop = lambda frm, to, msg: 3 in (frm, to)
    cluster.submit(10)
    cluster.deliver()
    assert cluster.heights() == [10, 10, 10, 0]
    cluster.drop = lambda frm, to, msg: False
    cluster.tick(cluster.config.status_ticks + 1)
    laggard = cluster.nodes[3]
    assert any(r.fetch is not None for r in laggard.readies)
    assert laggard.replica.committed_height == 10
    assert cluster.chain(3) == cluster.chain(0)
    # And it takes part again.
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [11, 11, 11, 11]


def test_catch_up_rejects_a_bad_certificate_or_a_broken_chain() -> None:
    cluster = Cluster(4)
    cluster.submit(2)
    cluster.deliver()
    good = cluster.nodes[0].committed
    fresh = Replica(cluster.config, KEYS[3])
    b1 = good[0]
    cert = b1.certificate()
    cases = {
        "too_few_votes": CommitProof(cert.view, cert.height, cert.digest, cert.votes[:2]),
        "bad_signature": CommitProof(
            cert.view, cert.height, cert.digest, ((cert.votes[0][0], bytes(64)), *cert.votes[1:])
        ),
        "duplicate_signer": CommitProof(
            cert.view, cert.height, cert.digest, (cert.votes[0], cert.votes[0], cert.votes[1])
        ),
        "other_view": CommitProof(cert.view + 1, cert.height, cert.digest, cert.votes),
    }
    for proof in cases.values():
        ready = fresh.committed_block_from_peer(
            b1.height, b1.digest, b1.parent_digest, b1.payload, proof
        )
        assert not ready.committed and not ready.validate
    assert fresh.statistics()["rejected.bad_commit_certificate"] == len(cases)
    # A payload that does not hash to the certified digest.
    fresh.committed_block_from_peer(b1.height, b1.digest, b1.parent_digest, b1.payload + b"x", cert)
    assert fresh.statistics()["rejected.catchup_bad_payload"] == 1
    # Height 2 before height 1 waits; a wrong parent is dropped when its turn comes.
    b2 = good[1]
    fresh.committed_block_from_peer(
        b2.height, b2.digest, b"\x09" * 32, b2.payload, b2.certificate()
    )
    ready = fresh.committed_block_from_peer(
        b1.height, b1.digest, b1.parent_digest, b1.payload, cert
    )
    assert [v.height for v in ready.validate] == [1]
    ready = fresh.proposal_validated(0, 1, b1.digest, True, sha256(b"state" + b1.digest))
    assert [b.height for b in ready.committed] == [1]
    assert fresh.statistics()["catchup.bad_parent"] == 1
    assert fresh.committed_height == 1
