"""What validators say to each other besides consensus: the node-level envelope.

Every message on a peer link starts with one byte naming its family, then the body:

    0x01 CONSENSUS     a consensus SignedMessage (consensus/messages.py), passed to the core
    0x02 TX_GOSSIP     ["txs", 1, [tx bytes, ...]]          admitted transactions, batched
    0x03 BLOCKS_WANTED ["blocks-wanted", 1, from, to]        catch-up request (inclusive)
    0x04 BLOCKS        ["blocks", 1, [[block, cert], ...]]   committed blocks with certificates
    0x05 SNAPSHOTS_WANTED ["snapshots-wanted", 1]            state sync: which snapshots?
    0x06 SNAPSHOTS     ["snapshots", 2, [[height, key_count, header, cert], ...],
                       [epoch link, ...]]                    offers + the chain of sets
    0x07 CHUNK_WANTED  ["chunk-wanted", 1, height, prefix]   one chunk of a snapshot
    0x08 CHUNK         ["chunk", 1, height, prefix, refusal, state-chunk | nil]
                       refusal "" with the chunk, else "too_large" or "missing"

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
    as_str,
    decode,
    encode_record,
    record_fields,
)
from ledger.chain.epoch_links import EpochLink
from ledger.chain.snapshot import check_prefix

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
    SNAPSHOTS_WANTED = 5
    SNAPSHOTS = 6
    CHUNK_WANTED = 7
    CHUNK = 8


#: Families the state sync exchanges (handled while a sync runs).
STATE_SYNC_FAMILIES: Final = frozenset(
    {Family.SNAPSHOTS_WANTED, Family.SNAPSHOTS, Family.CHUNK_WANTED, Family.CHUNK}
)
#: Families dropped (counted) while this node installs a snapshot: the engine is stopped.
PAUSED_WHILE_SYNCING: Final = frozenset({Family.CONSENSUS, Family.TX_GOSSIP, Family.BLOCKS})


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


# ----------------------------------------------------------------------------- state sync

#: Most snapshots offered in one reply.
MAX_SNAPSHOT_OFFERS: Final = 8
#: Most epoch links (ledger/chain/epoch_links.py: one per validator-set change) sent with
#: offers, and the largest one (a header, a certificate, a set and a state proof).
MAX_EPOCH_LINKS: Final = 4096
MAX_EPOCH_LINK_BYTES: Final = 256 * 1024
#: Refusals a chunk reply may carry instead of the chunk.
CHUNK_REFUSALS: Final = ("too_large", "missing")


@dataclass(frozen=True, slots=True)
class SnapshotOffer:
    """A snapshot a peer keeps: its block's header and commit certificate (checked by the
    client against the genesis) and how many state keys it holds (a hint for chunking)."""

    height: int
    key_count: int
    header: bytes
    certificate: bytes


def encode_snapshots_wanted() -> bytes:
    return frame(Family.SNAPSHOTS_WANTED, encode_record("snapshots-wanted", 1, []))


def decode_snapshots_wanted(body: bytes) -> None:
    record_fields(decode(body, max_bytes=64), "snapshots-wanted", 1, 0)


def encode_snapshots(offers: Sequence[SnapshotOffer], links: Sequence[EpochLink]) -> bytes:
    """Offers, with the server's chain of validator sets: a client verifies the certificate
    of a snapshot taken after a set change with the set the chain names for its height."""
    items = [[o.height, o.key_count, o.header, o.certificate] for o in offers]
    return frame(
        Family.SNAPSHOTS,
        encode_record("snapshots", 2, [items, [link.encode() for link in links]]),
    )


def decode_snapshots(body: bytes) -> tuple[list[SnapshotOffer], list[EpochLink]]:
    """Offers and epoch links, well-formed (nothing in them is verified here)."""
    items, raw_links = record_fields(
        decode(body, max_bytes=MAX_WIRE_MESSAGE_BYTES), "snapshots", 2, 2
    )
    offers = []
    for i, item in enumerate(as_list(items, "snapshots", max_len=MAX_SNAPSHOT_OFFERS)):
        fields = as_list(item, f"snapshots[{i}]", max_len=4)
        if len(fields) != 4:
            raise DecodeError(f"snapshots[{i}]: expected [height, key_count, header, cert]")
        offers.append(
            SnapshotOffer(
                as_int(fields[0], "height"),
                as_int(fields[1], "key_count"),
                as_bytes(fields[2], "header", max_size=4096),
                as_bytes(fields[3], "certificate", max_size=64 * 1024),
            )
        )
    links = [
        EpochLink.decode(as_bytes(raw, f"links[{i}]", max_size=MAX_EPOCH_LINK_BYTES))
        for i, raw in enumerate(as_list(raw_links, "links", max_len=MAX_EPOCH_LINKS))
    ]
    return offers, links


@dataclass(frozen=True, slots=True)
class ChunkWanted:
    height: int
    prefix: bytes

    def encode(self) -> bytes:
        return frame(
            Family.CHUNK_WANTED, encode_record("chunk-wanted", 1, [self.height, self.prefix])
        )

    @classmethod
    def decode(cls, body: bytes) -> ChunkWanted:
        height, prefix = record_fields(decode(body, max_bytes=256), "chunk-wanted", 1, 2)
        return cls(as_int(height, "height"), check_prefix(as_bytes(prefix, "prefix", max_size=8)))


@dataclass(frozen=True, slots=True)
class ChunkReply:
    """A chunk (``refusal`` empty) or why there is none; ``chunk`` is still undecoded."""

    height: int
    prefix: bytes
    refusal: str
    chunk: bytes | None

    def encode(self) -> bytes:
        return frame(
            Family.CHUNK,
            encode_record("chunk", 1, [self.height, self.prefix, self.refusal, self.chunk]),
        )

    @classmethod
    def decode(cls, body: bytes) -> ChunkReply:
        height, prefix, refusal, chunk = record_fields(
            decode(body, max_bytes=MAX_WIRE_MESSAGE_BYTES), "chunk", 1, 4
        )
        reason = as_str(refusal, "refusal", max_size=32)
        raw = None if chunk is None else as_bytes(chunk, "chunk")
        if (reason == "") != (raw is not None) or (reason and reason not in CHUNK_REFUSALS):
            raise DecodeError(f"chunk reply: refusal {reason!r} with chunk {raw is not None}")
        return cls(
            as_int(height, "height"),
            check_prefix(as_bytes(prefix, "prefix", max_size=8)),
            reason,
            raw,
        )
