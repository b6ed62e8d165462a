"""The validator process: trio driver, peer links, mempool, HTTP API. Never imports ledger.cli."""
