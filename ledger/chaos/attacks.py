"""Client-side attacks and malformed HTTP requests against a real node (used by `quorum chaos`).

What it is for: *bad input everywhere*, from the client side.

* :func:`client_attacks` signs hostile transactions — replays, wrong chain ids, forged and
  malleated signatures, tampered bodies, nonce gaps and duplicates, expired, zero or
  excessive gas, self-transfers, oversize transactions and contracts, malformed bytes —
  submits each through ``POST /v1/transactions`` and compares the answer with the
  rejection code the node must give. :func:`attacks_changed_nothing` then checks that none
  of them moved a balance or a nonce or entered a block.
* :func:`random_api_request` draws a malformed request (bad JSON, wrong types, unknown
  fields, huge or deeply nested bodies, bad hex, absurd heights, unknown routes, wrong
  methods) from a seeded generator; :func:`api_answer_problem` is the oracle: a node never
  answers 5xx, and a 4xx always carries ``{"error", "code"}``.

Never: use an account the load generator uses (attacks need their own nonces), or leave a
transaction behind that could later execute — gap and duplicate tests use a fresh,
unfunded key whose nonce 0 is never submitted.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from contracts import examples
from crypto.keys import PrivateKey
from ledger.chain.types import Deploy, Payload, Transaction, Transfer

TRANSFER_GAS: Final = 10_000
DEPLOY_GAS: Final = 2_000_000
#: The Ed25519 group order: S + L is the classic malleated (non-canonical) signature.
ED25519_L: Final = 2**252 + 27742317777372353535851937790883648493
WAIT_MS: Final = 20_000
HTTP_TIMEOUT_S: Final = 30.0
MAX_NONCE_WINDOW: Final = 256


#: Every client attack, by the name its outcome carries.
ATTACK_NAMES: Final = (
    "replayed_transaction",
    "reused_nonce",
    "wrong_chain_id",
    "malleated_signature_s_plus_l",
    "bit_flipped_signature",
    "zero_signature",
    "tampered_amount",
    "forged_sender",
    "nonce_far_ahead",
    "already_expired",
    "zero_gas",
    "excessive_gas",
    "self_transfer",
    "oversize_transaction",
    "oversize_contract",
    "unrunnable_contract",
    "malformed_bytes",
    "truncated_transaction",
    "trailing_bytes",
    "nonce_gap_waits",
    "duplicate_submission",
    "duplicate_nonce",
)


@dataclass
class AttackOutcome:
    """One attack: what the node had to answer, what it answered."""

    name: str
    expected: tuple[str, ...]
    status: str
    code: str | None
    tx_hash: str | None
    ok: bool
    detail: str = ""


@dataclass
class AttackReport:
    outcomes: list[AttackOutcome] = field(default_factory=list)
    #: tx hashes that must never be committed
    forbidden: list[str] = field(default_factory=list)
    #: the attacker's expected (balance, nonce) afterwards
    expected_account: tuple[int, int] = (0, 0)
    #: unfunded keys used for gap/duplicate tests: their nonce must stay 0
    fresh_accounts: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[AttackOutcome]:
        return [o for o in self.outcomes if not o.ok]


def _post(http: httpx.Client, url: str, raws: list[bytes], wait: bool) -> list[dict[str, Any]]:
    body = {"txs": [r.hex() for r in raws], "wait": wait, "timeout_ms": WAIT_MS}
    response = http.post(f"{url}/v1/transactions", json=body, timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def _account(http: httpx.Client, url: str, address: bytes) -> tuple[int, int]:
    doc = http.get(f"{url}/v1/accounts/{address.hex()}", timeout=HTTP_TIMEOUT_S).json()
    return int(doc["balance"]), int(doc["nonce"])


def _height(http: httpx.Client, url: str) -> int:
    return int(http.get(f"{url}/v1/status", timeout=HTTP_TIMEOUT_S).json()["height"])


def _malleate(signature: bytes) -> bytes:
    s = int.from_bytes(signature[32:], "little") + ED25519_L
    return signature[:32] + s.to_bytes(32, "little")


def _with_signature(tx: Transaction, signature: bytes) -> Transaction:
    return Transaction(
        tx.chain_id, tx.sender, tx.nonce, tx.payload, tx.gas_limit, tx.expiry_height, signature
    )


def oversize_contract() -> bytes:
    """A well-formed token container whose code section is past the VM's 24 KiB limit."""
    return examples.load("token") + b"\x00" * (26 * 1024)


def unrunnable_contract() -> bytes:
    """The token container with its last instruction cut off (falls through the end)."""
    return examples.load("token")[:-1]


def client_attacks(
    http: httpx.Client,
    url: str,
    attacker: PrivateKey,
    victim: bytes,
    chain_id: str,
    *,
    skip: frozenset[str] = frozenset(),
) -> AttackReport:
    """Run every client attack (but those named in ``skip``) against the node at ``url``.

    ``attacker`` must be funded and used by nobody else; ``victim`` is another account's
    address (the recipient of the one legitimate transfer). See the module docstring.
    """
    report = AttackReport()
    balance, nonce = _account(http, url, attacker.address)

    def tx(
        payload: Payload, *, n: int | None = None, gas: int = TRANSFER_GAS, **kw: Any
    ) -> Transaction:
        return Transaction.create(
            kw.pop("key", attacker),
            kw.pop("chain", chain_id),
            nonce if n is None else n,
            payload,
            gas_limit=gas,
            **kw,
        )

    def expect(name: str, raw: bytes, *codes: str, forbid: bool = True) -> dict[str, Any]:
        assert name in ATTACK_NAMES, name
        if name in skip:
            return {}
        (result,) = _post(http, url, [raw], wait=False)
        code = result.get("code")
        status = str(result.get("status"))
        wanted_status = "pending" if codes == ("pending",) else "rejected"
        ok = status == wanted_status and (wanted_status == "pending" or code in codes)
        tx_hash = result.get("tx_hash")
        report.outcomes.append(
            AttackOutcome(name, codes, status, code, tx_hash, ok, str(result.get("error", "")))
        )
        if forbid and tx_hash:
            report.forbidden.append(str(tx_hash))
        return result

    pay = Transfer(victim, 1)
    # 1. one legitimate transfer, then its replay (exact same bytes)
    legit = tx(pay)
    (first,) = _post(http, url, [legit.raw], wait=True)
    if first.get("status") != "committed":
        raise RuntimeError(f"the attacker's legitimate transfer did not commit: {first}")
    nonce += 1
    replay = _post(http, url, [legit.raw], wait=False)[0]
    replay_ok = replay.get("code") in ("nonce_too_low", "duplicate") and replay.get("height") in (
        None,
        first["height"],
    )
    report.outcomes.append(
        AttackOutcome(
            "replayed_transaction", ("nonce_too_low", "duplicate"), str(replay.get("status")),
            replay.get("code"), replay.get("tx_hash"), replay_ok,
            f"original at height {first['height']}; the replay answered {replay}",
        )
    )  # fmt: skip
    # 2. a different transaction re-using the spent nonce
    expect("reused_nonce", tx(Transfer(victim, 2), n=nonce - 1).raw, "nonce_too_low")
    # 3. signatures and chain ids
    expect("wrong_chain_id", tx(pay, chain="other-chain").raw, "wrong_chain")
    fresh = tx(pay)
    expect("malleated_signature_s_plus_l", _with_signature(fresh, _malleate(fresh.signature)).raw,
           "bad_signature")  # fmt: skip
    flipped = bytes([fresh.signature[0] ^ 1]) + fresh.signature[1:]
    expect("bit_flipped_signature", _with_signature(fresh, flipped).raw, "bad_signature")
    expect("zero_signature", _with_signature(fresh, bytes(64)).raw, "bad_signature")
    tampered = Transaction(
        chain_id, attacker.public_key, nonce, Transfer(victim, 10**6), TRANSFER_GAS, None,
        fresh.signature,
    )  # fmt: skip
    expect("tampered_amount", tampered.raw, "bad_signature")
    impostor = PrivateKey.generate()
    unsigned = Transaction(
        chain_id, attacker.public_key, nonce, Transfer(impostor.address, 10**6), TRANSFER_GAS,
        None, bytes(64),
    )  # fmt: skip
    victim_sender = _with_signature(
        unsigned, impostor.sign(chain_id, "tx", unsigned.signing_body())
    )
    expect("forged_sender", victim_sender.raw, "bad_signature")
    # 4. limits
    expect("nonce_far_ahead", tx(pay, n=nonce + 10_000).raw, "nonce_too_high")
    expect("already_expired", tx(pay, expiry_height=max(1, _height(http, url) - 1)).raw, "expired")
    expect("zero_gas", tx(pay, gas=0).raw, "gas_limit")
    expect("excessive_gas", tx(pay, gas=10**12).raw, "gas_limit")
    expect("self_transfer", tx(Transfer(attacker.address, 1)).raw, "self_transfer")
    expect("oversize_transaction", tx(Deploy(b"QVM" + bytes(70 * 1024)), gas=DEPLOY_GAS).raw,
           "too_large")  # fmt: skip
    expect("oversize_contract", tx(Deploy(oversize_contract()), gas=DEPLOY_GAS).raw,
           "bad_code")  # fmt: skip
    expect("unrunnable_contract", tx(Deploy(unrunnable_contract()), gas=DEPLOY_GAS).raw,
           "bad_code")  # fmt: skip
    expect("malformed_bytes", b"\x93\x01\x02", "malformed")
    expect("truncated_transaction", fresh.raw[:-10], "malformed")
    expect("trailing_bytes", fresh.raw + b"\x00", "malformed")
    # 5. nonce gaps and duplicates, with an unfunded key whose nonce 0 is never sent
    ghost = PrivateKey.generate()
    report.fresh_accounts.append(ghost.address.hex())
    gap = Transaction.create(ghost, chain_id, 3, Transfer(victim, 1), gas_limit=TRANSFER_GAS)
    expect("nonce_gap_waits", gap.raw, "pending")
    expect("duplicate_submission", gap.raw, "duplicate")
    twin = Transaction.create(ghost, chain_id, 3, Transfer(victim, 2), gas_limit=TRANSFER_GAS)
    expect("duplicate_nonce", twin.raw, "nonce_taken")
    report.expected_account = (balance - 1, nonce)
    return report


def attacks_changed_nothing(
    http: httpx.Client, url: str, attacker: PrivateKey, report: AttackReport
) -> list[str]:
    """Problems, if any: the attacker's account moved, or a forbidden transaction committed."""
    problems = []
    account = _account(http, url, attacker.address)
    if account != report.expected_account:
        problems.append(
            f"attacker account is (balance, nonce) {account}, expected {report.expected_account}"
        )
    for address in report.fresh_accounts:
        if _account(http, url, bytes.fromhex(address))[1] != 0:
            problems.append(f"the unfunded account {address} spent a nonce")
    for tx_hash in report.forbidden:
        found = http.get(f"{url}/v1/transactions/{tx_hash}", timeout=HTTP_TIMEOUT_S)
        if found.status_code == 200 and found.json().get("status") in ("committed", "failed"):
            problems.append(f"attack transaction {tx_hash} was committed")
    return problems


# ----------------------------------------------------------------------------- HTTP fuzz


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str
    body: bytes | None = None
    content_type: str = "application/json"
    label: str = ""


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 4 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.random() < 0.5
    if choice == 2:
        return rng.choice((0, -1, 1, 2**63, 2**64, -(2**70), 10**40))
    if choice == 3:
        return rng.choice((0.5, -1e308, 1e308))
    if choice == 4:
        return rng.choice(("", "zz", "0x", "abc", "ff" * 33, "\u0000", "é" * 10, "0" * 1001))
    if choice == 5:
        return rng.randbytes(rng.randrange(0, 64)).hex()
    if choice == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = ("tx", "txs", "wait", "timeout_ms", "method", "args", "extra", "")
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))}


def random_api_request(rng: random.Random) -> ApiRequest:
    """One malformed request, drawn from ``rng``."""
    address = rng.randbytes(20).hex()
    kind = rng.randrange(14)
    if kind == 0:
        return ApiRequest(
            "POST", "/v1/transactions", rng.randbytes(rng.randrange(0, 2048)), label="bytes"
        )
    if kind == 1:
        body = json.dumps(_random_json(rng)).encode()
        return ApiRequest("POST", "/v1/transactions", body, label="json")
    if kind == 2:
        doc = {"txs": _random_json(rng), "wait": _random_json(rng), "timeout_ms": _random_json(rng)}
        return ApiRequest("POST", "/v1/transactions", json.dumps(doc).encode(), label="types")
    if kind == 3:
        doc = {
            "txs": [rng.randbytes(rng.randrange(0, 400)).hex() for _ in range(rng.randrange(1, 20))]
        }
        return ApiRequest("POST", "/v1/transactions", json.dumps(doc).encode(), label="junk_txs")
    if kind == 4:
        depth = rng.choice((50, 5_000, 100_000))
        return ApiRequest("POST", "/v1/transactions", b"[" * depth + b"]" * depth, label="nesting")
    if kind == 5:
        return ApiRequest(
            "POST",
            "/v1/transactions",
            b"x" * (8 * 1024 * 1024 + rng.randrange(1, 4096)),
            label="huge",
        )
    if kind == 6:
        doc = {"txs": ["00"] * 5_001}
        return ApiRequest("POST", "/v1/transactions", json.dumps(doc).encode(), label="too_many")
    if kind == 7:
        doc = {"txs": ["00"], rng.choice(("extra", "Tx", "wait ", "__proto__")): 1}
        return ApiRequest(
            "POST", "/v1/transactions", json.dumps(doc).encode(), label="unknown_field"
        )
    if kind == 8:
        path = rng.choice(("-1", "1e3", "9" * 30, "0x10", "latest ", "%00", "１"))
        return ApiRequest("GET", f"/v1/blocks/{path}", label="height")
    if kind == 9:
        junk = rng.choice(("xyz", "0" * 39, "0" * 41, "0x" + address, address.upper(), "ab" * 200))
        route = rng.choice(("accounts", "contracts", "transactions"))
        return ApiRequest("GET", f"/v1/{route}/{junk}", label="address")
    if kind == 10:
        body = json.dumps(_random_json(rng)).encode()
        return ApiRequest("POST", f"/v1/contracts/{address}/query", body, label="query")
    if kind == 11:
        body = json.dumps(
            {"method": "x" * rng.randrange(0, 100), "args": list(range(rng.randrange(0, 30)))}
        ).encode()
        return ApiRequest("POST", f"/v1/contracts/{address}/query", body, label="query_args")
    if kind == 12:
        method = rng.choice(("PUT", "DELETE", "PATCH", "GET"))
        return ApiRequest(
            method, rng.choice(("/v1/transactions", "/v1/status", "/nope", "/v1/")), label="route"
        )
    body = b'{"txs": ["00"], "timeout_ms": NaN}' if rng.random() < 0.5 else b'{"txs": "00"'
    return ApiRequest("POST", "/v1/transactions", body, "text/plain", label="odd")


def send_api_request(http: httpx.Client, url: str, request: ApiRequest) -> httpx.Response:
    headers = {"content-type": request.content_type} if request.body is not None else {}
    return http.request(
        request.method, url + request.path, content=request.body, headers=headers,
        timeout=HTTP_TIMEOUT_S,
    )  # fmt: skip


def api_answer_problem(response: httpx.Response) -> str | None:
    """None when the answer is acceptable for a malformed request; else what is wrong."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if response.status_code >= 400:
        try:
            doc = response.json()
        except ValueError:
            return f"HTTP {response.status_code} without a JSON body"
        if not isinstance(doc, dict) or "code" not in doc or "error" not in doc:
            return f"HTTP {response.status_code} body lacks error/code: {str(doc)[:200]}"
    return None


ApiOracle = Callable[[httpx.Response], str | None]
