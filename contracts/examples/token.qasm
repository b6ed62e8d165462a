; token: a fixed-supply fungible token.
;
; Storage:  "s"              -> total supply (8-byte big-endian)
;           "b" ++ address   -> balance (8-byte big-endian; absent means 0)
; Events:   Transfer(from, to, amount); minting comes from the zero address.

.constructor(supply: u64)
    push "s"
    arg 0
    itob
    sstore
    push "b"
    caller
    concat
    arg 0
    itob
    sstore
    push 0x0000000000000000000000000000000000000000
    caller
    arg 0
    push "Transfer"
    emit 3
    halt

; Move `amount` from the caller to `to`; returns 1. Reverts when the balance is short.
.method transfer(to: address, amount: u64) -> u64
    push "b"
    caller
    concat
    store 0                 ; local 0: the caller's balance key
    load 0
    sload
    btoi
    store 1                 ; local 1: the caller's balance
    load 1
    arg 1
    lt
    jnz insufficient
    load 0
    load 1
    arg 1
    sub
    itob
    sstore                  ; debit first, so a transfer to oneself nets to zero
    push "b"
    arg 0
    concat
    store 2                 ; local 2: the recipient's balance key
    load 2
    load 2
    sload
    btoi
    arg 1
    add
    itob
    sstore
    caller
    arg 0
    arg 1
    push "Transfer"
    emit 3
    push 1
    return
insufficient:
    push "insufficient balance"
    revert

.method balance_of(owner: address) -> u64 readonly
    push "b"
    arg 0
    concat
    sload
    btoi
    return

.method total_supply() -> u64 readonly
    push "s"
    sload
    btoi
    return
