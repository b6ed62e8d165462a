"""Ed25519 keys, addresses and domain-separated signatures (pynacl / libsodium).

Every signature in the ledger covers ``signing_bytes(chain_id, kind, message)``: a
canonical prefix naming the chain and the kind of thing signed, then the message. A
signature made for one chain or one kind therefore never verifies as another, which is
what stops a PREPARE being replayed as a COMMIT or a testnet transaction on mainnet.

libsodium's verify rejects non-canonical ``S`` values and small-order public keys, so a
valid signature cannot be malleated by a third party; we still deduplicate by content,
never by signature bytes.
"""

from __future__ import annotations

import functools
import hmac
import re
from dataclasses import dataclass, field
from typing import Final

import nacl.bindings
import nacl.exceptions
import nacl.signing

from crypto.encoding import encode
from crypto.hashing import tagged_hash

PUBLIC_KEY_SIZE: Final = 32
SEED_SIZE: Final = 32
SIGNATURE_SIZE: Final = 64
ADDRESS_SIZE: Final = 20

SIGNATURE_DOMAIN: Final = "quorum-sig"
SIGNATURE_DOMAIN_VERSION: Final = 1

_KIND_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
_CHAIN_ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]{0,49}$")


class InvalidKeyError(ValueError):
    """A malformed key (wrong length, not a valid curve point)."""


def valid_chain_id(chain_id: str) -> bool:
    return isinstance(chain_id, str) and _CHAIN_ID_RE.fullmatch(chain_id) is not None


@functools.lru_cache(maxsize=256)
def signing_prefix(chain_id: str, kind: str) -> bytes:
    """The domain prefix: ``encode(["quorum-sig", 1, chain_id, kind])``."""
    if not valid_chain_id(chain_id):
        raise ValueError(f"invalid chain id {chain_id!r}")
    if not isinstance(kind, str) or not _KIND_RE.fullmatch(kind):
        raise ValueError(f"invalid signature kind {kind!r}")
    return encode([SIGNATURE_DOMAIN, SIGNATURE_DOMAIN_VERSION, chain_id, kind])


def signing_bytes(chain_id: str, kind: str, message: bytes) -> bytes:
    """The exact bytes an Ed25519 signature covers: domain prefix, then the message."""
    return signing_prefix(chain_id, kind) + message


def address_of(public_key: bytes) -> bytes:
    """Account address: the first 20 bytes of a tagged SHA-256 of the public key."""
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKeyError(f"public key must be {PUBLIC_KEY_SIZE} bytes")
    return tagged_hash("address", public_key)[:ADDRESS_SIZE]


def verify(public_key: bytes, chain_id: str, kind: str, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``public_key``'s signature of ``message`` for this domain."""
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        signed = signing_bytes(chain_id, kind, message)
    except ValueError:
        return False  # a chain id or kind nobody can sign for
    try:
        nacl.bindings.crypto_sign_open(signature + signed, public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
        return False
    return True


@dataclass(frozen=True, slots=True, eq=False)
class PrivateKey:
    """An Ed25519 private key (held as its 32-byte seed) and its public key."""

    seed: bytes
    public_key: bytes = field(init=False)
    _secret: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.seed, bytes) or len(self.seed) != SEED_SIZE:
            raise InvalidKeyError(f"private key seed must be {SEED_SIZE} bytes")
        public_key, secret = nacl.bindings.crypto_sign_seed_keypair(self.seed)
        object.__setattr__(self, "public_key", bytes(public_key))
        object.__setattr__(self, "_secret", bytes(secret))

    def __repr__(self) -> str:  # never print secrets
        return f"PrivateKey(address={self.address.hex()})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return hmac.compare_digest(self.seed, other.seed)

    def __hash__(self) -> int:
        return int.from_bytes(self.public_key[:8], "big")

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def address(self) -> bytes:
        return address_of(self.public_key)

    def sign(self, chain_id: str, kind: str, message: bytes) -> bytes:
        signed = nacl.bindings.crypto_sign(signing_bytes(chain_id, kind, message), self._secret)
        return bytes(signed[:SIGNATURE_SIZE])


def check_public_key(public_key: bytes) -> bytes:
    """Return ``public_key`` if it is a usable Ed25519 point, else raise :class:`InvalidKeyError`.

    libsodium's Ed25519-to-Curve25519 conversion refuses encodings that are not canonical
    points and points of small order (the identity, all-zero, ...), which is exactly the
    set of keys a validator or account must not have.
    """
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise InvalidKeyError(f"public key must be {PUBLIC_KEY_SIZE} bytes")
    try:
        nacl.bindings.crypto_sign_ed25519_pk_to_curve25519(public_key)
    except (nacl.exceptions.RuntimeError, nacl.exceptions.ValueError):
        raise InvalidKeyError("public key is not a valid Ed25519 point") from None
    return public_key
