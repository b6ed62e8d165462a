"""MessagePack submission (ledger/node/api_binary.py): the binary form of
``POST /v1/transactions`` and its answer, through the API layer and the client library,
against a fake node; and every bad body a 4xx that changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.client import AsyncQuorumClient, RequestFailed
from ledger.node.api import MAX_REQUEST_BYTES, MAX_TXS_PER_REQUEST, build_app

MSGPACK = "application/msgpack"


class FakeNode:
    """Answers a submission with one result per transaction; ``answer`` overrides them."""

    def __init__(self, answer: dict[str, Any] | None = None) -> None:
        self.submitted: list[tuple[list[bytes], bool, int]] = []
        self.answer = answer

    async def submit(self, raws: list[bytes], wait: bool, timeout_ms: int) -> list[dict[str, Any]]:
        self.submitted.append((raws, wait, timeout_ms))
        if self.answer is not None:
            return [dict(self.answer) for _ in raws]
        return [{"tx_hash": r.hex(), "status": "pending"} for r in raws]


def post(node: FakeNode, body: bytes, *, accept: str | None = None) -> httpx.Response:
    headers = {"content-type": MSGPACK}
    if accept is not None:
        headers["accept"] = accept

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=build_app(node))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            return await http.post("/v1/transactions", content=body, headers=headers)

    return trio.run(go)


def pack(doc: Any) -> bytes:
    return bytes(msgpack.packb(doc, use_bin_type=True))


def test_raw_bytes_are_taken_and_the_answer_is_json_unless_msgpack_is_asked_for() -> None:
    node = FakeNode()
    txs = [b"\x01" * 40, b"\x02" * 41]
    answer = post(node, pack({"txs": txs, "wait": True, "timeout_ms": 500}))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert [r["tx_hash"] for r in answer.json()["results"]] == [t.hex() for t in txs]
    assert node.submitted == [(txs, True, 500)]

    binary = post(node, pack({"tx": txs[0]}), accept=f"text/plain, {MSGPACK};q=0.9")
    assert binary.headers["content-type"] == MSGPACK
    assert msgpack.unpackb(binary.content) == {
        "results": [{"tx_hash": txs[0].hex(), "status": "pending"}]
    }
    assert node.submitted[-1] == ([txs[0]], False, 30_000)


def test_backpressure_and_refusal_answers_keep_their_status_in_msgpack() -> None:
    busy = FakeNode({"status": "rejected", "code": "busy", "retry_after_ms": 1500})
    answer = post(busy, pack({"txs": [b"\x01" * 40]}), accept=MSGPACK)
    assert answer.status_code == 429 and answer.headers["retry-after"] == "2"
    assert msgpack.unpackb(answer.content)["results"][0]["code"] == "busy"

    refused = FakeNode({"status": "rejected", "code": "not_permitted", "error": "no role"})
    answer = post(refused, pack({"txs": [b"\x01" * 40]}), accept=MSGPACK)
    assert answer.status_code == 403
    assert msgpack.unpackb(answer.content)["code"] == "not_permitted"


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b"\xc1", 400, "bad_msgpack", "not valid MessagePack"),  # a reserved byte
        (pack({"txs": [b"\x01"]}) + b"\x00", 400, "bad_msgpack", "trailing bytes"),
        (b"\xd4\x01\x00", 400, "bad_msgpack", "extension type"),  # fixext 1
        (pack({1: b"\x01"}), 400, "bad_msgpack", "not valid MessagePack"),  # an int key
        (pack([b"\x01"]), 400, "bad_request", "map (MessagePack)"),
        (pack({"txs": ["01ab"]}), 400, "bad_request", "txs[0]: expected a transaction's bytes"),
        (pack({"txs": [b""]}), 400, "bad_request", "txs[0]"),
        (pack({"txs": []}), 400, "bad_request", "non-empty list"),
        (pack({"tx": b"\x01", "txs": [b"\x01"]}), 400, "bad_request", "exactly one of"),
        (pack({"txs": [b"\x01"], "wait": 1}), 400, "bad_request", "wait"),
        (pack({"txs": [b"\x01"], "timeout_ms": 1.5}), 400, "bad_request", "timeout_ms"),
        (pack({"txs": [b"\x01"], "fee": 3}), 400, "bad_request", "unknown field 'fee'"),
        (pack({"txs": [b"\x01"] * (MAX_TXS_PER_REQUEST + 1)}), 413, "too_large", "at most"),
        (pack({"txs": [b"\x01" * (MAX_REQUEST_BYTES + 1)]}), 413, "too_large", "over"),
    ],
)
def test_a_bad_body_is_a_4xx_that_says_why_and_submits_nothing(
    body: bytes, status: int, code: str, says: str
) -> None:
    node = FakeNode()
    answer = post(node, body, accept=MSGPACK)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/json")  # errors stay JSON
    assert answer.json()["code"] == code
    assert says in answer.json()["error"]
    assert node.submitted == []


@settings(max_examples=150, deadline=None)
@given(
    st.binary(max_size=200)
    | st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.binary(max_size=8)
        | st.text(max_size=8),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=12,
    ).map(pack)
)
def test_fuzzed_msgpack_bodies_never_5xx(body: bytes) -> None:
    node = FakeNode()
    answer = post(node, body)
    assert answer.status_code < 500
    if answer.status_code != 200:
        assert node.submitted == []


def test_the_client_library_posts_and_reads_msgpack() -> None:
    node = FakeNode()
    txs = [b"\x05" * 60, b"\x06" * 61]

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        client = AsyncQuorumClient("http://node")
        transport = httpx.ASGITransport(app=build_app(node))  # type: ignore[arg-type]
        client._http = httpx.AsyncClient(transport=transport, base_url="http://node")
        async with client:
            binary = await client.submit(txs, wait=True, timeout_ms=200, binary=True)
            text = await client.submit(txs, binary=False)
        return binary, text

    binary, text = trio.run(go)
    assert binary == text == [{"tx_hash": t.hex(), "status": "pending"} for t in txs]
    assert node.submitted == [(txs, True, 200), (txs, False, 30_000)]


def test_the_client_library_raises_the_json_error_of_a_msgpack_submission() -> None:
    async def go() -> None:
        client = AsyncQuorumClient("http://node")
        transport = httpx.ASGITransport(app=build_app(FakeNode()))  # type: ignore[arg-type]
        client._http = httpx.AsyncClient(transport=transport, base_url="http://node")
        async with client:
            await client.submit([b""], binary=True)

    with pytest.raises(RequestFailed) as raised:
        trio.run(go)
    assert raised.value.status == 400 and raised.value.code == "bad_request"
