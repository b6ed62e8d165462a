"""The peer transport's public data: its settings, its statistics and the reasons it counts.

Split from :mod:`ledger.node.transport` (which re-exports every name here) so that the
runtime stays one readable file. Values only: nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from crypto.handshake import LENGTH_PREFIX_SIZE, MAX_FRAME_BYTES, MAX_FRAME_COUNTER, TAG_SIZE

#: Extra reasons, besides the HandshakeFailure values, a connection attempt can fail for.
TIMEOUT: Final = "timeout"
CONNECT_FAILED: Final = "connect failed"
CONNECT_TIMEOUT: Final = "connect timeout"
CLOSED: Final = "closed"
IO_ERROR: Final = "io error"
WRONG_DIRECTION: Final = "wrong direction"
TOO_MANY_PENDING: Final = "too many pending"
#: Reasons a live link ends, besides the FrameFailure values.
CLOSED_BY_PEER: Final = "closed by peer"
IDLE_TIMEOUT: Final = "idle timeout"
SEND_TIMEOUT: Final = "send timeout"
REPLACED: Final = "replaced"
CLOSED_LOCALLY: Final = "closed locally"
COUNTER_EXHAUSTED: Final = "counter exhausted"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportSettings:
    """Every bound and timer of the peer transport, with its unit in its name."""

    connect_timeout_s: float = 5.0
    handshake_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    backoff_reset_after_s: float = 10.0
    max_queue_messages: int = 20_000
    max_queue_bytes: int = 32 * 1024 * 1024
    max_coalesced_bytes: int = 1024 * 1024
    keepalive_interval_s: float = 2.0
    idle_timeout_s: float = 10.0
    send_timeout_s: float = 10.0
    max_pending_handshakes: int = 64
    read_chunk_bytes: int = 256 * 1024
    max_frame_bytes: int = MAX_FRAME_BYTES
    max_frame_counter: int = MAX_FRAME_COUNTER

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) <= 0:
                raise ValueError(f"transport setting {name} must be positive")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        if not 2 * LENGTH_PREFIX_SIZE + TAG_SIZE < self.max_frame_bytes <= MAX_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be in (24, {MAX_FRAME_BYTES}]")
        if self.max_coalesced_bytes > self.max_frame_bytes - TAG_SIZE:
            raise ValueError("max_coalesced_bytes must fit in one frame")
        if self.idle_timeout_s <= self.keepalive_interval_s:
            raise ValueError("idle_timeout_s must exceed keepalive_interval_s")

    @property
    def max_message_bytes(self) -> int:
        """The largest message ``send`` accepts: one message alone in a full frame."""
        return self.max_frame_bytes - TAG_SIZE - LENGTH_PREFIX_SIZE


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    """Counters for one peer validator (bytes are wire bytes after the handshake).

    ``handshake_failures`` counts our failed dials to this peer by reason (the
    HandshakeFailure values, "connect failed", "connect timeout", "timeout", "closed",
    "io error"); ``disconnects`` counts how its established links ended.
    """

    index: int
    name: str
    connected: bool
    direction: str | None  # "outbound" | "inbound" | None
    messages_out: int
    frames_out: int
    bytes_out: int
    messages_in: int
    frames_in: int
    bytes_in: int
    queued_messages: int
    queued_bytes: int
    dropped_messages: int
    connections: int
    reconnects: int
    handshake_failures: dict[str, int]
    disconnects: dict[str, int]


@dataclass(frozen=True, slots=True)
class NetworkStatistics:
    own_index: int
    listen_addresses: tuple[str, ...]
    peers: dict[int, PeerStatistics]
    #: Inbound connections refused before we knew (or accepted) who they were, by reason.
    inbound_refused: dict[str, int]
    inbound_accepted: int
