"""Key files: an Ed25519 private key on disk, encrypted under a password.

A key file is a small JSON document::

    {"format": "quorum-key", "version": 1,
     "address": "<hex>", "public_key": "<hex>",
     "encryption": "scrypt-chacha20poly1305",
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": "<16 bytes hex>"},
     "nonce": "<12 bytes hex>", "ciphertext": "<48 bytes hex>"}

The 32-byte seed is sealed with ChaCha20-Poly1305 under a key that scrypt derives from the
password. The AEAD's associated data binds the format, version, encryption scheme and public
key, so the public fields cannot be swapped onto another key's ciphertext. With
``"encryption": "none"`` (the CLI's ``--no-password``) the seed is stored in the clear as
``"secret_seed"``; such files are for throwaway testnets only.

The address and public key are readable without the password (:func:`read_public_info`).
Files are written atomically (temporary file with mode 0600 in the same directory, fsync,
rename, fsync of the directory) and are refused on load when other users can read them.
Every failure is a :class:`KeyFileError` whose message says what is wrong in words a
person can act on; no message, repr or str here ever contains secret material.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from crypto.encoding import encode
from crypto.keys import (
    PUBLIC_KEY_SIZE,
    SEED_SIZE,
    InvalidKeyError,
    PrivateKey,
    address_of,
    check_public_key,
)

FORMAT: Final = "quorum-key"
VERSION: Final = 1
ENCRYPTION_SCRYPT_CHACHA: Final = "scrypt-chacha20poly1305"
ENCRYPTION_NONE: Final = "none"

#: scrypt cost for new files: 2**15 with r=8 takes 32 MiB and ~0.1 s, once per load.
DEFAULT_SCRYPT_N: Final = 2**15
#: Bounds on n accepted when saving or loading. The upper bound (1 GiB of memory at r=8)
#: stops a crafted file from exhausting memory or time; the lower keeps files meaningful.
MIN_SCRYPT_N: Final = 2**10
MAX_SCRYPT_N: Final = 2**20
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_SIZE: Final = 16
NONCE_SIZE: Final = 12
_KEY_SIZE: Final = 32
_TAG_SIZE: Final = 16
#: Real key files are well under 1 KiB; anything much bigger is not one.
MAX_KEY_FILE_BYTES: Final = 64 * 1024

StrPath = str | os.PathLike[str]


class KeyFileError(Exception):
    """A key file cannot be written, read, parsed or decrypted. The message says why."""


class KeyFileNotFoundError(KeyFileError, FileNotFoundError):
    """The key file does not exist."""


class KeyFileExistsError(KeyFileError, FileExistsError):
    """Refusing to replace an existing key file (pass ``overwrite=True`` to allow it)."""


@dataclass(frozen=True, slots=True)
class KeyFileInfo:
    """What a key file reveals without its password."""

    address: bytes
    public_key: bytes
    encrypted: bool


# --- writing -------------------------------------------------------------------------------


def save_key(
    path: StrPath,
    key: PrivateKey,
    password: str | None,
    *,
    overwrite: bool = False,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> None:
    """Write ``key`` to ``path``, encrypted under ``password`` (``None``: unencrypted).

    Refuses to replace an existing file unless ``overwrite`` is true. ``scrypt_n`` (a power
    of two in ``[MIN_SCRYPT_N, MAX_SCRYPT_N]``) trades load time for resistance to guessing.
    """
    if not isinstance(key, PrivateKey):
        raise TypeError(f"expected a PrivateKey, got {type(key).__name__}")
    target = Path(path)
    if not overwrite and os.path.lexists(target):
        raise KeyFileExistsError(
            f"key file {target} already exists; refusing to overwrite it "
            "(choose another path, or remove the old file if you no longer need that key)"
        )
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "address": key.address.hex(),
        "public_key": key.public_key.hex(),
    }
    if password is None:
        doc["encryption"] = ENCRYPTION_NONE
        doc["secret_seed"] = key.seed.hex()
    else:
        if not isinstance(password, str):
            raise TypeError("password must be a str or None")
        if not password:
            raise KeyFileError(
                "refusing to encrypt a key file with an empty password; "
                "give a real password, or save it unencrypted (--no-password)"
            )
        if isinstance(scrypt_n, bool) or not isinstance(scrypt_n, int) or not _valid_n(scrypt_n):
            raise ValueError(
                f"scrypt_n must be a power of two between {MIN_SCRYPT_N} and {MAX_SCRYPT_N}"
            )
        salt = secrets.token_bytes(SALT_SIZE)
        nonce = secrets.token_bytes(NONCE_SIZE)
        aead_key = _derive(_password_bytes(password, target), salt, scrypt_n)
        sealed = ChaCha20Poly1305(aead_key).encrypt(
            nonce, key.seed, _associated_data(ENCRYPTION_SCRYPT_CHACHA, key.public_key)
        )
        doc["encryption"] = ENCRYPTION_SCRYPT_CHACHA
        doc["kdf"] = {
            "name": "scrypt",
            "n": scrypt_n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": salt.hex(),
        }
        doc["nonce"] = nonce.hex()
        doc["ciphertext"] = sealed.hex()
    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    _write_atomically(target, data, overwrite=overwrite)


def _write_atomically(target: Path, data: bytes, *, overwrite: bool) -> None:
    directory = target.parent
    tmp = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except FileNotFoundError:
        raise KeyFileError(
            f"cannot write key file {target}: directory {directory} does not exist"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot write key file {target}: {exc.strerror or exc}") from None
    try:
        try:
            with os.fdopen(fd, "wb") as fh:
                if hasattr(os, "fchmod"):
                    os.fchmod(fh.fileno(), 0o600)  # exactly 0600, whatever the umask
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            if overwrite:
                os.replace(tmp, target)
            else:
                _publish_without_clobbering(tmp, target)
        except KeyFileError:
            raise
        except OSError as exc:
            raise KeyFileError(f"cannot write key file {target}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)  # gone already after a rename; a second name after a link
    _fsync_directory(directory)


def _publish_without_clobbering(tmp: Path, target: Path) -> None:
    """Give ``tmp`` the name ``target`` unless something already has it (atomically)."""
    exists = KeyFileExistsError(f"key file {target} already exists; refusing to overwrite it")
    try:
        os.link(tmp, target)  # fails if target exists, with no window for a race
    except FileExistsError:
        raise exists from None
    except OSError:
        # Filesystems without hard links: fall back to check-then-rename.
        if os.path.lexists(target):
            raise exists from None
        os.replace(tmp, target)


def _fsync_directory(directory: Path) -> None:
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the rename itself is atomic
    finally:
        os.close(dfd)


# --- reading -------------------------------------------------------------------------------


def read_public_info(path: StrPath) -> KeyFileInfo:
    """Address, public key and whether the file is encrypted. Needs no password."""
    target = Path(path)
    doc = _read_document(target, check_permissions=False)
    return _public_info(target, doc)


def is_encrypted(path: StrPath) -> bool:
    """True when the key file needs a password to load."""
    return read_public_info(path).encrypted


def load_key(
    path: StrPath, password: str | None, *, allow_loose_permissions: bool = False
) -> PrivateKey:
    """Read and decrypt a key file. ``password`` must be ``None`` exactly when it is unencrypted.

    Refuses files that other users may read or write, unless ``allow_loose_permissions``.
    """
    target = Path(path)
    doc = _read_document(target, check_permissions=not allow_loose_permissions)
    info = _public_info(target, doc)
    if info.encrypted:
        if password is None:
            raise KeyFileError(f"key file {target} is encrypted: give a password")
        if not isinstance(password, str):
            raise TypeError("password must be a str or None")
        seed = _decrypt(target, doc, info, password)
    else:
        if password is not None:
            raise KeyFileError(
                f"key file {target} is not encrypted, but a password was given; "
                "load it without a password (--no-password)"
            )
        seed = _hex_field(target, doc, "secret_seed", SEED_SIZE)
    key = PrivateKey(seed)
    if key.public_key != info.public_key:
        raise KeyFileError(
            f"key file {target} is corrupt or was tampered with: its public key does not "
            "match its secret key"
        )
    return key


def _read_document(target: Path, *, check_permissions: bool) -> dict[str, Any]:
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise KeyFileNotFoundError(f"key file {target} does not exist") from None
    except PermissionError:
        raise KeyFileError(f"cannot read key file {target}: permission denied") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)  # the file we opened, not whatever the name points to later
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {target} is not a regular file")
        if check_permissions and os.name == "posix" and st.st_mode & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise KeyFileError(
                f"key file {target} has loose permissions ({mode:04o}): other users may "
                f"read or change it. Restrict it with `chmod 600 {target}`"
            )
        chunks = []
        remaining = MAX_KEY_FILE_BYTES + 1
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        raw = b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {target}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(
            f"{target} is not a key file: it is larger than {MAX_KEY_FILE_BYTES} bytes"
        )
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except _DuplicateKeyError as exc:
        raise KeyFileError(f"key file {target} is malformed: field {exc} appears twice") from None
    except (ValueError, RecursionError):
        raise KeyFileError(f"{target} is not a key file: it is not valid JSON") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{target} is not a key file: expected a JSON object")
    if doc.get("format") != FORMAT:
        raise KeyFileError(f"{target} is not a key file: its format is not {FORMAT!r}")
    version = doc.get("version")
    if isinstance(version, bool) or version != VERSION:
        raise KeyFileError(
            f"key file {target} has unsupported version {version!r} (this program reads "
            f"version {VERSION})"
        )
    return doc


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in pairs:
        if name in out:
            raise _DuplicateKeyError(repr(name))
        out[name] = value
    return out


def _require(target: Path, doc: dict[str, Any], name: str) -> Any:
    if name not in doc:
        raise KeyFileError(f"key file {target} is missing the field {name!r}")
    return doc[name]


def _hex_field(target: Path, doc: dict[str, Any], name: str, size: int) -> bytes:
    """Parse a fixed-size hex field. Never echoes the value: it may be secret."""
    text = _require(target, doc, name)
    if not isinstance(text, str):
        raise KeyFileError(f"key file {target}: field {name!r} must be a hex string")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyFileError(f"key file {target}: field {name!r} is not valid hex") from None
    if len(raw) != size:
        raise KeyFileError(
            f"key file {target}: field {name!r} must be {size} bytes ({2 * size} hex "
            f"digits), got {len(raw)}"
        )
    return raw


def _public_info(target: Path, doc: dict[str, Any]) -> KeyFileInfo:
    public_key = _hex_field(target, doc, "public_key", PUBLIC_KEY_SIZE)
    try:
        check_public_key(public_key)
    except InvalidKeyError:
        raise KeyFileError(
            f"key file {target}: field 'public_key' is not a valid Ed25519 public key"
        ) from None
    address = _hex_field(target, doc, "address", len(address_of(public_key)))
    if address != address_of(public_key):
        raise KeyFileError(
            f"key file {target} is corrupt or was tampered with: its address does not "
            "match its public key"
        )
    encryption = _require(target, doc, "encryption")
    if encryption not in (ENCRYPTION_SCRYPT_CHACHA, ENCRYPTION_NONE):
        raise KeyFileError(
            f"key file {target} uses unsupported encryption {encryption!r} (known: "
            f"{ENCRYPTION_SCRYPT_CHACHA!r}, {ENCRYPTION_NONE!r})"
        )
    return KeyFileInfo(
        address=address, public_key=public_key, encrypted=encryption != ENCRYPTION_NONE
    )


def _scrypt_params(target: Path, doc: dict[str, Any]) -> tuple[bytes, int]:
    kdf = _require(target, doc, "kdf")
    if not isinstance(kdf, dict):
        raise KeyFileError(f"key file {target}: field 'kdf' must be an object")
    if kdf.get("name") != "scrypt":
        raise KeyFileError(f"key file {target}: unsupported key derivation {kdf.get('name')!r}")
    for name in ("n", "r", "p", "salt"):
        if name not in kdf:
            raise KeyFileError(f"key file {target} is missing the field 'kdf.{name}'")
    n = kdf["n"]
    if isinstance(n, bool) or not isinstance(n, int) or not _valid_n(n):
        raise KeyFileError(
            f"key file {target}: scrypt cost kdf.n={n!r} is not allowed (it must be a power "
            f"of two between {MIN_SCRYPT_N} and {MAX_SCRYPT_N})"
        )
    for name, want in (("r", SCRYPT_R), ("p", SCRYPT_P)):
        got = kdf[name]
        if isinstance(got, bool) or got != want:
            raise KeyFileError(
                f"key file {target}: scrypt parameter kdf.{name}={got!r} is not allowed "
                f"(version {VERSION} files use {want})"
            )
    salt = _hex_field(target, kdf, "salt", SALT_SIZE)
    return salt, n


def _decrypt(target: Path, doc: dict[str, Any], info: KeyFileInfo, password: str) -> bytes:
    salt, n = _scrypt_params(target, doc)
    nonce = _hex_field(target, doc, "nonce", NONCE_SIZE)
    sealed = _hex_field(target, doc, "ciphertext", SEED_SIZE + _TAG_SIZE)
    aead_key = _derive(_password_bytes(password, target), salt, n)
    try:
        return ChaCha20Poly1305(aead_key).decrypt(
            nonce, sealed, _associated_data(ENCRYPTION_SCRYPT_CHACHA, info.public_key)
        )
    except InvalidTag:
        raise KeyFileError(
            f"wrong password for key file {target} (or the file is corrupt)"
        ) from None


# --- helpers -------------------------------------------------------------------------------


def _valid_n(n: int) -> bool:
    return MIN_SCRYPT_N <= n <= MAX_SCRYPT_N and n & (n - 1) == 0


def _password_bytes(password: str, target: Path) -> bytes:
    # NFC so that the same password typed on systems that compose accents differently
    # derives the same key.
    try:
        return unicodedata.normalize("NFC", password).encode("utf-8")
    except UnicodeEncodeError:
        raise KeyFileError(f"the password for key file {target} is not valid text") from None


def _derive(password: bytes, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=_KEY_SIZE, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(password)


def _associated_data(encryption: str, public_key: bytes) -> bytes:
    """What the AEAD authenticates besides the seed: the file's identity and public key."""
    return encode([FORMAT, VERSION, encryption, public_key])
