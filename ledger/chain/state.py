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
    """Writes layered over a :class:`StateReader`; also the VM's Host.

    Accounts are kept decoded: a block of transfers reads and writes the same few
    accounts thousands of times, so each is decoded once (on its first read) and encoded
    once (when :attr:`writes` is read), not on every access. ``writes`` stays the one
    truth the tree, the store and the epoch rule read: a key's position in it is where
    the block first wrote it, whatever the encoding's timing.
    """

    __slots__ = ("_accounts", "_base", "_dirty", "_writes")

    def __init__(self, base: StateReader) -> None:
        self._base = base
        #: key -> new value, or None for a deletion; insertion order is execution order.
        #: An account key in ``_dirty`` holds a stale value until :meth:`_flush`.
        self._writes: dict[bytes, bytes | None] = {}
        #: account key -> the account it holds now (read through, or written here).
        self._accounts: dict[bytes, Account] = {}
        #: account keys written since the last flush, whose bytes are not encoded yet.
        self._dirty: dict[bytes, None] = {}

    @property
    def writes(self) -> dict[bytes, bytes | None]:
        """Every write of this overlay, encoded (read-only for callers)."""
        if self._dirty:
            self._flush()
        return self._writes

    def _flush(self) -> None:
        accounts, writes = self._accounts, self._writes
        for key in self._dirty:
            writes[key] = accounts[key].encode()
        self._dirty.clear()

    def rebase(self, base: StateReader) -> None:
        """Read through ``base`` from now on: the parent committed, and ``base`` (the store)
        now holds exactly what the parent overlay held, so the parent can be freed."""
        self._base = base

    def get_state(self, key: bytes) -> bytes | None:
        if key in self._writes:
            if key in self._dirty:
                self._flush()
            return self._writes[key]
        return self._base.get_state(key)

    def set_state(self, key: bytes, value: bytes | None) -> None:
        self._writes[key] = value
        if key in self._accounts:
            del self._accounts[key]
            self._dirty.pop(key, None)

    def get_account(self, address: bytes) -> Account:
        key = account_key(address)
        account = self._accounts.get(key)
        if account is None:
            raw = self.get_state(key)
            account = EMPTY_ACCOUNT if raw is None else Account.decode(raw)
            self._accounts[key] = account
        return account

    def set_account(self, address: bytes, account: Account) -> None:
        key = account_key(address)
        if key not in self._writes:
            self._writes[key] = None  # holds the key's place; encoded by _flush
        self._accounts[key] = account
        self._dirty[key] = None

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
            self.set_state(storage_key(address, key), value)
        for address, balance in writes.balances:
            account = self.get_account(address)
            self.set_account(address, Account(balance, account.nonce))
        for address, code in writes.code:
            self.set_state(code_key(address), code)
            if self.get_state(account_key(address)) is None:
                self.set_account(address, EMPTY_ACCOUNT)

    def delta(self) -> Mapping[bytes, bytes | None]:
        return self.writes
