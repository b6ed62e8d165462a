"""State-tree hashing rules and proofs: what a light client needs to check one state read.

The ledger state is a map of byte keys to byte values, committed to by the root of a
16-ary, path-compressed sparse Merkle tree (built and stored by ``ledger.chain.state_tree``).
This module is the single definition of how that tree hashes, and the verifier of its
membership and non-membership proofs. It is pure: no I/O, no ledger imports, no state.

Theory of operation.

* A key's *path* is ``sha256(key)``: 64 nibbles, most significant nibble first.
* Every node is a short byte string whose first byte is its kind, and its hash is
  ``node_hash(node) = sha256(b"quorum:smt\\x00" + node)`` (= ``tagged_hash("smt", node)``):

  - leaf: ``0x00 || path (32) || sha256(value) (32)``, 65 bytes;
  - internal: ``0x01 || bitmap (2, big-endian) || child hashes (32 each)``, 3 + 32·k bytes;
  - empty tree: ``0x02``, never stored; its hash is :data:`EMPTY_ROOT`.

  Bit ``n`` of an internal node's bitmap is set when the child for nibble ``n`` exists;
  child hashes follow in ascending nibble order. The kind byte separates the domains, so a
  leaf can never be read as an internal node or the empty tree.
* The tree is canonical, so the root is a function of the key→value set alone: a subtree
  holding no leaf is absent; a subtree holding one leaf *is* that leaf (the leaf sits at the
  shallowest depth where its path prefix is unique); a subtree holding two or more leaves is
  an internal node (possibly with a single internal child when all its leaves share the
  next nibble). The empty tree's root is :data:`EMPTY_ROOT`; a one-key tree's root is its
  leaf's hash.
* A :class:`Proof` walks from the root along the key's path: for each internal node on the
  way, its bitmap and the hashes of its other children, then what ends the walk — a leaf
  (the key's own leaf for membership; another key's leaf sharing the walked prefix for
  non-membership) or an empty slot (non-membership). :func:`verify_proof` rebuilds the root
  from the bottom and compares. Encoded canonically (``crypto.encoding``) as
  ``["smt-proof", 1, [[bitmap, sibling hashes concatenated], ...], leaf path | nil,
  leaf value hash | nil]``; hex of those bytes is the JSON form.

Never: import from ``ledger``, touch I/O, raise from :func:`verify_proof` on malformed
input (it answers False), or accept a proof encoding other than the canonical one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Final

from crypto.encoding import (
    DecodeError,
    EncodingError,
    Value,
    as_bytes,
    as_int,
    as_list,
    decode_record,
    encode_record,
)

HASH_SIZE: Final = 32
#: Nibbles in a path: the deepest a leaf can sit (internal nodes sit at depth <= 63).
PATH_NIBBLES: Final = 2 * HASH_SIZE
#: Children of an internal node.
RADIX: Final = 16

LEAF_KIND: Final = 0x00
INTERNAL_KIND: Final = 0x01
EMPTY_KIND: Final = 0x02
LEAF_TAG: Final = bytes([LEAF_KIND])
INTERNAL_TAG: Final = bytes([INTERNAL_KIND])
LEAF_NODE_SIZE: Final = 1 + 2 * HASH_SIZE
INTERNAL_HEADER_SIZE: Final = 3

#: Prefix of every node-hash preimage; equal to ``crypto.hashing.tagged_hash("smt", ...)``.
NODE_HASH_PREFIX: Final = b"quorum:smt\x00"
#: Root of the tree that holds no key.
EMPTY_ROOT: Final = hashlib.sha256(NODE_HASH_PREFIX + bytes([EMPTY_KIND])).digest()

#: Hard caps on a proof's encoding: it travels over HTTP from untrusted nodes.
MAX_PROOF_LEVELS: Final = PATH_NIBBLES
MAX_PROOF_BYTES: Final = 40_000  # 64 levels x 15 siblings x 32 B = 30,720 B plus framing

PROOF_TAG: Final = "smt-proof"
PROOF_VERSION: Final = 1


class ProofDecodeError(DecodeError):
    """Bytes (or hex) that are not the canonical encoding of a well-formed state proof."""


# --- hashing rules ----------------------------------------------------------------------


def key_path(key: bytes) -> bytes:
    """The tree path of a state key: ``sha256(key)``."""
    return hashlib.sha256(key).digest()


def node_hash(node: bytes) -> bytes:
    """Hash of an encoded node: what its parent (or the state root) holds."""
    return hashlib.sha256(NODE_HASH_PREFIX + node).digest()


def leaf_node(path: bytes, value: bytes) -> bytes:
    """Encoded leaf binding ``path`` to ``value`` (through the value's SHA-256)."""
    return LEAF_TAG + path + hashlib.sha256(value).digest()


def internal_node(bitmap: int, children: tuple[bytes, ...] | list[bytes]) -> bytes:
    """Encoded internal node: ``children`` are the hashes of the set bits, in nibble order."""
    return INTERNAL_TAG + bitmap.to_bytes(2, "big") + b"".join(children)


def nibble(path: bytes, depth: int) -> int:
    """The ``depth``-th nibble of ``path`` (0 is the high nibble of the first byte)."""
    byte = path[depth >> 1]
    return byte & 0x0F if depth & 1 else byte >> 4


def shares_prefix(a: bytes, b: bytes, nibbles: int) -> bool:
    """True when paths ``a`` and ``b`` agree on their first ``nibbles`` nibbles."""
    whole = nibbles >> 1
    if a[:whole] != b[:whole]:
        return False
    return not nibbles & 1 or (a[whole] >> 4) == (b[whole] >> 4)


# --- proofs -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProofLevel:
    """One internal node on the path: its bitmap and its children off the path."""

    bitmap: int
    siblings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Proof:
    """A membership or non-membership proof for one key against one root.

    ``levels`` run from the root down. ``leaf_path``/``leaf_value_hash`` describe the leaf
    that ends the walk, or are both None when the walk ends in an empty slot (or the tree
    is empty). Which key the proof is about is not stored: the verifier supplies it.
    """

    levels: tuple[ProofLevel, ...]
    leaf_path: bytes | None
    leaf_value_hash: bytes | None

    TAG: ClassVar[str] = PROOF_TAG
    VERSION: ClassVar[int] = PROOF_VERSION

    def proves_membership_of(self, key: bytes) -> bool:
        """True when the proof ends in ``key``'s own leaf (not checked against any root)."""
        return self.leaf_path is not None and self.leaf_path == key_path(key)

    def encode(self) -> bytes:
        """Canonical bytes: ``["smt-proof", 1, [[bitmap, siblings], ...], path, value_hash]``."""
        levels: list[Value] = [[lv.bitmap, b"".join(lv.siblings)] for lv in self.levels]
        try:
            return encode_record(
                self.TAG, self.VERSION, [levels, self.leaf_path, self.leaf_value_hash]
            )
        except EncodingError as exc:
            raise ValueError(f"proof cannot be encoded: {exc}") from None

    def to_hex(self) -> str:
        return self.encode().hex()

    @classmethod
    def decode(cls, raw: bytes) -> Proof:
        """Decode and structurally check :meth:`encode` output, else :class:`ProofDecodeError`."""
        try:
            return cls._decode(raw)
        except ProofDecodeError:
            raise
        except DecodeError as exc:
            raise ProofDecodeError(f"state proof: {exc}") from None

    @classmethod
    def from_hex(cls, text: str) -> Proof:
        if not isinstance(text, str):
            raise ProofDecodeError("state proof: expected a hex string")
        if len(text) > 2 * MAX_PROOF_BYTES:
            raise ProofDecodeError(f"state proof: over {MAX_PROOF_BYTES} bytes")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ProofDecodeError("state proof: not valid hex") from None
        return cls.decode(raw)

    @classmethod
    def _decode(cls, raw: bytes) -> Proof:
        fields = decode_record(raw, cls.TAG, cls.VERSION, 3, max_bytes=MAX_PROOF_BYTES)
        raw_levels = as_list(fields[0], "proof.levels", max_len=MAX_PROOF_LEVELS)
        if (fields[1] is None) != (fields[2] is None):
            raise ProofDecodeError("state proof: leaf path and value hash must come together")
        leaf_path = None if fields[1] is None else as_bytes(fields[1], "leaf", size=HASH_SIZE)
        value_hash = None if fields[2] is None else as_bytes(fields[2], "value", size=HASH_SIZE)
        levels = []
        last = len(raw_levels) - 1
        for depth, raw_level in enumerate(raw_levels):
            pair = as_list(raw_level, f"proof.levels[{depth}]", max_len=2)
            if len(pair) != 2:
                raise ProofDecodeError(f"state proof: level {depth} is not [bitmap, siblings]")
            bitmap = as_int(pair[0], f"level {depth} bitmap", lo=1, hi=0xFFFF)
            blob = as_bytes(pair[1], f"level {depth} siblings", max_size=RADIX * HASH_SIZE)
            children = bitmap.bit_count()
            # Every level but an empty-slot last one has the path's own child among its bits.
            on_path = 0 if depth == last and leaf_path is None else 1
            if len(blob) != HASH_SIZE * (children - on_path):
                raise ProofDecodeError(
                    f"state proof: level {depth} has {len(blob)} sibling bytes for "
                    f"{children} children"
                )
            if depth == last and leaf_path is not None and children == 1:
                # A lone leaf under an internal node is never canonical: it would be lifted.
                raise ProofDecodeError(f"state proof: level {depth} holds a lone leaf")
            siblings = tuple(blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE))
            levels.append(ProofLevel(bitmap, siblings))
        return cls(tuple(levels), leaf_path, value_hash)


def _proof_root(path: bytes, proof: Proof) -> bytes | None:
    """The root ``proof`` implies for ``path``, or None when it is malformed for that path."""
    levels = proof.levels
    if len(levels) > MAX_PROOF_LEVELS:
        return None
    current: bytes | None
    if proof.leaf_path is None:
        if proof.leaf_value_hash is not None:
            return None
        current = None
        if not levels:
            return EMPTY_ROOT
    else:
        value_hash = proof.leaf_value_hash
        if (
            value_hash is None
            or len(proof.leaf_path) != HASH_SIZE
            or len(value_hash) != HASH_SIZE
            or not shares_prefix(proof.leaf_path, path, len(levels))
        ):
            return None
        current = node_hash(LEAF_TAG + proof.leaf_path + value_hash)
    for depth in range(len(levels) - 1, -1, -1):
        level = levels[depth]
        bitmap = level.bitmap
        siblings = level.siblings
        if not 0 < bitmap <= 0xFFFF or any(len(s) != HASH_SIZE for s in siblings):
            return None
        bit = 1 << nibble(path, depth)
        if current is None:  # the empty slot the walk ended in
            if bitmap & bit or len(siblings) != bitmap.bit_count():
                return None
            children = list(siblings)
        else:
            if not bitmap & bit or len(siblings) != bitmap.bit_count() - 1:
                return None
            position = (bitmap & (bit - 1)).bit_count()
            children = [*siblings[:position], current, *siblings[position:]]
        current = node_hash(INTERNAL_TAG + bitmap.to_bytes(2, "big") + b"".join(children))
    return current


def verify_proof(root: bytes, key: bytes, value: bytes | None, proof: Proof) -> bool:
    """True when ``proof`` shows that, under ``root``, ``key`` maps to ``value``.

    ``value=None`` asks for a proof that ``key`` is absent. Never raises on malformed
    proofs; a proof for one key never verifies another, and membership never verifies
    absence or a different value.
    """
    if not isinstance(proof, Proof) or not isinstance(root, bytes) or len(root) != HASH_SIZE:
        return False
    if not isinstance(key, bytes) or (value is not None and not isinstance(value, bytes)):
        return False
    path = key_path(key)
    if value is None:
        if proof.leaf_path == path:
            return False
    elif proof.leaf_path != path or proof.leaf_value_hash != hashlib.sha256(value).digest():
        return False
    try:
        implied = _proof_root(path, proof)
    except (TypeError, AttributeError, IndexError):  # a Proof built by hand with junk inside
        return False
    return implied is not None and implied == root
