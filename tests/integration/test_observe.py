"""Operators can see the network (issue 19), on a real 4-validator testnet started through the
CLI with JSON logs and --with-monitoring:

* after a short bench, /metrics has >= 30 quorum families with samples, >= 3 histograms
  holding observations, the process collector, and every family the Grafana dashboard
  queries;
* /openapi.json lists every route, and the node's live answers fit its schemas;
* the explorer page, rendered by headless Chromium, shows the live height, the latest
  blocks with dates and signers, a contract call's events decoded by the ABI, an account;
* stopping the primary makes the others log a view change with its reason (PBFT's view
  change, Castro & Liskov OSDI'99 §4.4) and the new view;
* with 2 of 4 validators stopped and a transaction pending, /health answers 503 naming
  both problems, and /v1/status still says what the node waits for; with them back, the
  transaction commits and every node answers 200 again.

The tests share one testnet and run in order (the last two stop validators).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ledger.client import QuorumClient
from ledger.monitoring import dashboard
from ledger.node.openapi import check
from tests.integration.netutil import free_base_port, quorum, quorum_json, wait_until

pytestmark = pytest.mark.slow

NODES = ("node0", "node1", "node2", "node3")
#: How long Chromium runs the page's script (virtual time: network waits do not count).
BROWSER_BUDGET_MS = 4_000
DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")

FAKE_PROMETHEUS = """#!/bin/sh
# Stands in for Debian's prometheus: records how it was started, then idles.
echo "$@" > "$(dirname "$0")/prometheus.args"
exec sleep 600
"""


class Net:
    def __init__(self, directory: Path, started: dict[str, Any], fake_bin: Path) -> None:
        self.dir = directory
        self.started = started
        self.fake_bin = fake_bin
        manifest = json.loads((directory / "testnet.json").read_text())
        self.rpc = {n["name"]: n["rpc"] for n in manifest["nodes"]}
        self.accounts = [directory / a["file"] for a in manifest["accounts"]]
        self.addresses = [a["address"] for a in manifest["accounts"]]
        self.shared: dict[str, Any] = {}

    def client(self, name: str) -> QuorumClient:
        return QuorumClient(self.rpc[name], timeout_s=30)

    def log_events(self, name: str) -> list[dict[str, Any]]:
        lines = (self.dir / name / "node.log").read_text("utf-8", errors="replace").splitlines()
        events = []
        for line in lines:
            if line.startswith("{"):
                events.append(json.loads(line))
        return events


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    root = tmp_path_factory.mktemp("observe")
    directory = root / "testnet"
    fake_bin = root / "bin"
    fake_bin.mkdir()
    (fake_bin / "prometheus").write_text(FAKE_PROMETHEUS)
    (fake_bin / "prometheus").chmod(0o755)
    quorum("testnet", "init", "--validators", "4", "--dir", directory,
           "--base-port", str(free_base_port(8)), "--accounts", "4")  # fmt: skip
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = quorum("testnet", "start", "--dir", directory, "--log-format", "json",
                  "--with-monitoring", "--json", env=env)  # fmt: skip
    try:
        yield Net(directory, json.loads(done.stdout), fake_bin)
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)


def test_monitoring_starts_what_is_installed_and_notes_what_is_not(net: Net) -> None:
    parts = {c["name"]: c for c in net.started["monitoring"]}
    assert parts["prometheus"]["state"] == "started"
    args = wait_until(
        "the stand-in prometheus to start", lambda: _read(net.fake_bin / "prometheus.args")
    )
    config = net.dir / "monitoring" / "prometheus.yml"
    assert f"--config.file={config.resolve()}" in args and "--web.listen-address=127.0.0.1:" in args
    text = config.read_text()
    for name, rpc in net.rpc.items():
        assert json.dumps(rpc.removeprefix("http://")) in text and json.dumps(name) in text
    if shutil.which("grafana") is None and shutil.which("grafana-server") is None:
        assert parts["grafana"]["state"] == "not_installed"
        assert "not installed" in parts["grafana"]["note"]
    board = net.dir / "monitoring" / "grafana" / "dashboards" / "quorum.json"
    assert json.loads(board.read_text())["uid"] == "quorum-testnet"


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def test_metrics_after_a_short_bench(net: Net) -> None:
    bench = quorum_json("bench", "--dir", net.dir, "--duration", "2", "--clients", "4",
                        "--batch", "50")  # fmt: skip
    assert bench["committed"] > 0 and bench["agree"]
    text = httpx.get(net.rpc["node1"] + "/metrics", timeout=30).text
    every = list(text_string_to_metric_families(text))
    families = [f for f in every if f.samples]
    ours = [f for f in families if f.name.startswith("quorum_")]
    assert len(ours) >= 30, sorted(f.name for f in ours)
    observed = {
        f.name
        for f in ours
        if f.type == "histogram"
        and sum(s.value for s in f.samples if s.name.endswith("_count")) > 0
    }
    assert len(observed) >= 3, observed
    assert {"quorum_tx_commit_latency_seconds", "quorum_block_persist_seconds"} <= observed
    samples = {s.name for f in families for s in f.samples}
    assert {"process_resident_memory_bytes", "process_cpu_seconds_total", "python_info"} <= samples
    names = {
        n
        for p in dashboard()["panels"]
        for t in p.get("targets", [])
        for n in re.findall(r"\b((?:quorum|process)_[a-z0-9_]+)", t["expr"])
    }
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
    exported = samples | {f.name + end for f in every for end in suffixes.get(f.type, ("",))}
    assert sorted(names - exported) == []  # every series the dashboard plots is exported
    views = {s.labels["reason"] for f in ours if f.name == "quorum_view_changes" for s in f.samples}
    assert {"no_progress", "joined", "entered"} <= views


def test_openapi_lists_every_route_and_live_answers_fit_it(net: Net) -> None:
    doc = httpx.get(net.rpc["node0"] + "/openapi.json", timeout=30).json()
    paths = doc["paths"]
    assert {"/v1/transactions", "/v1/blocks", "/v1/blocks/{height}", "/health", "/metrics",
            "/openapi.json", "/explorer", "/v1/status"} <= set(paths)  # fmt: skip
    with net.client("node0") as c:
        deploy = quorum_json("contract", "deploy", "registry", "--from", net.accounts[0],
                             "--node", net.rpc["node0"], "--trust-node")  # fmt: skip
        address = deploy["address"]
        call = quorum_json("contract", "call", address, "set", "greeting", "68656c6c6f",
                           "--from", net.accounts[0], "--node", net.rpc["node0"],
                           "--trust-node")  # fmt: skip
        assert call["status"] == "committed"
        net.shared.update(contract=address, call=call["tx_hash"], call_height=call["height"])
        latest = c.block()
        assert latest is not None
        answers = {
            ("/v1/status", "get"): c.status(),
            ("/health", "get"): c.health(),
            ("/v1/validators", "get"): {"validators": c.validators()},
            ("/v1/blocks", "get"): c.blocks(limit=5),
            ("/v1/blocks/{height}", "get"): latest,
            ("/v1/transactions/{tx_hash}", "get"): c.transaction(call["tx_hash"]),
            ("/v1/accounts/{address}", "get"): c.account(net.addresses[0]),
            ("/v1/contracts/{address}", "get"): c.contract(address),
            ("/v1/contracts/{address}/query", "post"): c.query(address, "get", ["greeting"]),
            ("/v1/validator-set", "get"): c.validator_set(),
            ("/v1/permissions", "get"): c.permissions(),
        }
    for (path, method), answer in answers.items():
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert check(doc, schema, answer) == [], path
    signers = answers[("/v1/blocks", "get")]["blocks"][0]["signers"]
    assert len(signers) >= 3 and set(signers) <= set(NODES)


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found is not None, (
        "the explorer is tested in headless Chromium, which is not installed: run the tests "
        "through `make test` (it installs Debian's chromium), or apt-get install chromium"
    )
    return found


def render(url: str, profile: Path) -> str:
    """The DOM of ``url`` after its script ran, as headless Chromium saw it."""
    done = subprocess.run(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}",
         f"--virtual-time-budget={BROWSER_BUDGET_MS}", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match is not None, f"no #{element_id} in the page"
    return match.group(1)


def test_explorer_rendered_by_chromium_shows_the_live_chain(net: Net, tmp_path: Path) -> None:
    _chromium()
    base = net.rpc["node2"]
    with net.client("node2") as c:
        before = c.status()["height"]
        dom = render(base + "/explorer", tmp_path / "home")
        after = c.status()["height"]
        validators = c.validators()
    shown = int(_text(dom, "live-height"))
    assert before <= shown <= after and shown >= 1
    refreshes = re.search(r'data-refreshes="(\d+)"', dom)
    assert refreshes is not None and int(refreshes.group(1)) >= 2  # it redraws itself
    latest = dom[dom.index('id="latest-blocks"') : dom.index('id="validators"')]
    top = re.search(r'href="#/block/(\d+)"', latest)
    assert top is not None and before <= int(top.group(1)) <= after
    assert DATE.search(latest) and "timestamp_ms" not in latest
    assert len(re.findall(r'class="signer">node\d<', latest)) >= 3
    table = dom[dom.index('id="validators"') :]
    assert len(re.findall(r"<tr><td>node\d", table)) == len(validators) == 4
    signed = [v for v in validators if v["last_signed_height"] is not None]
    assert len(signed) >= 3 and len(re.findall(r'href="#/block/\d+"', table)) >= 3

    tx = render(f"{base}/explorer#/tx/{net.shared['call']}", tmp_path / "tx")
    events = tx[tx.index('class="event-args"') :]
    assert '"greeting"' in events[:400]
    assert "6772656574696e67" not in tx  # the key, a str, shown as text and not hex
    assert 'key = "greeting"' in tx and "Set" in tx

    block = render(f"{base}/explorer#/block/{net.shared['call_height']}", tmp_path / "block")
    section = block[block.index('id="block-txs"') :]
    assert f'href="#/tx/{net.shared["call"]}"' in section and ">call<" in section
    assert len(re.findall(r'class="signer">node\d<', block)) >= 3 and DATE.search(block)

    account = net.addresses[0]
    page = render(f"{base}/explorer#/account/{account}", tmp_path / "account")
    with net.client("node2") as c:
        state = c.account(account)
    assert _text(page, "nonce") == str(state["nonce"]) and _text(page, "balance").isdigit()


def test_stopping_the_primary_logs_a_view_change_with_its_reason(net: Net) -> None:
    with net.client("node1") as c:
        status = c.status()
    primary, view = status["primary"], status["view"]
    others = [n for n in NODES if n != primary]
    quorum("testnet", "stop", "--dir", net.dir, "--only", primary)
    net.shared["stopped"] = [primary]
    done = quorum_json("tx", "transfer", "--from", net.accounts[1], "--to", net.addresses[2],
                       "--amount", "3", "--node", net.rpc[others[0]], "--trust-node")  # fmt: skip
    assert done["status"] == "committed"

    def logged() -> dict[str, list[dict[str, Any]]] | None:
        found = {n: [e for e in net.log_events(n) if e.get("event") == "view_change"
                     and e["view"] > view] for n in others}  # fmt: skip
        entered = all(
            any(e.get("event") == "new_view" and e["view"] > view for e in net.log_events(n))
            for n in others
        )
        return found if entered and all(found.values()) else None

    changes = wait_until("the others to log a view change and the new view", logged)
    reasons = {e["reason"] for entries in changes.values() for e in entries}
    assert "no_progress" in reasons and reasons <= {"no_progress", "joined", "new_view_timeout",
                                                    "censorship"}  # fmt: skip
    first = next(iter(changes.values()))[0]
    assert first["detail"] and first["message"].startswith(f"view change to {first['view']}")
    left = [e for e in net.log_events(others[0]) if e.get("event") == "peer_disconnected"]
    assert any(e["peer"] == primary for e in left)


def test_health_is_503_with_two_of_four_stopped_and_a_transaction_pending(net: Net) -> None:
    stopped = net.shared["stopped"]
    running = [n for n in NODES if n not in stopped]
    victim = running.pop()
    quorum("testnet", "stop", "--dir", net.dir, "--only", victim)
    target = running[0]
    pending = quorum_json("tx", "transfer", "--from", net.accounts[3], "--to", net.addresses[0],
                          "--amount", "1", "--node", net.rpc[target], "--no-wait",
                          "--trust-node")  # fmt: skip
    assert pending["status"] == "pending"

    def unhealthy() -> dict[str, Any] | None:
        answer = httpx.get(net.rpc[target] + "/health", timeout=10)
        doc: dict[str, Any] = answer.json()
        codes = {p["code"] for p in doc["problems"]}
        wanted = {"no_quorum_of_peers", "pending_not_committed"}
        return doc if answer.status_code == 503 and wanted <= codes else None

    doc = wait_until("/health to answer 503 naming both problems", unhealthy)
    assert not doc["healthy"] and len(doc["peers"]) == 1 and doc["quorum"] == 3
    assert doc["oldest_pending_ms"] > doc["pending_bound_ms"]
    with net.client(target) as c:
        status = c.status()
    assert status["waiting_for"] and doc["waiting_for"]
    warned = [e for e in net.log_events(target) if e.get("event") == "health" and not e["healthy"]]
    assert warned and warned[-1]["level"] == "warning"
    net.shared.update(stopped=[*stopped, victim], pending=pending["tx_hash"])


def test_health_is_200_again_once_the_validators_are_back(net: Net) -> None:
    quorum("testnet", "start", "--dir", net.dir)  # the stopped ones; waits until linked

    def committed_and_healthy() -> bool:
        with net.client(NODES[0]) as c:
            found = c.transaction(net.shared["pending"])
        if found is None or found["status"] != "committed":
            return False
        return all(httpx.get(net.rpc[n] + "/health", timeout=10).status_code == 200 for n in NODES)

    wait_until("the pending transaction to commit and every node to be healthy",
               committed_and_healthy)  # fmt: skip
