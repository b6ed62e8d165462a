"""/openapi.json: built from the routing table, listing every route, and the client library's
requests checked against it (paths, methods, query parameters, bodies)."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
from starlette.routing import Route

from ledger.client import AsyncQuorumClient, QuorumClient
from ledger.node import api_schemas
from ledger.node.api import build_app
from ledger.node.openapi import DescribedRoute, Operation, UndescribedRoute, check, describe
from tests.test_api import Client, FakeNode

HASH = "ab" * 32
ADDRESS = "cd" * 20


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    response = Client(FakeNode()).get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def test_every_route_is_described_with_its_method(document: dict[str, Any]) -> None:
    app = build_app(FakeNode())  # type: ignore[arg-type]
    routed = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert routed == described
    assert len(described) >= 18
    assert document["openapi"].startswith("3.1")
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            in_path = set(re.findall(r"\{(\w+)\}", path))
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == in_path, (path, method)


def test_every_schema_reference_resolves(document: dict[str, Any]) -> None:
    names = set(document["components"]["schemas"])
    refs = re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document))
    assert refs and set(refs) <= names
    assert set(refs) == names  # and no schema is left unused


def test_a_route_without_an_operation_or_with_the_wrong_parameters_is_refused() -> None:
    async def endpoint(request: Any) -> Any:  # pragma: no cover - never called
        return None

    plain = Route("/plain", endpoint)
    with pytest.raises(UndescribedRoute, match="no operation"):
        describe([plain], title="t", version="1", description="", components={})
    wrong = DescribedRoute("/x/{a}", endpoint, "GET", Operation("s", "t", {}))
    with pytest.raises(UndescribedRoute, match="path parameters"):
        describe([wrong], title="t", version="1", description="", components={})


def test_check_finds_what_breaks_a_schema(document: dict[str, Any]) -> None:
    health = {"$ref": "#/components/schemas/Health"}
    assert check(document, health, {"healthy": True, "problems": []}) == []
    assert check(document, health, {"healthy": "yes", "problems": []})  # wrong type
    assert check(document, health, {"healthy": False})  # problems missing
    assert check(document, health, {"healthy": False, "problems": [{"code": "?", "message": ""}]})
    height = document["paths"]["/v1/blocks/{height}"]["get"]["parameters"][0]["schema"]
    assert check(document, height, "latest") == [] and check(document, height, "12") == []
    assert check(document, height, "-1")
    submit = {"$ref": "#/components/schemas/SubmitRequest"}
    assert check(document, submit, {"txs": ["00"], "surprise": 1})


def _operation(document: dict[str, Any], request: httpx.Request) -> tuple[str, dict[str, Any]]:
    for template, ops in document["paths"].items():
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template) + "$"
        match = re.match(pattern, request.url.path)
        if match and request.method.lower() in ops:
            return template, {"op": ops[request.method.lower()], "path": match.groupdict()}
    raise AssertionError(f"{request.method} {request.url.path} is not in /openapi.json")


def _problems(document: dict[str, Any], request: httpx.Request) -> list[str]:
    """Where a request differs from its operation in the document."""
    template, found = _operation(document, request)
    op = found["op"]
    where = f"{request.method} {template}"
    params = {(p["in"], p["name"]): p for p in op.get("parameters", [])}
    problems = []
    for name, value in found["path"].items():
        problems += [
            f"{where} {name}: {p}" for p in check(document, params[("path", name)]["schema"], value)
        ]
    for name, value in request.url.params.multi_items():
        param = params.get(("query", name))
        if param is None:
            problems.append(f"{where}: undocumented query parameter {name!r}")
            continue
        schema = param["schema"]
        typed: Any = int(value) if schema.get("type") == "integer" and value.isdigit() else value
        problems += [f"{where} ?{name}: {p}" for p in check(document, schema, typed)]
    body = op.get("requestBody")
    if request.content:
        if body is None:
            problems.append(f"{where}: sends a body the operation does not take")
        else:
            schema = body["content"]["application/json"]["schema"]
            problems += [
                f"{where} body: {p}" for p in check(document, schema, json.loads(request.content))
            ]
    elif body is not None and body.get("required"):
        problems.append(f"{where}: no body")
    return problems


def _answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200, json={"results": [], "validators": [], "healthy": True, "problems": []}
    )


#: Every public method of the blocking client, called as a program would.
SYNC_CALLS: dict[str, Callable[[QuorumClient], object]] = {
    "submit": lambda c: c.submit([bytes.fromhex("0a0b")], wait=True, timeout_ms=500),
    "transaction": lambda c: (c.transaction(HASH), c.transaction(bytes.fromhex(HASH), proof=True)),
    "block": lambda c: (c.block(), c.block(7)),
    "blocks": lambda c: (c.blocks(), c.blocks(before=9, limit=5)),
    "account": lambda c: (c.account(ADDRESS), c.account(bytes.fromhex(ADDRESS), proof=True)),
    "storage": lambda c: c.storage(ADDRESS, b"key"),
    "query": lambda c: (c.query(ADDRESS, "get", ["x", 3]), c.query(ADDRESS, "get", proof=True)),
    "contract": lambda c: c.contract(ADDRESS),
    "status": lambda c: c.status(),
    "validators": lambda c: c.validators(),
    "validator_set": lambda c: (c.validator_set(), c.validator_set(proof=True)),
    "permissions": lambda c: (c.permissions(), c.permissions(proof=True)),
    "health": lambda c: c.health(),
    "healthy": lambda c: c.healthy(),
    "close": lambda c: None,
}

ASYNC_CALLS: dict[str, Callable[[AsyncQuorumClient], Any]] = {
    "submit": lambda c: c.submit([b"\x01"], wait=False),
    "transaction": lambda c: c.transaction(HASH),
    "block": lambda c: c.block(3),
    "status": lambda c: c.status(),
    "health": lambda c: c.health(),
    "aclose": lambda c: c.aclose(),
}


def _public(cls: type) -> set[str]:
    return {
        name
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_")
        and (inspect.isfunction(member) or inspect.iscoroutinefunction(member))
    }


def test_the_clients_requests_match_the_description(document: dict[str, Any]) -> None:
    assert set(SYNC_CALLS) == _public(QuorumClient), "a client method without a check here"
    assert set(ASYNC_CALLS) == _public(AsyncQuorumClient), "a client method without a check here"
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _answer(request)

    client = QuorumClient("http://node")
    client._http = httpx.Client(base_url="http://node", transport=httpx.MockTransport(record))
    for call in SYNC_CALLS.values():
        call(client)

    async def run_async() -> None:
        async_client = AsyncQuorumClient("http://node")
        async_client._http = httpx.AsyncClient(
            base_url="http://node", transport=httpx.MockTransport(record)
        )
        for name, call in ASYNC_CALLS.items():
            if name != "aclose":
                await call(async_client)
        await async_client.aclose()

    trio.run(run_async)
    client.close()
    problems = [p for request in sent for p in _problems(document, request)]
    assert problems == []
    used = {_operation(document, r)[0] for r in sent}
    assert {"/v1/transactions", "/v1/blocks", "/v1/blocks/{height}", "/health"} <= used
    assert len(sent) >= 20


def test_a_request_the_description_does_not_allow_is_caught(document: dict[str, Any]) -> None:
    """The comparison above can fail: requests off the description are reported."""
    bad = [
        httpx.Request("GET", "http://node/v1/blocks/tip"),
        httpx.Request("GET", "http://node/v1/status?verbose=1"),
        httpx.Request("POST", "http://node/v1/transactions", json={"txs": [], "wait": "yes"}),
    ]
    for request in bad:
        assert _problems(document, request), request
    with pytest.raises(AssertionError, match=r"not in /openapi\.json"):
        _problems(document, httpx.Request("DELETE", "http://node/v1/status"))


def test_operations_name_only_schemas_that_exist() -> None:
    assert {"Health", "Block", "BlockList", "Status"} <= set(api_schemas.COMPONENTS)
