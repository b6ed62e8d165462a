"""Replaying certified blocks fast, and writing every block a Ready commits in one transaction.

Theory of operation. A node behind its peers (restarted, wiped and state-synced, or slow)
fetches certified blocks (ledger/node/peer_limits.py), and the core verifies each commit
certificate as it arrives (consensus/catchup.py) — once per block, with the set of its
epoch. The core then asks to validate them one at a time, each only once its parent
committed. Answered one by one, every block would cost a worker-thread round trip to
execute and its own fsynced SQLite transaction (docs/PERFORMANCE.md, "Catch-up", has the
figures before and after). Instead, when the core asks to validate a fetched block,
:func:`replay` takes the run of fetched blocks chained after it (``Engine.replay_work``):

1. signatures: every transaction of the run whose hash is not in the node's verified cache
   (filled by admission and gossip, so a node that was only briefly away checks few) is
   verified in one pass, split over worker threads, and remembered;
2. execution: the run executes in one worker-thread job, each block on the overlay of the
   one before (``speculative.run_replay``); nothing is written;
3. the core is answered request by request on the event loop: each answer commits a block,
   and the core's request for the next is answered at once from the results. The merged
   Ready carries every committed block of the run, and the node writes them all with
   :func:`write_committed` in ONE SQLite transaction (one fsync) before it sends anything
   of that Ready or steps the engine with ``Persisted`` — the driver contract of
   consensus/replica.py, for a batch.

A kill -9 at any moment leaves the store at a batch boundary (the transaction is atomic;
tests/test_store_crash.py), and whatever the core committed in memory beyond it is fetched
again after the restart. :func:`write_committed` serves every Ready, not only replays: the
blocks a pipelined normal case commits together share a transaction too.

Before the core even sees a catch-up reply, :func:`prepare_fetched` decodes its blocks and
verifies the signatures of those whose certificate verifies (worker threads; when the
core checks the certificate in turn, the node's consensus signature memo answers, so each
certificate's signatures are verified once): with the node
asking for the next range as soon as a reply arrives, the next run is decoded and checked
while the current one executes and is written, and the event loop never decodes a block.

Never: execute a block whose certificate the core has not verified, spend signature checks
on a block whose certificate does not verify, answer a request the core did not make, or
acknowledge anything (``Persisted``) before its transaction returned.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final

import trio

from consensus.certificates import Rejected, verify_commit_proof
from consensus.config import ReplicaConfig
from consensus.messages import CommitProof
from consensus.ready import CommittedBlock, Ready, merge_readies
from crypto.encoding import DecodeError
from ledger.chain.execute import ChainRules, ChainTip, ExecutedBlock
from ledger.chain.store import BlockWrite, Store
from ledger.chain.types import Block, CommitCertificate, Transaction
from ledger.engine.admission import VerifiedCache
from ledger.engine.engine import Engine
from ledger.engine.events import Validated
from ledger.engine.speculative import CommitWork, ReplayWork, run_commit_execution, run_replay
from ledger.node import epochs

log = logging.getLogger("quorum.replay")

#: A replay run (one execution job, one SQLite transaction) holds at most this many
#: blocks: one catch-up reply's worth (ledger/node/wire.py: MAX_BLOCKS_PER_REPLY)...
REPLAY_MAX_BLOCKS: Final = 64
#: ... and stops adding blocks once it holds this many transactions (the overlays of a run
#: stay in memory until it is written: ~1 KB of state and tree writes per transfer).
REPLAY_MAX_TXS: Final = 20_000
#: Signature checks are split over this many worker threads (libsodium releases the GIL)...
VERIFY_THREADS: Final = 2
#: ... when there are at least this many to do (below, one thread is quicker).
PARALLEL_VERIFY_MIN: Final = 512


async def prepare_fetched(
    blocks: Sequence[tuple[bytes, bytes]],
    config: ReplicaConfig,
    max_block_bytes: int,
    verified: VerifiedCache,
) -> tuple[Block | None, ...]:
    """Decode a catch-up reply's blocks and verify the transaction signatures of those
    certified by ``config``'s set (worker threads); the decoded blocks, in order, for the
    engine (``Fetched.decoded``). What does not decode or verify is left to the core to
    refuse and count."""

    def decode_and_check() -> tuple[list[Block | None], list[Transaction]]:
        decoded: list[Block | None] = []
        certified: list[Transaction] = []
        for raw_block, raw_certificate in blocks:
            try:
                block = Block.decode(raw_block, max_bytes=max_block_bytes)
                certificate = CommitCertificate.decode(raw_certificate)
            except DecodeError:
                decoded.append(None)
                continue
            decoded.append(block)
            proof = CommitProof(
                certificate.view, certificate.height, certificate.block_hash, certificate.votes
            )
            if proof.height != block.height or proof.digest != block.hash():
                continue
            try:
                verify_commit_proof(config, proof)
            except Rejected:
                continue
            certified.extend(block.transactions)
        return decoded, certified

    decoded, certified = await trio.to_thread.run_sync(decode_and_check)
    await verify_signatures(certified, verified)
    return tuple(decoded)


def _clock_us() -> int:
    return time.perf_counter_ns() // 1000


async def verify_signatures(txs: Sequence[Transaction], verified: VerifiedCache) -> int:
    """Verify the signatures of ``txs`` not yet in ``verified`` (worker threads), and
    remember the valid ones; how many were checked. An invalid one is left out of the
    cache: execution checks it again and finds the block invalid."""
    todo = [tx for tx in dict.fromkeys(txs) if tx.hash not in verified]
    if not todo:
        return 0

    def check(part: Sequence[Transaction]) -> None:
        for tx in part:
            if verified.verify(tx):
                verified.add(tx.hash)

    if len(todo) < PARALLEL_VERIFY_MIN:
        await trio.to_thread.run_sync(check, todo)
        return len(todo)
    async with trio.open_nursery() as nursery:
        for i in range(VERIFY_THREADS):
            nursery.start_soon(trio.to_thread.run_sync, check, todo[i::VERIFY_THREADS])
    return len(todo)


async def replay(
    engine: Engine,
    work: ReplayWork,
    rules: ChainRules,
    verified: VerifiedCache,
    counters: collections.Counter[str],
    timed: Callable[[str, float], None] | None = None,
) -> Ready:
    """Execute ``work`` (its first request is the core's) and answer the core's requests for
    its blocks as it makes them; the merged Ready commits the blocks it accepted.
    ``timed("validate", seconds)`` is told each answered block's execution time."""
    started = time.perf_counter()
    checked = await verify_signatures(work.transactions, verified)
    verified_s = time.perf_counter() - started
    outcomes = await trio.to_thread.run_sync(
        run_replay, work, rules, verified.signature_ok, _clock_us
    )
    readies: list[Ready] = []
    requests = work.requests
    for i, (outcome, elapsed_us) in enumerate(outcomes):
        if timed is not None:
            timed("validate", elapsed_us / 1e6)
        ready = engine.step(Validated(requests[i], outcome, elapsed_us))
        # Answer the core's request for the next block ourselves only if it made it and
        # the block executed: an invalid one is asked for again once the blocks before it
        # are written, and found invalid then (the core halts on a certified invalid block).
        following = requests[i + 1] if i + 1 < len(outcomes) else None
        if (
            following is None
            or following not in ready.validate
            or isinstance(outcomes[i + 1][0], str)
        ):
            readies.append(ready)
            break
        readies.append(
            dataclasses.replace(ready, validate=tuple(v for v in ready.validate if v != following))
        )
    answered = len(readies)
    counters["replay.runs"] += 1
    counters["replay.blocks"] += answered
    counters["replay.signatures_verified"] += checked
    if answered > 1 or len(work.requests) > 1:
        log.info(
            "replayed blocks %d..%d (%d transactions, %d signatures verified in %.0f ms) "
            "in %.0f ms, to be written in one transaction",
            requests[0].height, requests[answered - 1].height,
            sum(len(b.transactions) for b in work.blocks[:answered]), checked,
            verified_s * 1000, (time.perf_counter() - started) * 1000,
        )  # fmt: skip
    return merge_readies(readies) if len(readies) > 1 else readies[0]


def write_committed(
    store: Store,
    committed: Sequence[CommittedBlock],
    works: Sequence[CommitWork],
    records: dict[str, bytes | None],
    rules: ChainRules,
    verified: VerifiedCache,
) -> list[ExecutedBlock]:
    """Worker thread: execute the committed blocks the node holds no result for (each on
    the one before), then write them all in ONE transaction with ``records`` (the core's
    consensus records of that Ready) in it; the executed blocks, in order."""
    executed: list[ExecutedBlock] = []
    previous: ChainTip | None = None
    for work in works:
        result = work.executed
        if result is None:
            if previous is not None:  # its parent committed in this batch, not yet written
                work = CommitWork(None, work.block, previous)
            result = run_commit_execution(work, rules, verified.signature_ok)
        executed.append(result)
        previous = result
    writes = []
    for index, (block, result) in enumerate(zip(committed, executed, strict=True)):
        certificate = CommitCertificate(block.view, block.height, block.digest, block.votes)
        meta = {**(records if index == 0 else {}), **epochs.link_record(result, certificate)}
        writes.append(
            BlockWrite(
                result.block,
                certificate,
                result.receipts,
                result.overlay.writes,
                result.tree_update,
                meta or None,
            )
        )
    store.append_blocks(writes)
    return executed
