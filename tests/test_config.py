"""config.toml: what testnet init writes loads back; every malformed field is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.chain.accounts import Account
from ledger.config import ConfigError, HostPort, NodeConfig, PeerConfig, load_config

PEER = PeerConfig("node1", HostPort("10.0.0.2", 26656), b"\x01" * 32)


def write(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return home


def test_round_trip(tmp_path: Path) -> None:
    config = NodeConfig(
        home=tmp_path.resolve(),
        name="bank-a",
        rpc_listen=HostPort("127.0.0.1", 8080),
        p2p_listen=HostPort("0.0.0.0", 26656),
        peers=(PEER,),
        mempool_max_txs=10,
        log_format="json",
    )
    write(tmp_path, config.to_toml())
    assert load_config(tmp_path) == config


GOOD = """
[node]
name = "n"
[rpc]
listen = "127.0.0.1:1"
[p2p]
listen = "127.0.0.1:2"
"""


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "node.name"),
        ("[node\nname=1", "not valid TOML"),
        (GOOD + "[extra]\n", "unknown field 'extra'"),
        (GOOD.replace('name = "n"', 'name = "n"\ncolour = "red"'), "unknown field 'colour'"),
        (GOOD.replace("127.0.0.1:1", "localhost"), "rpc.listen"),
        (GOOD.replace("127.0.0.1:2", "127.0.0.1:70000"), "outside 1..65535"),
        (GOOD.replace('name = "n"', 'name = "n"\nlog_level = "loud"'), "log_level"),
        (GOOD.replace('name = "n"', 'name = "n"\nlog_format = "xml"'), "log_format"),
        (GOOD + "[mempool]\nmax_txs = -1\n", "mempool.max_txs"),
        (GOOD + "[mempool]\nmax_txs = true\n", "mempool.max_txs"),
        (GOOD.replace("[p2p]", "[p2p]\npeers = 3"), "p2p.peers"),
        (
            GOOD + '[[p2p.peers]]\nname = "x"\naddress = "h:1"\nvalidator_public_key = "zz"\n',
            "validator_public_key",
        ),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert needle in str(info.value)
    assert "config.toml" in str(info.value)


def test_missing_config_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="testnet init"):
        load_config(tmp_path)


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_account_round_trip(balance: int, nonce: int) -> None:
    account = Account(balance, nonce)
    assert Account.decode(account.encode()) == account
