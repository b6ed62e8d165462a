"""The node's instruments, log events and health watch, in process: phase timing from the
core's Readies, submit-to-commit latency, bounded clocks, JSON log lines, the dashboard's
queries naming real families."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consensus.records import Phase
from ledger.chain.types import TxRejected
from ledger.engine.admission import AdmittedTx
from ledger.engine.events import Checked
from ledger.monitoring import dashboard, prometheus_config
from ledger.node.health import PendingWatch, assess
from ledger.node.logs import JsonFormatter, configure_logging, log_event
from ledger.node.metrics import AdmissionClock, Instruments, PhaseClock
from ledger.node.observe import Observer
from ledger.testnet import NodeEntry


def ready(**parts: Any) -> Any:
    """A stand-in for consensus.ready.Ready with just the parts the clocks read."""
    base: dict[str, Any] = {"validate": (), "persist": None, "committed": (), "messages": ()}
    return SimpleNamespace(**{**base, **parts})


def validate(view: int, height: int) -> Any:
    return SimpleNamespace(view=view, height=height)


def prepared(view: int, height: int) -> Any:
    return SimpleNamespace(height=height, proof=SimpleNamespace(header=SimpleNamespace(view=view)))


def committed(view: int, height: int) -> Any:
    return SimpleNamespace(view=view, height=height)


def persist(signed: tuple[Any, ...] = (), prepared_: tuple[Any, ...] = ()) -> Any:
    return SimpleNamespace(signed=signed, prepared=prepared_)


def test_phase_clock_times_pre_prepare_to_prepared_to_committed() -> None:
    clock = PhaseClock()
    assert clock.on_ready(ready(validate=(validate(0, 5),)), 10.0) == ([], [])
    # The primary's own PRE-PREPARE (its guard record) starts height 6.
    signed = SimpleNamespace(phase=Phase.PRE_PREPARE, view=0, height=6)
    clock.on_ready(ready(persist=persist(signed=(signed,))), 10.5)
    prepare_s, commit_s = clock.on_ready(ready(persist=persist(prepared_=(prepared(0, 5),))), 10.25)
    assert prepare_s == [0.25] and commit_s == []
    prepare_s, commit_s = clock.on_ready(ready(committed=(committed(0, 5),)), 10.75)
    assert prepare_s == [] and commit_s == [0.5]
    # A commit forgets everything at or below it; height 6 is still timed.
    prepare_s, _ = clock.on_ready(ready(persist=persist(prepared_=(prepared(0, 6),))), 11.0)
    assert prepare_s == [0.5]
    # A catch-up commit (never pre-prepared here) is not timed.
    assert clock.on_ready(ready(committed=(committed(3, 9),)), 12.0) == ([], [])


def test_admission_clock_is_bounded_and_forgets_the_old() -> None:
    clock = AdmissionClock(capacity=3)
    clock.admitted([b"a", b"b"], 1.0)
    clock.admitted([b"c", b"d"], 2.0)  # d is over capacity: not timed
    assert len(clock) == 3
    assert clock.committed([b"a", b"d", b"x"], 4.0) == [3.0]
    clock.expire(now_s=200.0, max_age_s=198.5)  # b (1.0) is too old, c (2.0) is not
    assert clock.committed([b"b", b"c"], 200.0) == [198.0]
    assert len(clock) == 0


def _families(instruments: Instruments) -> dict[str, Any]:
    text = generate_latest(instruments.registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_instruments_feed_histograms_and_count_sent_messages() -> None:
    instruments = Instruments()
    message = SimpleNamespace(kind="prepare")
    outbound = (SimpleNamespace(to=None, message=message), SimpleNamespace(to=2, message=message))
    instruments.on_ready(ready(messages=outbound), peers=3, now_s=1.0)
    assert instruments.messages_sent == {"prepare": 4}
    admitted = [Checked(AdmittedTx(SimpleNamespace(hash=b"\xaa"))), Checked(TxRejected("x", "y"))]  # type: ignore[arg-type]
    instruments.admitted(admitted, [{"status": "pending"}, {"status": "rejected"}], 1.0)
    header = SimpleNamespace(height=4, timestamp_ms=1_000)
    tx = SimpleNamespace(hash=bytes.fromhex("aa"))
    block = SimpleNamespace(header=header, transactions=[tx])
    instruments.committed(block, 300, ["node0", "node2"], 0.002, now_s=1.5)  # type: ignore[arg-type]
    block.header = SimpleNamespace(height=5, timestamp_ms=1_250)
    instruments.committed(block, 300, ["node1"], 0.003, now_s=2.0)  # type: ignore[arg-type]
    instruments.executed("validate", 0.01)
    instruments.request("/v1/status", 200, 0.001)
    assert instruments.last_signed == {"node0": 4, "node2": 4, "node1": 5}
    families = _families(instruments)
    counts = {
        name: sum(s.value for s in f.samples if s.name.endswith("_count"))
        for name, f in families.items()
        if f.type == "histogram"
    }
    assert counts["quorum_tx_commit_latency_seconds"] == 1
    assert counts["quorum_block_interval_seconds"] == 1  # 4 -> 5, 0.25 s
    assert counts["quorum_block_persist_seconds"] == 2
    assert counts["quorum_block_execution_seconds"] == 1
    assert counts["quorum_http_request_duration_seconds"] == 1
    latency = families["quorum_tx_commit_latency_seconds"]
    assert next(s.value for s in latency.samples if s.name.endswith("_sum")) == pytest.approx(0.5)
    # The standard collectors, in the node's own registry.
    assert {"process_resident_memory_bytes", "process_cpu_seconds", "python_info"} <= set(families)


def test_log_events_become_one_json_object_per_line() -> None:
    formatter = JsonFormatter(node="node1")
    logger = logging.getLogger("quorum.test.observability")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        log_event(logger, "view_change", "view change to %d (%s)", 3, "no_progress",
                  view=3, reason="no_progress", message="not the message")  # fmt: skip
        logger.info("plain %s", "line")
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = [formatter.format(r) for r in records]
    assert all("\n" not in line for line in lines)
    first, plain, failed = (json.loads(line) for line in lines)
    assert first["event"] == "view_change" and first["reason"] == "no_progress"
    assert first["message"] == "view change to 3 (no_progress)" and first["view"] == 3
    assert first["node"] == "node1" and first["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert plain["event"] is None and plain["message"] == "plain line"
    assert "ValueError: bad" in failed["exception"]
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml")


def test_pending_watch_measures_how_long_the_oldest_has_waited() -> None:
    watch = PendingWatch()
    assert watch.oldest(5.0) is None
    watch.observe(b"t1", 1.0)
    watch.observe(b"t1", 3.0)  # the same one: still waiting since 1.0
    assert watch.oldest(4.0) == (b"t1", 3.0)
    watch.observe(b"t2", 4.5)  # t1 left (committed or dropped): t2's clock starts
    assert watch.oldest(5.0) == (b"t2", 0.5)
    watch.observe(None, 6.0)
    assert watch.oldest(7.0) is None


def test_the_dashboard_queries_families_the_node_exports() -> None:
    board = dashboard()
    assert board["uid"] == "quorum-testnet" and len(board["panels"]) >= 20
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    names = {n for e in exprs for n in re.findall(r"\b((?:quorum|process)_[a-z0-9_]+)", e)}
    assert len(names) >= 20
    # Histograms are queried through their series; the node's code names each family.
    families = {re.sub(r"_(bucket|sum|count|total)$", "", n) for n in names}
    source = "".join(
        (Path(__file__).parent.parent / "ledger" / "node" / f"{m}.py").read_text("utf-8")
        for m in ("metrics", "scrape")
    )
    missing = sorted(f for f in families if f.startswith("quorum_") and f'"{f}"' not in source)
    assert missing == []


def test_prometheus_config_scrapes_every_node_labelled_by_name(tmp_path: Any) -> None:
    nodes = [NodeEntry(f"node{i}", tmp_path, f"http://127.0.0.1:{2000 + i}", "") for i in range(3)]
    text = prometheus_config(nodes)
    assert text.count("- targets:") == 3
    assert '"127.0.0.1:2001"' in text and '{node: "node2"}' in text


class FakeReplica:
    def __init__(self) -> None:
        self.index = 0
        self.committed_height = 10
        self.catchup_target = 10
        self.stable = SimpleNamespace(height=0)
        self.waiting_for = "height 11: idle, no requests pending"

    def status(self) -> Any:
        return SimpleNamespace(view=2, primary=2, waiting_for=self.waiting_for)


def fake_node(linked: int, mempool_oldest: bytes | None = None) -> Any:
    """What health.assess and the observer read of a node; peers 1..linked are linked."""
    config = SimpleNamespace(n=4, quorum=3, name=lambda i: f"node{i}")
    return SimpleNamespace(
        started=True,
        net=SimpleNamespace(connected_peers=lambda: list(range(1, linked + 1))),
        replica_config=config,
        replica=FakeReplica(),
        genesis=SimpleNamespace(consensus=SimpleNamespace(view_change_timeout_ms=2000)),
        syncing=lambda: False,
        state_sync_min_blocks=64,
        last_commit_ms=0,
        names={0: "node0"},
        index=0,
        store=SimpleNamespace(head_height=10),
        mempool=SimpleNamespace(oldest_includable=lambda: mempool_oldest),
        metrics=Instruments(),
        retirement=None,
    )


@pytest.fixture
def identity_peer_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.node.health.peer_ids", lambda config, genesis: (0, 1, 2, 3))


def codes(doc: dict[str, Any]) -> set[str]:
    return {p["code"] for p in doc["problems"]}


@pytest.mark.usefixtures("identity_peer_ids")
def test_health_names_each_reason_it_cannot_make_progress() -> None:
    node = fake_node(linked=2)
    watch = PendingWatch()
    doc = assess(node, watch, now_s=0.0)
    assert doc["healthy"] and doc["peers"] == ["node1", "node2"] and doc["quorum"] == 3
    node = fake_node(linked=1)  # 1 + 1 < 3
    assert codes(assess(node, watch, now_s=0.0)) == {"no_quorum_of_peers"}
    node = fake_node(linked=3)
    watch.observe(b"\x01" * 32, 0.0)
    assert assess(node, watch, now_s=9.9)["healthy"]  # waiting, within the 10 s bound
    late = assess(node, watch, now_s=10.5)
    assert codes(late) == {"pending_not_committed"} and "0101010101010101" in str(late)
    assert late["oldest_pending_ms"] == 10_500 and late["pending_bound_ms"] == 10_000
    node.replica.catchup_target = 10 + 65  # more than a checkpoint interval behind
    assert codes(assess(node, PendingWatch(), now_s=0.0)) == {"syncing"}
    node.replica.catchup_target = 10 + 64
    assert assess(node, PendingWatch(), now_s=0.0)["healthy"]  # catching up, not far
    node.syncing = lambda: {"mode": "state_sync", "phase": "fetching"}
    assert codes(assess(node, PendingWatch(), now_s=0.0)) == {"syncing"}
    assert assess(node, PendingWatch(), now_s=0.0)["validator"] == {"state": "member"}
    node = fake_node(linked=3)  # voted out at block 8: retiring (ledger/node/retire.py)
    node.retirement = SimpleNamespace(
        removed_at=8, status=lambda: {"state": "retiring", "removed_at": 8}
    )
    retiring = assess(node, PendingWatch(), now_s=0.0)
    assert codes(retiring) == {"retiring"} and "at block 8" in str(retiring)
    assert retiring["validator"] == {"state": "retiring", "removed_at": 8}


@pytest.mark.usefixtures("identity_peer_ids")
def test_the_observer_logs_checkpoints_sync_phases_and_health_turns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    node = fake_node(linked=3)
    observer = Observer(node)
    caplog.set_level(logging.INFO, logger="quorum.node")
    observer.sample(0.0)  # first look: healthy, nothing to report
    node.replica.stable.height = 64
    node.syncing = lambda: {"mode": "replay", "progress": {"height": 10, "target": 20}}
    node.replica.catchup_target = 20
    observer.sample(1.0)
    node.syncing = lambda: False
    node.replica.committed_height = 20
    node.net.connected_peers = lambda: [1]
    observer.sample(3.5)
    events = [(r.event, r.fields) for r in caplog.records if hasattr(r, "event")]  # type: ignore[attr-defined]
    names = [e for e, _ in events]
    assert names == ["checkpoint_stable", "sync_phase", "sync_finished", "health"]
    fields = dict(events)
    assert fields["checkpoint_stable"] == {"height": 64, "previous": 0}
    assert fields["sync_phase"]["phase"] == "replay" and fields["sync_phase"]["target"] == 20
    assert fields["sync_finished"]["blocks"] == 10 and fields["sync_finished"]["seconds"] == 2.5
    assert fields["health"]["healthy"] is False
    assert caplog.records[-1].levelno == logging.WARNING
