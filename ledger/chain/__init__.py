"""The replicated state machine: chain types, state, execution and the SQLite store.

Never imports ``ledger.node`` or ``ledger.cli``.
"""
