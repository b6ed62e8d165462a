"""The fault-injecting relay on its own, against a local echo server (no nodes): it
forwards, cuts, holds one direction and releases in order, delays, and replays handshakes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from ledger.chaos.relay import CUT, HANDSHAKE_BYTES, HOLD, PASS, RelayNetwork, Rule

DEADLINE_S = 10.0


class EchoServer:
    """Echoes every byte back; counts connections. Stopped by close()."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.connections = 0
        self.received = bytearray()
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._stop = False
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    self.received += data
                    conn.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.sock.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._accept.join(5)
        for thread in self._threads:
            thread.join(5)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def relay(echo: EchoServer) -> Iterator[RelayNetwork]:
    network = RelayNetwork(
        {"a": ("127.0.0.1", 9), "b": (str(echo.address[0]), int(echo.address[1]))}, seed=1
    )
    with network:
        yield network


def connect(relay: RelayNetwork) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", relay.ports[("a", "b")]), timeout=DEADLINE_S)
    sock.settimeout(DEADLINE_S)
    return sock


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return True


def test_it_forwards_both_ways(relay: RelayNetwork) -> None:
    with connect(relay) as sock:
        sock.sendall(b"hello")
        assert read_exactly(sock, 5) == b"hello"
    assert relay.statistics()["connections"] == 1


def test_a_cut_closes_live_connections_and_refuses_new_ones(relay: RelayNetwork) -> None:
    with connect(relay) as sock:
        sock.sendall(b"x")
        assert read_exactly(sock, 1) == b"x"
        relay.set_rule("a", "b", CUT)
        assert closed(sock)
    with connect(relay) as sock:
        assert closed(sock)
    relay.heal()
    with connect(relay) as sock:
        sock.sendall(b"y")
        assert read_exactly(sock, 1) == b"y"


def test_a_one_way_hold_keeps_bytes_back_and_releases_them_in_order(
    relay: RelayNetwork, echo: EchoServer
) -> None:
    with connect(relay) as sock:
        sock.sendall(b"0")
        assert read_exactly(sock, 1) == b"0"
        relay.set_rule("a", "b", HOLD)
        for i in range(1, 6):
            sock.sendall(str(i).encode())
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert bytes(echo.received) == b"0"  # nothing got through
        sock.settimeout(DEADLINE_S)
        relay.set_rule("a", "b", PASS)
        assert read_exactly(sock, 5) == b"12345"


def test_a_delay_holds_each_chunk(relay: RelayNetwork) -> None:
    relay.all_links(Rule("delay", delay_ms=300))
    with connect(relay) as sock:
        started = time.monotonic()
        sock.sendall(b"ping")
        assert read_exactly(sock, 4) == b"ping"
        assert time.monotonic() - started >= 0.3


def test_replayed_handshake_bytes_open_a_second_connection(
    relay: RelayNetwork, echo: EchoServer
) -> None:
    relay.set_replay(True)
    with connect(relay) as sock:
        sock.sendall(bytes(HANDSHAKE_BYTES))
        read_exactly(sock, HANDSHAKE_BYTES)
        end = time.monotonic() + DEADLINE_S
        while echo.connections < 2 and time.monotonic() < end:
            time.sleep(0.05)
    assert echo.connections == 2
    assert relay.statistics()["replay.attempts"] == 1
