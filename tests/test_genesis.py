"""Genesis documents: parsing, validation messages, round trips, and the genesis hash."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crypto.encoding import encode
from crypto.hashing import tagged_hash
from crypto.keys import PrivateKey
from genesis import (
    Account,
    ConsensusParams,
    Contract,
    Genesis,
    GenesisError,
    Permissions,
    Validator,
    build_genesis,
    format_genesis_time,
    genesis_from_json_text,
    genesis_to_json_text,
    parse_genesis,
    parse_genesis_time,
)

KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(8)]
PKS = [k.public_key for k in KEYS]
ADDR = [bytes([0xA0 + i]) * 20 for i in range(8)]
#: The identity point: 32 bytes that decode, but of small order.
SMALL_ORDER_KEY = bytes([1]) + bytes(31)


def valid_doc() -> dict[str, Any]:
    """A valid genesis document in JSON form that uses every section."""
    return {
        "chain_id": "quorum-test",
        "genesis_time": "2026-11-26T07:00:00Z",
        "initial_height": 1,
        "consensus": {"checkpoint_interval": 32, "watermark_window": 128},
        "validators": [{"name": f"node{i}", "public_key": PKS[i].hex()} for i in range(4)],
        "accounts": [
            {"address": ADDR[0].hex(), "balance": 1000},
            {"address": ADDR[1].hex(), "balance": 0},
        ],
        "contracts": [
            {
                "address": ADDR[5].hex(),
                "code": "6001",
                "balance": 7,
                "storage": {"02": "bb", "01": "aa"},
            }
        ],
        "permissions": {"submit": "any", "deploy": [ADDR[0].hex()], "admin": [ADDR[1].hex()]},
    }


def problems_of(doc: object) -> GenesisError:
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    return info.value


# --------------------------------------------------------------------------- good docs


def test_valid_doc_parses() -> None:
    g = parse_genesis(valid_doc())
    assert g.chain_id == "quorum-test"
    assert g.genesis_time_ms == 1_795_676_400_000
    assert g.n == 4 and g.f == 1 and g.quorum == 3
    assert g.consensus.checkpoint_interval == 32
    assert g.consensus.max_block_txs == 2000  # missing params get defaults
    assert g.validators[2] == Validator("node2", PKS[2])
    assert g.accounts[0] == Account(ADDR[0], 1000)
    # storage is held sorted by key, whatever the JSON object's order
    assert g.contracts[0].storage == ((b"\x01", b"\xaa"), (b"\x02", b"\xbb"))
    assert g.permissions == Permissions(submit=None, deploy=(ADDR[0],), admin=(ADDR[1],))
    assert g.total_supply == 1007
    assert len(g.hash()) == 32


def test_minimal_doc_gets_defaults() -> None:
    doc = valid_doc()
    for key in ("consensus", "accounts", "contracts", "permissions"):
        del doc[key]
    g = parse_genesis(doc)
    assert g.consensus == ConsensusParams()
    assert g.accounts == () and g.contracts == ()
    assert g.permissions == Permissions(submit=None, deploy=None, admin=())
    assert g.to_json()["permissions"] == {"submit": "any", "deploy": "any", "admin": []}


def test_default_consensus_params() -> None:
    p = ConsensusParams()
    assert p.to_value() == {
        "max_block_txs": 2000,
        "max_block_bytes": 4 * 1024 * 1024,
        "max_tx_bytes": 64 * 1024,
        "max_block_gas": 100_000_000,
        "max_tx_gas": 10_000_000,
        "checkpoint_interval": 64,
        "watermark_window": 256,
        "view_change_timeout_ms": 2000,
        "max_view_change_timeout_ms": 60_000,
        "max_clock_skew_ms": 5000,
        "max_pipeline": 4,
    }


def test_hex_spellings_are_accepted() -> None:
    doc = valid_doc()
    doc["validators"][0]["public_key"] = "0x" + PKS[0].hex().upper()
    doc["accounts"][0]["address"] = "0X" + ADDR[0].hex()
    assert parse_genesis(doc) == parse_genesis(valid_doc())


@pytest.mark.parametrize(("n", "f", "q"), [(1, 0, 1), (4, 1, 3), (7, 2, 5)])
def test_fault_tolerance_and_quorum(n: int, f: int, q: int) -> None:
    g = build_genesis("quorum-test", [(f"v{i}", PKS[i]) for i in range(n)], genesis_time=T0)
    assert (g.n, g.f, g.quorum) == (n, f, q)


def test_validator_lookup_and_primary() -> None:
    g = parse_genesis(valid_doc())
    assert [g.validator_index(pk) for pk in PKS[:4]] == [0, 1, 2, 3]
    assert g.validator_index(PKS[5]) is None
    assert [g.primary(v).name for v in range(6)] == [
        "node0",
        "node1",
        "node2",
        "node3",
        "node0",
        "node1",
    ]
    with pytest.raises(ValueError, match="non-negative"):
        g.primary(-1)


def test_permissions_helpers() -> None:
    p = Permissions(submit=None, deploy=(ADDR[0],), admin=(ADDR[1],))
    assert p.allows_submit(ADDR[7]) and p.allows_deploy(ADDR[0])
    assert not p.allows_deploy(ADDR[1])
    assert p.is_admin(ADDR[1]) and not p.is_admin(ADDR[0])


# --------------------------------------------------------------------------- error table

Mutation = Callable[[dict[str, Any]], None]


def setter(*path: str | int, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return mutate


def deleter(*path: str | int) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return mutate


def append(*path: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        target: Any = doc
        for step in path:
            target = target[step]
        target.append(value)

    return mutate


PK31 = PKS[0].hex()[:62]

# fmt: off
ERROR_CASES: list[tuple[str, Mutation, str]] = [
    # structure
    ("unknown top field", setter("foo", value=1), "unknown field 'foo'"),
    ("unknown consensus field", setter("consensus", "speed", value=1), "consensus: unknown field 'speed'"),
    ("unknown validator field", setter("validators", 1, "power", value=1), "validators[1]: unknown field 'power'"),
    ("unknown account field", setter("accounts", 0, "nonce", value=0), "accounts[0]: unknown field 'nonce'"),
    ("unknown contract field", setter("contracts", 0, "abi", value=0), "contracts[0]: unknown field 'abi'"),
    ("unknown permission field", setter("permissions", "read", value="any"), "permissions: unknown field 'read'"),
    ("missing chain id", deleter("chain_id"), "chain_id: required field is missing"),
    ("missing genesis time", deleter("genesis_time"), "genesis_time: required field is missing"),
    ("missing initial height", deleter("initial_height"), "initial_height: required field is missing"),
    ("missing validators", deleter("validators"), "validators: required field is missing"),
    ("missing validator key", deleter("validators", 3, "public_key"), "validators[3].public_key: required field is missing"),
    ("missing account balance", deleter("accounts", 1, "balance"), "accounts[1].balance: required field is missing"),
    ("missing contract storage", deleter("contracts", 0, "storage"), "contracts[0].storage: required field is missing"),
    ("consensus not object", setter("consensus", value=[]), "consensus: expected an object, got array"),
    ("validators not list", setter("validators", value={}), "validators: expected an array, got object"),
    ("validator not object", setter("validators", 2, value="node2"), "validators[2]: expected an object, got string"),
    ("accounts null", setter("accounts", value=None), "accounts: expected an array, got null"),
    ("permissions not object", setter("permissions", value="any"), "permissions: expected an object, got string"),
    # chain id, time, height
    ("chain id uppercase", setter("chain_id", value="Quorum"), "chain_id: 'Quorum' is not a valid chain id"),
    ("chain id empty", setter("chain_id", value=""), "chain_id: '' is not a valid chain id"),
    ("chain id newline", setter("chain_id", value="quorum\n"), "is not a valid chain id"),
    ("chain id too long", setter("chain_id", value="q" * 51), "is not a valid chain id"),
    ("chain id int", setter("chain_id", value=7), "chain_id: expected a string, got integer"),
    ("time offset", setter("genesis_time", value="2026-11-26T07:00:00+00:00"), "genesis_time: '2026-11-26T07:00:00+00:00' is not an RFC 3339 UTC time"),
    ("time fraction", setter("genesis_time", value="2026-11-26T07:00:00.5Z"), "is not an RFC 3339 UTC time with seconds precision"),
    ("time lowercase", setter("genesis_time", value="2026-11-26t07:00:00z"), "is not an RFC 3339 UTC time"),
    ("time date only", setter("genesis_time", value="2026-11-26"), "is not an RFC 3339 UTC time"),
    ("time bad day", setter("genesis_time", value="2026-02-30T00:00:00Z"), "genesis_time: '2026-02-30T00:00:00Z' is not a valid date and time"),
    ("time leap second", setter("genesis_time", value="2026-06-30T23:59:60Z"), "is not a valid date and time"),
    ("time before epoch", setter("genesis_time", value="1969-12-31T23:59:59Z"), "genesis_time: '1969-12-31T23:59:59Z' is before 1970"),
    ("time number", setter("genesis_time", value=1_700_000_000), "genesis_time: expected a string, got integer"),
    ("height zero", setter("initial_height", value=0), "initial_height: 0 is outside the allowed range [1, "),
    ("height bool", setter("initial_height", value=True), "initial_height: expected an integer, got boolean"),
    ("height float", setter("initial_height", value=1.0), "initial_height: expected an integer, got number"),
    ("height string", setter("initial_height", value="1"), "initial_height: expected an integer, got string"),
    # consensus params
    ("param bool", setter("consensus", "max_pipeline", value=True), "consensus.max_pipeline: expected an integer, got boolean"),
    ("param float", setter("consensus", "max_block_txs", value=10.0), "consensus.max_block_txs: expected an integer, got number"),
    ("param zero", setter("consensus", "max_block_txs", value=0), "consensus.max_block_txs: 0 is outside the allowed range [1, 100000]"),
    ("param negative", setter("consensus", "max_clock_skew_ms", value=-5), "consensus.max_clock_skew_ms: -5 is outside the allowed range"),
    ("param huge", setter("consensus", "max_block_bytes", value=2**40), "consensus.max_block_bytes: 1099511627776 is outside the allowed range"),
    ("window not multiple", setter("consensus", "watermark_window", value=100), "consensus.watermark_window: must be a multiple of checkpoint_interval (32)"),
    ("window too small", setter("consensus", "watermark_window", value=32), "consensus.watermark_window: must be at least 2 * checkpoint_interval (64), got 32"),
    ("default window vs interval", setter("consensus", value={"checkpoint_interval": 64, "watermark_window": 96}), "must be a multiple of checkpoint_interval (64)"),
    ("view change cap", setter("consensus", "max_view_change_timeout_ms", value=1000), "consensus.max_view_change_timeout_ms: must be at least view_change_timeout_ms (2000)"),
    ("pipeline over window", setter("consensus", "max_pipeline", value=129), "consensus.max_pipeline: must be at most watermark_window (128)"),
    ("tx bytes over block", setter("consensus", "max_tx_bytes", value=5 * 1024 * 1024), "consensus.max_tx_bytes"),
    ("tx bytes over block bytes", setter("consensus", "max_block_bytes", value=1000), "consensus.max_tx_bytes: must be at most max_block_bytes (1000)"),
    ("tx gas over block gas", setter("consensus", "max_tx_gas", value=200_000_000), "consensus.max_tx_gas: must be at most max_block_gas (100000000)"),
    # validators
    ("no validators", setter("validators", value=[]), "validators: at least 1 validator is required"),
    ("too many validators", setter("validators", value=[{"name": f"v{i}", "public_key": PKS[0].hex()} for i in range(129)]), "validators: 129 entries is over the limit of 128"),
    ("name uppercase", setter("validators", 0, "name", value="Node0"), "validators[0].name: 'Node0' is not a valid name"),
    ("name leading dash", setter("validators", 0, "name", value="-node"), "validators[0].name: '-node' is not a valid name"),
    ("name too long", setter("validators", 0, "name", value="n" * 33), "validators[0].name: 'nnnnnnnnnnnnnn"),
    ("name newline", setter("validators", 0, "name", value="node0\n"), "validators[0].name: 'node0\\n' is not a valid name"),
    ("name int", setter("validators", 0, "name", value=0), "validators[0].name: expected a string, got integer"),
    ("duplicate name", setter("validators", 3, "name", value="node1"), "validators[3].name: duplicate of validators[1]"),
    ("key 31 bytes", setter("validators", 2, "public_key", value=PK31), "validators[2].public_key: expected 32 bytes (64 hex characters), got 31"),
    ("key 33 bytes", setter("validators", 2, "public_key", value=PKS[2].hex() + "00"), "validators[2].public_key: expected 32 bytes (64 hex characters), got 33"),
    ("key odd hex", setter("validators", 2, "public_key", value=PKS[2].hex()[:63]), "validators[2].public_key: expected 32 bytes (64 hex characters), got 63 hex characters"),
    ("key not hex", setter("validators", 2, "public_key", value="g" * 64), "validators[2].public_key: 'gggggggg"),
    ("key with spaces", setter("validators", 2, "public_key", value=" " + PKS[2].hex()), "is not a hex string"),
    ("key bytes list", setter("validators", 2, "public_key", value=list(PKS[2])), "validators[2].public_key: expected a hex string, got array"),
    ("key small order", setter("validators", 1, "public_key", value=SMALL_ORDER_KEY.hex()), "validators[1].public_key: not a usable Ed25519 public key"),
    ("key not on curve", setter("validators", 1, "public_key", value="ff" * 32), "validators[1].public_key: not a usable Ed25519 public key"),
    ("duplicate key", setter("validators", 3, "public_key", value=PKS[0].hex()), "validators[3].public_key: duplicate of validators[0]"),
    ("duplicate key other case", setter("validators", 3, "public_key", value="0x" + PKS[0].hex().upper()), "validators[3].public_key: duplicate of validators[0]"),
    # accounts
    ("address short", setter("accounts", 1, "address", value="ab" * 19), "accounts[1].address: expected 20 bytes (40 hex characters), got 19"),
    ("duplicate address", setter("accounts", 1, "address", value=ADDR[0].hex()), "accounts[1].address: duplicate of accounts[0]"),
    ("duplicate address spelled differently", setter("accounts", 1, "address", value="0x" + ADDR[0].hex().upper()), "accounts[1].address: duplicate of accounts[0]"),
    ("balance negative", setter("accounts", 0, "balance", value=-1), "accounts[0].balance: -1 is outside the allowed range [0, 18446744073709551615]"),
    ("balance over u64", setter("accounts", 0, "balance", value=2**64), "accounts[0].balance: 18446744073709551616 is outside the allowed range"),
    ("balance string", setter("accounts", 0, "balance", value="1000"), "accounts[0].balance: expected an integer, got string"),
    ("balance bool", setter("accounts", 0, "balance", value=False), "accounts[0].balance: expected an integer, got boolean"),
    ("balance float", setter("accounts", 0, "balance", value=1e3), "accounts[0].balance: expected an integer, got number"),
    ("supply over u64", setter("accounts", 1, "balance", value=2**64 - 1), "accounts: total supply of accounts and contracts is 18446744073709552622, over the u64 maximum"),
    # contracts
    ("code empty", setter("contracts", 0, "code", value=""), "contracts[0].code: must not be empty"),
    ("code too big", setter("contracts", 0, "code", value="00" * (64 * 1024 + 1)), "contracts[0].code: 65537 bytes is over the limit of 65536"),
    ("code not hex", setter("contracts", 0, "code", value="xyz"), "contracts[0].code: 'xyz' is not a hex string"),
    ("code odd hex", setter("contracts", 0, "code", value="600"), "contracts[0].code: odd number of hex characters (3)"),
    ("contract at account", setter("contracts", 0, "address", value=ADDR[1].hex()), "contracts[0].address: same address as accounts[1]"),
    ("duplicate contract", append("contracts", value={"address": ADDR[5].hex(), "code": "01", "balance": 0, "storage": {}}), "contracts[1].address: duplicate of contracts[0]"),
    ("contract balance", setter("contracts", 0, "balance", value=-3), "contracts[0].balance: -3 is outside the allowed range"),
    ("contract supply", setter("contracts", 0, "balance", value=2**64 - 1), "accounts: total supply of accounts and contracts"),
    ("storage list", setter("contracts", 0, "storage", value=[["01", "aa"]]), "contracts[0].storage: expected an object of hex key to hex value, got array"),
    ("storage same key twice", setter("contracts", 0, "storage", value={"01": "aa", "0x01": "bb"}), "contracts[0].storage: duplicate key 01"),
    ("storage empty key", setter("contracts", 0, "storage", value={"": "aa"}), "contracts[0].storage: empty key"),
    ("storage empty value", setter("contracts", 0, "storage", value={"01": ""}), "contracts[0].storage['01']: empty value"),
    ("storage big value", setter("contracts", 0, "storage", value={"01": "00" * 4097}), "contracts[0].storage['01']: value is 4097 bytes, over the limit of 4096"),
    ("storage big key", setter("contracts", 0, "storage", value={"00" * 65: "01"}), "key is 65 bytes, over the limit of 64"),
    ("storage bad key hex", setter("contracts", 0, "storage", value={"zz": "01"}), "contracts[0].storage['zz'] (key): 'zz' is not a hex string"),
    ("storage value int", setter("contracts", 0, "storage", value={"01": 1}), "contracts[0].storage['01']: expected a hex string, got integer"),
    # permissions
    ("submit anyone", setter("permissions", "submit", value="anyone"), "permissions.submit: expected 'any' or a list of hex addresses, got 'anyone'"),
    ("admin any", setter("permissions", "admin", value="any"), "permissions.admin: expected a list of hex addresses, got 'any'"),
    ("admin null", setter("permissions", "admin", value=None), "permissions.admin: expected an array, got null"),
    ("deploy bad address", setter("permissions", "deploy", value=["abcd"]), "permissions.deploy[0]: expected 20 bytes (40 hex characters), got 2"),
    ("deploy duplicate", setter("permissions", "deploy", value=[ADDR[0].hex(), ADDR[2].hex(), ADDR[0].hex()]), "permissions.deploy[2]: duplicate of permissions.deploy[0]"),
    ("submit number", setter("permissions", "submit", value=1), "permissions.submit: expected an array, got integer"),
]
# fmt: on


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_error_names_the_field(mutate: Mutation, expected: str) -> None:
    doc = valid_doc()
    mutate(doc)
    err = problems_of(doc)
    assert expected in str(err)
    assert any(expected in p for p in err.problems), err.problems
    # every problem is one line and points at something
    for problem in err.problems:
        assert problem and "\n" not in problem


def test_every_problem_is_collected() -> None:
    doc = valid_doc()
    doc["extra"] = True
    doc["chain_id"] = "BAD"
    doc["consensus"]["watermark_window"] = 100
    doc["validators"][2]["public_key"] = PK31
    doc["validators"][3]["name"] = "node0"
    doc["accounts"][1]["address"] = ADDR[0].hex()
    doc["accounts"][0]["balance"] = -1
    doc["contracts"][0]["code"] = ""
    doc["permissions"]["admin"] = "any"
    err = problems_of(doc)
    expected = [
        "unknown field 'extra'",
        "chain_id: 'BAD' is not a valid chain id",
        "consensus.watermark_window: must be a multiple of checkpoint_interval (32)",
        "validators[2].public_key: expected 32 bytes (64 hex characters), got 31",
        "validators[3].name: duplicate of validators[0]",
        "accounts[1].address: duplicate of accounts[0]",
        "accounts[0].balance: -1 is outside",
        "contracts[0].code: must not be empty",
        "permissions.admin: expected a list of hex addresses",
    ]
    for want in expected:
        assert sum(want in p for p in err.problems) == 1, (want, err.problems)
    assert len(err.problems) == len(expected)
    assert str(err).splitlines() == err.problems


def test_error_is_a_value_error_and_pickles() -> None:
    err = problems_of({"chain_id": 1})
    assert isinstance(err, ValueError)
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, GenesisError) and again.problems == err.problems


def test_error_str_is_capped_but_problems_are_not() -> None:
    doc = valid_doc()
    doc["accounts"] = [{"address": "00", "balance": -1} for _ in range(300)]
    err = problems_of(doc)
    assert len(err.problems) == 600
    lines = str(err).splitlines()
    assert len(lines) == GenesisError.MAX_SHOWN + 1 and lines[-1] == "... and 400 more problems"


@pytest.mark.parametrize(
    ("value", "kind"), [([], "array"), ("genesis", "string"), (3, "integer"), (None, "null")]
)
def test_document_must_be_an_object(value: object, kind: str) -> None:
    assert problems_of(value).problems == [f"genesis: expected a JSON object, got {kind}"]


def test_duplicate_json_keys_are_refused() -> None:
    text = genesis_to_json_text(parse_genesis(valid_doc()))
    text = text.replace('"initial_height": 1,', '"initial_height": 1, "initial_height": 2,')
    text = text.replace('"name": "node1"', '"name": "node1", "name": "node9"')
    text = text.replace('"01": "aa"', '"01": "aa", "01": "cc"')
    with pytest.raises(GenesisError) as info:
        genesis_from_json_text(text)
    assert info.value.problems == [
        "duplicate field 'initial_height'",
        "validators[1]: duplicate field 'name'",
        "contracts[0].storage: duplicate key '01'",
    ]


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(constant: str) -> None:
    text = genesis_to_json_text(parse_genesis(valid_doc()))
    text = text.replace('"initial_height": 1', f'"initial_height": {constant}')
    with pytest.raises(GenesisError, match=f"{constant} is not allowed"):
        genesis_from_json_text(text)


# --------------------------------------------------------------------------- direct construction

T0 = "2026-11-26T07:00:00Z"


def test_constructors_validate_too() -> None:
    good = parse_genesis(valid_doc())
    with pytest.raises(GenesisError, match=r"chain_id: 'BAD' is not a valid chain id"):
        dataclasses.replace(good, chain_id="BAD")
    with pytest.raises(GenesisError, match=r"validators\[1\].name: duplicate of validators\[0\]"):
        dataclasses.replace(good, validators=(good.validators[0], good.validators[0]))
    with pytest.raises(GenesisError, match=r"validators\[0\]: expected Validator, got tuple"):
        Genesis(chain_id="c", genesis_time=T0, validators=(("n", PKS[0]),))  # type: ignore[arg-type]
    with pytest.raises(GenesisError, match=r"accounts\[0\].address: expected 20 bytes, got 3"):
        dataclasses.replace(good, accounts=(Account(b"abc", 1),))
    with pytest.raises(GenesisError, match=r"validators\[0\].public_key: expected bytes, got str"):
        Genesis(chain_id="c", genesis_time=T0, validators=(Validator("n", "ab" * 32),))  # type: ignore[arg-type]
    with pytest.raises(GenesisError, match=r"consensus: expected ConsensusParams, got dict"):
        dataclasses.replace(good, consensus={})  # type: ignore[arg-type]
    with pytest.raises(GenesisError, match=r"permissions.admin: must be a list of addresses"):
        dataclasses.replace(good, permissions=Permissions(admin=None))  # type: ignore[arg-type]
    with pytest.raises(GenesisError, match=r"contracts\[0\].storage: duplicate key 01"):
        dataclasses.replace(
            good, contracts=(Contract(ADDR[5], b"\x01", 0, ((b"\x01", b"a"), (b"\x01", b"b"))),)
        )


def test_consensus_params_validate_on_construction() -> None:
    with pytest.raises(GenesisError) as info:
        ConsensusParams(checkpoint_interval=200, max_pipeline=0, max_block_gas=True)
    assert info.value.problems == [
        "consensus.max_block_gas: expected an integer, got boolean",
        "consensus.max_pipeline: 0 is outside the allowed range [1, 100000]",
        "consensus.watermark_window: must be at least 2 * checkpoint_interval (400), got 256",
        "consensus.watermark_window: must be a multiple of checkpoint_interval (200)",
    ]
    assert ConsensusParams(checkpoint_interval=1, watermark_window=2, max_pipeline=2)


def test_genesis_time_helpers() -> None:
    assert parse_genesis_time("1970-01-01T00:00:00Z") == 0
    assert parse_genesis_time("2026-11-26T07:00:00Z") == 1_795_676_400_000
    assert parse_genesis_time("9999-12-31T23:59:59Z") == 253_402_300_799_000
    assert format_genesis_time(1_795_676_400_999) == "2026-11-26T07:00:00Z"
    for bad in ["2026-11-26 07:00:00Z", "２０２６-11-26T07:00:00Z", "2026-11-26T07:00:00Z\n"]:
        with pytest.raises(ValueError, match="not an RFC 3339 UTC time"):
            parse_genesis_time(bad)


# --------------------------------------------------------------------------- round trips, hash


def test_round_trip_json_value_and_text() -> None:
    g = parse_genesis(valid_doc())
    assert parse_genesis(g.to_json()) == g
    assert genesis_from_json_text(genesis_to_json_text(g)) == g
    assert parse_genesis(json.loads(json.dumps(g.to_json()))).hash() == g.hash()
    text = genesis_to_json_text(g)
    assert text.endswith("}\n") and text.startswith('{\n  "chain_id": "quorum-test",\n')


def test_hash_definitions() -> None:
    g = parse_genesis(valid_doc())
    assert g.hash() == tagged_hash("genesis", encode(g.to_value()))
    assert g.validators_hash() == tagged_hash(
        "validators", encode([[v.name, v.public_key] for v in g.validators])
    )
    value = g.to_value()
    assert value["permissions"] == {"submit": None, "deploy": [ADDR[0]], "admin": [ADDR[1]]}
    assert value["contracts"][0]["storage"] == [[b"\x01", b"\xaa"], [b"\x02", b"\xbb"]]
    assert value["validators"][0] == {"name": "node0", "public_key": PKS[0]}


def _reorder(value: Any) -> Any:
    """The same JSON value with every object's keys in reverse order."""
    if isinstance(value, dict):
        return {k: _reorder(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reorder(v) for v in value]
    return value


def test_hash_ignores_key_order_whitespace_and_hex_spelling() -> None:
    doc = valid_doc()
    base = parse_genesis(doc).hash()
    shuffled = _reorder(doc)
    assert list(shuffled) != list(doc)
    assert parse_genesis(shuffled).hash() == base
    for text in (
        json.dumps(doc, sort_keys=True),
        json.dumps(shuffled, indent=7),
        json.dumps(doc, separators=(",", ":")),
    ):
        assert genesis_from_json_text(text).hash() == base
    spelled = copy.deepcopy(doc)
    spelled["validators"][0]["public_key"] = "0x" + PKS[0].hex().upper()
    spelled["contracts"][0]["storage"] = {"0x01": "AA", "02": "0xbb"}
    assert parse_genesis(spelled).hash() == base


def _variants(g: Genesis) -> dict[str, Genesis]:
    """``g`` with exactly one thing changed, for every kind of field."""
    r = dataclasses.replace
    c = g.consensus
    v = g.validators
    k = g.contracts[0]
    out = {
        "chain_id": r(g, chain_id="quorum-test2"),
        "genesis_time": r(g, genesis_time="2026-11-26T07:00:01Z"),
        "initial_height": r(g, initial_height=2),
        "validator order": r(g, validators=(v[1], v[0], *v[2:])),
        "validator name": r(g, validators=(Validator("zed", v[0].public_key), *v[1:])),
        "validator key": r(g, validators=(Validator(v[0].name, PKS[7]), *v[1:])),
        "validator removed": r(g, validators=v[:3]),
        "account balance": r(g, accounts=(Account(ADDR[0], 1001), g.accounts[1])),
        "account address": r(g, accounts=(Account(ADDR[2], 1000), g.accounts[1])),
        "account order": r(g, accounts=(g.accounts[1], g.accounts[0])),
        "account added": r(g, accounts=(*g.accounts, Account(ADDR[3], 0))),
        "contract address": r(g, contracts=(r(k, address=ADDR[6]),)),
        "contract code": r(g, contracts=(r(k, code=b"\x60\x02"),)),
        "contract balance": r(g, contracts=(r(k, balance=8),)),
        "contract storage value": r(
            g, contracts=(r(k, storage=((b"\x01", b"\xaa"), (b"\x02", b"\xbc"))),)
        ),
        "contract storage key": r(
            g, contracts=(r(k, storage=((b"\x01", b"\xaa"), (b"\x03", b"\xbb"))),)
        ),
        "contract removed": r(g, contracts=()),
        "submit restricted": r(g, permissions=r(g.permissions, submit=())),
        "deploy anyone": r(g, permissions=r(g.permissions, deploy=None)),
        "deploy other": r(g, permissions=r(g.permissions, deploy=(ADDR[3],))),
        "admin added": r(g, permissions=r(g.permissions, admin=(ADDR[1], ADDR[2]))),
        "admin none": r(g, permissions=r(g.permissions, admin=())),
    }
    for name in c.to_value():
        value = getattr(c, name)
        changed = {
            "checkpoint_interval": 16,
            "watermark_window": 256,
            "max_pipeline": 5,
            "max_block_bytes": value - 1,
            "max_block_gas": value - 1,
        }.get(name, value + 1)
        out[f"consensus.{name}"] = r(g, consensus=r(c, **{name: changed}))
    return out


def test_hash_changes_when_any_one_field_changes() -> None:
    g = parse_genesis(valid_doc())
    variants = _variants(g)
    assert len(variants) == 22 + 11
    hashes = {name: variant.hash() for name, variant in variants.items()}
    hashes["base"] = g.hash()
    assert len(set(hashes.values())) == len(hashes)
    for name, variant in variants.items():
        assert variant != g, name
        touches_validators = name.startswith("validator")
        assert (variant.validators_hash() != g.validators_hash()) == touches_validators, name


# --------------------------------------------------------------------------- property


@st.composite
def consensus_params(draw: st.DrawFn) -> ConsensusParams:
    interval = draw(st.integers(1, 500))
    window = interval * draw(st.integers(2, 20))
    block_bytes = draw(st.integers(1, 8 * 1024 * 1024))
    block_gas = draw(st.integers(1, 10**12))
    timeout = draw(st.integers(1, 600_000))
    return ConsensusParams(
        max_block_txs=draw(st.integers(1, 100_000)),
        max_block_bytes=block_bytes,
        max_tx_bytes=draw(st.integers(1, min(block_bytes, 1024 * 1024))),
        max_block_gas=block_gas,
        max_tx_gas=draw(st.integers(1, block_gas)),
        checkpoint_interval=interval,
        watermark_window=window,
        view_change_timeout_ms=timeout,
        max_view_change_timeout_ms=draw(st.integers(timeout, 3_600_000)),
        max_clock_skew_ms=draw(st.integers(1, 3_600_000)),
        max_pipeline=draw(st.integers(1, window)),
    )


address_lists = st.lists(st.binary(min_size=20, max_size=20), max_size=4, unique=True)


@st.composite
def genesis_docs(draw: st.DrawFn) -> Genesis:
    n = draw(st.integers(1, 10))
    seeds = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n, unique=True))
    names = draw(
        st.lists(
            st.from_regex(r"[a-z0-9][a-z0-9_-]{0,31}", fullmatch=True),
            min_size=n,
            max_size=n,
            unique=True,
        )
    )
    addresses = draw(st.lists(st.binary(min_size=20, max_size=20), max_size=8, unique=True))
    split = draw(st.integers(0, len(addresses)))
    accounts = [(a, draw(st.integers(0, 2**60))) for a in addresses[:split]]
    storage = st.dictionaries(
        st.binary(min_size=1, max_size=64), st.binary(min_size=1, max_size=64), max_size=4
    )
    contracts = [
        Contract(
            a,
            draw(st.binary(min_size=1, max_size=64)),
            draw(st.integers(0, 2**60)),
            tuple(draw(storage).items()),
        )
        for a in addresses[split:]
    ]
    seconds = draw(st.integers(0, 253_402_300_799))
    return build_genesis(
        draw(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,49}", fullmatch=True)),
        [(name, PrivateKey(seed).public_key) for name, seed in zip(names, seeds, strict=True)],
        accounts,
        genesis_time=format_genesis_time(seconds * 1000),
        consensus=draw(consensus_params()),
        initial_height=draw(st.integers(1, 2**62)),
        permissions=Permissions(
            submit=draw(st.none() | address_lists.map(tuple)),
            deploy=draw(st.none() | address_lists.map(tuple)),
            admin=tuple(draw(address_lists)),
        ),
        contracts=contracts,
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(genesis_docs())
def test_property_round_trip_and_stable_hash(g: Genesis) -> None:
    again = parse_genesis(g.to_json())
    assert again == g
    assert again.hash() == g.hash() == tagged_hash("genesis", encode(g.to_value()))
    assert again.validators_hash() == g.validators_hash()
    from_text = genesis_from_json_text(genesis_to_json_text(g))
    assert from_text == g and from_text.hash() == g.hash()
    assert parse_genesis(_reorder(g.to_json())).hash() == g.hash()
    assert g.genesis_time_ms == parse_genesis_time(g.genesis_time)
    assert [g.validator_index(v.public_key) for v in g.validators] == list(range(g.n))
