; registry: owned key/value entries. The first account to set a key owns it.
;
; Storage:  "o" ++ key -> owner address
;           "v" ++ key -> value (storing an empty value clears it; the owner stays)
; Events:   Set(key, owner), OwnershipTransferred(key, new_owner), Deleted(key)
; Keys are at most 127 bytes (storage keys are at most 128 with the prefix).

; Create the entry (the caller becomes its owner) or update it (owner only).
.method set(key: str, value: bytes)
    callsub owner_of
    store 0                 ; local 0: the owner, empty for a new key
    load 0
    len
    jz claim
    load 0
    caller
    ne
    jnz not_owner
    jump write
claim:
    push "o"
    arg 0
    concat
    caller
    sstore
write:
    push "v"
    arg 0
    concat
    arg 1
    sstore
    arg 0
    caller
    push "Set"
    emit 2
    halt

.method get(key: str) -> bytes readonly
    callsub owner_of
    pop
    push "v"
    arg 0
    concat
    sload
    return

; The owner's address, or empty bytes when the key is unclaimed.
.method owner(key: str) -> bytes readonly
    callsub owner_of
    return

.method transfer_ownership(key: str, new_owner: address)
    callsub require_owner
    push "o"
    arg 0
    concat
    arg 1
    sstore
    arg 0
    arg 1
    push "OwnershipTransferred"
    emit 2
    halt

.method delete(key: str)
    callsub require_owner
    push "o"
    arg 0
    concat
    sdelete
    push "v"
    arg 0
    concat
    sdelete
    arg 0
    push "Deleted"
    emit 1
    halt

; ( -- owner ) the owner of key arg 0, empty if unclaimed; reverts on an over-long key
owner_of:
    arg 0
    len
    push 127
    gt
    jnz key_too_long
    push "o"
    arg 0
    concat
    sload
    retsub

; ( -- ) revert unless the caller owns key arg 0
require_owner:
    callsub owner_of
    store 0
    load 0
    len
    jz no_such_key
    load 0
    caller
    ne
    jnz not_owner
    retsub

key_too_long:
    push "keys are at most 127 bytes"
    revert
no_such_key:
    push "no such key"
    revert
not_owner:
    push "only the key's owner may change it"
    revert
