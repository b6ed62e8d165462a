; lock: named leases with an expiry in blocks (a distributed lock).
;
; Storage:  "h" ++ name -> holder address
;           "e" ++ name -> expiry height (8 bytes); the lock is held while height < expiry
; Events:   Acquired(name, holder, expiry), Released(name, holder)

; Take (or renew) the lock for ttl_blocks blocks; returns the expiry height.
; Reverts while another account holds an unexpired lease.
.method acquire(name: str, ttl_blocks: u64) -> u64
    arg 1
    jz bad_ttl
    arg 1
    push 4294967295
    gt
    jnz bad_ttl
    push "h"
    arg 0
    concat
    store 0                 ; local 0: holder key
    push "e"
    arg 0
    concat
    store 1                 ; local 1: expiry key
    load 0
    sload
    store 2                 ; local 2: the current holder, empty if none
    load 2
    len
    jz take                 ; nobody holds it
    load 2
    caller
    eq
    jnz take                ; the holder renews
    height
    load 1
    sload
    btoi
    lt
    jnz held                ; height < expiry: still held by someone else
take:
    height
    arg 1
    add
    store 3                 ; local 3: the new expiry
    load 0
    caller
    sstore
    load 1
    load 3
    itob
    sstore
    arg 0
    caller
    load 3
    push "Acquired"
    emit 3
    load 3
    return
bad_ttl:
    push "ttl_blocks must be between 1 and 4294967295"
    revert
held:
    push "lock is held by another account"
    revert

; Give the lock up; only its holder may (an expired lease too).
.method release(name: str)
    push "h"
    arg 0
    concat
    store 0
    load 0
    sload
    store 1                 ; local 1: the holder
    load 1
    len
    jz not_held
    load 1
    caller
    ne
    jnz not_holder
    load 0
    sdelete
    push "e"
    arg 0
    concat
    sdelete
    arg 0
    caller
    push "Released"
    emit 2
    halt
not_held:
    push "lock is not held"
    revert
not_holder:
    push "only the holder may release the lock"
    revert

; The holder's address, or empty bytes if the lock is free or its lease has expired.
.method holder(name: str) -> bytes readonly
    callsub live_holder
    return

; The expiry height of a live lease, or 0.
.method expiry(name: str) -> u64 readonly
    callsub live_holder
    len
    jz free
    push "e"
    arg 0
    concat
    sload
    btoi
    return
free:
    push 0
    return

; ( -- holder ) the holder of lock arg 0 if its lease is live, else empty bytes
live_holder:
    push "h"
    arg 0
    concat
    sload
    store 0
    load 0
    len
    jz nobody
    height
    push "e"
    arg 0
    concat
    sload
    btoi
    lt
    jz nobody
    load 0
    retsub
nobody:
    push ""
    retsub
