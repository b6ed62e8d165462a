"""Getting a key-file password from a person or a file, never from the command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

import click

from ledger.cli.output import EXIT_USAGE, CommandError

MAX_PASSWORD_FILE_BYTES: Final = 4096
MIN_PASSWORD_CHARS: Final = 8


def read_password_file(path: Path) -> str:
    """The first line of ``path`` (without its newline) is the password."""
    try:
        raw = path.read_bytes()[: MAX_PASSWORD_FILE_BYTES + 1]
    except FileNotFoundError:
        raise CommandError(f"password file {path} does not exist") from None
    except OSError as exc:
        raise CommandError(f"cannot read password file {path}: {exc.strerror}") from None
    if len(raw) > MAX_PASSWORD_FILE_BYTES:
        raise CommandError(f"password file {path} is larger than {MAX_PASSWORD_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"password file {path} is not UTF-8 text") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise CommandError(f"password file {path} is empty")
    return password


def new_password(password_file: Path | None, no_password: bool) -> str | None:
    """Password for a new key file: from a file, a prompt (twice), or none when asked."""
    if password_file is not None and no_password:
        raise CommandError("give either --password-file or --no-password, not both", EXIT_USAGE)
    if no_password:
        return None
    if password_file is not None:
        password = read_password_file(password_file)
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        raise CommandError(
            "no password: give --password-file FILE, or --no-password for an unencrypted key",
            EXIT_USAGE,
        )
    if len(password) < MIN_PASSWORD_CHARS:
        raise CommandError(f"password is shorter than {MIN_PASSWORD_CHARS} characters")
    return password


def existing_password(password_file: Path | None, encrypted: bool, key_path: Path) -> str | None:
    """Password to open an existing key file (prompted only when the file is encrypted)."""
    if not encrypted:
        return None
    if password_file is not None:
        return read_password_file(password_file)
    if sys.stdin.isatty():
        return str(click.prompt(f"Password for {key_path}", hide_input=True, err=True))
    raise CommandError(f"key file {key_path} is encrypted: give --password-file FILE", EXIT_USAGE)
