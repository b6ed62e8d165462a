"""kill -9 at any moment of an append leaves whole blocks only: a child process appends
blocks (tests/store_worker.py) and is killed mid-write, repeatedly."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from genesis.document import Genesis
from ledger.chain.store import Store
from tests.test_store import (
    COUNTER_KEY,
    WORKER,
    assert_tree_matches_flat_state,
    make_genesis,
    raw_sql,
)

# ----------------------------------------------------------------------------- kill -9


def _read_lines(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _run_child_and_kill(
    path: Path,
    log: Path,
    min_commits: int,
    deadline: float,
    kill_delay_s: float = 0.0,
    batch: int = 1,
) -> int:
    """Start a child appending blocks; SIGKILL it after ``min_commits`` acknowledged ones.

    ``kill_delay_s`` shifts the kill into a different phase of the child's next append.

    Returns the last height the child reported as committed.
    """
    lines: queue.Queue[str | None] = queue.Queue()
    with (
        open(log, "ab") as err,
        subprocess.Popen(
            [sys.executable, str(WORKER), str(path), str(batch)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        ) as child,
    ):
        reader = threading.Thread(target=_read_lines, args=(child.stdout, lines), daemon=True)
        reader.start()
        last = -1
        seen = 0
        try:
            while seen < min_commits:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
                if line is None:
                    pytest.fail(f"store worker exited early:\n{log.read_text()}")
                last = int(line)
                seen += 1
            time.sleep(kill_delay_s)
        except queue.Empty:
            pytest.fail(
                f"store worker too slow: {seen} commits before the deadline\n{log.read_text()}"
            )
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        reader.join(timeout=10)
        # Lines printed before the kill landed are acknowledged commits too.
        while (line := lines.get_nowait() if not lines.empty() else None) is not None:
            last = int(line)
    assert child.returncode == -signal.SIGKILL
    return last


def _check_consistent(path: Path, genesis: Genesis, acknowledged: int) -> int:
    with Store.open(path, genesis) as store:
        head = store.head_height
        assert head >= acknowledged, f"acknowledged block {acknowledged} lost (head {head})"
        store.check_integrity()  # every block whole, chained and certified
        prev = genesis.hash()
        for height in range(1, head + 1):
            block = store.get_block(height)
            assert block is not None and block.header.prev_hash == prev
            assert store.get_certificate(height) is not None
            receipts = store.get_block_receipts(height)
            assert [r.tx_hash for r in receipts] == [tx.hash for tx in block.transactions]
            prev = block.hash()
        assert store.get_state(COUNTER_KEY) == str(head).encode()
        # The tree came through whole: its root is the head's, and check_integrity above
        # re-hashed it and found the flat state equal to it.
        header = store.get_header(head)
        assert header is not None and store.state_root == header.state_root
        assert_tree_matches_flat_state(store, path)
    for table in ("transactions", "receipts"):
        orphans = raw_sql(path, f"SELECT count(*) FROM {table} WHERE height > ?", [head])
        assert orphans == [(0,)], f"{table} above the head {head}"
    return head


@pytest.mark.slow
def test_kill_9_mid_append_leaves_whole_blocks(tmp_path: Path) -> None:
    """A store appended to by a process killed with SIGKILL reopens consistent, 3 times over."""
    path = tmp_path / "crash.sqlite"
    log = tmp_path / "worker.log"
    genesis = make_genesis()
    deadline = time.monotonic() + 60
    heads = []
    # The child builds its next block before acknowledging the last one, so a kill sent at
    # once lands early in append_block; the delays push later kills towards and past the
    # WAL write and fsync (measured here: ~1 ms per append of 8 transactions and their
    # state tree nodes).
    for kill_delay_s in (0.0, 0.0008, 0.0016):
        acknowledged = _run_child_and_kill(
            path, log, min_commits=20, deadline=deadline, kill_delay_s=kill_delay_s
        )
        heads.append(_check_consistent(path, genesis, acknowledged))
    assert heads[0] >= 20 and heads[1] >= heads[0] + 20 and heads[2] >= heads[1] + 20
    assert os.path.getsize(path) > 0


@pytest.mark.slow
def test_kill_9_mid_batch_leaves_the_store_at_a_batch_boundary(tmp_path: Path) -> None:
    """Replay writes runs of blocks in one transaction: a kill at any moment leaves the head
    at the end of a run (never inside one), every acknowledged run kept, 3 times over."""
    path = tmp_path / "crash.sqlite"
    log = tmp_path / "worker.log"
    genesis = make_genesis()
    batch = 6
    deadline = time.monotonic() + 60
    heads = []
    for kill_delay_s in (0.0, 0.003, 0.006):  # a 6-block append takes ~5 ms here
        acknowledged = _run_child_and_kill(
            path, log, min_commits=4, deadline=deadline, kill_delay_s=kill_delay_s, batch=batch
        )
        head = _check_consistent(path, genesis, acknowledged)
        assert head % batch == 0, f"head {head} is inside a batch of {batch}"
        heads.append(head)
    assert heads[0] >= 4 * batch and heads[2] >= heads[1] + 4 * batch >= heads[0] + 8 * batch
