"""The simulator's independent auditor: safety and liveness judged without consensus code.

A checker that verifies certificates with the code it checks is weakened by every bug in
that code. This module imports nothing from ``consensus``: it has its own quorum
arithmetic, decodes message bodies from the canonical encoding by hand, and verifies each
Ed25519 signature with libsodium directly (its own copy of the signing domain). It sees
every message any endpoint sends (``observe``), what honest replicas send (``on_send``)
and commit (``on_commit``), and the end of the run (``finish``). Properties:

* ``agreement``     no two honest replicas commit different blocks at one height;
* ``validity``      only submitted requests commit, each at most once per chain, in a
                    decodable payload that names the previous block (``hash_chain``);
* ``certificate``   every commit certificate an honest replica outputs carries q distinct
                    validators' valid COMMIT signatures for that block; every stable
                    checkpoint, commit certificate and prepared certificate inside an
                    honest VIEW-CHANGE is sound, and so is every NEW-VIEW an honest replica
                    sends or votes on (q distinct valid VIEW-CHANGEs);
* ``carry_over``    such a NEW-VIEW re-issues, at every height above its base, the block
                    already committed there (PBFT §4.4: committed requests survive views);
* ``justified``     an honest PREPARE(v, h, d) follows a PRE-PREPARE validly signed by the
                    primary of v (directly or inside its NEW-VIEW); an honest COMMIT
                    also follows q-1 valid PREPAREs from distinct backups (PBFT §4.2);
* ``double_sign``   an honest replica, across crashes, never signs two different
                    PRE-PREPAREs, PREPAREs or COMMITs for one (view, height), nor two
                    different VIEW-CHANGEs or NEW-VIEWs for one view;
* ``epoch``         the chain of sets (docs/CONSENSUS.md §12), replayed by the auditor
                    itself from the decided blocks (audit_sets.py), certificates at each
                    height checked with that height's set and signing domain: every
                    honest vote verifies under the domain and key of an epoch its sender
                    belongs to (a removed validator's replica signs nothing after its
                    switch); no honest replica votes, in an epoch's domain, at or below
                    its anchor or for a child of the block that ended it;
* ``epoch_end``     each honest replica marks exactly the blocks that activate a set (by
                    the auditor's replay) as ending their epoch;
* ``liveness``      at the end of the run every honest member of the final set applied
                    every request, and every planned set change took effect.

House rule: observes only; it never changes a replica, a message or the course of the run,
and it reports through the ``report(kind, detail)`` callback it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Final, Protocol

import nacl.bindings
import nacl.exceptions

from consensus.sim.audit_sets import (
    AuditEpoch,
    SetReplay,
    SetRules,
    faulty_bound,
    quorum_of,
    signing_domain,
    vote_change,
)
from crypto.encoding import DecodeError, Value, decode, encode
from crypto.hashing import sha256

__all__ = ["Auditor", "SetRules", "faulty_bound", "quorum_of"]

#: Candidate signatures kept per (slot, sender): a flood of forgeries cannot grow memory.
MAX_CANDIDATES: Final = 4
#: Block parents remembered (digest -> height, parent), for the epoch-end check.
MAX_PARENTS: Final = 100_000
#: Kinds whose honest copies the auditor attributes to an epoch and checks.
_CHECKED_KINDS: Final = ("pre-prepare", "prepare", "commit", "view-change", "new-view")

Report = Callable[[str, str], None]


class Envelope(Protocol):
    """A signed message as the simulator carries it (duck-typed: no consensus import)."""

    @property
    def sender(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def signature(self) -> bytes: ...
    @property
    def payload(self) -> bytes: ...


class Certificate(Protocol):
    @property
    def view(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def votes(self) -> tuple[tuple[int, bytes], ...]: ...


class Committed(Protocol):
    @property
    def height(self) -> int: ...
    @property
    def digest(self) -> bytes: ...
    @property
    def parent_digest(self) -> bytes: ...
    @property
    def state_root(self) -> bytes: ...
    @property
    def ends_epoch(self) -> bool: ...
    def certificate(self) -> Certificate: ...


class _Bad(Exception):
    """Something an honest replica signed or relied on does not hold up."""


def _record(raw: bytes | Value, tag: str, count: int) -> list[Value]:
    value = decode(raw) if isinstance(raw, bytes) else raw
    if not isinstance(value, list) or len(value) != count + 2 or value[:2] != [tag, 1]:
        raise _Bad(f"not a {tag} record")
    return value[2:]


def _int(value: Value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad("not an integer")
    return value


def _bytes(value: Value) -> bytes:
    if not isinstance(value, bytes):
        raise _Bad("not bytes")
    return value


def _list(value: Value) -> list[Value]:
    if not isinstance(value, list):
        raise _Bad("not a list")
    return value


class Auditor:
    def __init__(
        self,
        chain_id: str,
        validators: Sequence[bytes],
        genesis: tuple[int, bytes, bytes],
        honest: Iterable[int],
        report: Report,
        *,
        sets: SetRules | None = None,
    ) -> None:
        self.chain_id = chain_id
        self.genesis_height, genesis_digest, genesis_root = genesis
        self.rules = sets if sets is not None else SetRules(tuple(validators))
        members = tuple(range(len(validators)))
        self.replay = SetReplay(self.rules, members, self.genesis_height)
        #: The chain of sets, as the decided blocks activate them (epoch e at index e).
        self.epochs: list[AuditEpoch] = []
        self._open_epoch(members, self.genesis_height, genesis_digest, genesis_root)
        self.honest = frozenset(honest)
        self.report = report
        self.decided: dict[int, bytes] = {}
        #: The view whose certificate first decided each height.
        self.decided_view: dict[int, int] = {}
        self.top = self.genesis_height
        #: Every request id on the decided chain.
        self.decided_ids: set[int] = set()
        self.applied: dict[int, set[int]] = {i: set() for i in sorted(self.honest)}
        self.signed: dict[tuple[int, int, str, int, int], bytes] = {}
        self._verified: dict[tuple[int, int, str, bytes, bytes], bool] = {}
        self._prefix: dict[tuple[int, str], bytes] = {}
        # What the network carried, unverified until an honest vote leans on it.
        self._pre_prepares: dict[tuple[int, int, bytes], list[tuple[int, bytes, bytes]]] = {}
        self._prepares: dict[tuple[int, int, bytes], dict[int, list[bytes]]] = {}
        self._new_views: dict[tuple[int, int, bytes], list[tuple[int, bytes, bytes]]] = {}
        self._justified: set[tuple[int, str, int, int, bytes]] = set()
        self._sound_new_views: dict[tuple[int, bytes], str | None] = {}
        #: digest -> (height, parent) of every block whose payload crossed the network.
        self._parents: dict[bytes, tuple[int, bytes]] = {}
        #: Honest slot votes already judged for their epoch (retransmissions are not new).
        self._epoch_judged: set[tuple[int, int, str, int, int, bytes]] = set()
        #: Honest votes of an open epoch that may turn out to lie above its end.
        self._open_votes: dict[int, list[tuple[int, str, int, int, bytes]]] = {}

    @property
    def with_epochs(self) -> bool:
        return bool(self.rules.changes)

    def _open_epoch(self, members: tuple[int, ...], start: int, anchor: bytes, root: bytes) -> None:
        number = len(self.epochs)
        keys = tuple(self.rules.keys[m] for m in members)
        domain = signing_domain(self.chain_id, number)
        self.epochs.append(AuditEpoch(number, start, anchor, root, members, keys, domain))

    def _epoch_at(self, height: int) -> AuditEpoch:
        """The set certifying ``height`` on the decided chain (known once height-1 is)."""
        for epoch in reversed(self.epochs):
            if epoch.start < height:
                return epoch
        return self.epochs[0]

    # ------------------------------------------------------------------ crypto

    def _valid(self, ep: AuditEpoch, index: int, kind: str, body: bytes, signature: bytes) -> bool:
        if not 0 <= index < ep.n or len(signature) != 64:
            return False
        key = (ep.number, index, kind, body, signature)
        known = self._verified.get(key)
        if known is None:
            prefix = self._prefix.get((ep.number, kind))
            if prefix is None:
                prefix = encode(["quorum-sig", 1, ep.domain, kind])
                self._prefix[(ep.number, kind)] = prefix
            try:
                nacl.bindings.crypto_sign_open(signature + prefix + body, ep.keys[index])
                known = True
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
                known = False
            self._verified[key] = known
        return known

    def _check_envelope(self, ep: AuditEpoch, value: Value, kind: str) -> tuple[int, bytes]:
        """A signed message embedded in a certificate: (sender, body) once it verifies."""
        f = _record(value, "consensus-msg", 5)
        sender, msg_kind, body, signature = _int(f[0]), f[1], _bytes(f[2]), _bytes(f[3])
        if msg_kind != kind or not self._valid(ep, sender, kind, body, signature):
            raise _Bad(f"a {kind} from validator {sender} whose signature does not verify")
        return sender, body

    # ------------------------------------------------------------------ certificates

    def _commit_certificate(
        self, ep: AuditEpoch, view: int, height: int, digest: bytes, votes: Value
    ) -> None:
        body = encode(["commit", 1, view, height, digest])
        signers: set[int] = set()
        for pair in _list(votes):
            items = _list(pair)
            if len(items) != 2:
                raise _Bad("a vote is not [validator, signature]")
            index, signature = _int(items[0]), _bytes(items[1])
            if index in signers:
                raise _Bad(f"validator {index} counted twice")
            if not self._valid(ep, index, "commit", body, signature):
                raise _Bad(f"no valid commit signature of validator {index} (epoch {ep.number})")
            signers.add(index)
        if len(signers) < ep.q:
            raise _Bad(f"{len(signers)} signers, a quorum is {ep.q}")

    def _checkpoint(self, ep: AuditEpoch, value: Value) -> int:
        f = _list(value)
        if len(f) != 4:
            raise _Bad("malformed checkpoint proof")
        height, block_hash, root = _int(f[0]), _bytes(f[1]), _bytes(f[2])
        messages = _list(f[3])
        if height == ep.start:
            if (block_hash, root, messages) != (ep.anchor, ep.root, []):
                raise _Bad(f"a genesis checkpoint that is not epoch {ep.number}'s anchor")
            return height
        expected = encode(["checkpoint", 1, height, block_hash, root])
        signers: set[int] = set()
        for message in messages:
            sender, body = self._check_envelope(ep, message, "checkpoint")
            if body != expected or sender in signers:
                raise _Bad(f"checkpoint {height}: validator {sender} repeated or off-message")
            signers.add(sender)
        if len(signers) < ep.q:
            raise _Bad(f"checkpoint {height} has {len(signers)} signers, a quorum is {ep.q}")
        known = self.decided.get(height)
        if known is not None and known != block_hash:
            raise _Bad(f"checkpoint {height} certifies a block nobody decided")
        return height

    def _prepared(self, ep: AuditEpoch, value: Value, before_view: int) -> tuple[int, int, bytes]:
        f = _list(value)
        if len(f) != 2:
            raise _Bad("malformed prepared certificate")
        sender, body = self._check_envelope(ep, f[0], "pre-prepare")
        view, height, digest, _parent = _record(body, "pre-prepare", 4)
        view, height, digest = _int(view), _int(height), _bytes(digest)
        if view >= before_view or sender != view % ep.n:
            raise _Bad(f"prepared certificate of view {view}: not its primary's, or not older")
        expected = encode(["prepare", 1, view, height, digest])
        backups: set[int] = set()
        for message in _list(f[1]):
            backup, prepare = self._check_envelope(ep, message, "prepare")
            if prepare != expected or backup == sender or backup in backups:
                raise _Bad(f"prepared certificate at {height}: prepare of {backup} unfit")
            backups.add(backup)
        if len(backups) < ep.q - 1:
            raise _Bad(f"prepared certificate at {height}: {len(backups)} prepares")
        return view, height, digest

    def _view_change(self, ep: AuditEpoch, body: bytes) -> tuple[int, int]:
        """Check every proof in a VIEW-CHANGE; return (new view, highest committed height)."""
        new_view, checkpoint, committed, prepared = _record(body, "view-change", 4)
        new_view = _int(new_view)
        base = self._checkpoint(ep, checkpoint)
        if committed is not None:
            view, height, digest, votes = _list(committed)
            self._commit_certificate(ep, _int(view), _int(height), _bytes(digest), votes)
            base = max(base, _int(height))
        for proof in _list(prepared):
            self._prepared(ep, proof, new_view)
        return new_view, base

    def _new_view_problem(self, ep: AuditEpoch, sender: int, body: bytes) -> str | None:
        """Why this NEW-VIEW is unsound in epoch ``ep`` (None: sound)."""
        digest = sha256(body)
        if (ep.number, digest) in self._sound_new_views:
            return self._sound_new_views[(ep.number, digest)]
        problem: str | None = None
        try:
            view, changes, pre_prepares = _record(body, "new-view", 3)
            view = _int(view)
            if sender != view % ep.n:
                raise _Bad(f"view {view}: from {sender}, not from its primary")
            voters: set[int] = set()
            base = ep.start
            for message in _list(changes):
                voter, vc = self._check_envelope(ep, message, "view-change")
                target, committed = self._view_change(ep, vc)
                if target != view or voter in voters:
                    raise _Bad(f"view {view}: view change of {voter} repeated or for view {target}")
                voters.add(voter)
                base = max(base, committed)
            if len(voters) < ep.q:
                raise _Bad(f"view {view}: {len(voters)} view changes, a quorum is {ep.q}")
            reissued: dict[int, bytes] = {}
            for message in _list(pre_prepares):
                pp_sender, pp = self._check_envelope(ep, message, "pre-prepare")
                pp_view, height, pp_digest, _parent = _record(pp, "pre-prepare", 4)
                if pp_sender != sender or pp_view != view:
                    raise _Bad(f"view {view}: re-issued pre-prepare not the primary's own")
                reissued[_int(height)] = _bytes(pp_digest)
            # Views count from 0 in every epoch: only this epoch's decided heights compare.
            earlier = (
                h for h, v in self.decided_view.items() if h > base and ep.holds(h) and v < view
            )
            for height in sorted(earlier):
                if reissued.get(height) != self.decided[height]:
                    raise _Bad(
                        f"view {view} (base {base}) drops block {self.decided[height].hex()[:12]} "
                        f"committed at height {height}"
                    )
        except (_Bad, DecodeError, ValueError) as exc:
            problem = str(exc)
        self._sound_new_views[(ep.number, digest)] = problem
        return problem

    # ------------------------------------------------------------------ the network

    def observe(self, message: Envelope) -> None:
        """Any endpoint, honest or not, put ``message`` on the network (not yet verified)."""
        kind = message.kind
        if kind not in ("pre-prepare", "prepare", "new-view"):
            return
        try:
            value = decode(message.body)
            if kind == "new-view":
                _view, _changes, pre_prepares = _record(value, "new-view", 3)
                for item in _list(pre_prepares):
                    f = _record(item, "consensus-msg", 5)
                    pp = _record(_bytes(f[2]), "pre-prepare", 4)
                    slot = (_int(pp[0]), _int(pp[1]), _bytes(pp[2]))
                    entry = (message.sender, message.body, message.signature)
                    candidates = self._new_views.setdefault(slot, [])
                    if len(candidates) < MAX_CANDIDATES * len(self.rules.keys):
                        candidates.append(entry)
                return
            fields = _record(value, kind, 4 if kind == "pre-prepare" else 3)
            slot = (_int(fields[0]), _int(fields[1]), _bytes(fields[2]))
        except (_Bad, DecodeError, ValueError):
            return
        if kind == "pre-prepare":
            candidates = self._pre_prepares.setdefault(slot, [])
            if len(candidates) < MAX_CANDIDATES * len(self.rules.keys):
                candidates.append((message.sender, message.body, message.signature))
            if self.with_epochs and message.payload:
                self._note_parent(message.payload)
        else:
            signatures = self._prepares.setdefault(slot, {}).setdefault(message.sender, [])
            if len(signatures) < MAX_CANDIDATES and message.signature not in signatures:
                signatures.append(message.signature)

    def _note_parent(self, payload: bytes) -> None:
        """Remember which block a payload extends (bound to its digest: SHA-256)."""
        digest = sha256(payload)
        if digest in self._parents or len(self._parents) >= MAX_PARENTS:
            return
        try:
            height, parent, _ids = _record(payload, "sim-block", 3)
            self._parents[digest] = (_int(height), _bytes(parent))
        except (_Bad, DecodeError, ValueError):
            return

    def _proposal_justified(self, ep: AuditEpoch, slot: tuple[int, int, bytes]) -> str | None:
        view = slot[0]
        primary = view % ep.n
        for sender, body, signature in self._pre_prepares.get(slot, []):
            if sender == primary and self._valid(ep, sender, "pre-prepare", body, signature):
                return None
        problems = []
        for sender, body, signature in self._new_views.get(slot, []):
            if sender != primary or not self._valid(ep, sender, "new-view", body, signature):
                continue
            problem = self._new_view_problem(ep, primary, body)
            if problem is None:
                return None
            problems.append(problem)
        if problems:
            return f"only an unsound NEW-VIEW proposed it ({problems[0]})"
        return f"no pre-prepare validly signed by primary {primary} of epoch {ep.number}"

    def _prepared_justified(self, ep: AuditEpoch, slot: tuple[int, int, bytes]) -> str | None:
        view, height, digest = slot
        primary = view % ep.n
        body = encode(["prepare", 1, view, height, digest])
        backups = 0
        for sender, signatures in self._prepares.get(slot, {}).items():
            if sender != primary and any(
                self._valid(ep, sender, "prepare", body, s) for s in signatures
            ):
                backups += 1
        if backups < ep.q - 1:
            return (
                f"{backups} valid prepares on the network, a prepared certificate needs {ep.q - 1}"
            )
        return None

    # ------------------------------------------------------------------ honest replicas

    def _signing_epoch(self, index: int, message: Envelope, hint: int) -> AuditEpoch | None:
        """The epoch whose domain and key the honest ``message`` verifies under (None: a
        relayed message, or none — reported)."""
        if not self.with_epochs:
            return self.epochs[0] if message.sender == index else None
        ordered = sorted(self.epochs, key=lambda ep: (ep.number != hint, -ep.number))
        candidates = [
            ep
            for ep in ordered
            if index in ep.members and ep.members.index(index) == message.sender
        ]
        for ep in candidates:
            if self._valid(ep, message.sender, message.kind, message.body, message.signature):
                return ep
        kind, body, signature = message.kind, message.body, message.signature
        if any(self._valid(ep, message.sender, kind, body, signature) for ep in ordered):
            return None  # another member's message, relayed (a NEW-VIEW passed on)
        self.report(
            "epoch",
            f"node{index} signed a {message.kind} (as validator {message.sender}) that verifies "
            f"under no epoch it is a member of (epochs {[ep.number for ep in candidates]})",
        )
        return None

    def on_send(self, index: int, message: Envelope, epoch: int = 0) -> None:
        """Honest replica ``index`` (global) releases ``message``; ``epoch`` is the one its
        driver believes it is in (a hint: the signature decides)."""
        kind = message.kind
        if kind not in _CHECKED_KINDS:
            return
        ep = self._signing_epoch(index, message, epoch)
        if ep is None:
            return
        try:
            value = decode(message.body)
            if kind in ("pre-prepare", "prepare", "commit"):
                fields = _record(value, kind, 4 if kind == "pre-prepare" else 3)
                view, height = _int(fields[0]), _int(fields[1])
                slot = (view, height, _bytes(fields[2]))
                self._vote(ep, index, kind, slot)
                if self.with_epochs:
                    self._epoch_vote(ep, index, kind, slot)
            elif kind == "view-change":
                view, height = _int(_record(value, kind, 4)[0]), 0
                try:
                    self._view_change(ep, message.body)
                except (_Bad, ValueError) as exc:
                    self.report("certificate", f"node{index} view change to {view}: {exc}")
            else:
                view, height = _int(_record(value, kind, 3)[0]), 0
                problem = self._new_view_problem(ep, message.sender, message.body)
                if problem is not None:
                    what = "carry_over" if "drops block" in problem else "certificate"
                    self.report(what, f"node{index} NEW-VIEW: {problem}")
        except (_Bad, DecodeError) as exc:
            self.report("double_sign", f"node{index} signed a malformed {kind}: {exc}")
            return
        key = (index, ep.number, kind, view, height)
        content = sha256(message.body)
        if self.signed.setdefault(key, content) != content:
            self.report(
                "double_sign",
                f"node{index} signed two different {kind} messages for view {view}"
                + (f" of epoch {ep.number}" if ep.number else ""),
            )

    def _vote(self, ep: AuditEpoch, index: int, kind: str, slot: tuple[int, int, bytes]) -> None:
        if kind == "pre-prepare" or (ep.number, kind, *slot) in self._justified:
            return
        problem = self._proposal_justified(ep, slot)
        if problem is None and kind == "commit":
            problem = self._prepared_justified(ep, slot)
        if problem is not None:
            view, height, digest = slot
            self.report(
                "justified",
                f"node{index} sent {kind.upper()} view {view} height {height} "
                f"{digest.hex()[:12]}: {problem}",
            )
        self._justified.add((ep.number, kind, *slot))

    def _epoch_vote(
        self, ep: AuditEpoch, index: int, kind: str, slot: tuple[int, int, bytes]
    ) -> None:
        """An honest slot vote in ``ep``'s domain: never at or below its anchor, and never
        for a child of the block that ended it (judged once that block is decided)."""
        view, height, digest = slot
        judged = (index, ep.number, kind, view, height, digest)
        if judged in self._epoch_judged:
            return
        self._epoch_judged.add(judged)
        if height <= ep.start:
            self.report(
                "epoch",
                f"node{index} signed {kind.upper()} view {view} height {height} in epoch "
                f"{ep.number}, at or below its anchor {ep.start}",
            )
        elif ep.end is not None:
            self._beyond_end(ep, index, kind, slot)
        elif height >= self.top + 2:  # at or below top + 1 it is inside the epoch
            self._open_votes.setdefault(ep.number, []).append((index, kind, *slot))

    def _beyond_end(
        self, ep: AuditEpoch, index: int, kind: str, slot: tuple[int, int, bytes]
    ) -> None:
        assert ep.end is not None
        view, height, digest = slot
        if height <= ep.end:
            return
        at, block = height, digest
        while at > ep.end:
            known = self._parents.get(block)
            if known is None or known[0] != at:
                return  # a block whose payload never crossed the network: not ours to judge
            at, block = at - 1, known[1]
        if block == self.decided[ep.end]:
            self.report(
                "epoch",
                f"node{index} signed {kind.upper()} view {view} height {height} in epoch "
                f"{ep.number}, above block {ep.end} that ended it",
            )

    def on_commit(
        self,
        index: int,
        block: Committed,
        ids: list[int] | None,
        previous: bytes,
        submitted: set[int],
    ) -> None:
        """Honest replica ``index`` applies ``block`` (request ids parsed from its payload)."""
        height = block.height
        first = height not in self.decided
        known = self.decided.setdefault(height, block.digest)
        view = block.certificate().view
        self.decided_view[height] = min(self.decided_view.get(height, view), view)
        if known != block.digest:
            self.report(
                "agreement",
                f"height {height}: node{index} committed {block.digest.hex()[:12]}, "
                f"another honest replica {known.hex()[:12]}",
            )
        if block.parent_digest != previous:
            self.report(
                "hash_chain", f"node{index} height {height}: parent is not the previous block"
            )
        applied = self.applied.setdefault(index, set())
        if ids is None:
            self.report(
                "validity", f"node{index} height {height}: undecodable or mis-chained payload"
            )
        else:
            if len(set(ids)) != len(ids):
                self.report(
                    "validity", f"node{index} height {height}: a request twice in one block"
                )
            for request in ids:
                if request not in submitted:
                    self.report(
                        "validity", f"node{index} committed request {request} nobody submitted"
                    )
                elif request in applied:
                    self.report("validity", f"node{index} committed request {request} twice")
                applied.add(request)
        ep = self._epoch_at(height)
        if first:
            self._decide(ep, block, ids or [])
        if self.with_epochs and bool(block.ends_epoch) != (ep.end == height):
            self.report(
                "epoch_end",
                f"node{index} height {height}: its replica says the block "
                f"{'ends' if block.ends_epoch else 'does not end'} epoch {ep.number}; the set "
                f"rules say it {'does' if ep.end == height else 'does not'}",
            )
        cert = block.certificate()
        try:
            if (cert.height, cert.digest) != (height, block.digest):
                raise _Bad("the certificate is for another block")
            self._commit_certificate(
                ep, cert.view, cert.height, cert.digest, [list(v) for v in cert.votes]
            )
        except _Bad as exc:
            self.report("certificate", f"node{index} height {height}: {exc}")

    def _decide(self, ep: AuditEpoch, block: Committed, ids: list[int]) -> None:
        """The first commit of a height: follow the set rules; close the epoch it ends."""
        height = block.height
        self.top = max(self.top, height)
        self.decided_ids.update(ids)
        activated, problem = self.replay.after_block(height, ids)
        if problem:
            self.report("validity", f"height {height} holds {problem}")
        if activated is None or ep is not self.epochs[-1]:
            return
        ep.end = height
        self._open_epoch(activated, height, block.digest, block.state_root)
        for index, kind, view, vote_height, digest in self._open_votes.pop(ep.number, []):
            self._beyond_end(ep, index, kind, (view, vote_height, digest))

    def _required(self, request: int, epoch: int) -> bool:
        change = vote_change(request)
        return change is None or change >= epoch or request in self.decided_ids

    def finish(self, submitted: Collection[int], detail: str = "") -> None:
        """The run is over: every honest member of the final set must have applied every
        ``submitted`` request (but a vote left over when its change took effect: it can
        never be ordered), and every planned set change must have taken effect."""
        final = self.epochs[-1]
        required = {r for r in submitted if self._required(r, final.number)}
        requests = len(required)
        planned = len(self.rules.changes)
        if final.number < planned:
            self.report(
                "liveness",
                f"{planned - final.number} planned validator-set change(s) never took effect "
                f"(the chain is in epoch {final.number})",
            )
        behind = [
            f"node{i}: {len(self.applied[i] & required)}/{requests}"
            for i in sorted(self.applied)
            if i in final.members and not required <= self.applied[i]
        ]
        if behind:
            self.report(
                "liveness",
                "not everything committed after the heal: "
                + ", ".join(behind)
                + (f" | {detail}" if detail else ""),
            )
