"""Checking what arrives from clients and peers before it reaches the mempool or the core:
transactions (decode, stateless rules, one signature check per hash) and certified blocks
fetched for catch-up; and the answer a client gets for a committed transaction.

Never: verify a signature whose transaction hash is already in the verified cache, or hand
the core a fetched block whose header or certificate does not decode.
"""

from __future__ import annotations

from typing import Any, Final

from consensus.messages import CommitProof
from crypto.encoding import DecodeError, decode, record_fields
from crypto.hashing import sha256
from ledger.chain.execute import ChainRules
from ledger.chain.store import Store
from ledger.chain.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    Receipt,
    ReceiptStatus,
    Transaction,
    TxRejected,
)
from ledger.node.mempool import check_transaction
from ledger.node.support import VerifiedCache

#: Mempool rejections that mean "this transaction will never be includable": drop it.
PERMANENT_SKIPS: Final = frozenset(
    {"expired", "not_permitted", "bad_signature", "wrong_chain", "too_large", "gas_limit"}
)
#: One checked transaction: (transaction or None, rejection code, message, sender nonce).
Checked = tuple[Transaction | None, str, str, int]


def check_batch(
    raws: list[bytes],
    *,
    verified: VerifiedCache,
    rules: ChainRules,
    store: Store,
    stop_codes: frozenset[str] = frozenset(),
) -> list[Checked]:
    """Worker thread: decode + verify each raw tx once, and read its sender's nonce.

    The batch ends early at the first rejection whose code is in ``stop_codes`` (gossip
    from a peer that relays what it should not: the rest is not worth verifying).
    """
    out: list[Checked] = []
    for raw in raws:
        try:
            if sha256(raw) in verified:
                tx = Transaction.decode(raw)
            else:
                tx = check_transaction(raw, rules.chain_id, rules.limits)
        except TxRejected as exc:
            out.append((None, exc.code, exc.message, 0))
            if exc.code in stop_codes:
                break
            continue
        except DecodeError as exc:
            out.append((None, "malformed", str(exc), 0))
            if "malformed" in stop_codes:
                break
            continue
        verified.add(tx.hash)
        out.append((tx, "", "", store.get_account(tx.sender_address).nonce))
    return out


def commit_result(receipt: Receipt, height: int) -> dict[str, Any]:
    """What a client is told about a committed transaction."""
    from ledger.node.render import receipt_json

    return {
        "status": "committed" if receipt.status == ReceiptStatus.SUCCESS else "failed",
        "height": height,
        "receipt": receipt_json(receipt),
    }


def decode_fetched(raw_block: bytes, raw_certificate: bytes) -> tuple[BlockHeader, CommitProof]:
    """The header and certificate of a block fetched from a peer; DecodeError if malformed.

    Only the header is decoded here; the consensus core checks the payload's digest and
    the certificate's signatures, the driver executes the body before it commits.
    """
    certificate = CommitCertificate.decode(raw_certificate)
    fields = record_fields(decode(raw_block), Block.TAG, Block.VERSION, 2)
    header = BlockHeader.from_value(fields[0])
    proof = CommitProof(
        certificate.view, certificate.height, certificate.block_hash, certificate.votes
    )
    return header, proof
