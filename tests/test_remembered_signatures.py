"""The consensus signature memo: repeats are free, forgeries are checked every time."""

from __future__ import annotations

import pytest

from crypto import keys
from crypto.keys import PrivateKey
from ledger.engine import assemble
from ledger.engine.assemble import RememberedSignatures

KEY = PrivateKey(bytes([7]) * 32)
CHAIN = "memo-test"


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    seen: list[bytes] = []
    real = keys.verify

    def counting(public_key: bytes, chain_id: str, kind: str, message: bytes, sig: bytes) -> bool:
        seen.append(message)
        return real(public_key, chain_id, kind, message, sig)

    monkeypatch.setattr(assemble.keys, "verify", counting)
    return seen


def test_a_repeat_is_answered_from_memory(calls: list[bytes]) -> None:
    memo = RememberedSignatures()
    sig = KEY.sign(CHAIN, "commit", b"vote")
    assert memo.verify(KEY.public_key, CHAIN, "commit", b"vote", sig)
    assert memo.verify(KEY.public_key, CHAIN, "commit", b"vote", sig)
    assert calls == [b"vote"]


def test_a_forgery_is_refused_every_time(calls: list[bytes]) -> None:
    memo = RememberedSignatures()
    sig = KEY.sign(CHAIN, "commit", b"vote")
    other = PrivateKey(bytes([8]) * 32).public_key
    assert memo.verify(KEY.public_key, CHAIN, "commit", b"vote", sig)
    # The same signature under another key, kind, chain or message is checked, and fails.
    assert not memo.verify(other, CHAIN, "commit", b"vote", sig)
    assert not memo.verify(KEY.public_key, CHAIN, "prepare", b"vote", sig)
    assert not memo.verify(KEY.public_key, "other-chain", "commit", b"vote", sig)
    assert not memo.verify(KEY.public_key, CHAIN, "commit", b"vote!", sig)
    assert not memo.verify(other, CHAIN, "commit", b"vote", sig)
    assert len(calls) == 6


def test_the_memory_is_bounded(calls: list[bytes]) -> None:
    memo = RememberedSignatures(capacity=2)
    msgs = [b"a", b"b", b"c"]
    sigs = [KEY.sign(CHAIN, "commit", m) for m in msgs]
    for m, s in zip(msgs, sigs, strict=True):
        assert memo.verify(KEY.public_key, CHAIN, "commit", m, s)
    assert memo.verify(KEY.public_key, CHAIN, "commit", b"c", sigs[2])  # kept after the reset
    assert memo.verify(KEY.public_key, CHAIN, "commit", b"a", sigs[0])  # forgotten: again
    assert calls == [b"a", b"b", b"c", b"a"]
