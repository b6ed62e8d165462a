"""Admission off the event loop: a worker thread turns a batch of raw transactions into
:class:`~ledger.engine.events.Checked` items for the engine (each hashed, decoded and
verified once, ledger/engine/admission.py), checking each sender's role and reading its
committed nonce on the store's committed state; and the answer a client gets for a transaction already committed.

Never: verify a signature whose transaction hash is already in the verified cache, or read
the store on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from crypto.encoding import DecodeError
from ledger.chain.execute import ChainRules
from ledger.chain.store import Store
from ledger.chain.types import Receipt, Transaction, TxRejected
from ledger.engine.admission import RETRY_AFTER_MS, BatchGate, Gate, VerifiedCache, admit_raw
from ledger.engine.engine import commit_answer
from ledger.engine.events import Checked
from ledger.render import receipt_json


def check_batch(
    raws: list[bytes],
    *,
    verified: VerifiedCache,
    rules: ChainRules,
    store: Store,
    stop_codes: frozenset[str] = frozenset(),
    gate: Gate | None = None,
    known: Mapping[bytes, Transaction] | None = None,
) -> list[Checked]:
    """Worker thread: admit each raw transaction once and read its sender's nonce.

    The batch ends early at the first rejection whose code is in ``stop_codes`` (gossip
    from a peer that relays what it should not: the rest is not worth verifying).
    """
    out: list[Checked] = []
    # A batch mostly comes from a few senders: read each one's nonce once per batch. The
    # height first: a commit landing in between makes the nonce newer, never older.
    nonces: dict[bytes, tuple[int, int]] = {}
    runs = None if gate is None else BatchGate(gate)
    for raw in raws:
        try:
            admitted = admit_raw(raw, rules, verified, gate=runs, known=known, roles=store)
        except TxRejected as exc:
            out.append(Checked(exc))
            if exc.code in stop_codes:
                break
            continue
        except DecodeError as exc:  # pragma: no cover - decode_transaction maps these
            out.append(Checked(TxRejected("malformed", str(exc))))
            if "malformed" in stop_codes:
                break
            continue
        held = None if runs is None else runs.admitted(admitted)
        if held is not None:
            out.append(Checked(held))
            continue
        read = nonces.get(admitted.sender)
        if read is None:
            height = store.head_height
            read = nonces[admitted.sender] = (store.get_account(admitted.sender).nonce, height)
        out.append(Checked(admitted, *read))
    return out


def commit_result(receipt: Receipt, height: int) -> dict[str, Any]:
    """What a client is told about a committed transaction."""
    return commit_answer(receipt, height, receipt_json)


def refused(count: int, *, syncing: bool) -> list[dict[str, Any]]:
    """Answers for a client batch refused before any work: the node installs a snapshot
    (``syncing``), or verifies as many transactions as it can (``busy``)."""
    return [
        {
            "tx_hash": None,
            "status": "rejected",
            "code": "syncing" if syncing else "busy",
            "error": "the node is installing a state snapshot; retry later"
            if syncing
            else "the node is verifying as many transactions as it can; retry later",
            "retry_after_ms": RETRY_AFTER_MS,
        }
        for _ in range(count)
    ]
