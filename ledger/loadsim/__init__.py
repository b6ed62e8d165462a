"""The load simulator: the real node engine on virtual time and virtual CPUs, under client
workloads above capacity (bursts, nonce gaps, duplicates, conflicts). See world.py.

Deterministic: a seeded ``random.Random`` is its only source of variation; no clock.
"""
