"""Everything that makes a node: chain types, store, node runtime, client and CLI."""

__version__ = "0.1.0"
