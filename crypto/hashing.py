"""SHA-256 helpers. One hash function for the whole ledger; 32-byte digests."""

from __future__ import annotations

import hashlib
import re
from typing import Final

HASH_SIZE: Final = 32
ZERO_HASH: Final = bytes(HASH_SIZE)
_HEX_RE: Final = re.compile(r"[0-9a-fA-F]*")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def tagged_hash(tag: str, data: bytes) -> bytes:
    """SHA-256 over a domain tag and data, so hashes of different things never collide."""
    return hashlib.sha256(b"quorum:" + tag.encode("ascii") + b"\x00" + data).digest()


def to_hex(digest: bytes) -> str:
    return digest.hex()


def from_hex(text: str, *, size: int | None = None, name: str = "value") -> bytes:
    """Parse hex (an optional 0x prefix allowed); ValueError names the field on failure."""
    if not isinstance(text, str):
        raise ValueError(f"{name}: expected a hex string")
    body = text[2:] if text.startswith(("0x", "0X")) else text
    if len(body) % 2 or _HEX_RE.fullmatch(body) is None:
        raise ValueError(f"{name}: {text!r} is not valid hex")
    raw = bytes.fromhex(body)
    if size is not None and len(raw) != size:
        raise ValueError(
            f"{name}: expected {size} bytes ({2 * size} hex characters), got {len(raw)}"
        )
    return raw
