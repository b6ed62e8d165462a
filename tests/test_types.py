"""The chain data model: canonical round trips, and mutated bytes never slip through."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consensus.votes import COMMIT_KIND, commit_vote_body
from contracts.validate import CodeError, validate_code
from crypto.encoding import DecodeError, encode
from crypto.hashing import sha256
from crypto.keys import PrivateKey
from ledger.chain.types import (
    Block,
    BlockHeader,
    Call,
    CommitCertificate,
    Deploy,
    Event,
    InvalidCertificate,
    Receipt,
    ReceiptStatus,
    Transaction,
    Transfer,
    TxLimits,
    TxRejected,
    decode_transaction,
    tx_root,
    validate_transaction,
)

CHAIN = "test-chain"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS = [k.public_key for k in KEYS]

u64 = st.integers(min_value=0, max_value=2**64 - 1)
address = st.binary(min_size=20, max_size=20)
hash32 = st.binary(min_size=32, max_size=32)
abi_value = st.one_of(u64, st.binary(max_size=64), st.text(max_size=32))
abi_args = st.lists(abi_value, max_size=6).map(tuple)
method = st.text(min_size=1, max_size=20).filter(lambda s: len(s.encode()) <= 64)
payloads = st.one_of(
    st.builds(Transfer, address, u64),
    st.builds(Deploy, st.binary(min_size=1, max_size=200), abi_args, u64),
    st.builds(Call, address, method, abi_args, u64),
)
transactions = st.builds(
    lambda key_index, nonce, payload, gas, expiry: Transaction.create(
        KEYS[key_index], CHAIN, nonce, payload, gas_limit=gas, expiry_height=expiry
    ),
    st.integers(0, 3),
    u64,
    payloads,
    st.integers(1, 10_000_000),
    st.none() | u64,
)
events = st.builds(Event, address, method, abi_args)
receipts = st.builds(
    Receipt,
    hash32,
    st.sampled_from(list(ReceiptStatus)),
    u64,
    st.none() | abi_value,
    st.lists(events, max_size=4).map(tuple),
    st.text(max_size=50),
    st.none() | address,
)


def header_for(txs: tuple[Transaction, ...], height: int = 7, **over: object) -> BlockHeader:
    fields: dict[str, object] = {
        "chain_id": CHAIN,
        "height": height,
        "view": 2,
        "proposer": 1,
        "timestamp_ms": 1_764_000_000_000,
        "prev_hash": sha256(b"prev"),
        "tx_root": tx_root(txs),
        "receipts_root": sha256(b"receipts"),
        "state_root": sha256(b"state"),
        "validators_hash": sha256(b"validators"),
        "tx_count": len(txs),
    }
    fields.update(over)
    return BlockHeader(**fields)  # type: ignore[arg-type]


def certificate_for(
    block: Block, signers: range = range(3), kind: str = COMMIT_KIND
) -> CommitCertificate:
    body = commit_vote_body(block.header.view, block.height, block.hash())
    return CommitCertificate.assemble(
        block.header.view,
        block.height,
        block.hash(),
        {i: KEYS[i].sign(CHAIN, kind, body) for i in signers},
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(transactions)
def test_transaction_round_trip_and_signature(tx: Transaction) -> None:
    again = Transaction.decode(tx.encode())
    assert again == tx and again.raw == tx.raw and again.hash == tx.hash
    assert again.signature_valid()
    if isinstance(tx.payload, Deploy) and not _runnable(tx.payload.code):
        with pytest.raises(TxRejected) as info:  # random bytes are not a contract
            validate_transaction(again, CHAIN, TxLimits(max_tx_bytes=10**6))
        assert info.value.code in ("bad_code", "too_large")
    else:
        validate_transaction(again, CHAIN, TxLimits(max_tx_bytes=10**6))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(transactions)
def test_signing_body_cut_from_raw_is_the_encoded_body(tx: Transaction) -> None:
    # signing_body() slices the canonical bytes; the definition is the body record encoded.
    assert tx.signing_body() == tx._encoded_signing_body()
    assert Transaction.decode(tx.encode()).signing_body() == tx._encoded_signing_body()


def _runnable(code: bytes) -> bool:
    try:
        validate_code(code)
    except CodeError:
        return False
    return True


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(transactions, st.data())
def test_mutated_transaction_bytes_are_rejected(tx: Transaction, data: st.DataObject) -> None:
    raw = bytearray(tx.raw)
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        mutated = decode_transaction(bytes(raw), TxLimits(max_tx_bytes=10**6))
    except TxRejected as exc:
        assert exc.code == "malformed"
        return
    # It decoded: then it must be a different transaction that the signature catches.
    assert mutated.hash != tx.hash
    with pytest.raises(TxRejected):
        validate_transaction(mutated, CHAIN, TxLimits(max_tx_bytes=10**6))


@settings(max_examples=60)
@given(receipts)
def test_receipt_round_trip(receipt: Receipt) -> None:
    assert Receipt.decode(receipt.encode()) == receipt


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(transactions, max_size=5).map(tuple), st.data())
def test_block_round_trip_and_mutations_break_the_certificate(
    txs: tuple[Transaction, ...], data: st.DataObject
) -> None:
    block = Block(header_for(txs), txs)
    cert = certificate_for(block)
    again = Block.decode(block.encode())
    assert again == block and again.hash() == block.hash()
    assert CommitCertificate.decode(cert.encode()) == cert
    cert.verify(CHAIN, VALIDATORS)

    raw = bytearray(block.encode())
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    try:
        mutated = Block.decode(bytes(raw))
    except DecodeError:
        return
    # A body mutation that still decodes must change the header (tx_root is checked);
    # a header mutation changes the hash, so the certificate no longer names it.
    assert mutated.hash() != block.hash() or mutated == block


@given(st.builds(header_for, st.just(()), u64))
def test_header_round_trip(header: BlockHeader) -> None:
    assert BlockHeader.decode(header.encode()) == header
    assert header.hash() == sha256(header.encode())


def test_signature_for_one_chain_or_kind_fails_under_another() -> None:
    tx = Transaction.create(KEYS[0], CHAIN, 0, Transfer(bytes(20), 5), gas_limit=1000)
    forged = Transaction(
        "other-chain", tx.sender, tx.nonce, tx.payload, tx.gas_limit, None, tx.signature
    )
    assert not forged.signature_valid()
    with pytest.raises(TxRejected) as info:
        validate_transaction(forged, "other-chain", TxLimits())
    assert info.value.code == "bad_signature"
    with pytest.raises(TxRejected) as info:
        validate_transaction(tx, "other-chain", TxLimits())
    assert info.value.code == "wrong_chain"

    block = Block(header_for(()), ())
    prepare_signed = certificate_for(block, kind="prepare")
    with pytest.raises(InvalidCertificate, match="does not verify"):
        prepare_signed.verify(CHAIN, VALIDATORS)
    with pytest.raises(InvalidCertificate, match="does not verify"):
        certificate_for(block).verify("other-chain", VALIDATORS)


def test_certificate_needs_a_quorum_of_distinct_validators() -> None:
    block = Block(header_for(()), ())
    with pytest.raises(InvalidCertificate, match="quorum"):
        certificate_for(block, signers=range(2)).verify(CHAIN, VALIDATORS)
    good = certificate_for(block)
    duplicated = CommitCertificate(
        good.view, good.height, good.block_hash, (good.votes[0], good.votes[0], good.votes[1])
    )
    with pytest.raises(InvalidCertificate, match="increasing"):
        duplicated.verify(CHAIN, VALIDATORS)
    stranger = PrivateKey(b"\x99" * 32)
    body = commit_vote_body(good.view, good.height, good.block_hash)
    outsider = CommitCertificate(
        good.view,
        good.height,
        good.block_hash,
        (*good.votes[:2], (7, stranger.sign(CHAIN, COMMIT_KIND, body))),
    )
    with pytest.raises(InvalidCertificate, match="only 4"):
        outsider.verify(CHAIN, VALIDATORS)
    other_height = CommitCertificate(good.view, good.height + 1, good.block_hash, good.votes)
    with pytest.raises(InvalidCertificate):
        other_height.verify(CHAIN, VALIDATORS)


def test_block_body_must_match_header() -> None:
    tx = Transaction.create(KEYS[0], CHAIN, 0, Transfer(bytes(20), 5), gas_limit=1000)
    wrong_root = Block(header_for((tx,), tx_root=sha256(b"x")), (tx,))
    with pytest.raises(DecodeError, match="tx_root"):
        Block.decode(wrong_root.encode())
    wrong_count = Block(header_for((tx,), tx_count=2), (tx,))
    with pytest.raises(DecodeError, match="transactions"):
        Block.decode(wrong_count.encode())


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda raw: raw + b"\x00", "malformed"),
        (lambda raw: raw[:-1], "malformed"),
        (lambda raw: b"\x00" * 70_000, "too_large"),
        (lambda raw: encode(["tx", 2]), "malformed"),
        (
            lambda raw: encode(["tx", 1, CHAIN, bytes(32), 0, "mint", [], 1, None, bytes(64)]),
            "malformed",
        ),
        (
            lambda raw: encode(
                ["tx", 1, CHAIN, bytes(32), -1, "transfer", [bytes(20), 1], 1, None, bytes(64)]
            ),
            "malformed",
        ),
    ],
    ids=["trailing", "truncated", "oversize", "bad-version", "unknown-kind", "negative-nonce"],
)
def test_malformed_client_bytes_are_rejected_with_a_reason(mutate: object, code: str) -> None:
    tx = Transaction.create(KEYS[0], CHAIN, 0, Transfer(bytes(20), 5), gas_limit=1000)
    with pytest.raises(TxRejected) as info:
        decode_transaction(mutate(tx.raw), TxLimits())  # type: ignore[operator]
    assert info.value.code == code
    assert info.value.message


def test_stateless_limits() -> None:
    key = KEYS[1]
    big = Transaction.create(key, CHAIN, 0, Deploy(b"\x01" * 5000), gas_limit=1000)
    with pytest.raises(TxRejected) as info:
        validate_transaction(big, CHAIN, TxLimits(max_tx_bytes=1000))
    assert info.value.code == "too_large"
    greedy = Transaction.create(key, CHAIN, 0, Transfer(bytes(20), 1), gas_limit=10**9)
    with pytest.raises(TxRejected, match="gas_limit"):
        validate_transaction(greedy, CHAIN, TxLimits(max_tx_gas=10**6))
    zero = Transaction.create(key, CHAIN, 0, Transfer(bytes(20), 1), gas_limit=0)
    with pytest.raises(TxRejected, match="positive"):
        validate_transaction(zero, CHAIN, TxLimits())
    to_self = Transaction.create(key, CHAIN, 0, Transfer(key.address, 1), gas_limit=10)
    with pytest.raises(TxRejected) as info:
        validate_transaction(to_self, CHAIN, TxLimits())
    assert info.value.code == "self_transfer"
