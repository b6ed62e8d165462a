"""`quorum bench reads`: what verifiable reads cost (issue 14).

Against a running node, one client, one request at a time: the round-trip time of
account reads with and without their proofs, and of committed-transaction lookups with
and without inclusion proofs (the ratio is what proofs cost the node and the wire); the
size of each proof (JSON and canonical bytes); and how many answers per second the light
client verifies on this machine (certificate signatures, Merkle proofs).

Never: count a read whose proof did not verify.
"""

from __future__ import annotations

import json
import time
from typing import Any

from genesis.document import Genesis
from ledger.client import QuorumClient
from ledger.light import LightClient

#: Blocks below the head searched for the fullest one.
BLOCKS_SCANNED = 64


def _timed(count: int, call: Any) -> tuple[float, list[Any]]:
    results = []
    started = time.perf_counter()
    for i in range(count):
        results.append(call(i))
    return (time.perf_counter() - started) / count, results


def measure_reads(node: str, genesis: Genesis, count: int) -> dict[str, Any]:
    light = LightClient(genesis)
    addresses = [a.address for a in genesis.accounts] or [bytes(20)]
    with QuorumClient(node) as client:
        # The fullest of the last blocks: a transaction proof costs most in a big block.
        head = client.block(None)
        top = int(head["height"]) if head else 0
        blocks = [client.block(h) for h in range(max(1, top - BLOCKS_SCANNED), top + 1)]
        fullest = max((b for b in blocks if b), key=lambda b: len(b["transactions"]), default={})
        tx_hashes = [bytes.fromhex(h) for h in fullest.get("transactions", [])]
        picks = [addresses[i % len(addresses)] for i in range(count)]
        plain_s, _ = _timed(count, lambda i: client.account(picks[i]))
        proof_s, proven = _timed(count, lambda i: client.account(picks[i], proof=True))
        tx_plain_s = tx_proof_s = 0.0
        tx_docs: list[Any] = []
        if tx_hashes:
            tx_picks = [tx_hashes[i % len(tx_hashes)] for i in range(count)]
            tx_plain_s, _ = _timed(count, lambda i: client.transaction(tx_picks[i]))
            tx_proof_s, tx_docs = _timed(
                count, lambda i: client.transaction(tx_picks[i], proof=True)
            )
    verify_s, _ = _timed(count, lambda i: light.verify_account(picks[i], proven[i]))
    sample = proven[0]["proof"]
    state_bytes = sum(len(r["proof"]) // 2 for r in sample["state"])
    figures: dict[str, Any] = {
        "node": node,
        "reads": count,
        "account_plain_ms": round(plain_s * 1000, 3),
        "account_proof_ms": round(proof_s * 1000, 3),
        "account_proof_ratio": round(proof_s / plain_s, 2) if plain_s else None,
        "account_proof_json_bytes": len(json.dumps(sample)),
        "account_state_proof_bytes": state_bytes,
        "header_and_certificate_bytes": (
            len(sample["header"] or "") + len(sample["certificate"] or "")
        )
        // 2,
        "client_account_verifies_per_s": round(1 / verify_s) if verify_s else None,
    }
    if tx_docs:
        tx_verify_s, _ = _timed(
            count, lambda i: light.verify_transaction(tx_hashes[i % len(tx_hashes)], tx_docs[i])
        )
        figures.update(
            tx_plain_ms=round(tx_plain_s * 1000, 3),
            tx_proof_ms=round(tx_proof_s * 1000, 3),
            tx_proof_ratio=round(tx_proof_s / tx_plain_s, 2) if tx_plain_s else None,
            tx_proof_json_bytes=len(json.dumps(tx_docs[0]["proof"])),
            tx_block_size=len(tx_hashes),
            client_tx_verifies_per_s=round(1 / tx_verify_s) if tx_verify_s else None,
        )
    return figures
