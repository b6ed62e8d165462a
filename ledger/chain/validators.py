"""The validator set in state: epochs, votes for set changes, and the switch at a checkpoint.

Theory of operation. The set that certifies blocks lives in STATE under the ``v`` key
family, so the state root commits to it and state proofs and state sync carry it:

==========  ==================================================================
``v a``     the active :class:`ValidatorSet` (epoch, first height - 1, members)
``v n``     the next set, scheduled: q votes are in, the boundary is not reached
``v p``     the pending :class:`SetProposals`: each change and its voters' keys
``v o``     the set ``v a`` replaced (absent: the genesis set): it certified the
            switch block, so a store can check its head's certificate after a restart
==========  ==================================================================

A chain without a set change writes none of these keys (its state root is what it was
before epochs existed); an absent ``v a`` reads as the genesis set, epoch 0.

The rules (docs/PROTOCOL.md "Validator-set changes"):

* A vote is a transaction with a :class:`ValidatorChange` payload signed by a CURRENT
  validator's key (:func:`vote_refusal`: admission before the signature, and block
  validity); an account key's vote is refused with ``not_permitted``. So is a change that
  would leave fewer than :data:`MIN_VALIDATORS` members.
* The q-th distinct current validator voting for the same change (q = ceil((n+f+1)/2)
  of the active set, consensus/quorum.py) schedules the next set (``v n``) at that block b
  and clears the other pending proposals (they were counted against the old set). While a
  set is scheduled, further votes revert: one change per epoch.
* At the end of executing the first checkpoint block E >= b (E - genesis_height a
  multiple of ``checkpoint_interval``; b itself if it is one), the scheduled set becomes
  active with epoch + 1 and ``start_height`` E (:func:`end_of_block`).
* Block E is certified by the OLD set; blocks E+1.. by the new one. A block's header names
  the set that certifies it (``validators_hash`` of the active set in its parent's state)
  and its proposer is ``view mod n`` of that set. Consensus signs epoch e's messages under
  ``consensus.config.epoch_chain_id(chain_id, e)``.

Never: iterate a set, depend on vote arrival order for anything hashed (voters and
proposals are kept sorted), or touch anything outside the ``v`` family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Final

from consensus.quorum import quorum_size
from crypto.encoding import (
    DecodeError,
    Value,
    as_bytes,
    as_int,
    as_list,
    as_str,
    decode_record,
    encode,
    encode_record,
)
from crypto.hashing import tagged_hash
from crypto.keys import PUBLIC_KEY_SIZE
from ledger.chain.payloads import SetAction, ValidatorChange
from ledger.chain.state_access import StateReader, StateWriter
from ledger.chain.types import Event, Receipt, ReceiptStatus, Transaction

if TYPE_CHECKING:
    from genesis.model import Genesis


VALIDATOR_PREFIX: Final = b"v"
ACTIVE_KEY: Final = VALIDATOR_PREFIX + b"a"
NEXT_KEY: Final = VALIDATOR_PREFIX + b"n"
PROPOSALS_KEY: Final = VALIDATOR_PREFIX + b"p"
PREVIOUS_KEY: Final = VALIDATOR_PREFIX + b"o"
#: Every key ``quorum validators list`` reads (one multiproof).
LISTING_KEYS: Final = (ACTIVE_KEY, NEXT_KEY, PROPOSALS_KEY)
#: The smallest set that tolerates a Byzantine member (n = 3f + 1 with f = 1).
MIN_VALIDATORS: Final = 4
#: Same bound as the certificates' signer lists.
MAX_VALIDATORS: Final = 1024
MAX_PENDING_CHANGES: Final = 64
VALIDATOR_CHANGE_GAS: Final = 1_000
#: Events of a set change come from this address (no contract lives there).
SYSTEM_ADDRESS: Final = bytes(20)
#: The changes whose COMPLETING vote (the q-th) is accepted: those the node can carry
#: through the epoch switch end to end (docs/OPERATIONS.md "Validator-set changes"). A
#: completing vote for any other change is refused at admission and as a rule of block
#: validity, so no user can schedule a set the network would stall on.
SWITCHABLE_ACTIONS: Final[tuple[SetAction, ...]] = (SetAction.ADD, SetAction.REMOVE)
#: Every action: what the chain-level mechanics accept (unit tests of the rules).
ALL_ACTIONS: Final[tuple[SetAction, ...]] = (SetAction.ADD, SetAction.REMOVE)


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    public_key: bytes
    #: HOST:PORT; empty for genesis members (their addresses are in the node configs).
    p2p: str = ""

    def to_value(self) -> Value:
        return [self.name, self.public_key, self.p2p]

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "public_key": self.public_key.hex(), "p2p": self.p2p}


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The members certifying heights ``start_height + 1`` .. of ``epoch``, in order
    (a member's index is its consensus index; the primary of view v is members[v mod n])."""

    epoch: int
    start_height: int
    members: tuple[Member, ...]

    TAG: ClassVar[str] = "validator-set"
    VERSION: ClassVar[int] = 1

    @property
    def public_keys(self) -> tuple[bytes, ...]:
        return tuple(m.public_key for m in self.members)

    @property
    def n(self) -> int:
        return len(self.members)

    def hash(self) -> bytes:
        """The header's ``validators_hash``; for epoch 0 it equals genesis's."""
        return tagged_hash("validators", encode([[m.name, m.public_key] for m in self.members]))

    def find(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)

    def applying(self, change: ValidatorChange, start_height: int) -> ValidatorSet:
        """The next epoch's set: added members go last, removed ones leave the order."""
        if change.action == SetAction.ADD:
            members = (*self.members, Member(change.name, change.public_key, change.p2p))
        else:
            members = tuple(m for m in self.members if m.name != change.name)
        return ValidatorSet(self.epoch + 1, start_height, members)

    def encode(self) -> bytes:
        fields: list[Value] = [self.epoch, self.start_height, [m.to_value() for m in self.members]]
        return encode_record(self.TAG, self.VERSION, fields)

    @classmethod
    def decode(cls, raw: bytes) -> ValidatorSet:
        f = decode_record(raw, cls.TAG, cls.VERSION, 3)
        members = []
        for i, item in enumerate(as_list(f[2], "members", max_len=MAX_VALIDATORS)):
            parts = as_list(item, f"members[{i}]", max_len=3)
            if len(parts) != 3:
                raise DecodeError(f"members[{i}]: expected [name, public_key, p2p]")
            members.append(
                Member(
                    as_str(parts[0], f"members[{i}].name", max_size=64),
                    as_bytes(parts[1], f"members[{i}].public_key", size=PUBLIC_KEY_SIZE),
                    as_str(parts[2], f"members[{i}].p2p", max_size=255),
                )
            )
        return cls(as_int(f[0], "epoch"), as_int(f[1], "start_height"), tuple(members))

    def to_json(self) -> dict[str, object]:
        return {
            "epoch": self.epoch,
            "start_height": self.start_height,
            "validators": [m.to_json() for m in self.members],
        }

    @classmethod
    def genesis(cls, genesis: Genesis) -> ValidatorSet:
        members = tuple(Member(v.name, v.public_key) for v in genesis.validators)
        return cls(0, genesis.initial_height - 1, members)


@dataclass(frozen=True, slots=True)
class SetProposals:
    """Pending changes with their voters (public keys, sorted); sorted by the change."""

    items: tuple[tuple[ValidatorChange, tuple[bytes, ...]], ...] = ()

    TAG: ClassVar[str] = "validator-proposals"
    VERSION: ClassVar[int] = 1

    def voters(self, change: ValidatorChange) -> tuple[bytes, ...]:
        return next((v for c, v in self.items if c == change), ())

    def with_(self, change: ValidatorChange, voters: tuple[bytes, ...]) -> SetProposals:
        rest = [(c, v) for c, v in self.items if c != change]
        return SetProposals(tuple(sorted([*rest, (change, voters)], key=lambda p: p[0].to_value())))

    def encode(self) -> bytes | None:
        if not self.items:
            return None
        entries: list[Value] = [[*c.to_value(), list(v)] for c, v in self.items]
        return encode_record(self.TAG, self.VERSION, [entries])

    @classmethod
    def decode(cls, raw: bytes) -> SetProposals:
        (entries,) = decode_record(raw, cls.TAG, cls.VERSION, 1)
        items = []
        for i, entry in enumerate(as_list(entries, "proposals", max_len=MAX_PENDING_CHANGES)):
            parts = as_list(entry, f"proposals[{i}]", max_len=5)
            if len(parts) != 5:
                raise DecodeError(f"proposals[{i}]: expected [action, name, key, p2p, voters]")
            change = ValidatorChange.from_value(parts[:4])
            voters = tuple(
                as_bytes(v, "voter", size=PUBLIC_KEY_SIZE)
                for v in as_list(parts[4], "voters", max_len=MAX_VALIDATORS)
            )
            items.append((change, voters))
        return cls(tuple(items))


# ----------------------------------------------------------------------------- reading


def read_active(state: StateReader, genesis_set: ValidatorSet) -> ValidatorSet:
    raw = state.get_state(ACTIVE_KEY)
    return genesis_set if raw is None else ValidatorSet.decode(raw)


def read_next(state: StateReader) -> ValidatorSet | None:
    raw = state.get_state(NEXT_KEY)
    return None if raw is None else ValidatorSet.decode(raw)


def read_replaced(state: StateReader, genesis_set: ValidatorSet) -> ValidatorSet | None:
    """The set the active one replaced (``v o``; the genesis set for epoch 1), which
    certified the switch block; None in epoch 0."""
    raw = state.get_state(ACTIVE_KEY)
    if raw is None:
        return None
    previous = state.get_state(PREVIOUS_KEY)
    return genesis_set if previous is None else ValidatorSet.decode(previous)


def read_proposals(state: StateReader) -> SetProposals:
    raw = state.get_state(PROPOSALS_KEY)
    return SetProposals() if raw is None else SetProposals.decode(raw)


def listing(
    values: dict[bytes, bytes | None], genesis_set: ValidatorSet | None
) -> dict[str, object]:
    """What ``quorum validators list`` shows, from the values of :data:`LISTING_KEYS`.
    ``genesis_set`` is what an absent ``v a`` means (None: the caller reports it)."""
    raw_active = values.get(ACTIVE_KEY)
    active = ValidatorSet.decode(raw_active) if raw_active is not None else genesis_set
    raw_next = values.get(NEXT_KEY)
    raw_proposals = values.get(PROPOSALS_KEY)
    proposals = SetProposals.decode(raw_proposals) if raw_proposals else SetProposals()
    quorum = quorum_size(active.n) if active is not None else 0
    return {
        **(active.to_json() if active is not None else {}),
        "quorum": quorum,
        "scheduled": ValidatorSet.decode(raw_next).to_json() if raw_next else None,
        "pending": [
            {
                "action": str(c.action),
                "name": c.name,
                "public_key": c.public_key.hex(),
                "p2p": c.p2p,
                "votes": [v.hex() for v in voters],
                "quorum": quorum,
            }
            for c, voters in proposals.items
        ],
    }


# ----------------------------------------------------------------------------- the rules


def vote_refusal(
    state: StateReader,
    genesis_set: ValidatorSet,
    payload: object,
    sender: bytes,
    *,
    completing: tuple[SetAction, ...] = SWITCHABLE_ACTIONS,
) -> str | None:
    """Why ``sender`` (a public key) may not send this payload now; None: it may. Only
    validator changes are concerned; the check reads committed state at admission (before
    the signature) and the block's overlay at execution (a rule of block validity).
    ``completing``: the actions whose q-th vote may schedule a set (see
    :data:`SWITCHABLE_ACTIONS`)."""
    if not isinstance(payload, ValidatorChange):
        return None
    active = read_active(state, genesis_set)
    if sender not in active.public_keys:
        return (
            "the sender is not a current validator: a validator-set vote must be signed by "
            "the key of a member of the active set (epoch "
            f"{active.epoch}), not an account key"
        )
    if payload.action == SetAction.REMOVE:
        if active.find(payload.name) is None:
            return f"{payload.name!r} is not a member of the validator set"
        if active.n - 1 < MIN_VALIDATORS:
            return (
                f"removing {payload.name!r} would leave {active.n - 1} validators; a set "
                f"needs at least {MIN_VALIDATORS} (n = 3f + 1 with f >= 1)"
            )
    else:
        if active.find(payload.name) is not None:
            return f"a validator named {payload.name!r} is already a member"
        if payload.public_key in active.public_keys:
            return "that public key is already a member of the validator set"
        if active.n + 1 > MAX_VALIDATORS:
            return f"the set already has {MAX_VALIDATORS} validators"
    if payload.action not in completing and _would_complete(state, active, payload, sender):
        return (
            f"this vote would complete the change ({payload.action} {payload.name!r}) and "
            f"schedule validator-set epoch {active.epoch + 1}, but this node software cannot "
            f"switch epochs for {payload.action!s} yet (the next epoch's replica, dialling "
            "new members and the chain-of-sets verifier are missing: issue 16); the "
            "network would stall at the switch, so completing votes are refused"
        )
    return None


def _would_complete(
    state: StateReader, active: ValidatorSet, change: ValidatorChange, sender: bytes
) -> bool:
    """``sender``'s vote is the q-th distinct current vote for ``change`` (no set scheduled)."""
    if read_next(state) is not None:
        return False  # the vote reverts ("already scheduled")
    voters = [v for v in read_proposals(state).voters(change) if v in active.public_keys]
    if sender in voters:
        return False  # the vote reverts ("already voted")
    return len(voters) + 1 >= quorum_size(active.n)


def _reverted(tx: Transaction, error: str) -> Receipt:
    return Receipt(tx.hash, ReceiptStatus.REVERTED, VALIDATOR_CHANGE_GAS, error=error)


def apply_validator_vote(
    overlay: StateWriter,
    tx: Transaction,
    change: ValidatorChange,
    genesis_set: ValidatorSet,
    height: int,
) -> Receipt:
    """Execute an includable vote (nonce spent): record it; the q-th current validator's
    vote for the same change schedules the next set. Return ``"pending"`` or
    ``"scheduled"`` with a ``validator_vote`` event, or reverted with the reason."""
    if tx.gas_limit < VALIDATOR_CHANGE_GAS:
        error = f"a validator change needs {VALIDATOR_CHANGE_GAS} gas"
        return Receipt(tx.hash, ReceiptStatus.OUT_OF_GAS, tx.gas_limit, error=error)
    active = read_active(overlay, genesis_set)
    if read_next(overlay) is not None:
        return _reverted(
            tx,
            "a validator-set change is already scheduled for the next checkpoint; vote again "
            "once it has taken effect",
        )
    proposals = read_proposals(overlay)
    members = active.public_keys
    voters = tuple(v for v in proposals.voters(change) if v in members)
    if tx.sender in voters:
        return _reverted(tx, f"this validator already voted for this change ({len(voters)} votes)")
    if not voters and len(proposals.items) >= MAX_PENDING_CHANGES:
        return _reverted(tx, f"{MAX_PENDING_CHANGES} validator changes are already pending")
    voters = tuple(sorted((*voters, tx.sender)))
    quorum = quorum_size(active.n)
    vote = Event(
        SYSTEM_ADDRESS,
        "validator_vote",
        (str(change.action), change.name, len(voters), quorum, active.epoch),
    )
    if len(voters) < quorum:
        overlay.set_state(PROPOSALS_KEY, proposals.with_(change, voters).encode())
        return Receipt(tx.hash, ReceiptStatus.SUCCESS, VALIDATOR_CHANGE_GAS, "pending", (vote,))
    overlay.set_state(NEXT_KEY, active.applying(change, height).encode())
    overlay.set_state(PROPOSALS_KEY, None)
    return Receipt(tx.hash, ReceiptStatus.SUCCESS, VALIDATOR_CHANGE_GAS, "scheduled", (vote,))


def end_of_block(
    overlay: StateWriter, height: int, genesis_height: int, checkpoint_interval: int
) -> ValidatorSet | None:
    """After a block's transactions: at a checkpoint height, activate the scheduled set.
    Returns the set that became active (this block ends its epoch), else None."""
    if (height - genesis_height) % checkpoint_interval:
        return None
    scheduled = read_next(overlay)
    if scheduled is None:
        return None
    active = ValidatorSet(scheduled.epoch, height, scheduled.members)
    outgoing = overlay.get_state(ACTIVE_KEY)
    if outgoing is not None:
        overlay.set_state(PREVIOUS_KEY, outgoing)
    overlay.set_state(ACTIVE_KEY, active.encode())
    overlay.set_state(NEXT_KEY, None)
    return active


def known_sets(state: StateReader, genesis_set: ValidatorSet) -> list[ValidatorSet]:
    """The sets a store can name from its current state: genesis, active, and the one the
    active set replaced (what certified the head, whether or not it is a switch block)."""
    sets = [genesis_set]
    for key in (PREVIOUS_KEY, ACTIVE_KEY):
        raw = state.get_state(key)
        if raw is not None:
            sets.append(ValidatorSet.decode(raw))
    return sets


def activated_by(writes: dict[bytes, bytes | None]) -> ValidatorSet | None:
    """The set a block's state writes made active (the block ended an epoch), else None."""
    raw = writes.get(ACTIVE_KEY)
    return None if raw is None else ValidatorSet.decode(raw)
