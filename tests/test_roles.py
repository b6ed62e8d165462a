"""Client roles: genesis permissions in state, role-change votes with a k-of-m admin threshold,
the role rule at admission (before the signature) and as a rule of block validity."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto.encoding import DecodeError, encode_record
from genesis import GenesisError, Permissions, parse_genesis
from ledger.chain.accounts import genesis_state
from ledger.chain.execute import ChainRules, InvalidBlock, validate_block
from ledger.chain.proofs import StateProof, StateRead
from ledger.chain.roles import (
    LISTING_KEYS,
    PROPOSALS_KEY,
    ROLES,
    Proposals,
    RoleTable,
    holds,
    list_key,
    member_key,
    read_policy,
)
from ledger.chain.state_tree import StateTree
from ledger.chain.types import (
    Block,
    Deploy,
    ReceiptStatus,
    Role,
    RoleAction,
    RoleChange,
    Transaction,
    TxRejected,
)
from ledger.engine.admission import VerifiedCache, admit_raw
from ledger.light import LightClient, VerificationError
from tests.test_execute import CHAIN, USERS, MemoryTip, genesis, propose, transfer, verify
from tests.test_genesis import valid_doc

A = [u.address for u in USERS]
OUTSIDER = bytes([0xEE]) * 20


def permissioned(admins: int = 1, threshold: int = 1) -> Permissions:
    """USERS[0..2] submit and deploy; USERS[0..admins-1] administer (USERS[3] is unlisted)."""
    return Permissions(
        submit=tuple(A[:3]), deploy=tuple(A[:3]), admin=tuple(A[:admins]), admin_threshold=threshold
    )


def role_tx(user: int, nonce: int, action: str, role: str, address: bytes) -> Transaction:
    change = RoleChange(RoleAction(action), Role(role), address)
    return Transaction.create(USERS[user], CHAIN, nonce, change, gas_limit=10_000)


def commit(tip: MemoryTip, txs: Sequence[Transaction], g: object) -> list[object]:
    executed = propose(tip, txs, g)  # type: ignore[arg-type]
    assert executed.block.transactions == tuple(txs), "a transaction was not includable"
    tip.commit(executed)
    return list(executed.receipts)


# ----------------------------------------------------------------------------- genesis


def test_an_open_genesis_puts_no_role_keys_in_state() -> None:
    state = genesis_state(genesis())
    assert not any(k.startswith(b"r") for k in state)
    assert read_policy(MemoryTip.from_genesis(genesis())).submit_open


def test_a_permissioned_genesis_puts_its_roles_in_state() -> None:
    tip = MemoryTip.from_genesis(genesis(permissions=permissioned(admins=2, threshold=2)))
    policy = read_policy(tip)
    assert (policy.submit_open, policy.deploy_open, policy.admin_threshold) == (False, False, 2)
    assert holds(tip, Role.SUBMIT, A[2]) and not holds(tip, Role.SUBMIT, A[3])
    assert holds(tip, Role.ADMIN, A[1]) and not holds(tip, Role.ADMIN, A[2])
    table = RoleTable.from_values({k: tip.get_state(k) for k in LISTING_KEYS})
    assert table.to_json() == {
        "roles": {
            "submit": sorted(a.hex() for a in A[:3]),
            "deploy": sorted(a.hex() for a in A[:3]),
            "admin": sorted(a.hex() for a in A[:2]),
        },
        "admin_threshold": 2,
        "pending": [],
    }


def test_admin_threshold_is_in_the_genesis_only_when_not_1() -> None:
    doc = valid_doc()
    g = parse_genesis(doc)
    assert "admin_threshold" not in g.to_json()["permissions"]
    assert "admin_threshold" not in g.to_value()["permissions"]  # type: ignore[operator]
    doc["permissions"]["admin"] = [a.hex() for a in A[:3]]
    doc["permissions"]["admin_threshold"] = 2
    g2 = parse_genesis(doc)
    assert g2.permissions.admin_threshold == 2
    assert parse_genesis(g2.to_json()) == g2 and g2.to_json()["permissions"]["admin_threshold"] == 2


@pytest.mark.parametrize(
    ("permissions", "needle"),
    [
        (
            {"admin": [OUTSIDER.hex()], "admin_threshold": 2},
            "permissions.admin_threshold: 2 is more than the 1 admins listed",
        ),
        ({"admin_threshold": 2}, "permissions.admin_threshold: 2 is more than the 0 admins"),
        ({"admin": [OUTSIDER.hex()], "admin_threshold": 0}, "outside the allowed range"),
        ({"admin_threshold": "1"}, "permissions.admin_threshold: expected an integer"),
        ({"read": "any"}, "permissions: unknown field 'read'"),
        ({"read": "any"}, "the roles are submit, deploy, admin"),
    ],
)
def test_a_bad_permissions_section_is_refused_clearly(permissions: object, needle: str) -> None:
    doc = valid_doc()
    doc["permissions"] = permissions
    with pytest.raises(GenesisError) as info:
        parse_genesis(doc)
    assert needle in str(info.value)


def test_the_constructor_checks_the_threshold_too() -> None:
    g = genesis()
    with pytest.raises(GenesisError, match="admin_threshold: 3 is more than the 1 admins"):
        dataclasses.replace(g, permissions=Permissions(admin=(OUTSIDER,), admin_threshold=3))


# ----------------------------------------------------------------------------- encoding


def test_role_change_round_trips_and_refuses_other_spellings() -> None:
    tx = role_tx(0, 0, "grant", "deploy", OUTSIDER)
    assert Transaction.decode(tx.raw) == tx and tx.kind == "role"
    assert tx.payload.to_value() == ["grant", "deploy", OUTSIDER]
    for bad, needle in [
        (["give", "deploy", OUTSIDER], "not grant or revoke"),
        (["grant", "read", OUTSIDER], "unknown role"),
        (["grant", "admin", b"\x01"], "payload.address"),
        (["grant", "admin"], "3 fields"),
    ]:
        with pytest.raises(DecodeError, match=needle):
            RoleChange.from_value(bad)  # type: ignore[arg-type]


def test_proposals_have_one_encoding_whatever_the_order_of_votes() -> None:
    a = RoleChange(RoleAction.GRANT, Role.SUBMIT, A[3])
    b = RoleChange(RoleAction.REVOKE, Role.ADMIN, A[1])
    from ledger.chain.roles import Proposal

    one = Proposals().with_(Proposal(a, (A[0],))).with_(Proposal(b, (A[2],)))
    two = Proposals().with_(Proposal(b, (A[2],))).with_(Proposal(a, (A[0],)))
    assert one.encode() == two.encode() and Proposals.decode(one.encode() or b"") == one
    assert Proposals().encode() is None
    with pytest.raises(DecodeError):
        Proposals.decode(encode_record("role-proposals", 1, [[["grant", "admin"]]]))


# ----------------------------------------------------------------------------- execution


def test_an_unlisted_sender_is_not_includable_and_a_block_carrying_it_is_invalid() -> None:
    g = genesis(permissions=permissioned())
    tip = MemoryTip.from_genesis(g)
    outsider = transfer(3, 0, A[0], 1)
    executed = propose(tip, [outsider], g)
    assert executed.block.transactions == ()
    # A Byzantine primary that includes it anyway: every replica refuses the block.
    open_tip = MemoryTip.from_genesis(genesis())
    forged = propose(open_tip, [outsider], genesis())  # built as if the chain were open
    block = Block(dataclasses.replace(forged.block.header, prev_hash=g.hash()), (outsider,))
    with pytest.raises(InvalidBlock, match=r"not_permitted|submit role"):
        validate_block(tip, block, view=0, rules=ChainRules.from_genesis(g), signature_ok=verify)


def test_deploy_needs_the_deploy_role_and_a_role_change_the_admin_role() -> None:
    g = genesis(permissions=dataclasses.replace(permissioned(), deploy=(A[0],)))
    tip = MemoryTip.from_genesis(g)
    deploy = Transaction.create(USERS[1], CHAIN, 0, Deploy(b"\x01"), gas_limit=100_000)
    non_admin = role_tx(1, 0, "grant", "submit", A[3])
    executed = propose(tip, [deploy, non_admin], g)
    assert executed.block.transactions == ()


def test_grant_lets_a_sender_transact_and_revoke_stops_it() -> None:
    g = genesis(permissions=permissioned())
    tip = MemoryTip.from_genesis(g)
    (receipt,) = commit(tip, [role_tx(0, 0, "grant", "submit", A[3])], g)
    assert receipt.status == ReceiptStatus.SUCCESS and receipt.return_value == "applied"  # type: ignore[attr-defined]
    assert [e.name for e in receipt.events] == ["role_vote", "role_changed"]  # type: ignore[attr-defined]
    commit(tip, [transfer(3, 0, A[0], 1)], g)
    commit(tip, [role_tx(0, 1, "revoke", "submit", A[3])], g)
    assert propose(tip, [transfer(3, 1, A[0], 1)], g).block.transactions == ()
    assert (
        A[3].hex()
        not in RoleTable.from_values({k: tip.get_state(k) for k in LISTING_KEYS}).to_json()[
            "roles"
        ]["submit"]
    )  # type: ignore[index]


def test_changes_that_cannot_apply_are_reverted_and_change_nothing_but_the_nonce() -> None:
    g = genesis(permissions=dataclasses.replace(permissioned(), deploy=None))
    tip = MemoryTip.from_genesis(g)
    root = tip.state_root
    receipts = commit(
        tip,
        [
            role_tx(0, 0, "grant", "submit", A[1]),  # already holds it
            role_tx(0, 1, "revoke", "submit", A[3]),  # does not hold it
            role_tx(0, 2, "grant", "deploy", A[3]),  # deploy is open to anyone
            role_tx(0, 3, "revoke", "admin", A[0]),  # the last admin
        ],
        g,
    )
    errors = [r.error for r in receipts]  # type: ignore[attr-defined]
    assert [r.status for r in receipts] == [ReceiptStatus.REVERTED] * 4  # type: ignore[attr-defined]
    assert "already holds" in errors[0] and "does not hold" in errors[1]
    assert "open to every account" in errors[2] and "fewer than the admin threshold" in errors[3]
    changed = [k for k in genesis_state(g) if tip.get_state(k) != genesis_state(g)[k]]
    assert changed == [b"a" + A[0]] and tip.state_root != root  # the nonce only


def test_with_threshold_2_the_second_distinct_admin_vote_applies_the_change() -> None:
    g = genesis(permissions=permissioned(admins=3, threshold=2))
    tip = MemoryTip.from_genesis(g)
    (first,) = commit(tip, [role_tx(0, 0, "grant", "submit", A[3])], g)
    assert first.return_value == "pending" and not holds(tip, Role.SUBMIT, A[3])  # type: ignore[attr-defined]
    assert first.events[0].args == ("grant", "submit", A[3], 1, 2)  # type: ignore[attr-defined]
    assert propose(tip, [transfer(3, 0, A[0], 1)], g).block.transactions == ()
    (again,) = commit(tip, [role_tx(0, 1, "grant", "submit", A[3])], g)
    assert again.status == ReceiptStatus.REVERTED and "already voted" in again.error  # type: ignore[attr-defined]
    pending = RoleTable.from_values({k: tip.get_state(k) for k in LISTING_KEYS}).to_json()
    assert pending["pending"] == [
        {
            "action": "grant",
            "role": "submit",
            "address": A[3].hex(),
            "votes": [A[0].hex()],
            "threshold": 2,
        }
    ]
    (second,) = commit(tip, [role_tx(1, 0, "grant", "submit", A[3])], g)
    assert second.return_value == "applied" and holds(tip, Role.SUBMIT, A[3])  # type: ignore[attr-defined]
    assert tip.get_state(PROPOSALS_KEY) is None
    commit(tip, [transfer(3, 0, A[0], 1)], g)


def test_a_revoked_admins_votes_stop_counting() -> None:
    g = genesis(permissions=permissioned(admins=3, threshold=2))
    tip = MemoryTip.from_genesis(g)
    commit(tip, [role_tx(2, 0, "grant", "deploy", A[3])], g)  # admin 2 votes
    commit(tip, [role_tx(0, 0, "revoke", "admin", A[2]), role_tx(1, 0, "revoke", "admin", A[2])], g)
    assert not holds(tip, Role.ADMIN, A[2])
    assert tip.get_state(PROPOSALS_KEY) is None  # admin 2's lone vote went with it
    assert propose(tip, [role_tx(2, 1, "grant", "deploy", A[3])], g).block.transactions == ()
    (vote,) = commit(tip, [role_tx(0, 1, "grant", "deploy", A[3])], g)
    assert vote.return_value == "pending"  # type: ignore[attr-defined]
    # Now 2 admins remain with threshold 2: revoking one more would lock the chain.
    (refused,) = commit(tip, [role_tx(0, 2, "revoke", "admin", A[1])], g)
    assert refused.status == ReceiptStatus.REVERTED  # type: ignore[attr-defined]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2), st.sampled_from(["grant", "revoke"]), st.sampled_from(list(Role))
        ),
        max_size=12,
    ),
    st.integers(0, 3),
)
def test_property_role_state_stays_consistent(
    votes: list[tuple[int, str, Role]], target: int
) -> None:
    """Whatever admins vote: member keys and lists agree, the admins are never fewer than
    the threshold, and every pending vote is a current admin's, short of the threshold."""
    g = genesis(permissions=permissioned(admins=3, threshold=2))
    tip = MemoryTip.from_genesis(g)
    nonces = [0, 0, 0, 0]
    for voter, action, role in votes:
        tx = role_tx(voter, nonces[voter], action, str(role), A[target])
        executed = propose(tip, [tx], g)
        if executed.block.transactions:
            nonces[voter] += 1
            tip.commit(executed)
    table = RoleTable.from_values({k: tip.get_state(k) for k in LISTING_KEYS})
    for role in ROLES:
        listed = table.holders[role]
        assert list(listed) == sorted(listed)
        assert all(tip.get_state(member_key(role, a)) == b"\x01" for a in listed)
        assert [a for a in [*A, OUTSIDER] if holds(tip, role, a)] == sorted(
            listed, key=([*A, OUTSIDER]).index
        )
    admins = table.holders[Role.ADMIN]
    assert len(admins) >= 2
    for proposal in table.proposals.items:
        assert 0 < len(proposal.voters) < 2 and all(v in admins for v in proposal.voters)
    assert (tip.get_state(list_key(Role.SUBMIT)) is None) == (not table.holders[Role.SUBMIT])


# ----------------------------------------------------------------------------- admission


def test_admission_refuses_an_unlisted_sender_before_checking_the_signature() -> None:
    g = genesis(permissions=permissioned())
    tip = MemoryTip.from_genesis(g)
    rules = ChainRules.from_genesis(g)
    forged = dataclasses.replace(transfer(3, 0, A[0], 1), signature=bytes(64))
    with pytest.raises(TxRejected) as info:
        admit_raw(forged.raw, rules, VerifiedCache(), roles=tip)
    assert info.value.code == "not_permitted"  # not bad_signature: refused first
    non_admin = role_tx(1, 0, "grant", "submit", A[3])
    with pytest.raises(TxRejected, match="not an admin"):
        admit_raw(non_admin.raw, rules, VerifiedCache(), roles=tip)
    assert admit_raw(role_tx(0, 0, "grant", "submit", A[3]).raw, rules, VerifiedCache(), roles=tip)
    assert admit_raw(transfer(1, 0, A[0], 1).raw, rules, VerifiedCache(), roles=tip)
    # Without committed state to read, admission leaves the rule to execution.
    assert admit_raw(transfer(3, 0, A[0], 1).raw, rules, VerifiedCache())


# ----------------------------------------------------------------------------- light client


def _listing_proof(tip: MemoryTip, g: object) -> dict[str, object]:
    tree = StateTree.at(tip.state_root, tip.nodes)
    reads = tuple(StateRead(k, tip.get_state(k), tree.prove(k)) for k in LISTING_KEYS)
    table = RoleTable.from_values({r.key: r.value for r in reads})
    proof = StateProof(tip.height, None, None, reads)
    return {**table.to_json(), "height": tip.height, "proof": proof.to_json()}


def test_the_light_client_proves_the_whole_listing() -> None:
    g = genesis(permissions=permissioned(admins=2, threshold=2))
    tip = MemoryTip.from_genesis(g)
    doc = _listing_proof(tip, g)
    head, table = LightClient(g).verify_permissions(doc)
    assert head.height == g.initial_height - 1 and table.policy.admin_threshold == 2
    lying = {**doc, "admin_threshold": 1}
    with pytest.raises(VerificationError, match="differ from the ones proven"):
        LightClient(g).verify_permissions(lying)
    other = genesis(permissions=permissioned())
    with pytest.raises(VerificationError, match="does not match the state root"):
        LightClient(other).verify_permissions(doc)
