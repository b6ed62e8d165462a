"""What each HTTP route takes and returns, as OpenAPI operations with JSON Schemas.

The routes in ledger/node/api.py carry these operations; ledger/node/openapi.py builds
``/openapi.json`` from the routing table. The schemas follow what ledger/render.py and
ledger/node/backend.py produce (hex strings for bytes, integers for amounts and heights);
tests/integration/test_observe.py checks live responses against them, and
tests/test_openapi.py the client library's requests.
"""

from __future__ import annotations

from typing import Any, Final

from ledger.node.api_limits import (
    DEFAULT_BLOCKS_LISTED,
    MAX_BLOCKS_LISTED,
    MAX_QUERY_ARGS,
    MAX_TXS_PER_REQUEST,
    MAX_WAIT_MS,
)
from ledger.node.openapi import Operation, Param, Response, Schema, ref

HEX: Final = {"type": "string", "pattern": "^(0x)?[0-9a-fA-F]*$"}
#: Raw bytes in a MessagePack body (a `bin`).
BIN: Final = {"type": "string", "format": "binary"}
HASH: Final = {"type": "string", "description": "32 bytes, lowercase hex"}
ADDRESS: Final = {"type": "string", "description": "20 bytes, lowercase hex"}
UINT: Final = {"type": "integer", "minimum": 0}
ABI_VALUE: Final = {
    "type": ["integer", "string", "null"],
    "description": "u64 as an integer, str as text, bytes and addresses as hex",
}


def _obj(required: list[str], properties: dict[str, Any], **extra: Any) -> Schema:
    return {"type": "object", "required": required, "properties": properties, **extra}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return {**schema, "type": [*kinds, "null"]}


HEADER_FIELDS: Final = [
    "chain_id", "height", "hash", "view", "proposer", "timestamp_ms", "prev_hash", "tx_root",
    "receipts_root", "state_root", "validators_hash", "tx_count",
]  # fmt: skip
HEADER_PROPERTIES: Final = {
    "chain_id": {"type": "string"}, "height": UINT, "hash": HASH, "view": UINT,
    "proposer": UINT, "timestamp_ms": {**UINT, "description": "ms since the Unix epoch"},
    "prev_hash": HASH, "tx_root": HASH, "receipts_root": HASH, "state_root": HASH,
    "validators_hash": HASH, "tx_count": UINT,
}  # fmt: skip


def _submit_request(item: Schema) -> Schema:
    """A submission whose transactions are ``item`` (hex in JSON, bin in MessagePack)."""
    return _obj(
        [],
        {
            "tx": {**item, "description": "one signed transaction (give tx or txs)"},
            "txs": {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_TXS_PER_REQUEST},
            "wait": {"type": "boolean", "description": "answer when committed (or timed out)"},
            "timeout_ms": {"type": "integer", "minimum": 0, "maximum": MAX_WAIT_MS},
        },
        additionalProperties=False,
    )


COMPONENTS: Final[dict[str, Schema]] = {
    "Error": _obj(
        ["error", "code"],
        {
            "error": {"type": "string"},
            "code": {"type": "string", "description": "machine-readable"},
        },
    ),
    # The JSON form carries hex; the MessagePack form (api_binary.py) the raw bytes.
    "SubmitRequest": _submit_request(HEX),
    "SubmitRequestMsgpack": _submit_request(BIN),
    "SubmitResult": _obj(
        ["status"],
        {
            "tx_hash": _nullable(HASH),
            "status": {"enum": ["pending", "committed", "failed", "rejected", "dropped"]},
            "code": {"type": "string"},
            "error": _nullable({"type": "string"}),
            "retry_after_ms": UINT,
            "height": UINT,
            "receipt": ref("Receipt"),
        },
    ),
    "SubmitResults": _obj(
        ["results"],
        {
            "results": {"type": "array", "items": ref("SubmitResult")},
            "error": _nullable({"type": "string"}),
            "code": {"type": "string"},
        },
    ),
    "Event": _obj(
        ["address", "name", "args"],
        {
            "address": ADDRESS,
            "name": {"type": "string"},
            "args": {"type": "array", "items": ABI_VALUE},
        },
    ),
    "Receipt": _obj(
        ["tx_hash", "status", "gas_used", "return", "events", "error", "created_address"],
        {
            "tx_hash": HASH,
            "status": {"type": "string"},
            "gas_used": UINT,
            "return": ABI_VALUE,
            "events": {"type": "array", "items": ref("Event")},
            "error": _nullable({"type": "string"}),
            "created_address": _nullable(ADDRESS),
        },
    ),
    "Transaction": _obj(
        ["tx_hash", "status"],
        {
            "tx_hash": HASH,
            "status": {"enum": ["committed", "failed", "pending", "dropped"]},
            "chain_id": {"type": "string"},
            "sender": ADDRESS,
            "sender_public_key": {"type": "string"},
            "nonce": UINT,
            "kind": {"type": "string"},
            "payload": {"type": "object", "description": "by kind: transfer, deploy, call, ..."},
            "gas_limit": UINT,
            "expiry_height": _nullable(UINT),
            "height": _nullable(UINT),
            "position": UINT,
            "receipt": ref("Receipt"),
            "raw": HEX,
            "proof": {"type": "object", "description": "inclusion proof (?proof=true)"},
            "code": {"type": "string", "description": "why it was dropped"},
            "error": _nullable({"type": "string"}),
        },
    ),
    "BlockHeader": _obj(HEADER_FIELDS, HEADER_PROPERTIES),
    "Certificate": _obj(
        ["view", "height", "block_hash", "votes", "raw"],
        {
            "view": UINT,
            "height": UINT,
            "block_hash": HASH,
            "votes": {
                "type": "array",
                "items": _obj(
                    ["validator", "signature"],
                    {"validator": UINT, "signature": HEX, "name": {"type": "string"}},
                ),
            },
            "raw": HEX,
        },
    ),
    "Block": _obj(
        [
            "height",
            "hash",
            "header",
            "transactions",
            "certificate",
            "header_raw",
            "certificate_raw",
        ],
        {
            "height": UINT,
            "hash": HASH,
            "header": ref("BlockHeader"),
            "transactions": {"type": "array", "items": HASH},
            "certificate": _nullable(ref("Certificate")),
            "header_raw": HEX,
            "certificate_raw": _nullable(HEX),
            "proposer_name": {"type": "string"},
            "epochs": {"type": "array", "items": {"type": "object"}},
        },
    ),
    "BlockList": _obj(
        ["head", "blocks"],
        {
            "head": UINT,
            "blocks": {
                "type": "array",
                "items": _obj(
                    [*HEADER_FIELDS, "proposer_name", "certificate_view", "signers"],
                    {
                        **HEADER_PROPERTIES,
                        "proposer_name": {"type": "string"},
                        "certificate_view": _nullable(UINT),
                        "signers": {"type": "array", "items": {"type": "string"}},
                    },
                ),
            },
        },
    ),
    "Account": _obj(
        ["address", "balance", "nonce", "contract"],
        {
            "address": ADDRESS,
            "balance": UINT,
            "nonce": UINT,
            "contract": {"type": "boolean"},
            "height": UINT,
            "proof": {"type": "object"},
        },
    ),
    "Contract": _obj(
        ["address", "code", "abi", "height"],
        {
            "address": ADDRESS,
            "code": HEX,
            "abi": _obj(
                ["constructor", "methods"],
                {
                    "constructor": _nullable({"type": "object"}),
                    "methods": {"type": "array", "items": {"type": "object"}},
                },
            ),
            "height": UINT,
        },
    ),
    "QueryRequest": _obj(
        ["method"],
        {
            "method": {"type": "string"},
            "args": {
                "type": "array",
                "maxItems": MAX_QUERY_ARGS,
                "items": {"type": ["string", "integer"]},
            },
        },
        additionalProperties=False,
    ),
    "QueryResult": _obj(
        ["status", "return", "gas_used", "error", "height"],
        {
            "status": {"type": "string"},
            "return": ABI_VALUE,
            "gas_used": UINT,
            "error": _nullable({"type": "string"}),
            "height": UINT,
            "proof": {"type": "object"},
        },
    ),
    "StorageSlot": _obj(
        ["address", "key", "value", "height", "proof"],
        {
            "address": ADDRESS,
            "key": HEX,
            "value": _nullable(HEX),
            "height": UINT,
            "proof": {"type": "object"},
        },
    ),
    "Status": _obj(
        [
            "name",
            "chain_id",
            "genesis_hash",
            "height",
            "head_hash",
            "state_root",
            "view",
            "primary",
            "view_active",
            "stable_checkpoint",
            "in_flight",
            "waiting_for",
            "syncing",
            "peers",
            "mempool",
            "counters",
            "consensus",
        ],
        {
            "name": {"type": "string"},
            "chain_id": {"type": "string"},
            "genesis_hash": HASH,
            "height": UINT,
            "head_hash": HASH,
            "state_root": HASH,
            "base_height": _nullable(UINT),
            "view": UINT,
            "primary": {"type": "string"},
            "view_active": {"type": "boolean"},
            "stable_checkpoint": UINT,
            "in_flight": {"type": "array", "items": UINT},
            "waiting_for": {"type": "string", "description": "what a stalled node misses"},
            "syncing": {"type": ["boolean", "object"]},
            "validator": _obj(
                ["state"],
                {
                    "state": {"enum": ["member", "retiring"]},
                    "removed_at": UINT,
                    "waiting_for": {"type": "string"},
                },
            ),
            "peers": {"type": "array", "items": {"type": "string"}},
            "mempool": _obj(
                ["transactions", "includable", "bytes"],
                {"transactions": UINT, "includable": UINT, "bytes": UINT},
            ),
            "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
            "consensus": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    ),
    "Validators": _obj(
        ["validators"],
        {
            "validators": {
                "type": "array",
                "items": _obj(
                    ["index", "name", "public_key", "self", "connected", "last_signed_height"],
                    {
                        "index": UINT,
                        "name": {"type": "string"},
                        "public_key": HEX,
                        "self": {"type": "boolean"},
                        "connected": {"type": "boolean"},
                        "last_signed_height": _nullable(UINT),
                    },
                ),
            }
        },
    ),
    "ValidatorSet": _obj(
        ["quorum", "scheduled", "pending", "height"],
        {
            "epoch": UINT,
            "start_height": UINT,
            "members": {"type": "array", "items": {"type": "object"}},
            "quorum": UINT,
            "scheduled": _nullable({"type": "object"}),
            "pending": {"type": "array", "items": {"type": "object"}},
            "height": UINT,
            "proof": {"type": "object"},
        },
    ),
    "Permissions": _obj(
        ["roles", "admin_threshold", "pending", "height"],
        {
            "roles": {"type": "object"},
            "admin_threshold": UINT,
            "pending": {"type": "array", "items": {"type": "object"}},
            "height": UINT,
            "proof": {"type": "object"},
        },
    ),
    "Health": _obj(
        ["healthy", "problems"],
        {
            "healthy": {"type": "boolean"},
            "problems": {
                "type": "array",
                "items": _obj(
                    ["code", "message"],
                    {
                        "code": {
                            "enum": [
                                "starting",
                                "no_quorum_of_peers",
                                "syncing",
                                "pending_not_committed",
                                "retiring",
                            ]
                        },
                        "message": {"type": "string"},
                    },
                ),
            },
            "name": {"type": "string"},
            "height": UINT,
            "view": UINT,
            "primary": {"type": "string"},
            "peers": {"type": "array", "items": {"type": "string"}},
            "quorum": UINT,
            "validators": UINT,
            "behind_blocks": UINT,
            "last_commit_time_ms": _nullable(UINT),
            "oldest_pending_ms": _nullable(UINT),
            "pending_bound_ms": UINT,
            "waiting_for": {"type": "string"},
        },
    ),
}

# ---------------------------------------------------------------------------- parameters

PROOF: Final = Param(
    "proof", {"type": "string", "enum": ["true", "false", "1", "0"]}, "include a proof"
)
TX_HASH: Final = Param("tx_hash", HASH, "transaction hash (hex)")
ADDRESS_PARAM: Final = Param("address", ADDRESS, "account or contract address (hex)")
HEIGHT: Final = Param("height", {"pattern": "^(latest|[0-9]+)$"}, "a block height, or 'latest'")


def _errors(*statuses: int) -> dict[int, Response]:
    reasons = {
        400: "bad input (the body says which field)",
        403: "the sender lacks the role it needs",
        404: "not found",
        413: "request too large",
        503: "the node cannot serve (its store is damaged)",
    }
    return {s: Response(reasons[s], ref("Error")) for s in statuses}


def _ok(description: str, schema: Schema) -> dict[int, Response]:
    return {200: Response(description, schema)}


SUBMIT: Final = Operation(
    "Submit signed transactions",
    "transactions",
    {
        **_ok("one result per transaction, in order", ref("SubmitResults")),
        403: Response("no transaction's sender holds the role it needs", ref("SubmitResults")),
        429: Response("nothing taken: the node is busy (Retry-After)", ref("SubmitResults")),
        **_errors(400, 413),
        503: Response(
            "not taken: this node's validator was voted out of the set (code "
            "`not_a_validator`: submit to a current validator), or its store is damaged",
            ref("Error"),
        ),
    },
    description=f"Signed transactions (`tx`, or `txs` up to {MAX_TXS_PER_REQUEST:,}): hex strings "
    "in JSON, or their bytes (bin) in MessagePack with `Content-Type: application/msgpack`; "
    "`Accept: application/msgpack` gets the answer in MessagePack (errors stay JSON). `wait` "
    "answers once each is committed or `timeout_ms` passed.",
    body=ref("SubmitRequest"),
    msgpack_body=ref("SubmitRequestMsgpack"),
)
TRANSACTION: Final = Operation(
    "A transaction: committed (with its receipt), pending or dropped",
    "transactions",
    {**_ok("the transaction", ref("Transaction")), **_errors(400, 404)},
    path_params=(TX_HASH,),
    query=(PROOF,),
)
BLOCKS: Final = Operation(
    "The newest block headers, with their certificates' signers",
    "blocks",
    {**_ok("newest first", ref("BlockList")), **_errors(400)},
    query=(
        Param("before", UINT, "list blocks below this height (default: from the head)"),
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_BLOCKS_LISTED},
            f"how many (default {DEFAULT_BLOCKS_LISTED})",
        ),
    ),
)
BLOCK: Final = Operation(
    "A block: header, transaction hashes, commit certificate",
    "blocks",
    {**_ok("the block", ref("Block")), **_errors(400, 404)},
    path_params=(HEIGHT,),
)
ACCOUNT: Final = Operation(
    "An account's balance and nonce",
    "state",
    {**_ok("the account (zero when absent)", ref("Account")), **_errors(400)},
    path_params=(ADDRESS_PARAM,),
    query=(PROOF,),
)
CONTRACT: Final = Operation(
    "A contract's code and ABI",
    "contracts",
    {**_ok("the contract", ref("Contract")), **_errors(400, 404)},
    path_params=(ADDRESS_PARAM,),
)
QUERY: Final = Operation(
    "Run a read-only contract method",
    "contracts",
    {**_ok("its result", ref("QueryResult")), **_errors(400, 404, 413)},
    path_params=(ADDRESS_PARAM,),
    query=(PROOF,),
    body=ref("QueryRequest"),
)
STORAGE: Final = Operation(
    "One storage slot of a contract, with its state proof",
    "contracts",
    {**_ok("the slot", ref("StorageSlot")), **_errors(400)},
    path_params=(ADDRESS_PARAM, Param("key", HEX, "storage key (hex, 1 to 128 bytes)")),
)
STATUS: Final = Operation(
    "Height, head, view, primary, peers, sync, and what a stalled node waits for",
    "node",
    _ok("the node's status", ref("Status")),
)
VALIDATORS: Final = Operation(
    "The genesis validators: connected, and the last height each signed",
    "node",
    _ok("the validators", ref("Validators")),
)
VALIDATOR_SET: Final = Operation(
    "The active validator set in state, the scheduled one, pending votes",
    "state",
    {**_ok("the set", ref("ValidatorSet")), **_errors(400)},
    query=(PROOF,),
)
PERMISSIONS: Final = Operation(
    "Roles and holders, the admin threshold, pending role changes",
    "state",
    {**_ok("the permissions", ref("Permissions")), **_errors(400)},
    query=(PROOF,),
)
HEALTH: Final = Operation(
    "Whether the node makes progress",
    "node",
    {
        200: Response("committing, or idle with a quorum of peers", ref("Health")),
        503: Response("cannot make progress: the problems say why", ref("Health")),
    },
    description="503 when it has no quorum of peers, syncs far behind, or a pending "
    "transaction was not committed within the bound (docs/OPERATIONS.md).",
)
METRICS: Final = Operation(
    "Prometheus metrics",
    "node",
    {200: Response("text exposition format 0.0.4", {"type": "string"}, "text/plain")},
)
OPENAPI: Final = Operation(
    "This description",
    "node",
    _ok("OpenAPI 3.1", {"type": "object"}),
)
EXPLORER: Final = Operation(
    "The block explorer (HTML)",
    "explorer",
    {200: Response("the page", {"type": "string"}, "text/html")},
)
EXPLORER_ASSET: Final = Operation(
    "The explorer's script and style sheet",
    "explorer",
    {200: Response("the file", {"type": "string"}, "text/plain"), **_errors(404)},
    path_params=(Param("asset", {"enum": ["explorer.js", "explorer.css"]}, "file name"),),
)
ROOT: Final = Operation(
    "Redirects to the explorer",
    "explorer",
    {307: Response("to /explorer")},
)
