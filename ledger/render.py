"""JSON views of chain objects for the HTTP API and the CLI: hex for bytes, ints for amounts.

One place decides how a transaction, receipt, block or certificate looks in JSON, so the
API, the CLI and the bench agree. Never: floats, or bytes that are not lowercase hex.
"""

from __future__ import annotations

from typing import Any

from ledger.chain.accounts import Account
from ledger.chain.types import (
    AbiValue,
    Block,
    BlockHeader,
    Call,
    CommitCertificate,
    Deploy,
    Event,
    Receipt,
    ReceiptStatus,
    RoleChange,
    Transaction,
    Transfer,
    ValidatorChange,
)


def abi_value(value: AbiValue | None) -> Any:
    """ABI values in JSON: integers stay integers, bytes become hex, strings stay strings."""
    if isinstance(value, bytes):
        return value.hex()
    return value


def payload_json(tx: Transaction) -> dict[str, Any]:
    payload = tx.payload
    if isinstance(payload, Transfer):
        return {"to": payload.to.hex(), "amount": payload.amount}
    if isinstance(payload, Deploy):
        return {
            "code_bytes": len(payload.code),
            "args": [abi_value(a) for a in payload.args],
            "value": payload.value,
        }
    if isinstance(payload, RoleChange):
        return {
            "action": str(payload.action),
            "role": str(payload.role),
            "address": payload.address.hex(),
        }
    if isinstance(payload, ValidatorChange):
        return {
            "action": str(payload.action),
            "name": payload.name,
            "public_key": payload.public_key.hex(),
            "p2p": payload.p2p,
        }
    assert isinstance(payload, Call)
    return {
        "to": payload.to.hex(),
        "method": payload.method,
        "args": [abi_value(a) for a in payload.args],
        "value": payload.value,
    }


def transaction_json(tx: Transaction) -> dict[str, Any]:
    return {
        "tx_hash": tx.hash.hex(),
        "chain_id": tx.chain_id,
        "sender": tx.sender_address.hex(),
        "sender_public_key": tx.sender.hex(),
        "nonce": tx.nonce,
        "kind": str(tx.kind),
        "payload": payload_json(tx),
        "gas_limit": tx.gas_limit,
        "expiry_height": tx.expiry_height,
    }


def event_json(event: Event) -> dict[str, Any]:
    return {
        "address": event.address.hex(),
        "name": event.name,
        "args": [abi_value(a) for a in event.args],
    }


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return {
        "tx_hash": receipt.tx_hash.hex(),
        "status": receipt.status.label,
        "gas_used": receipt.gas_used,
        "return": abi_value(receipt.return_value),
        "events": [event_json(e) for e in receipt.events],
        "error": receipt.error,
        "created_address": receipt.created_address.hex() if receipt.created_address else None,
    }


def committed_transaction_json(
    tx: Transaction, receipt: Receipt, height: int, position: int
) -> dict[str, Any]:
    """A committed transaction as the API reports it: status committed or failed."""
    return {
        **transaction_json(tx),
        "status": "committed" if receipt.status == ReceiptStatus.SUCCESS else "failed",
        "height": height,
        "position": position,
        "receipt": receipt_json(receipt),
    }


def header_json(header: BlockHeader) -> dict[str, Any]:
    return {
        "chain_id": header.chain_id,
        "height": header.height,
        "hash": header.block_hash.hex(),
        "view": header.view,
        "proposer": header.proposer,
        "timestamp_ms": header.timestamp_ms,
        "prev_hash": header.prev_hash.hex(),
        "tx_root": header.tx_root.hex(),
        "receipts_root": header.receipts_root.hex(),
        "state_root": header.state_root.hex(),
        "validators_hash": header.validators_hash.hex(),
        "tx_count": header.tx_count,
    }


def certificate_json(certificate: CommitCertificate) -> dict[str, Any]:
    return {
        "view": certificate.view,
        "height": certificate.height,
        "block_hash": certificate.block_hash.hex(),
        "votes": [{"validator": i, "signature": s.hex()} for i, s in certificate.votes],
        "raw": certificate.encode().hex(),
    }


def block_json(block: Block, certificate: CommitCertificate | None) -> dict[str, Any]:
    return {
        "height": block.height,
        "hash": block.hash().hex(),
        "header": header_json(block.header),
        "transactions": [tx.hash.hex() for tx in block.transactions],
        "certificate": certificate_json(certificate) if certificate else None,
        # The canonical header: a client checks its hash and the certificate's signatures.
        "header_raw": block.header.encode().hex(),
        "certificate_raw": certificate.encode().hex() if certificate else None,
    }


def account_json(address: bytes, account: Account, *, is_contract: bool) -> dict[str, Any]:
    return {
        "address": address.hex(),
        "balance": account.balance,
        "nonce": account.nonce,
        "contract": is_contract,
    }
