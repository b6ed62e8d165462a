"""State as execution sees it: a chain of overlays on top of the committed store.

Theory of operation. Committed state lives in the store's flat ``state`` table (fast reads)
and in the authenticated tree (the root and proofs). A block executes on a
:class:`StateOverlay` whose base is either the committed state or the overlay of the
pending block below it (execution happens before the vote, and the primary may pipeline);
the overlay collects the block's writes, which become one state delta for the store and
one batch for the tree. Dropping an overlay discards a proposal that did not commit.

The overlay is also the VM's read-only :class:`contracts.state.Host`.

Never: write to the base, iterate a set, or decode a stored value leniently — a state value
that does not decode is a corrupt store and raises.
"""

from __future__ import annotations

from collections.abc import Mapping

from contracts.state import StateWrites
from ledger.chain.accounts import EMPTY_ACCOUNT, Account, account_key, code_key, storage_key
from ledger.chain.state_access import StateReader


class StateOverlay:
    """Writes layered over a :class:`StateReader`; also the VM's Host."""

    __slots__ = ("_accounts", "_base", "writes")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        #: key -> new value, or None for a deletion; insertion order is execution order.
        self.writes: dict[bytes, bytes | None] = {}
        #: Accounts decoded (or set) here: key -> (the bytes, the account they encode). A
        #: transfer reads its sender twice and writes it twice; without this every read
        #: decodes again. An entry is used only while the key's bytes are the same ones.
        self._accounts: dict[bytes, tuple[bytes, Account]] = {}

    def rebase(self, base: StateReader) -> None:
        """Read through ``base`` from now on: the parent committed, and ``base`` (the store)
        now holds exactly what the parent overlay held, so the parent can be freed."""
        self._base = base

    def get_state(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._base.get_state(key)

    def set_state(self, key: bytes, value: bytes | None) -> None:
        self.writes[key] = value

    def get_account(self, address: bytes) -> Account:
        key = account_key(address)
        raw = self.get_state(key)
        if raw is None:
            return EMPTY_ACCOUNT
        known = self._accounts.get(key)
        if known is not None and known[0] == raw:
            return known[1]
        account = Account.decode(raw)
        self._accounts[key] = (raw, account)
        return account

    def set_account(self, address: bytes, account: Account) -> None:
        key = account_key(address)
        raw = account.encode()
        self.writes[key] = raw
        self._accounts[key] = (raw, account)

    # contracts.state.Host

    def get_code(self, address: bytes) -> bytes | None:
        return self.get_state(code_key(address))

    def get_storage(self, address: bytes, key: bytes) -> bytes | None:
        return self.get_state(storage_key(address, key))

    def get_balance(self, address: bytes) -> int:
        return self.get_account(address).balance

    def apply_vm_writes(self, writes: StateWrites) -> None:
        """Apply a successful VM execution's net writes (see contracts.state conventions)."""
        for address, key, value in writes.storage:
            self.writes[storage_key(address, key)] = value
        for address, balance in writes.balances:
            account = self.get_account(address)
            self.set_account(address, Account(balance, account.nonce))
        for address, code in writes.code:
            self.writes[code_key(address)] = code
            if self.get_state(account_key(address)) is None:
                self.set_account(address, EMPTY_ACCOUNT)

    def delta(self) -> Mapping[bytes, bytes | None]:
        return self.writes
