"""The replica's message log: one :class:`Slot` per height of the current view, and the
CHECKPOINT votes per checkpoint height.

Votes are kept by sender, one per sender per slot: a second vote with the same content is a
duplicate, one with different content is equivocation (the first one stays). Iteration
order never depends on hashing: dicts are keyed by ints and every list handed out is
sorted by validator index.
"""

from __future__ import annotations

from dataclasses import dataclass

from consensus.messages import (
    Checkpoint,
    CheckpointProof,
    CommitProof,
    PrePrepare,
    SignedMessage,
    ViewChange,
)

NEW = "new"
DUPLICATE = "duplicate"
EQUIVOCATION = "equivocation"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The driver's answer for one block; ``parent`` keeps the live set ancestor-closed."""

    ok: bool
    state_root: bytes
    parent: bytes


@dataclass(frozen=True, slots=True)
class CatchupBlock:
    digest: bytes
    parent_digest: bytes
    payload: bytes
    certificate: CommitProof


class Slot:
    """Everything about one height in the current view."""

    __slots__ = (
        "commits",
        "fixed_by_new_view",
        "header",
        "payload_requested",
        "pre_prepare",
        "prepared",
        "prepares",
        "validation_requested",
    )

    def __init__(self) -> None:
        self.header: PrePrepare | None = None
        #: The primary's signed header, without payload (payloads live in Replica.payloads).
        self.pre_prepare: SignedMessage | None = None
        #: The header was fixed by the NEW-VIEW: no other pre-prepare is accepted here.
        self.fixed_by_new_view = False
        self.prepares: dict[int, tuple[bytes, SignedMessage]] = {}
        self.commits: dict[int, tuple[bytes, bytes]] = {}
        self.prepared = False
        self.validation_requested = False
        self.payload_requested = False

    @property
    def digest(self) -> bytes | None:
        return None if self.header is None else self.header.digest

    def add_prepare(self, sender: int, digest: bytes, message: SignedMessage) -> str:
        known = self.prepares.get(sender)
        if known is None:
            self.prepares[sender] = (digest, message)
            return NEW
        return DUPLICATE if known[0] == digest else EQUIVOCATION

    def add_commit(self, sender: int, digest: bytes, signature: bytes) -> str:
        known = self.commits.get(sender)
        if known is None:
            self.commits[sender] = (digest, signature)
            return NEW
        return DUPLICATE if known[0] == digest else EQUIVOCATION

    def prepare_messages(self, digest: bytes, primary: int) -> list[SignedMessage]:
        """Matching PREPAREs from backups, in validator order."""
        return [m for s, (d, m) in sorted(self.prepares.items()) if d == digest and s != primary]

    def commit_votes(self, digest: bytes) -> list[tuple[int, bytes]]:
        """Matching COMMIT signatures, in validator order."""
        return [(s, sig) for s, (d, sig) in sorted(self.commits.items()) if d == digest]

    def commit_digests(self) -> list[bytes]:
        """Distinct digests with commit votes, in order of first vote by validator index."""
        seen: list[bytes] = []
        for _, (digest, _sig) in sorted(self.commits.items()):
            if digest not in seen:
                seen.append(digest)
        return seen


class CheckpointVotes:
    """CHECKPOINT messages by height and sender, until a quorum agrees (a stable checkpoint)."""

    def __init__(self) -> None:
        self.by_height: dict[int, dict[int, tuple[Checkpoint, SignedMessage]]] = {}

    def add(self, message: SignedMessage, body: Checkpoint) -> str:
        votes = self.by_height.setdefault(body.height, {})
        known = votes.get(message.sender)
        if known is None:
            votes[message.sender] = (body, message)
            return NEW
        return DUPLICATE if known[0] == body else EQUIVOCATION

    def proof(self, height: int, quorum: int) -> CheckpointProof | None:
        """A stable-checkpoint certificate at ``height`` if q validators agree on one body."""
        votes = self.by_height.get(height, {})
        for _, (body, _msg) in sorted(votes.items()):
            matching = [m for _, (b, m) in sorted(votes.items()) if b == body]
            if len(matching) >= quorum:
                return CheckpointProof(
                    body.height, body.block_hash, body.state_root, tuple(matching[:quorum])
                )
        return None

    def prune(self, stable_height: int) -> None:
        for height in [h for h in self.by_height if h <= stable_height]:
            del self.by_height[height]

    def size(self) -> int:
        return sum(len(v) for v in self.by_height.values())


class ViewChangeVotes:
    """Valid VIEW-CHANGEs by sender and view, for views at or above ours.

    A few views are kept per sender (the highest ones): a quorum for view v must not
    vanish because one of its members has already moved on to v+1.
    """

    def __init__(self, per_sender: int) -> None:
        self.per_sender = per_sender
        self.by_sender: dict[int, dict[int, tuple[SignedMessage, ViewChange]]] = {}

    def get(self, sender: int, view: int) -> tuple[SignedMessage, ViewChange] | None:
        return self.by_sender.get(sender, {}).get(view)

    def add(self, sender: int, message: SignedMessage, body: ViewChange) -> None:
        views = self.by_sender.setdefault(sender, {})
        views[body.new_view] = (message, body)
        while len(views) > self.per_sender:
            del views[min(views)]

    def for_view(self, view: int) -> list[tuple[int, SignedMessage, ViewChange]]:
        """Senders with a VIEW-CHANGE for exactly ``view``, in validator order."""
        found = []
        for sender in sorted(self.by_sender):
            entry = self.by_sender[sender].get(view)
            if entry is not None:
                found.append((sender, entry[0], entry[1]))
        return found

    def senders_at_or_above(self, view: int) -> list[int]:
        return [s for s in sorted(self.by_sender) if any(v >= view for v in self.by_sender[s])]

    def highest_views(self, above: int, exclude: int) -> list[int]:
        """Each other sender's highest view above ``above``, highest first."""
        highest = [
            max(views) for s, views in sorted(self.by_sender.items()) if s != exclude and views
        ]
        return sorted((v for v in highest if v > above), reverse=True)

    def prune_below(self, view: int) -> None:
        for sender in sorted(self.by_sender):
            views = self.by_sender[sender]
            for old in [v for v in views if v < view]:
                del views[old]
            if not views:
                del self.by_sender[sender]

    def size(self) -> int:
        return sum(len(v) for v in self.by_sender.values())
