"""A release works outside the repository (issue 21).

Builds the sdist and the wheel from a copy of this checkout (``python -m build
--no-isolation``: the locked setuptools, no download), installs the wheel with the locked
run-time dependencies (requirements.lock, hash-checked) into a new virtual environment in a
temporary folder, and drives the installed ``quorum`` from a folder that is not the
repository: ``--version``, the shipped example contracts, a 4-validator testnet, a
transfer, and the token example deployed by name. Nothing here imports the checkout in the
installed environment: ``PYTHONPATH`` is cleared and the venv is not the checkout's.

No network when the Makefile made the venv: it leaves the locked wheels in
``.venv/wheelhouse``, and the install here is ``--no-index`` from there. Elsewhere (a venv
made by hand) the same hash-checked install goes to the package index instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.netutil import free_base_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
VERSION: str = PROJECT["version"]
#: Left out of the copy that is built: local state, caches, earlier builds.
NOT_SOURCE = (".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", ".hypothesis")
NOT_SOURCE += (".pytest_cache", ".mypy_cache", ".ruff_cache", "testnet", "demo-testnet")


def _setuptools_at_least_77() -> bool:
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    return major >= 77


def _require_build_tools() -> None:
    """The venv `make` creates always has them; a hand-made one is told what to do."""
    assert importlib.util.find_spec("build") is not None and _setuptools_at_least_77(), (
        "the locked build tools (build, setuptools >= 77 from requirements-dev.lock) are "
        "missing from this environment: run the tests through `make test`"
    )


def _run(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


class Installed:
    """The wheel installed in a fresh venv, and a working folder outside the repository."""

    def __init__(self, venv: Path, work: Path) -> None:
        self.venv = venv
        self.work = work
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("QUORUM_NODE", None)

    def quorum(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "quorum"), *(str(a) for a in args)],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def quorum_json(self, *args: str | Path) -> Any:
        done = self.quorum(*args, "--json")
        assert done.returncode == 0, f"quorum {args}: {done.returncode}\n{done.stderr}"
        return json.loads(done.stdout)


def _install_command(venv: Path) -> list[str]:
    """pip, hash-checked, nothing but the lock; offline from the Makefile's wheelhouse."""
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    command += ["--require-hashes", "--no-deps", "-r", str(ROOT / "requirements.lock")]
    wheelhouse = Path(sys.prefix) / "wheelhouse"
    if wheelhouse.is_dir():
        command += ["--no-index", "--find-links", str(wheelhouse)]
    return command


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sdist and wheel, built from a copy of the checkout (the build writes egg-info)."""
    _require_build_tools()
    base = tmp_path_factory.mktemp("release")
    source = base / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = base / "dist"
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source, cwd=base)
    return out


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=base)
    _run(*_install_command(venv), cwd=base)
    (wheel,) = dist.glob("*.whl")
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=base)
    _run(python, "-m", "pip", "check", cwd=base)
    work = base / "work"
    work.mkdir()
    return Installed(venv, work)


@pytest.fixture(scope="module")
def testnet(installed: Installed) -> Iterator[Installed]:
    """A 4-validator testnet in ``./testnet`` of the working folder: the CLI's defaults."""
    base = str(free_base_port(8))
    init = installed.quorum("testnet", "init", "--validators", "4", "--base-port", base)
    assert init.returncode == 0, init.stderr
    try:
        started = installed.quorum("testnet", "start")
        assert started.returncode == 0, started.stderr
        yield installed
    finally:
        installed.quorum("testnet", "stop")


def test_the_wheel_ships_the_packages_and_examples_and_no_tests(dist: Path) -> None:
    (wheel,) = dist.glob(f"quorum_ledger-{VERSION}-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for package in ("crypto", "consensus", "consensus/sim", "contracts", "genesis", "ledger"):
        assert f"{package}/__init__.py" in names, package
    for harness in ("bench", "chaos", "loadsim", "cli", "node", "engine", "chain"):
        assert f"ledger/{harness}/__init__.py" in names, harness
    for example in ("token", "lock", "registry", "vote"):
        assert f"contracts/examples/{example}.qasm" in names
        assert f"contracts/examples/{example}.py" in names
    assert "contracts/lang/compiler.py" in names
    assert "genesis/examples/four-validators.json" in names
    for served in ("index.html", "explorer.js", "explorer.css"):  # every node serves these
        assert f"ledger/node/explorer/{served}" in names
    assert "ledger/monitoring/dashboard.json" in names  # testnet start --with-monitoring
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]
    (sdist,) = dist.glob(f"quorum_ledger-{VERSION}.tar.gz")
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[-1] for m in tar.getmembers()}
    assert {"requirements.lock", "requirements-dev.lock", "Makefile"} <= members
    assert "tests/test_release.py" in members and "contracts/examples/token.qasm" in members


def test_the_installed_quorum_is_the_wheel_and_knows_its_version(installed: Installed) -> None:
    where = _run(
        installed.venv / "bin" / "python",
        "-c",
        "import contracts, ledger; print(ledger.__file__); print(contracts.__file__)",
        cwd=installed.work,
        env=installed.env,
    )
    for line in where.split():
        assert Path(line).is_relative_to(installed.venv) and not Path(line).is_relative_to(ROOT)
    shown = installed.quorum("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"quorum, version {VERSION}"
    listed = installed.quorum_json("contract", "examples")
    assert [e["name"] for e in listed["examples"]] == ["lock", "registry", "token", "vote"]
    token = next(e for e in listed["examples"] if e["name"] == "token")
    assert token["constructor"] == "constructor(supply: u64)"
    compiled = installed.quorum_json("contract", "compile", "token.py")  # Python, from the wheel
    assert compiled["contract"] == "Token" and compiled["size"] > 0
    missing = installed.quorum("contract", "deploy", "nosuchexample", "--from", "k.json")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "lock, registry, token, vote" in missing.stderr


def test_a_testnet_a_transfer_and_the_token_example_by_name(testnet: Installed) -> None:
    manifest = json.loads((testnet.work / "testnet" / "testnet.json").read_text())
    assert len(manifest["nodes"]) == 4
    sender = Path("testnet") / manifest["accounts"][0]["file"]
    receiver = manifest["accounts"][1]["address"]
    sent = testnet.quorum_json(
        "tx", "transfer", "--from", sender, "--to", receiver, "--amount", "25"
    )
    assert sent["status"] == "committed" and sent["height"] >= 1
    deployed = testnet.quorum_json(
        "contract", "deploy", "token", "--args", "1000", "--from", sender
    )
    assert deployed["status"] == "committed"
    owner = manifest["accounts"][0]["address"]
    queried = testnet.quorum_json("contract", "query", deployed["address"], "balance_of", owner)
    assert queried["return"] == 1000
    status = testnet.quorum_json("testnet", "status")
    assert [n["running"] for n in status["nodes"]] == [True] * 4
    page = httpx.get(manifest["nodes"][0]["rpc"] + "/explorer/explorer.js", timeout=30)
    assert page.status_code == 200 and "REFRESH_MS" in page.text
