"""Per-peer limits against a validator that abuses gossip or catch-up (Aardvark's point:
one faulty replica must not collapse the others' throughput); catch-up in both directions:
reading the blocks a peer asks for, and asking peers for ours one request at a time.

Never: let one peer hold more than one catch-up reply in progress, or verify more of a
gossip batch after its first transaction no honest validator would have relayed.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Final

import trio

from consensus.limits import MAX_CATCHUP_BLOCKS
from consensus.ready import FetchRequest
from crypto.encoding import DecodeError
from ledger.chain.store import Store
from ledger.chain.types import CommitCertificate
from ledger.node import wire
from ledger.node.transport import PeerNetwork

#: How long a catch-up request waits for its reply before asking another peer.
FETCH_TIMEOUT_S: Final = 5.0
#: Gossip messages waiting for admission (older ones are dropped first when it is full:
#: gossip is best effort, clients and other peers still hold the transactions).
MAX_GOSSIP_BACKLOG: Final = 256
#: A peer that gossips a transaction an honest node would never relay (bad signature,
#: wrong chain, malformed...) has its gossip ignored for this long (doubling per repeat).
GOSSIP_PENALTY_S: Final = 10.0
MAX_GOSSIP_PENALTY_S: Final = 600.0
#: Stateless rejections an honest peer never gossips (it checked them before relaying).
BYZANTINE_GOSSIP_CODES: Final = frozenset(
    {"malformed", "bad_signature", "wrong_chain", "too_large", "gas_limit", "self_transfer",
     "bad_code"}
)  # fmt: skip
#: Catch-up serving per peer: one request at a time (another is refused), each served at
#: least this long after the last (it waits), at most this many reply bytes a second (a
#: request is 33 bytes; a reply up to 8 MiB).
SERVE_MIN_INTERVAL_S: Final = 0.05
SERVE_BYTES_PER_S: Final = 32 * 1024 * 1024


class PeerLimits:
    """Who may gossip and be served now; times are the caller's monotonic clock (s)."""

    def __init__(self) -> None:
        self._gossip_banned_until: dict[int, float] = {}
        self._gossip_penalty_s: dict[int, float] = {}
        self._serve_after: dict[int, float] = {}

    def gossip_banned(self, peer: int, now: float) -> bool:
        return self._gossip_banned_until.get(peer, 0.0) > now

    def ban_gossip(self, peer: int, now: float) -> float:
        """Ignore ``peer``'s gossip for 10 s, doubling per repeat up to 10 min; returns it."""
        previous = self._gossip_penalty_s.get(peer, GOSSIP_PENALTY_S / 2)
        penalty = min(previous * 2, MAX_GOSSIP_PENALTY_S)
        self._gossip_penalty_s[peer] = penalty
        self._gossip_banned_until[peer] = now + penalty
        return penalty

    def start_serving(self, peer: int, now: float) -> float | None:
        """None if a catch-up request of ``peer`` is in progress (refuse this one); else
        how many seconds to wait before serving it (the pace of its previous reply), and
        ``peer`` is marked busy. Refusing a request that merely comes early would leave an
        honest asker waiting out its timeout: one that replays while it asks ahead asks
        again as soon as a reply arrives."""
        after = self._serve_after.get(peer, 0.0)
        if after == float("inf"):
            return None
        self._serve_after[peer] = float("inf")  # busy until the reply is sent
        return max(0.0, after - now)

    def done_serving(self, peer: int, now: float, sent_bytes: int) -> None:
        pause = max(SERVE_MIN_INTERVAL_S, sent_bytes / SERVE_BYTES_PER_S)
        self._serve_after[peer] = now + pause


def read_blocks(store: Store, wanted: wire.BlocksWanted) -> list[tuple[bytes, bytes]]:
    """``(block, certificate)`` encodings for a catch-up request, within the reply limits
    (worker thread: store reads)."""
    out: list[tuple[bytes, bytes]] = []
    size = 0
    last = min(
        wanted.to_height, store.head_height, wanted.from_height + wire.MAX_BLOCKS_PER_REPLY - 1
    )
    for height in range(wanted.from_height, last + 1):
        block = store.get_block(height)
        certificate = store.get_certificate(height)
        if block is None or certificate is None:
            break
        raw = block.encode()
        if out and size + len(raw) > wire.MAX_BLOCKS_REPLY_BYTES:
            break
        out.append((raw, certificate.encode()))
        size += len(raw)
    return out


class Fetcher:
    """Our catch-up requests: at most one outstanding, each to the next connected peer,
    given up after :data:`FETCH_TIMEOUT_S` (then the next request goes elsewhere); heights
    the core holds or that are arriving (a reply being prepared) are not asked again."""

    def __init__(self, own_index: int) -> None:
        self._own = own_index
        self._reply = trio.Event()
        self._peer = 0
        self.active = False
        #: Heights of catch-up replies being prepared before the core sees them.
        self._arriving: set[int] = set()

    def ask(
        self,
        net: PeerNetwork,
        nursery: trio.Nursery,
        wanted: FetchRequest,
        held: Callable[[int], bool],
    ) -> bool:
        """:meth:`request` from the first height of ``wanted`` neither ``held`` nor arriving."""
        first = wanted.from_height
        while first <= wanted.to_height and (first in self._arriving or held(first)):
            first += 1
        return first <= wanted.to_height and self.request(net, nursery, first, wanted.to_height)

    @contextmanager
    def arriving(self, blocks: list[tuple[bytes, bytes]], committed: int) -> Iterator[None]:
        """While a reply is prepared: its heights count as asked for."""
        last = min(_last_height(blocks, committed), committed + MAX_CATCHUP_BLOCKS)
        heights = set(range(max(committed + 1, last - len(blocks) + 1), last + 1))
        self._arriving |= heights
        try:
            yield
        finally:
            self._arriving -= heights

    def following(self, blocks: list[tuple[bytes, bytes]], committed: int) -> FetchRequest | None:
        """After a full reply, the range after it (a peer above its head answers empty), if
        the core could hold it yet (up to MAX_CATCHUP_BLOCKS above its head)."""
        if len(blocks) < wire.MAX_BLOCKS_PER_REPLY:
            return None
        last = _last_height(blocks, committed)
        if last + wire.MAX_BLOCKS_PER_REPLY > committed + MAX_CATCHUP_BLOCKS:
            return None
        return FetchRequest(last + 1, last + wire.MAX_BLOCKS_PER_REPLY)

    def request(
        self, net: PeerNetwork, nursery: trio.Nursery, from_height: int, to_height: int
    ) -> bool:
        """Ask a peer for blocks ``from_height..`` (one reply's worth); False if not sent."""
        if self.active:
            return False
        peers = [p for p in net.connected_peers() if p != self._own]
        if not peers:
            return False
        self.active = True
        self._peer = (self._peer + 1) % len(peers)
        self._reply = trio.Event()
        upto = min(to_height, from_height + wire.MAX_BLOCKS_PER_REPLY - 1)
        net.send(peers[self._peer], wire.BlocksWanted(from_height, upto).encode())
        nursery.start_soon(self._deadline, self._reply)
        return True

    def replied(self) -> bool:
        """A BLOCKS reply arrived: True if we were waiting for one (else it is unsolicited).
        The next request may go out at once (the caller may ask for what follows while it
        replays these)."""
        waiting = self.active
        self.cancel()
        return waiting

    def cancel(self) -> None:
        """Forget the outstanding request: a late reply counts as unsolicited (also used when
        a state sync replaced the store, making the request moot)."""
        self._reply.set()
        self.active = False

    async def _deadline(self, reply: trio.Event) -> None:
        with trio.move_on_after(FETCH_TIMEOUT_S):
            await reply.wait()
        if reply is self._reply:  # not a newer request's
            self.active = False


async def serve_blocks(
    net: PeerNetwork | None,
    store: Store,
    limits: PeerLimits,
    counters: collections.Counter[str],
    sender: int,
    wanted: wire.BlocksWanted,
    wait_s: float,
) -> None:
    """Answer a peer's catch-up request (store reads in a worker thread), then pace it. A
    request above our head gets an empty reply: the asker is free to ask elsewhere at once
    instead of waiting out its timeout (it asks ahead while it replays)."""
    sent = 0
    try:
        await trio.sleep(wait_s)
        blocks = await trio.to_thread.run_sync(read_blocks, store, wanted)
        if net is not None:
            reply = wire.encode_blocks(blocks)
            net.send(sender, reply, bulk=True)
            counters["catchup.blocks_served"] += len(blocks)
            sent = len(reply)
    finally:
        limits.done_serving(sender, trio.current_time(), sent)


def _last_height(blocks: list[tuple[bytes, bytes]], committed: int) -> int:
    """The height a catch-up reply ends at, as its last certificate says (a peer's word:
    only used to decide what to ask for next; the core verifies every block)."""
    try:
        return CommitCertificate.decode(blocks[-1][1]).height if blocks else committed
    except DecodeError:  # the core counts it when it gets there
        return committed


class GossipInbox:
    """Gossip batches waiting for admission, bounded (the oldest go first when full), with
    banned peers' batches dropped on arrival and again on delivery."""

    def __init__(self, limits: PeerLimits, counters: collections.Counter[str]) -> None:
        self._limits = limits
        self._counters = counters
        self._queue: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self._wakeup = trio.Event()
        #: Transactions waiting in the queue.
        self.queued_txs = 0

    def put(self, sender: int, raws: list[bytes]) -> None:
        if self._limits.gossip_banned(sender, trio.current_time()):
            self._counters["gossip.ignored_penalised"] += len(raws)
            return
        if len(self._queue) >= MAX_GOSSIP_BACKLOG:
            _, dropped = self._queue.popleft()
            self.queued_txs -= len(dropped)
            self._counters["gossip.dropped_backlog"] += len(dropped)
        self._queue.append((sender, raws))
        self.queued_txs += len(raws)
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[tuple[int, list[bytes]]]:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while self._queue:
                sender, raws = self._queue.popleft()
                self.queued_txs -= len(raws)
                if self._limits.gossip_banned(sender, trio.current_time()):
                    self._counters["gossip.ignored_penalised"] += len(raws)
                    continue
                yield sender, raws
