"""The HTTP API's bounds: what the handlers enforce (ledger/node/api.py,
ledger/node/api_binary.py) and what the API description states
(ledger/node/api_schemas.py), from one place; and the error a handler raises."""

from __future__ import annotations

from typing import Final

from contracts.limits import MAX_STORAGE_KEY_BYTES as MAX_CONTRACT_STORAGE_KEY_BYTES

#: Largest request body accepted (a batch of transactions).
MAX_REQUEST_BYTES: Final = 8 * 1024 * 1024
#: Most transactions in one submit request.
MAX_TXS_PER_REQUEST: Final = 5_000
#: Longest a submit may wait for commits.
MAX_WAIT_MS: Final = 120_000
DEFAULT_WAIT_MS: Final = 30_000
MAX_QUERY_ARGS: Final = 16
#: Longest contract storage key (the VM's own bound).
MAX_STORAGE_KEY_BYTES: Final = MAX_CONTRACT_STORAGE_KEY_BYTES
#: Blocks ``GET /v1/blocks`` lists by default, and at most.
DEFAULT_BLOCKS_LISTED: Final = 20
MAX_BLOCKS_LISTED: Final = 100


class ApiError(Exception):
    """A request the client must fix (4xx) or a node that cannot serve now (503)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
