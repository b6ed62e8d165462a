"""The speed harnesses behind `quorum bench`: programs that measure and print figures.

* :func:`ledger.bench.run.run_bench` (``quorum bench``): load a running network through its
  HTTP API; committed tx/s and latency. Phases in :mod:`.plan`, :mod:`.load`, :mod:`.report`.
* :func:`ledger.bench.burst.run_burst` (``quorum bench burst``): issue 12's overload
  scenario (capacity, a burst at a multiple of it, an idle watch, a probe) and its criteria.
* :func:`ledger.bench.link.measure_link` (``quorum bench link``): one encrypted peer link.
* :func:`ledger.bench.vm.measure_vm` (``quorum bench vm``): the contract VM in process.

Never: imported by the node (``ledger.node``, ``ledger.chain``, ``ledger.engine``) or at the
CLI's start; only the bench command loads it, when it runs.
"""
