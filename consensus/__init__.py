"""PBFT as a pure state machine, and its deterministic simulator.

House rule: nothing in this package (outside ``consensus/sim``) touches the network, the
disk, the clock, threads or randomness. ``tests/test_purity.py`` enforces it.
"""
