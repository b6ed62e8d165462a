"""The NEW-VIEW selection rule (docs/CONSENSUS.md §5), PBFT OSDI'99 §4.4 adapted to
hash-chained blocks: the highest stable checkpoint, the highest certified commit as the
base, then per height the highest-view prepared certificate, kept while it chains."""

from __future__ import annotations

from pbft_harness import KEYS, Cluster, make_config

from consensus.certificates import genesis_checkpoint
from consensus.messages import (
    CommitProof,
    Kind,
    NewView,
    Prepare,
    PreparedProof,
    PrePrepare,
    ViewChange,
    sign,
)
from consensus.viewchange import select_new_view
from crypto.hashing import sha256

CONFIG = make_config(4)
GENESIS = CONFIG.genesis_digest


def _digest(label: str) -> bytes:
    return sha256(label.encode())


def _prepared(view: int, height: int, digest: bytes, parent: bytes) -> PreparedProof:
    primary = CONFIG.primary(view)
    header = PrePrepare(view, height, digest, parent)
    pp = sign(KEYS[primary], CONFIG.chain_id, primary, header)
    backups = [i for i in range(CONFIG.n) if i != primary][: CONFIG.quorum - 1]
    prepares = tuple(
        sign(KEYS[i], CONFIG.chain_id, i, Prepare(view, height, digest)) for i in backups
    )
    return PreparedProof.of(pp, prepares)


def _vc(
    new_view: int, *prepared: PreparedProof, committed: CommitProof | None = None
) -> ViewChange:
    return ViewChange(new_view, genesis_checkpoint(CONFIG), committed, tuple(prepared))


def _select(*vcs: ViewChange) -> list[tuple[int, bytes]]:
    plan = select_new_view(CONFIG, 5, list(vcs))
    assert all(h.view == 5 for h in plan.reissue)
    return [(h.height, h.digest) for h in plan.reissue]


A, B, C, X = _digest("a"), _digest("b"), _digest("c"), _digest("x")


def test_a_chain_of_prepared_blocks_is_reissued_with_the_same_digests() -> None:
    chain = (_prepared(0, 1, A, GENESIS), _prepared(0, 2, B, A), _prepared(0, 3, C, B))
    assert _select(_vc(5, *chain), _vc(5), _vc(5)) == [(1, A), (2, B), (3, C)]


def test_everything_above_a_gap_is_dropped() -> None:
    vcs = (_vc(5, _prepared(0, 1, A, GENESIS), _prepared(0, 3, C, B)), _vc(5), _vc(5))
    assert _select(*vcs) == [(1, A)]


def test_everything_above_a_break_in_the_chain_is_dropped() -> None:
    vcs = (
        _vc(5, _prepared(0, 1, A, GENESIS), _prepared(0, 2, B, X), _prepared(0, 3, C, B)),
        _vc(5),
        _vc(5),
    )
    assert _select(*vcs) == [(1, A)]


def test_the_highest_view_certificate_wins_at_each_height() -> None:
    old = _vc(5, _prepared(0, 1, A, GENESIS), _prepared(0, 2, B, A))
    new = _vc(5, _prepared(2, 1, X, GENESIS))
    # X (view 2) wins at height 1; B does not extend X, so height 2 is dropped.
    assert _select(old, new, _vc(5)) == [(1, X)]


def test_a_commit_certificate_moves_the_base_and_a_gap_below_it_is_not_reissued() -> None:
    committed = CommitProof(0, 2, B, ((0, bytes(64)), (1, bytes(64)), (2, bytes(64))))
    vcs = (
        _vc(5, _prepared(0, 2, B, A)),
        _vc(5, _prepared(0, 3, C, B), committed=committed),
        _vc(5),
    )
    plan = select_new_view(CONFIG, 5, list(vcs))
    assert (plan.base_height, plan.base_digest) == (2, B)
    assert [(h.height, h.digest, h.parent_digest) for h in plan.reissue] == [(3, C, B)]
    assert plan.view_base == 2


def test_blocks_below_a_certified_base_are_recertified_when_their_chain_reaches_it() -> None:
    """PBFT §4.4 re-issues everything above the stable checkpoint. Here a commit
    certificate (perhaps shown only by a Byzantine replica that will not serve the blocks)
    moves the base to 2; replicas hold prepared certificates for 1 and 2 that chain from the
    checkpoint to the base digest, so both are re-issued and can be certified again."""
    committed = CommitProof(0, 2, B, ((0, bytes(64)), (1, bytes(64)), (2, bytes(64))))
    vcs = (
        _vc(5, _prepared(0, 1, A, GENESIS), _prepared(0, 2, B, A)),
        _vc(5, _prepared(0, 3, C, B), committed=committed),
        _vc(5),
    )
    plan = select_new_view(CONFIG, 5, list(vcs))
    assert (plan.base_height, plan.base_digest) == (2, B)
    assert [(h.height, h.digest, h.parent_digest) for h in plan.reissue] == [
        (1, A, GENESIS),
        (2, B, A),
        (3, C, B),
    ]
    assert all(h.view == 5 for h in plan.reissue) and plan.view_base == 0


def test_a_prepared_chain_below_the_base_that_does_not_end_at_it_is_not_reissued() -> None:
    committed = CommitProof(0, 2, B, ((0, bytes(64)), (1, bytes(64)), (2, bytes(64))))
    vcs = (
        _vc(5, _prepared(0, 1, A, GENESIS), _prepared(0, 2, X, A)),
        _vc(5, committed=committed),
        _vc(5),
    )
    plan = select_new_view(CONFIG, 5, list(vcs))
    assert plan.reissue == () and plan.view_base == 2


def test_recertification_starts_at_the_lowest_certified_anchor_its_chain_reaches() -> None:
    """Replicas that committed height 1 carry no prepared certificate for it; the chain of
    prepared certificates 2..3 reaches their commit certificate at 1, so 2 and 3 are
    re-issued and the view's own base is 1."""
    votes = ((0, bytes(64)), (1, bytes(64)), (2, bytes(64)))
    vcs = (
        _vc(5, committed=CommitProof(0, 1, A, votes)),
        _vc(5, committed=CommitProof(0, 3, C, votes)),
        _vc(5, _prepared(0, 2, B, A), _prepared(0, 3, C, B)),
    )
    plan = select_new_view(CONFIG, 5, list(vcs))
    assert (plan.base_height, plan.base_digest) == (3, C)
    assert [(h.height, h.digest) for h in plan.reissue] == [(2, B), (3, C)]
    assert plan.view_base == 1


def test_a_new_primary_behind_the_base_fetches_it_and_never_reproposes_it_otherwise() -> None:
    """The bug the simulator found: replica 2 committed height 1 in view 0 and its
    VIEW-CHANGE carries the certificate; the new primary (1) had not committed it. In view 1
    height 1 is only re-issued with the certified digest (re-certification, PBFT §4.4),
    the primary also fetches it, and a different block there is refused."""
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT and to != 2
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [0, 0, 1, 0]
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT  # no commit reaches anyone now
    cluster.crash(0)
    cluster.tick(cluster.config.view_change_timeout(0) + 1, only=[1, 2, 3])
    primary = cluster.nodes[1].replica
    assert primary.view == 1 and primary.active
    # The new primary fetched block 1 (from replica 2) rather than proposing anew there.
    assert cluster.chain(1) == cluster.chain(2)
    certified = cluster.chain(2)[0]
    for message in cluster.nodes[1].sent:
        if message.kind == Kind.PRE_PREPARE:
            header = PrePrepare.decode(message.body)
            assert header.height > 1 or header.digest == certified
    # Another block at height 1 in view 1 is refused.
    payload = b"whatever"
    forged = sign(
        KEYS[1], cluster.config.chain_id, 1, PrePrepare(1, 1, sha256(payload), GENESIS), payload
    )
    target = cluster.nodes[3].replica
    before = sum(v for k, v in target.statistics().items() if k.startswith("rejected."))
    target.receive(forged.encode())
    after = sum(v for k, v in target.statistics().items() if k.startswith("rejected."))
    assert after == before + 1 or target.statistics().get("duplicate.pre-prepare", 0) >= 1
    assert all(s.digest != sha256(payload) for s in target.log.slots.values())


def test_a_verdict_for_a_view_the_replica_left_is_ignored() -> None:
    cluster = Cluster(4, auto_validate=False)
    cluster.submit(1)
    cluster.deliver()
    backup = cluster.nodes[2]
    request = next(r.validate[0] for r in backup.readies if r.validate)
    ready = backup.replica.proposal_validated(
        request.view + 1, request.height, request.digest, False, None
    )
    assert ready.is_empty()
    assert backup.replica.statistics()["stale_verdict"] == 1
    assert backup.replica.verdicts == {}


def test_live_execution_results_stay_closed_under_ancestors() -> None:
    """A stable checkpoint above our own head does not drop the validated chain we still
    have to commit: a driver layers each result on its parent's."""
    cluster = Cluster(4, checkpoint_interval=2, watermark_window=4, max_pipeline=3)
    # Replica 3 validates and prepares 1..3 but sees no COMMITs; the others commit.
    cluster.drop = lambda frm, to, msg: to == 3 and msg.kind == Kind.COMMIT
    cluster.serve_fetches = False
    cluster.submit(3)
    cluster.deliver()
    laggard = cluster.nodes[3].replica
    assert laggard.committed_height == 0 and laggard.stable.height == 2
    live = laggard.live_blocks()
    assert [h for h, _ in live] == [1, 2, 3]
    for height, digest in live:
        verdict = laggard.verdicts[(height, digest)]
        parent_ok = (
            laggard.normal.committed_digest_at(height - 1) == verdict.parent
            or (height - 1, verdict.parent) in live
        )
        assert parent_ok


def test_a_base_committed_only_at_a_byzantine_replica_is_committed_from_the_new_view() -> None:
    """The simulator's seed 1721: replica 0 gathered everyone's COMMITs for height 1 and
    kept its own, so only it committed; its VIEW-CHANGE puts the base at 1, then it serves
    nothing. The others hold the block (their prepared certificate and its payload) and
    the certificate (inside the NEW-VIEW), so they commit it without any fetch."""
    cluster = Cluster(4)
    cluster.serve_fetches = False
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT and to != 0
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [1, 0, 0, 0]
    # From now on replica 0 only sends its VIEW-CHANGE (and no COMMIT reaches anyone).
    cluster.drop = lambda frm, to, msg: (
        msg.kind == Kind.COMMIT or (frm == 0 and msg.kind != Kind.VIEW_CHANGE)
    )
    cluster.tick(cluster.config.view_change_timeout(0) + 2)
    new_view = next(m for m in cluster.nodes[1].sent if m.kind == Kind.NEW_VIEW)
    assert [m.sender for m in NewView.decode(new_view.body).view_changes] == [0, 1, 2]
    assert cluster.heights()[1:] == [1, 1, 1]
    assert cluster.chain(1) == cluster.chain(2) == cluster.chain(3) == cluster.chain(0)
