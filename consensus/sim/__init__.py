"""The deterministic simulator: n real replicas, a seeded scheduler, faults and attackers.

House rule: the only source of randomness is the ``random.Random(seed)`` each run owns;
there is no clock (time is virtual milliseconds) and no I/O. ``quorum sim`` drives it.
"""

from consensus.sim.model import SimParams
from consensus.sim.runner import SeedResult, SimReport, run_seed, run_seeds

__all__ = ["SeedResult", "SimParams", "SimReport", "run_seed", "run_seeds"]
