"""The invariants the chaos harness holds a network to after every scenario.

What it checks (docs/RELIABILITY.md, "invariants"):

1. **Agreement.** Every node holds the same block hash at every height: each node's chain
   is walked through ``GET /v1/blocks/{h}``; each block's hash is recomputed from its
   canonical header bytes, linked to its parent, and (once per height) its commit
   certificate is verified against the genesis validator set — the harness trusts no node.
2. **State.** Once the nodes have converged, their state roots (``GET /v1/status``) agree.
3. **Nothing acknowledged is lost.** Every transaction a node *reported committed*
   (:class:`~ledger.chaos.load.CommitLedger`) is in the agreed chain at the reported
   height, exactly once; a sample (or all) of them is also looked up on every node
   (``GET /v1/transactions/{hash}``): same height, same receipt status.
4. **Liveness after heal** is measured by the scenario runner (:mod:`ledger.chaos.run`).

Lost = reported committed but absent from some node's chain; divergent = different block
hashes at one height, a transaction at another height or with another status, a
transaction in two blocks, or two nodes reporting one transaction differently.

The walk is incremental: heights already verified on a node are not fetched again unless
:meth:`Auditor.forget` says the node's store was replaced.
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from crypto.encoding import DecodeError
from crypto.hashing import sha256
from ledger.chain.types import CommitCertificate, InvalidCertificate
from ledger.chaos.load import CommitLedger, CommitRecord
from ledger.chaos.net import ChaosNet

CONVERGE_DEADLINE_S: Final = 120.0
#: Heights fetched in sequence by one thread, and such threads per node at once.
WALK_CHUNK: Final = 100
WALK_PARALLEL: Final = 3
HTTP_TIMEOUT_S: Final = 10.0
POLL_S: Final = 0.25


@dataclass
class AuditResult:
    """What one audit found. ``ok`` when nothing was lost or divergent and nodes converged."""

    height: int = 0
    nodes: list[str] = field(default_factory=list)
    converged: bool = True
    blocks_checked: int = 0
    certificates_checked: int = 0
    txs_checked: int = 0
    receipts_checked: int = 0
    lost: list[str] = field(default_factory=list)
    divergent: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.converged and not self.lost and not self.divergent and not self.problems

    def summary(self) -> str:
        parts = [
            f"height {self.height} on {', '.join(self.nodes)}",
            f"{self.blocks_checked} blocks, {self.txs_checked} txs "
            f"({self.receipts_checked} receipt lookups)",
        ]
        if not self.converged:
            parts.append("NOT CONVERGED")
        for label, items in (
            ("lost", self.lost),
            ("divergent", self.divergent),
            ("problems", self.problems),
        ):
            if items:
                parts.append(f"{label}: {'; '.join(items[:5])}")
        return "; ".join(parts)


class Auditor:
    """Checks the invariants over a :class:`ChaosNet`; keeps what it verified between calls."""

    def __init__(self, net: ChaosNet, *, seed: int | None = None) -> None:
        self.net = net
        self.reference: dict[int, str] = {}
        self.reference_txs: dict[int, list[str]] = {}
        self.tx_height: dict[str, int] = {}
        self.verified: dict[str, int] = {}
        self.checked: set[str] = set()
        self._rng = random.Random(seed)
        self.totals: dict[str, int] = {
            "blocks": 0,
            "certificates": 0,
            "txs": 0,
            "receipts": 0,
            "lost": 0,
            "divergent": 0,
        }

    def forget(self, name: str) -> None:
        """``name``'s store was replaced: walk it from the start next time."""
        self.verified.pop(name, None)

    # ------------------------------------------------------------------ convergence

    def heads(self, names: list[str]) -> dict[str, tuple[int, str, str, bool]] | None:
        """(height, head hash, state root, syncing) per node, or None if one does not answer."""
        out = {}
        for name in names:
            status = self.net.status(name, 3.0)
            if status is None:
                return None
            out[name] = (
                int(status["height"]),
                str(status["head_hash"]),
                str(status["state_root"]),
                bool(status["syncing"]),
            )
        return out

    def wait_converged(
        self, names: list[str], at_least: int, deadline_s: float = CONVERGE_DEADLINE_S
    ) -> dict[str, tuple[int, str, str, bool]] | None:
        """Wait until every node in ``names`` has one head at or above ``at_least``."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            heads = self.heads(names)
            if heads is not None:
                tops = {(h, head) for h, head, _, _ in heads.values()}
                if len(tops) == 1 and next(iter(tops))[0] >= at_least:
                    return heads
            time.sleep(POLL_S)
        return None

    # ------------------------------------------------------------------ the audit

    def audit(
        self,
        names: list[str],
        ledger: CommitLedger,
        *,
        receipt_sample: int | None = None,
        deadline_s: float = CONVERGE_DEADLINE_S,
    ) -> AuditResult:
        """Converge, walk, compare; ``receipt_sample`` None looks up every new record."""
        result = AuditResult(nodes=list(names))
        heads = self.wait_converged(names, ledger.max_height(), deadline_s)
        if not heads:
            result.converged = False
            current = self.heads(names) or {}
            result.problems.append(
                "nodes did not converge: "
                + ", ".join(f"{n}@{h[0]}" for n, h in sorted(current.items()))
            )
            heights = [h[0] for h in current.values()]
            top = min(heights) if heights else 0
        else:
            top = next(iter(heads.values()))[0]
            roots = {h[2] for h in heads.values()}
            if len(roots) != 1:
                result.divergent.append(f"state roots differ at height {top}: {sorted(roots)}")
        result.height = top
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            walks = list(pool.map(lambda n: self._walk(n, top), names))
        for name, (blocks, error) in zip(names, walks, strict=True):
            if error:
                result.problems.append(f"{name}: {error}")
            for height, document in blocks:
                self._check_block(name, height, document, result)
            if not error and blocks:
                self.verified[name] = max(self.verified.get(name, 0), blocks[-1][0])
        self._check_records(names, ledger, top, result, receipt_sample)
        for conflict in ledger.conflicts:
            result.divergent.append(f"conflicting reports: {conflict}")
        ledger.conflicts.clear()
        self.totals["blocks"] += result.blocks_checked
        self.totals["certificates"] += result.certificates_checked
        self.totals["txs"] += result.txs_checked
        self.totals["receipts"] += result.receipts_checked
        self.totals["lost"] += len(result.lost)
        self.totals["divergent"] += len(result.divergent)
        return result

    def _walk(self, name: str, top: int) -> tuple[list[tuple[int, dict[str, Any]]], str]:
        """Blocks of ``name`` above what was verified, in order; stops at the first error."""
        # A node installed from a snapshot holds blocks above its base only (issue 15).
        start = max(self.verified.get(name, 0), self._base(name)) + 1
        heights = list(range(start, top + 1))
        chunks = [heights[i : i + WALK_CHUNK] for i in range(0, len(heights), WALK_CHUNK)]
        out: list[tuple[int, dict[str, Any]]] = []
        with httpx.Client(base_url=self.net.rpc(name), timeout=HTTP_TIMEOUT_S) as http:

            def fetch(chunk: list[int]) -> tuple[list[tuple[int, dict[str, Any]]], str]:
                got: list[tuple[int, dict[str, Any]]] = []
                for height in chunk:
                    try:
                        response = http.get(f"/v1/blocks/{height}")
                    except httpx.HTTPError as exc:
                        return got, f"block {height} unreadable: {exc}"
                    if response.status_code != 200:
                        return (
                            got,
                            f"block {height}: HTTP {response.status_code} {response.text[:200]}",
                        )
                    got.append((height, response.json()))
                return got, ""

            for i in range(0, len(chunks), WALK_PARALLEL):
                batch = chunks[i : i + WALK_PARALLEL]
                with ThreadPoolExecutor(max_workers=len(batch) or 1) as inner:
                    for got, error in inner.map(fetch, batch):
                        out += got
                        if error:
                            return out, error
        return out, ""

    def _check_block(
        self, name: str, height: int, document: dict[str, Any], result: AuditResult
    ) -> None:
        result.blocks_checked += 1
        try:
            header_raw = bytes.fromhex(document["header_raw"])
            claimed = str(document["hash"])
            prev_hash = str(document["header"]["prev_hash"])
            txs = [str(t) for t in document["transactions"]]
        except (KeyError, TypeError, ValueError) as exc:
            result.problems.append(f"{name}: block {height} is not a block document ({exc})")
            return
        if sha256(header_raw).hex() != claimed:
            result.divergent.append(f"{name}: block {height}'s header does not hash to {claimed}")
            return
        if height > 1:
            parent = self.reference.get(height - 1)
            if parent is not None and parent != prev_hash:
                result.divergent.append(
                    f"{name}: block {height} links to {prev_hash[:16]}, the chain has {parent[:16]}"
                )
        known = self.reference.get(height)
        if known is not None:
            if known != claimed:
                result.divergent.append(
                    f"{name}: block {height} is {claimed[:16]}, other nodes have {known[:16]}"
                )
            elif self.reference_txs.get(height) != txs:
                result.divergent.append(f"{name}: block {height} lists other transactions")
            return
        certificate = document.get("certificate")
        try:
            if not isinstance(certificate, dict):
                raise InvalidCertificate("no certificate")
            CommitCertificate.decode(bytes.fromhex(certificate["raw"])).verify(
                self.net.chain_id,
                self.net.validator_keys,
                height=height,
                block_hash=bytes.fromhex(claimed),
            )
        except (InvalidCertificate, DecodeError, KeyError, ValueError) as exc:
            result.divergent.append(f"{name}: block {height} has no valid certificate: {exc}")
            return
        result.certificates_checked += 1
        self.reference[height] = claimed
        self.reference_txs[height] = txs
        for tx_hash in txs:
            earlier = self.tx_height.get(tx_hash)
            if earlier is not None and earlier != height:
                result.divergent.append(f"tx {tx_hash[:16]} is in blocks {earlier} and {height}")
            self.tx_height[tx_hash] = height

    def _check_records(
        self,
        names: list[str],
        ledger: CommitLedger,
        top: int,
        result: AuditResult,
        receipt_sample: int | None,
    ) -> None:
        fresh = [r for r in ledger.snapshot() if r.tx_hash not in self.checked and r.height <= top]
        for record in fresh:
            found = self.tx_height.get(record.tx_hash)
            if found is None:
                result.lost.append(
                    f"tx {record.tx_hash[:16]} (reported by {record.node} at {record.height})"
                )
            elif found != record.height:
                result.divergent.append(
                    f"tx {record.tx_hash[:16]} reported at {record.height}, the chain has it at {found}"
                )
            result.txs_checked += 1
            self.checked.add(record.tx_hash)
        if receipt_sample is not None and len(fresh) > receipt_sample:
            fresh = self._rng.sample(fresh, receipt_sample)
        with ThreadPoolExecutor(max_workers=len(names)) as pool:
            answers = list(pool.map(lambda n: self._lookup(n, fresh), names))
        for name, problems in zip(names, answers, strict=True):
            result.receipts_checked += len(fresh)
            for kind, text in problems:
                (result.lost if kind == "lost" else result.divergent).append(f"{name}: {text}")

    def _base(self, name: str) -> int:
        """The block a node's store starts after (0: genesis; above: a state sync)."""
        try:
            with httpx.Client(base_url=self.net.rpc(name), timeout=HTTP_TIMEOUT_S) as http:
                return int(http.get("/v1/status").json().get("base_height") or 0)
        except (httpx.HTTPError, ValueError):
            return 0

    def _lookup(self, name: str, records: list[CommitRecord]) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        base = self._base(name)
        records = [r for r in records if r.height > base]
        with httpx.Client(base_url=self.net.rpc(name), timeout=HTTP_TIMEOUT_S) as http:
            for record in records:
                try:
                    response = http.get(f"/v1/transactions/{record.tx_hash}")
                except httpx.HTTPError as exc:
                    problems.append(("divergent", f"tx {record.tx_hash[:16]} unreadable: {exc}"))
                    continue
                if response.status_code == 404:
                    problems.append(("lost", f"tx {record.tx_hash[:16]} not found"))
                    continue
                doc = response.json()
                if (doc.get("height"), doc.get("status")) != (record.height, record.status):
                    problems.append(
                        (
                            "divergent",
                            f"tx {record.tx_hash[:16]} is {doc.get('status')} at "
                            f"{doc.get('height')}, reported {record.status} at {record.height}",
                        )
                    )
        return problems
