"""The HTTP API layer against a fake node: routes, JSON shapes, and 4xx for every bad input."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.node.api import MAX_REQUEST_BYTES, MAX_TXS_PER_REQUEST, build_app


class Client:
    """Drives the ASGI app in-process under trio (the node's runtime) through httpx."""

    def __init__(self, backend: object) -> None:
        self.app = build_app(backend)  # type: ignore[arg-type]

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
                return await http.request(method, path, **kw)

        return trio.run(go)

    def get(self, path: str) -> httpx.Response:
        return self.request("GET", path)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return self.request("POST", path, **kw)


class FakeNode:
    def __init__(self) -> None:
        self.submitted: list[tuple[list[bytes], bool, int]] = []
        self.is_healthy = True

    async def submit(self, raws: list[bytes], wait: bool, timeout_ms: int) -> list[dict[str, Any]]:
        self.submitted.append((raws, wait, timeout_ms))
        return [{"tx_hash": r.hex(), "status": "pending"} for r in raws]

    async def transaction(self, tx_hash: bytes) -> dict[str, Any] | None:
        return (
            {"tx_hash": tx_hash.hex(), "status": "committed", "height": 3}
            if tx_hash[0] == 1
            else None
        )

    async def block(self, height: int | None) -> dict[str, Any] | None:
        if height is None:
            height = 7
        return {"height": height} if height <= 7 else None

    async def account(self, address: bytes) -> dict[str, Any]:
        return {"address": address.hex(), "balance": 5, "nonce": 0}

    async def query(self, address: bytes, method: str, args: list[Any]) -> dict[str, Any]:
        return {"return": len(args), "method": method}

    async def contract(self, address: bytes) -> dict[str, Any] | None:
        return {"address": address.hex(), "code": "00"} if address[0] == 0xAB else None

    async def status(self) -> dict[str, Any]:
        return {"height": 7, "view": 0}

    async def validators(self) -> list[dict[str, Any]]:
        return [{"name": "node0"}]

    async def validator_set(self, proof: bool = False) -> dict[str, Any]:
        return {"epoch": 0, "validators": [], "pending": [], "height": 0}

    async def permissions(self, proof: bool = False) -> dict[str, Any]:
        doc: dict[str, Any] = {"roles": {"submit": "any"}, "admin_threshold": 1, "height": 7}
        return {**doc, "proof": {}} if proof else doc

    async def health(self) -> dict[str, Any]:
        problems = [] if self.is_healthy else [{"code": "starting", "message": "starting"}]
        return {"healthy": self.is_healthy, "problems": problems}

    async def blocks(self, before: int | None, limit: int) -> dict[str, Any]:
        top = 7 if before is None else min(7, before - 1)
        heights = range(top, max(0, top - limit), -1)
        return {"head": 7, "blocks": [{"height": h, "signers": ["node0"]} for h in heights]}

    async def metrics(self) -> bytes:
        return b"quorum_height 7\n"


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture
def client(node: FakeNode) -> Client:
    return Client(node)


def test_submit_and_reads(client: Client, node: FakeNode) -> None:
    r = client.post(
        "/v1/transactions", json={"txs": ["0a0b", "0x0c"], "wait": True, "timeout_ms": 100}
    )
    assert r.status_code == 200
    assert [x["tx_hash"] for x in r.json()["results"]] == ["0a0b", "0c"]
    assert node.submitted == [([b"\x0a\x0b", b"\x0c"], True, 100)]
    assert (
        client.post("/v1/transactions", json={"tx": "ff"}).json()["results"][0]["tx_hash"] == "ff"
    )
    assert client.get("/v1/transactions/" + "01" * 32).json()["status"] == "committed"
    assert client.get("/v1/transactions/" + "02" * 32).status_code == 404
    assert client.get("/v1/blocks/latest").json() == {"height": 7}
    assert client.get("/v1/blocks/3").json() == {"height": 3}
    assert client.get("/v1/blocks/8").status_code == 404
    assert client.get("/v1/accounts/" + "ab" * 20).json()["balance"] == 5
    assert client.post(
        "/v1/contracts/" + "ab" * 20 + "/query", json={"method": "m", "args": [1, "x"]}
    ).json() == {
        "return": 2,
        "method": "m",
    }
    assert client.get("/v1/contracts/" + "ab" * 20).json()["code"] == "00"
    assert client.get("/v1/contracts/" + "cd" * 20).status_code == 404
    assert client.get("/v1/status").json()["height"] == 7
    assert client.get("/v1/validators").json() == {"validators": [{"name": "node0"}]}
    assert client.get("/health").status_code == 200
    node.is_healthy = False
    unhealthy = client.get("/health")
    assert unhealthy.status_code == 503 and unhealthy.json()["problems"][0]["code"] == "starting"
    listed = client.get("/v1/blocks?before=6&limit=3").json()["blocks"]
    assert [b["height"] for b in listed] == [5, 4, 3]
    assert len(client.get("/v1/blocks").json()["blocks"]) == 7
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.text.startswith("quorum_height")


BAD_REQUESTS = [
    ("post", "/v1/transactions", b"{not json", 400, "bad_json"),
    ("post", "/v1/transactions", b"\xff\xfe", 400, "bad_json"),
    ("post", "/v1/transactions", b"[1, 2]", 400, "bad_request"),
    ("post", "/v1/transactions", b"{}", 400, "bad_request"),
    ("post", "/v1/transactions", b'{"tx": "00", "txs": ["00"]}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"txs": []}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"txs": "00"}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"txs": [5]}', 400, "bad_hex"),
    ("post", "/v1/transactions", b'{"txs": ["abc"]}', 400, "bad_hex"),
    ("post", "/v1/transactions", b'{"txs": ["zz"]}', 400, "bad_hex"),
    ("post", "/v1/transactions", b'{"tx": "00", "wait": "yes"}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"tx": "00", "timeout_ms": -1}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"tx": "00", "timeout_ms": 1e3}', 400, "bad_request"),
    ("post", "/v1/transactions", b'{"tx": "00", "surprise": 1}', 400, "bad_request"),
    ("post", "/v1/transactions", b"[" * 100_000 + b"]" * 100_000, 400, "bad_json"),
    ("get", "/v1/transactions/abcd", None, 400, "bad_hex"),
    ("get", "/v1/transactions/" + "zz" * 32, None, 400, "bad_hex"),
    ("get", "/v1/blocks/-1", None, 400, "bad_request"),
    ("get", "/v1/blocks/1e5", None, 400, "bad_request"),
    ("get", "/v1/blocks/" + "9" * 30, None, 400, "bad_request"),
    ("get", "/v1/blocks/" + "9" * 20, None, 400, "bad_request"),
    ("get", "/v1/accounts/1234", None, 400, "bad_hex"),
    ("post", "/v1/contracts/" + "ab" * 20 + "/query", b'{"args": []}', 400, "bad_request"),
    ("post", "/v1/contracts/" + "ab" * 20 + "/query", b'{"method": "m", "args": {}}', 400, "bad_request"),
    ("post", "/v1/contracts/" + "ab" * 20 + "/query", b'{"method": "m", "args": [' + b"1," * 20 + b"1]}", 400, "bad_request"),
    ("get", "/v1/blocks?limit=0", None, 400, "bad_request"),
    ("get", "/v1/blocks?limit=101", None, 400, "bad_request"),
    ("get", "/v1/blocks?before=-1", None, 400, "bad_request"),
    ("get", "/v1/blocks?after=3", None, 400, "bad_request"),
    ("get", "/explorer/../api.py", None, 404, "not_found"),
    ("get", "/explorer/secrets.txt", None, 404, "not_found"),
    ("get", "/v1/nowhere", None, 404, "not_found"),
    ("delete", "/v1/transactions", None, 405, "method_not_allowed"),
    ("get", "/v1/transactions", None, 405, "method_not_allowed"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_requests_get_4xx_json(
    client: Client,
    node: FakeNode,
    method: str,
    path: str,
    body: bytes | None,
    status: int,
    code: str,
) -> None:
    r = client.request(
        method.upper(), path, content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == status, r.text
    doc = r.json()
    assert doc["code"] == code and doc["error"]
    assert node.submitted == []


def test_oversized_bodies_are_refused(client: Client, node: FakeNode) -> None:
    huge = b"x" * (MAX_REQUEST_BYTES + 1)
    r = client.post("/v1/transactions", content=huge)
    assert r.status_code == 413 and r.json()["code"] == "too_large"
    # A lying Content-Length does not get past the cap either: the stream is counted.
    many = {"txs": ["00"] * (MAX_TXS_PER_REQUEST + 1)}
    r = client.post("/v1/transactions", json=many)
    assert r.status_code == 413
    assert node.submitted == []


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["tx", "txs", "wait", "timeout_ms", "x"]), inner, max_size=4),
    max_leaves=12,
).map(lambda v: json.dumps(v).encode()))  # fmt: skip
def test_fuzzed_submit_bodies_never_5xx(body: bytes) -> None:
    client = Client(FakeNode())
    r = client.post("/v1/transactions", content=body)
    assert r.status_code < 500
    if r.status_code >= 400:
        assert "error" in r.json()


class RefusingNode(FakeNode):
    """Refuses every transaction whose first byte is 0xEE: its sender holds no role."""

    async def submit(self, raws: list[bytes], wait: bool, timeout_ms: int) -> list[dict[str, Any]]:
        return [
            {"tx_hash": r.hex(), "status": "rejected", "code": "not_permitted", "error": "no role"}
            if r[0] == 0xEE
            else {"tx_hash": r.hex(), "status": "pending"}
            for r in raws
        ]


def test_a_sender_without_the_role_gets_403_not_permitted_and_roles_are_readable() -> None:
    client = Client(RefusingNode())
    refused = client.post("/v1/transactions", json={"txs": ["ee01", "ee02"]})
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_permitted"
    assert [r["code"] for r in refused.json()["results"]] == ["not_permitted"] * 2
    mixed = client.post("/v1/transactions", json={"txs": ["ee01", "0102"]})
    assert mixed.status_code == 200  # a partly refused batch: each result says why
    listing = client.get("/v1/permissions")
    assert listing.status_code == 200 and listing.json()["admin_threshold"] == 1
    assert "proof" in client.get("/v1/permissions?proof=true").json()
    assert client.get("/v1/permissions?proof=maybe").status_code == 400
