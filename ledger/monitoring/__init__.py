"""Prometheus and Grafana for a local testnet: ``quorum testnet start --with-monitoring``.

Writes ``DIR/monitoring/``: ``prometheus.yml`` (scrapes every node's ``/metrics``, each
labelled with its node name) and Grafana's provisioning (the Prometheus data source and
the dashboard shipped here, ``dashboard.json``). Then starts each tool that is installed
as a background process with its data under ``DIR/monitoring/``: ``prometheus`` (Debian:
``apt-get install prometheus``) and ``grafana server`` / ``grafana-server`` (Grafana's own
apt repository; Debian does not package it). A tool that is not installed is skipped with
a note saying so; the files are written either way, so an existing Prometheus or Grafana
can use them (docs/OPERATIONS.md, "Monitoring").

Never: start a tool twice (a running one, per its pid file, is kept), or bind anything
but 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Final

from ledger.testnet import LOCALHOST, STOP_TIMEOUT_S, NodeEntry, free_port_range, pid_running

MONITORING_DIR_NAME: Final = "monitoring"
PROMETHEUS_PORT: Final = 9090
GRAFANA_PORT: Final = 3000
SCRAPE_INTERVAL_S: Final = 5
DATASOURCE_UID: Final = "quorum-prometheus"
#: Where Debian-style Grafana packages keep their static files.
GRAFANA_HOMES: Final = ("/usr/share/grafana", "/usr/local/share/grafana", "/opt/grafana")


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard shipped with the package (a testnet at a glance)."""
    text = resources.files("ledger.monitoring").joinpath("dashboard.json").read_text("utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


@dataclass(frozen=True, slots=True)
class Component:
    """One tool: ``started``, ``running`` (already), ``not_installed`` or ``failed``."""

    name: str
    state: str
    url: str | None = None
    pid: int | None = None
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "state": self.state, "url": self.url, "pid": self.pid,
                "note": self.note}  # fmt: skip


def _port(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((LOCALHOST, preferred))
            return preferred
        except OSError:
            return free_port_range(1)


def prometheus_config(nodes: list[NodeEntry]) -> str:
    """A prometheus.yml scraping each node's /metrics, labelled ``node``."""
    lines = [
        "# Written by `quorum testnet start --with-monitoring`: every node's /metrics.",
        "global:",
        f"  scrape_interval: {SCRAPE_INTERVAL_S}s",
        f"  evaluation_interval: {SCRAPE_INTERVAL_S}s",
        "scrape_configs:",
        "  - job_name: quorum",
        "    metrics_path: /metrics",
        "    static_configs:",
    ]
    for node in nodes:
        target = node.rpc.removeprefix("http://").removeprefix("https://")
        lines += [
            f"      - targets: [{json.dumps(target)}]",
            f"        labels: {{node: {json.dumps(node.name)}}}",
        ]
    return "\n".join(lines) + "\n"


def _grafana_files(home: Path, prometheus_url: str, port: int) -> Path:
    """Grafana's ini and provisioning under ``home``; returns the ini's path."""
    provisioning = home / "provisioning"
    (provisioning / "datasources").mkdir(parents=True, exist_ok=True)
    (provisioning / "dashboards").mkdir(parents=True, exist_ok=True)
    (provisioning / "plugins").mkdir(parents=True, exist_ok=True)
    (provisioning / "alerting").mkdir(parents=True, exist_ok=True)
    boards = home / "dashboards"
    boards.mkdir(parents=True, exist_ok=True)
    (boards / "quorum.json").write_text(json.dumps(dashboard(), indent=2) + "\n", "utf-8")
    datasource = {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Prometheus",
                "type": "prometheus",
                "uid": DATASOURCE_UID,
                "access": "proxy",
                "url": prometheus_url,
                "isDefault": True,
            }
        ],
    }
    provider = {
        "apiVersion": 1,
        "providers": [
            {"name": "quorum", "type": "file", "options": {"path": str(boards.resolve())}}
        ],
    }
    # JSON is YAML: Grafana reads these as its provisioning files.
    (provisioning / "datasources" / "quorum.yaml").write_text(json.dumps(datasource), "utf-8")
    (provisioning / "dashboards" / "quorum.yaml").write_text(json.dumps(provider), "utf-8")
    ini = home / "grafana.ini"
    ini.write_text(
        "\n".join(
            [
                "[paths]",
                f"data = {(home / 'data').resolve()}",
                f"logs = {(home / 'logs').resolve()}",
                f"plugins = {(home / 'plugins').resolve()}",
                f"provisioning = {provisioning.resolve()}",
                "[server]",
                f"http_addr = {LOCALHOST}",
                f"http_port = {port}",
                "[auth.anonymous]",
                "enabled = true",
                "org_role = Viewer",
                "[analytics]",
                "reporting_enabled = false",
                "check_for_updates = false",
                "",
            ]
        ),
        "utf-8",
    )
    return ini


def _grafana_command(ini: Path) -> list[str] | None:
    home = next((h for h in GRAFANA_HOMES if Path(h).is_dir()), None)
    grafana = shutil.which("grafana")
    if grafana is not None:
        command = [grafana, "server", "--config", str(ini)]
    else:
        legacy = shutil.which("grafana-server")
        if legacy is None:
            return None
        command = [legacy, "--config", str(ini)]
    return command + (["--homepath", home] if home is not None else [])


def _spawn(name: str, command: list[str], where: Path, url: str) -> Component:
    log = open(where / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=where,
        )  # fmt: skip
    except OSError as exc:
        return Component(name, "failed", note=f"{command[0]}: {exc}")
    finally:
        log.close()
    (where / f"{name}.pid").write_text(f"{process.pid}\n", "ascii")
    (where / f"{name}.url").write_text(url + "\n", "utf-8")
    return Component(name, "started", url, process.pid, f"log {where / f'{name}.log'}")


def _running(name: str, where: Path) -> Component | None:
    try:
        pid = int((where / f"{name}.pid").read_text("ascii").strip())
        url = (where / f"{name}.url").read_text("utf-8").strip()
    except (OSError, ValueError):
        return None
    return Component(name, "running", url, pid) if pid_running(pid) else None


def start_monitoring(directory: Path, nodes: list[NodeEntry]) -> list[Component]:
    """Write the configuration and start Prometheus and Grafana where installed."""
    where = directory / MONITORING_DIR_NAME
    where.mkdir(parents=True, exist_ok=True)
    (where / "prometheus.yml").write_text(prometheus_config(nodes), "utf-8")
    components = []
    prometheus = _running("prometheus", where)
    if prometheus is None:
        binary = shutil.which("prometheus")
        port = _port(PROMETHEUS_PORT)
        url = f"http://{LOCALHOST}:{port}"
        prometheus = (
            _spawn(
                "prometheus",
                [
                    binary,
                    f"--config.file={(where / 'prometheus.yml').resolve()}",
                    f"--storage.tsdb.path={(where / 'prometheus-data').resolve()}",
                    f"--web.listen-address={LOCALHOST}:{port}",
                ],
                where,
                url,
            )
            if binary is not None
            else Component(
                "prometheus",
                "not_installed",
                url,
                note="prometheus is not installed (Debian: apt-get install prometheus); "
                f"skipped. Its configuration is in {where / 'prometheus.yml'}",
            )
        )
    components.append(prometheus)
    assert prometheus.url is not None
    grafana = _running("grafana", where)
    if grafana is None:
        port = _port(GRAFANA_PORT)
        ini = _grafana_files(where / "grafana", prometheus.url, port)
        command = _grafana_command(ini)
        grafana = (
            _spawn("grafana", command, where, f"http://{LOCALHOST}:{port}/d/quorum-testnet")
            if command is not None
            else Component(
                "grafana",
                "not_installed",
                note="grafana is not installed (Grafana's apt repository, "
                "https://apt.grafana.com); skipped. Its provisioning is in "
                f"{where / 'grafana'}; the dashboard alone: {where / 'grafana' / 'dashboards'}",
            )
        )
    components.append(grafana)
    return components


def stop_monitoring(directory: Path) -> list[Component]:
    """Stop what :func:`start_monitoring` started (SIGTERM, as the tools expect)."""
    import os
    import signal

    where = directory / MONITORING_DIR_NAME
    stopped = []
    for name in ("prometheus", "grafana"):
        running = _running(name, where)
        if running is not None and running.pid is not None:
            os.kill(running.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while pid_running(running.pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if pid_running(running.pid):
                os.kill(running.pid, signal.SIGKILL)
            stopped.append(Component(name, "stopped", running.url, running.pid))
        (where / f"{name}.pid").unlink(missing_ok=True)
    return stopped
