"""`quorum keys`: create and inspect Ed25519 key files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from crypto.keyfile import load_key, read_public_info, save_key
from crypto.keys import PrivateKey
from ledger.cli.output import Output, command_errors, json_option
from ledger.cli.passwords import existing_password, new_password


@click.group()
def keys() -> None:
    """Create and inspect key files (accounts, validators, nodes)."""


def _key_document(path: Path, address: bytes, public_key: bytes, encrypted: bool) -> dict[str, Any]:
    return {
        "file": str(path),
        "address": address.hex(),
        "public_key": public_key.hex(),
        "encrypted": encrypted,
    }


def _print_key(doc: dict[str, Any]) -> Any:
    def render(console: Console) -> None:
        console.print(f"key file    {doc['file']}")
        console.print(f"address     {doc['address']}")
        console.print(f"public key  {doc['public_key']}")
        console.print(f"encrypted   {'yes' if doc['encrypted'] else 'no'}")

    return render


@keys.command("new")
@click.option(
    "--out", "out_path", required=True, type=click.Path(path_type=Path), help="Key file to write."
)
@click.option(
    "--password-file",
    type=click.Path(path_type=Path),
    help="Read the password from this file's first line.",
)
@click.option("--no-password", is_flag=True, help="Store the key unencrypted (test networks only).")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@json_option
@command_errors
def keys_new(
    out_path: Path, password_file: Path | None, no_password: bool, force: bool, as_json: bool
) -> None:
    """Generate a new Ed25519 key and write it to --out (mode 0600)."""
    password = new_password(password_file, no_password)
    key = PrivateKey.generate()
    save_key(out_path, key, password, overwrite=force)
    doc = _key_document(out_path, key.address, key.public_key, password is not None)
    Output(as_json).emit(doc, _print_key(doc))


@keys.command("show")
@click.argument("key_file", type=click.Path(path_type=Path))
@json_option
@command_errors
def keys_show(key_file: Path, as_json: bool) -> None:
    """Show a key file's address and public key (no password needed)."""
    info = read_public_info(key_file)
    doc = _key_document(key_file, info.address, info.public_key, info.encrypted)
    Output(as_json).emit(doc, _print_key(doc))


@keys.command("passwd")
@click.argument("key_file", type=click.Path(path_type=Path))
@click.option(
    "--password-file", type=click.Path(path_type=Path), help="File holding the current password."
)
@click.option(
    "--new-password-file", type=click.Path(path_type=Path), help="File holding the new password."
)
@click.option("--no-password", is_flag=True, help="Store the key unencrypted from now on.")
@json_option
@command_errors
def keys_passwd(
    key_file: Path,
    password_file: Path | None,
    new_password_file: Path | None,
    no_password: bool,
    as_json: bool,
) -> None:
    """Check a key file's password and re-encrypt it under a new one."""
    info = read_public_info(key_file)
    key = load_key(key_file, existing_password(password_file, info.encrypted, key_file))
    password = new_password(new_password_file, no_password)
    save_key(key_file, key, password, overwrite=True)
    doc = _key_document(key_file, key.address, key.public_key, password is not None)
    Output(as_json).emit(doc, _print_key(doc))
