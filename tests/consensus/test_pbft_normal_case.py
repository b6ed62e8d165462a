"""Normal-case operation, Castro & Liskov OSDI'99 §4.2 (TOCS 2002 §4.2), with the
chaining and pipeline rules of docs/CONSENSUS.md."""

from __future__ import annotations

from pbft_harness import CHAIN_ID, Cluster, parse_payload

from consensus.messages import Kind, PrePrepare, SignedMessage, decode_body
from ledger.chain.types import CommitCertificate


def test_4_2_request_is_committed_with_a_certificate_verifiable_by_the_ledger() -> None:
    """§4.2: pre-prepare, prepare and commit phases; committed-local once q COMMITs are in.
    The q COMMIT signatures are a commit certificate in the chain's own format."""
    cluster = Cluster(4)
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [1, 1, 1, 1]
    digests = {cluster.chain(i)[0] for i in range(4)}
    assert len(digests) == 1
    for node in cluster.nodes:
        block = node.committed[0]
        certificate = CommitCertificate.assemble(
            block.view, block.height, block.digest, dict(block.votes)
        )
        certificate.verify(CHAIN_ID, cluster.config.validators)
        assert len(block.votes) >= cluster.config.quorum


def test_4_2_blocks_commit_in_height_order_and_chain_on_their_parents() -> None:
    cluster = Cluster(4, max_pipeline=3)
    cluster.submit(7)
    cluster.deliver()
    assert cluster.heights() == [7, 7, 7, 7]
    for node in cluster.nodes:
        parent = cluster.config.genesis_digest
        for height, block in enumerate(node.committed, start=1):
            assert block.height == height and block.parent_digest == parent
            assert parse_payload(block.payload)[1] == parent
            parent = block.digest
    assert cluster.chain(0) == cluster.chain(3)


def test_pipeline_primary_keeps_at_most_max_pipeline_heights_in_flight() -> None:
    cluster = Cluster(4, max_pipeline=2)
    # Hold every message so nothing commits: the primary may only propose 2 heights.
    cluster.drop = lambda frm, to, msg: True
    cluster.submit(5)
    primary = cluster.nodes[0]
    proposed = [m for m in primary.sent if m.kind == Kind.PRE_PREPARE]
    assert [decode_body(m).height for m in proposed] == [1, 2]  # type: ignore[union-attr]


def test_4_2_no_empty_blocks_without_pending_requests() -> None:
    cluster = Cluster(4)
    cluster.tick(30)
    assert cluster.heights() == [0, 0, 0, 0]
    assert not [m for m in cluster.nodes[0].sent if m.kind == Kind.PRE_PREPARE]


def test_4_2_backups_prepare_only_after_the_driver_validated_the_block() -> None:
    cluster = Cluster(4, auto_validate=False)
    cluster.submit(1)
    cluster.deliver()
    backup = cluster.nodes[1]
    assert not [m for m in backup.sent if m.kind == Kind.PREPARE]
    request = backup.readies[-1].validate or next(
        r.validate for r in reversed(backup.readies) if r.validate
    )
    assert request[0].height == 1
    # An invalid verdict: the backup never prepares that block.
    cluster.handle(1, backup.replica.proposal_validated(0, 1, request[0].digest, False, None))
    assert not [m for m in backup.sent if m.kind == Kind.PREPARE]
    assert backup.replica.statistics()["invalid_proposal"] == 1


def test_a_replica_that_finds_a_certified_block_invalid_halts() -> None:
    """With at most f Byzantine replicas a block certified by q COMMITs is valid (§4.2: at
    least f+1 honest replicas validated it), so an honest replica that cannot validate it
    has a damaged state of its own: the core tells its driver to stop (Ready.halt)."""
    cluster = Cluster(4)
    cluster.diverged.add(3)
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [1, 1, 1, 0]
    halts = [r.halt for r in cluster.nodes[3].readies if r.halt is not None]
    assert len(halts) == 1 and "certified by a quorum" in halts[0]
    assert all(r.halt is None for n in cluster.nodes[:3] for r in n.readies)


def test_a_replica_that_cannot_execute_a_fetched_certified_block_halts() -> None:
    """The same through catch-up: a certified block fetched from a peer (§4.4's state
    transfer, done by blocks here) that does not validate locally halts the replica."""
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: to == 3 or frm == 3
    cluster.submit(2)
    cluster.deliver()
    assert cluster.heights() == [2, 2, 2, 0]
    cluster.diverged.add(3)
    cluster.serve_fetch(3, 1, 2)
    assert [r.halt for r in cluster.nodes[3].readies if r.halt is not None]
    assert cluster.heights()[3] == 0


def test_commit_rule_a_child_is_committed_to_while_its_parent_collects_commits() -> None:
    """Rule 5 (docs/CONSENSUS.md §3, PBFT §4.2's commit phase with chaining): a replica
    sends COMMIT for h once h is prepared and h-1 is prepared (or committed) here with the
    digest h names, so h's commit round overlaps h-1's. Commits still come out in order:
    nothing commits while height 1's COMMITs are held, then both commit."""
    cluster = Cluster(4, max_pipeline=2)
    held: list[tuple[int, int]] = []

    def hold_height_one_commits(frm: int, to: int, msg: SignedMessage) -> bool:
        if msg.kind == Kind.COMMIT and decode_body(msg).height == 1:  # type: ignore[union-attr]
            held.append((frm, to))
            return True
        return False

    cluster.drop = hold_height_one_commits
    cluster.submit(2)
    cluster.deliver()
    assert held and cluster.heights() == [0, 0, 0, 0]
    for node in cluster.nodes:
        commits = [decode_body(m) for m in node.sent if m.kind == Kind.COMMIT]
        assert sorted(c.height for c in commits) == [1, 2]  # type: ignore[union-attr]
    cluster.drop = lambda frm, to, msg: False
    for node in cluster.nodes:  # resend height 1's COMMITs (a retransmission)
        for message in node.sent:
            if message.kind == Kind.COMMIT and decode_body(message).height == 1:  # type: ignore[union-attr]
                for j in range(4):
                    if j != node.index:
                        cluster.queue.append((node.index, j, message))
    cluster.deliver()
    assert cluster.heights() == [2, 2, 2, 2]


def test_chaining_rule_prepare_waits_for_the_parent_to_be_prepared() -> None:
    """A replica sends PREPARE for h only once h-1 is prepared (or committed) with the
    digest h names as its parent."""
    cluster = Cluster(4, max_pipeline=2)
    # Replica 3 sees no PREPAREs for height 1 from anyone: it cannot prepare height 1.
    cluster.drop = lambda frm, to, msg: to == 3 and msg.kind in (Kind.PREPARE, Kind.COMMIT)
    cluster.submit(2)
    cluster.deliver()
    sent = [decode_body(m) for m in cluster.nodes[3].sent if m.kind == Kind.PREPARE]
    # Height 1's parent is genesis (committed), so it prepared 1; height 2's parent
    # (height 1) never became prepared at replica 3, so no PREPARE for 2.
    assert [p.height for p in sent] == [1]  # type: ignore[union-attr]
    assert cluster.heights()[:3] == [2, 2, 2]


def test_status_names_the_missing_quorum() -> None:
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT and frm in (2, 3)
    cluster.submit(1)
    cluster.deliver()
    status = cluster.nodes[1].replica.status()
    assert status.view == 0 and status.primary == 0 and status.committed_height == 0
    assert status.in_flight == (1,)
    assert status.waiting_for == "height 1: prepared, have 2/3 commits, missing from node2,node3"


def test_pre_prepare_header_is_what_is_signed() -> None:
    cluster = Cluster(4)
    cluster.submit(1)
    pp = next(m for m in cluster.nodes[0].sent if m.kind == Kind.PRE_PREPARE)
    header = decode_body(pp)
    assert isinstance(header, PrePrepare) and header.height == 1 and pp.payload
