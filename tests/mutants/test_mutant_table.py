"""The mutant table of ``make mutants`` matches the tree: every mutant's old text occurs
exactly once in its file and every killing test exists, so the table cannot rot silently
(the mutants themselves run in ``make mutants``, not here)."""

from __future__ import annotations

from tests.mutants.run import table_problems
from tests.mutants.table import MUTANTS

#: The issue asks for at least this many named mutants.
MIN_MUTANTS = 12


def test_the_mutant_table_applies_to_the_current_tree() -> None:
    assert table_problems() == []


def test_there_are_enough_mutants_and_each_names_its_killing_tests() -> None:
    assert len(MUTANTS) >= MIN_MUTANTS
    for mutant in MUTANTS:
        assert mutant.kill, mutant.name
        assert mutant.why, mutant.name
