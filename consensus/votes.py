"""The signed body of a COMMIT vote, shared by the consensus core and commit certificates.

A commit certificate is nothing but q COMMIT signatures over the same body, so the body
is defined once, here, and both sides use it.

House rule: this body never changes without a new record version — every commit
certificate ever issued is signed over it.
"""

from __future__ import annotations

from typing import Final

from crypto.encoding import encode_record

COMMIT_KIND: Final = "commit"
COMMIT_RECORD_VERSION: Final = 1


def commit_vote_body(view: int, height: int, block_hash: bytes) -> bytes:
    """Bytes a validator signs (under kind ``commit``) to commit ``block_hash`` at ``height``."""
    return encode_record("commit", COMMIT_RECORD_VERSION, [view, height, block_hash])
