"""`python -m ledger.cli` is the `quorum` command."""

from ledger.cli.main import main

main()
