"""vote: a k-of-m quorum of members that approves and executes proposals.

The Python twin of vote.qasm: the same methods, events and errors. A proposal is either
a value transfer from this contract (propose_transfer) or a call of a method without
arguments on another contract, sending value (propose_call). The proposer approves it at
once; it executes when the k-th distinct member approves. If the action fails, the
approval reverts with a reason and can be retried later.
Events: Proposed(id, proposer), Approved(id, member, approvals), Executed(id).
"""

from contracts.lang import (
    Address,
    Contract,
    Map,
    balance,
    call,
    emit,
    payable,
    require,
    self_address,
    sender,
    transfer,
    view,
)


class Vote(Contract):
    k: int
    count: int
    members: Map[Address, bool]
    targets: Map[int, bytes]
    amounts: Map[int, int]
    methods: Map[int, str]  # empty for a transfer
    approval_count: Map[int, int]
    done: Map[int, bool]
    approved: Map[tuple[int, Address], bool]

    def __init__(self, k: int, *members: Address) -> None:
        require(k >= 1 and k <= len(members), "k must be between 1 and the number of members")
        self.k = k
        for member in members:
            require(not self.members[member], "duplicate member")
            self.members[member] = True

    @payable
    def deposit(self) -> None:
        pass

    def propose_transfer(self, to: Address, amount: int) -> int:
        """Propose sending `amount` of this contract's balance to `to`; returns its id."""
        self._require_member()
        proposal = self._new_proposal(to, amount)
        return self._proposed(proposal)

    def propose_call(self, target: Address, method: str, value: int) -> int:
        """Propose calling `method`() on `target` with `value`; returns the proposal id."""
        self._require_member()
        require(len(method.encode()) > 0, "method must not be empty")
        proposal = self._new_proposal(target, value)
        self.methods[proposal] = method
        return self._proposed(proposal)

    def approve(self, id: int) -> int:
        """Approve proposal `id`; returns its number of approvals."""
        self._require_member()
        require(id < self.count, "no such proposal")
        return self._approve_as_caller(id)

    @view
    def threshold(self) -> int:
        return self.k

    @view
    def is_member(self, who: Address) -> bool:
        return self.members[who]

    @view
    def proposal_count(self) -> int:
        return self.count

    @view
    def approvals(self, id: int) -> int:
        return self.approval_count[id]

    @view
    def executed(self, id: int) -> bool:
        return self.done[id]

    def _require_member(self) -> None:
        require(self.members[sender()], "only members may do this")

    def _new_proposal(self, target: Address, amount: int) -> int:
        proposal = self.count
        self.count = proposal + 1
        self.targets[proposal] = target
        self.amounts[proposal] = amount
        return proposal

    def _proposed(self, proposal: int) -> int:
        emit("Proposed", proposal, sender())
        self._approve_as_caller(proposal)
        return proposal

    def _approve_as_caller(self, proposal: int) -> int:
        """Record the caller's approval; execute at the threshold."""
        require(not self.done[proposal], "proposal already executed")
        require(not self.approved[proposal, sender()], "already approved")
        self.approved[proposal, sender()] = True
        approvals = self.approval_count[proposal] + 1
        self.approval_count[proposal] = approvals
        emit("Approved", proposal, sender(), approvals)
        if approvals >= self.k:
            self._execute(proposal)
        return approvals

    def _execute(self, proposal: int) -> None:
        self.done[proposal] = True  # before acting, so a re-entrant approve fails
        target = Address(self.targets[proposal])
        amount = self.amounts[proposal]
        method = self.methods[proposal]
        if len(method.encode()) == 0:
            require(
                balance(self_address()) >= amount,
                "the contract's balance is too small for the transfer",
            )
            transfer(target, amount)
        else:
            require(call(target, method, value=amount), "the proposal's call failed")
        emit("Executed", proposal)
