"""How commands talk to people and programs, and the exit codes of DESIGN section 6.

With ``--json`` a command prints exactly one JSON document on stdout and nothing else
there; otherwise it prints for a person. Errors that are the user's (a missing file, a
wrong password, a broken genesis) become a one-line message and an exit code, never a
traceback; anything else is our bug and is allowed to crash loudly.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, Final, NoReturn, TypeVar

import click
from rich.console import Console

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_REJECTED: Final = 3
EXIT_FAILED: Final = 4
EXIT_UNREACHABLE: Final = 5
#: The node's answer did not verify against the genesis (a bad proof or certificate).
EXIT_UNVERIFIED: Final = 6


class CommandError(Exception):
    """A user-facing failure: ``message`` is printed, ``exit_code`` returned."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details = details


class Output:
    """Where a command's results go: JSON on stdout, or rich text for a person."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(highlight=False, soft_wrap=True)
        self.err_console = Console(stderr=True, highlight=False, soft_wrap=True)

    def emit(self, document: dict[str, Any], human: Callable[[Console], None]) -> None:
        """Print ``document`` as JSON, or call ``human`` to render it for a person."""
        if self.as_json:
            click.echo(json.dumps(document, indent=2, sort_keys=False))
        else:
            human(self.console)

    def note(self, message: str) -> None:
        """Progress for a person, on stderr; silent under --json."""
        if not self.as_json:
            self.err_console.print(message)

    def fail(self, error: CommandError) -> NoReturn:
        if self.as_json:
            click.echo(json.dumps({"error": error.message, **error.details}, indent=2))
        click.echo(f"error: {error.message}", err=True)
        sys.exit(error.exit_code)


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of text."
)


F = TypeVar("F", bound=Callable[..., Any])

#: Exceptions that describe the user's input, never our bug, as (module, class). They are
#: looked up only in modules already imported: an exception of a module that was never
#: imported cannot have been raised, and importing them all here would load sqlalchemy
#: (``ledger.chain.store_check``) into every command.
USER_ERRORS: Final[tuple[tuple[str, str], ...]] = (
    ("crypto.keyfile", "KeyFileError"),
    ("genesis.document", "GenesisError"),
    ("ledger.config", "ConfigError"),
    ("ledger.chain.store_check", "StoreError"),
)


def user_errors() -> tuple[type[Exception], ...]:
    """The classes of :data:`USER_ERRORS` whose modules are loaded."""
    return tuple(
        getattr(sys.modules[module], name) for module, name in USER_ERRORS if module in sys.modules
    )


def command_errors(func: F) -> F:
    """Turn user-facing exceptions into a message and an exit code (JSON-aware)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = Output(bool(kwargs.get("as_json")))
        try:
            return func(*args, **kwargs)
        except CommandError as exc:
            out.fail(exc)
        except user_errors() as exc:
            problems = getattr(exc, "problems", None)
            error = CommandError(str(exc))
            if problems:
                error.details["problems"] = list(problems)
            out.fail(error)
        except OSError as exc:
            # The environment refused (permissions, disk full, a path that is a file...).
            where = f"{exc.filename}: " if exc.filename else ""
            out.fail(CommandError(f"{where}{exc.strerror or exc}"))

    return wrapper  # type: ignore[return-value]
