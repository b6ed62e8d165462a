"""The chain's data model: transactions, blocks, receipts and commit certificates.

Frozen dataclasses with one canonical encoding each (crypto.encoding records; the byte
layout is in docs/PROTOCOL.md). ``X.decode(raw)`` accepts exactly ``X.encode()`` and
raises :class:`crypto.encoding.DecodeError` on anything else. Hashes are SHA-256 of the
canonical record bytes; the record tag at the front keeps different types apart.

Stateless transaction checks live here too (format, sizes, chain id, signature); checks
that need state (nonce, balance) belong to execution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

from consensus.quorum import quorum_size
from consensus.votes import COMMIT_KIND, commit_vote_body
from contracts.container import MAX_CONTAINER_BYTES
from contracts.interpreter import ExecutionStatus
from contracts.validate import CodeError, validate_code
from crypto import keys
from crypto.encoding import (
    DecodeError,
    Value,
    as_bytes,
    as_int,
    as_list,
    as_str,
    decode,
    encode_record,
    record_fields,
)
from crypto.hashing import HASH_SIZE, sha256
from crypto.merkle import merkle_root
from ledger.chain.payloads import (
    ADDRESS_SIZE,
    MAX_ABI_ARGS,
    MAX_METHOD_NAME_BYTES,
    MAX_TX_BYTES_HARD,
    PAYLOAD_TYPES,
    U64_MAX,
    AbiValue,
    Call,
    Deploy,
    Payload,
    Role,
    RoleAction,
    RoleChange,
    SetAction,
    Transfer,
    TxKind,
    ValidatorChange,
    abi_args,
)

__all__ = [
    "ADDRESS_SIZE",
    "MAX_ABI_ARGS",
    "MAX_METHOD_NAME_BYTES",
    "MAX_TX_BYTES_HARD",
    "U64_MAX",
    "AbiValue",
    "Block",
    "BlockHeader",
    "Call",
    "CommitCertificate",
    "Deploy",
    "Event",
    "InvalidCertificate",
    "Payload",
    "Receipt",
    "ReceiptStatus",
    "Role",
    "RoleAction",
    "RoleChange",
    "SetAction",
    "Transaction",
    "Transfer",
    "TxKind",
    "TxLimits",
    "TxRejected",
    "ValidatorChange",
    "check_block_body",
    "decode_transaction",
    "receipts_root",
    "tx_root",
    "validate_transaction",
]


#: Signature domain kind for client transactions.
TX_SIGNATURE_KIND: Final = "tx"

#: Hard format limits, independent of genesis (which may only lower them); the payload
#: limits are in ledger.chain.payloads.
MAX_ERROR_TEXT_BYTES: Final = 1024
MAX_EVENTS_PER_RECEIPT: Final = 256
MAX_BLOCK_TXS_HARD: Final = 100_000
MAX_BLOCK_BYTES_HARD: Final = 64 * 1024 * 1024
MAX_VALIDATORS: Final = 1024


@dataclass(frozen=True, slots=True)
class Transaction:
    """A client transaction, signed by ``sender`` (an Ed25519 public key).

    ``raw`` (the canonical bytes) and ``hash`` are derived once at construction.
    """

    chain_id: str
    sender: bytes
    nonce: int
    payload: Payload
    gas_limit: int
    expiry_height: int | None
    signature: bytes
    raw: bytes = field(init=False, repr=False, compare=False)
    hash: bytes = field(init=False, repr=False, compare=False)
    #: The sender's account address (a tagged hash of ``sender``), derived once.
    sender_address: bytes = field(init=False, repr=False, compare=False)

    TAG: ClassVar[str] = "tx"
    VERSION: ClassVar[int] = 1
    BODY_TAG: ClassVar[str] = "tx-body"

    def __post_init__(self) -> None:
        raw = encode_record(self.TAG, self.VERSION, [*self._body_fields(), self.signature])
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "hash", sha256(raw))
        object.__setattr__(self, "sender_address", keys.address_of(self.sender))

    @property
    def kind(self) -> TxKind:
        return self.payload.kind

    def _body_fields(self) -> list[Value]:
        return [
            self.chain_id,
            self.sender,
            self.nonce,
            str(self.payload.kind),
            self.payload.to_value(),
            self.gas_limit,
            self.expiry_height,
        ]

    def signing_body(self) -> bytes:
        """The bytes the sender signs (everything but the signature).

        Cut from ``raw`` rather than encoded again (every node does this once per
        transaction it verifies): the canonical record ``["tx", 1, *body, signature]`` and
        the body record ``["tx-body", 1, *body]`` differ only in their array header and tag
        and in the trailing 64-byte signature (``bin8``). ``_encoded_signing_body`` is the
        definition; tests/test_types.py checks the two agree.
        """
        raw = self.raw
        if raw[: len(_RAW_HEAD)] == _RAW_HEAD and raw[-_SIG_TAIL:-64] == _SIG_HEAD:
            return _BODY_HEAD + raw[len(_RAW_HEAD) : -_SIG_TAIL]
        return self._encoded_signing_body()  # pragma: no cover - raw is always canonical

    def _encoded_signing_body(self) -> bytes:
        return encode_record(self.BODY_TAG, self.VERSION, self._body_fields())

    def encode(self) -> bytes:
        return self.raw

    @classmethod
    def create(
        cls,
        key: keys.PrivateKey,
        chain_id: str,
        nonce: int,
        payload: Payload,
        *,
        gas_limit: int,
        expiry_height: int | None = None,
    ) -> Transaction:
        """Build and sign a transaction."""
        unsigned = cls(
            chain_id, key.public_key, nonce, payload, gas_limit, expiry_height, bytes(64)
        )
        signature = key.sign(chain_id, TX_SIGNATURE_KIND, unsigned.signing_body())
        return cls(chain_id, key.public_key, nonce, payload, gas_limit, expiry_height, signature)

    @classmethod
    def decode(
        cls, raw: bytes, *, max_bytes: int = MAX_TX_BYTES_HARD, tx_hash: bytes | None = None
    ) -> Transaction:
        """Decode canonical bytes; ``tx_hash``, when the caller already hashed ``raw``
        (SHA-256), saves hashing it again."""
        return cls.from_value(decode(raw, max_bytes=max_bytes), raw=bytes(raw), tx_hash=tx_hash)

    @classmethod
    def from_value(
        cls, value: Value, *, raw: bytes | None = None, tx_hash: bytes | None = None
    ) -> Transaction:
        """Build from a decoded record; ``raw`` (its canonical bytes, already checked by
        :func:`decode`) saves encoding the transaction again, ``tx_hash`` (SHA-256 of
        ``raw``) hashing it again."""
        f = record_fields(value, cls.TAG, cls.VERSION, 8)
        chain_id = as_str(f[0], "chain_id", max_size=50)
        kind_name = as_str(f[3], "kind", max_size=16)
        payload_type = PAYLOAD_TYPES.get(kind_name)
        if payload_type is None:
            raise DecodeError(f"kind: unknown transaction kind {kind_name!r}")
        expiry = None if f[6] is None else as_int(f[6], "expiry_height")
        fields = (
            chain_id,
            as_bytes(f[1], "sender", size=keys.PUBLIC_KEY_SIZE),
            as_int(f[2], "nonce"),
            payload_type.from_value(f[4]),
            as_int(f[5], "gas_limit"),
            expiry,
            as_bytes(f[7], "signature", size=keys.SIGNATURE_SIZE),
        )
        if raw is None:
            return cls(*fields)
        # The hot path (every transaction a node receives): skip re-encoding the bytes we
        # were given and verified canonical; fields are set exactly as __init__ would.
        tx = object.__new__(cls)
        for name, field_value in zip(_TX_FIELDS, fields, strict=True):
            object.__setattr__(tx, name, field_value)
        object.__setattr__(tx, "raw", raw)
        object.__setattr__(tx, "hash", sha256(raw) if tx_hash is None else tx_hash)
        object.__setattr__(tx, "sender_address", keys.address_of(tx.sender))
        return tx

    def signature_valid(self) -> bool:
        return keys.verify(
            self.sender, self.chain_id, TX_SIGNATURE_KIND, self.signing_body(), self.signature
        )


#: ``signing_body``'s byte surgery: a 10-element array whose first item is the str "tx"
#: (the signed transaction), a 9-element array led by the str "tx-body" (the body), and
#: the signature's ``bin8`` header (0xc4, length 64) before its last 64 bytes.
_RAW_HEAD: Final = b"\x9a\xa2tx"
_BODY_HEAD: Final = b"\x99\xa7tx-body"
_SIG_HEAD: Final = b"\xc4\x40"
_SIG_TAIL: Final = 66

_TX_FIELDS: Final = (
    "chain_id",
    "sender",
    "nonce",
    "payload",
    "gas_limit",
    "expiry_height",
    "signature",
)


@dataclass(frozen=True, slots=True)
class TxLimits:
    """Per-chain transaction limits (from genesis consensus parameters)."""

    max_tx_bytes: int = 64 * 1024
    max_tx_gas: int = 10_000_000


class TxRejected(ValueError):
    """A transaction refused before execution; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_transaction(
    raw: bytes, limits: TxLimits, *, tx_hash: bytes | None = None
) -> Transaction:
    """Decode client bytes into a transaction or raise :class:`TxRejected`."""
    if len(raw) > limits.max_tx_bytes:
        raise TxRejected(
            "too_large", f"transaction is {len(raw)} bytes, over the limit of {limits.max_tx_bytes}"
        )
    try:
        return Transaction.decode(raw, max_bytes=limits.max_tx_bytes, tx_hash=tx_hash)
    except DecodeError as exc:
        raise TxRejected("malformed", f"malformed transaction: {exc}") from None


def validate_transaction(
    tx: Transaction, chain_id: str, limits: TxLimits, *, check_signature: bool = True
) -> None:
    """Stateless checks: chain id, sizes, gas bounds, payload sanity, signature.

    Raises :class:`TxRejected`. Nonce, balance and expiry need state and are not checked.
    """
    if tx.chain_id != chain_id:
        raise TxRejected(
            "wrong_chain", f"transaction is for chain {tx.chain_id!r}, this is {chain_id!r}"
        )
    if len(tx.raw) > limits.max_tx_bytes:
        raise TxRejected(
            "too_large",
            f"transaction is {len(tx.raw)} bytes, over the limit of {limits.max_tx_bytes}",
        )
    if tx.gas_limit == 0:
        raise TxRejected("gas_limit", "gas_limit must be positive")
    if tx.gas_limit > limits.max_tx_gas:
        raise TxRejected(
            "gas_limit",
            f"gas_limit {tx.gas_limit} is over the per-transaction limit {limits.max_tx_gas}",
        )
    payload = tx.payload
    if isinstance(payload, Transfer) and payload.to == tx.sender_address:
        raise TxRejected("self_transfer", "a transfer to the sender's own address does nothing")
    if isinstance(payload, Deploy):
        _check_deploy_code(payload.code)
    if check_signature and not tx.signature_valid():
        raise TxRejected("bad_signature", "signature does not verify for this sender and chain")


def _check_deploy_code(code: bytes) -> None:
    """Refuse contract code the VM would refuse anyway, before it costs the sender a nonce.

    Admission only: a deploy with bad code that a (Byzantine) primary includes still
    executes deterministically as ``invalid`` on every validator.
    """
    if len(code) > MAX_CONTAINER_BYTES:
        raise TxRejected(
            "too_large",
            f"contract code is {len(code)} bytes, over the limit of {MAX_CONTAINER_BYTES}",
        )
    try:
        validate_code(code)
    except CodeError as exc:
        raise TxRejected("bad_code", f"contract code is not runnable: {exc}") from None


# ----------------------------------------------------------------------------- receipts


#: How a transaction ended: success, reverted, out_of_gas, invalid. One enum for the VM's
#: result and the receipt, so the two can never disagree on a number.
ReceiptStatus = ExecutionStatus


@dataclass(frozen=True, slots=True)
class Event:
    """A log record emitted by a contract: its address, a name and ABI-typed values."""

    address: bytes
    name: str
    args: tuple[AbiValue, ...] = ()

    def to_value(self) -> Value:
        return [self.address, self.name, list(self.args)]

    @classmethod
    def from_value(cls, value: Value) -> Event:
        items = as_list(value, "event", max_len=3)
        if len(items) != 3:
            raise DecodeError("event: expected [address, name, args]")
        return cls(
            as_bytes(items[0], "event.address", size=ADDRESS_SIZE),
            as_str(items[1], "event.name", max_size=MAX_METHOD_NAME_BYTES),
            abi_args(items[2], "event.args"),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """What executing one transaction did."""

    tx_hash: bytes
    status: ReceiptStatus
    gas_used: int
    return_value: AbiValue | None = None
    events: tuple[Event, ...] = ()
    error: str = ""
    created_address: bytes | None = None

    raw: bytes = field(init=False, repr=False, compare=False)

    TAG: ClassVar[str] = "receipt"
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "raw", self._encode())

    def encode(self) -> bytes:
        return self.raw

    def _encode(self) -> bytes:
        return encode_record(
            self.TAG,
            self.VERSION,
            [
                self.tx_hash,
                int(self.status),
                self.gas_used,
                self.return_value,
                [e.to_value() for e in self.events],
                self.error,
                self.created_address,
            ],
        )

    @classmethod
    def decode(cls, raw: bytes) -> Receipt:
        f = record_fields(decode(raw), cls.TAG, cls.VERSION, 7)
        status_code = as_int(f[1], "status", hi=max(ReceiptStatus))
        ret = f[3]
        if ret is not None:
            ret = abi_args([ret], "return_value")[0]
        events = as_list(f[4], "events", max_len=MAX_EVENTS_PER_RECEIPT)
        created = None if f[6] is None else as_bytes(f[6], "created_address", size=ADDRESS_SIZE)
        return cls(
            as_bytes(f[0], "tx_hash", size=HASH_SIZE),
            ReceiptStatus(status_code),
            as_int(f[2], "gas_used"),
            ret,
            tuple(Event.from_value(e) for e in events),
            as_str(f[5], "error", max_size=MAX_ERROR_TEXT_BYTES),
            created,
        )


def receipts_root(receipts: Sequence[Receipt]) -> bytes:
    return merkle_root([r.encode() for r in receipts])


def tx_root(transactions: Sequence[Transaction]) -> bytes:
    return merkle_root([tx.hash for tx in transactions])


# ----------------------------------------------------------------------------- blocks


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    view: int
    proposer: int  # index into the genesis validator list
    timestamp_ms: int
    prev_hash: bytes
    tx_root: bytes
    receipts_root: bytes
    state_root: bytes
    validators_hash: bytes
    tx_count: int

    raw: bytes = field(init=False, repr=False, compare=False)
    block_hash: bytes = field(init=False, repr=False, compare=False)

    TAG: ClassVar[str] = "header"
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        raw = encode_record(self.TAG, self.VERSION, self.to_value()[2:])
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "block_hash", sha256(raw))

    def to_value(self) -> Value:
        return [
            self.TAG,
            self.VERSION,
            self.chain_id,
            self.height,
            self.view,
            self.proposer,
            self.timestamp_ms,
            self.prev_hash,
            self.tx_root,
            self.receipts_root,
            self.state_root,
            self.validators_hash,
            self.tx_count,
        ]

    def encode(self) -> bytes:
        return self.raw

    def hash(self) -> bytes:
        """block_hash = SHA-256 of the canonical header."""
        return self.block_hash

    @classmethod
    def from_value(cls, value: Value) -> BlockHeader:
        f = record_fields(value, cls.TAG, cls.VERSION, 11)
        return cls(
            as_str(f[0], "header.chain_id", max_size=50),
            as_int(f[1], "header.height"),
            as_int(f[2], "header.view"),
            as_int(f[3], "header.proposer", hi=MAX_VALIDATORS - 1),
            as_int(f[4], "header.timestamp_ms"),
            as_bytes(f[5], "header.prev_hash", size=HASH_SIZE),
            as_bytes(f[6], "header.tx_root", size=HASH_SIZE),
            as_bytes(f[7], "header.receipts_root", size=HASH_SIZE),
            as_bytes(f[8], "header.state_root", size=HASH_SIZE),
            as_bytes(f[9], "header.validators_hash", size=HASH_SIZE),
            as_int(f[10], "header.tx_count", hi=MAX_BLOCK_TXS_HARD),
        )

    @classmethod
    def decode(cls, raw: bytes) -> BlockHeader:
        return cls.from_value(decode(raw))


@dataclass(frozen=True, slots=True)
class Block:
    header: BlockHeader
    transactions: tuple[Transaction, ...]

    TAG: ClassVar[str] = "block"
    VERSION: ClassVar[int] = 1

    @property
    def height(self) -> int:
        return self.header.height

    def hash(self) -> bytes:
        return self.header.hash()

    def encode(self) -> bytes:
        return encode_record(
            self.TAG, self.VERSION, [self.header.to_value(), [tx.raw for tx in self.transactions]]
        )

    @classmethod
    def decode(
        cls,
        raw: bytes,
        *,
        max_bytes: int = MAX_BLOCK_BYTES_HARD,
        known: Mapping[bytes, Transaction] | None = None,
    ) -> Block:
        """Decode a block. ``known`` maps canonical transaction bytes to transactions this
        node already decoded and hashed (its mempool): those are reused, not decoded again."""
        f = record_fields(decode(raw, max_bytes=max_bytes), cls.TAG, cls.VERSION, 2)
        header = BlockHeader.from_value(f[0])
        raws = as_list(f[1], "transactions", max_len=MAX_BLOCK_TXS_HARD)
        txs = tuple(
            _reuse_or_decode(as_bytes(r, f"transactions[{i}]"), known) for i, r in enumerate(raws)
        )
        block = cls(header, txs)
        check_block_body(block)
        return block


def _reuse_or_decode(raw: bytes, known: Mapping[bytes, Transaction] | None) -> Transaction:
    if known is not None:
        tx = known.get(raw)
        if tx is not None:
            return tx
    return Transaction.decode(raw)


def check_block_body(block: Block) -> None:
    """The header commits to the body: transaction count and tx_root must match."""
    if block.header.tx_count != len(block.transactions):
        raise DecodeError(
            f"header says {block.header.tx_count} transactions, body has {len(block.transactions)}"
        )
    if block.header.tx_root != tx_root(block.transactions):
        raise DecodeError("tx_root does not match the block's transactions")
    for i, tx in enumerate(block.transactions):
        if tx.chain_id != block.header.chain_id:
            raise DecodeError(f"transactions[{i}] is for another chain")


# ----------------------------------------------------------------------------- certificates


class InvalidCertificate(ValueError):
    """A commit certificate that does not prove what it claims."""


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """q COMMIT signatures over (chain_id, view, height, block_hash): proof a block committed.

    ``votes`` are (validator index, signature) pairs in increasing index order, so one
    certificate has one encoding.
    """

    view: int
    height: int
    block_hash: bytes
    votes: tuple[tuple[int, bytes], ...]

    TAG: ClassVar[str] = "commit-cert"
    VERSION: ClassVar[int] = 1

    def encode(self) -> bytes:
        return encode_record(
            self.TAG,
            self.VERSION,
            [self.view, self.height, self.block_hash, [[i, s] for i, s in self.votes]],
        )

    @classmethod
    def decode(cls, raw: bytes) -> CommitCertificate:
        f = record_fields(decode(raw), cls.TAG, cls.VERSION, 4)
        votes = []
        for n, item in enumerate(as_list(f[3], "votes", max_len=MAX_VALIDATORS)):
            pair = as_list(item, f"votes[{n}]", max_len=2)
            if len(pair) != 2:
                raise DecodeError(f"votes[{n}]: expected [validator_index, signature]")
            votes.append(
                (
                    as_int(pair[0], f"votes[{n}].validator", hi=MAX_VALIDATORS - 1),
                    as_bytes(pair[1], f"votes[{n}].signature", size=keys.SIGNATURE_SIZE),
                )
            )
        return cls(
            as_int(f[0], "view"),
            as_int(f[1], "height"),
            as_bytes(f[2], "block_hash", size=HASH_SIZE),
            tuple(votes),
        )

    def verify(
        self,
        chain_id: str,
        validators: Sequence[bytes],
        *,
        height: int | None = None,
        block_hash: bytes | None = None,
    ) -> None:
        """Raise :class:`InvalidCertificate` unless q distinct validators signed this commit.

        Give ``height`` and ``block_hash`` to also check that the certificate is for that block.
        """
        if height is not None and height != self.height:
            raise InvalidCertificate(f"certificate is for height {self.height}, not {height}")
        if block_hash is not None and block_hash != self.block_hash:
            raise InvalidCertificate("certificate is for another block hash")
        n = len(validators)
        indices = [i for i, _ in self.votes]
        if indices != sorted(set(indices)):
            raise InvalidCertificate("votes must be in strictly increasing validator order")
        if len(indices) < quorum_size(n):
            raise InvalidCertificate(
                f"{len(indices)} commit votes, a quorum of {n} validators needs {quorum_size(n)}"
            )
        if indices and indices[-1] >= n:
            raise InvalidCertificate(f"vote from validator {indices[-1]}, there are only {n}")
        body = commit_vote_body(self.view, self.height, self.block_hash)
        for index, signature in self.votes:
            if not keys.verify(validators[index], chain_id, COMMIT_KIND, body, signature):
                raise InvalidCertificate(f"validator {index}'s commit signature does not verify")

    @classmethod
    def assemble(
        cls, view: int, height: int, block_hash: bytes, votes: dict[int, bytes]
    ) -> CommitCertificate:
        return cls(view, height, block_hash, tuple(sorted(votes.items())))
