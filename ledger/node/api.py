"""The node's HTTP API: JSON over HTTP/1.1, served by hypercorn's trio worker via Starlette.

Theory of operation. Handlers parse and bound the request, call the :class:`NodeBackend`
(the node implements it; tests use a fake), and render JSON. Hashes, addresses and raw
bytes are lowercase hex strings; amounts, heights and counts are integers.

House rules: bad input is the client's fault and gets a 4xx with ``{"error", "code"}`` —
never a 5xx, never a traceback; bodies are capped before they are read; nothing here
touches consensus state directly. Routes (all JSON unless noted)::

    POST /v1/transactions            {"txs": [hex, ...], "wait": bool, "timeout_ms": int}
                                     (or MessagePack with raw bytes: api_binary.py)
    GET  /v1/transactions/{hash}     status and receipt
    GET  /v1/blocks/latest           header, transactions, commit certificate
    GET  /v1/blocks/{height}
    GET  /v1/accounts/{address}      balance, nonce
    GET  /v1/contracts/{address}     code (hex) and ABI of a deployed contract
    POST /v1/contracts/{address}/query   {"method": str, "args": [...]}   read-only call
    GET  /v1/contracts/{address}/storage/{key}   one storage slot with its state proof
    GET  /v1/status                  height, head, view, primary, peers, syncing, why stalled
    GET  /v1/validators
    GET  /v1/validator-set           the active set in state (epoch, p2p), scheduled set, votes
    GET  /v1/permissions             roles and holders, admin threshold, pending role changes
    GET  /v1/blocks                  the newest headers with their signers (?before, ?limit)
    GET  /health                     200 while making progress, 503 with the problems
    GET  /metrics                    Prometheus text format
    GET  /openapi.json               this list as OpenAPI 3.1, built from the routes below
    GET  /explorer                   the block explorer page (and /explorer/{asset}; / redirects)

Each route carries its OpenAPI operation (ledger/node/api_schemas.py); ledger/node/openapi.py
builds the description from the routing table.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Final, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ledger import version
from ledger.chain.store_check import StoreError
from ledger.node import api_binary
from ledger.node import api_schemas as ops
from ledger.node.api_limits import (
    DEFAULT_BLOCKS_LISTED,
    DEFAULT_WAIT_MS,
    MAX_BLOCKS_LISTED,
    MAX_QUERY_ARGS,
    MAX_REQUEST_BYTES,
    MAX_STORAGE_KEY_BYTES,
    MAX_TXS_PER_REQUEST,
    MAX_WAIT_MS,
    ApiError,
)
from ledger.node.openapi import DescribedRoute, Operation, describe

#: The code of a transaction whose sender lacks the role it needs (HTTP 403).
NOT_PERMITTED: Final = "not_permitted"
#: The explorer's files (ledger/node/explorer/), served as they are: no build step.
EXPLORER_ASSETS: Final = {
    "explorer.js": "text/javascript; charset=utf-8",
    "explorer.css": "text/css; charset=utf-8",
}

#: Told how each request went: (route path template, status code, seconds).
RequestObserver = Callable[[str, int, float], None]

_HEX_RE: Final = re.compile(r"(?:0x)?([0-9a-fA-F]*)")


class NodeBackend(Protocol):
    """What the HTTP layer needs from a node. Every method returns JSON-ready values."""

    async def submit(self, raws: list[bytes], wait: bool, timeout_ms: int) -> list[dict[str, Any]]:
        """Admit transactions; one result per input, in order (status, tx_hash, ...)."""

    async def transaction(self, tx_hash: bytes, proof: bool = False) -> dict[str, Any] | None:
        """A committed (with ``proof``: and its inclusion proof), pending or dropped one."""

    async def block(self, height: int | None) -> dict[str, Any] | None: ...

    async def account(self, address: bytes, proof: bool = False) -> dict[str, Any]:
        """An account; with ``proof``, the state proof of it (ledger/chain/proofs.py)."""

    async def storage(self, address: bytes, key: bytes) -> dict[str, Any]:
        """One storage slot of a contract, always with its state proof."""

    async def query(
        self, address: bytes, method: str, args: list[Any], proof: bool = False
    ) -> dict[str, Any]:
        """Run a read-only method; with ``proof``, the proofs of every state key it read."""

    async def contract(self, address: bytes) -> dict[str, Any] | None: ...

    async def status(self) -> dict[str, Any]: ...

    async def permissions(self, proof: bool = False) -> dict[str, Any]:
        """Roles, holders, admin threshold, pending changes; with ``proof``, their proof."""

    async def validator_set(self, proof: bool = False) -> dict[str, Any]:
        """The active validator set in state, the scheduled one, pending votes."""

    async def validators(self) -> list[dict[str, Any]]: ...

    async def blocks(self, before: int | None, limit: int) -> dict[str, Any]:
        """The newest ``limit`` headers below ``before`` (None: from the head), with signers."""

    async def health(self) -> dict[str, Any]:
        """``healthy`` (bool), ``problems`` and the facts behind them (ledger/node/health.py)."""

    async def metrics(self) -> bytes: ...

    def fail(self, error: BaseException) -> None:
        """The store answered a read with corruption: stop the node (it must not serve)."""


def parse_hex(text: str, what: str, size: int | None = None) -> bytes:
    match = _HEX_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None or len(match.group(1)) % 2:
        raise ApiError(400, "bad_hex", f"{what}: expected a hex string")
    raw = bytes.fromhex(match.group(1))
    if size is not None and len(raw) != size:
        raise ApiError(400, "bad_hex", f"{what}: expected {size} bytes ({2 * size} hex characters)")
    return raw


async def read_body(request: Request, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, refusing bodies over ``limit`` before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "bad_request", "invalid Content-Length")
        if int(declared) > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes")
    chunks = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "too_large", f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "bad_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "bad_json", "request body nests too deeply") from None


async def read_json(request: Request, limit: int = MAX_REQUEST_BYTES) -> Any:
    """The request body as JSON, refusing bodies over ``limit`` before reading them whole."""
    return parse_json(await read_body(request, limit))


def _object(value: Any, allowed: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ApiError(
            400, "bad_request", "request body must be an object (JSON) or a map (MessagePack)"
        )
    unknown = sorted(k for k in value if k not in allowed)
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown field {unknown[0]!r} (known: {', '.join(allowed)})"
        )
    return value


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ApiError(400, "bad_request", f"{name}: expected true or false")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(400, "bad_request", f"{name}: expected an integer in [{lo}, {hi}]")
    return value


def _wants_proof(request: Request) -> bool:
    value = request.query_params.get("proof", "false")
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_request", "proof: expected true or false")
    return value in ("true", "1")


def _json(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(document, status_code=status, headers=headers)


def _query_int(text: str | None, name: str, lo: int, hi: int) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 20:
        raise ApiError(400, "bad_request", f"{name}: expected an integer in [{lo}, {hi}]")
    return _int(int(text), name, lo, hi)


def _explorer_file(name: str) -> bytes:
    return resources.files("ledger.node").joinpath("explorer", name).read_bytes()


def _timed(
    path: str, endpoint: Callable[[Request], Awaitable[Response]], observe: RequestObserver
) -> Callable[[Request], Awaitable[Response]]:
    @functools.wraps(endpoint)
    async def run(request: Request) -> Response:
        started = time.perf_counter()
        status = 500
        try:
            response = await endpoint(request)
            status = response.status_code
            return response
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            observe(path, status, time.perf_counter() - started)

    return run


def build_app(backend: NodeBackend, *, on_request: RequestObserver | None = None) -> Starlette:
    """The ASGI application serving ``backend``; ``on_request`` hears of every request."""

    async def submit(request: Request) -> Response:
        # JSON with hex transactions, or MessagePack with their bytes (api_binary.py).
        binary = api_binary.sends_msgpack(request)
        body = await read_body(request)
        parsed = api_binary.parse_msgpack(body) if binary else parse_json(body)
        doc = _object(parsed, ("tx", "txs", "wait", "timeout_ms"))
        if ("tx" in doc) == ("txs" in doc):
            raise ApiError(
                400, "bad_request", "give exactly one of 'tx' or 'txs' (a list of transactions)"
            )
        items = [doc["tx"]] if "tx" in doc else doc["txs"]
        if not isinstance(items, list) or not items:
            raise ApiError(400, "bad_request", "txs: expected a non-empty list of transactions")
        if len(items) > MAX_TXS_PER_REQUEST:
            raise ApiError(413, "too_large", f"txs: at most {MAX_TXS_PER_REQUEST} per request")
        if binary:
            raws = [api_binary.transaction_bytes(t, f"txs[{i}]") for i, t in enumerate(items)]
        else:
            raws = [parse_hex(item, f"txs[{i}]") for i, item in enumerate(items)]
        wait = _bool(doc.get("wait", False), "wait")
        timeout_ms = _int(doc.get("timeout_ms", DEFAULT_WAIT_MS), "timeout_ms", 0, MAX_WAIT_MS)
        results = await backend.submit(raws, wait, timeout_ms)
        answer = api_binary.packed if api_binary.wants_msgpack(request) else _json
        retry_ms = [r["retry_after_ms"] for r in results if "retry_after_ms" in r]
        if retry_ms and len(retry_ms) == len(results):
            # Nothing was taken and the node said why: backpressure, as HTTP says it. Each
            # result still carries its code and retry_after_ms (partly refused batches stay
            # 200, their refused items say the same).
            return answer(
                {"results": results},
                429,
                {"Retry-After": str(max(1, -(-max(retry_ms) // 1000)))},
            )
        if all(r.get("code") == NOT_PERMITTED for r in results):
            # Every transaction's sender lacks the role it needs: 403, as HTTP says it; the
            # per-transaction results come along (a partly refused batch stays 200).
            first = results[0]
            return answer(
                {"results": results, "error": first.get("error"), "code": NOT_PERMITTED}, 403
            )
        return answer({"results": results})

    async def transaction(request: Request) -> Response:
        tx_hash = parse_hex(request.path_params["tx_hash"], "transaction hash", 32)
        found = (
            await backend.transaction(tx_hash, proof=True)
            if _wants_proof(request)
            else await backend.transaction(tx_hash)
        )
        if found is None:
            raise ApiError(404, "not_found", "no such transaction (not committed, not pending)")
        return _json(found)

    async def block(request: Request) -> Response:
        text = request.path_params["height"]
        if text == "latest":
            height = None
        elif text.isdigit() and len(text) <= 20:
            height = _int(int(text), "height", 0, 2**64 - 1)
        else:
            raise ApiError(
                400, "bad_request", "height: expected a non-negative integer or 'latest'"
            )
        found = await backend.block(height)
        if found is None:
            raise ApiError(404, "not_found", f"no block at height {text}")
        return _json(found)

    async def account(request: Request) -> Response:
        address = parse_hex(request.path_params["address"], "address", 20)
        if _wants_proof(request):
            return _json(await backend.account(address, proof=True))
        return _json(await backend.account(address))

    async def storage(request: Request) -> Response:
        address = parse_hex(request.path_params["address"], "contract address", 20)
        key = parse_hex(request.path_params["key"], "storage key")
        if not 1 <= len(key) <= MAX_STORAGE_KEY_BYTES:
            raise ApiError(400, "bad_request", f"storage key: 1 to {MAX_STORAGE_KEY_BYTES} bytes")
        return _json(await backend.storage(address, key))

    async def contract(request: Request) -> Response:
        address = parse_hex(request.path_params["address"], "contract address", 20)
        found = await backend.contract(address)
        if found is None:
            raise ApiError(404, "not_found", f"no contract at {address.hex()}")
        return _json(found)

    async def query(request: Request) -> Response:
        address = parse_hex(request.path_params["address"], "contract address", 20)
        doc = _object(await read_json(request, 256 * 1024), ("method", "args"))
        method = doc.get("method")
        if not isinstance(method, str) or not method or len(method) > 64:
            raise ApiError(400, "bad_request", "method: expected a method name")
        args = doc.get("args", [])
        if not isinstance(args, list) or len(args) > MAX_QUERY_ARGS:
            raise ApiError(
                400, "bad_request", f"args: expected a list of at most {MAX_QUERY_ARGS} values"
            )
        if _wants_proof(request):
            return _json(await backend.query(address, method, args, proof=True))
        return _json(await backend.query(address, method, args))

    async def status(request: Request) -> Response:
        return _json(await backend.status())

    async def validators(request: Request) -> Response:
        return _json({"validators": await backend.validators()})

    async def validator_set(request: Request) -> Response:
        proof = request.query_params.get("proof") == "true"
        return _json(await backend.validator_set(proof=proof))

    async def permissions(request: Request) -> Response:
        if _wants_proof(request):
            return _json(await backend.permissions(proof=True))
        return _json(await backend.permissions())

    async def blocks(request: Request) -> Response:
        params = request.query_params
        unknown = sorted(k for k in params if k not in ("before", "limit"))
        if unknown:
            raise ApiError(400, "bad_request", f"unknown parameter {unknown[0]!r}")
        before = _query_int(params.get("before"), "before", 1, 2**64 - 1)
        limit = _query_int(params.get("limit"), "limit", 1, MAX_BLOCKS_LISTED)
        return _json(
            await backend.blocks(before, DEFAULT_BLOCKS_LISTED if limit is None else limit)
        )

    async def health(request: Request) -> Response:
        doc = await backend.health()
        return _json(doc, 200 if doc["healthy"] else 503)

    async def openapi(request: Request) -> Response:
        return JSONResponse(description)

    async def explorer(request: Request) -> Response:
        return Response(explorer_page, media_type="text/html; charset=utf-8")

    async def explorer_asset(request: Request) -> Response:
        name = request.path_params["asset"]
        if name not in EXPLORER_ASSETS:
            raise ApiError(404, "not_found", f"no explorer file {name!r}")
        return Response(explorer_files[name], media_type=EXPLORER_ASSETS[name])

    async def root(request: Request) -> Response:
        return RedirectResponse("/explorer", status_code=307)

    async def metrics(request: Request) -> Response:
        return Response(
            await backend.metrics(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return _json({"error": exc.message, "code": exc.code}, exc.status)

    async def store_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StoreError)
        backend.fail(exc)
        return _json(
            {
                "error": f"this node is stopping, its store is damaged: {exc}",
                "code": "store_damaged",
            },
            503,
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        return _json({"error": str(exc.detail), "code": code}, exc.status_code)

    table: list[tuple[str, str, Callable[[Request], Awaitable[Response]], Operation]] = [
        ("POST", "/v1/transactions", submit, ops.SUBMIT),
        ("GET", "/v1/transactions/{tx_hash}", transaction, ops.TRANSACTION),
        ("GET", "/v1/blocks", blocks, ops.BLOCKS),
        ("GET", "/v1/blocks/{height}", block, ops.BLOCK),
        ("GET", "/v1/accounts/{address}", account, ops.ACCOUNT),
        ("GET", "/v1/contracts/{address}", contract, ops.CONTRACT),
        ("POST", "/v1/contracts/{address}/query", query, ops.QUERY),
        ("GET", "/v1/contracts/{address}/storage/{key}", storage, ops.STORAGE),
        ("GET", "/v1/status", status, ops.STATUS),
        ("GET", "/v1/validators", validators, ops.VALIDATORS),
        ("GET", "/v1/validator-set", validator_set, ops.VALIDATOR_SET),
        ("GET", "/v1/permissions", permissions, ops.PERMISSIONS),
        ("GET", "/health", health, ops.HEALTH),
        ("GET", "/metrics", metrics, ops.METRICS),
        ("GET", "/openapi.json", openapi, ops.OPENAPI),
        ("GET", "/explorer", explorer, ops.EXPLORER),
        ("GET", "/explorer/{asset}", explorer_asset, ops.EXPLORER_ASSET),
        ("GET", "/", root, ops.ROOT),
    ]
    routes = [
        DescribedRoute(
            path,
            endpoint if on_request is None else _timed(path, endpoint, on_request),
            method,
            operation,
        )
        for method, path, endpoint, operation in table
    ]
    description = describe(
        routes,
        title="Quorum Ledger node API",
        version=version(),
        description=__doc__ or "",
        components=ops.COMPONENTS,
    )
    explorer_page = _explorer_file("index.html")
    explorer_files = {name: _explorer_file(name) for name in EXPLORER_ASSETS}
    return Starlette(
        routes=routes,
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            StoreError: store_error,
        },
    )
