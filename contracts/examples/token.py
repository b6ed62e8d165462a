"""token: a fixed-supply fungible token.

The Python twin of token.qasm: the same methods, events and errors.
Storage: supply, then balances (absent means 0).
Events: Transfer(from, to, amount); minting comes from the zero address.
"""

from contracts.lang import Address, Contract, Map, emit, require, sender, view


class Token(Contract):
    supply: int
    balances: Map[Address, int]

    def __init__(self, supply: int) -> None:
        self.supply = supply
        self.balances[sender()] = supply
        emit("Transfer", bytes(20), sender(), supply)

    def transfer(self, to: Address, amount: int) -> int:
        """Move `amount` from the caller to `to`; returns 1."""
        require(self.balances[sender()] >= amount, "insufficient balance")
        self.balances[sender()] -= amount  # debit first: a transfer to oneself nets to zero
        self.balances[to] += amount
        emit("Transfer", sender(), to, amount)
        return 1

    @view
    def balance_of(self, owner: Address) -> int:
        return self.balances[owner]

    @view
    def total_supply(self) -> int:
        return self.supply
