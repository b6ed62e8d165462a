"""`make demo`: the product's main job on a fresh clone, through the real `quorum` CLI.

It lays out and starts a 4-validator testnet, sends transfers, deploys and uses the token
and lock contracts, kills the primary with SIGKILL and shows the network carry on in a new
view, restarts it and shows it catch up, prints the status table, and stops the testnet.
Each command is shown before it runs, so a newcomer can repeat any step by hand.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

DEMO_DIR: Final = Path("demo-testnet")
BASE_PORT: Final = int(os.environ.get("QUORUM_DEMO_PORT", "26600"))


def banner(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m", flush=True)


def run(*args: str, capture: bool = False, ok_codes: tuple[int, ...] = (0,)) -> str:
    print(f"$ quorum {shlex.join(args)}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], text=True, capture_output=capture, check=False
    )
    if done.returncode not in ok_codes:
        if capture:
            print(done.stdout, done.stderr, sep="\n")
        print(f"demo step failed (exit {done.returncode}); stopping the testnet", file=sys.stderr)
        stop()
        sys.exit(1)
    if capture:
        return done.stdout
    return ""


def run_json(*args: str, ok_codes: tuple[int, ...] = (0,)) -> Any:
    doc = json.loads(run(*args, "--json", capture=True, ok_codes=ok_codes))
    print(
        json.dumps(
            {k: doc[k] for k in ("tx_hash", "status", "height", "address", "return") if k in doc}
        )
    )
    return doc


def stop() -> None:
    subprocess.run(
        [sys.executable, "-m", "ledger.cli", "testnet", "stop", "--dir", str(DEMO_DIR)], check=False
    )


def status(node: str = "node0") -> dict[str, Any]:
    doc = json.loads(run("testnet", "status", "--dir", str(DEMO_DIR), "--json", capture=True))
    found: dict[str, Any] = {n["name"]: n for n in doc["nodes"]}[node]
    return found


def main() -> None:
    if DEMO_DIR.exists() and not (DEMO_DIR / "testnet.json").exists():
        sys.exit(f"{DEMO_DIR} exists and is not a demo testnet; move it away first")
    if DEMO_DIR.exists():
        stop()
    d = str(DEMO_DIR)
    banner("Lay out a 4-validator testnet: keys, genesis, configs, funded accounts")
    run(
        "testnet",
        "init",
        "--validators",
        "4",
        "--dir",
        d,
        "--accounts",
        "4",
        "--base-port",
        str(BASE_PORT),
        "--force",
    )
    manifest = json.loads((DEMO_DIR / "testnet.json").read_text())
    # Every read and every committed result below is checked against this genesis.
    os.environ["QUORUM_GENESIS"] = str(DEMO_DIR / "node0" / "genesis.json")
    accounts = [a["address"] for a in manifest["accounts"]]
    rpc = [n["rpc"] for n in manifest["nodes"]]
    acct = [f"{d}/accounts/acct{i}.json" for i in range(4)]
    try:
        banner("Start the validators (background processes; returns when all are linked)")
        run("testnet", "start", "--dir", d)
        run("testnet", "status", "--dir", d)
        print(f"block explorer: {rpc[0]}/explorer   health: {rpc[0]}/health   "
              f"metrics: {rpc[0]}/metrics   API: {rpc[0]}/openapi.json")  # fmt: skip

        banner("Transfers, each waiting for its commit certificate")
        for i in range(3):
            run(
                "tx",
                "transfer",
                "--from",
                acct[i],
                "--to",
                accounts[i + 1],
                "--amount",
                str(1000 * (i + 1)),
                "--node",
                rpc[i],
            )
        run("query", "account", accounts[1], "--node", rpc[3])

        banner("Deploy the token contract and use it")
        token = run_json(
            "contract",
            "deploy",
            "token",
            "--from",
            acct[0],
            "--args",
            "1000000",
            "--node",
            rpc[0],
        )["address"]
        run(
            "contract",
            "call",
            token,
            "transfer",
            accounts[2],
            "250",
            "--from",
            acct[0],
            "--node",
            rpc[1],
        )
        run("contract", "query", token, "balance_of", accounts[2], "--node", rpc[2])
        print("an overdraft is committed but fails (exit code 4):")
        run(
            "contract",
            "call",
            token,
            "transfer",
            accounts[0],
            "99999999",
            "--from",
            acct[3],
            "--node",
            rpc[1],
            ok_codes=(4,),
        )

        banner("A distributed lock: acquire, a competitor is refused, holder")
        deployed = run_json("contract", "deploy", "lock", "--from", acct[1], "--node", rpc[1])
        lock = deployed["address"]
        run(
            "contract",
            "call",
            lock,
            "acquire",
            "payments-batch",
            "100",
            "--from",
            acct[1],
            "--node",
            rpc[2],
        )
        run(
            "contract",
            "call",
            lock,
            "acquire",
            "payments-batch",
            "100",
            "--from",
            acct[2],
            "--node",
            rpc[3],
            ok_codes=(4,),
        )
        run("contract", "query", lock, "holder", "payments-batch", "--node", rpc[0])

        banner("Crash the primary with SIGKILL; the others change view and carry on")
        primary = status()["primary"]
        pid = int((DEMO_DIR / primary / "node.pid").read_text())
        print(f"kill -9 {pid}   ({primary}, the primary)")
        os.kill(pid, signal.SIGKILL)
        other = next(i for i in range(4) if f"node{i}" != primary)
        started = time.monotonic()
        run(
            "tx",
            "transfer",
            "--from",
            acct[3],
            "--to",
            accounts[0],
            "--amount",
            "42",
            "--node",
            rpc[other],
        )
        print(f"committed {time.monotonic() - started:.1f} s after the crash")
        run("testnet", "status", "--dir", d)

        banner(f"Restart {primary}; it fetches the blocks it missed, with their certificates")
        run("testnet", "start", "--dir", d, "--only", primary)
        target = status(f"node{other}")["height"]
        deadline = time.monotonic() + 60
        while status(primary)["height"] < target and time.monotonic() < deadline:
            time.sleep(0.5)
        run("testnet", "status", "--dir", d)
        run("query", "block", "--node", rpc[int(primary.removeprefix("node"))])
    finally:
        banner("Stop the testnet")
        stop()
    print(f"\nDone. Everything the demo made is in {DEMO_DIR}/ (logs: {DEMO_DIR}/node*/node.log).")


if __name__ == "__main__":
    main()
