"""Transaction payloads: what a transaction asks the chain to do, and their canonical values.

One frozen dataclass per transaction kind, each with ``to_value()`` (the list that goes into
the transaction record, docs/PROTOCOL.md "Transactions") and ``from_value()``, which accepts
exactly that and raises :class:`crypto.encoding.DecodeError` on anything else.
``ledger.chain.types`` re-exports every name here; execution decides what a payload does.

Never: accept a value another spelling of which decodes to the same payload (one payload,
one encoding), or know about state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from crypto import keys
from crypto.encoding import DecodeError, Value, as_bytes, as_int, as_list, as_str

ADDRESS_SIZE: Final = keys.ADDRESS_SIZE
U64_MAX: Final = 2**64 - 1
#: Hard format limits, independent of genesis (which may only lower them).
MAX_TX_BYTES_HARD: Final = 1024 * 1024
MAX_ABI_ARGS: Final = 16
MAX_METHOD_NAME_BYTES: Final = 64

AbiValue = int | bytes | str


class TxKind(enum.StrEnum):
    TRANSFER = "transfer"
    DEPLOY = "deploy"
    CALL = "call"
    ROLE = "role"
    VALIDATOR = "validator"


def abi_args(value: Value, name: str) -> tuple[AbiValue, ...]:
    items = as_list(value, name, max_len=MAX_ABI_ARGS)
    out: list[AbiValue] = []
    for i, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, int | bytes | str):
            raise DecodeError(f"{name}[{i}]: ABI arguments are integers, bytes or strings")
        if isinstance(item, int) and not 0 <= item <= U64_MAX:
            raise DecodeError(f"{name}[{i}]: integer outside the u64 range")
        out.append(item)
    return tuple(out)


def _check_abi_args(args: tuple[AbiValue, ...]) -> None:
    abi_args(list(args), "args")


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` of the native currency to ``to``."""

    to: bytes
    amount: int

    kind = TxKind.TRANSFER

    def to_value(self) -> Value:
        return [self.to, self.amount]

    @classmethod
    def from_value(cls, value: Value) -> Transfer:
        items = as_list(value, "payload", max_len=2)
        if len(items) != 2:
            raise DecodeError("payload: a transfer has 2 fields [to, amount]")
        return cls(
            as_bytes(items[0], "payload.to", size=ADDRESS_SIZE), as_int(items[1], "payload.amount")
        )


@dataclass(frozen=True, slots=True)
class Deploy:
    """Create a contract from ``code``; ``args`` go to its constructor, ``value`` to its balance."""

    code: bytes
    args: tuple[AbiValue, ...] = ()
    value: int = 0

    kind = TxKind.DEPLOY

    def __post_init__(self) -> None:
        _check_abi_args(self.args)

    def to_value(self) -> Value:
        return [self.code, list(self.args), self.value]

    @classmethod
    def from_value(cls, value: Value) -> Deploy:
        items = as_list(value, "payload", max_len=3)
        if len(items) != 3:
            raise DecodeError("payload: a deploy has 3 fields [code, args, value]")
        code = as_bytes(items[0], "payload.code", max_size=MAX_TX_BYTES_HARD)
        if not code:
            raise DecodeError("payload.code: empty")
        return cls(code, abi_args(items[1], "payload.args"), as_int(items[2], "payload.value"))


@dataclass(frozen=True, slots=True)
class Call:
    """Call ``method`` of the contract at ``to`` with ABI ``args``, sending ``value``."""

    to: bytes
    method: str
    args: tuple[AbiValue, ...] = ()
    value: int = 0

    kind = TxKind.CALL

    def __post_init__(self) -> None:
        _check_abi_args(self.args)

    def to_value(self) -> Value:
        return [self.to, self.method, list(self.args), self.value]

    @classmethod
    def from_value(cls, value: Value) -> Call:
        items = as_list(value, "payload", max_len=4)
        if len(items) != 4:
            raise DecodeError("payload: a call has 4 fields [to, method, args, value]")
        method = as_str(items[1], "payload.method", max_size=MAX_METHOD_NAME_BYTES)
        if not method:
            raise DecodeError("payload.method: empty")
        return cls(
            as_bytes(items[0], "payload.to", size=ADDRESS_SIZE),
            method,
            abi_args(items[2], "payload.args"),
            as_int(items[3], "payload.value"),
        )


class RoleAction(enum.StrEnum):
    GRANT = "grant"
    REVOKE = "revoke"


class Role(enum.StrEnum):
    """The client roles of a permissioned chain (genesis ``permissions``)."""

    SUBMIT = "submit"
    DEPLOY = "deploy"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class RoleChange:
    """An admin's vote to grant or revoke ``role`` for the account at ``address``.

    With an admin threshold k (genesis ``permissions.admin_threshold``) the change takes
    effect in the block that commits the k-th distinct admin's vote for the same
    (action, role, address); see ledger/chain/roles.py.
    """

    action: RoleAction
    role: Role
    address: bytes

    kind = TxKind.ROLE

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", RoleAction(self.action))
        object.__setattr__(self, "role", Role(self.role))
        if len(self.address) != ADDRESS_SIZE:
            raise ValueError(f"an address is {ADDRESS_SIZE} bytes, got {len(self.address)}")

    def to_value(self) -> Value:
        return [str(self.action), str(self.role), self.address]

    @classmethod
    def from_value(cls, value: Value) -> RoleChange:
        items = as_list(value, "payload", max_len=3)
        if len(items) != 3:
            raise DecodeError("payload: a role change has 3 fields [action, role, address]")
        action = as_str(items[0], "payload.action", max_size=16)
        role = as_str(items[1], "payload.role", max_size=16)
        if action not in RoleAction.__members__.values():
            raise DecodeError(f"payload.action: {action!r} is not grant or revoke")
        if role not in Role.__members__.values():
            raise DecodeError(f"payload.role: unknown role {role!r} (submit, deploy, admin)")
        return cls(
            RoleAction(action),
            Role(role),
            as_bytes(items[2], "payload.address", size=ADDRESS_SIZE),
        )


class SetAction(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"


#: A validator name: what ``quorum validators`` and the logs call it.
MAX_VALIDATOR_NAME_BYTES: Final = 32
MAX_P2P_ADDRESS_BYTES: Final = 255


@dataclass(frozen=True, slots=True)
class ValidatorChange:
    """A current validator's vote to add or remove a member of the validator set.

    ``add`` names the newcomer, its Ed25519 ``public_key`` and its ``p2p`` address
    (HOST:PORT, how peers reach it); ``remove`` names the member only (key and address
    empty). The change takes effect at the epoch boundary after q of the current
    validators voted for the same change (ledger/chain/validators.py).
    """

    action: SetAction
    name: str
    public_key: bytes = b""
    p2p: str = ""

    kind = TxKind.VALIDATOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", SetAction(self.action))
        problem = validator_change_problem(self.action, self.name, self.public_key, self.p2p)
        if problem is not None:
            raise ValueError(problem)

    def to_value(self) -> Value:
        return [str(self.action), self.name, self.public_key, self.p2p]

    @classmethod
    def from_value(cls, value: Value) -> ValidatorChange:
        items = as_list(value, "payload", max_len=4)
        if len(items) != 4:
            raise DecodeError("payload: a validator change has 4 fields [action, name, key, p2p]")
        action = as_str(items[0], "payload.action", max_size=16)
        if action not in SetAction.__members__.values():
            raise DecodeError(f"payload.action: {action!r} is not add or remove")
        name = as_str(items[1], "payload.name", max_size=MAX_VALIDATOR_NAME_BYTES)
        public_key = as_bytes(items[2], "payload.public_key", max_size=keys.PUBLIC_KEY_SIZE)
        p2p = as_str(items[3], "payload.p2p", max_size=MAX_P2P_ADDRESS_BYTES)
        problem = validator_change_problem(SetAction(action), name, public_key, p2p)
        if problem is not None:
            raise DecodeError(f"payload: {problem}")
        return cls(SetAction(action), name, public_key, p2p)


def validator_change_problem(action: str, name: str, public_key: bytes, p2p: str) -> str | None:
    """Why these fields are not a well-formed validator change (None: they are)."""
    if (
        not name
        or len(name.encode()) > MAX_VALIDATOR_NAME_BYTES
        or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)
    ):
        return f"validator name {name!r}: 1..32 of a-z, A-Z, 0-9, '-', '_', '.'"
    if action == SetAction.REMOVE:
        if public_key or p2p:
            return "a removal names the validator only (no key, no address)"
        return None
    if len(public_key) != keys.PUBLIC_KEY_SIZE:
        return f"an Ed25519 public key is {keys.PUBLIC_KEY_SIZE} bytes, got {len(public_key)}"
    host, sep, port = p2p.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"p2p address {p2p!r} is not HOST:PORT"
    return None


Payload = Transfer | Deploy | Call | RoleChange | ValidatorChange
PAYLOAD_TYPES: Final[dict[str, type[Payload]]] = {
    TxKind.TRANSFER: Transfer,
    TxKind.DEPLOY: Deploy,
    TxKind.CALL: Call,
    TxKind.ROLE: RoleChange,
    TxKind.VALIDATOR: ValidatorChange,
}
