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
* ``liveness``      at the end of the run every honest replica applied every request.

House rule: observes only; it never changes a replica, a message or the course of the run,
and it reports through the ``report(kind, detail)`` callback it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import nacl.bindings
import nacl.exceptions

from crypto.encoding import DecodeError, Value, decode, encode
from crypto.hashing import sha256

#: Candidate signatures kept per (slot, sender): a flood of forgeries cannot grow memory.
MAX_CANDIDATES: Final = 4

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
    def certificate(self) -> Certificate: ...


def faulty_bound(n: int) -> int:
    """The most Byzantine validators n can tolerate: the largest f with 3f < n."""
    return (n - 1) // 3


def quorum_of(n: int) -> int:
    """The smallest q whose any two quorums share f+1 validators: 2q - n >= f + 1."""
    return (n + faulty_bound(n)) // 2 + 1


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
    ) -> None:
        self.chain_id = chain_id
        self.keys = tuple(validators)
        self.n = len(self.keys)
        self.q = quorum_of(self.n)
        self.genesis_height, self.genesis_digest, self.genesis_root = genesis
        self.honest = frozenset(honest)
        self.report = report
        self.decided: dict[int, bytes] = {}
        #: The view whose certificate first decided each height.
        self.decided_view: dict[int, int] = {}
        self.applied: dict[int, set[int]] = {i: set() for i in sorted(self.honest)}
        self.signed: dict[tuple[int, str, int, int], bytes] = {}
        self._verified: dict[tuple[int, str, bytes, bytes], bool] = {}
        self._prefix: dict[str, bytes] = {}
        # What the network carried, unverified until an honest vote leans on it.
        self._pre_prepares: dict[tuple[int, int, bytes], list[tuple[int, bytes, bytes]]] = {}
        self._prepares: dict[tuple[int, int, bytes], dict[int, list[bytes]]] = {}
        self._new_views: dict[tuple[int, int, bytes], list[tuple[int, bytes, bytes]]] = {}
        self._justified: set[tuple[str, int, int, bytes]] = set()
        self._sound_new_views: dict[bytes, str | None] = {}

    # ------------------------------------------------------------------ crypto

    def _valid(self, index: int, kind: str, body: bytes, signature: bytes) -> bool:
        if not 0 <= index < self.n or len(signature) != 64:
            return False
        key = (index, kind, body, signature)
        known = self._verified.get(key)
        if known is None:
            prefix = self._prefix.get(kind)
            if prefix is None:
                prefix = self._prefix[kind] = encode(["quorum-sig", 1, self.chain_id, kind])
            try:
                nacl.bindings.crypto_sign_open(signature + prefix + body, self.keys[index])
                known = True
            except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError):
                known = False
            self._verified[key] = known
        return known

    def _check_envelope(self, value: Value, kind: str) -> tuple[int, bytes]:
        """A signed message embedded in a certificate: (sender, body) once it verifies."""
        f = _record(value, "consensus-msg", 5)
        sender, msg_kind, body, signature = _int(f[0]), f[1], _bytes(f[2]), _bytes(f[3])
        if msg_kind != kind or not self._valid(sender, kind, body, signature):
            raise _Bad(f"a {kind} from validator {sender} whose signature does not verify")
        return sender, body

    # ------------------------------------------------------------------ certificates

    def _commit_certificate(self, view: int, height: int, digest: bytes, votes: Value) -> None:
        body = encode(["commit", 1, view, height, digest])
        signers: set[int] = set()
        for pair in _list(votes):
            items = _list(pair)
            if len(items) != 2:
                raise _Bad("a vote is not [validator, signature]")
            index, signature = _int(items[0]), _bytes(items[1])
            if index in signers:
                raise _Bad(f"validator {index} counted twice")
            if not self._valid(index, "commit", body, signature):
                raise _Bad(f"no valid commit signature of validator {index}")
            signers.add(index)
        if len(signers) < self.q:
            raise _Bad(f"{len(signers)} signers, a quorum is {self.q}")

    def _checkpoint(self, value: Value) -> int:
        f = _list(value)
        if len(f) != 4:
            raise _Bad("malformed checkpoint proof")
        height, block_hash, root = _int(f[0]), _bytes(f[1]), _bytes(f[2])
        messages = _list(f[3])
        if height == self.genesis_height:
            if (block_hash, root, messages) != (self.genesis_digest, self.genesis_root, []):
                raise _Bad("a genesis checkpoint that is not the genesis anchor")
            return height
        expected = encode(["checkpoint", 1, height, block_hash, root])
        signers: set[int] = set()
        for message in messages:
            sender, body = self._check_envelope(message, "checkpoint")
            if body != expected or sender in signers:
                raise _Bad(f"checkpoint {height}: validator {sender} repeated or off-message")
            signers.add(sender)
        if len(signers) < self.q:
            raise _Bad(f"checkpoint {height} has {len(signers)} signers, a quorum is {self.q}")
        known = self.decided.get(height)
        if known is not None and known != block_hash:
            raise _Bad(f"checkpoint {height} certifies a block nobody decided")
        return height

    def _prepared(self, value: Value, before_view: int) -> tuple[int, int, bytes]:
        f = _list(value)
        if len(f) != 2:
            raise _Bad("malformed prepared certificate")
        sender, body = self._check_envelope(f[0], "pre-prepare")
        view, height, digest, _parent = _record(body, "pre-prepare", 4)
        view, height, digest = _int(view), _int(height), _bytes(digest)
        if view >= before_view or sender != view % self.n:
            raise _Bad(f"prepared certificate of view {view}: not its primary's, or not older")
        expected = encode(["prepare", 1, view, height, digest])
        backups: set[int] = set()
        for message in _list(f[1]):
            backup, prepare = self._check_envelope(message, "prepare")
            if prepare != expected or backup == sender or backup in backups:
                raise _Bad(f"prepared certificate at {height}: prepare of {backup} unfit")
            backups.add(backup)
        if len(backups) < self.q - 1:
            raise _Bad(f"prepared certificate at {height}: {len(backups)} prepares")
        return view, height, digest

    def _view_change(self, body: bytes) -> tuple[int, int]:
        """Check every proof in a VIEW-CHANGE; return (new view, highest committed height)."""
        new_view, checkpoint, committed, prepared = _record(body, "view-change", 4)
        new_view = _int(new_view)
        base = self._checkpoint(checkpoint)
        if committed is not None:
            view, height, digest, votes = _list(committed)
            self._commit_certificate(_int(view), _int(height), _bytes(digest), votes)
            base = max(base, _int(height))
        for proof in _list(prepared):
            self._prepared(proof, new_view)
        return new_view, base

    def _new_view_problem(self, sender: int, body: bytes) -> str | None:
        """Why this NEW-VIEW is unsound (None: sound)."""
        digest = sha256(body)
        if digest in self._sound_new_views:
            return self._sound_new_views[digest]
        problem: str | None = None
        try:
            view, changes, pre_prepares = _record(body, "new-view", 3)
            view = _int(view)
            if sender != view % self.n:
                raise _Bad(f"view {view}: from {sender}, not from its primary")
            voters: set[int] = set()
            base = self.genesis_height
            for message in _list(changes):
                voter, vc = self._check_envelope(message, "view-change")
                target, committed = self._view_change(vc)
                if target != view or voter in voters:
                    raise _Bad(f"view {view}: view change of {voter} repeated or for view {target}")
                voters.add(voter)
                base = max(base, committed)
            if len(voters) < self.q:
                raise _Bad(f"view {view}: {len(voters)} view changes, a quorum is {self.q}")
            reissued: dict[int, bytes] = {}
            for message in _list(pre_prepares):
                pp_sender, pp = self._check_envelope(message, "pre-prepare")
                pp_view, height, pp_digest, _parent = _record(pp, "pre-prepare", 4)
                if pp_sender != sender or pp_view != view:
                    raise _Bad(f"view {view}: re-issued pre-prepare not the primary's own")
                reissued[_int(height)] = _bytes(pp_digest)
            earlier = (h for h, v in self.decided_view.items() if h > base and v < view)
            for height in sorted(earlier):
                if reissued.get(height) != self.decided[height]:
                    raise _Bad(
                        f"view {view} (base {base}) drops block {self.decided[height].hex()[:12]} "
                        f"committed at height {height}"
                    )
        except (_Bad, DecodeError, ValueError) as exc:
            problem = str(exc)
        self._sound_new_views[digest] = problem
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
                    if len(candidates) < MAX_CANDIDATES * self.n:
                        candidates.append(entry)
                return
            fields = _record(value, kind, 4 if kind == "pre-prepare" else 3)
            slot = (_int(fields[0]), _int(fields[1]), _bytes(fields[2]))
        except (_Bad, DecodeError, ValueError):
            return
        if kind == "pre-prepare":
            candidates = self._pre_prepares.setdefault(slot, [])
            if len(candidates) < MAX_CANDIDATES * self.n:
                candidates.append((message.sender, message.body, message.signature))
        else:
            signatures = self._prepares.setdefault(slot, {}).setdefault(message.sender, [])
            if len(signatures) < MAX_CANDIDATES and message.signature not in signatures:
                signatures.append(message.signature)

    def _proposal_justified(self, slot: tuple[int, int, bytes]) -> str | None:
        view = slot[0]
        primary = view % self.n
        for sender, body, signature in self._pre_prepares.get(slot, []):
            if sender == primary and self._valid(sender, "pre-prepare", body, signature):
                return None
        problems = []
        for sender, body, signature in self._new_views.get(slot, []):
            if sender != primary or not self._valid(sender, "new-view", body, signature):
                continue
            problem = self._new_view_problem(primary, body)
            if problem is None:
                return None
            problems.append(problem)
        if problems:
            return f"only an unsound NEW-VIEW proposed it ({problems[0]})"
        return f"no pre-prepare validly signed by primary {primary}"

    def _prepared_justified(self, slot: tuple[int, int, bytes]) -> str | None:
        view, height, digest = slot
        primary = view % self.n
        body = encode(["prepare", 1, view, height, digest])
        backups = 0
        for sender, signatures in self._prepares.get(slot, {}).items():
            if sender != primary and any(
                self._valid(sender, "prepare", body, s) for s in signatures
            ):
                backups += 1
        if backups < self.q - 1:
            return f"{backups} valid prepares on the network, a prepared certificate needs {self.q - 1}"
        return None

    # ------------------------------------------------------------------ honest replicas

    def on_send(self, index: int, message: Envelope) -> None:
        """Honest replica ``index`` releases ``message``."""
        if message.sender != index:
            return  # relaying someone else's signed message
        kind = message.kind
        try:
            value = decode(message.body)
            if kind in ("pre-prepare", "prepare", "commit"):
                fields = _record(value, kind, 4 if kind == "pre-prepare" else 3)
                view, height = _int(fields[0]), _int(fields[1])
                self._vote(index, kind, (view, height, _bytes(fields[2])))
            elif kind == "view-change":
                view, height = _int(_record(value, kind, 4)[0]), 0
                try:
                    self._view_change(message.body)
                except (_Bad, ValueError) as exc:
                    self.report("certificate", f"node{index} view change to {view}: {exc}")
            elif kind == "new-view":
                view, height = _int(_record(value, kind, 3)[0]), 0
                problem = self._new_view_problem(index, message.body)
                if problem is not None:
                    what = "carry_over" if "drops block" in problem else "certificate"
                    self.report(what, f"node{index} NEW-VIEW: {problem}")
            else:
                return
        except (_Bad, DecodeError) as exc:
            self.report("double_sign", f"node{index} signed a malformed {kind}: {exc}")
            return
        key = (index, kind, view, height)
        content = sha256(message.body)
        if self.signed.setdefault(key, content) != content:
            self.report(
                "double_sign", f"node{index} signed two different {kind} messages for view {view}"
            )

    def _vote(self, index: int, kind: str, slot: tuple[int, int, bytes]) -> None:
        if kind == "pre-prepare" or (kind, *slot) in self._justified:
            return
        problem = self._proposal_justified(slot)
        if problem is None and kind == "commit":
            problem = self._prepared_justified(slot)
        if problem is not None:
            view, height, digest = slot
            self.report(
                "justified",
                f"node{index} sent {kind.upper()} view {view} height {height} "
                f"{digest.hex()[:12]}: {problem}",
            )
        self._justified.add((kind, *slot))

    def on_commit(
        self,
        index: int,
        block: Committed,
        ids: list[int] | None,
        previous: bytes,
        submitted: set[int],
    ) -> None:
        """Honest replica ``index`` applies ``block`` (request ids parsed from its payload)."""
        known = self.decided.setdefault(block.height, block.digest)
        view = block.certificate().view
        self.decided_view[block.height] = min(self.decided_view.get(block.height, view), view)
        if known != block.digest:
            self.report(
                "agreement",
                f"height {block.height}: node{index} committed {block.digest.hex()[:12]}, "
                f"another honest replica {known.hex()[:12]}",
            )
        if block.parent_digest != previous:
            self.report(
                "hash_chain", f"node{index} height {block.height}: parent is not the previous block"
            )
        applied = self.applied.setdefault(index, set())
        if ids is None:
            self.report(
                "validity", f"node{index} height {block.height}: undecodable or mis-chained payload"
            )
        else:
            if len(set(ids)) != len(ids):
                self.report(
                    "validity", f"node{index} height {block.height}: a request twice in one block"
                )
            for request in ids:
                if request not in submitted:
                    self.report(
                        "validity", f"node{index} committed request {request} nobody submitted"
                    )
                elif request in applied:
                    self.report("validity", f"node{index} committed request {request} twice")
                applied.add(request)
        cert = block.certificate()
        try:
            if (cert.height, cert.digest) != (block.height, block.digest):
                raise _Bad("the certificate is for another block")
            self._commit_certificate(
                cert.view, cert.height, cert.digest, [list(v) for v in cert.votes]
            )
        except _Bad as exc:
            self.report("certificate", f"node{index} height {block.height}: {exc}")

    def finish(self, requests: int, detail: str = "") -> None:
        """The run is over: every honest replica must have applied all ``requests``."""
        behind = [
            f"node{i}: {len(self.applied[i])}/{requests}"
            for i in sorted(self.applied)
            if len(self.applied[i]) < requests
        ]
        if behind:
            self.report(
                "liveness",
                "not everything committed after the heal: "
                + ", ".join(behind)
                + (f" | {detail}" if detail else ""),
            )
