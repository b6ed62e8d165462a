"""How fast the contract VM runs, in process (`quorum bench vm`).

Two workloads that do a known amount of work, timed by :func:`measure_vm`:

* :func:`run_spin_loop`: a tight counting loop (load, push, add, sub, dup, store, jnz);
  returns the number of instructions executed.
* :func:`run_token_transfers`: ``count`` token transfers through :func:`call` against an
  in-memory host, applying each result's writes as the ledger would; returns ``count``.

Never: part of the VM (contracts/ has no clock); it calls the VM's public entry points.
"""

from __future__ import annotations

import time
from typing import Final

from contracts.assembler import assemble
from contracts.examples import load
from contracts.interpreter import call, deploy, query
from contracts.state import BlockContext, MemoryHost

SPIN_LOOP: Final = """
.method spin(n: u64) -> u64 readonly
    arg 0
    store 0
    push 0
    store 1
loop:
    load 1
    push 1
    add
    store 1
    load 0
    push 1
    sub
    dup 0
    store 0
    jnz loop
    load 1
    return
"""
#: Instructions before the loop, per iteration, and after it.
SPIN_SETUP_OPS: Final = 4
SPIN_LOOP_OPS: Final = 10
SPIN_EXIT_OPS: Final = 2

_BLOCK: Final = BlockContext(1, 0)
_DEPLOYER: Final = bytes([0xA1]) * 20
_RECIPIENT: Final = bytes([0xB0]) * 20
_CONTRACT: Final = bytes([0xC0]) * 20
_TRANSFER_GAS: Final = 100_000


def run_spin_loop(iterations: int) -> int:
    """Run the counting loop ``iterations`` times; return instructions executed."""
    host = MemoryHost(code={_CONTRACT: assemble(SPIN_LOOP)})
    gas = 2 + 10 * iterations + 1_000  # 1 or 2 gas per instruction, and intrinsic gas
    result = query(host, _DEPLOYER, _CONTRACT, "spin", [iterations], gas * 2, _BLOCK)
    if result.return_value != iterations:
        raise AssertionError(f"spin loop failed: {result.status.label} {result.error}")
    return SPIN_SETUP_OPS + SPIN_LOOP_OPS * iterations + SPIN_EXIT_OPS


def run_token_transfers(count: int) -> int:
    """Deploy the example token and make ``count`` transfers of 1 unit; return ``count``."""
    host = MemoryHost()
    deployed = deploy(host, _DEPLOYER, _CONTRACT, load("token"), [count], 0, 10**7, _BLOCK)
    host.apply(deployed.writes)
    for _ in range(count):
        result = call(
            host, _DEPLOYER, _CONTRACT, "transfer", (_RECIPIENT, 1), 0, _TRANSFER_GAS, _BLOCK
        )
        if not result.ok:
            raise AssertionError(f"transfer failed: {result.status.label} {result.error}")
        host.apply(result.writes)
    return count


def measure_vm(iterations: int, transfers: int) -> dict[str, object]:
    """The figures of `quorum bench vm`: instructions/s of the spin loop, token transfers/s."""
    started = time.perf_counter()
    instructions = run_spin_loop(iterations)
    spin_s = time.perf_counter() - started
    started = time.perf_counter()
    run_token_transfers(transfers)
    transfers_s = time.perf_counter() - started
    return {
        "spin_loop": {
            "iterations": iterations,
            "instructions": instructions,
            "instructions_per_s": instructions / max(spin_s, 1e-9),
        },
        "token_transfers": {
            "transfers": transfers,
            "transfers_per_s": transfers / max(transfers_s, 1e-9),
        },
    }
