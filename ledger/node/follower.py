"""Follower mode: a validator added by the votes of the current set, not yet a member.

A node whose key is not in the genesis starts here (ledger/node/run.py): it links to the
validators it knows (its config's peers, then the set in state). Far behind (more than
:func:`ledger.node.statesync.min_blocks_behind`, the members' threshold), it first joins by
state sync as a wiped member does (ledger/node/statesync.py: the offers carry the chain of
validator sets, followed from the genesis set; verified chunks are staged and installed in
one transaction, so a kill mid-sync leaves the old store and a restart syncs again). Then
it asks for certified blocks above its head, checks each block's commit certificate with
the set of the block's epoch (ledger/node/epochs.py: the active set in its own state,
replayed or installed, so it follows the chain of sets as ledger/chain/epoch_links.py does
for a light client), re-executes it, and writes it with its epoch link. It stops following
at the end of the first block after which its key is in the active set (possibly the
installed snapshot's): from there the node runs a replica of that epoch
(docs/CONSENSUS.md §12). Meanwhile the HTTP API answers ``/health`` and ``/v1/status``
only (``"syncing": {"mode": "follower", ...}``, with the state sync's phase and progress
while it syncs by snapshot).

Its chain is verified, so it serves it like a validator: catch-up requests (BLOCKS_WANTED,
same limits and reply as the validators', ledger/node/peer_limits.py) and its snapshots,
so a second joiner or a lagging member can catch up from it.

Never: take part in consensus, sign anything, or write a block whose certificate does not
verify with the set the chain says certifies it.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Final

import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from consensus.certificates import Rejected, verify_commit_proof
from consensus.messages import CommitProof
from crypto.encoding import DecodeError
from crypto.keys import PrivateKey
from genesis.document import Genesis
from ledger.chain.execute import ChainRules, InvalidBlock, validate_block
from ledger.chain.store import Store
from ledger.chain.types import Block, CommitCertificate
from ledger.config import NodeConfig
from ledger.engine.admission import VerifiedCache
from ledger.engine.assemble import genesis_config
from ledger.node import epochs, wire
from ledger.node.membership import genesis_names, peer_id, refresh_peers
from ledger.node.node import STATE_SYNC_RETRY_S
from ledger.node.peer_limits import PeerLimits, serve_blocks
from ledger.node.statesync import SnapshotServer, StateSync, min_blocks_behind, route_message
from ledger.node.transport import PeerNetwork

log = logging.getLogger("quorum.follower")

#: Wait this long for a peer's blocks before asking the next one.
REPLY_TIMEOUT_S: Final = 3.0
#: Up to date (or no peer linked yet): ask again after this long.
POLL_S: Final = 0.5


def is_member(store: Store, rules: ChainRules, public_key: bytes) -> bool:
    return public_key in epochs.active_set(store, rules).public_keys


class Follower:
    def __init__(
        self, *, config: NodeConfig, genesis: Genesis, key: PrivateKey, store: Store
    ) -> None:
        self.config = config
        self.genesis = genesis
        self.key = key
        self.store = store
        self.rules = ChainRules.from_genesis(genesis)
        self.base = genesis_config(
            genesis, store.genesis_state_root, lambda raw: Block.decode(raw).hash(), 100
        )
        own = peer_id(genesis, key.public_key)
        self.names = genesis_names(genesis)
        self.names[own] = config.name
        self.verified = VerifiedCache()
        self.counters: collections.Counter[str] = collections.Counter()
        self._replies_send, self._replies = trio.open_memory_channel[
            tuple[int, list[tuple[bytes, bytes]]]
        ](4)
        self.peers: list[str] = []
        self.limits = PeerLimits()
        self.state_sync = StateSync(genesis, own, self.counters)
        self.state_sync.names = self.names
        self.snapshots = SnapshotServer(store, self.counters)
        #: State sync is tried when this many blocks behind (else blocks are replayed).
        self.state_sync_min_blocks = min_blocks_behind(genesis)
        self._next_state_sync_s = 0.0
        #: The last catch-up reply had blocks (at start: not known, so maybe far behind).
        self._behind = True
        self._net: PeerNetwork | None = None
        self._nursery: trio.Nursery | None = None

    def member(self) -> bool:
        return is_member(self.store, self.rules, self.key.public_key)

    def on_message(self, sender: int, message: bytes) -> None:
        """Transport callback (on the event loop, must not block): block replies go to the
        following loop, catch-up and state-sync requests are served, the rest ignored."""
        try:
            family, body = wire.split(message)
            if family is wire.Family.BLOCKS:
                self._replies_send.send_nowait((sender, wire.decode_blocks(body)))
            elif self._net is None or self._nursery is None:
                self.counters["follower.dropped"] += 1  # not running yet
            elif family is wire.Family.BLOCKS_WANTED:
                self._queue_serve(sender, wire.BlocksWanted.decode(body))
            elif family in wire.STATE_SYNC_FAMILIES:
                route_message(
                    self.state_sync, self.snapshots, self._net, self._nursery, sender, family, body
                )
            else:
                self.counters["follower.ignored"] += 1
        except (DecodeError, trio.WouldBlock):
            self.counters["follower.dropped"] += 1

    def _queue_serve(self, sender: int, wanted: wire.BlocksWanted) -> None:
        """A peer's catch-up request, paced and answered as a validator does."""
        assert self._nursery is not None
        wait_s = self.limits.start_serving(sender, trio.current_time())
        if wait_s is None:
            self.counters["catchup.requests_refused"] += 1
            return
        self.counters["catchup.requests_served"] += 1
        self._nursery.start_soon(
            serve_blocks, self._net, self.store, self.limits, self.counters, sender, wanted, wait_s
        )

    async def run(self, net: PeerNetwork) -> None:
        """Follow the chain until this node's key is in the active set, serving peers
        meanwhile."""
        log.info(
            "%s is not a member of the active validator set: following the chain from "
            "block %d until it is", self.config.name, self.store.head_height,
        )  # fmt: skip
        async with trio.open_nursery() as nursery:
            self._net, self._nursery = net, nursery
            try:
                await self._follow(net)
            finally:
                self._net = self._nursery = None
                nursery.cancel_scope.cancel()
        log.info(
            "%s is a member of the validator set after block %d: starting its replica",
            self.config.name, self.store.head_height,
        )  # fmt: skip

    async def _follow(self, net: PeerNetwork) -> None:
        turn = 0
        while not self.member():
            refresh_peers(net, self.store, self.rules.initial_set, self.names, self.genesis)
            linked = net.connected_peers()
            self.peers = [self.names[p] for p in linked]
            if not linked:
                await trio.sleep(POLL_S)
                continue
            if await self._maybe_state_sync(net):
                continue
            turn += 1
            peer = linked[turn % len(linked)]
            head = self.store.head_height
            upto = head + wire.MAX_BLOCKS_PER_REPLY
            net.send(peer, wire.BlocksWanted(head + 1, upto).encode(), bulk=True)
            blocks: list[tuple[bytes, bytes]] = []
            with trio.move_on_after(REPLY_TIMEOUT_S):
                while True:
                    sender, blocks = await self._replies.receive()
                    if sender == peer:
                        break
            self._behind = bool(blocks)
            if not blocks:
                await trio.sleep(POLL_S)
                continue
            applied = await trio.to_thread.run_sync(self._apply, blocks, self.names[peer])
            self.counters["follower.blocks"] += applied

    async def _maybe_state_sync(self, net: PeerNetwork) -> bool:
        """Behind (at start, or the last reply had blocks) and no try for a while: install
        the newest certified snapshot if it is more than the members' threshold above our
        head (the state sync decides from the offers; nearer, we replay blocks). True if
        one was installed."""
        now = trio.current_time()
        if not self.config.state_sync or not self._behind or now < self._next_state_sync_s:
            return False
        self._next_state_sync_s = now + STATE_SYNC_RETRY_S
        installed = await self.state_sync.run(net, self.store, min_ahead=self.state_sync_min_blocks)
        if installed:
            self.counters["follower.snapshots_installed"] += 1
            while True:  # replies asked for before the install are moot
                try:
                    self._replies.receive_nowait()
                except trio.WouldBlock:
                    break
        return installed

    def _apply(self, blocks: list[tuple[bytes, bytes]], served_by: str) -> int:
        """Check and write the blocks extending the head (worker thread); how many."""
        applied = 0
        for raw_block, raw_certificate in blocks:
            if self.member():
                break  # the replica takes over from this block
            try:
                block = Block.decode(raw_block)
                certificate = CommitCertificate.decode(raw_certificate)
                self._apply_one(block, certificate)
            except (DecodeError, Rejected, InvalidBlock, _Refused) as exc:
                log.warning("a block from %s does not verify, ignored: %s", served_by, exc)
                self.counters["follower.refused"] += 1
                break
            applied += 1
        return applied

    def _apply_one(self, block: Block, certificate: CommitCertificate) -> None:
        store = self.store
        header = block.header
        if header.height != store.head_height + 1 or header.prev_hash != store.head_hash:
            raise _Refused(f"block {header.height} does not extend the head")
        if certificate.height != header.height or certificate.block_hash != header.block_hash:
            raise _Refused(f"block {header.height}: the certificate is for another block")
        config = epochs.config_at_head(store, self.rules, self.base)
        verify_commit_proof(
            config,
            CommitProof(
                certificate.view, certificate.height, certificate.block_hash, certificate.votes
            ),
        )
        executed = validate_block(
            store.tip(),
            block,
            view=header.view,
            rules=self.rules,
            signature_ok=self.verified.signature_ok,
        )
        store.append_block(
            executed.block,
            certificate,
            executed.receipts,
            executed.overlay.writes,
            tree_update=executed.tree_update,
            consensus_meta=epochs.link_record(executed, certificate) or None,
        )

    def status(self) -> dict[str, Any]:
        store = self.store
        by_snapshot = self.state_sync.status()
        syncing = (
            {"mode": "follower", "phase": "following", "progress": {"height": store.head_height}}
            if by_snapshot is None
            else {**by_snapshot, "mode": "follower"}  # a member's state-sync fields
        )
        return {
            "name": self.config.name,
            "height": store.head_height,
            "head_hash": store.head_hash.hex(),
            "base_height": store.base_height,
            "view": None,
            "primary": None,
            "peers": self.peers,
            "syncing": syncing,
            "mempool": {"transactions": 0},
            "waiting_for": None,
            "follower": True,
            "counters": dict(sorted(self.counters.items())),
        }


class _Refused(Exception):
    pass


def follower_app(follower: Follower) -> Starlette:
    """What the API serves while the node follows: health and status."""

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def status(request: Request) -> JSONResponse:
        return JSONResponse(follower.status())

    return Starlette(routes=[Route("/health", health), Route("/v1/status", status)])


class SwitchableApp:
    """An ASGI app that hands requests to :attr:`app`, which can be replaced while serving
    (the follower's API, then the validator's); lifespan is acknowledged here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        else:
            await self.app(scope, receive, send)
