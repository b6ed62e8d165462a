"""The deterministic smart-contract VM (issue 4).

House rule: pure — no I/O, clock, randomness, threads or set iteration; no recursion
through Python's stack. ``tests/test_purity.py`` enforces the import rules.

Map, laid out like the Ethereum execution specs' VM:

* ``limits`` (every bound) · ``gas`` (every price, by name, and ``charge``) · ``opcodes``
  (the opcode table: stack effects, immediates, the names of each opcode's costs);
* ``abi`` (types, methods, CLI arguments) · ``container`` (the code format) · ``validate``
  (deploy-time checks, decoding) · ``state`` (the Host protocol, the journaled overlay,
  StateWrites);
* ``frame`` (a call frame, signals, programs) · ``instructions/<category>.py`` (the opcode
  bodies, each in three marked steps -- stack, gas, operation -- one module per vector file
  in tests/vectors/vm/) and ``instructions/__init__`` (the one implementation table);
* ``interpreter`` (the entry points, the frame stack, and the reference loop: decode and
  run one instruction at a time) · ``fastpath`` (the same bodies run from pre-decoded basic
  blocks) · ``programs`` (the program cache); a ``Machine`` owns the cache and the switch
  (``Engine``) between the two loops, which give identical results;
* ``assembler`` (assemble / disassemble) · ``examples`` (token, lock, registry, vote).

What the ledger uses is re-exported here. Nothing here keeps state between calls except
what a caller's ``Machine`` holds.
"""

from contracts.interpreter import (
    Engine,
    ExecutionResult,
    ExecutionStatus,
    Machine,
    call,
    contract_address,
    deploy,
    query,
)
from contracts.programs import ProgramCache
from contracts.state import BlockContext, EventRecord, Host, MemoryHost, StateWrites
from contracts.validate import CodeError, validate_code

__all__ = [
    "BlockContext",
    "CodeError",
    "Engine",
    "EventRecord",
    "ExecutionResult",
    "ExecutionStatus",
    "Host",
    "Machine",
    "MemoryHost",
    "ProgramCache",
    "StateWrites",
    "call",
    "contract_address",
    "deploy",
    "query",
    "validate_code",
]
