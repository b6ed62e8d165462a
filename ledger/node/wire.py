"""What validators say to each other besides consensus: the node-level envelope.

Every message on a peer link starts with one byte naming its family, then the body:

    0x01 CONSENSUS     a consensus SignedMessage (consensus/messages.py), passed to the core
    0x02 TX_GOSSIP     ["txs", 1, [tx bytes, ...]]          admitted transactions, batched
    0x03 BLOCKS_WANTED ["blocks-wanted", 1, from, to]        catch-up request (inclusive)
    0x04 BLOCKS        ["blocks", 1, [[block, cert], ...]]   committed blocks with certificates

Bodies use the canonical encoding; every decoder bounds sizes and counts, and anything
malformed raises :class:`crypto.encoding.DecodeError` for the node to count and drop.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from crypto.encoding import (
    DecodeError,
    as_bytes,
    as_int,
    as_list,
    decode,
    encode_record,
    record_fields,
)

#: Most transactions in one gossip message.
MAX_GOSSIP_TXS: Final = 2_000
#: Most blocks asked for or sent in one catch-up exchange.
MAX_BLOCKS_PER_REPLY: Final = 64
#: A reply stops adding blocks once it holds this many bytes.
MAX_BLOCKS_REPLY_BYTES: Final = 8 * 1024 * 1024
MAX_WIRE_MESSAGE_BYTES: Final = 15 * 1024 * 1024


class Family(enum.IntEnum):
    CONSENSUS = 1
    TX_GOSSIP = 2
    BLOCKS_WANTED = 3
    BLOCKS = 4


def frame(family: Family, body: bytes) -> bytes:
    return bytes((family,)) + body


def split(message: bytes) -> tuple[Family, bytes]:
    if not message:
        raise DecodeError("empty peer message")
    try:
        family = Family(message[0])
    except ValueError:
        raise DecodeError(f"unknown message family {message[0]}") from None
    return family, message[1:]


def encode_tx_gossip(raws: Sequence[bytes]) -> bytes:
    return frame(Family.TX_GOSSIP, encode_record("txs", 1, [list(raws)]))


def decode_tx_gossip(body: bytes) -> list[bytes]:
    (items,) = record_fields(decode(body, max_bytes=MAX_WIRE_MESSAGE_BYTES), "txs", 1, 1)
    return [
        as_bytes(r, f"txs[{i}]")
        for i, r in enumerate(as_list(items, "txs", max_len=MAX_GOSSIP_TXS))
    ]


@dataclass(frozen=True, slots=True)
class BlocksWanted:
    from_height: int
    to_height: int

    def encode(self) -> bytes:
        return frame(
            Family.BLOCKS_WANTED,
            encode_record("blocks-wanted", 1, [self.from_height, self.to_height]),
        )

    @classmethod
    def decode(cls, body: bytes) -> BlocksWanted:
        lo, hi = record_fields(decode(body, max_bytes=1024), "blocks-wanted", 1, 2)
        wanted = cls(as_int(lo, "from"), as_int(hi, "to"))
        if wanted.to_height < wanted.from_height:
            raise DecodeError("blocks-wanted: empty range")
        return wanted


def encode_blocks(blocks: Sequence[tuple[bytes, bytes]]) -> bytes:
    return frame(Family.BLOCKS, encode_record("blocks", 1, [[[b, c] for b, c in blocks]]))


def decode_blocks(body: bytes) -> list[tuple[bytes, bytes]]:
    (items,) = record_fields(decode(body, max_bytes=MAX_WIRE_MESSAGE_BYTES), "blocks", 1, 1)
    out = []
    for i, item in enumerate(as_list(items, "blocks", max_len=MAX_BLOCKS_PER_REPLY)):
        pair = as_list(item, f"blocks[{i}]", max_len=2)
        if len(pair) != 2:
            raise DecodeError(f"blocks[{i}]: expected [block, certificate]")
        out.append(
            (as_bytes(pair[0], f"blocks[{i}].block"), as_bytes(pair[1], f"blocks[{i}].certificate"))
        )
    return out
