"""lock: named leases with an expiry in blocks (a distributed lock).

The Python twin of lock.qasm: the same methods, events and errors.
Storage: holders (name -> holder address), expiries (name -> expiry height); a lock is
held while the block height is below its expiry.
Events: Acquired(name, holder, expiry), Released(name, holder).
"""

from contracts.lang import Contract, Map, block_height, emit, require, sender, view

MAX_TTL_BLOCKS = 4294967295


class Lock(Contract):
    holders: Map[str, bytes]
    expiries: Map[str, int]

    def acquire(self, name: str, ttl_blocks: int) -> int:
        """Take (or renew) the lock for ttl_blocks blocks; returns the expiry height.
        Reverts while another account holds an unexpired lease."""
        require(
            ttl_blocks >= 1 and ttl_blocks <= MAX_TTL_BLOCKS,
            "ttl_blocks must be between 1 and 4294967295",
        )
        holder = self.holders[name]
        if len(holder) > 0 and holder != sender():
            require(block_height() >= self.expiries[name], "lock is held by another account")
        expiry = block_height() + ttl_blocks
        self.holders[name] = sender()
        self.expiries[name] = expiry
        emit("Acquired", name, sender(), expiry)
        return expiry

    def release(self, name: str) -> None:
        """Give the lock up; only its holder may (an expired lease too)."""
        holder = self.holders[name]
        require(len(holder) > 0, "lock is not held")
        require(holder == sender(), "only the holder may release the lock")
        del self.holders[name]
        del self.expiries[name]
        emit("Released", name, sender())

    @view
    def holder(self, name: str) -> bytes:
        """The holder's address, or empty bytes if the lock is free or its lease expired."""
        return self._live_holder(name)

    @view
    def expiry(self, name: str) -> int:
        """The expiry height of a live lease, or 0."""
        if len(self._live_holder(name)) == 0:
            return 0
        return self.expiries[name]

    def _live_holder(self, name: str) -> bytes:
        holder = self.holders[name]
        if len(holder) > 0 and block_height() < self.expiries[name]:
            return holder
        return b""
