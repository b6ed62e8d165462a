"""The fault-injection harness behind `quorum chaos` (docs/RELIABILITY.md).

Entry point: :func:`ledger.chaos.run.run_chaos`. The runner (:mod:`.run`) starts a
testnet behind fault-injecting relays (:mod:`.net`, :mod:`.relay`), keeps a load going
(:mod:`.load`), runs scenarios (:mod:`.scenarios`, :mod:`.bad_input` with :mod:`.attacks`
and the hostile peers of :mod:`.peer`) and audits every node after each (:mod:`.check`).

Never: imported by the node (``ledger.node``, ``ledger.chain``, ``ledger.engine``) or at the
CLI's start; only the chaos commands and the chaos tests load it.
"""
