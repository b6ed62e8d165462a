"""registry: owned key/value entries. The first account to set a key owns it.

The Python twin of registry.qasm: the same methods, events and errors.
Storage: owners (key -> owner address), values (key -> value; storing an empty value
clears it, the owner stays). Keys are at most 127 bytes.
Events: Set(key, owner), OwnershipTransferred(key, new_owner), Deleted(key).
"""

from contracts.lang import Address, Contract, Map, emit, require, revert, sender, view

MAX_KEY_BYTES = 127


class Registry(Contract):
    owners: Map[str, bytes]
    values: Map[str, bytes]

    def set(self, key: str, value: bytes) -> None:
        """Create the entry (the caller becomes its owner) or update it (owner only)."""
        owner = self._owner_of(key)
        if len(owner) == 0:
            self.owners[key] = sender()
        elif owner != sender():
            revert("only the key's owner may change it")
        self.values[key] = value
        emit("Set", key, sender())

    @view
    def get(self, key: str) -> bytes:
        self._owner_of(key)  # refuses an over-long key, as set does
        return self.values[key]

    @view
    def owner(self, key: str) -> bytes:
        """The owner's address, or empty bytes when the key is unclaimed."""
        return self._owner_of(key)

    def transfer_ownership(self, key: str, new_owner: Address) -> None:
        self._require_owner(key)
        self.owners[key] = new_owner
        emit("OwnershipTransferred", key, new_owner)

    def delete(self, key: str) -> None:
        self._require_owner(key)
        del self.owners[key]
        del self.values[key]
        emit("Deleted", key)

    def _owner_of(self, key: str) -> bytes:
        require(len(key.encode()) <= MAX_KEY_BYTES, "keys are at most 127 bytes")
        return self.owners[key]

    def _require_owner(self, key: str) -> None:
        owner = self._owner_of(key)
        require(len(owner) > 0, "no such key")
        require(owner == sender(), "only the key's owner may change it")
