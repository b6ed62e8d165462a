"""Build genesis documents in code: what ``quorum genesis new`` and ``testnet init`` use.

The builder only assembles a :class:`~genesis.document.Genesis`; the constructor validates
it, so a bad argument raises :class:`~genesis.document.GenesisError` naming the field. It
reads the wall clock when no ``genesis_time`` is given: that is fine here, the builder runs
once when a chain is created and never inside consensus.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Final

from genesis.document import (
    Account,
    ConsensusParams,
    Contract,
    Genesis,
    Permissions,
    Validator,
)

DEFAULT_CHAIN_ID: Final = "quorum-testnet"


def default_chain_id() -> str:
    """The chain id testnets get when none is given."""
    return DEFAULT_CHAIN_ID


def now_genesis_time() -> str:
    """The current UTC time, truncated to seconds, in the genesis time format."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_genesis(
    chain_id: str,
    validators: Sequence[tuple[str, bytes]],
    accounts: Sequence[tuple[bytes, int]] = (),
    *,
    genesis_time: str | None = None,
    consensus: ConsensusParams | None = None,
    initial_height: int = 1,
    permissions: Permissions | None = None,
    contracts: Sequence[Contract] = (),
) -> Genesis:
    """A validated genesis document.

    ``validators`` are ``(name, public_key)`` pairs in primary order; ``accounts`` are
    ``(address, balance)`` pairs. ``genesis_time`` defaults to now (UTC, whole seconds),
    ``consensus`` to the default parameters, ``permissions`` to "anyone may submit and
    deploy, nobody administers". Raises :class:`~genesis.document.GenesisError`.
    """
    return Genesis(
        chain_id=chain_id,
        genesis_time=now_genesis_time() if genesis_time is None else genesis_time,
        initial_height=initial_height,
        consensus=ConsensusParams() if consensus is None else consensus,
        validators=tuple(Validator(name, key) for name, key in validators),
        accounts=tuple(Account(address, balance) for address, balance in accounts),
        contracts=tuple(contracts),
        permissions=Permissions() if permissions is None else permissions,
    )
