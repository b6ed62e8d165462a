"""The HTTP client library for a Quorum node: what the CLI, `quorum bench` and users' programs use.

Two flavours over the same routes (see ``ledger.node.api``): :class:`QuorumClient`
(blocking, httpx.Client) and :class:`AsyncQuorumClient` (httpx.AsyncClient; runs under trio
or asyncio). Errors are typed: :class:`NodeUnreachable` when the node cannot be reached
or does not answer in time, :class:`RequestFailed` when it answers with an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import httpx
import msgpack

from ledger.chain.types import Transaction

DEFAULT_TIMEOUT_S: Final = 10.0
#: Extra client-side time on top of a server-side wait, so the server answers first.
WAIT_MARGIN_S: Final = 5.0


class ClientError(Exception):
    """Base of the client's errors."""


class NodeUnreachable(ClientError):
    """Connection refused, reset, or no answer in time."""


class RequestFailed(ClientError):
    """The node answered with an error (``status``, machine-readable ``code``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} (HTTP {status}, {code})")
        self.status = status
        self.code = code
        self.message = message


def _raw(tx: Transaction | bytes) -> str:
    return (tx.raw if isinstance(tx, Transaction) else tx).hex()


#: The binary form of a submission and its answer (ledger/node/api_binary.py).
MSGPACK_MEDIA_TYPE: Final = "application/msgpack"


def _submit_body(txs: Sequence[Transaction | bytes], wait: bool, timeout_ms: int) -> dict[str, Any]:
    return {"txs": [_raw(t) for t in txs], "wait": wait, "timeout_ms": timeout_ms}


def _submit_request(
    txs: Sequence[Transaction | bytes], wait: bool, timeout_ms: int, binary: bool
) -> dict[str, Any]:
    """httpx arguments of a submission: JSON with hex, or MessagePack with the raw bytes
    (and a MessagePack answer asked for)."""
    if not binary:
        return {"json": _submit_body(txs, wait, timeout_ms)}
    raws = [t.raw if isinstance(t, Transaction) else bytes(t) for t in txs]
    body = {"txs": raws, "wait": wait, "timeout_ms": timeout_ms}
    return {
        "content": msgpack.packb(body, use_bin_type=True),
        "headers": {"content-type": MSGPACK_MEDIA_TYPE, "accept": MSGPACK_MEDIA_TYPE},
    }


def _document(response: httpx.Response) -> Any:
    """The answer's document, JSON or (when the node says so) MessagePack; ValueError if
    it is neither."""
    content_type = response.headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() == MSGPACK_MEDIA_TYPE:
        try:
            return msgpack.unpackb(response.content, raw=False, strict_map_key=False)
        except (msgpack.UnpackException, ValueError, TypeError) as exc:
            raise ValueError(f"not MessagePack: {exc}") from None
    return response.json()


def _decode(response: httpx.Response, *, allow_404: bool = False) -> Any:
    if allow_404 and response.status_code == 404:
        return None
    try:
        document = _document(response)
    except ValueError:
        raise RequestFailed(
            response.status_code, "bad_response", "node sent an answer that does not decode"
        ) from None
    if response.status_code >= 400:
        if isinstance(document, dict):
            raise RequestFailed(
                response.status_code,
                str(document.get("code", "error")),
                str(document.get("error", "")),
            )
        raise RequestFailed(response.status_code, "error", "request failed")
    return document


def _results(response: httpx.Response) -> list[dict[str, Any]]:
    """A submission's per-transaction results; a 429 (nothing taken: backpressure) and a
    403 (no sender holds the role it needs) carry them too, each with its code."""
    if response.status_code in (403, 429):
        try:
            document = _document(response)
        except ValueError:
            document = None
        if isinstance(document, dict) and isinstance(document.get("results"), list):
            return list(document["results"])
    return list(_decode(response)["results"])


def _health(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 503:
        try:
            document = response.json()
        except ValueError:
            document = None
        if isinstance(document, dict) and "healthy" in document:
            return document
    return dict(_decode(response))


def _timeout(wait: bool, timeout_ms: int, default: float) -> float:
    return timeout_ms / 1000 + WAIT_MARGIN_S if wait else default


class QuorumClient:
    """Blocking client for one node, e.g. ``QuorumClient("http://127.0.0.1:26601")``."""

    def __init__(self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s)

    def __enter__(self) -> QuorumClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kw: Any
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, timeout=timeout or self.timeout_s, **kw)
        except httpx.TimeoutException:
            raise NodeUnreachable(f"{self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"cannot reach {self.base_url}: {exc}") from None

    def submit(
        self,
        txs: Sequence[Transaction | bytes],
        *,
        wait: bool = False,
        timeout_ms: int = 30_000,
        binary: bool = False,
    ) -> list[dict[str, Any]]:
        """One result per transaction, in order; ``binary`` posts MessagePack (the raw
        bytes, no hex) and asks for a MessagePack answer: less work on both sides."""
        response = self._request(
            "POST",
            "/v1/transactions",
            timeout=_timeout(wait, timeout_ms, self.timeout_s),
            **_submit_request(txs, wait, timeout_ms, binary),
        )
        return _results(response)

    def transaction(self, tx_hash: bytes | str, *, proof: bool = False) -> dict[str, Any] | None:
        """A transaction; with ``proof``, a committed one comes with its inclusion proof
        (check it with :meth:`ledger.light.LightClient.verify_transaction`)."""
        key = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        params = {"proof": "true"} if proof else None
        result: dict[str, Any] | None = _decode(
            self._request("GET", f"/v1/transactions/{key}", params=params), allow_404=True
        )
        return result

    def block(self, height: int | None = None) -> dict[str, Any] | None:
        which = "latest" if height is None else str(height)
        result: dict[str, Any] | None = _decode(
            self._request("GET", f"/v1/blocks/{which}"), allow_404=True
        )
        return result

    def account(self, address: bytes | str, *, proof: bool = False) -> dict[str, Any]:
        """An account; with ``proof``, its state proof and the certified header behind it."""
        key = address.hex() if isinstance(address, bytes) else address
        params = {"proof": "true"} if proof else None
        return dict(_decode(self._request("GET", f"/v1/accounts/{key}", params=params)))

    def storage(self, address: bytes | str, key: bytes) -> dict[str, Any]:
        """One storage slot of a contract, with its state proof."""
        where = address.hex() if isinstance(address, bytes) else address
        return dict(_decode(self._request("GET", f"/v1/contracts/{where}/storage/{key.hex()}")))

    def query(
        self, address: bytes | str, method: str, args: Sequence[Any] = (), *, proof: bool = False
    ) -> dict[str, Any]:
        """Run a read-only method; with ``proof``, the proofs of every key it read (check
        with :meth:`ledger.light.LightClient.verify_query`, which runs it again)."""
        key = address.hex() if isinstance(address, bytes) else address
        response = self._request(
            "POST",
            f"/v1/contracts/{key}/query",
            json={"method": method, "args": list(args)},
            params={"proof": "true"} if proof else None,
        )
        return dict(_decode(response))

    def contract(self, address: bytes | str) -> dict[str, Any] | None:
        key = address.hex() if isinstance(address, bytes) else address
        result: dict[str, Any] | None = _decode(
            self._request("GET", f"/v1/contracts/{key}"), allow_404=True
        )
        return result

    def status(self) -> dict[str, Any]:
        return dict(_decode(self._request("GET", "/v1/status")))

    def validators(self) -> list[dict[str, Any]]:
        return list(_decode(self._request("GET", "/v1/validators"))["validators"])

    def validator_set(self, *, proof: bool = False) -> dict[str, Any]:
        """The active validator set (epoch, members, p2p), the scheduled set, pending votes."""
        params = {"proof": "true"} if proof else None
        return dict(_decode(self._request("GET", "/v1/validator-set", params=params)))

    def permissions(self, *, proof: bool = False) -> dict[str, Any]:
        """Roles and holders, the admin threshold, pending role changes; with ``proof``,
        the state proof of all of it (check with
        :meth:`ledger.light.LightClient.verify_permissions`)."""
        params = {"proof": "true"} if proof else None
        return dict(_decode(self._request("GET", "/v1/permissions", params=params)))

    def blocks(self, *, before: int | None = None, limit: int | None = None) -> dict[str, Any]:
        """The newest block headers (below ``before``), newest first, each with the names
        of its certificate's signers: ``{"head", "blocks"}``."""
        params = {k: str(v) for k, v in (("before", before), ("limit", limit)) if v is not None}
        return dict(_decode(self._request("GET", "/v1/blocks", params=params or None)))

    def health(self) -> dict[str, Any]:
        """``/health``'s document: ``healthy``, and the ``problems`` when it is not (a 503
        is an answer here, not an error)."""
        return _health(self._request("GET", "/health"))

    def healthy(self) -> bool:
        try:
            return self._request("GET", "/health").status_code == 200
        except NodeUnreachable:
            return False


class AsyncQuorumClient:
    """Async client (trio or asyncio) for high-concurrency callers such as the bench."""

    def __init__(
        self, base_url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, max_connections: int = 64
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout_s, limits=limits)

    async def __aenter__(self) -> AsyncQuorumClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _request(
        self, method: str, path: str, *, timeout: float | None = None, **kw: Any
    ) -> httpx.Response:
        try:
            return await self._http.request(method, path, timeout=timeout or self.timeout_s, **kw)
        except httpx.TimeoutException:
            raise NodeUnreachable(f"{self.base_url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise NodeUnreachable(f"cannot reach {self.base_url}: {exc}") from None

    async def submit(
        self,
        txs: Sequence[Transaction | bytes],
        *,
        wait: bool = False,
        timeout_ms: int = 30_000,
        binary: bool = False,
    ) -> list[dict[str, Any]]:
        """As :meth:`QuorumClient.submit`."""
        response = await self._request(
            "POST",
            "/v1/transactions",
            timeout=_timeout(wait, timeout_ms, self.timeout_s),
            **_submit_request(txs, wait, timeout_ms, binary),
        )
        return _results(response)

    async def transaction(self, tx_hash: bytes | str) -> dict[str, Any] | None:
        key = tx_hash.hex() if isinstance(tx_hash, bytes) else tx_hash
        result: dict[str, Any] | None = _decode(
            await self._request("GET", f"/v1/transactions/{key}"), allow_404=True
        )
        return result

    async def block(self, height: int | None = None) -> dict[str, Any] | None:
        which = "latest" if height is None else str(height)
        result: dict[str, Any] | None = _decode(
            await self._request("GET", f"/v1/blocks/{which}"), allow_404=True
        )
        return result

    async def status(self) -> dict[str, Any]:
        return dict(_decode(await self._request("GET", "/v1/status")))

    async def health(self) -> dict[str, Any]:
        return _health(await self._request("GET", "/health"))
