"""MessagePack bodies for ``POST /v1/transactions``: the binary alternative to JSON.

A client that sends ``Content-Type: application/msgpack`` posts the same document as the
JSON form, ``{"txs": [...], "wait": bool, "timeout_ms": int}`` (or ``"tx"``), with each
transaction as its canonical bytes in a MessagePack ``bin`` instead of a hex string: no
hex encoding on either side, and a body half the size. A client whose ``Accept`` names
``application/msgpack`` gets the answer (``{"results": [...]}``, with the same fields and
status codes as the JSON answer) in MessagePack too. Errors are JSON whatever was asked
(``{"error", "code"}``, as on every route): a client reads them the same way everywhere.

The body is untrusted: it is decoded with caps on every length (no more items than the
JSON form allows, no string or byte string over the request limit), and extension types,
timestamps and non-string map keys are refused, so a bad body is a 400 that says what is
wrong and changes nothing.

Never: accept an item that is not ``bin`` where a transaction belongs (hex belongs to the
JSON form), or decode a body over the request limit.
"""

from __future__ import annotations

from typing import Any, Final, NoReturn

import msgpack
from starlette.requests import Request
from starlette.responses import Response

from ledger.node.api_limits import MAX_REQUEST_BYTES, MAX_TXS_PER_REQUEST, ApiError

MSGPACK_MEDIA_TYPE: Final = "application/msgpack"
#: Keys of a submission map (tx, txs, wait, timeout_ms) with room for an unknown one,
#: which the caller names in its error.
_MAX_MAP_LEN: Final = 8


def sends_msgpack(request: Request) -> bool:
    """Whether the request body is MessagePack (its Content-Type, parameters ignored)."""
    content_type = request.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == MSGPACK_MEDIA_TYPE


def wants_msgpack(request: Request) -> bool:
    """Whether the client asked for a MessagePack answer (its Accept header names it)."""
    accept = request.headers.get("accept", "")
    return any(
        part.split(";", 1)[0].strip().lower() == MSGPACK_MEDIA_TYPE for part in accept.split(",")
    )


def _refuse_ext(code: int, data: bytes) -> NoReturn:
    raise ValueError(f"extension type {code} is not allowed")


def parse_msgpack(body: bytes) -> Any:
    """The body as a MessagePack document, or a 400 ``bad_msgpack`` saying why not."""
    try:
        return msgpack.unpackb(
            body,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_refuse_ext,
            timestamp=0,
            # One more than allowed, so an over-long list reaches the caller's 413.
            max_array_len=MAX_TXS_PER_REQUEST + 1,
            max_map_len=_MAX_MAP_LEN,
            max_str_len=MAX_REQUEST_BYTES,
            max_bin_len=MAX_REQUEST_BYTES,
        )
    except msgpack.ExtraData as exc:
        raise ApiError(
            400, "bad_msgpack", f"{len(exc.extra)} trailing bytes after the MessagePack value"
        ) from None
    except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ApiError(
            400, "bad_msgpack", f"request body is not valid MessagePack: {reason}"
        ) from None


def transaction_bytes(item: Any, what: str) -> bytes:
    """One transaction of a MessagePack submission: a ``bin``, never text."""
    if not isinstance(item, bytes) or not item:
        raise ApiError(
            400, "bad_request", f"{what}: expected a transaction's bytes (a MessagePack bin)"
        )
    return item


def packed(document: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A MessagePack answer (the document holds JSON types only: text, numbers, lists)."""
    return Response(
        msgpack.packb(document, use_bin_type=True),
        status_code=status,
        media_type=MSGPACK_MEDIA_TYPE,
        headers=headers,
    )
