"""Encrypted key files (crypto/keyfile.py): format, round trips, atomic writes, refusals.

Tests use scrypt n = 2**10 for speed; one test uses the default cost.
"""

from __future__ import annotations

import json
import os
import re
import stat
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crypto.keyfile as keyfile_module
from crypto.keyfile import (
    DEFAULT_SCRYPT_N,
    MAX_SCRYPT_N,
    KeyFileError,
    KeyFileInfo,
    is_encrypted,
    load_key,
    read_public_info,
    save_key,
)
from crypto.keys import PrivateKey

FAST_N = 2**10
PASSWORD = "correct horse battery staple"


@pytest.fixture
def key() -> PrivateKey:
    return PrivateKey(bytes(range(32)))


@pytest.fixture
def other_key() -> PrivateKey:
    return PrivateKey(bytes(range(100, 132)))


@pytest.fixture
def encrypted(tmp_path: Path, key: PrivateKey) -> Path:
    path = tmp_path / "validator.key"
    save_key(path, key, PASSWORD, scrypt_n=FAST_N)
    return path


@pytest.fixture
def plain(tmp_path: Path, key: PrivateKey) -> Path:
    path = tmp_path / "plain.key"
    save_key(path, key, None)
    return path


def read_json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def write_json(path: Path, doc: Any) -> None:
    """Rewrite a key file in place, keeping it private (mode 0600)."""
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def entries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def umask_zero() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


# --- round trips and the format ---------------------------------------------------------------


def test_encrypted_round_trip(encrypted: Path, key: PrivateKey) -> None:
    loaded = load_key(encrypted, PASSWORD)
    assert loaded == key
    assert loaded.seed == key.seed


def test_unencrypted_round_trip(plain: Path, key: PrivateKey) -> None:
    assert load_key(plain, None) == key


def test_round_trip_with_default_cost(tmp_path: Path) -> None:
    key = PrivateKey.generate()
    path = tmp_path / "default.key"
    save_key(path, key, "pw")
    assert read_json(path)["kdf"]["n"] == DEFAULT_SCRYPT_N == 2**15
    assert load_key(path, "pw") == key


def test_encrypted_file_format(encrypted: Path, key: PrivateKey) -> None:
    doc = read_json(encrypted)
    assert list(doc) == [
        "format",
        "version",
        "address",
        "public_key",
        "encryption",
        "kdf",
        "nonce",
        "ciphertext",
    ]
    assert doc["format"] == "quorum-key"
    assert doc["version"] == 1
    assert doc["address"] == key.address.hex()
    assert doc["public_key"] == key.public_key.hex()
    assert doc["encryption"] == "scrypt-chacha20poly1305"
    assert doc["kdf"]["name"] == "scrypt"
    assert (doc["kdf"]["n"], doc["kdf"]["r"], doc["kdf"]["p"]) == (FAST_N, 8, 1)
    assert len(bytes.fromhex(doc["kdf"]["salt"])) == 16
    assert len(bytes.fromhex(doc["nonce"])) == 12
    assert len(bytes.fromhex(doc["ciphertext"])) == 32 + 16  # seed + Poly1305 tag
    text = encrypted.read_text()
    assert key.seed.hex() not in text
    assert "secret_seed" not in text
    assert text.endswith("\n")


def test_unencrypted_file_format(plain: Path, key: PrivateKey) -> None:
    doc = read_json(plain)
    assert doc == {
        "format": "quorum-key",
        "version": 1,
        "address": key.address.hex(),
        "public_key": key.public_key.hex(),
        "encryption": "none",
        "secret_seed": key.seed.hex(),
    }


def test_each_save_uses_fresh_salt_and_nonce(tmp_path: Path, key: PrivateKey) -> None:
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    save_key(a, key, PASSWORD, scrypt_n=FAST_N)
    save_key(b, key, PASSWORD, scrypt_n=FAST_N)
    doc_a, doc_b = read_json(a), read_json(b)
    assert doc_a["kdf"]["salt"] != doc_b["kdf"]["salt"]
    assert doc_a["nonce"] != doc_b["nonce"]
    assert doc_a["ciphertext"] != doc_b["ciphertext"]


def test_public_info_needs_no_password(encrypted: Path, plain: Path, key: PrivateKey) -> None:
    info = read_public_info(encrypted)
    assert info == KeyFileInfo(address=key.address, public_key=key.public_key, encrypted=True)
    assert read_public_info(plain) == KeyFileInfo(
        address=key.address, public_key=key.public_key, encrypted=False
    )
    assert is_encrypted(encrypted) is True
    assert is_encrypted(plain) is False


def test_accepts_str_and_pathlike(tmp_path: Path, key: PrivateKey) -> None:
    path = str(tmp_path / "str.key")
    save_key(path, key, PASSWORD, scrypt_n=FAST_N)
    assert load_key(path, PASSWORD) == key
    assert read_public_info(path).address == key.address


def test_unicode_password_is_normalised(tmp_path: Path, key: PrivateKey) -> None:
    composed = unicodedata.normalize("NFC", "pässwörd")
    decomposed = unicodedata.normalize("NFD", "pässwörd")
    assert composed != decomposed
    path = tmp_path / "unicode.key"
    save_key(path, key, composed, scrypt_n=FAST_N)
    assert load_key(path, decomposed) == key


def test_no_secret_in_public_info_repr(encrypted: Path, plain: Path, key: PrivateKey) -> None:
    for path in (encrypted, plain):
        text = repr(read_public_info(path)) + str(read_public_info(path))
        assert key.seed.hex() not in text
        assert repr(key.seed) not in text


# --- permissions and atomic writes ------------------------------------------------------------


def test_file_mode_is_0600(encrypted: Path, plain: Path) -> None:
    for path in (encrypted, plain):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_mode_is_0600_even_with_a_permissive_umask(
    tmp_path: Path, key: PrivateKey, umask_zero: None
) -> None:
    path = tmp_path / "k.key"
    save_key(path, key, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_overwrite_keeps_mode_0600(tmp_path: Path, key: PrivateKey, other_key: PrivateKey) -> None:
    path = tmp_path / "k.key"
    path.write_text("old")
    path.chmod(0o644)
    save_key(path, other_key, None, overwrite=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_temporary_files_are_left_behind(tmp_path: Path, key: PrivateKey) -> None:
    save_key(tmp_path / "a.key", key, PASSWORD, scrypt_n=FAST_N)
    save_key(tmp_path / "b.key", key, None)
    save_key(tmp_path / "b.key", key, PASSWORD, overwrite=True, scrypt_n=FAST_N)
    with pytest.raises(KeyFileError):
        save_key(tmp_path / "a.key", key, None)
    assert entries(tmp_path) == ["a.key", "b.key"]


def test_failed_write_leaves_old_file_and_no_temporary(
    tmp_path: Path, key: PrivateKey, other_key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "k.key"
    save_key(path, key, None)
    before = path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(KeyFileError, match=r"cannot write key file .*No space left"):
        save_key(path, other_key, None, overwrite=True)
    assert path.read_bytes() == before
    assert entries(tmp_path) == ["k.key"]


def test_failed_fsync_leaves_no_file(
    tmp_path: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(KeyFileError, match="Input/output error"):
        save_key(tmp_path / "k.key", key, None)
    assert entries(tmp_path) == []


def test_write_goes_through_a_temporary_in_the_same_directory(
    tmp_path: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spying_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        renames.append((os.fspath(src), os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spying_replace)
    path = tmp_path / "k.key"
    save_key(path, key, None, overwrite=True)
    assert len(renames) == 1
    src, dst = renames[0]
    assert Path(dst) == path
    assert Path(src).parent == tmp_path
    assert Path(src) != path
    assert not Path(src).exists()


def test_loose_permissions_refused(encrypted: Path, key: PrivateKey) -> None:
    for mode in (0o644, 0o640, 0o604, 0o660, 0o606):
        encrypted.chmod(mode)
        with pytest.raises(KeyFileError, match="loose permissions") as info:
            load_key(encrypted, PASSWORD)
        assert f"chmod 600 {encrypted}" in str(info.value)
    encrypted.chmod(0o644)
    assert load_key(encrypted, PASSWORD, allow_loose_permissions=True) == key
    # Public information is not secret: no refusal there.
    assert read_public_info(encrypted).address == key.address
    encrypted.chmod(0o400)
    assert load_key(encrypted, PASSWORD) == key


def test_loose_permissions_refused_for_unencrypted_files_too(plain: Path) -> None:
    plain.chmod(0o644)
    with pytest.raises(KeyFileError, match="loose permissions"):
        load_key(plain, None)


# --- refusing to overwrite --------------------------------------------------------------------


def test_refuses_to_overwrite(encrypted: Path, key: PrivateKey, other_key: PrivateKey) -> None:
    before = encrypted.read_bytes()
    with pytest.raises(KeyFileError, match="already exists") as info:
        save_key(encrypted, other_key, PASSWORD, scrypt_n=FAST_N)
    assert isinstance(info.value, FileExistsError)
    assert str(encrypted) in str(info.value)
    assert encrypted.read_bytes() == before
    assert load_key(encrypted, PASSWORD) == key


def test_refuses_to_overwrite_other_things(tmp_path: Path, key: PrivateKey) -> None:
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        save_key(tmp_path / "notes.txt", key, None)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        save_key(tmp_path / "dangling", key, None)
    assert (tmp_path / "notes.txt").read_text() == "precious"
    assert not (tmp_path / "nowhere").exists()


def test_no_clobber_even_when_the_file_appears_during_the_save(
    tmp_path: Path, key: PrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process creates the file after our existence check: we must not replace it.
    path = tmp_path / "race.key"
    real_link = os.link

    def racing_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        Path(dst).write_text("the other process's key")
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    with pytest.raises(FileExistsError):
        save_key(path, key, None)
    assert path.read_text() == "the other process's key"
    assert entries(tmp_path) == ["race.key"]


def test_overwrite_true_replaces(encrypted: Path, other_key: PrivateKey) -> None:
    save_key(encrypted, other_key, "new password", overwrite=True, scrypt_n=FAST_N)
    assert load_key(encrypted, "new password") == other_key
    with pytest.raises(KeyFileError, match="wrong password"):
        load_key(encrypted, PASSWORD)


def test_missing_directory(tmp_path: Path, key: PrivateKey) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        save_key(tmp_path / "no" / "such" / "dir.key", key, None)


# --- passwords --------------------------------------------------------------------------------


def test_wrong_password(encrypted: Path) -> None:
    with pytest.raises(KeyFileError, match=re.escape(f"wrong password for key file {encrypted}")):
        load_key(encrypted, "not the password")
    with pytest.raises(KeyFileError, match="wrong password"):
        load_key(encrypted, PASSWORD + " ")


def test_encrypted_file_needs_a_password(encrypted: Path) -> None:
    with pytest.raises(
        KeyFileError, match=re.escape(f"key file {encrypted} is encrypted: give a password")
    ):
        load_key(encrypted, None)


def test_unencrypted_file_given_a_password(plain: Path) -> None:
    with pytest.raises(KeyFileError, match="is not encrypted"):
        load_key(plain, PASSWORD)


def test_empty_password_refused_on_save(tmp_path: Path, key: PrivateKey) -> None:
    with pytest.raises(KeyFileError, match="empty password"):
        save_key(tmp_path / "k.key", key, "", scrypt_n=FAST_N)
    assert entries(tmp_path) == []


@pytest.mark.parametrize("bad_n", [0, 1, 2**9, 1000, 3 * 2**10, 2**21, True])
def test_save_refuses_bad_scrypt_cost(tmp_path: Path, key: PrivateKey, bad_n: int) -> None:
    with pytest.raises(ValueError, match="scrypt_n"):
        save_key(tmp_path / "k.key", key, PASSWORD, scrypt_n=bad_n)
    assert entries(tmp_path) == []


def test_save_refuses_non_keys(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        save_key(tmp_path / "k.key", bytes(32), None)  # type: ignore[arg-type]


# --- damaged, tampered and foreign files ------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    for call in (lambda: load_key(path, PASSWORD), lambda: read_public_info(path)):
        with pytest.raises(
            KeyFileError, match=re.escape(f"key file {path} does not exist")
        ) as info:
            call()
        assert isinstance(info.value, FileNotFoundError)


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key(tmp_path, PASSWORD)


@pytest.mark.parametrize(
    "content", [b"", b"not json", b"{", b'{"format": ', b"\xff\xfe", b"[" * 100_000]
)
def test_garbage_is_not_json(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "garbage.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="not a key file"):
        load_key(path, PASSWORD)
    with pytest.raises(KeyFileError, match="not a key file"):
        read_public_info(path)


@pytest.mark.parametrize("doc", [[], "quorum-key", 1, None, {}, {"format": "other"}])
def test_not_a_key_file(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "other.key"
    write_json(path, doc)
    with pytest.raises(KeyFileError, match="not a key file"):
        load_key(path, PASSWORD)


def test_huge_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "huge.key"
    path.write_bytes(b" " * (10 * 1024 * 1024))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="larger than"):
        read_public_info(path)


@pytest.mark.parametrize("version", [0, 2, "1", None, True, 1.5])
def test_unsupported_version(encrypted: Path, version: Any) -> None:
    doc = read_json(encrypted)
    doc["version"] = version
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match="unsupported version"):
        load_key(encrypted, PASSWORD)


@pytest.mark.parametrize(
    "field", ["address", "public_key", "encryption", "kdf", "nonce", "ciphertext"]
)
def test_missing_field_in_encrypted_file(encrypted: Path, field: str) -> None:
    doc = read_json(encrypted)
    del doc[field]
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match=f"missing the field '{field}'"):
        load_key(encrypted, PASSWORD)


@pytest.mark.parametrize("field", ["n", "r", "p", "salt"])
def test_missing_kdf_field(encrypted: Path, field: str) -> None:
    doc = read_json(encrypted)
    del doc["kdf"][field]
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match=f"missing the field 'kdf.{field}'"):
        load_key(encrypted, PASSWORD)


def test_missing_secret_seed(plain: Path) -> None:
    doc = read_json(plain)
    del doc["secret_seed"]
    write_json(plain, doc)
    with pytest.raises(KeyFileError, match="missing the field 'secret_seed'"):
        load_key(plain, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("nonce", "zz" * 12, "'nonce' is not valid hex"),
        ("nonce", "00" * 11, "'nonce' must be 12 bytes"),
        ("nonce", 12, "'nonce' must be a hex string"),
        ("ciphertext", "00" * 47, "'ciphertext' must be 48 bytes"),
        ("ciphertext", "0", "'ciphertext' is not valid hex"),
        ("public_key", "00" * 31, "'public_key' must be 32 bytes"),
        ("public_key", "00" * 32, "not a valid Ed25519 public key"),
        ("address", "00" * 19, "'address' must be 20 bytes"),
        ("encryption", "aes-ecb", "unsupported encryption 'aes-ecb'"),
        ("kdf", "scrypt", "'kdf' must be an object"),
    ],
)
def test_malformed_fields(encrypted: Path, field: str, value: Any, message: str) -> None:
    doc = read_json(encrypted)
    doc[field] = value
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match=message):
        load_key(encrypted, PASSWORD)


def test_malformed_secret_seed_is_not_echoed(plain: Path) -> None:
    doc = read_json(plain)
    secret_looking = doc["secret_seed"][:-1] + "g"  # one bad digit in otherwise-secret hex
    doc["secret_seed"] = secret_looking
    write_json(plain, doc)
    with pytest.raises(KeyFileError, match="'secret_seed' is not valid hex") as info:
        load_key(plain, None)
    assert secret_looking[:20] not in str(info.value)


@pytest.mark.parametrize(
    ("kdf_field", "value", "message"),
    [
        ("n", 2**21, "kdf.n=2097152 is not allowed"),
        ("n", MAX_SCRYPT_N * 2**10, "is not allowed"),
        ("n", 3000, "kdf.n=3000 is not allowed"),
        ("n", 2**9, "is not allowed"),
        ("n", 0, "is not allowed"),
        ("n", -(2**15), "is not allowed"),
        ("n", "32768", "is not allowed"),
        ("n", True, "is not allowed"),
        ("r", 16, "kdf.r=16 is not allowed"),
        ("p", 4, "kdf.p=4 is not allowed"),
        ("name", "argon2id", "unsupported key derivation 'argon2id'"),
        ("salt", "00" * 8, "'salt' must be 16 bytes"),
    ],
)
def test_bad_kdf_parameters_refused_before_deriving(
    encrypted: Path,
    kdf_field: str,
    value: Any,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = read_json(encrypted)
    doc["kdf"][kdf_field] = value
    write_json(encrypted, doc)

    def no_derive(*args: object) -> bytes:
        raise AssertionError("scrypt must not run on refused parameters")

    monkeypatch.setattr(keyfile_module, "_derive", no_derive)
    with pytest.raises(KeyFileError, match=message):
        load_key(encrypted, PASSWORD)


def test_kdf_n_is_read_from_the_file(tmp_path: Path, key: PrivateKey) -> None:
    path = tmp_path / "k.key"
    save_key(path, key, PASSWORD, scrypt_n=2**11)
    assert load_key(path, PASSWORD) == key
    doc = read_json(path)
    doc["kdf"]["n"] = 2**12  # a different cost derives a different key
    write_json(path, doc)
    with pytest.raises(KeyFileError, match="wrong password"):
        load_key(path, PASSWORD)


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_tampered_ciphertext_or_nonce(encrypted: Path, field: str) -> None:
    doc = read_json(encrypted)
    raw = bytearray(bytes.fromhex(doc[field]))
    raw[0] ^= 0x01
    doc[field] = raw.hex()
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match=r"wrong password .*or the file is corrupt"):
        load_key(encrypted, PASSWORD)


def test_tampered_salt(encrypted: Path) -> None:
    doc = read_json(encrypted)
    doc["kdf"]["salt"] = "11" * 16
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match="wrong password"):
        load_key(encrypted, PASSWORD)


def test_tampered_public_key_in_encrypted_file(
    encrypted: Path, other_key: PrivateKey, key: PrivateKey
) -> None:
    # Swap in another key's public fields: the associated data no longer matches.
    doc = read_json(encrypted)
    doc["public_key"] = other_key.public_key.hex()
    doc["address"] = other_key.address.hex()
    write_json(encrypted, doc)
    assert read_public_info(encrypted).public_key == other_key.public_key
    with pytest.raises(KeyFileError, match=r"wrong password .*or the file is corrupt"):
        load_key(encrypted, PASSWORD)


def test_public_key_alone_changed_does_not_match_address(
    encrypted: Path, other_key: PrivateKey
) -> None:
    doc = read_json(encrypted)
    doc["public_key"] = other_key.public_key.hex()
    write_json(encrypted, doc)
    with pytest.raises(KeyFileError, match="address does not match its public key"):
        read_public_info(encrypted)
    with pytest.raises(KeyFileError, match="address does not match its public key"):
        load_key(encrypted, PASSWORD)


def test_tampered_public_key_in_unencrypted_file(plain: Path, other_key: PrivateKey) -> None:
    doc = read_json(plain)
    doc["public_key"] = other_key.public_key.hex()
    doc["address"] = other_key.address.hex()
    write_json(plain, doc)
    with pytest.raises(KeyFileError, match="public key does not match its secret key"):
        load_key(plain, None)


def test_ciphertext_cannot_be_moved_to_another_keys_file(
    tmp_path: Path, key: PrivateKey, other_key: PrivateKey
) -> None:
    # Same password, two keys: graft key A's sealed seed onto key B's public header.
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    save_key(a, key, PASSWORD, scrypt_n=FAST_N)
    save_key(b, other_key, PASSWORD, scrypt_n=FAST_N)
    doc_a, doc_b = read_json(a), read_json(b)
    for field in ("kdf", "nonce", "ciphertext"):
        doc_b[field] = doc_a[field]
    write_json(b, doc_b)
    with pytest.raises(KeyFileError):
        load_key(b, PASSWORD)


def test_duplicate_json_fields_refused(encrypted: Path, key: PrivateKey) -> None:
    text = encrypted.read_text()
    text = text.replace('"format": "quorum-key",', '"format": "quorum-key", "format": "x",', 1)
    encrypted.write_text(text)
    with pytest.raises(KeyFileError, match="'format' appears twice"):
        load_key(encrypted, PASSWORD)


def test_unknown_extra_fields_are_ignored(encrypted: Path, key: PrivateKey) -> None:
    doc = read_json(encrypted)
    doc["comment"] = "validator 0"
    write_json(encrypted, doc)
    assert load_key(encrypted, PASSWORD) == key


def test_errors_never_contain_the_secret(plain: Path, key: PrivateKey) -> None:
    messages = []
    mutations: list[dict[str, str]] = [
        {"public_key": PrivateKey(bytes(32)).public_key.hex()},
        {"secret_seed": key.seed.hex() + "00"},
        {"encryption": "scrypt-chacha20poly1305"},
    ]
    for mutation in mutations:
        doc = read_json(plain)
        doc.update(mutation)
        path = plain.with_suffix(".bad")
        write_json(path, doc)
        with pytest.raises(KeyFileError) as info:
            load_key(path, None)
        messages.append(str(info.value) + repr(info.value))
        path.unlink()
    for text in messages:
        assert key.seed.hex() not in text
