"""Who signed a commit certificate, by name: the explorer, ``/v1/blocks`` and the
validators' last signed heights.

A certificate's votes name validators by their index in the set that certified the
height: the genesis set, then each epoch's set from the store's epoch links
(ledger/chain/epoch_links.py). Reads the store: call from a worker thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from genesis.document import Genesis
from ledger.chain.epoch_links import set_for_height
from ledger.chain.proofs import chain_of_sets
from ledger.chain.store import Store
from ledger.chain.validators import ValidatorSet

#: How many blocks below the head :func:`recent_signers` looks at, at most.
RECENT_SIGNERS_DEPTH: Final = 256


class SignerNames:
    """Names of certificate signers at any height of one store."""

    def __init__(self, store: Store, genesis: Genesis) -> None:
        self.store = store
        self._genesis_set = ValidatorSet.genesis(genesis)
        self._sets: list[ValidatorSet] = [self._genesis_set]
        self._links = 0

    def set_for(self, height: int) -> ValidatorSet:
        links = chain_of_sets(self.store)
        if len(links) != self._links:  # a new epoch since last time
            self._sets = [self._genesis_set] + [
                ValidatorSet.decode(link.validator_set) for link in links
            ]
            self._links = len(links)
        return set_for_height(self._sets, height)

    def names(self, height: int, indices: Iterable[int]) -> list[str]:
        members = self.set_for(height).members
        return [members[i].name if 0 <= i < len(members) else f"#{i}" for i in indices]


def recent_signers(
    store: Store, signers: SignerNames, wanted: Iterable[str], depth: int = RECENT_SIGNERS_DEPTH
) -> dict[str, int]:
    """The last height each of ``wanted`` signed, from the newest ``depth`` certificates
    (those not found there are left out)."""
    missing = set(wanted)
    found: dict[str, int] = {}
    height = store.head_height
    bottom = max(1, height - depth + 1)  # below a snapshot's base: no certificates
    while missing and height >= bottom:
        certificate = store.get_certificate(height)
        if certificate is not None:
            for name in signers.names(height, (i for i, _ in certificate.votes)):
                if name in missing:
                    missing.discard(name)
                    found[name] = height
        height -= 1
    return found
