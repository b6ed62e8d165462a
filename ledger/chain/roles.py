"""Client permissioning: who holds which role, in state, and how role changes execute.

Theory of operation. A chain's client roles start from the genesis ``permissions``
(``submit``, ``deploy``: a list of accounts or anyone; ``admin``: a list; and
``admin_threshold`` k) and live in STATE, under the ``r`` key family, so the state root
commits to them and state proofs and state sync carry them:

====================  ============================================================
``r m <role> <addr>``  ``01`` when ``addr`` holds ``role`` (one read per check)
``r l <role>``         the holders of ``role``, sorted (a listing proven by one proof)
``r p``                the :class:`RolePolicy`: which roles are open to anyone, and k
``r v``                the pending role-change proposals and the admins who voted
====================  ============================================================

``<role>`` is one byte (``s`` submit, ``d`` deploy, ``a`` admin). A chain whose genesis
permissions are the defaults (anyone submits and deploys, no admins) writes none of these
keys, so its state root is what it was before roles existed; absent keys read as that.

A transaction needs a role (:func:`role_refusal`, used by admission BEFORE the signature
is checked and by execution as a rule of block validity): a role change needs ``admin``;
anything else needs ``submit`` unless submitting is open; a deploy also needs ``deploy``
unless deploying is open. A role change (:func:`apply_role_change`) is a vote: the k-th
distinct current admin voting for the same (action, role, address) applies it in that
block; earlier votes are kept in ``r v`` with their voters. Only current admins' votes
count: revoking an admin removes their votes. A vote that could not apply (the address
already holds the role, or does not; an open role; a revoke that would leave fewer admins
than k; an admin voting twice) is ``reverted`` with the reason and changes nothing but the
nonce.

Never: iterate a set, depend on the order votes arrived in for anything hashed (voters and
proposals are held sorted), or touch anything outside the ``r`` family.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from crypto.encoding import (
    DecodeError,
    Value,
    as_bytes,
    as_int,
    as_list,
    decode_record,
    encode_record,
)
from crypto.keys import ADDRESS_SIZE
from ledger.chain.payloads import Deploy, Role, RoleAction, RoleChange
from ledger.chain.state_access import StateReader, StateWriter
from ledger.chain.types import Event, Receipt, ReceiptStatus, Transaction

if TYPE_CHECKING:
    from genesis.model import Permissions


#: The state key family of roles (see ledger/chain/accounts.py for the others).
ROLE_PREFIX: Final = b"r"
POLICY_KEY: Final = ROLE_PREFIX + b"p"
PROPOSALS_KEY: Final = ROLE_PREFIX + b"v"
_MEMBER: Final = ROLE_PREFIX + b"m"
_LIST: Final = ROLE_PREFIX + b"l"
_ROLE_BYTE: Final = {Role.SUBMIT: b"s", Role.DEPLOY: b"d", Role.ADMIN: b"a"}
#: The value of a member key.
HELD: Final = b"\x01"
#: Gas a role change costs (it is native, like a transfer).
ROLE_CHANGE_GAS: Final = 1_000
#: Events a role change emits come from this address (no contract lives there).
SYSTEM_ADDRESS: Final = bytes(ADDRESS_SIZE)
#: Bounds on the variable-length role records (grants can add holders past genesis's limit).
MAX_ROLE_HOLDERS: Final = 1_000_000
#: Pending proposals at once: a vote that would open one more is reverted.
MAX_PENDING_PROPOSALS: Final = 1_000
#: Every role, in the one order used for listings and keys.
ROLES: Final = (Role.SUBMIT, Role.DEPLOY, Role.ADMIN)


def member_key(role: Role, address: bytes) -> bytes:
    """State key that holds ``01`` when ``address`` holds ``role``."""
    if len(address) != ADDRESS_SIZE:
        raise ValueError(f"an address is {ADDRESS_SIZE} bytes, got {len(address)}")
    return _MEMBER + _ROLE_BYTE[role] + address


def list_key(role: Role) -> bytes:
    """State key of the sorted list of ``role``'s holders."""
    return _LIST + _ROLE_BYTE[role]


#: Every key a full listing reads (policy, the three lists, the proposals).
LISTING_KEYS: Final = (POLICY_KEY, *(list_key(r) for r in ROLES), PROPOSALS_KEY)


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class RolePolicy:
    """Which roles anyone holds, and how many admins a change needs (k)."""

    submit_open: bool = True
    deploy_open: bool = True
    admin_threshold: int = 1

    TAG: ClassVar[str] = "role-policy"
    VERSION: ClassVar[int] = 1

    def is_open(self, role: Role) -> bool:
        return (role == Role.SUBMIT and self.submit_open) or (
            role == Role.DEPLOY and self.deploy_open
        )

    def encode(self) -> bytes:
        return encode_record(
            self.TAG,
            self.VERSION,
            [int(self.submit_open), int(self.deploy_open), self.admin_threshold],
        )

    @classmethod
    def decode(cls, raw: bytes) -> RolePolicy:
        f = decode_record(raw, cls.TAG, cls.VERSION, 3)
        return cls(
            bool(as_int(f[0], "submit_open", hi=1)),
            bool(as_int(f[1], "deploy_open", hi=1)),
            as_int(f[2], "admin_threshold", lo=1),
        )


#: What a chain with no ``r p`` key has: the genesis defaults.
OPEN_POLICY: Final = RolePolicy()


@dataclass(frozen=True, slots=True)
class Proposal:
    """A role change some admins voted for, not yet applied; ``voters`` sorted."""

    change: RoleChange
    voters: tuple[bytes, ...]

    @property
    def sort_key(self) -> tuple[str, bytes, str]:
        return (str(self.change.role), self.change.address, str(self.change.action))


@dataclass(frozen=True, slots=True)
class Proposals:
    """Every pending proposal, sorted by (role, address, action): one canonical value."""

    items: tuple[Proposal, ...] = ()

    TAG: ClassVar[str] = "role-proposals"
    VERSION: ClassVar[int] = 1

    def find(self, change: RoleChange) -> Proposal | None:
        return next((p for p in self.items if p.change == change), None)

    def with_(self, proposal: Proposal) -> Proposals:
        rest = [p for p in self.items if p.change != proposal.change]
        return Proposals(tuple(sorted([*rest, proposal], key=lambda p: p.sort_key)))

    def without(self, change: RoleChange) -> Proposals:
        return Proposals(tuple(p for p in self.items if p.change != change))

    def without_voter(self, voter: bytes) -> Proposals:
        kept = []
        for p in self.items:
            voters = tuple(v for v in p.voters if v != voter)
            if voters:
                kept.append(Proposal(p.change, voters))
        return Proposals(tuple(kept))

    def encode(self) -> bytes | None:
        """The state value; None (delete the key) when nothing is pending."""
        if not self.items:
            return None
        entries: list[Value] = [[*p.change.to_value(), list(p.voters)] for p in self.items]
        return encode_record(self.TAG, self.VERSION, [entries])

    @classmethod
    def decode(cls, raw: bytes) -> Proposals:
        (entries,) = decode_record(raw, cls.TAG, cls.VERSION, 1)
        items = []
        for i, entry in enumerate(as_list(entries, "proposals", max_len=MAX_PENDING_PROPOSALS)):
            parts = as_list(entry, f"proposals[{i}]", max_len=4)
            if len(parts) != 4:
                raise DecodeError(f"proposals[{i}]: expected [action, role, address, voters]")
            change = RoleChange.from_value(parts[:3])
            voters = tuple(
                as_bytes(v, f"proposals[{i}].voters", size=ADDRESS_SIZE)
                for v in as_list(parts[3], f"proposals[{i}].voters", max_len=MAX_ROLE_HOLDERS)
            )
            items.append(Proposal(change, voters))
        return cls(tuple(items))


def encode_holders(holders: Iterable[bytes]) -> bytes | None:
    """The value of a list key: the holders sorted; None (no key) when there are none."""
    ordered = sorted(holders)
    return encode_record("role-holders", 1, [list(ordered)]) if ordered else None


def decode_holders(raw: bytes | None) -> tuple[bytes, ...]:
    if raw is None:
        return ()
    (listed,) = decode_record(raw, "role-holders", 1, 1)
    return tuple(
        as_bytes(a, "holders[]", size=ADDRESS_SIZE)
        for a in as_list(listed, "holders", max_len=MAX_ROLE_HOLDERS)
    )


# ----------------------------------------------------------------------------- reading


def read_policy(state: StateReader) -> RolePolicy:
    raw = state.get_state(POLICY_KEY)
    return OPEN_POLICY if raw is None else RolePolicy.decode(raw)


def holds(state: StateReader, role: Role, address: bytes) -> bool:
    return state.get_state(member_key(role, address)) is not None


@dataclass(frozen=True, slots=True)
class RoleTable:
    """Everything about roles at one height: what ``quorum permissions list`` shows."""

    policy: RolePolicy
    holders: dict[Role, tuple[bytes, ...]] = field(default_factory=dict)
    proposals: Proposals = Proposals()

    @classmethod
    def from_values(cls, values: dict[bytes, bytes | None]) -> RoleTable:
        """From the values of :data:`LISTING_KEYS` (None: absent). Raises DecodeError."""
        raw_policy = values.get(POLICY_KEY)
        raw_proposals = values.get(PROPOSALS_KEY)
        return cls(
            OPEN_POLICY if raw_policy is None else RolePolicy.decode(raw_policy),
            {r: decode_holders(values.get(list_key(r))) for r in ROLES},
            Proposals() if raw_proposals is None else Proposals.decode(raw_proposals),
        )

    def to_json(self) -> dict[str, object]:
        def spell(role: Role) -> object:
            if self.policy.is_open(role):
                return "any"
            return [a.hex() for a in self.holders.get(role, ())]

        return {
            "roles": {str(r): spell(r) for r in ROLES},
            "admin_threshold": self.policy.admin_threshold,
            "pending": [
                {
                    "action": str(p.change.action),
                    "role": str(p.change.role),
                    "address": p.change.address.hex(),
                    "votes": [v.hex() for v in p.voters],
                    "threshold": self.policy.admin_threshold,
                }
                for p in self.proposals.items
            ],
        }


# ----------------------------------------------------------------------------- the rule


def role_refusal(state: StateReader, tx_payload: object, sender: bytes) -> str | None:
    """Why ``sender`` may not send a transaction with this payload now (None: it may).

    The one permission rule, read from ``state``: admission applies it to committed state
    before verifying the signature, execution to the block's overlay (a block carrying a
    refused transaction is invalid).
    """
    if isinstance(tx_payload, RoleChange):
        if holds(state, Role.ADMIN, sender):
            return None
        return "the sender is not an admin: only admins may grant or revoke roles"
    raw = state.get_state(POLICY_KEY)
    if raw is None:  # an open chain: the common case costs one read
        return None
    policy = RolePolicy.decode(raw)
    if not policy.submit_open and not holds(state, Role.SUBMIT, sender):
        return "the sender does not hold the submit role on this chain"
    deploying = isinstance(tx_payload, Deploy)
    if deploying and not policy.deploy_open and not holds(state, Role.DEPLOY, sender):
        return "the sender does not hold the deploy role on this chain"
    return None


# ----------------------------------------------------------------------------- execution


def _reverted(tx: Transaction, error: str) -> Receipt:
    return Receipt(tx.hash, ReceiptStatus.REVERTED, ROLE_CHANGE_GAS, error=error)


def apply_role_change(overlay: StateWriter, tx: Transaction, change: RoleChange) -> Receipt:
    """Execute an includable role-change vote (the nonce is already spent): record it, and
    apply the change when it is the k-th current admin's vote. Returns the receipt: success
    with ``return`` ``"applied"`` or ``"pending"`` and a ``role_vote`` event
    ``(action, role, address, votes, threshold)`` (plus ``role_changed`` when applied), or
    reverted with the reason, changing nothing."""
    if tx.gas_limit < ROLE_CHANGE_GAS:
        error = f"a role change needs {ROLE_CHANGE_GAS} gas"
        return Receipt(tx.hash, ReceiptStatus.OUT_OF_GAS, tx.gas_limit, error=error)
    voter = tx.sender_address
    role, target, granting = change.role, change.address, change.action == RoleAction.GRANT
    policy = read_policy(overlay)
    if policy.is_open(role):
        return _reverted(tx, f"the {role} role is open to every account on this chain")
    held = holds(overlay, role, target)
    if granting and held:
        return _reverted(tx, f"{target.hex()} already holds the {role} role")
    if not granting and not held:
        return _reverted(tx, f"{target.hex()} does not hold the {role} role")
    admins = decode_holders(overlay.get_state(list_key(Role.ADMIN)))
    if role == Role.ADMIN and not granting and len(admins) - 1 < policy.admin_threshold:
        return _reverted(
            tx,
            f"revoking would leave {len(admins) - 1} admins, fewer than the admin threshold "
            f"{policy.admin_threshold}: no role change could pass again",
        )
    proposals = Proposals.decode(raw) if (raw := overlay.get_state(PROPOSALS_KEY)) else Proposals()
    earlier = proposals.find(change)
    voters = tuple(v for v in (earlier.voters if earlier else ()) if v in admins)
    if voter in voters:
        return _reverted(
            tx,
            f"this admin already voted for this change ({len(voters)} of "
            f"{policy.admin_threshold} votes)",
        )
    if earlier is None and len(proposals.items) >= MAX_PENDING_PROPOSALS:
        return _reverted(tx, f"{MAX_PENDING_PROPOSALS} role changes are already pending")
    voters = tuple(sorted((*voters, voter)))
    vote = Event(
        SYSTEM_ADDRESS,
        "role_vote",
        (str(change.action), str(role), target, len(voters), policy.admin_threshold),
    )
    if len(voters) < policy.admin_threshold:
        _write_proposals(overlay, proposals.with_(Proposal(change, voters)))
        return Receipt(tx.hash, ReceiptStatus.SUCCESS, ROLE_CHANGE_GAS, "pending", (vote,))
    proposals = proposals.without(change)
    holders = decode_holders(overlay.get_state(list_key(role)))
    if granting:
        overlay.set_state(member_key(role, target), HELD)
        holders = (*holders, target)
    else:
        overlay.set_state(member_key(role, target), None)
        holders = tuple(h for h in holders if h != target)
        if role == Role.ADMIN:  # a former admin's votes no longer count
            proposals = proposals.without_voter(target)
    overlay.set_state(list_key(role), encode_holders(holders))
    _write_proposals(overlay, proposals)
    changed = Event(SYSTEM_ADDRESS, "role_changed", (str(change.action), str(role), target))
    return Receipt(tx.hash, ReceiptStatus.SUCCESS, ROLE_CHANGE_GAS, "applied", (vote, changed))


def _write_proposals(overlay: StateWriter, proposals: Proposals) -> None:
    overlay.set_state(PROPOSALS_KEY, proposals.encode())


# ----------------------------------------------------------------------------- genesis


def genesis_role_state(permissions: Permissions) -> dict[bytes, bytes]:
    """The role keys a genesis document's ``permissions`` put in state (none when open)."""
    if permissions.is_open:
        return {}
    policy = RolePolicy(
        submit_open=permissions.submit is None,
        deploy_open=permissions.deploy is None,
        admin_threshold=permissions.admin_threshold,
    )
    state = {POLICY_KEY: policy.encode()}
    for role, listed in (
        (Role.SUBMIT, permissions.submit),
        (Role.DEPLOY, permissions.deploy),
        (Role.ADMIN, permissions.admin),
    ):
        if not listed:
            continue
        for address in listed:
            state[member_key(role, address)] = HELD
        value = encode_holders(listed)
        assert value is not None
        state[list_key(role)] = value
    return state


__all__ = [
    "HELD",
    "LISTING_KEYS",
    "OPEN_POLICY",
    "POLICY_KEY",
    "PROPOSALS_KEY",
    "ROLES",
    "ROLE_CHANGE_GAS",
    "ROLE_PREFIX",
    "SYSTEM_ADDRESS",
    "Proposal",
    "Proposals",
    "RoleAction",
    "RolePolicy",
    "RoleTable",
    "apply_role_change",
    "genesis_role_state",
    "holds",
    "list_key",
    "member_key",
    "read_policy",
    "role_refusal",
]
