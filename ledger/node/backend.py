"""The HTTP API's view of a running node (implements ``ledger.node.api.NodeBackend``).

Reads that touch SQLite run in worker threads so the event loop never waits on a block
being written; everything returned is JSON-ready (ledger/node/render.py).
"""

from __future__ import annotations

from typing import Any

import trio
from prometheus_client import generate_latest

from contracts.abi import AbiError, parse_cli_args
from contracts.container import parse_container
from ledger import render, version
from ledger.chain.accounts import EMPTY_ACCOUNT, Account, account_key, code_key, storage_key
from ledger.chain.execute import query_contract
from ledger.chain.proofs import (
    BlockTrees,
    RecordingTip,
    chain_of_sets,
    epochs_json,
    prove_state,
    prove_transaction,
)
from ledger.chain.roles import LISTING_KEYS, RoleTable
from ledger.engine.engine import dropped_answer
from ledger.node.api_limits import MAX_BLOCKS_LISTED, ApiError
from ledger.node.node import Node
from ledger.node.observe import Observer
from ledger.node.retire import NOT_A_VALIDATOR, not_a_validator_message, validator_state
from ledger.node.scrape import NodeCollector
from ledger.node.signers import SignerNames, recent_signers


class NodeService:
    """Answers API requests from a :class:`Node` and its store."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.block_trees = BlockTrees()
        self.observer = Observer(node)
        self.signers = SignerNames(node.store, node.genesis)
        self.registry = node.metrics.registry
        self.registry.register(NodeCollector(node, self.observer, version()))

    async def run(self) -> None:
        """The observer (logs, health), after filling in who signed recently."""
        node = self.node
        names = [node.replica_config.name(i) for i in range(node.replica_config.n)]
        found = await trio.to_thread.run_sync(
            lambda: recent_signers(node.store, self.signers, names)
        )
        for name, height in found.items():
            node.metrics.last_signed.setdefault(name, height)
        await self.observer.run()

    async def submit(self, raws: list[bytes], wait: bool, timeout_ms: int) -> list[dict[str, Any]]:
        node = self.node
        if node.retirement is not None:  # voted out: reads still work, submissions do not
            message = not_a_validator_message(node.retirement.removed_at)
            raise ApiError(503, NOT_A_VALIDATOR, message)
        results = await node.admit(raws)
        if not wait:
            return results
        waiting = []
        for result in results:
            if result["status"] == "pending":
                tx_hash = bytes.fromhex(result["tx_hash"])
                waiting.append((result, tx_hash, node.waiters.wait_for(tx_hash)))
        with trio.move_on_after(timeout_ms / 1000):
            for _, _, waiter in waiting:
                await waiter.event.wait()
        for result, tx_hash, waiter in waiting:
            if waiter.result is not None:
                result.update(waiter.result)
            node.waiters.forget(tx_hash, waiter)
        return results

    async def transaction(self, tx_hash: bytes, proof: bool = False) -> dict[str, Any] | None:
        store = self.node.store

        def read() -> dict[str, Any] | None:
            if proof:
                proven = prove_transaction(store, tx_hash, self.block_trees)
                if proven is None:
                    return None
                tx, tx_proof = proven
                return {
                    **render.committed_transaction_json(
                        tx, tx_proof.receipt, tx_proof.height, tx_proof.position
                    ),
                    "raw": tx.raw.hex(),
                    "proof": tx_proof.to_json(),
                }
            found = store.get_transaction(tx_hash)
            receipt = store.get_receipt(tx_hash)
            if found is None or receipt is None:
                return None
            tx, height, position = found
            return render.committed_transaction_json(tx, receipt[0], height, position)

        committed = await trio.to_thread.run_sync(read)
        if committed is not None:
            return committed
        pending = self.node.mempool.get(tx_hash)
        if pending is not None:
            return {**render.transaction_json(pending), "status": "pending"}
        dropped = self.node.mempool.dropped(tx_hash)
        if dropped is not None:
            return {"tx_hash": tx_hash.hex(), **dropped_answer(dropped)}
        return None

    async def block(self, height: int | None) -> dict[str, Any] | None:
        store = self.node.store

        def read() -> dict[str, Any] | None:
            at = store.head_height if height is None else height
            block = store.get_block(at)
            if block is None:
                return None
            links = epochs_json(chain_of_sets(store))
            doc = render.block_json(block, store.get_certificate(at))
            doc["proposer_name"] = self.signers.names(at, [block.header.proposer])[0]
            if doc["certificate"] is not None:
                votes = doc["certificate"]["votes"]
                for vote, name in zip(
                    votes, self.signers.names(at, (v["validator"] for v in votes)), strict=True
                ):
                    vote["name"] = name
            return {**doc, **links}

        return await trio.to_thread.run_sync(read)

    async def account(self, address: bytes, proof: bool = False) -> dict[str, Any]:
        store = self.node.store
        if proof:

            def prove() -> dict[str, Any]:
                bundle = prove_state(store, [account_key(address), code_key(address)])
                raw, code = bundle.reads[0].value, bundle.reads[1].value
                account = EMPTY_ACCOUNT if raw is None else Account.decode(raw)
                return {
                    **render.account_json(address, account, is_contract=code is not None),
                    "height": bundle.height,
                    "proof": bundle.to_json(),
                }

            return await trio.to_thread.run_sync(prove)

        def read() -> dict[str, Any]:
            account = store.get_account(address)
            return render.account_json(
                address, account, is_contract=store.get_state(code_key(address)) is not None
            )

        return await trio.to_thread.run_sync(read)

    async def storage(self, address: bytes, key: bytes) -> dict[str, Any]:
        store = self.node.store

        def prove() -> dict[str, Any]:
            bundle = prove_state(store, [storage_key(address, key)])
            value = bundle.reads[0].value
            return {
                "address": address.hex(),
                "key": key.hex(),
                "value": None if value is None else value.hex(),
                "height": bundle.height,
                "proof": bundle.to_json(),
            }

        return await trio.to_thread.run_sync(prove)

    async def contract(self, address: bytes) -> dict[str, Any] | None:
        store = self.node.store

        def read() -> dict[str, Any] | None:
            code = store.get_state(code_key(address))
            if code is None:
                return None
            return {
                "address": address.hex(),
                "code": code.hex(),
                "abi": parse_container(code).abi.describe(),
                "height": store.head_height,
            }

        return await trio.to_thread.run_sync(read)

    async def query(
        self, address: bytes, method: str, args: list[Any], proof: bool = False
    ) -> dict[str, Any]:
        store = self.node.store

        def run() -> dict[str, Any]:
            with store.holding():  # the reads, their proofs and the header: one height
                tip = RecordingTip(store.tip())
                code = tip.get_state(code_key(address))
                if code is None:
                    raise ApiError(404, "not_found", f"no contract at {address.hex()}")
                abi = parse_container(code).abi
                method_abi = abi.method(method)
                if method_abi is None:
                    raise ApiError(400, "unknown_method", f"the contract has no method {method!r}")
                try:
                    values = parse_cli_args(
                        method_abi, [a if isinstance(a, str) else str(a) for a in args]
                    )
                except AbiError as exc:
                    raise ApiError(400, "bad_args", str(exc)) from None
                result = query_contract(
                    tip, address, method, values, machine=self.node.rules.machine
                )
                doc: dict[str, Any] = {
                    "status": result.status.label,
                    "return": render.abi_value(result.return_value),
                    "gas_used": result.gas_used,
                    "error": result.error,
                    "height": store.head_height,
                }
                if proof:
                    # Every key the execution read, so a client can run it again itself.
                    doc["proof"] = prove_state(store, list(tip.read)).to_json()
                return doc

        return await trio.to_thread.run_sync(run)

    async def permissions(self, proof: bool = False) -> dict[str, Any]:
        store = self.node.store

        def read() -> dict[str, Any]:
            if proof:
                bundle = prove_state(store, list(LISTING_KEYS))
                values = {r.key: r.value for r in bundle.reads}
                table = RoleTable.from_values(values)
                return {**table.to_json(), "height": bundle.height, "proof": bundle.to_json()}
            with store.holding():
                height = store.head_height
                values = {key: store.get_state(key) for key in LISTING_KEYS}
            return {**RoleTable.from_values(values).to_json(), "height": height}

        return await trio.to_thread.run_sync(read)

    async def validator_set(self, proof: bool = False) -> dict[str, Any]:
        """The active set (epoch, members with p2p), the scheduled set, pending votes."""
        from ledger.chain import validators as vset

        store = self.node.store
        genesis_set = vset.ValidatorSet.genesis(self.node.genesis)
        keys = list(vset.LISTING_KEYS)

        def read() -> dict[str, Any]:
            if proof:
                bundle = prove_state(store, keys)
                values = {r.key: r.value for r in bundle.reads}
                doc = vset.listing(values, genesis_set)
                return {**doc, "height": bundle.height, "proof": bundle.to_json()}
            with store.holding():
                height = store.head_height
                values = {key: store.get_state(key) for key in keys}
            return {**vset.listing(values, genesis_set), "height": height}

        return await trio.to_thread.run_sync(read)

    async def status(self) -> dict[str, Any]:
        return status_json(self.node)

    def fail(self, error: BaseException) -> None:
        self.node.fail(error)

    async def validators(self) -> list[dict[str, Any]]:
        node = self.node
        connected = set(node.net.connected_peers()) if node.net else set()
        return [
            {
                "index": i,
                "name": v.name,
                "public_key": v.public_key.hex(),
                "self": i == node.index,
                "connected": i == node.index or i in connected,
                "last_signed_height": node.metrics.last_signed.get(v.name),
            }
            for i, v in enumerate(node.genesis.validators)
        ]

    async def blocks(self, before: int | None, limit: int) -> dict[str, Any]:
        """Headers of the ``limit`` blocks below ``before`` (default: the newest), newest
        first, each with its certificate's signers by name."""
        store = self.node.store

        def read() -> dict[str, Any]:
            with store.holding():
                head = store.head_height
                top = head if before is None else min(head, before - 1)
                bottom = max(1, top - min(limit, MAX_BLOCKS_LISTED) + 1)
                listed = []
                for height in range(top, bottom - 1, -1):
                    header = store.get_header(height)
                    if header is None:
                        break
                    certificate = store.get_certificate(height)
                    indices = [] if certificate is None else [i for i, _ in certificate.votes]
                    names = self.signers.names(height, [header.proposer, *indices])
                    listed.append(
                        {
                            **render.header_json(header),
                            "proposer_name": names[0],
                            "certificate_view": None if certificate is None else certificate.view,
                            "signers": names[1:],
                        }
                    )
            return {"head": head, "blocks": listed}

        return await trio.to_thread.run_sync(read)

    async def health(self) -> dict[str, Any]:
        return self.observer.health()

    async def metrics(self) -> bytes:
        return generate_latest(self.registry)


def status_json(node: Node) -> dict[str, Any]:
    """What `quorum testnet status` and operators see."""
    replica = node.replica.status()
    connected = sorted(node.net.connected_peers()) if node.net else []
    store = node.store
    return {
        "name": node.names[node.index],
        "chain_id": node.genesis.chain_id,
        "genesis_hash": node.genesis.hash().hex(),
        "height": store.head_height,
        "head_hash": store.head_hash.hex(),
        "state_root": store.state_root.hex(),
        "base_height": store.base_height,
        "view": replica.view,
        "primary": node.replica_config.name(replica.primary),
        "view_active": replica.view_active,
        "stable_checkpoint": replica.stable_checkpoint,
        "in_flight": list(replica.in_flight),
        "waiting_for": replica.waiting_for,
        "syncing": node.syncing(),
        "validator": validator_state(node.retirement),
        "peers": [node.names[p] for p in connected],
        "mempool": {
            "transactions": len(node.mempool),
            "includable": node.mempool.statistics().includable,
            "bytes": node.mempool.size_bytes,
        },
        "counters": dict(sorted({**node.engine.counters, **node.counters}.items())),
        "consensus": replica.statistics,
    }
