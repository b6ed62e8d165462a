"""The mempool journal: what a validator stopped gracefully still had waiting, so a restart
does not drop accepted transactions without a word (go-ethereum keeps a similar journal).

Format: ``QMJ1`` magic, then records of a 4-byte big-endian length and the transaction's
canonical bytes, then the SHA-256 of everything before it. Written to a temporary file,
fsynced and renamed into place; read once at start and removed. The transactions are
admitted again through the normal checks (signature, nonce): the journal is a hint, never
trusted. A kill -9 leaves no journal (what was only pending is what peers still hold).

Never: trust a journal's contents, or fail a start because of a damaged one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from crypto.hashing import HASH_SIZE, sha256

log = logging.getLogger("quorum.node")

JOURNAL_NAME: Final = "mempool.journal"
_MAGIC: Final = b"QMJ1"
#: Largest transaction a journal record may hold (the hard transaction-size bound).
MAX_RECORD_BYTES: Final = 1 << 20


def save_journal(directory: Path, raws: list[bytes]) -> Path | None:
    """Write ``raws`` atomically; None (and nothing written) when there is nothing."""
    path = directory / JOURNAL_NAME
    if not raws:
        path.unlink(missing_ok=True)
        return None
    body = bytearray(_MAGIC)
    for raw in raws:
        body += len(raw).to_bytes(4, "big") + raw
    body += sha256(bytes(body))
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as out:
        out.write(body)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
    return path


def take_journal(directory: Path) -> list[bytes]:
    """Read and remove the journal; a missing or damaged one gives nothing (logged)."""
    path = directory / JOURNAL_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    finally:
        path.unlink(missing_ok=True)
    raws = _parse(data)
    if raws is None:
        log.warning("ignoring a damaged mempool journal (%d bytes)", len(data))
        return []
    return raws


def _parse(data: bytes) -> list[bytes] | None:
    if len(data) < len(_MAGIC) + HASH_SIZE or not data.startswith(_MAGIC):
        return None
    body, digest = data[:-HASH_SIZE], data[-HASH_SIZE:]
    if sha256(body) != digest:
        return None
    raws: list[bytes] = []
    at = len(_MAGIC)
    while at < len(body):
        if at + 4 > len(body):
            return None
        size = int.from_bytes(body[at : at + 4], "big")
        at += 4
        if size == 0 or size > MAX_RECORD_BYTES or at + size > len(body):
            return None
        raws.append(body[at : at + size])
        at += size
    return raws
