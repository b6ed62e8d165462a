"""A real `--permissioned` testnet driven through the CLI, as a user would (issue 16):
an unlisted key is refused (exit 3, not_permitted), a non-admin grant is refused, the
admin's grant lets the key's transfer commit, and a revoke stops it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.netutil import free_base_port, quorum, quorum_json

pytestmark = pytest.mark.slow


def test_roles_on_a_permissioned_testnet(tmp_path: Path) -> None:
    directory = tmp_path / "testnet"
    base = free_base_port(8)
    init = quorum_json(
        "testnet", "init", "--permissioned", "--validators", "4", "--accounts", "2",
        "--dir", directory, "--base-port", str(base),
    )  # fmt: skip
    perms = init["genesis"]["permissions"]
    admin_key, member_key = (directory / a["file"] for a in init["accounts"])
    admin, member = (a["address"] for a in init["accounts"])
    assert perms["admin"] == [admin] and perms["submit"] == [admin, member]
    stranger_key = tmp_path / "stranger.json"
    stranger = quorum_json("keys", "new", "--out", stranger_key, "--no-password")["address"]
    rpc = init["nodes"][0]["rpc"]
    other_rpc = init["nodes"][2]["rpc"]
    at = ("--node", rpc, "--genesis", directory / "node0" / "genesis.json")

    def send(key: Path, to: str, node: str = rpc) -> tuple[int, dict[str, object]]:
        done = quorum(
            "tx", "transfer", "--from", key, "--to", to, "--amount", "5", "--node", node,
            "--genesis", directory / "node0" / "genesis.json", "--json", check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    def roles(action: str, key: Path, role: str = "submit") -> tuple[int, dict[str, object]]:
        done = quorum(
            "permissions", action, stranger, "--role", role, "--from", key, *at, "--json",
            check=False,
        )  # fmt: skip
        return done.returncode, json.loads(done.stdout)

    quorum("testnet", "start", "--dir", directory)
    try:
        assert send(member_key, stranger)[0] == 0  # fund the stranger (a member may transact)

        code, refused = send(stranger_key, member)
        assert (code, refused["status"], refused["code"]) == (3, "rejected", "not_permitted")

        code, refused = roles("grant", member_key)
        assert (code, refused["code"]) == (3, "not_permitted")

        code, granted = roles("grant", admin_key)
        assert code == 0 and granted["status"] == "committed" and granted["verified"] is True
        assert granted["permission"]["state"] == "applied"  # type: ignore[index]
        listing = quorum_json("permissions", "list", *at)
        assert stranger in listing["roles"]["submit"] and listing["verified"] is True

        code, sent = send(stranger_key, member, node=other_rpc)  # any node sees the grant
        assert (code, sent["status"]) == (0, "committed")

        code, revoked = roles("revoke", admin_key)
        assert code == 0 and revoked["permission"]["state"] == "applied"  # type: ignore[index]
        code, refused = send(stranger_key, member)
        assert (code, refused["code"]) == (3, "not_permitted")
    finally:
        quorum("testnet", "stop", "--dir", directory, check=False)
