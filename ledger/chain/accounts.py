"""Account records and the layout of state keys, plus the state a genesis document implies.

State is a flat map of byte keys to byte values; this module is the one place that says
how accounts, contract code and contract storage are spelled as keys, and how an account
(balance, nonce) is encoded as a value. The store, execution and state proofs all use it,
so the layout must never change without a new store schema version.

Never: touch disk or the network, depend on dict or set iteration order for anything that
is hashed, or invent keys outside the prefixes below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from crypto.encoding import as_int, decode_record, encode_record
from crypto.keys import ADDRESS_SIZE
from ledger.chain.roles import genesis_role_state

if TYPE_CHECKING:
    from genesis.document import Genesis

#: Key prefixes: one byte each, so the families never collide. Client roles live under
#: ``b"r"`` (ledger/chain/roles.py lays out that family).
ACCOUNT_PREFIX: Final = b"a"
CODE_PREFIX: Final = b"c"
STORAGE_PREFIX: Final = b"s"


@dataclass(frozen=True, slots=True)
class Account:
    """An account's native balance and the nonce its next transaction must carry."""

    balance: int
    nonce: int

    TAG: ClassVar[str] = "account"
    VERSION: ClassVar[int] = 1

    def encode(self) -> bytes:
        return encode_record(self.TAG, self.VERSION, [self.balance, self.nonce])

    @classmethod
    def decode(cls, raw: bytes) -> Account:
        """Decode :meth:`encode` output; raise :class:`crypto.encoding.DecodeError` otherwise."""
        f = decode_record(raw, cls.TAG, cls.VERSION, 2)
        return cls(as_int(f[0], "account.balance"), as_int(f[1], "account.nonce"))


#: The state of an address nothing has touched.
EMPTY_ACCOUNT: Final = Account(0, 0)


def _check_address(address: bytes) -> bytes:
    if len(address) != ADDRESS_SIZE:
        raise ValueError(f"an address is {ADDRESS_SIZE} bytes, got {len(address)}")
    return address


def account_key(address: bytes) -> bytes:
    """State key of the account (balance, nonce) at ``address``."""
    return ACCOUNT_PREFIX + _check_address(address)


def code_key(address: bytes) -> bytes:
    """State key of the code of the contract at ``address``."""
    return CODE_PREFIX + _check_address(address)


def storage_key(address: bytes, key: bytes) -> bytes:
    """State key of storage slot ``key`` of the contract at ``address``."""
    return STORAGE_PREFIX + _check_address(address) + key


def genesis_state(genesis: Genesis) -> dict[bytes, bytes]:
    """The state before block ``initial_height``: genesis accounts, predeployed contracts
    and client roles.

    Each funded account and each contract gets an :class:`Account` with nonce 0; a
    contract also gets its code and storage entries; non-default ``permissions`` put their
    role keys in (``ledger.chain.roles.genesis_role_state``; none for an open chain). Raises ValueError when an address
    appears twice (genesis validation already refuses such documents).
    """
    state: dict[bytes, bytes] = {}

    def put_account(address: bytes, balance: int) -> None:
        key = account_key(address)
        if key in state:
            raise ValueError(f"genesis names address {address.hex()} twice")
        state[key] = Account(balance, 0).encode()

    for account in genesis.accounts:
        put_account(account.address, account.balance)
    for contract in genesis.contracts:
        put_account(contract.address, contract.balance)
        state[code_key(contract.address)] = contract.code
        for slot, value in contract.storage:
            state[storage_key(contract.address, slot)] = value
    state.update(genesis_role_state(genesis.permissions))
    return state
