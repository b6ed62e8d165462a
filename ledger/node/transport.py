"""Peer links between validators: TCP carrying the :mod:`crypto.handshake` channel, under trio.

What it is for: a node hands it messages (bytes) for other validators and receives theirs;
this module keeps one authenticated, encrypted connection per pair of validators alive and
moves the bytes. What it must never do: block the caller (``send``/``broadcast`` only
queue), grow without bound (every queue and buffer is capped), interpret messages, or let a
peer's bad bytes do anything but close that peer's connection and bump a counter.

Theory of operation:

* **Who dials.** Between two genesis validators, the lower genesis index dials the higher
  one; in a pair with a validator outside the genesis, the smaller public key dials. So
  every pair has exactly one connection and both sides agree which. An inbound link the
  other way is refused ("wrong direction").
* **Whom.** The peer table starts as the genesis validators and then follows the set in
  state (:meth:`PeerNetwork.update_members`, ledger/node/membership.py): members learnt
  from state are dialled at their committed ``p2p`` address (a node config's ``peers``
  entry wins), and a member no longer known is dropped (its link closed, its handshakes
  refused). Peers are keyed by peer id (:func:`ledger.node.membership.peer_id`). If a lower peer dials again while we still
  hold a link from it, the new link replaces the old: it only redials after losing the old.
* **Handshake.** Both sides run :class:`crypto.handshake.Handshake` under
  ``handshake_timeout_s``; the dialer accepts only the validator it dialed, the listener
  any validator of its peer table. At most ``max_pending_handshakes`` inbound
  handshakes run at once; extra connections are closed at once. Failures are counted by
  reason (the :class:`~crypto.handshake.HandshakeFailure` values, plus "timeout",
  "closed", "io error", "wrong direction", "too many pending").
* **Queues.** Each peer has two outgoing lanes sharing one cap in messages and bytes, kept
  across reconnects: consensus messages, and *bulk* (transaction gossip, catch-up
  replies), which the writer takes only when no consensus message waits — a PRE-PREPARE
  never waits behind megabytes of gossip (CometBFT's channel priorities). When full, the
  *oldest* bulk messages are dropped first, then the oldest consensus ones, and counted:
  consensus tolerates loss and fresher messages (the current view and height) are worth
  more than stale ones. Messages a writer had taken when its link died are lost.
* **Writer.** Takes everything queued (up to ``max_coalesced_bytes`` of plaintext) into one
  frame and one ``send_all``: many small messages cost one encryption and one syscall. An
  idle link sends an empty frame every ``keepalive_interval_s``.
* **Reader.** Reads at most ``read_chunk_bytes`` at a time, opens frames (the length cap is
  checked before a body is buffered) and calls ``on_message(sender_index, message)`` for
  each message, in order. The callback runs on the event loop and must not block; if it
  raises, that is our bug and the whole network fails loudly. A link that receives
  nothing for ``idle_timeout_s`` is closed.
* **Reconnect.** The dialer retries with exponential backoff (``reconnect_initial_s``
  doubling to ``reconnect_max_s``, with jitter); a link that lived ``backoff_reset_after_s``
  resets the backoff. Running out of frame counters also just reconnects (fresh keys).
"""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Final

import trio

from crypto.handshake import (
    LENGTH_PREFIX_SIZE,
    FrameError,
    FrameSender,
    Handshake,
    HandshakeError,
    HandshakeResult,
    Role,
    split_messages,
)
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.config import HostPort, NodeConfig
from ledger.node.logs import log_event
from ledger.node.membership import KnownMember, peer_id
from ledger.node.transport_settings import (
    CLOSED,
    CLOSED_BY_PEER,
    CLOSED_LOCALLY,
    CONNECT_FAILED,
    CONNECT_TIMEOUT,
    COUNTER_EXHAUSTED,
    IDLE_TIMEOUT,
    IO_ERROR,
    REPLACED,
    SEND_TIMEOUT,
    TIMEOUT,
    TOO_MANY_PENDING,
    WRONG_DIRECTION,
    NetworkStatistics,
    PeerStatistics,
    TransportSettings,
)

__all__ = [
    "CLOSED",
    "CLOSED_BY_PEER",
    "CLOSED_LOCALLY",
    "CONNECT_FAILED",
    "CONNECT_TIMEOUT",
    "COUNTER_EXHAUSTED",
    "IDLE_TIMEOUT",
    "IO_ERROR",
    "REPLACED",
    "SEND_TIMEOUT",
    "TIMEOUT",
    "TOO_MANY_PENDING",
    "WRONG_DIRECTION",
    "MessageHandler",
    "NetworkStatistics",
    "PeerNetwork",
    "PeerStatistics",
    "TransportSettings",
    "open_peer_network",
]

log = logging.getLogger(__name__)

#: Bytes read per receive while handshaking (hello and auth frame are 107 + 84 bytes).
HANDSHAKE_READ_BYTES: Final = 4096
MessageHandler = Callable[[int, bytes], None]


@dataclass(eq=False)
class _Link:
    direction: str
    started_at: float
    cancel_scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    end_reason: str | None = None


@dataclass(eq=False)
class _Peer:
    index: int
    name: str
    public_key: bytes
    address: HostPort | None
    genesis_index: int | None = None
    dial_scope: trio.CancelScope | None = None
    queue: deque[bytes] = field(default_factory=deque)
    bulk: deque[bytes] = field(default_factory=deque)
    queued_bytes: int = 0
    wakeup: trio.Event = field(default_factory=trio.Event)
    link: _Link | None = None
    messages_out: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    frames_in: int = 0
    bytes_in: int = 0
    dropped_messages: int = 0
    connections: int = 0
    handshake_failures: Counter[str] = field(default_factory=Counter)
    disconnects: Counter[str] = field(default_factory=Counter)


class PeerNetwork:
    """The node's links to the other validators. Create with :func:`open_peer_network`."""

    def __init__(
        self,
        config: NodeConfig,
        genesis: Genesis,
        validator_key: PrivateKey,
        on_message: MessageHandler,
        settings: TransportSettings,
    ) -> None:
        own_key = validator_key.public_key
        self.own_index: Final = peer_id(genesis, own_key)
        self._own_genesis = genesis.validator_index(own_key)
        self._genesis = genesis
        self._key = validator_key
        self._chain_id = genesis.chain_id
        self._genesis_hash = genesis.hash()
        self._on_message = on_message
        self._settings = settings
        self._max_message_bytes = settings.max_message_bytes
        #: Addresses from the node config (they win over the ones learnt from state).
        self._configured: dict[bytes, HostPort] = {}
        for peer in config.peers:
            if peer.validator_public_key == own_key:
                raise ValueError(f"peer {peer.name!r}: that is this node's own validator key")
            self._configured[peer.validator_public_key] = peer.address
        self._peers: dict[int, _Peer] = {}
        self._by_key: dict[bytes, _Peer] = {}
        self._nursery: trio.Nursery | None = None
        for v in genesis.validators:
            if v.public_key != own_key:
                self._add_peer(KnownMember(v.name, v.public_key, None))
        self._pending_handshakes = 0
        self._inbound_refused: Counter[str] = Counter()
        self._inbound_accepted = 0
        #: Message bytes sent and received, by a message's first byte (the node's message
        #: family, ledger/node/wire.py): what each kind of traffic costs.
        self.bytes_sent_by_tag: Counter[int] = Counter()
        self.bytes_received_by_tag: Counter[int] = Counter()
        self._changed = trio.Event()
        self._listen_addresses: tuple[str, ...] = ()
        self._random = random.Random()

    # -- the peer table

    def _add_peer(self, member: KnownMember) -> _Peer:
        key = member.public_key
        index = peer_id(self._genesis, key)
        peer = _Peer(
            index,
            member.name,
            key,
            self._configured.get(key, member.address),
            self._genesis.validator_index(key),
        )
        self._peers[index] = peer
        self._by_key[key] = peer
        return peer

    def _we_dial(self, peer: _Peer) -> bool:
        if self._own_genesis is not None and peer.genesis_index is not None:
            return self._own_genesis < peer.genesis_index
        return self._key.public_key < peer.public_key

    def knows(self, peer_index: int) -> bool:
        return peer_index in self._peers

    def update_members(self, members: Iterable[KnownMember]) -> None:
        """Make the peer table ``members`` (this node's own key is skipped): dial the new
        ones we dial, drop the ones no longer listed (links closed, queues discarded)."""
        own_key = self._key.public_key
        wanted = {m.public_key: m for m in members if m.public_key != own_key}
        for key in [k for k in self._by_key if k not in wanted]:
            peer = self._by_key.pop(key)
            del self._peers[peer.index]
            if peer.dial_scope is not None:
                peer.dial_scope.cancel()
            if peer.link is not None:
                self._end_link(peer.link, CLOSED_LOCALLY)
            log_event(log, "peer_removed", "dropped %s: no longer a validator this node knows "
                      "of", peer.name, peer=peer.name)  # fmt: skip
        for key, member in wanted.items():
            known = self._by_key.get(key)
            if known is None:
                peer = self._add_peer(member)
                log_event(log, "peer_added", "learnt validator %s (%s)", peer.name,
                          peer.address or "no address", peer=peer.name)  # fmt: skip
            else:
                peer = known
                if peer.address is None and member.address is not None:
                    peer.address = member.address
            if self._nursery is not None:
                self._start_dialing(self._nursery, peer)
        self._notify_change()

    def _start_dialing(self, nursery: trio.Nursery, peer: _Peer) -> None:
        if peer.dial_scope is None and peer.address is not None and self._we_dial(peer):
            peer.dial_scope = trio.CancelScope()
            nursery.start_soon(self._dial_loop, peer, peer.dial_scope)

    # -- the node's interface

    def send(self, peer_index: int, message: bytes, *, bulk: bool = False) -> None:
        """Queue ``message`` for one peer; never blocks (a full queue drops its oldest).
        ``bulk`` messages (gossip, catch-up) go after every waiting consensus message."""
        peer = self._peers.get(peer_index)
        if peer is None:
            raise ValueError(f"{peer_index} is not the index of another validator")
        self._check_message(message)
        self._enqueue(peer, message, bulk)

    def broadcast(self, message: bytes, *, bulk: bool = False) -> None:
        """Queue ``message`` for every other validator; never blocks."""
        self._check_message(message)
        for peer in self._peers.values():
            self._enqueue(peer, message, bulk)

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """``host:port`` of each listening socket (the real port when the config said 0)."""
        return self._listen_addresses

    def connected_peers(self) -> list[int]:
        """Indices of the validators with an authenticated link right now, ascending."""
        return sorted(i for i, p in self._peers.items() if p.link is not None)

    async def wait_connected(self, peers: Iterable[int] | None = None) -> None:
        """Wait until every one of ``peers`` (default: all other validators) is connected."""
        wanted = set(self._peers if peers is None else peers)
        if not wanted.issubset(self._peers):
            raise ValueError(
                f"not indices of other validators: {sorted(wanted - set(self._peers))}"
            )
        while not wanted.issubset(self.connected_peers()):
            await self._changed.wait()

    def statistics(self) -> NetworkStatistics:
        return NetworkStatistics(
            own_index=self.own_index,
            listen_addresses=self._listen_addresses,
            peers={i: _peer_statistics(p) for i, p in self._peers.items()},
            inbound_refused=dict(self._inbound_refused),
            inbound_accepted=self._inbound_accepted,
        )

    # -- queues

    def _check_message(self, message: bytes) -> None:
        if not isinstance(message, bytes) or not message:
            raise ValueError("a message must be non-empty bytes")
        if len(message) > self._max_message_bytes:
            raise ValueError(
                f"message of {len(message)} bytes is over the cap of {self._max_message_bytes}"
            )

    def _enqueue(self, peer: _Peer, message: bytes, bulk: bool = False) -> None:
        (peer.bulk if bulk else peer.queue).append(message)
        peer.queued_bytes += len(message)
        max_messages = self._settings.max_queue_messages
        max_bytes = self._settings.max_queue_bytes
        while len(peer.queue) + len(peer.bulk) > max_messages or peer.queued_bytes > max_bytes:
            lane = peer.bulk if peer.bulk else peer.queue
            peer.queued_bytes -= len(lane.popleft())
            peer.dropped_messages += 1
        peer.wakeup.set()

    def _take_batch(self, peer: _Peer) -> list[bytes]:
        limit = self._settings.max_coalesced_bytes
        batch: list[bytes] = []
        size = 0
        for lane in (peer.queue, peer.bulk):  # consensus first
            while lane:
                cost = LENGTH_PREFIX_SIZE + len(lane[0])
                if batch and size + cost > limit:
                    break
                message = lane.popleft()
                batch.append(message)
                size += cost
                self.bytes_sent_by_tag[message[0]] += len(message)
            if lane:
                break
        peer.queued_bytes -= size - LENGTH_PREFIX_SIZE * len(batch)
        return batch

    def _notify_change(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- running

    async def _run(
        self,
        listeners: Sequence[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        self._listen_addresses = tuple(_address_of(listener) for listener in listeners)
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle_inbound, list(listeners))
            self._nursery = nursery
            for peer in list(self._peers.values()):
                self._start_dialing(nursery, peer)
            task_status.started()

    def _handshake(self, role: Role, allowed: Collection[bytes]) -> Handshake:
        return Handshake(
            role,
            self._key,
            self._chain_id,
            self._genesis_hash,
            allowed,
            max_frame_bytes=self._settings.max_frame_bytes,
            max_frame_counter=self._settings.max_frame_counter,
        )

    async def _establish(
        self, stream: trio.SocketStream, handshake: Handshake
    ) -> HandshakeResult | str:
        """Run the handshake under its timeout: the result, or the reason it failed."""
        try:
            with trio.fail_after(self._settings.handshake_timeout_s):
                await stream.send_all(handshake.data_to_send())
                while True:
                    data = await stream.receive_some(HANDSHAKE_READ_BYTES)
                    if not data:
                        return CLOSED
                    result = handshake.receive_data(data)
                    out = handshake.data_to_send()
                    if out:
                        await stream.send_all(out)
                    if result is not None:
                        return result
        except HandshakeError as exc:
            return exc.reason
        except trio.TooSlowError:
            return TIMEOUT
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return IO_ERROR

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        async with stream:
            if self._pending_handshakes >= self._settings.max_pending_handshakes:
                self._inbound_refused[TOO_MANY_PENDING] += 1
                return
            self._pending_handshakes += 1
            try:
                outcome = await self._establish(
                    stream, self._handshake(Role.RESPONDER, self._by_key)
                )
            finally:
                self._pending_handshakes -= 1
            if isinstance(outcome, str):
                self._inbound_refused[outcome] += 1
                log.debug("refused an inbound peer connection: %s", outcome)
                return
            found = self._by_key.get(outcome.peer_key)
            if found is None:  # dropped while it handshook
                self._inbound_refused["unknown key"] += 1
                return
            peer = found
            if self._we_dial(peer):
                self._inbound_refused[WRONG_DIRECTION] += 1
                log.warning("validator %s dialed us, but we dial it; refused", peer.name)
                return
            self._inbound_accepted += 1
            await self._run_link(peer, stream, outcome, "inbound")

    async def _dial_loop(self, peer: _Peer, scope: trio.CancelScope) -> None:
        with scope:
            await self._dial_forever(peer)

    async def _dial_forever(self, peer: _Peer) -> None:
        settings = self._settings
        assert peer.address is not None
        delay = settings.reconnect_initial_s
        while True:
            started = trio.current_time()
            established = await self._dial_once(peer, peer.address)
            if established and trio.current_time() - started >= settings.backoff_reset_after_s:
                delay = settings.reconnect_initial_s
            await trio.sleep(delay * self._random.uniform(0.8, 1.2))
            delay = min(delay * 2, settings.reconnect_max_s)

    async def _dial_once(self, peer: _Peer, address: HostPort) -> bool:
        """One connection attempt; True if the handshake succeeded (however the link ended)."""
        stream: trio.SocketStream | None = None
        with trio.move_on_after(self._settings.connect_timeout_s):
            try:
                stream = await trio.open_tcp_stream(address.host, address.port)
            except OSError:
                peer.handshake_failures[CONNECT_FAILED] += 1
                return False
        if stream is None:
            peer.handshake_failures[CONNECT_TIMEOUT] += 1
            return False
        async with stream:
            outcome = await self._establish(
                stream, self._handshake(Role.INITIATOR, (peer.public_key,))
            )
            if isinstance(outcome, str):
                peer.handshake_failures[outcome] += 1
                log.info("handshake with %s (%s) failed: %s", peer.name, address, outcome)
                return False
            await self._run_link(peer, stream, outcome, "outbound")
            return True

    async def _run_link(
        self, peer: _Peer, stream: trio.SocketStream, result: HandshakeResult, direction: str
    ) -> None:
        link = _Link(direction, trio.current_time())
        if peer.link is not None:
            peer.link.end_reason = REPLACED
            peer.link.cancel_scope.cancel()
        peer.link = link
        peer.connections += 1
        self._notify_change()
        log_event(log, "peer_connected", "link to %s up (%s)", peer.name, direction,
                  peer=peer.name, direction=direction)  # fmt: skip
        try:
            with link.cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write_loop, peer, stream, result.sender, link)
                    await self._read_loop(peer, stream, result, link)
                    link.cancel_scope.cancel()
        finally:
            reason = link.end_reason or CLOSED_LOCALLY
            peer.disconnects[reason] += 1
            if peer.link is link:
                peer.link = None
                self._notify_change()
            log_event(log, "peer_disconnected", "link to %s down: %s", peer.name, reason,
                      peer=peer.name, reason=reason)  # fmt: skip

    def _end_link(self, link: _Link, reason: str) -> None:
        if link.end_reason is None:
            link.end_reason = reason
        link.cancel_scope.cancel()

    async def _read_loop(
        self, peer: _Peer, stream: trio.SocketStream, result: HandshakeResult, link: _Link
    ) -> None:
        receiver = result.receiver
        deliver = self._on_message
        chunk = self._settings.read_chunk_bytes
        idle_timeout = self._settings.idle_timeout_s
        data = result.leftover
        while True:
            if data:
                peer.bytes_in += len(data)
                try:
                    payloads = receiver.receive_data(data)
                    batches = [split_messages(payload) for payload in payloads]
                except FrameError as exc:
                    log.warning("link to %s: %s", peer.name, exc)
                    self._end_link(link, exc.reason)
                    return
                peer.frames_in += len(payloads)
                received = self.bytes_received_by_tag
                for messages in batches:
                    peer.messages_in += len(messages)
                    for message in messages:
                        if message:
                            received[message[0]] += len(message)
                        deliver(peer.index, message)
            data = b""
            with trio.move_on_after(idle_timeout) as idle:
                try:
                    data = await stream.receive_some(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self._end_link(link, IO_ERROR)
                    return
            if idle.cancelled_caught:
                self._end_link(link, IDLE_TIMEOUT)
                return
            if not data:
                self._end_link(link, CLOSED_BY_PEER)
                return

    async def _write_loop(
        self, peer: _Peer, stream: trio.SocketStream, sender: FrameSender, link: _Link
    ) -> None:
        settings = self._settings
        while True:
            if sender.exhausted:  # checked before taking a batch, so nothing is lost
                self._end_link(link, COUNTER_EXHAUSTED)
                return
            batch: list[bytes] = []
            if peer.queue or peer.bulk:
                batch = self._take_batch(peer)
            else:
                if peer.wakeup.is_set():  # stale: set for messages already taken
                    peer.wakeup = trio.Event()
                with trio.move_on_after(settings.keepalive_interval_s) as quiet:
                    await peer.wakeup.wait()
                if not quiet.cancelled_caught:
                    # Let whoever is about to queue more run first: fewer, fuller frames.
                    await trio.sleep(0)
                    continue
            frame = sender.seal_messages(batch)
            with trio.move_on_after(settings.send_timeout_s) as slow:
                try:
                    await stream.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    self._end_link(link, IO_ERROR)
                    return
            if slow.cancelled_caught:
                self._end_link(link, SEND_TIMEOUT)
                return
            peer.frames_out += 1
            peer.messages_out += len(batch)
            peer.bytes_out += len(frame)


def _peer_statistics(peer: _Peer) -> PeerStatistics:
    return PeerStatistics(
        index=peer.index,
        name=peer.name,
        connected=peer.link is not None,
        direction=None if peer.link is None else peer.link.direction,
        messages_out=peer.messages_out,
        frames_out=peer.frames_out,
        bytes_out=peer.bytes_out,
        messages_in=peer.messages_in,
        frames_in=peer.frames_in,
        bytes_in=peer.bytes_in,
        queued_messages=len(peer.queue) + len(peer.bulk),
        queued_bytes=peer.queued_bytes,
        dropped_messages=peer.dropped_messages,
        connections=peer.connections,
        reconnects=max(0, peer.connections - 1),
        handshake_failures=dict(peer.handshake_failures),
        disconnects=dict(peer.disconnects),
    )


def _address_of(listener: trio.SocketListener) -> str:
    host, port = listener.socket.getsockname()[:2]
    return f"{host}:{port}"


@asynccontextmanager
async def open_peer_network(
    config: NodeConfig,
    genesis: Genesis,
    validator_key: PrivateKey,
    on_message: MessageHandler,
    *,
    settings: TransportSettings | None = None,
    listeners: Sequence[trio.SocketListener] | None = None,
) -> AsyncIterator[PeerNetwork]:
    """Listen on ``config.p2p_listen`` (or on ``listeners``), dial peers, yield the network.

    ``on_message(sender_index, message)`` is called on the event loop for every message
    received; it must not block. Leaving the block closes every link and the listeners
    (queued messages are discarded); ``listeners`` passed in are closed too.
    """
    try:
        network = PeerNetwork(
            config, genesis, validator_key, on_message, settings or TransportSettings()
        )
        if listeners is None:
            listeners = await trio.open_tcp_listeners(
                config.p2p_listen.port, host=config.p2p_listen.host
            )
        async with trio.open_nursery() as nursery:
            await nursery.start(network._run, listeners)
            try:
                yield network
            finally:
                nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            for listener in listeners or ():
                await listener.aclose()
