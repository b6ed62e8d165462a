"""Everything that makes a node: chain types, store, node runtime, client and CLI.

The version has one source, ``[project] version`` in pyproject.toml: :func:`version` reads
it from the installed distribution's metadata, or from pyproject.toml itself when this
package runs from a source tree (a checkout on ``PYTHONPATH``, an editable install), so a
checkout never reports the version of some other installed copy. ``ledger.__version__``
is the same string, computed on first use (``quorum --help`` stays fast).
"""

from __future__ import annotations

from typing import Final

DISTRIBUTION: Final = "quorum-ledger"


def version() -> str:
    """This package's version (``0+unknown`` if it was neither installed nor checked out)."""
    import importlib.metadata
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(pyproject.read_text("utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        project = {}
    if project.get("name") == DISTRIBUTION and isinstance(project.get("version"), str):
        return str(project["version"])
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> str:
    if name == "__version__":
        return version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
