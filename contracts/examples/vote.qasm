; vote: a k-of-m quorum of members that approves and executes proposals.
;
; A proposal is either a value transfer from this contract (propose_transfer) or a call
; of a method without arguments on another contract, sending value (propose_call). The
; proposer approves it at once; it executes when the k-th distinct member approves.
; If the action fails, the approval reverts with a reason and can be retried later.
;
; Storage:  "k" -> threshold k (8 bytes); "n" -> number of proposals (8 bytes)
;           "m" ++ address -> 0x01 for a member
;           "p" ++ id8 ++ "t" / "a" / "f" / "c" / "x" -> target, amount, method ("" for a
;               transfer), approvals (8 bytes), 0x01 once executed
;           "v" ++ id8 ++ member -> 0x01 once that member approved
;           (id8 is the proposal id as 8 bytes, big-endian; ids count from 0)
; Events:   Proposed(id, proposer), Approved(id, member, approvals), Executed(id)

.constructor(k: u64, members: address...)
    nargs
    push 1
    sub
    store 0                 ; local 0: m, the number of members
    arg 0
    jz bad_k
    arg 0
    load 0
    gt
    jnz bad_k
    push "k"
    arg 0
    itob
    sstore
    push 1
    store 1                 ; local 1: argument index
members:
    load 1
    nargs
    ge
    jnz members_done
    push "m"
    load 1
    argx
    concat
    store 2
    load 2
    sload
    len
    jnz duplicate
    load 2
    push 0x01
    sstore
    load 1
    push 1
    add
    store 1
    jump members
members_done:
    halt
bad_k:
    push "k must be between 1 and the number of members"
    revert
duplicate:
    push "duplicate member"
    revert

.method deposit() payable
    halt

; Propose sending `amount` of this contract's balance to `to`; returns the proposal id.
.method propose_transfer(to: address, amount: u64) -> u64
    callsub require_member
    callsub new_proposal
    store 0
    push "p"
    load 0
    concat
    push "t"
    concat
    arg 0
    sstore
    push "p"
    load 0
    concat
    push "a"
    concat
    arg 1
    itob
    sstore
    load 0
    callsub proposed
    return

; Propose calling `method`() on `target` with `value`; returns the proposal id.
.method propose_call(target: address, method: str, value: u64) -> u64
    callsub require_member
    arg 1
    len
    jz empty_method
    callsub new_proposal
    store 0
    push "p"
    load 0
    concat
    push "t"
    concat
    arg 0
    sstore
    push "p"
    load 0
    concat
    push "f"
    concat
    arg 1
    sstore
    push "p"
    load 0
    concat
    push "a"
    concat
    arg 2
    itob
    sstore
    load 0
    callsub proposed
    return
empty_method:
    push "method must not be empty"
    revert

; Approve proposal `id`; returns its number of approvals.
.method approve(id: u64) -> u64
    callsub require_member
    arg 0
    push "n"
    sload
    btoi
    ge
    jnz no_such_proposal
    arg 0
    itob
    callsub approve_as_caller
    return
no_such_proposal:
    push "no such proposal"
    revert

.method threshold() -> u64 readonly
    push "k"
    sload
    btoi
    return

.method is_member(who: address) -> u64 readonly
    push "m"
    arg 0
    concat
    sload
    len
    return

.method proposal_count() -> u64 readonly
    push "n"
    sload
    btoi
    return

.method approvals(id: u64) -> u64 readonly
    push "p"
    arg 0
    itob
    concat
    push "c"
    concat
    sload
    btoi
    return

.method executed(id: u64) -> u64 readonly
    push "p"
    arg 0
    itob
    concat
    push "x"
    concat
    sload
    len
    return

; ( -- ) revert unless the caller is a member
require_member:
    push "m"
    caller
    concat
    sload
    len
    jz not_member
    retsub
not_member:
    push "only members may do this"
    revert

; ( -- id8 ) allocate the next proposal id
new_proposal:
    push "n"
    sload
    btoi
    store 0
    push "n"
    load 0
    push 1
    add
    itob
    sstore
    load 0
    itob
    retsub

; ( id8 -- id ) announce a new proposal and record the proposer's approval
proposed:
    store 0
    load 0
    btoi
    caller
    push "Proposed"
    emit 2
    load 0
    callsub approve_as_caller
    pop
    load 0
    btoi
    retsub

; ( id8 -- approvals ) record the caller's approval; execute at the threshold
approve_as_caller:
    store 0
    push "p"
    load 0
    concat
    push "x"
    concat
    sload
    len
    jnz already_executed
    push "v"
    load 0
    concat
    caller
    concat
    store 1
    load 1
    sload
    len
    jnz already_approved
    load 1
    push 0x01
    sstore
    push "p"
    load 0
    concat
    push "c"
    concat
    store 2
    load 2
    sload
    btoi
    push 1
    add
    store 3                 ; local 3: approvals including this one
    load 2
    load 3
    itob
    sstore
    load 0
    btoi
    caller
    load 3
    push "Approved"
    emit 3
    load 3
    push "k"
    sload
    btoi
    lt
    jnz approve_done
    load 0
    callsub execute
approve_done:
    load 3
    retsub
already_executed:
    push "proposal already executed"
    revert
already_approved:
    push "already approved"
    revert

; ( id8 -- ) carry out a proposal's action
execute:
    store 0
    push "p"
    load 0
    concat
    push "x"
    concat
    push 0x01
    sstore                  ; mark executed before acting, so a re-entrant approve fails
    push "p"
    load 0
    concat
    push "f"
    concat
    sload
    store 1                 ; local 1: method, empty for a transfer
    push "p"
    load 0
    concat
    push "t"
    concat
    sload
    store 2                 ; local 2: target
    push "p"
    load 0
    concat
    push "a"
    concat
    sload
    btoi
    store 3                 ; local 3: amount or value
    load 1
    len
    jnz execute_call
    self
    balance
    load 3
    lt
    jnz too_poor
    load 2
    load 3
    transfer
    jump executed
execute_call:
    load 2
    load 1
    load 3
    call 0
    jz call_failed
    pop
executed:
    load 0
    btoi
    push "Executed"
    emit 1
    retsub
too_poor:
    push "the contract's balance is too small for the transfer"
    revert
call_failed:
    push "the proposal's call failed"
    revert
