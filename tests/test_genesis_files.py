"""Genesis files on disk (load/dump and their errors), the shipped examples, the builder."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

import genesis.document
from crypto.keys import PrivateKey
from genesis import (
    MAX_GENESIS_FILE_BYTES,
    ConsensusParams,
    Genesis,
    GenesisError,
    Permissions,
    build_genesis,
    default_chain_id,
    dump_genesis,
    genesis_to_json_text,
    load_genesis,
    parse_genesis_time,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "genesis" / "examples"
PKS = [PrivateKey(bytes([i + 1]) * 32).public_key for i in range(4)]
T0 = "2026-11-26T07:00:00Z"


def small_genesis() -> Genesis:
    return build_genesis(
        "quorum-files",
        [(f"node{i}", pk) for i, pk in enumerate(PKS)],
        [(b"\x01" * 20, 10), (b"\x02" * 20, 20)],
        genesis_time=T0,
    )


def load_error(path: Path) -> str:
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert len(info.value.problems) == 1
    return str(info.value)


# --------------------------------------------------------------------------- examples


def test_examples_are_present_and_valid() -> None:
    names = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert names == ["four-validators.json", "single-validator.json"]
    four = load_genesis(EXAMPLES / "four-validators.json")
    assert four.chain_id == "quorum-example"
    assert [v.name for v in four.validators] == ["node0", "node1", "node2", "node3"]
    assert (four.n, four.f, four.quorum) == (4, 1, 3)
    assert len(four.accounts) == 2 and all(a.balance > 0 for a in four.accounts)
    assert four.consensus == ConsensusParams()
    single = load_genesis(EXAMPLES / "single-validator.json")
    assert (single.n, single.f, single.quorum) == (1, 0, 1)
    assert four.hash() != single.hash()


@pytest.mark.parametrize("name", ["four-validators.json", "single-validator.json"])
def test_examples_are_in_canonical_pretty_form(name: str) -> None:
    path = EXAMPLES / name
    assert path.read_text(encoding="utf-8") == genesis_to_json_text(load_genesis(path))


# --------------------------------------------------------------------------- load errors


def test_load_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    assert load_error(path) == f"{path}: genesis file not found"


def test_load_directory(tmp_path: Path) -> None:
    assert load_error(tmp_path) == f"{tmp_path}: is a directory, not a genesis file"


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (PermissionError(13, "Permission denied"), "cannot read genesis file: permission denied"),
        (OSError(5, "Input/output error"), "cannot read genesis file: Input/output error"),
    ],
)
def test_load_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, expected: str
) -> None:
    path = tmp_path / "genesis.json"
    path.write_text("{}")

    def failing_open(*args: object, **kwargs: object) -> None:
        raise error

    # Shadow the builtin for the genesis module only (chmod 0 does not stop root).
    monkeypatch.setattr(genesis.document, "open", failing_open, raising=False)
    assert load_error(path) == f"{path}: {expected}"


def test_load_invalid_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text('{\n  "chain_id": "x",\n  "genesis_time": oops\n}\n')
    assert load_error(path) == "invalid JSON at line 3, column 19: Expecting value"


def test_load_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(b"")
    assert load_error(path) == "invalid JSON at line 1, column 1: Expecting value"


def test_load_trailing_garbage(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text("{}\n{}\n")
    assert load_error(path) == "invalid JSON at line 2, column 1: Extra data"


def test_load_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_text("[1, 2]\n")
    assert load_error(path) == "genesis: expected a JSON object, got array"


def test_load_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    path.write_bytes(b'{"chain_id": "\xff"}')
    assert "not valid UTF-8 (byte offset 14" in load_error(path)


def test_load_too_big_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    with path.open("wb") as fh:  # sparse: costs no disk and no reading
        fh.truncate(MAX_GENESIS_FILE_BYTES + 1)
    message = load_error(path)
    assert message == (
        f"{path}: genesis file is {MAX_GENESIS_FILE_BYTES + 1} bytes, "
        f"over the limit of {MAX_GENESIS_FILE_BYTES}"
    )


def test_load_reports_all_validation_problems(tmp_path: Path) -> None:
    path = tmp_path / "genesis.json"
    doc = json.loads(genesis_to_json_text(small_genesis()))
    doc["chain_id"] = "Bad Chain"
    doc["validators"][1]["public_key"] = doc["validators"][0]["public_key"]
    path.write_text(json.dumps(doc))
    with pytest.raises(GenesisError) as info:
        load_genesis(path)
    assert info.value.problems == [
        "chain_id: 'Bad Chain' is not a valid chain id (1 to 50 characters from a-z, 0-9, "
        "'.', '_', '-', starting with a letter or digit)",
        "validators[1].public_key: duplicate of validators[0]",
    ]


def test_load_accepts_str_paths(tmp_path: Path) -> None:
    g = small_genesis()
    dump_genesis(g, str(tmp_path / "g.json"))
    assert load_genesis(str(tmp_path / "g.json")) == g


# --------------------------------------------------------------------------- dump


def test_dump_writes_pretty_json_atomically(tmp_path: Path) -> None:
    g = small_genesis()
    path = tmp_path / "genesis.json"
    path.write_text("old contents")
    dump_genesis(g, path)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "chain_id": "quorum-files",\n  "genesis_time": ')
    assert json.loads(text) == g.to_json()
    assert load_genesis(path) == g
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genesis.json"]  # no temp left
    assert path.stat().st_mode & 0o777 == 0o644


def test_dump_into_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        dump_genesis(small_genesis(), tmp_path / "missing" / "genesis.json")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- builder


def test_builder_defaults() -> None:
    assert default_chain_id() == "quorum-testnet"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    g = build_genesis(default_chain_id(), [("solo", PKS[0])])
    after = dt.datetime.now(dt.UTC)
    assert g.genesis_time.endswith("Z") and len(g.genesis_time) == 20
    when = dt.datetime.fromtimestamp(g.genesis_time_ms // 1000, dt.UTC)
    assert before <= when <= after
    assert g.genesis_time_ms == parse_genesis_time(g.genesis_time)
    assert g.genesis_time_ms % 1000 == 0
    assert g.initial_height == 1 and g.consensus == ConsensusParams()
    assert g.permissions == Permissions() and g.accounts == () and g.contracts == ()


def test_builder_passes_everything_through() -> None:
    params = ConsensusParams(checkpoint_interval=10, watermark_window=40, max_pipeline=8)
    perms = Permissions(submit=(b"\x05" * 20,), deploy=(), admin=(b"\x06" * 20,))
    g = build_genesis(
        "quorum-x",
        [("a", PKS[0]), ("b", PKS[1])],
        [(b"\x07" * 20, 5)],
        genesis_time=T0,
        consensus=params,
        initial_height=100,
        permissions=perms,
    )
    assert g.consensus is params and g.permissions is perms and g.initial_height == 100
    assert g.validators[1].name == "b" and g.accounts[0].balance == 5


def test_builder_rejects_bad_input_with_field_names() -> None:
    with pytest.raises(GenesisError) as info:
        build_genesis(
            "quorum-x",
            [("a", PKS[0]), ("a", b"\x00" * 31)],
            [(b"\x07" * 20, -5)],
            genesis_time="yesterday",
        )
    assert info.value.problems == [
        "genesis_time: 'yesterday' is not an RFC 3339 UTC time with seconds precision, "
        "like 2026-11-26T07:00:00Z",
        "validators[1].public_key: expected 32 bytes, got 31",
        "validators[1].name: duplicate of validators[0]",
        "accounts[0].balance: -5 is outside the allowed range [0, 18446744073709551615]",
    ]
