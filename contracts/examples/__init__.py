"""Example contracts, shipped as assembly source: token, lock, registry and vote.

The ``.qasm`` files are package data (pyproject: ``contracts = ["examples/*.qasm"]``).
Reading them is the only file access anywhere in ``contracts/``: it reads immutable
source that ships with the code, never state, and the VM itself never calls it.
``quorum contract examples`` lists them and ``quorum contract deploy NAME`` deploys one by
name, from an installed wheel as from a checkout.
"""

from __future__ import annotations

import pkgutil
from typing import Final

from contracts.assembler import assemble

#: The example names, each a ``<name>.qasm`` file next to this module.
EXAMPLES: Final = ("lock", "registry", "token", "vote")


def source(name: str) -> str:
    """The assembly source of example ``name``."""
    if name not in EXAMPLES:
        raise KeyError(f"no example contract {name!r} (have: {', '.join(EXAMPLES)})")
    data = pkgutil.get_data(__name__, f"{name}.qasm")
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
