"""Example contracts: token, lock, registry and vote, each twice -- hand-written assembly
(``<name>.qasm``) and Python (``<name>.py``, compiled by contracts.lang), with the same
ABI, events and errors.

The ``.qasm`` files are package data (pyproject: ``contracts = ["examples/*.qasm"]``); the
``.py`` files ship as modules of this package (importing one only defines its class).
Reading them is the only file access anywhere in ``contracts/``: it reads immutable
source that ships with the code, never state, and the VM itself never calls it.
``quorum contract examples`` lists them and ``quorum contract deploy NAME`` deploys one by
name, from an installed wheel as from a checkout.
"""

from __future__ import annotations

import pkgutil
from typing import Final

from contracts.assembler import assemble
from contracts.lang.compiler import compile_source

#: The example names, each a ``<name>.qasm`` file next to this module.
EXAMPLES: Final = ("lock", "registry", "token", "vote")


#: The example languages, by file suffix.
LANGUAGES: Final = ("qasm", "py")


def source(name: str, language: str = "qasm") -> str:
    """The source of example ``name``: assembly (``qasm``) or Python (``py``)."""
    if name not in EXAMPLES or language not in LANGUAGES:
        raise KeyError(f"no example contract {name!r} (have: {', '.join(EXAMPLES)})")
    data = pkgutil.get_data(__name__, f"{name}.{language}")
    if data is None:
        raise LookupError(f"example {name!r} is not installed with the package")
    return data.decode("utf-8")


def summary(name: str) -> str:
    """The one-line description that opens example ``name`` (``; token: <summary>``)."""
    first = source(name).split("\n", 1)[0].lstrip(";").strip()
    prefix = f"{name}:"
    return first[len(prefix) :].strip() if first.startswith(prefix) else first


def load(name: str) -> bytes:
    """Example ``name`` assembled into a code container, ready to deploy."""
    return assemble(source(name))


def load_python(name: str) -> bytes:
    """The Python version of example ``name`` compiled into a code container."""
    return compile_source(source(name, "py"), f"{name}.py").container
