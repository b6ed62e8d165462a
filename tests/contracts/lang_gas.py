"""Gas of the example contracts, compiled from Python against hand-written assembly.

Runs the same calls on both versions of every example and prints the table that
docs/CONTRACTS.md shows (tests/contracts/test_lang_examples.py checks the two agree):

    PYTHONPATH=. python -m tests.contracts.lang_gas
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.abi import AbiValue
from tests.contracts.vm_support import ALICE, BOB, CAROL, DAVE, Chain, example_code

#: One step of a scenario: (label, method or "deploy", args, sender, value).
Step = tuple[str, str, tuple[AbiValue, ...], bytes, int]

SCENARIOS: dict[str, list[Step]] = {
    "token": [
        ("deploy", "deploy", (1000,), ALICE, 0),
        ("transfer", "transfer", (BOB, 250), ALICE, 0),
        ("balance_of", "balance_of", (ALICE,), ALICE, 0),
        ("total_supply", "total_supply", (), ALICE, 0),
    ],
    "lock": [
        ("deploy", "deploy", (), ALICE, 0),
        ("acquire", "acquire", ("db", 10), ALICE, 0),
        ("holder", "holder", ("db",), ALICE, 0),
        ("expiry", "expiry", ("db",), ALICE, 0),
        ("release", "release", ("db",), ALICE, 0),
    ],
    "registry": [
        ("deploy", "deploy", (), ALICE, 0),
        ("set (new key)", "set", ("name", b"alice"), ALICE, 0),
        ("set (update)", "set", ("name", b"alicia"), ALICE, 0),
        ("get", "get", ("name",), ALICE, 0),
        ("transfer_ownership", "transfer_ownership", ("name", BOB), ALICE, 0),
        ("delete", "delete", ("name",), BOB, 0),
    ],
    "vote": [
        ("deploy (3 members)", "deploy", (2, ALICE, BOB, CAROL), ALICE, 1000),
        ("propose_transfer", "propose_transfer", (DAVE, 300), ALICE, 0),
        ("approve (executes)", "approve", (0,), BOB, 0),
        ("is_member", "is_member", (CAROL,), ALICE, 0),
    ],
}


@dataclass(frozen=True)
class Row:
    contract: str
    step: str
    compiled: int
    hand_written: int

    @property
    def ratio(self) -> str:
        return f"{self.compiled / self.hand_written:.2f}"


def _run(name: str, language: str) -> list[int]:
    chain = Chain()
    chain.fund(ALICE, 10_000)
    address = b""
    gas: list[int] = []
    for _label, method, args, sender, value in SCENARIOS[name]:
        if method == "deploy":
            address, result = chain.deploy(
                example_code(name, language), args, sender=sender, value=value
            )
        else:
            result = chain.call(address, method, *args, sender=sender, value=value)
        assert result.ok, (name, language, method, result.error)
        gas.append(result.gas_used)
    return gas


def measure() -> list[Row]:
    rows = []
    for name, steps in SCENARIOS.items():
        compiled, hand = _run(name, "py"), _run(name, "qasm")
        rows += [Row(name, step[0], c, h) for step, c, h in zip(steps, compiled, hand, strict=True)]
    return rows


def table(rows: list[Row]) -> list[str]:
    """The markdown table of ``rows``."""
    out = [
        "| contract | method | gas compiled (.py) | gas hand-written (.qasm) | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    out += [
        f"| {r.contract} | {r.step} | {r.compiled} | {r.hand_written} | {r.ratio} |" for r in rows
    ]
    return out


if __name__ == "__main__":
    for text in table(measure()):
        print(text)
