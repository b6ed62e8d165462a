"""The code container: the bytes a deploy transaction carries and the state stores.

Layout (version 1), all integers big-endian::

    offset  size  field
    0       3     magic  b"QVM"
    3       1     version (1)
    4       2     abi_length
    6       n     ABI section: crypto.encoding of the ContractAbi value (contracts.abi)
    6+n     rest  code section: instructions; jump targets and method entries are
                  offsets into this section

One container has one byte spelling: the ABI section is canonically encoded and the code
section holds complete instructions only (the validator checks it).

Must never: accept trailing garbage, read past its input, or word an error differently on
different validators (deploy errors are part of receipts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts.abi import AbiError, ContractAbi
from contracts.limits import MAX_ABI_BYTES, MAX_CODE_BYTES
from crypto.encoding import DecodeError, decode, encode

MAGIC: Final = b"QVM"
VERSION: Final = 1
HEADER_BYTES: Final = 6
#: Largest container: header, the largest ABI section and the largest code section.
MAX_CONTAINER_BYTES: Final = HEADER_BYTES + MAX_ABI_BYTES + MAX_CODE_BYTES


class ContainerError(ValueError):
    """Bytes that are not a well-formed version-1 container."""


@dataclass(frozen=True, slots=True)
class Container:
    abi: ContractAbi
    code: bytes  # the code section


def build_container(abi: ContractAbi, code: bytes) -> bytes:
    """The container bytes for ``abi`` and a code section (no instruction checks here)."""
    abi_bytes = encode(abi.to_value())
    if len(abi_bytes) > MAX_ABI_BYTES:
        raise ContainerError(f"ABI section is {len(abi_bytes)} bytes, over {MAX_ABI_BYTES}")
    if not 0 < len(code) <= MAX_CODE_BYTES:
        raise ContainerError(f"code section is {len(code)} bytes, limit 1..{MAX_CODE_BYTES}")
    return MAGIC + bytes([VERSION]) + len(abi_bytes).to_bytes(2, "big") + abi_bytes + code


def parse_container(raw: bytes) -> Container:
    """Split and decode a container; :class:`ContainerError` says what is wrong."""
    if len(raw) > MAX_CONTAINER_BYTES:
        raise ContainerError(f"code is {len(raw)} bytes, over the limit of {MAX_CONTAINER_BYTES}")
    if len(raw) < HEADER_BYTES or raw[:3] != MAGIC:
        raise ContainerError("not contract code (no QVM header)")
    if raw[3] != VERSION:
        raise ContainerError(f"unsupported code version {raw[3]} (this VM runs {VERSION})")
    abi_length = int.from_bytes(raw[4:6], "big")
    if abi_length > MAX_ABI_BYTES:
        raise ContainerError(f"ABI section is {abi_length} bytes, over {MAX_ABI_BYTES}")
    if HEADER_BYTES + abi_length > len(raw):
        raise ContainerError("ABI section runs past the end of the code")
    code = raw[HEADER_BYTES + abi_length :]
    if not 0 < len(code) <= MAX_CODE_BYTES:
        raise ContainerError(f"code section is {len(code)} bytes, limit 1..{MAX_CODE_BYTES}")
    try:
        value = decode(raw[HEADER_BYTES : HEADER_BYTES + abi_length])
    except DecodeError:
        # Not the decoder's text: it can quote the msgpack library, whose wording may differ
        # between validators, and this message ends up in a receipt.
        raise ContainerError("bad ABI section: not a canonical encoding") from None
    try:
        abi = ContractAbi.from_value(value)
    except AbiError as exc:
        raise ContainerError(f"bad ABI section: {exc}") from None
    return Container(abi, code)
