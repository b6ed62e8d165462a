"""Fault-injecting TCP relays in front of every validator peer link (used by `quorum chaos`).

What it is for: the chaos harness rewrites each node's ``config.toml`` so that a peer's
address is a relay port instead of the peer's real p2p port; the relay accepts the dialer's
connection, opens one to the real peer and pumps bytes both ways. Because every link runs
through it, the harness can partition the network, delay or stall traffic, and cut or
replay connections on real node processes without touching their code.

Theory of operation. One relay listener per ordered pair of nodes ``(dialer, target)``.
A :class:`Rule` governs the bytes flowing in one direction between two nodes (``src`` to
``dst``), whichever of them dialed: ``pass``; ``delay`` (each chunk is held for
``delay_ms`` plus up to ``jitter_ms``, order kept); ``hold`` (bytes are kept back, up to a
cap, and released in order when the rule lifts — a one-way stall); ``cut`` (connections
between the pair are closed and new ones refused); ``flaky`` (each chunk cuts its
connection with probability ``cut_probability``). Peer links are encrypted and every frame
carries a counter, so a relay never drops, duplicates or alters bytes *inside* a
connection (that only breaks the link); it works at the connection level instead: cuts,
stalls, resets and *replays* (a second connection that replays a dialer's recorded
handshake bytes, which the target must refuse without harming the real link).

TCP caveat, documented in docs/RELIABILITY.md: a one-way ``hold`` longer than the peer
transport's idle timeout (10 s) ends that link (the starved side closes it), and a new
handshake needs both directions, so a long asymmetric partition degenerates into a full
one at the link level; messages still flow the open way until then.

The relays run on their own trio loop in a background thread; :class:`RelayNetwork`'s
methods are called from the harness thread and are thread-safe. Never: interpret or alter
the bytes it forwards, block the harness, or outlive :meth:`RelayNetwork.close`.
"""

from __future__ import annotations

import contextlib
import random
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, TypeVar

import trio

HOST: Final = "127.0.0.1"
#: Bytes read from a socket at once.
CHUNK_BYTES: Final = 64 * 1024
#: Chunks a direction may keep back (hold or delay) before the relay stops reading it.
MAX_QUEUED_CHUNKS: Final = 512
CONNECT_TIMEOUT_S: Final = 5.0
#: Bytes a dialer sends before its first frame: HELLO (107) + auth frame (4 + 64 + 16).
HANDSHAKE_BYTES: Final = 107 + 84
#: How long a replayed connection may stay open before we count it as not refused.
REPLAY_WAIT_S: Final = 8.0
START_TIMEOUT_S: Final = 10.0

Mode = Literal["pass", "delay", "hold", "cut", "flaky"]
Pair = tuple[str, str]
Address = tuple[str, int]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rule:
    """What happens to bytes flowing from one node to another."""

    mode: Mode = "pass"
    delay_ms: int = 0
    jitter_ms: int = 0
    cut_probability: float = 0.0


PASS: Final = Rule()
CUT: Final = Rule("cut")
HOLD: Final = Rule("hold")


@dataclass(eq=False)
class _Connection:
    dialer: str
    target: str
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    def involves(self, a: str, b: str) -> bool:
        return {self.dialer, self.target} == {a, b}


@dataclass
class _State:
    """Everything the relay loop and the harness share (touched only on the relay loop)."""

    rules: dict[Pair, Rule] = field(default_factory=dict)
    targets: dict[str, list[Address]] = field(default_factory=dict)
    connections: set[_Connection] = field(default_factory=set)
    changed: trio.Event = field(default_factory=trio.Event)
    replay: bool = False
    counters: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=random.Random)

    def rule(self, src: str, dst: str) -> Rule:
        return self.rules.get((src, dst), PASS)

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class RelayNetwork:
    """Relays for every ordered pair of ``nodes``; see the module docstring.

    ``targets`` maps each node name to its real p2p address. After :meth:`start`,
    :attr:`ports` maps ``(dialer, target)`` to the relay port the dialer must use.
    """

    def __init__(self, targets: dict[str, Address], *, seed: int | None = None) -> None:
        self._real_targets = dict(targets)
        self._state = _State()
        self._state.rng = random.Random(seed)
        self._state.targets = {name: [address] for name, address in targets.items()}
        self.ports: dict[Pair, int] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._nursery: trio.Nursery | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: Unexpected exceptions in connection handlers (bugs in the relay itself).
        self.errors: list[str] = []
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> dict[Pair, int]:
        """Bind every relay listener and start forwarding; returns :attr:`ports`."""
        self._thread = threading.Thread(target=self._thread_main, name="chaos-relay", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError("the chaos relay did not start")
        if self._error is not None:
            raise RuntimeError(f"the chaos relay failed to start: {self._error}")
        return self.ports

    def close(self) -> None:
        """Stop every relay and close every connection. Idempotent."""
        if self._thread is None:
            return
        if self._token is not None and self._stop is not None:
            stop = self._stop
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(stop.set, trio_token=self._token)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> RelayNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the harness thread by start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        names = sorted(self._real_targets)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for dialer in names:
                for target in names:
                    if dialer == target:
                        continue
                    listeners = await trio.open_tcp_listeners(0, host=HOST)
                    self.ports[(dialer, target)] = listeners[0].socket.getsockname()[1]
                    handler = self._handler(dialer, target)
                    nursery.start_soon(trio.serve_listeners, handler, listeners)
            self._ready.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()

    def _call(self, fn: Callable[[], T]) -> T:
        if self._token is None:
            raise RuntimeError("the relay is not running")
        try:
            return trio.from_thread.run_sync(fn, trio_token=self._token)
        except trio.RunFinishedError:
            raise RuntimeError(f"the chaos relay stopped: {self._error!r}") from self._error

    # ------------------------------------------------------------------ faults (harness side)

    def set_rule(self, src: str, dst: str, rule: Rule) -> None:
        """Govern bytes from ``src`` to ``dst``; ``cut`` also closes their connections now."""
        self.set_rules({(src, dst): rule})

    def set_rules(self, rules: dict[Pair, Rule]) -> None:
        def apply() -> None:
            state = self._state
            for (src, dst), rule in rules.items():
                if rule == PASS:
                    state.rules.pop((src, dst), None)
                else:
                    state.rules[(src, dst)] = rule
                if rule.mode == "cut":
                    self._cut_between(src, dst, "cut.partition")
            state.notify()

        self._call(apply)

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every link between nodes of different groups (both directions)."""
        sets = [set(g) for g in groups]
        rules: dict[Pair, Rule] = {}
        for i, a_group in enumerate(sets):
            for b_group in sets[i + 1 :]:
                for a in a_group:
                    for b in b_group:
                        rules[(a, b)] = CUT
                        rules[(b, a)] = CUT
        self.set_rules(rules)

    def isolate(self, name: str) -> None:
        """Cut ``name`` off from every other node."""
        self.partition([name], [n for n in self._real_targets if n != name])

    def one_way(
        self, sources: Iterable[str], destinations: Iterable[str], rule: Rule = HOLD
    ) -> None:
        """Apply ``rule`` (default: hold) to bytes from each source to each destination only."""
        self.set_rules({(s, d): rule for s in sources for d in destinations if s != d})

    def all_links(self, rule: Rule) -> None:
        """Apply ``rule`` to every direction of every link."""
        names = list(self._real_targets)
        self.set_rules({(a, b): rule for a in names for b in names if a != b})

    def heal(self) -> None:
        """Every rule back to ``pass``; held bytes are released in order."""

        def apply() -> None:
            self._state.rules.clear()
            self._state.notify()

        self._call(apply)

    def reset_connections(self, between: Iterable[str] | None = None) -> int:
        """Close the current connections (touching any of ``between``); returns how many."""
        wanted = None if between is None else set(between)

        def apply() -> int:
            closed = 0
            for conn in list(self._state.connections):
                if wanted is None or wanted & {conn.dialer, conn.target}:
                    conn.scope.cancel()
                    closed += 1
            self._state.counters["cut.reset"] += closed
            return closed

        return self._call(apply)

    def set_targets(self, name: str, addresses: list[Address]) -> None:
        """Connections to ``name`` go to one of ``addresses`` (chosen per connection)."""

        def apply() -> None:
            self._state.targets[name] = list(addresses)

        self._call(apply)

    def restore_targets(self) -> None:
        def apply() -> None:
            self._state.targets = {n: [a] for n, a in self._real_targets.items()}

        self._call(apply)

    def set_replay(self, enabled: bool) -> None:
        """Replay each new connection's handshake bytes on a second connection to the target."""

        def apply() -> None:
            self._state.replay = enabled

        self._call(apply)

    def statistics(self) -> dict[str, int]:
        """Counters: connections, refused, cuts by cause, bytes, replays and their fate."""

        def read() -> dict[str, int]:
            counters = dict(self._state.counters)
            counters["open"] = len(self._state.connections)
            return counters

        return self._call(read)

    # ------------------------------------------------------------------ forwarding (relay loop)

    def _cut_between(self, a: str, b: str, reason: str) -> None:
        for conn in list(self._state.connections):
            if conn.involves(a, b):
                conn.scope.cancel()
                self._state.counters[reason] += 1

    def _handler(self, dialer: str, target: str) -> Callable[[trio.SocketStream], Awaitable[None]]:
        async def handle(stream: trio.SocketStream) -> None:
            try:
                await self._serve(dialer, target, stream)
            except Exception as exc:  # our bug: recorded for the harness, other links go on
                self._state.counters["relay.errors"] += 1
                if len(self.errors) < 20:
                    detail = "".join(traceback.format_exception(exc)[-3:]).strip()
                    self.errors.append(f"{dialer}->{target}: {detail}")

        return handle

    async def _serve(self, dialer: str, target: str, inbound: trio.SocketStream) -> None:
        state = self._state
        async with inbound:
            if "cut" in (state.rule(dialer, target).mode, state.rule(target, dialer).mode):
                state.counters["refused.partition"] += 1
                return
            address = state.rng.choice(state.targets[target])
            outbound = await _connect(address)
            if outbound is None:
                state.counters["refused.target_down"] += 1
                return
            conn = _Connection(dialer, target)
            state.connections.add(conn)
            state.counters["connections"] += 1
            try:
                async with outbound:
                    with conn.scope:
                        async with trio.open_nursery() as pumps:
                            scope = pumps.cancel_scope
                            pumps.start_soon(
                                self._pump, inbound, outbound, dialer, target, scope, address
                            )
                            pumps.start_soon(
                                self._pump, outbound, inbound, target, dialer, scope, None
                            )
            finally:
                state.connections.discard(conn)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        src: str,
        dst: str,
        scope: trio.CancelScope,
        replay_to: Address | None,
    ) -> None:
        """Forward ``source`` to ``sink`` under the rule for ``src -> dst``; any end ends both.

        ``replay_to`` (dialer to target only): where to replay the recorded handshake bytes.
        """
        state = self._state
        recorded = bytearray()
        send, receive = trio.open_memory_channel[tuple[float, bytes]](MAX_QUEUED_CHUNKS)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write, receive, sink, src, dst)
                last_due = 0.0
                async with send:
                    while True:
                        try:
                            data = await source.receive_some(CHUNK_BYTES)
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            break
                        if not data:
                            break
                        if replay_to is not None and len(recorded) < HANDSHAKE_BYTES:
                            recorded += data[: HANDSHAKE_BYTES - len(recorded)]
                            if len(recorded) == HANDSHAKE_BYTES and state.replay:
                                assert self._nursery is not None
                                self._nursery.start_soon(self._replay, replay_to, bytes(recorded))
                        rule = state.rule(src, dst)
                        if rule.mode == "cut":
                            state.counters["cut.partition"] += 1
                            break
                        if rule.mode == "flaky" and state.rng.random() < rule.cut_probability:
                            state.counters["cut.flaky"] += 1
                            break
                        due = trio.current_time()
                        if rule.mode == "delay":
                            due += (rule.delay_ms + state.rng.uniform(0, rule.jitter_ms)) / 1000
                        last_due = max(last_due, due)
                        try:
                            await send.send((last_due, data))
                        except trio.BrokenResourceError:  # the writer gave up: the sink broke
                            break
                        state.counters["bytes"] += len(data)
        finally:
            scope.cancel()

    async def _write(
        self,
        queue: trio.MemoryReceiveChannel[tuple[float, bytes]],
        sink: trio.SocketStream,
        src: str,
        dst: str,
    ) -> None:
        state = self._state
        async with queue:
            async for due, data in queue:
                while state.rule(src, dst).mode == "hold":
                    await state.changed.wait()
                await trio.sleep_until(due)
                try:
                    await sink.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return

    async def _replay(self, address: Address, handshake: bytes) -> None:
        """Open a second connection to the target and replay a dialer's handshake bytes."""
        state = self._state
        state.counters["replay.attempts"] += 1
        stream = await _connect(address)
        if stream is None:
            return
        async with stream:
            refused = False
            with trio.move_on_after(REPLAY_WAIT_S):
                try:
                    await stream.send_all(handshake)
                    while await stream.receive_some(CHUNK_BYTES):
                        pass
                    refused = True
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    refused = True
            state.counters["replay.refused" if refused else "replay.lingering"] += 1


async def _connect(address: Address) -> trio.SocketStream | None:
    with trio.move_on_after(CONNECT_TIMEOUT_S):
        try:
            return await trio.open_tcp_stream(*address)
        except OSError:
            return None
    return None
