"""`quorum bench --compare-etcd`: reading etcd's figure, and the note when etcd is absent."""

from __future__ import annotations

import pytest

from ledger.bench import etcd


def test_reads_the_pass_line() -> None:
    out = " 60 / 60  100.00% 1m0s\nPASS: Throughput is 2547 writes/s\nPASS: Slowest request took 0.1s\n"
    assert etcd.parse_throughput(out) == 2547


def test_reads_the_fail_line() -> None:
    # `check perf --load=xl` asks 30,000 writes/s; below that etcd says FAIL with the figure.
    out = "FAIL: Throughput too low: 2547 writes/s\nPASS: Slowest request took 0.2s\nFAIL\n"
    assert etcd.parse_throughput(out) == 2547


def test_no_figure_is_an_error_not_a_zero() -> None:
    with pytest.raises(etcd.EtcdError, match="no throughput"):
        etcd.parse_throughput("Error: context deadline exceeded\n")


def test_missing_etcd_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd.shutil, "which", lambda name: None)
    assert etcd.binaries() is None
    with pytest.raises(etcd.EtcdError, match="apt-get install etcd-server etcd-client"):
        etcd.run_check_perf(load="s")


def test_unknown_load_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etcd.shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(etcd.EtcdError, match="unknown etcd load"):
        etcd.run_check_perf(load="huge")
