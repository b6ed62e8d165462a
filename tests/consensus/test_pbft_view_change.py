"""View changes, Castro & Liskov OSDI'99 §4.4 (TOCS 2002 §4.4-4.5), with the selection
rule of docs/CONSENSUS.md ("View change")."""

from __future__ import annotations

from pbft_harness import KEYS, Cluster

from consensus.messages import (
    Kind,
    NewView,
    PrePrepare,
    SignedMessage,
    ViewChange,
    decode_body,
    sign,
)
from consensus.viewchange import select_new_view


def _timeout_ticks(cluster: Cluster, consecutive: int = 0) -> int:
    return cluster.config.view_change_timeout(consecutive)


def test_4_4_backups_change_view_when_the_primary_is_silent() -> None:
    """§4.4: a backup whose timer expires multicasts VIEW-CHANGE for v+1; the primary of
    v+1 sends NEW-VIEW after 2f+1 of them; the request then commits in view 1."""
    cluster = Cluster(4)
    cluster.crash(0)
    cluster.submit(1)
    cluster.tick(_timeout_ticks(cluster) + 2)
    for node in cluster.nodes[1:]:
        assert node.replica.view == 1 and node.replica.active
    assert cluster.heights()[1:] == [1, 1, 1]
    assert cluster.nodes[1].replica.statistics()["new_view.sent"] == 1


def test_4_4_block_prepared_in_the_first_slot_survives_when_the_primary_fails() -> None:
    """§4.4 safety: a block committed at one replica (prepared at a quorum) when the
    primary fails is re-proposed with the same digest in the new view."""
    cluster = Cluster(4)
    # COMMITs only reach replica 1: it commits, nobody else does.
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT and to != 1
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [0, 1, 0, 0]
    committed = cluster.chain(1)[0]
    cluster.drop = lambda frm, to, msg: False
    cluster.crash(0)
    # Replicas 2 and 3 fetch the committed block first; that commit is progress and
    # restarts their timers (§4.4: the timer restarts when a request executes).
    cluster.tick(2 * _timeout_ticks(cluster) + 2)
    assert cluster.heights()[1:] == [1, 1, 1]
    assert {cluster.chain(i)[0] for i in (1, 2, 3)} == {committed}
    assert all(n.replica.view == 1 for n in cluster.nodes[1:])


def test_4_4_prepared_block_survives_even_if_nobody_committed_it() -> None:
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT
    cluster.submit(1)
    cluster.deliver()
    prepared = {n.replica.slots[1].digest for n in cluster.nodes if n.replica.slots[1].prepared}
    assert len(prepared) == 1
    cluster.drop = lambda frm, to, msg: False
    cluster.crash(0)
    cluster.tick(_timeout_ticks(cluster) + 2)
    assert cluster.heights()[1:] == [1, 1, 1]
    assert cluster.chain(2)[0] in prepared


def _view_changes_for(cluster: Cluster, view: int, senders: list[int]) -> list[SignedMessage]:
    found: dict[int, SignedMessage] = {}
    for i in senders:
        for message in cluster.nodes[i].sent:
            if message.kind == Kind.VIEW_CHANGE and decode_body(message).new_view == view:  # type: ignore[union-attr]
                found[i] = message
    return [found[i] for i in sorted(found)]


def test_4_4_new_view_with_a_wrong_selection_is_rejected() -> None:
    """Every replica recomputes the re-issued PRE-PREPAREs from the embedded VIEW-CHANGEs and
    rejects a NEW-VIEW that drops a prepared block or changes its digest."""
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.COMMIT
    cluster.submit(1)
    cluster.deliver()
    # Everyone times out; keep NEW-VIEW from leaving the new primary so we can forge one.
    cluster.drop = lambda frm, to, msg: msg.kind in (Kind.NEW_VIEW, Kind.COMMIT)
    cluster.crash(0)
    cluster.tick(_timeout_ticks(cluster) + 1, only=[1, 2, 3])
    vcs = _view_changes_for(cluster, 1, [1, 2, 3])
    assert len(vcs) == 3
    plan = select_new_view(cluster.config, 1, [ViewChange.decode(m.body) for m in vcs])
    assert len(plan.reissue) == 1
    key = KEYS[1]
    # 1) the prepared block left out
    forged = sign(key, cluster.config.chain_id, 1, NewView(1, tuple(vcs), ()))
    # 2) the prepared block replaced by another digest
    other = PrePrepare(1, 1, b"\x07" * 32, plan.reissue[0].parent_digest)
    pp = sign(key, cluster.config.chain_id, 1, other)
    forged2 = sign(key, cluster.config.chain_id, 1, NewView(1, tuple(vcs), (pp,)))
    target = cluster.nodes[2].replica
    before = (target.view, target.active, dict(target.signed))
    for message in (forged, forged2):
        cluster.handle(2, target.receive(message.encode()))
    assert target.statistics()["rejected.new_view_mismatch"] == 2
    assert (target.view, target.active, dict(target.signed)) == before
    # The honest NEW-VIEW is accepted.
    cluster.drop = lambda frm, to, msg: False
    honest = next(m for m in cluster.nodes[1].sent if m.kind == Kind.NEW_VIEW)
    cluster.handle(2, target.receive(honest.encode()))
    assert target.view == 1 and target.active


def test_4_4_new_view_from_a_non_primary_or_with_too_few_view_changes_is_rejected() -> None:
    cluster = Cluster(4)
    cluster.crash(0)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.NEW_VIEW
    cluster.submit(1)
    cluster.tick(_timeout_ticks(cluster) + 1, only=[1, 2, 3])
    vcs = _view_changes_for(cluster, 1, [1, 2, 3])
    target = cluster.nodes[3].replica
    not_primary = sign(KEYS[2], cluster.config.chain_id, 2, NewView(1, tuple(vcs), ()))
    too_few = sign(KEYS[1], cluster.config.chain_id, 1, NewView(1, tuple(vcs[:2]), ()))
    cluster.handle(3, target.receive(not_primary.encode()))
    cluster.handle(3, target.receive(too_few.encode()))
    stats = target.statistics()
    assert stats["rejected.new_view_not_from_primary"] == 1
    assert stats["rejected.bad_new_view"] == 1
    assert not target.active


def test_4_5_2_a_replica_joins_a_higher_view_on_f_plus_1_view_changes() -> None:
    """TOCS §4.5.2: f+1 VIEW-CHANGEs for views above its own make a replica change view
    even before its own timer expires."""
    cluster = Cluster(4)
    cluster.crash(0)
    cluster.submit(1)
    # Only replicas 1 and 2 tick; replica 3's timer never runs.
    cluster.tick(_timeout_ticks(cluster) + 1, only=[1, 2])
    replica3 = cluster.nodes[3].replica
    assert replica3.statistics()["view_change.joined"] == 1
    assert replica3.view == 1 and replica3.active
    assert cluster.heights()[1:] == [1, 1, 1]


def test_4_5_2_timeouts_double_on_consecutive_view_changes_and_are_capped() -> None:
    cluster = Cluster(4, view_change_timeout_ms=1000, max_view_change_timeout_ms=3000)
    config = cluster.config
    assert [config.view_change_timeout(k) for k in range(4)] == [10, 20, 30, 30]


def test_4_4_liveness_two_silent_primaries_in_a_row() -> None:
    """n = 7 tolerates f = 2: primaries of views 0 and 1 are silent; view 2 commits."""
    cluster = Cluster(7)
    cluster.crash(0)
    cluster.crash(1)
    cluster.submit(1)
    cluster.tick(_timeout_ticks(cluster) + _timeout_ticks(cluster, 1) + 4)
    live = [n.replica for n in cluster.nodes[2:]]
    assert all(r.view == 2 and r.active for r in live)
    assert [r.committed_height for r in live] == [1] * 5


def test_4_4_asymmetric_partition_of_the_primary() -> None:
    """The primary hears everyone but only replica 1 hears it: no quorum in view 0, a view
    change, and progress in view 1 (where the old primary is just a slow backup)."""
    cluster = Cluster(4)
    cluster.drop = lambda frm, to, msg: frm == 0 and to in (2, 3)
    cluster.submit(2)
    cluster.tick(_timeout_ticks(cluster) + 4)
    assert all(n.replica.view == 1 for n in cluster.nodes)
    assert cluster.heights()[1:] == [2, 2, 2]
    assert len({tuple(cluster.chain(i)) for i in (1, 2, 3)}) == 1


def test_4_4_a_replica_restarted_mid_view_change_resends_the_same_view_change() -> None:
    cluster = Cluster(4)
    cluster.crash(0)
    cluster.drop = lambda frm, to, msg: msg.kind == Kind.VIEW_CHANGE and frm == 2
    cluster.submit(1)
    cluster.tick(_timeout_ticks(cluster) + 1, only=[1, 2, 3])
    node2 = cluster.nodes[2]
    first = _view_changes_for(cluster, 1, [2])[0]
    assert not node2.replica.active and node2.replica.view == 1
    cluster.crash(2)
    cluster.restart(2)
    assert node2.replica.view == 1 and not node2.replica.active
    cluster.drop = lambda frm, to, msg: False
    cluster.tick(3)
    again = [m for m in node2.sent if m.kind == Kind.VIEW_CHANGE]
    assert all(m.content() == first.content() for m in again)
    assert cluster.heights()[1:] == [1, 1, 1]
    assert node2.replica.view == 1 and node2.replica.active


def test_censoring_primary_is_replaced_although_blocks_commit() -> None:
    """PBFT's timer waits for a particular request: commits that leave the oldest request
    out do not reset it (the driver names the oldest waiting request)."""
    cluster = Cluster(4)
    cluster.submit(100, oldest=b"censored")
    ticks = 0
    while all(n.replica.view == 0 for n in cluster.nodes) and ticks < 100:
        cluster.tick(1)
        ticks += 1
    assert cluster.nodes[1].replica.view >= 1
    assert ticks <= _timeout_ticks(cluster) + 1
    assert cluster.heights()[0] > 0


def test_4_4_a_replica_trailing_a_live_view_does_not_time_out_alone() -> None:
    """§4.4's timer is for a primary that makes no progress. A replica that is merely slow
    (its driver has not validated the block yet) but sees the block certified by q
    COMMITs in its view must not start a view change on its own: it would leave the view
    the others are in and could follow only by catch-up."""
    cluster = Cluster(4)
    cluster.stalled.add(3)
    cluster.submit(1)
    cluster.deliver()
    assert cluster.heights() == [1, 1, 1, 0]
    _nothing_pending_at(cluster, [0, 1, 2])  # their request committed; 3 still waits
    cluster.tick(30)  # three view-change timeouts of ticking
    assert not [m for m in cluster.nodes[3].sent if m.kind == Kind.VIEW_CHANGE]
    assert cluster.nodes[3].replica.status().view == 0


def test_4_4_a_replica_with_nothing_certified_above_it_still_times_out() -> None:
    """The control: the same slow replica, but the COMMITs never reach it, so nothing tells
    it the view is live; its timer runs and it asks for a view change (§4.4)."""
    cluster = Cluster(4)
    cluster.stalled.add(3)
    cluster.drop = lambda frm, to, msg: to == 3 and msg.kind == Kind.COMMIT
    cluster.submit(1)
    cluster.deliver()
    _nothing_pending_at(cluster, [0, 1, 2])
    cluster.tick(30)
    assert [m for m in cluster.nodes[3].sent if m.kind == Kind.VIEW_CHANGE]


def _nothing_pending_at(cluster: Cluster, indexes: list[int]) -> None:
    for i in indexes:
        cluster.handle(i, cluster.nodes[i].replica.requests_pending(False, None))
