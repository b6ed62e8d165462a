"""The deterministic smart-contract VM (issue 4).

House rule: pure — no I/O, clock, randomness, threads or set iteration; no recursion
through Python's stack. ``tests/test_purity.py`` enforces the import rules.
"""
