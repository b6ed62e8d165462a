"""`make demo`: drive the real `quorum` CLI through the product's main job, step by step.

It shows each command before running it, so a newcomer can repeat any step by hand. It
grows with the product: today keys, a 4-validator testnet layout and its genesis; the
live network, transfers, contracts and a crash survived arrive with the node.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Final

DEMO_DIR: Final = Path("demo-testnet")


def _quorum() -> list[str]:
    exe = shutil.which("quorum")
    return [exe] if exe else [sys.executable, "-m", "ledger.cli"]


def step(title: str, *args: str) -> None:
    command = [*_quorum(), *args]
    print(f"\n== {title}\n$ quorum {shlex.join(args)}", flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        print(f"demo step failed with exit code {result.returncode}", file=sys.stderr)
        sys.exit(result.returncode)


def main() -> None:
    if DEMO_DIR.exists() and not (DEMO_DIR / "testnet.json").exists():
        sys.exit(f"{DEMO_DIR} exists and is not a demo testnet; move it away first")
    step("Quorum Ledger version", "--version")
    step(
        "Lay out a 4-validator testnet (keys, genesis, configs, 4 funded accounts)",
        "testnet", "init", "--validators", "4", "--dir", str(DEMO_DIR), "--accounts", "4", "--force",
    )  # fmt: skip
    step(
        "A new unencrypted key for a user",
        "keys",
        "new",
        "--out",
        str(DEMO_DIR / "alice.json"),
        "--no-password",
    )
    step("Inspect a funded account key", "keys", "show", str(DEMO_DIR / "accounts" / "acct0.json"))
    step(
        "Validate the genesis every validator will start from",
        "genesis",
        "validate",
        str(DEMO_DIR / "node0" / "genesis.json"),
    )
    step(
        "The same, as JSON for programs",
        "genesis",
        "validate",
        str(DEMO_DIR / "node0" / "genesis.json"),
        "--json",
    )
    print(f"\nDone. The testnet layout is in {DEMO_DIR}/ (node homes, accounts, testnet.json).")


if __name__ == "__main__":
    main()
