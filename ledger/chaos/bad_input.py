"""Chaos scenarios that feed bad input: malformed HTTP requests, hostile bytes on the peer
port (before and after a real handshake), and client transactions built to be refused.

Each returns a :class:`ledger.chaos.scenarios.ScenarioResult`; the invariants checked
after it are the same as for the fault scenarios (docs/RELIABILITY.md §4).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ledger.chaos.attacks import (
    api_answer_problem,
    attacks_changed_nothing,
    client_attacks,
    random_api_request,
    send_api_request,
)
from ledger.chaos.net import ChaosNet, peer_address
from ledger.chaos.peer import (
    PostAttack,
    open_link,
    post_handshake_attacks,
    pre_handshake_attacks,
    random_handshake_garbage,
    try_connection,
)
from ledger.chaos.relay import CUT, PASS
from ledger.chaos.scenarios import ChaosContext, ScenarioResult
from ledger.config import HostPort


def api_fuzz(ctx: ChaosContext, *, requests: int = 100) -> ScenarioResult:
    """Malformed HTTP requests to random nodes: never 5xx, always a JSON error; still healthy."""
    result = ScenarioResult("api_fuzz")
    net, rng = ctx.net, ctx.rng
    with httpx.Client() as http:
        for _ in range(requests):
            request = random_api_request(rng)
            node = rng.choice(net.names)
            try:
                response = send_api_request(http, net.rpc(node), request)
            except httpx.HTTPError as exc:
                result.problems.append(f"{node}: {request.label} {request.path}: {exc}")
                continue
            result.inputs[f"api_{request.label}"] += 1
            problem = api_answer_problem(response)
            if problem:
                result.problems.append(
                    f"{node}: {request.method} {request.path} ({request.label}): {problem}"
                )
    unhealthy = [n for n in net.names if not net.healthy(n)]
    if unhealthy:
        result.problems.append(f"unhealthy after the fuzz: {unhealthy}")
    return ctx.finish(result)


def peer_fuzz(
    ctx: ChaosContext, *, random_inputs: int = 20, post_handshake: bool = True
) -> ScenarioResult:
    """Hostile bytes on the real p2p ports (before and after a handshake)."""
    from concurrent.futures import ThreadPoolExecutor

    result = ScenarioResult("peer_fuzz")
    net, rng = ctx.net, ctx.rng
    genesis = net.genesis
    jobs = []
    for _ in range(max(1, random_inputs // 10)):
        target = rng.randrange(len(net.names))
        attacks = pre_handshake_attacks(genesis, target, rng)
        jobs += [(target, a) for a in attacks]
    jobs += [
        (t, random_handshake_garbage(genesis, t, rng))
        for t in (rng.randrange(len(net.names)) for _ in range(random_inputs))
    ]

    def run(job: tuple[int, Any]) -> tuple[str, str]:
        target, attack = job
        address = HostPort(*peer_address(net.nodes[net.names[target]].p2p))
        return attack.name, try_connection(address, attack)

    with ThreadPoolExecutor(max_workers=16) as pool:
        for name, outcome in pool.map(run, jobs):
            result.inputs[f"peer_{'fuzz' if name == 'fuzz' else 'handshake'}"] += 1
            if outcome != "closed":
                result.problems.append(f"peer attack {name}: the node left it {outcome}")
    if post_handshake:
        for name, make in post_handshake_attacks().items():
            problem = _post_handshake_attack(ctx, name, make)
            result.inputs["peer_post_handshake"] += 1
            if problem:
                result.problems.append(f"post-handshake {name}: {problem}")
    unhealthy = [n for n in net.names if not net.healthy(n)]
    if unhealthy:
        result.problems.append(f"unhealthy after the peer fuzz: {unhealthy}")
    return ctx.finish(result)


def _post_handshake_attack(ctx: ChaosContext, name: str, make: PostAttack) -> str | None:
    """Hold a real link as a lower-index validator and send one hostile frame.

    The real link between the two validators is cut at the relay meanwhile, so the real
    dialer cannot replace our connection (the node keeps the newest link per validator)
    and only the node's verdict on our bytes can end it.
    """
    net, rng = ctx.net, ctx.rng
    target = rng.randrange(1, len(net.names))
    dialer = rng.randrange(target)  # the lower index dials the higher one
    a, b = net.names[dialer], net.names[target]
    address = HostPort(*peer_address(net.nodes[b].p2p))
    net.relay.set_rules({(a, b): CUT, (b, a): CUT})
    try:
        before = _malformed_count(net, b)
        try:
            link = open_link(address, net.genesis, net.validator_key(a), target)
        except (OSError, ConnectionError) as exc:
            return f"could not connect: {exc}"
        try:
            link.send_raw(make(link.result.sender, rng))
            if name == "truncated_frame_then_close":
                return None  # we hang up mid-frame; the node must just carry on
            if name == "valid_junk_message":  # a message-level error: counted, link kept
                if link.closed_by_peer(2.0):
                    return "closed the link over one bad message"
                counted = wait_for_value(lambda: _malformed_count(net, b) > before, 10.0)
                return None if counted else "did not count the malformed message"
            # a frame-level error ends the link at once (well before the 10 s idle timeout)
            return None if link.closed_by_peer(8.0) else "kept the link open"
        finally:
            link.close()
    finally:
        net.relay.set_rules({(a, b): PASS, (b, a): PASS})


def _malformed_count(net: ChaosNet, name: str) -> int:
    status = net.status(name)
    return 0 if status is None else int(status["counters"].get("peer.malformed", 0))


def wait_for_value(probe: Callable[[], bool], deadline_s: float) -> bool:
    """Poll until ``probe`` holds (True) or the deadline passes (False)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if probe():
            return True
        time.sleep(0.2)
    return probe()


def client_attack_scenario(
    ctx: ChaosContext, *, skip: frozenset[str] = frozenset()
) -> ScenarioResult:
    """Every client attack through one node's API; nothing may change anywhere."""
    result = ScenarioResult("client_attacks")
    net = ctx.net
    node = ctx.rng.choice(net.names)
    victim = ctx.probe_key.address
    with httpx.Client() as http:
        report = client_attacks(http, net.rpc(node), ctx.attacker_key, victim, net.chain_id,
                                skip=skip)  # fmt: skip
        result.inputs["client_attacks"] += len(report.outcomes)
        for outcome in report.failures:
            result.problems.append(
                f"{outcome.name}: expected {'/'.join(outcome.expected)}, got {outcome.status} "
                f"{outcome.code} {outcome.detail[:200]}"
            )
        result.details["outcomes"] = {
            o.name: f"{o.status} {o.code or ''}".strip() for o in report.outcomes
        }
        # the legitimate transfer is on every node once they converge; then nothing else moved
        heads = ctx.auditor.wait_converged(net.names, ctx.top_height())
        if not heads:
            result.problems.append("nodes did not converge after the attacks")
        for name in net.names:
            for problem in attacks_changed_nothing(http, net.rpc(name), ctx.attacker_key, report):
                result.problems.append(f"{name}: {problem}")
    return ctx.finish(result)
