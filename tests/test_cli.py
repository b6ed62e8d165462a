"""The `quorum` CLI: every command, good and bad input, JSON output and exit codes.

User mistakes must give one clear line on stderr and the exit code of DESIGN section 6 —
never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from crypto.keyfile import load_key, read_public_info
from genesis.document import load_genesis
from ledger import __version__
from ledger.cli.main import cli
from ledger.config import load_config


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: str | Path) -> dict:  # type: ignore[type-arg]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_user_error(result: Result, code: int, needle: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "pw.txt"
    path.write_text("correct horse battery\n")
    return path


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


# ---------------------------------------------------------------------------- keys


def test_keys_new_unencrypted_and_show(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    doc = run_json("keys", "new", "--out", out, "--no-password")
    assert doc["encrypted"] is False and len(doc["address"]) == 40 and len(doc["public_key"]) == 64
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    shown = run_json("keys", "show", out)
    assert shown == doc
    assert load_key(out, None).address.hex() == doc["address"]
    human = run("keys", "show", out)
    assert human.exit_code == 0 and doc["address"] in human.stdout


def test_keys_new_encrypted_with_password_file(tmp_path: Path, password_file: Path) -> None:
    out = tmp_path / "k.json"
    doc = run_json("keys", "new", "--out", out, "--password-file", password_file)
    assert doc["encrypted"] is True
    assert load_key(out, "correct horse battery").address.hex() == doc["address"]


def test_keys_new_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    first = run_json("keys", "new", "--out", out, "--no-password")
    assert_user_error(run("keys", "new", "--out", out, "--no-password"), 1, "exists")
    assert read_public_info(out).address.hex() == first["address"]
    second = run_json("keys", "new", "--out", out, "--no-password", "--force")
    assert second["address"] != first["address"]


def test_keys_new_password_usage_errors(tmp_path: Path, password_file: Path) -> None:
    out = tmp_path / "k.json"
    assert_user_error(run("keys", "new", "--out", out), 2, "--no-password")
    assert_user_error(
        run("keys", "new", "--out", out, "--no-password", "--password-file", password_file),
        2,
        "not both",
    )
    short = tmp_path / "short.txt"
    short.write_text("abc\n")
    assert_user_error(run("keys", "new", "--out", out, "--password-file", short), 1, "shorter")
    assert_user_error(
        run("keys", "new", "--out", out, "--password-file", tmp_path / "nope"), 1, "does not exist"
    )
    assert not out.exists()


def test_keys_show_bad_files(tmp_path: Path) -> None:
    assert_user_error(run("keys", "show", tmp_path / "missing.json"), 1, "does not exist")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert_user_error(run("keys", "show", garbage), 1, str(garbage))
    result = run("keys", "show", tmp_path / "missing.json", "--json")
    assert result.exit_code == 1 and "error" in json.loads(result.stdout)


def test_keys_passwd_wrong_password_changes_nothing(tmp_path: Path, password_file: Path) -> None:
    out = tmp_path / "k.json"
    run_json("keys", "new", "--out", out, "--password-file", password_file)
    before = out.read_bytes()
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the password\n")
    new = tmp_path / "new.txt"
    new.write_text("a brand new password\n")
    result = run("keys", "passwd", out, "--password-file", wrong, "--new-password-file", new)
    assert_user_error(result, 1, "wrong password")
    assert out.read_bytes() == before
    # Non-interactive and no password given: a usage error, not a hang.
    assert_user_error(run("keys", "passwd", out, "--new-password-file", new), 2, "encrypted")
    doc = run_json(
        "keys", "passwd", out, "--password-file", password_file, "--new-password-file", new
    )
    assert doc["encrypted"] is True
    load_key(out, "a brand new password")


def test_loose_key_file_permissions_are_refused(tmp_path: Path, password_file: Path) -> None:
    out = tmp_path / "k.json"
    run_json("keys", "new", "--out", out, "--password-file", password_file)
    out.chmod(0o644)
    new = tmp_path / "new.txt"
    new.write_text("a brand new password\n")
    result = run(
        "keys", "passwd", out, "--password-file", password_file, "--new-password-file", new
    )
    assert_user_error(result, 1, "chmod 600")


# ---------------------------------------------------------------------------- genesis


def _validator_keys(tmp_path: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = tmp_path / f"v{i}.json"
        run_json("keys", "new", "--out", path, "--no-password")
        paths.append(path)
    return paths


def test_genesis_new_and_validate(tmp_path: Path) -> None:
    keys = _validator_keys(tmp_path, 4)
    pub = read_public_info(keys[3]).public_key.hex()
    acct = read_public_info(keys[0]).address.hex()
    out = tmp_path / "genesis.json"
    doc = run_json(
        "genesis", "new", "--chain-id", "payments-test",
        "--validator", f"bank-a={keys[0]}", "--validator", f"bank-b={keys[1]}",
        "--validator", f"bank-c={keys[2]}", "--validator", f"bank-d={pub}",
        "--account", f"{acct}=1000", "--genesis-time", "2026-11-26T07:00:00Z", "--out", out,
    )  # fmt: skip
    assert doc["validator_count"] == 4 and doc["max_faulty"] == 1 and doc["quorum"] == 3
    assert doc["total_supply"] == 1000
    checked = run_json("genesis", "validate", out)
    assert checked["valid"] is True and checked["genesis_hash"] == doc["genesis_hash"]
    assert load_genesis(out).hash().hex() == doc["genesis_hash"]
    human = run("genesis", "validate", out)
    assert human.exit_code == 0 and "bank-d" in human.stdout and doc["genesis_hash"] in human.stdout
    assert_user_error(
        run("genesis", "new", "--chain-id", "x", "--validator", f"a={keys[0]}", "--out", out),
        1,
        "exists",
    )


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("no-equals-sign", "NAME=PUBLIC_KEY_HEX"),
        ("a=zzzz", "not valid hex"),
        ("a=abcd", "32 bytes"),
    ],
)
def test_genesis_new_bad_validator_spec(tmp_path: Path, spec: str, needle: str) -> None:
    result = run(
        "genesis", "new", "--chain-id", "c", "--validator", spec, "--out", tmp_path / "g.json"
    )
    assert_user_error(result, 2, needle)
    assert not (tmp_path / "g.json").exists()


def test_genesis_new_invalid_document_lists_problems(tmp_path: Path) -> None:
    keys = _validator_keys(tmp_path, 1)
    result = run(
        "genesis", "new", "--chain-id", "Bad Chain!", "--validator", f"v={keys[0]}",
        "--validator", f"v={keys[0]}", "--out", tmp_path / "g.json", "--json",
    )  # fmt: skip
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert any("chain_id" in p for p in doc["problems"])
    assert any("validators[1]" in p for p in doc["problems"])


def test_genesis_validate_bad_inputs(tmp_path: Path) -> None:
    assert_user_error(run("genesis", "validate", tmp_path / "missing.json"), 1, "not found")
    broken = tmp_path / "broken.json"
    broken.write_text('{"chain_id": "x",\n  "validators": [\n')
    assert_user_error(run("genesis", "validate", broken), 1, "line")
    example = (
        Path(__file__).resolve().parent.parent / "genesis" / "examples" / "four-validators.json"
    )
    doc = json.loads(example.read_text())
    doc["surprise"] = 1
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps(doc))
    assert_user_error(run("genesis", "validate", unknown), 1, "surprise")
    doc.pop("surprise")
    doc["validators"][1]["public_key"] = doc["validators"][1]["public_key"][:-2]
    short_key = tmp_path / "short.json"
    short_key.write_text(json.dumps(doc))
    assert_user_error(run("genesis", "validate", short_key), 1, "validators[1].public_key")


# ---------------------------------------------------------------------------- testnet


def test_testnet_init_layout(tmp_path: Path) -> None:
    net = tmp_path / "net"
    doc = run_json(
        "testnet",
        "init",
        "--validators",
        "4",
        "--dir",
        net,
        "--base-port",
        "30000",
        "--accounts",
        "3",
    )
    assert [n["name"] for n in doc["nodes"]] == ["node0", "node1", "node2", "node3"]
    assert (
        doc["nodes"][1]["rpc"] == "http://127.0.0.1:30003"
        and doc["nodes"][1]["p2p"] == "127.0.0.1:30002"
    )
    assert len(doc["accounts"]) == 3
    genesis_hashes = set()
    validator_keys = []
    for i in range(4):
        home = net / f"node{i}"
        config = load_config(home)
        assert config.name == f"node{i}" and len(config.peers) == 3
        assert config.p2p_listen.port == 30000 + 2 * i and config.rpc_listen.port == 30001 + 2 * i
        g = load_genesis(home / "genesis.json")
        genesis_hashes.add(g.hash())
        key = load_key(home / "validator_key.json", None)
        assert g.validators[i].public_key == key.public_key
        validator_keys.append(key.public_key)
        assert stat.S_IMODE(os.stat(home / "validator_key.json").st_mode) == 0o600
        # Every peer entry names the right validator key.
        for peer in config.peers:
            assert (
                g.validators[int(peer.name.removeprefix("node"))].public_key
                == peer.validator_public_key
            )
    assert len(genesis_hashes) == 1
    g = load_genesis(net / "node0" / "genesis.json")
    funded = {a.address for a in g.accounts}
    for entry in doc["accounts"]:
        key = load_key(net / entry["file"], None)
        assert key.address in funded and key.address.hex() == entry["address"]
    manifest = json.loads((net / "testnet.json").read_text())
    assert manifest["genesis_hash"] == g.hash().hex() and manifest["nodes"] == doc["nodes"]


def test_testnet_init_force_semantics(tmp_path: Path) -> None:
    net = tmp_path / "net"
    first = run_json("testnet", "init", "--dir", net, "--accounts", "1")
    assert_user_error(run("testnet", "init", "--dir", net), 1, "--force")
    second = run_json("testnet", "init", "--dir", net, "--accounts", "2", "--force")
    assert second["genesis"]["genesis_hash"] != first["genesis"]["genesis_hash"]
    assert len(list((net / "accounts").iterdir())) == 2
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert_user_error(run("testnet", "init", "--dir", precious, "--force"), 1, "refusing")
    assert (precious / "thesis.tex").exists()


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("--validators", "0"), 2, "--validators"),
        (("--validators", "many"), 2, "--validators"),
        (("--base-port", "80"), 2, "--base-port"),
        (("--base-port", "65530", "--validators", "8"), 1, "do not fit"),
        (("--chain-id", "UPPER CASE"), 1, "chain_id"),
    ],
)
def test_testnet_init_bad_options(
    tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    assert_user_error(run("testnet", "init", "--dir", tmp_path / "net", *args), code, needle)


def test_unknown_command_and_option_are_usage_errors() -> None:
    assert run("frobnicate").exit_code == 2
    assert run("keys", "new", "--bogus").exit_code == 2


# ---------------------------------------------------------------------------- contract examples


def test_version_is_pyproject_s() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert run("--version").stdout.strip() == f"quorum, version {pyproject['project']['version']}"


def test_contract_examples_lists_the_shipped_examples() -> None:
    doc = run_json("contract", "examples")
    assert [e["name"] for e in doc["examples"]] == ["lock", "registry", "token", "vote"]
    token = doc["examples"][2]
    assert token["summary"] == "a fixed-supply fungible token."
    assert token["constructor"] == "constructor(supply: u64)"
    assert "balance_of(owner: address) -> u64 readonly" in token["methods"]
    human = run("contract", "examples")
    assert human.exit_code == 0 and "registry" in human.stdout and "deploy token" in human.stdout
    source = run("contract", "examples", "lock")
    assert source.exit_code == 0 and source.stdout.startswith("; lock: named leases")
    assert run_json("contract", "examples", "vote")["source"].startswith("; vote:")
    assert_user_error(run("contract", "examples", "nope"), 2, "lock, registry, token, vote")


def test_contract_examples_show_the_python_versions() -> None:
    listed = run_json("contract", "examples")
    assert [e["sources"] for e in listed["examples"]][2] == ["token.qasm", "token.py"]
    python = run("contract", "examples", "token.py")
    assert python.exit_code == 0 and python.stdout.startswith('"""token: a fixed-supply')
    assert "class Token(Contract):" in python.stdout
    doc = run_json("contract", "examples", "vote.py")
    assert doc["language"] == "py" and "def approve(self, id: int) -> int:" in doc["source"]


def test_contract_compile_prints_abi_storage_size_and_assembly(tmp_path: Path) -> None:
    from contracts.assembler import assemble
    from contracts.examples import load_python

    doc = run_json("contract", "compile", "token.py")
    assert doc["contract"] == "Token" and doc["file"] == "token.py"
    assert bytes.fromhex(doc["code"]) == load_python("token") and doc["size"] == len(
        load_python("token")
    )
    assert doc["size"] == 6 + doc["abi_bytes"] + doc["code_bytes"]
    signatures = [m["signature"] for m in doc["abi"]["methods"]]
    assert "transfer(to: address, amount: u64) -> u64" in signatures
    assert doc["storage"] == [
        {"name": "supply", "type": "int", "prefix": "00"},
        {"name": "balances", "type": "Map[Address, int]", "prefix": "01"},
    ]
    human = run("contract", "compile", "token.py")
    assert (
        human.exit_code == 0 and "Token (token.py)" in human.stdout and "balance_of" in human.stdout
    )
    source = tmp_path / "counter.py"
    source.write_text(COUNTER)
    asm = run("contract", "compile", source, "--asm")
    assert asm.exit_code == 0 and asm.stdout.startswith("; Counter, from ")
    assert ".method bump(by: u64) -> u64" in asm.stdout and "Counter" in asm.stderr
    assert assemble(asm.stdout).hex() == run_json("contract", "compile", source)["code"]


COUNTER = """\
from contracts.lang import Contract, require


class Counter(Contract):
    count: int

    def bump(self, by: int) -> int:
        require(by > 0, "by must be positive")
        self.count += by
        return self.count
"""


def test_contract_compile_errors_exit_2_with_file_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        COUNTER.replace("from contracts.lang import", "import os\nfrom contracts.lang import")
    )
    result = run("contract", "compile", bad)
    assert_user_error(result, 2, f"{bad}:1:1: `import os` is not allowed")
    doc = json.loads(run("contract", "compile", bad, "--json").stdout)
    assert (doc["line"], doc["column"]) == (1, 1) and "import os" in doc["error"]
    assert_user_error(run("contract", "compile", tmp_path / "none.py"), 1, "does not exist")
    assert_user_error(run("contract", "compile", "token"), 2, "compile token.py")


def test_contract_deploy_of_a_file_that_does_not_compile_sends_nothing(tmp_path: Path) -> None:
    """The compile error comes first: before the key file is read (it does not exist) or
    a node is asked (none listens there), so the exit is 2 with the compiler's words."""
    bad = tmp_path / "bad.py"
    bad.write_text(COUNTER.replace("self.count += by", "self.count += by / 2"))
    result = run(
        "contract", "deploy", bad, "--from", tmp_path / "missing-key.json",
        "--node", "http://127.0.0.1:9",
    )  # fmt: skip
    assert_user_error(result, 2, f"{bad}:9:23: / makes floats: use // (integer division)")


@pytest.mark.parametrize(
    ("target", "code", "needle"),
    [
        ("nosuchexample", 2, "the examples are: lock, registry, token, vote"),
        ("missing/token.qasm", 1, "does not exist (or name an example: lock, registry"),
        ("tokn.qasm", 1, "does not exist"),
    ],
)
def test_contract_deploy_unknown_example_or_file(
    tmp_path: Path, target: str, code: int, needle: str
) -> None:
    result = run("contract", "deploy", target, "--from", tmp_path / "k.json")
    assert_user_error(result, code, needle)


def test_contract_deploy_a_file_wins_over_an_example_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("token").write_text("not a container")
    result = run("contract", "deploy", "token", "--from", "k.json")
    assert_user_error(result, 1, "not a contract container")
    Path("bad.qasm").write_text(".method f(\n")
    assert_user_error(run("contract", "deploy", "bad.qasm", "--from", "k.json"), 1, "bad.qasm")
    Path("dir.qasm").mkdir()
    assert_user_error(run("contract", "deploy", "dir.qasm", "--from", "k.json"), 1, "not a file")
