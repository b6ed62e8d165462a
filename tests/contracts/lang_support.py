"""Helpers for the contracts.lang tests: compile a contract body and run it on a Chain."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import pytest

from contracts.abi import AbiValue
from contracts.lang import __all__ as LANG_NAMES
from contracts.lang.compiler import CompiledContract, CompileError, compile_source
from tests.contracts.vm_support import Chain

#: The import line every test contract starts with (line 1), so line numbers in error
#: tests count from the body's first line as line 2.
IMPORTS = "from contracts.lang import " + ", ".join(
    n for n in LANG_NAMES if n not in ("OnChainOnly", "Reverted")
)


def source_of(body: str) -> str:
    return IMPORTS + "\n" + textwrap.dedent(body).strip("\n") + "\n"


def compile_body(body: str) -> CompiledContract:
    return compile_source(source_of(body), "test.py")


def deploy_body(chain: Chain, body: str, args: Sequence[AbiValue] = (), **kw: object) -> bytes:
    """Compile ``body`` (a contract class, helpers...) and deploy it; fails the test if the
    deploy does not succeed."""
    return chain.deployed(compile_body(body).container, args, **kw)


def compile_error(body: str) -> CompileError:
    with pytest.raises(CompileError) as caught:
        compile_body(body)
    return caught.value
