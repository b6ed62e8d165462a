"""Every bound of the VM, with units in names (every price lives in :mod:`contracts.gas`).

These numbers are consensus rules: every validator must use the same ones, so changing
any of them changes which blocks are valid.

Memory is bounded twice over: structurally (a call holds at most ``MAX_STACK_ITEMS`` stack
values and ``MAX_SUBROUTINE_DEPTH * MAX_LOCALS`` locals, at most ``MAX_CALL_DEPTH`` calls are
live, a byte string is at most ``MAX_BYTES_LENGTH`` long) and by gas (every opcode that
creates a new byte string pays at least one gas per byte it creates).
"""

from __future__ import annotations

from typing import Final

# ----------------------------------------------------------------------------- values

U64_MAX: Final = 2**64 - 1
U64_BYTES: Final = 8
ADDRESS_BYTES: Final = 20

#: Longest byte string a stack value, argument, storage value or return value may be.
MAX_BYTES_LENGTH: Final = 4096
#: Longest storage key.
MAX_STORAGE_KEY_BYTES: Final = 128

# ----------------------------------------------------------------------------- machine

#: Values on one call's operand stack (subroutines of that call share it).
MAX_STACK_ITEMS: Final = 1024
#: Local slots per subroutine activation (``load n`` / ``store n`` take n < this).
MAX_LOCALS: Final = 32
#: Nested ``callsub`` activations within one contract call.
MAX_SUBROUTINE_DEPTH: Final = 128
#: Live contract calls, the transaction's own call included: a call that would be number
#: MAX_CALL_DEPTH + 1 fails (the caller sees a failure flag) instead of starting.
MAX_CALL_DEPTH: Final = 16

# ----------------------------------------------------------------------------- code and ABI

#: Bytes of the code section of one contract.
MAX_CODE_BYTES: Final = 24 * 1024
#: Bytes of the encoded ABI section.
MAX_ABI_BYTES: Final = 8 * 1024
#: Methods one contract may declare.
MAX_METHODS: Final = 64
#: Arguments of one method, of one cross-contract call and of one event (the ledger's
#: transaction format carries at most 16 ABI values as well).
MAX_ARGS: Final = 16
#: Bytes of a method, parameter or event name (UTF-8).
MAX_NAME_BYTES: Final = 64

# ----------------------------------------------------------------------------- results

#: Events one transaction may emit (the ledger's receipt format allows 256).
MAX_EVENTS: Final = 256
#: Bytes of a result's error text (the ledger's receipt format allows 1024).
MAX_ERROR_TEXT_BYTES: Final = 1024
