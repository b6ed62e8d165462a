"""Starting a validator from its home directory: config, genesis, key, store, network, API.

``run_node(home)`` is what ``quorum node start`` runs in the foreground. It returns when the
process is asked to stop (SIGTERM / SIGINT), or when a validator voted out has retired
(ledger/node/retire.py: it returns the message saying so), after closing the store
cleanly; a SIGKILL at any moment is also safe, because every commit is one SQLite
transaction.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Final

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from crypto.keyfile import load_key, read_public_info
from crypto.keys import PrivateKey
from genesis.document import Genesis, load_genesis
from ledger.chain.execute import ChainRules
from ledger.chain.store import Store
from ledger.chain.store_check import StoreError
from ledger.config import NodeConfig, load_config
from ledger.node.api import build_app
from ledger.node.backend import NodeService
from ledger.node.follower import Follower, SwitchableApp, follower_app, is_member
from ledger.node.journal import JOURNAL_NAME, save_journal, take_journal
from ledger.node.logs import configure_logging, log_event
from ledger.node.node import Node
from ledger.node.retire import Retired
from ledger.node.support import NodeHalted, NotAMember
from ledger.node.transport import PeerNetwork, open_peer_network

log = logging.getLogger("quorum.node")

STORE_FILE_NAME: Final = "chain.db"
#: Journal transactions re-admitted per batch at start.
READMIT_BATCH: Final = 1_000


class StartupError(Exception):
    """The node cannot start, or had to stop; the message says what to fix."""


#: What an operator does about a damaged store (docs/OPERATIONS.md, "Recovery").
REPAIR_HINT: Final = (
    "to repair, stop the node, move its data directory aside and start it again: "
    "it rebuilds its chain from the other validators' certified blocks"
)


def _fatal(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first StoreError, NodeHalted or Retired inside a task group's exceptions."""
    for exc in group.exceptions:
        if isinstance(exc, StoreError | NodeHalted | Retired):
            return exc
        if isinstance(exc, BaseExceptionGroup):
            found = _fatal(exc)
            if found is not None:
                return found
    return None


def _stop_message(exc: BaseException) -> str:
    """Damage comes with the repair hint; a validator removed from the set has nothing to fix."""
    return str(exc) if isinstance(exc, NotAMember) else f"{exc}; {REPAIR_HINT}"


async def run_node(
    home: Path, *, password: str | None = None, log_format: str | None = None
) -> str | None:
    """Run the validator whose home is ``home`` until SIGTERM/SIGINT (None), or until it
    retired after being voted out (the message saying so); ``log_format`` (``text`` or
    ``json``) overrides the config's."""
    config = load_config(home)
    configure_logging(config.log_level, log_format or config.log_format, config.name)
    genesis = load_genesis(config.path(config.genesis_file))
    key_path = config.path(config.validator_key_file)
    if read_public_info(key_path).encrypted and password is None:
        raise StartupError(f"{key_path} is encrypted: give --password-file")
    key = load_key(key_path, password)
    data_dir = config.path(config.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = await trio.to_thread.run_sync(Store.open, data_dir / STORE_FILE_NAME, genesis)
    try:
        await _serve(config, genesis, key, store)
    except BaseExceptionGroup as group:
        fatal = _fatal(group)
        if fatal is None:
            raise
        if isinstance(fatal, Retired):
            return str(fatal)  # a clean end: logged as the `retired` event
        log.error("stopping: %s", fatal)
        raise StartupError(_stop_message(fatal)) from None
    except Retired as exc:
        return str(exc)
    except (StoreError, NodeHalted) as exc:
        log.error("stopping: %s", exc)
        raise StartupError(_stop_message(exc)) from None
    finally:
        store.close()
    return None


async def _serve(config: NodeConfig, genesis: Genesis, key: PrivateKey, store: Store) -> None:
    """The node, its peer network and its HTTP API, until SIGTERM/SIGINT. A validator not
    in the genesis follows the chain until the set includes it (ledger/node/follower.py)."""
    follower: Follower | None = None
    if genesis.validator_index(key.public_key) is None and not is_member(
        store, ChainRules.from_genesis(genesis), key.public_key
    ):
        follower = Follower(config=config, genesis=genesis, key=key, store=store)
    handler = [follower.on_message if follower is not None else _no_handler]
    app = SwitchableApp(follower_app(follower) if follower is not None else None)
    http = HypercornConfig()
    http.bind = [str(config.rpc_listen)]
    http.accesslog = None
    http.errorlog = logging.getLogger("hypercorn.error")
    http.keep_alive_timeout = 75
    async with (
        open_peer_network(config, genesis, key, lambda s, m: handler[0](s, m)) as net,
        trio.open_nursery() as nursery,
    ):
        if follower is not None:
            await nursery.start(serve, app, http)
            log.info("%s following: rpc http://%s p2p %s", config.name, config.rpc_listen,
                     config.p2p_listen)  # fmt: skip
            if not await _follow(follower, net):
                nursery.cancel_scope.cancel()
                return
        node = Node(config=config, genesis=genesis, key=key, store=store)
        handler[0] = node.on_peer_message
        service = NodeService(node)
        app.app = build_app(service, on_request=node.metrics.request)
        await nursery.start(node.run, net)
        nursery.start_soon(service.run)
        if follower is None:
            await nursery.start(serve, app, http)
        journal_dir = Path(store.path).parent
        await _readmit(node, take_journal(journal_dir))
        log_event(
            log, "node_started", "%s serving: rpc http://%s p2p %s height %d",
            config.name, config.rpc_listen, config.p2p_listen, store.head_height,
            rpc=f"http://{config.rpc_listen}", p2p=str(config.p2p_listen),
            height=store.head_height,
        )  # fmt: skip
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log_event(log, "node_stopping", "received %s, stopping",
                          signal.Signals(signum).name, signal=signal.Signals(signum).name)  # fmt: skip
                break
        pending = node.mempool.journal()
        if save_journal(journal_dir, pending) is not None:
            log.info("kept %d waiting transactions in %s", len(pending), JOURNAL_NAME)
        nursery.cancel_scope.cancel()


def _no_handler(sender: int, message: bytes) -> None:  # pragma: no cover - replaced at once
    pass


async def _follow(follower: Follower, net: PeerNetwork) -> bool:
    """Follow until a member (True), or until SIGTERM/SIGINT (False: stop)."""
    member = False
    async with trio.open_nursery() as nursery:

        async def follow() -> None:
            nonlocal member
            await follower.run(net)
            member = True
            nursery.cancel_scope.cancel()

        nursery.start_soon(follow)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("received %s, stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
    return member


async def _readmit(node: Node, raws: list[bytes]) -> None:
    """Transactions a graceful stop left waiting: admitted again through every check."""
    taken = 0
    for start in range(0, len(raws), READMIT_BATCH):
        results = await node.admit(raws[start : start + READMIT_BATCH])
        taken += sum(1 for r in results if r["status"] == "pending")
    if raws:
        log.info("re-admitted %d of %d transactions from %s", taken, len(raws), JOURNAL_NAME)
