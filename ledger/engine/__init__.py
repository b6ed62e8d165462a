"""The node's logic without I/O (like h11's Connection): admission values, the mempool, the
proposer's batching policy, the tree of executed-but-uncommitted blocks, and the engine that
ties them to the consensus core. The trio node (ledger/node) and the load simulator
(ledger/engine/simnet.py's callers) drive the same code.

Never: import trio, sqlalchemy, socket, time, random or threading; read a clock (time is an
input); touch the disk or the network.
"""
