"""Who the peer network links to: the validator set in state, not only the genesis.

Peer links are keyed by a *peer id*: a genesis validator's genesis index, and for a key
outside the genesis a number derived from the key (:func:`peer_id`), the same in every
process, so no registry is shared. The transport's peer table follows
:func:`known_members`: the active set, the scheduled next set, the keys proposed for
addition (so a new validator can follow the chain before its epoch starts) and the set the
active one replaced (so a validator voted out keeps its links while it retires: old
members that have not committed the switch block fetch it from it, and it fetches from
the new set the proof that it may stop, ledger/node/retire.py), each with its committed
``p2p`` address; a member in none of these is dropped (a removed validator at the next
switch after its removal: until then its peers keep dialling it, with backoff).

Never: decide anything about the set (it is executed state), or sign.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from genesis.document import Genesis
from ledger.chain.payloads import SetAction
from ledger.chain.state_access import StateReader
from ledger.chain.validators import (
    ValidatorSet,
    read_active,
    read_next,
    read_proposals,
    read_replaced,
)
from ledger.config import ConfigError, HostPort

#: Ids of keys outside the genesis start here (above any genesis index).
EXTRA_ID_BASE = 1 << 16


class KnownMember(NamedTuple):
    name: str
    public_key: bytes
    #: From state (``p2p`` of the member); None for genesis members (their node config).
    address: HostPort | None


def peer_id(genesis: Genesis, public_key: bytes) -> int:
    """The transport's id of the validator with ``public_key`` (see the module docstring)."""
    index = genesis.validator_index(public_key)
    if index is not None:
        return index
    return EXTRA_ID_BASE + int.from_bytes(hashlib.sha256(public_key).digest()[:6], "big")


class PeerTable(Protocol):
    def update_members(self, members: Iterable[KnownMember]) -> None: ...


class PeerNames(dict[int, str]):
    """Peer id -> validator name; an id not learnt yet reads as ``peer <id>``."""

    def __missing__(self, key: int) -> str:
        return f"peer {key}"


def genesis_names(genesis: Genesis) -> PeerNames:
    return PeerNames(enumerate(v.name for v in genesis.validators))


def _address(text: str) -> HostPort | None:
    if not text:
        return None
    try:
        return HostPort.parse(text, "p2p")
    except ConfigError:
        return None


def known_members(state: StateReader, genesis_set: ValidatorSet) -> list[KnownMember]:
    """The active set, then the new keys of the scheduled set, of the proposed additions
    and of the set the active one replaced."""
    seen: dict[bytes, KnownMember] = {}
    sets = [read_active(state, genesis_set)]
    scheduled = read_next(state)
    if scheduled is not None:
        sets.append(scheduled)
    for validator_set in sets:
        for member in validator_set.members:
            if member.public_key not in seen:
                seen[member.public_key] = KnownMember(
                    member.name, member.public_key, _address(member.p2p)
                )
    for change, _ in read_proposals(state).items:
        if change.action is SetAction.ADD and change.public_key not in seen:
            seen[change.public_key] = KnownMember(
                change.name, change.public_key, _address(change.p2p)
            )
    replaced = read_replaced(state, genesis_set)
    for member in replaced.members if replaced is not None else ():
        if member.public_key not in seen:
            seen[member.public_key] = KnownMember(
                member.name, member.public_key, _address(member.p2p)
            )
    return list(seen.values())


def refresh_peers(
    net: PeerTable | None,
    state: StateReader,
    genesis_set: ValidatorSet,
    names: PeerNames,
    genesis: Genesis,
) -> None:
    """Point the peer table (and the names the logs use) at the set in ``state``."""
    members = known_members(state, genesis_set)
    for member in members:
        names[peer_id(genesis, member.public_key)] = member.name
    if net is not None:
        net.update_members(members)
