"""Ed25519 keys, addresses and domain-separated signatures (crypto/keys.py).

A signature binds the chain id and the kind of message; it must never verify for another
chain or kind, for a changed message, or under a weak (small-order) public key, and a
malformed key or signature is simply "not valid", never an exception.
"""

from __future__ import annotations

import nacl.exceptions
import nacl.signing
import pytest

from crypto.encoding import decode
from crypto.hashing import tagged_hash
from crypto.keys import (
    ADDRESS_SIZE,
    SIGNATURE_SIZE,
    InvalidKeyError,
    PrivateKey,
    address_of,
    check_public_key,
    signing_bytes,
    signing_prefix,
    verify,
)

CHAIN = "quorum-test"
KIND = "tx"
MESSAGE = b"transfer 10 to bob"

# RFC 8032 section 7.1, TEST 1: the secret key (our seed) and its public key.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")

# Order of the Ed25519 base point.
L = 2**252 + 27742317777372353535851937790883648493

#: The canonical encodings of the eight points of small order (the torsion subgroup).
#: test_small_order_points_really_have_small_order proves each one with curve arithmetic.
SMALL_ORDER_POINTS = [
    bytes.fromhex(h)
    for h in (
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # order 4
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
    )
]

# --- a tiny, slow Edwards-curve model, only to check the constants above ----------------------

_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(data: bytes) -> tuple[int, int] | None:
    y = int.from_bytes(data, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None  # not on the curve
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x, y


def _add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return (
        (x1 * y2 + x2 * y1) * pow(1 + t, -1, _P) % _P,
        (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P,
    )


def _small_order(point: tuple[int, int]) -> int | None:
    acc = point
    for k in range(1, 9):
        if acc == (0, 1):
            return k
        acc = _add(acc, point)
    return None


def test_small_order_points_really_have_small_order() -> None:
    orders = []
    for encoded in SMALL_ORDER_POINTS:
        point = _decompress(encoded)
        assert point is not None
        order = _small_order(point)
        assert order is not None
        orders.append(order)
    assert sorted(orders) == [1, 2, 4, 4, 8, 8, 8, 8]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return PrivateKey(bytes(range(32)))


@pytest.fixture(scope="module")
def other_key() -> PrivateKey:
    return PrivateKey(bytes(range(1, 33)))


# --- keys -------------------------------------------------------------------------------------


def test_public_key_matches_rfc8032() -> None:
    assert PrivateKey(RFC8032_SEED).public_key == RFC8032_PUBLIC


def test_generate_gives_distinct_valid_keys() -> None:
    a, b = PrivateKey.generate(), PrivateKey.generate()
    assert a.seed != b.seed
    assert len(a.seed) == 32
    assert check_public_key(a.public_key) == a.public_key


@pytest.mark.parametrize("seed", [b"", bytes(31), bytes(33), "00" * 32, bytearray(32)])
def test_private_key_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey(seed)  # type: ignore[arg-type]


def test_repr_and_str_do_not_reveal_the_seed(key: PrivateKey) -> None:
    secret_hex = key.seed.hex()
    for text in (repr(key), str(key), f"{key}", f"{key!r}", repr([key]), repr({"k": key})):
        assert secret_hex not in text
        assert secret_hex[:16] not in text
        assert str(key.seed) not in text
    assert key.address.hex() in repr(key)


def test_private_key_is_immutable(key: PrivateKey) -> None:
    with pytest.raises(AttributeError):
        key.seed = bytes(32)  # type: ignore[misc]


# --- signatures -------------------------------------------------------------------------------


def test_sign_and_verify(key: PrivateKey) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    assert len(signature) == SIGNATURE_SIZE
    assert verify(key.public_key, CHAIN, KIND, MESSAGE, signature)
    assert key.sign(CHAIN, KIND, MESSAGE) == signature  # Ed25519 is deterministic


def test_signature_covers_exactly_the_domain_prefixed_bytes(key: PrivateKey) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    signed = signing_bytes(CHAIN, KIND, MESSAGE)
    assert signed == signing_prefix(CHAIN, KIND) + MESSAGE
    assert decode(signing_prefix(CHAIN, KIND)) == ["quorum-sig", 1, CHAIN, KIND]
    # Plain libsodium agrees: the signature is over signing_bytes, not the bare message.
    nacl.signing.VerifyKey(key.public_key).verify(signed, signature)
    with pytest.raises(nacl.exceptions.BadSignatureError):
        nacl.signing.VerifyKey(key.public_key).verify(MESSAGE, signature)


def test_signature_for_one_chain_fails_under_another(key: PrivateKey) -> None:
    signature = key.sign("mainnet", KIND, MESSAGE)
    assert verify(key.public_key, "mainnet", KIND, MESSAGE, signature)
    for chain in ("testnet", "mainnet2", "mainne", "main.net"):
        assert not verify(key.public_key, chain, KIND, MESSAGE, signature)


def test_signature_for_one_kind_fails_under_another(key: PrivateKey) -> None:
    prepare = key.sign(CHAIN, "prepare", b"view 3 height 9 digest")
    assert verify(key.public_key, CHAIN, "prepare", b"view 3 height 9 digest", prepare)
    assert not verify(key.public_key, CHAIN, "commit", b"view 3 height 9 digest", prepare)


def test_domain_fields_cannot_be_shifted_into_the_message(key: PrivateKey) -> None:
    # The prefix is self-delimiting, so moving bytes between kind and message changes
    # the signed bytes.
    assert signing_bytes(CHAIN, "ab", b"c") != signing_bytes(CHAIN, "a", b"bc")
    signature = key.sign(CHAIN, "ab", b"c")
    assert not verify(key.public_key, CHAIN, "a", b"bc", signature)


def test_tampered_message_fails(key: PrivateKey) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    for i in range(len(MESSAGE)):
        tampered = bytearray(MESSAGE)
        tampered[i] ^= 0x01
        assert not verify(key.public_key, CHAIN, KIND, bytes(tampered), signature)
    assert not verify(key.public_key, CHAIN, KIND, MESSAGE + b"\x00", signature)
    assert not verify(key.public_key, CHAIN, KIND, MESSAGE[:-1], signature)
    assert not verify(key.public_key, CHAIN, KIND, b"", signature)


@pytest.mark.parametrize("position", [0, 17, 31, 32, 48, 63])
def test_tampered_signature_fails(key: PrivateKey, position: int) -> None:
    signature = bytearray(key.sign(CHAIN, KIND, MESSAGE))
    signature[position] ^= 0x04
    assert not verify(key.public_key, CHAIN, KIND, MESSAGE, bytes(signature))


def test_signature_is_not_malleable(key: PrivateKey) -> None:
    # S + L is the same scalar mod L; libsodium must refuse the non-canonical form.
    signature = key.sign(CHAIN, KIND, MESSAGE)
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + L).to_bytes(32, "little")
    assert not verify(key.public_key, CHAIN, KIND, MESSAGE, malleated)


def test_other_keys_signature_fails(key: PrivateKey, other_key: PrivateKey) -> None:
    signature = other_key.sign(CHAIN, KIND, MESSAGE)
    assert not verify(key.public_key, CHAIN, KIND, MESSAGE, signature)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_wrong_length_public_key_is_false(key: PrivateKey, length: int) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    public_key = (key.public_key * 2)[:length]
    assert verify(public_key, CHAIN, KIND, MESSAGE, signature) is False


@pytest.mark.parametrize("length", [0, 1, 32, 63, 65, 128])
def test_wrong_length_signature_is_false(key: PrivateKey, length: int) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    assert verify(key.public_key, CHAIN, KIND, MESSAGE, (signature * 2)[:length]) is False


def test_invalid_point_public_key_is_false(key: PrivateKey) -> None:
    signature = key.sign(CHAIN, KIND, MESSAGE)
    assert verify(_not_on_curve(), CHAIN, KIND, MESSAGE, signature) is False


@pytest.mark.parametrize("public_key", SMALL_ORDER_POINTS)
def test_small_order_public_key_never_verifies(public_key: bytes) -> None:
    # With A and R of small order and S = 0, the verification equation [S]B = R + [k]A holds
    # for many messages in a naive verifier. libsodium must refuse it.
    for r in SMALL_ORDER_POINTS:
        assert verify(public_key, CHAIN, KIND, MESSAGE, r + bytes(32)) is False


@pytest.mark.parametrize(("chain_id", "kind"), [("Bad Chain", KIND), (CHAIN, "Bad"), ("", KIND)])
def test_invalid_domain_is_refused_when_signing(key: PrivateKey, chain_id: str, kind: str) -> None:
    with pytest.raises(ValueError, match="invalid"):
        key.sign(chain_id, kind, MESSAGE)


# --- addresses --------------------------------------------------------------------------------


def test_address_is_20_bytes_and_deterministic(key: PrivateKey, other_key: PrivateKey) -> None:
    address = address_of(key.public_key)
    assert len(address) == ADDRESS_SIZE == 20
    assert address_of(key.public_key) == address == key.address
    assert address == tagged_hash("address", key.public_key)[:20]
    assert address_of(other_key.public_key) != address
    assert address_of(PrivateKey(bytes(range(32))).public_key) == address


@pytest.mark.parametrize("length", [0, 20, 31, 33])
def test_address_of_wrong_length_key_raises(length: int) -> None:
    with pytest.raises(InvalidKeyError, match="32 bytes"):
        address_of(bytes(length))


# --- public key checks ------------------------------------------------------------------------


def _not_on_curve() -> bytes:
    """The first y whose x^2 has no square root: an encoding that is no curve point."""
    for y in range(2, 100):
        candidate = y.to_bytes(32, "little")
        if _decompress(candidate) is None:
            return candidate
    raise AssertionError("unreachable: about half of all y values are off the curve")


def test_check_public_key_accepts_real_keys(key: PrivateKey) -> None:
    assert check_public_key(key.public_key) == key.public_key
    assert check_public_key(RFC8032_PUBLIC) == RFC8032_PUBLIC


def test_check_public_key_rejects_all_zero() -> None:
    with pytest.raises(InvalidKeyError, match="not a valid Ed25519 point"):
        check_public_key(bytes(32))


@pytest.mark.parametrize("public_key", SMALL_ORDER_POINTS)
def test_check_public_key_rejects_small_order_points(public_key: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        check_public_key(public_key)


def test_check_public_key_rejects_non_points() -> None:
    with pytest.raises(InvalidKeyError):
        check_public_key(_not_on_curve())
    with pytest.raises(InvalidKeyError):
        check_public_key(b"\xff" * 32)  # y >= p: not a canonical encoding


@pytest.mark.parametrize("bad", [b"", bytes(31), bytes(33), bytearray(32), "00" * 32])
def test_check_public_key_rejects_wrong_type_or_length(bad: object) -> None:
    with pytest.raises(InvalidKeyError, match="32 bytes"):
        check_public_key(bad)  # type: ignore[arg-type]
