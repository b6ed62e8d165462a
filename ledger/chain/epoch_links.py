"""The chain of validator sets: one link per switch block, what a verifier holding only the
genesis needs to learn the set certifying any later height (docs/CONSENSUS.md §12).

A link for epoch e >= 1 is the switch block E's header and commit certificate (signed by
epoch e-1's set) and the value of ``v a`` in E's state with its proof against E's state
root: the set of epoch e, which certifies heights E+1 up to the next switch block.

A node records a link in the same SQLite transaction as block E (the proof is taken from
the executed block, the tree nodes of older roots are not kept) and serves its links with
every proof; :func:`follow` is the verifier (the light client, state sync offers).

Never: accept a link out of order, a set whose epoch or start height does not match its
switch block, or a certificate from another set than the one before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from consensus.config import epoch_chain_id
from crypto.encoding import DecodeError, as_bytes, as_int, decode_record, encode_record
from crypto.smt_proof import Proof, verify_proof
from ledger.chain.types import BlockHeader, CommitCertificate, InvalidCertificate
from ledger.chain.validators import ACTIVE_KEY, ValidatorSet

#: consensus_meta key prefix of a node's links (``epochs/<epoch>``).
LINK_PREFIX: Final = "epochs/"


class ChainOfSetsError(Exception):
    """A link does not check out; the message says which and why."""


@dataclass(frozen=True, slots=True)
class EpochLink:
    height: int
    header: bytes
    certificate: bytes
    validator_set: bytes
    proof: bytes

    TAG: ClassVar[str] = "epoch-link"
    VERSION: ClassVar[int] = 1

    def key(self, epoch: int) -> str:
        return f"{LINK_PREFIX}{epoch:020d}"

    def encode(self) -> bytes:
        return encode_record(
            self.TAG,
            self.VERSION,
            [self.height, self.header, self.certificate, self.validator_set, self.proof],
        )

    @classmethod
    def decode(cls, raw: bytes) -> EpochLink:
        f = decode_record(raw, cls.TAG, cls.VERSION, 5)
        return cls(
            as_int(f[0], "height"),
            as_bytes(f[1], "header"),
            as_bytes(f[2], "certificate"),
            as_bytes(f[3], "validator_set"),
            as_bytes(f[4], "proof"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "height": self.height,
            "header": self.header.hex(),
            "certificate": self.certificate.hex(),
            "set": self.validator_set.hex(),
            "proof": self.proof.hex(),
        }

    @classmethod
    def from_json(cls, doc: object) -> EpochLink:
        if not isinstance(doc, dict):
            raise ChainOfSetsError("an epoch link must be an object")
        try:
            return cls(
                int(doc["height"]),
                bytes.fromhex(doc["header"]),
                bytes.fromhex(doc["certificate"]),
                bytes.fromhex(doc["set"]),
                bytes.fromhex(doc["proof"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainOfSetsError(f"an epoch link is malformed: {exc}") from None


def make_link(
    header: BlockHeader,
    certificate: CommitCertificate,
    validator_set: bytes,
    prove: Callable[[bytes], Proof],
) -> EpochLink:
    """The link of switch block ``header`` (``prove``: a proof at its state root)."""
    return EpochLink(
        header.height,
        header.raw,
        certificate.encode(),
        validator_set,
        prove(ACTIVE_KEY).encode(),
    )


def stored_links(items: Sequence[tuple[str, bytes]]) -> list[EpochLink]:
    """A store's links (its consensus_meta items), in epoch order."""
    return [EpochLink.decode(v) for k, v in sorted(items) if k.startswith(LINK_PREFIX)]


def follow(
    chain_id: str, genesis_set: ValidatorSet, links: Sequence[EpochLink]
) -> list[ValidatorSet]:
    """The sets from the genesis one, each learnt from its link and checked against the
    set before it. Raises :class:`ChainOfSetsError`."""
    sets = [genesis_set]
    for link in links:
        current = sets[-1]
        where = f"epoch link {current.epoch + 1} (block {link.height})"
        if link.height <= current.start_height:
            raise ChainOfSetsError(f"{where}: not above the start of epoch {current.epoch}")
        try:
            header = BlockHeader.decode(link.header)
            certificate = CommitCertificate.decode(link.certificate)
            proof = Proof.decode(link.proof)
            new = ValidatorSet.decode(link.validator_set)
        except DecodeError as exc:
            raise ChainOfSetsError(f"{where}: does not decode: {exc}") from None
        if header.height != link.height or header.chain_id != chain_id:
            raise ChainOfSetsError(f"{where}: the header is for another block or chain")
        if header.validators_hash != current.hash():
            raise ChainOfSetsError(f"{where}: the header names another certifying set")
        try:
            certificate.verify(
                epoch_chain_id(chain_id, current.epoch),
                current.public_keys,
                height=link.height,
                block_hash=header.block_hash,
            )
        except InvalidCertificate as exc:
            raise ChainOfSetsError(f"{where}: {exc}") from None
        if not verify_proof(header.state_root, ACTIVE_KEY, link.validator_set, proof):
            raise ChainOfSetsError(f"{where}: the set is not proven in the block's state root")
        if new.epoch != current.epoch + 1 or new.start_height != link.height:
            raise ChainOfSetsError(f"{where}: the proven set is not the next epoch from here")
        sets.append(new)
    return sets


def set_for_height(sets: Sequence[ValidatorSet], height: int) -> ValidatorSet:
    """The set certifying ``height``: the last one starting below it."""
    found = sets[0]
    for candidate in sets:
        if candidate.start_height < height:
            found = candidate
    return found
