"""The metric families read at scrape time from what the node keeps anyway.

Theory of operation. The node, its engine, its consensus core, its mempool and its peer
network each count what they do (plain integers, cheap on the hot path). A scrape of
``/metrics`` turns those counts into Prometheus families here, named by Prometheus
conventions (base units in the name, ``_total`` on counters, which prometheus-client
appends); the histograms the driver feeds live in ledger/node/metrics.py, in the same
registry. docs/OPERATIONS.md lists the families; ledger/monitoring/dashboard.json shows them.

Never: read the store (a scrape must not wait on a block being written), or let a label
take values from a peer's bytes (every label value here comes from a fixed set or from
the validator set).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from consensus.ready import ViewChangeReason
from ledger.node import wire
from ledger.node.health import linked_members
from ledger.node.node import Node
from ledger.node.observe import Observer

#: Peer message families whose bytes are catch-up and state-sync traffic.
CATCHUP_FAMILIES = (wire.Family.BLOCKS_WANTED, wire.Family.BLOCKS)
STATE_SYNC_FAMILIES = tuple(sorted(wire.STATE_SYNC_FAMILIES))


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(name, help_text)
    gauge.add_metric([], value)
    return gauge


def _labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    help_text: str,
    labels: list[str],
    samples: Mapping[Any, float],
) -> Metric:
    family = kind(name, help_text, labels=labels)
    for key, value in sorted(samples.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _by_prefix(counts: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix) :]: v for k, v in counts.items() if k.startswith(prefix)}


def _channel(tag: int) -> str:
    try:
        return wire.Family(tag).name.lower()
    except ValueError:
        return "other"


class NodeCollector:
    """Prometheus families computed from ``node`` at each scrape (see the module docstring)."""

    def __init__(self, node: Node, observer: Observer, version: str) -> None:
        self.node = node
        self.observer = observer
        self.version = version

    def collect(self) -> Iterator[Metric]:
        yield from self._chain()
        yield from self._transactions()
        yield from self._consensus()
        yield from self._network()
        yield from self._health()

    def _chain(self) -> Iterator[Metric]:
        node = self.node
        status = node.replica.status()
        config = node.replica_config
        yield _labelled(
            GaugeMetricFamily, "quorum_build_info", "This node's software and chain.",
            ["version", "chain_id", "name"],
            {(self.version, node.genesis.chain_id, node.names[node.index]): 1},
        )  # fmt: skip
        yield _gauge("quorum_height", "Height of the last committed block.", node.store.head_height)
        yield _gauge("quorum_view", "Current PBFT view.", status.view)
        yield _gauge("quorum_view_active", "1 while the view is active (not changing).",
                     int(status.view_active))  # fmt: skip
        yield _gauge("quorum_is_primary", "1 when this node is the primary of its view.",
                     int(status.primary == status.index))  # fmt: skip
        yield _gauge("quorum_stable_checkpoint_height", "Height of the last stable checkpoint.",
                     status.stable_checkpoint)  # fmt: skip
        yield _gauge("quorum_in_flight_blocks", "Blocks pre-prepared above the committed head.",
                     len(status.in_flight))  # fmt: skip
        yield _gauge("quorum_epoch_start_height", "Height after which the active set signs.",
                     config.genesis_height)  # fmt: skip
        yield _gauge("quorum_validators", "Validators in the active set.", config.n)
        yield _gauge("quorum_quorum_size", "Signatures a certificate needs (q).", config.quorum)
        last_signed = node.metrics.last_signed
        head = node.store.head_height
        members = [config.name(i) for i in range(config.n)]
        yield _gauge(
            "quorum_validators_missing",
            "Validators of the active set whose signature is not in the head's certificate.",
            sum(1 for name in members if last_signed.get(name, -1) < head),
        )
        yield _labelled(
            GaugeMetricFamily, "quorum_validator_last_signed_height",
            "The last height each validator's COMMIT signature certified (seen by this node).",
            ["validator"], {name: last_signed[name] for name in members if name in last_signed},
        )  # fmt: skip
        yield _gauge(
            "quorum_last_commit_timestamp_seconds",
            "Wall-clock time of this node's last commit (0: none since start).",
            node.last_commit_ms / 1000,
        )
        syncing = node.syncing()
        yield _gauge("quorum_syncing", "1 while catching up or installing a snapshot.",
                     int(bool(syncing)))  # fmt: skip
        yield _gauge("quorum_validator_retiring",
                     "1 while this validator, voted out of the set, retires (serves, votes not).",
                     int(node.retirement is not None))  # fmt: skip
        yield _gauge(
            "quorum_lag_blocks",
            "Blocks between the head and the highest height a quorum of peers claims.",
            max(0, node.replica.catchup_target - node.replica.committed_height),
        )

    def _transactions(self) -> Iterator[Metric]:
        node = self.node
        counts = node.engine.counters
        pool = node.mempool.statistics()
        yield _gauge("quorum_mempool_transactions", "Transactions waiting in the mempool.",
                     len(node.mempool))  # fmt: skip
        yield _gauge("quorum_mempool_bytes", "Bytes of the transactions waiting in the mempool.",
                     node.mempool.size_bytes)  # fmt: skip
        yield _labelled(
            GaugeMetricFamily, "quorum_mempool_state_transactions",
            "Transactions waiting, by whether a block could include them now.", ["state"],
            {"includable": pool.includable, "behind_gap": pool.transactions - pool.includable},
        )  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_mempool_rejected",
                        "Transactions the mempool refused, by code.", ["code"], pool.rejected)  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_mempool_dropped",
            "Transactions that left the mempool without a block, by reason.", ["reason"],
            pool.dropped,
        )  # fmt: skip
        accepted = _by_prefix(counts, "admission.accepted.")
        yield _labelled(
            CounterMetricFamily, "quorum_transactions_accepted",
            "Transactions taken into the mempool, by source (client or gossip).", ["source"],
            {"client": accepted.get("client", 0), "gossip": accepted.get("gossip", 0)},
        )  # fmt: skip
        rejected = _by_prefix(counts, "admission.rejected.")
        for code in ("busy_verifying", "syncing"):
            if node.counters.get(f"admission.{code}"):
                rejected[code] = rejected.get(code, 0) + node.counters[f"admission.{code}"]
        yield _labelled(CounterMetricFamily, "quorum_transactions_rejected",
                        "Transactions refused at admission, by code.", ["code"], rejected)  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_transactions_committed",
            "Transactions in blocks this node committed.", [], {(): counts.get("txs.committed", 0)},
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_blocks_committed", "Blocks this node committed.", [],
            {(): counts.get("blocks.committed", 0)},
        )  # fmt: skip
        proposals = {"proposed": counts.get("proposals", 0)}
        proposals["deferred"] = counts.get("proposals.deferred", 0)
        for why, value in _by_prefix(counts, "proposals.skipped.").items():
            proposals[f"skipped_{why}"] = value
        yield _labelled(CounterMetricFamily, "quorum_proposals",
                        "Proposal requests at this primary, by outcome.", ["outcome"], proposals)  # fmt: skip
        yield _gauge("quorum_verifying_transactions",
                     "Client and gossip transactions in signature verification now.",
                     node._verifying)  # fmt: skip
        yield _gauge("quorum_gossip_inbox_transactions",
                     "Gossiped transactions waiting to be verified.", node.gossip_in.queued_txs)  # fmt: skip
        yield _gauge("quorum_waiting_clients", "Transactions a client waits on (wait=true).",
                     len(node.waiters))  # fmt: skip
        gossip = {k: node.counters.get(f"gossip.{k}", 0) for k in ("sent", "received", "rejected")}
        yield _labelled(
            CounterMetricFamily, "quorum_gossip_transactions",
            "Transactions gossiped to peers (sent) and from them (received, rejected).",
            ["direction"], gossip,
        )  # fmt: skip

    def _consensus(self) -> Iterator[Metric]:
        node = self.node
        stats = node.replica.statistics()
        counts = node.engine.counters
        views = {
            why.value: node.counters.get(f"view_change.{why.value}", 0) for why in ViewChangeReason
        }
        yield _labelled(
            CounterMetricFamily, "quorum_view_changes",
            "View transitions at this node, by reason (entered: a NEW-VIEW took effect).",
            ["reason"], views,
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_consensus_messages_sent",
            "Consensus messages sent, by kind (a broadcast counts once per destination).",
            ["kind"], node.metrics.messages_sent,
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_consensus_messages_received",
            "Consensus messages received and decoded, by kind.", ["kind"],
            _by_prefix(counts, "messages.received."),
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_consensus_messages_rejected",
            "Consensus messages the core refused, by reason (counted, nothing changed).",
            ["reason"], _by_prefix(stats, "rejected."),
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_consensus_messages_duplicate",
            "Consensus votes received again (same content), by kind.", ["kind"],
            _by_prefix(stats, "duplicate."),
        )  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_consensus_equivocations",
            "Conflicting votes from one validator for one slot, by kind (Byzantine evidence).",
            ["kind"], _by_prefix(stats, "equivocation."),
        )  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_consensus_events",
                        "Consensus core counters.", ["event"], stats)  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_node_events", "Node event counters.",
                        ["event"], node.counters)  # fmt: skip
        yield _labelled(
            CounterMetricFamily, "quorum_catchup_blocks_served",
            "Committed blocks sent to peers catching up.", [],
            {(): node.counters.get("catchup.blocks_served", 0)},
        )  # fmt: skip

    def _network(self) -> Iterator[Metric]:
        node = self.node
        net = node.net
        yield _gauge("quorum_connected_peers", "Validators this node has a live link to.",
                     len(net.connected_peers()) if net is not None else 0)  # fmt: skip
        yield _gauge("quorum_linked_members",
                     "Other members of the active set this node has a live link to.",
                     len(linked_members(node)))  # fmt: skip
        sent = net.bytes_sent_by_tag if net is not None else {}
        received = net.bytes_received_by_tag if net is not None else {}
        channels: dict[tuple[str, str], int] = {}
        for direction, table in (("sent", sent), ("received", received)):
            for tag, value in table.items():
                key = (direction, _channel(tag))
                channels[key] = channels.get(key, 0) + value
        yield _labelled(
            CounterMetricFamily, "quorum_p2p_message_bytes",
            "Peer message bytes by direction and channel (the message family).",
            ["direction", "channel"], channels,
        )  # fmt: skip
        for name, help_text, families in (
            ("quorum_catchup_bytes", "Catch-up traffic (block requests and replies).",
             CATCHUP_FAMILIES),
            ("quorum_state_sync_bytes", "State-sync traffic (snapshot offers and chunks).",
             STATE_SYNC_FAMILIES),
        ):  # fmt: skip
            yield _labelled(
                CounterMetricFamily,
                name,
                help_text + " Bytes by direction.",
                ["direction"],
                {
                    "sent": sum(sent.get(int(f), 0) for f in families),
                    "received": sum(received.get(int(f), 0) for f in families),
                },
            )
        peers = net.statistics().peers if net is not None else {}
        link_bytes: dict[tuple[str, str], int] = {}
        connections: dict[str, int] = {}
        disconnects: dict[tuple[str, str], int] = {}
        dropped: dict[str, int] = {}
        queued: dict[str, int] = {}
        for peer in peers.values():
            link_bytes[(peer.name, "sent")] = peer.bytes_out
            link_bytes[(peer.name, "received")] = peer.bytes_in
            connections[peer.name] = peer.connections
            dropped[peer.name] = peer.dropped_messages
            queued[peer.name] = peer.queued_bytes
            for reason, count in peer.disconnects.items():
                disconnects[(peer.name, reason)] = count
        yield _labelled(CounterMetricFamily, "quorum_peer_link_bytes",
                        "Encrypted bytes on each peer link, by direction.",
                        ["peer", "direction"], link_bytes)  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_peer_connections",
                        "Links established with each peer.", ["peer"], connections)  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_peer_disconnects",
                        "Links to each peer that ended, by reason.", ["peer", "reason"],
                        disconnects)  # fmt: skip
        yield _labelled(CounterMetricFamily, "quorum_peer_dropped_messages",
                        "Messages dropped because a peer's send queue was full.", ["peer"],
                        dropped)  # fmt: skip
        yield _labelled(GaugeMetricFamily, "quorum_peer_queued_bytes",
                        "Bytes waiting in each peer's send queue.", ["peer"], queued)  # fmt: skip
        http = node.metrics.http_responses
        yield _labelled(
            CounterMetricFamily, "quorum_http_responses",
            "HTTP API responses by route and status code.", ["route", "status"],
            {(route, str(status)): n for (route, status), n in http.items()},
        )  # fmt: skip

    def _health(self) -> Iterator[Metric]:
        doc = self.observer.health()
        yield _gauge("quorum_healthy", "1 when GET /health answers 200 (the node makes progress).",
                     int(bool(doc["healthy"])))  # fmt: skip
        yield _labelled(
            GaugeMetricFamily, "quorum_health_problem",
            "1 for each reason GET /health gives for answering 503.", ["code"],
            {p["code"]: 1 for p in doc["problems"]},
        )  # fmt: skip
        oldest = doc["oldest_pending_ms"]
        yield _gauge(
            "quorum_oldest_pending_seconds",
            "How long the mempool's oldest includable transaction has been waiting to commit.",
            0 if oldest is None else oldest / 1000,
        )
