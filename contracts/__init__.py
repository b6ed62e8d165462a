"""The deterministic smart-contract VM (issue 4).

House rule: pure — no I/O, clock, randomness, threads or set iteration; no recursion
through Python's stack. ``tests/test_purity.py`` enforces the import rules.

Map: ``limits`` (every bound, non-opcode gas) · ``opcodes`` (the opcode table) ·
``abi`` (types, methods, CLI arguments) · ``container`` (the code format) · ``validate``
(deploy-time checks, code cache) · ``state`` (the Host protocol, the journaled overlay,
StateWrites) · ``frame`` / ``instructions`` / ``interpreter`` (the machine and its entry
points) · ``assembler`` (assemble / disassemble) · ``examples`` (token, lock, registry,
vote) · ``bench`` (timing workloads).

What the ledger uses is re-exported here.
"""

from contracts.interpreter import (
    ExecutionResult,
    ExecutionStatus,
    call,
    contract_address,
    deploy,
    query,
)
from contracts.state import BlockContext, EventRecord, Host, MemoryHost, StateWrites
from contracts.validate import CodeError, validate_code

__all__ = [
    "BlockContext",
    "CodeError",
    "EventRecord",
    "ExecutionResult",
    "ExecutionStatus",
    "Host",
    "MemoryHost",
    "StateWrites",
    "call",
    "contract_address",
    "deploy",
    "query",
    "validate_code",
]
