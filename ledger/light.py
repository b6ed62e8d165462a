"""The light client: checks what one untrusted node answers against the genesis alone.

Theory of operation. A :class:`LightClient` holds the genesis document: the chain id, the
validators and their keys, the initial height and (computed here, never asked for) the
genesis state root. Every read with a proof is checked bottom-up:

1. the header decodes canonically and names this chain;
2. its commit certificate verifies: for this height and this header's hash, from distinct
   validators of the set (in increasing index order), at least a quorum of them, each
   Ed25519 signature over the COMMIT body (``CommitCertificate.verify``);
3. each state value is proved against the header's ``state_root`` (membership, or
   non-membership for an absent key); a transaction against ``tx_root`` and its receipt
   against ``receipts_root`` (RFC 6962 audit paths) at the position claimed;
4. the answer handed back is decoded from the proven bytes, not from the node's JSON fields
   (which are compared, and a difference is itself a failure).

Every failure raises :class:`VerificationError` naming what failed ("state proof for
account 0a1b... does not match the state root of block 123"). After validator-set changes
a proof carries the chain of sets (``epochs``: each switch block's header, certificate and
proven ``v a``, ledger/chain/epoch_links.py); the client follows it from the genesis set
and checks each certificate with the set of its height's epoch, under that epoch's
signing domain.

Never: trust a field it did not prove, accept a certificate for another height or hash,
or answer "verified" for something it could not check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from consensus.config import epoch_chain_id
from crypto.encoding import DecodeError
from crypto.merkle import merkle_root, verify_inclusion
from crypto.smt_proof import Proof, verify_proof
from genesis.document import Genesis
from ledger.chain.accounts import (
    EMPTY_ACCOUNT,
    Account,
    account_key,
    code_key,
    genesis_state,
    storage_key,
)
from ledger.chain.epoch_links import ChainOfSetsError, EpochLink, follow, set_for_height
from ledger.chain.roles import LISTING_KEYS, RoleTable
from ledger.chain.state_tree import StateTree
from ledger.chain.state_tree_nodes import MemoryNodeStore
from ledger.chain.types import (
    BlockHeader,
    CommitCertificate,
    InvalidCertificate,
    Receipt,
    Transaction,
)
from ledger.chain.validators import ValidatorSet


class VerificationError(Exception):
    """A node's answer does not check out against the genesis; the message says what."""


@dataclass(frozen=True, slots=True)
class VerifiedHead:
    """A header whose commit certificate verified (or the genesis, with no header)."""

    height: int
    state_root: bytes
    header: BlockHeader | None


@dataclass(frozen=True, slots=True)
class VerifiedTransaction:
    transaction: Transaction
    receipt: Receipt
    height: int
    position: int
    header: BlockHeader


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise VerificationError(f"{what}: expected a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise VerificationError(f"{what}: not valid hex") from None


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VerificationError(f"{what}: expected a non-negative integer")
    return value


class LightClient:
    """Verifies certificates and proofs against one genesis."""

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.validators = tuple(v.public_key for v in genesis.validators)
        self.genesis_height = genesis.initial_height - 1
        #: The sets learnt so far, from the genesis one (each verified by the one before).
        self.sets: list[ValidatorSet] = [ValidatorSet.genesis(genesis)]

    def learn_epochs(self, links: Any) -> None:
        """Follow a proof's chain of sets (absent: nothing to learn)."""
        if links is None:
            return
        if not isinstance(links, list):
            raise VerificationError("epochs: expected a list")
        try:
            parsed = [EpochLink.from_json(link) for link in links]
        except ChainOfSetsError as exc:
            raise VerificationError(f"the chain of validator sets does not verify: {exc}") from None
        self.learn_links(parsed)

    def learn_links(self, links: Sequence[EpochLink]) -> None:
        """Follow a chain of sets from the genesis set (raises :class:`VerificationError`);
        the longest chain that verified is the one kept."""
        try:
            sets = follow(self.chain_id, self.sets[0], links)
        except ChainOfSetsError as exc:
            raise VerificationError(f"the chain of validator sets does not verify: {exc}") from None
        if len(sets) > len(self.sets):
            self.sets = sets

    @cached_property
    def genesis_state_root(self) -> bytes:
        return StateTree.empty(MemoryNodeStore()).apply(genesis_state(self.genesis)).new_root

    # ------------------------------------------------------------------ headers

    def verify_header(
        self, raw_header: bytes, raw_certificate: bytes, height: int, epochs: Any = None
    ) -> BlockHeader:
        """The header of block ``height``, if its commit certificate verifies (by the set of
        its epoch, learnt from ``epochs``, the chain of sets, or earlier)."""
        self.learn_epochs(epochs)
        certifying = set_for_height(self.sets, height)
        try:
            header = BlockHeader.decode(raw_header)
        except DecodeError as exc:
            raise VerificationError(f"header of block {height} does not decode: {exc}") from None
        if header.raw != raw_header:
            raise VerificationError(f"header of block {height} is not in canonical form")
        if header.height != height:
            raise VerificationError(f"the header is for block {header.height}, not {height}")
        if header.chain_id != self.chain_id:
            raise VerificationError(f"block {height} is for chain {header.chain_id!r}")
        try:
            certificate = CommitCertificate.decode(raw_certificate)
            certificate.verify(
                epoch_chain_id(self.chain_id, certifying.epoch),
                certifying.public_keys,
                height=height,
                block_hash=header.block_hash,
            )
        except DecodeError as exc:
            raise VerificationError(
                f"commit certificate of block {height} does not decode: {exc}"
            ) from None
        except InvalidCertificate as exc:
            raise VerificationError(f"commit certificate of block {height}: {exc}") from None
        return header

    def verify_head(self, doc: Mapping[str, Any]) -> VerifiedHead:
        """The height, header and certificate a proof is anchored to."""
        height = _int(doc.get("height"), "proof.height")
        if doc.get("header") is None:
            if height != self.genesis_height:
                raise VerificationError(f"no header given for block {height}")
            return VerifiedHead(height, self.genesis_state_root, None)
        if height <= self.genesis_height:
            raise VerificationError(f"height {height} is not above the genesis")
        header = self.verify_header(
            _hex(doc.get("header"), "proof.header"),
            _hex(doc.get("certificate"), "proof.certificate"),
            height,
            doc.get("epochs"),
        )
        return VerifiedHead(height, header.state_root, header)

    # ------------------------------------------------------------------ state

    def verify_state(
        self, doc: Mapping[str, Any], keys: Sequence[bytes], what: str = "state"
    ) -> tuple[VerifiedHead, dict[bytes, bytes | None]]:
        """The proven values of ``keys`` (None: proven absent) and the head they are at."""
        head = self.verify_head(doc)
        reads = doc.get("state")
        if not isinstance(reads, list):
            raise VerificationError("proof.state: expected a list")
        proven: dict[bytes, bytes | None] = {}
        for i, read in enumerate(reads):
            if not isinstance(read, dict):
                raise VerificationError(f"proof.state[{i}]: expected an object")
            key = _hex(read.get("key"), f"proof.state[{i}].key")
            value = None if read.get("value") is None else _hex(read["value"], "value")
            try:
                proof = Proof.from_hex(str(read.get("proof")))
            except (DecodeError, ValueError):
                raise VerificationError(f"proof.state[{i}].proof does not decode") from None
            if not verify_proof(head.state_root, key, value, proof):
                raise VerificationError(
                    f"{what} proof for key {key.hex()[:24]} does not match the state root of "
                    f"block {head.height}"
                )
            proven[key] = value
        missing = [k for k in keys if k not in proven]
        if missing:
            raise VerificationError(f"no proof for key {missing[0].hex()[:24]}")
        return head, proven

    def verify_account(
        self, address: bytes, doc: Mapping[str, Any]
    ) -> tuple[VerifiedHead, Account, bool]:
        """The account (and whether code lives at it) proven from a ``?proof=true`` answer;
        the node's own JSON fields must agree with the proven values."""
        proof = doc.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("the node sent no proof")
        head, values = self.verify_state(
            proof, [account_key(address), code_key(address)], f"account {address.hex()}"
        )
        raw = values[account_key(address)]
        try:
            account = EMPTY_ACCOUNT if raw is None else Account.decode(raw)
        except DecodeError:
            raise VerificationError("the proven account value does not decode") from None
        is_contract = values[code_key(address)] is not None
        claimed = (doc.get("balance"), doc.get("nonce"), doc.get("contract", is_contract))
        if claimed != (account.balance, account.nonce, is_contract):
            raise VerificationError(
                f"the node's account fields {claimed} differ from the proven "
                f"{(account.balance, account.nonce, is_contract)} at block {head.height}"
            )
        return head, account, is_contract

    def verify_permissions(self, doc: Mapping[str, Any]) -> tuple[VerifiedHead, RoleTable]:
        """The client roles (``/v1/permissions?proof=true``): the policy, every role's
        holders and the pending changes, each one state value proven at a certified height
        (so the listing is complete, not just true). The node's JSON must agree."""
        proof = doc.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("the node sent no proof")
        head, values = self.verify_state(proof, list(LISTING_KEYS), "permissions")
        try:
            table = RoleTable.from_values(values)
        except DecodeError as exc:
            raise VerificationError(f"the proven roles do not decode: {exc}") from None
        mine = table.to_json()
        theirs = {k: doc.get(k) for k in mine}
        if theirs != mine or doc.get("height") != head.height:
            raise VerificationError(
                f"the node's permissions differ from the ones proven at block {head.height}"
            )
        return head, table

    # ------------------------------------------------------------------ transactions

    def verify_transaction(self, tx_hash: bytes, doc: Mapping[str, Any]) -> VerifiedTransaction:
        """A committed transaction and its receipt, proven included in a certified block."""
        proof = doc.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("the node sent no inclusion proof")
        try:
            tx = Transaction.decode(_hex(doc.get("raw"), "raw"))
        except DecodeError as exc:
            raise VerificationError(f"the transaction does not decode: {exc}") from None
        if tx.hash != tx_hash:
            raise VerificationError("the transaction sent hashes to another hash than asked")
        height = _int(proof.get("height"), "proof.height")
        position = _int(proof.get("position"), "proof.position")
        size = _int(proof.get("tx_count"), "proof.tx_count")
        header = self.verify_header(
            _hex(proof.get("header"), "proof.header"),
            _hex(proof.get("certificate"), "proof.certificate"),
            height,
            proof.get("epochs"),
        )
        if size != header.tx_count:
            raise VerificationError(
                f"block {height} has {header.tx_count} transactions, not {size}"
            )
        tx_path = [_hex(p, "proof.tx_path") for p in proof.get("tx_path") or []]
        if not verify_inclusion(tx.hash, position, size, tx_path, header.tx_root):
            raise VerificationError(
                f"inclusion proof of {tx_hash.hex()[:16]} does not match the tx_root of block "
                f"{height}"
            )
        raw_receipt = _hex(proof.get("receipt"), "proof.receipt")
        receipt_path = [_hex(p, "proof.receipt_path") for p in proof.get("receipt_path") or []]
        if not verify_inclusion(raw_receipt, position, size, receipt_path, header.receipts_root):
            raise VerificationError(
                f"the receipt does not match the receipts_root of block {height}"
            )
        try:
            receipt = Receipt.decode(raw_receipt)
        except DecodeError:
            raise VerificationError("the proven receipt does not decode") from None
        if receipt.tx_hash != tx_hash:
            raise VerificationError("the proven receipt is another transaction's")
        if doc.get("height") != height:
            raise VerificationError(
                f"the node says height {doc.get('height')}, the proof block {height}"
            )
        return VerifiedTransaction(tx, receipt, height, position, header)

    # ------------------------------------------------------------------ blocks and storage

    def verify_block(self, doc: Mapping[str, Any]) -> tuple[BlockHeader, list[bytes]]:
        """A block answer (``/v1/blocks/{h}``): its header by its certificate, and the list
        of transaction hashes by the header's tx_root."""
        height = _int(doc.get("height"), "height")
        if doc.get("certificate_raw") is None:
            raise VerificationError(f"block {height} came without its commit certificate")
        header = self.verify_header(
            _hex(doc.get("header_raw"), "header_raw"),
            _hex(doc.get("certificate_raw"), "certificate_raw"),
            height,
            doc.get("epochs"),
        )
        if doc.get("hash") != header.block_hash.hex():
            raise VerificationError(f"the node's hash for block {height} is not its header's")
        listed = doc.get("transactions")
        if not isinstance(listed, list):
            raise VerificationError("transactions: expected a list")
        hashes = [_hex(h, "transactions[]") for h in listed]
        if len(hashes) != header.tx_count or merkle_root(hashes) != header.tx_root:
            raise VerificationError(
                f"the transactions listed do not match block {height}'s tx_root"
            )
        return header, hashes

    def verify_storage(
        self, address: bytes, key: bytes, doc: Mapping[str, Any]
    ) -> tuple[VerifiedHead, bytes | None]:
        """One contract storage slot (``/v1/contracts/{a}/storage/{k}``), proven."""
        proof = doc.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("the node sent no proof")
        slot = storage_key(address, key)
        head, values = self.verify_state(proof, [slot], f"storage of {address.hex()}")
        value = values[slot]
        claimed = doc.get("value")
        if claimed != (None if value is None else value.hex()):
            raise VerificationError(
                f"the node's value for that slot differs from the proven one at block {head.height}"
            )
        return head, value

    # ------------------------------------------------------------------ contract queries

    def verify_query(
        self, address: bytes, method: str, args: Sequence[str], doc: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A read-only contract call, run again here on the proven state it read: the
        result returned is this client's own, and the node's must agree with it."""
        from contracts.abi import AbiError, parse_cli_args
        from contracts.container import ContainerError, parse_container
        from ledger.chain.execute import query_contract
        from ledger.render import abi_value

        proof = doc.get("proof")
        if not isinstance(proof, dict):
            raise VerificationError("the node sent no proofs of what the query read")
        listed = [_hex(r.get("key"), "proof.state[].key") for r in proof.get("state") or []]
        head, values = self.verify_state(proof, listed, f"query of {address.hex()}")
        tip = _ProvenTip(head, values, self.genesis)
        try:
            code = tip.get_state(code_key(address))
            if code is None:
                raise VerificationError(f"proven: no contract at {address.hex()}")
            method_abi = parse_container(code).abi.method(method)
            if method_abi is None:
                raise VerificationError(f"proven: the contract has no method {method!r}")
            values_in = parse_cli_args(method_abi, list(args))
            result = query_contract(tip, address, method, values_in)
        except (AbiError, ContainerError) as exc:
            raise VerificationError(f"cannot run the query here: {exc}") from None
        mine = {
            "status": result.status.label,
            "return": abi_value(result.return_value),
            "gas_used": result.gas_used,
            "error": result.error,
            "height": head.height,
        }
        theirs = {k: doc.get(k) for k in mine}
        if theirs != mine:
            raise VerificationError(
                f"the node's query result {theirs} differs from running it on the proven state "
                f"of block {head.height}: {mine}"
            )
        return mine


class _ProvenTip:
    """Committed state known only through proofs: reading any other key is an error."""

    def __init__(
        self, head: VerifiedHead, values: Mapping[bytes, bytes | None], genesis: Genesis
    ) -> None:
        self.height = head.height
        header = head.header
        self.block_hash = genesis.hash() if header is None else header.block_hash
        self.timestamp_ms = genesis.genesis_time_ms if header is None else header.timestamp_ms
        self.state_root = head.state_root
        self.nodes = MemoryNodeStore()
        self._values = values

    def get_state(self, key: bytes) -> bytes | None:
        if key not in self._values:
            raise VerificationError(
                f"the query read state key {key.hex()[:24]}, which the node did not prove"
            )
        return self._values[key]
