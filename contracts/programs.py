"""The program cache: validated, ready-to-run programs by code hash.

A :class:`ProgramCache` belongs to whoever runs the VM (through a
:class:`contracts.interpreter.Machine`), never to a module: two chains in one process, or
a test, each have their own. Loading code validates it once, then keeps the result --
the code and ABI for the reference interpreter, the pre-decoded steps for the fast path --
bounded by the bytes of code remembered. A hit or a miss never changes a result or its
gas, only time.

Must never: be module state, or hand out a program its code did not validate into.
"""

from __future__ import annotations

from contracts.fastpath import predecode
from contracts.frame import Program
from contracts.validate import CODE_CACHE_BYTES, CodeCache, CodeError, code_hash, validate_code


class ProgramCache:
    """Programs by code hash, forgetting the oldest past ``capacity_bytes`` of code."""

    def __init__(self, capacity_bytes: int = CODE_CACHE_BYTES) -> None:
        self._programs: CodeCache[Program] = CodeCache(capacity_bytes)

    def load(self, code: bytes) -> Program:
        """Validated, ready-to-run ``code``. Raises :class:`CodeError`."""
        if not isinstance(code, bytes):
            raise CodeError(f"code must be bytes, not {type(code).__name__}")
        key = code_hash(code)
        program = self._programs.get(key)
        if program is not None:
            return program
        validated = validate_code(code)
        program = Program(key, validated.abi, validated.code, predecode(validated))
        self._programs.put(key, program, len(code))
        return program

    def __len__(self) -> int:
        return len(self._programs)
