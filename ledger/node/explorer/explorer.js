// The block explorer: reads this node's JSON API and redraws every REFRESH_MS.
//
// Views (the URL's hash): #/ latest blocks and validators, #/block/H, #/tx/HASH,
// #/account/ADDRESS. Every value from the API reaches the page through textContent (the
// el() helper), never as HTML. Times are shown as UTC dates. Contract calls, results
// and events are decoded with the contract's ABI (GET /v1/contracts/ADDRESS).
"use strict";

const REFRESH_MS = 1000;
const LATEST_BLOCKS = 15;
const BLOCK_TXS_SHOWN = 50;
const abiCache = new Map();
let rendering = false;
let refreshes = 0; // shown as <main data-refreshes>: the page redraws itself

async function api(path) {
  const response = await fetch(path, { cache: "no-store" });
  if (response.status === 404) return null;
  const doc = await response.json();
  if (!response.ok && path !== "/health") throw new Error(doc.error || response.statusText);
  return doc;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(key, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function date(ms) {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

const short = (hex) => (hex && hex.length > 20 ? `${hex.slice(0, 10)}…${hex.slice(-6)}` : hex);
const blockLink = (h) => el("a", { href: `#/block/${h}` }, String(h));
const txLink = (hash) => el("a", { href: `#/tx/${hash}`, class: "hash", title: hash }, short(hash));
const accountLink = (a) => el("a", { href: `#/account/${a}`, class: "hash", title: a }, short(a));

function table(headings, rows) {
  return el("table", {}, el("tr", {}, headings.map((h) => el("th", {}, h))),
    rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c)))));
}

function fields(pairs) {
  return el("dl", {}, pairs.filter((p) => p).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// ---------------------------------------------------------------- ABI decoding

async function contractAbi(address) {
  if (!abiCache.has(address)) {
    const found = await api(`/v1/contracts/${address}`);
    abiCache.set(address, found ? found.abi : null);
  }
  return abiCache.get(address);
}

function utf8(hex) {
  if (typeof hex !== "string" || hex.length === 0 || hex.length % 2 || !/^[0-9a-f]*$/.test(hex)) return null;
  const bytes = new Uint8Array(hex.match(/../g).map((b) => parseInt(b, 16)));
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    return /^[\P{C}\t\n]*$/u.test(text) ? text : null;
  } catch (e) {
    return null;
  }
}

function hexOf(text) {
  return Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

// A value shown by its ABI type: str as quoted text, address as a link, u64 as a number.
function typed(value, type) {
  if (value === null || value === undefined) return el("span", { class: "muted" }, "none");
  if (type === "u64") return String(value);
  if (type === "address") return accountLink(value);
  if (type === "str") return JSON.stringify(value);
  if (type === "bytes") {
    const text = utf8(value);
    return text !== null ? `${JSON.stringify(text)} (bytes)` : el("code", {}, `0x${value}`);
  }
  return String(value);
}

// Event arguments carry no declared types: an argument equal to one of the call's typed
// arguments takes that parameter's type; otherwise 20 bytes read as an address, UTF-8 as
// text, anything else as hex.
function eventArg(value, callArgs) {
  if (typeof value === "number") return String(value);
  const match = callArgs.find((a) => a.hex === value);
  if (match) return typed(match.value, match.type);
  if (typeof value === "string" && value.length === 40) return accountLink(value);
  const text = utf8(value);
  return text !== null ? JSON.stringify(text) : el("code", {}, `0x${value}`);
}

function typedArgs(method, args) {
  const params = method ? method.params : [];
  return args.map((value, i) => {
    const param = params[Math.min(i, params.length - 1)] || { name: `arg${i}`, type: null };
    const hex = param.type === "str" && typeof value === "string" ? hexOf(value) : value;
    return { name: param.name, type: param.type, value, hex };
  });
}

// ---------------------------------------------------------------- views

async function viewHome() {
  const [list, validators] = await Promise.all([
    api(`/v1/blocks?limit=${LATEST_BLOCKS}`),
    api("/v1/validators"),
  ]);
  const blocks = el("section", { id: "latest-blocks" }, el("h2", {}, "Latest blocks"),
    table(["height", "time", "txs", "view", "proposer", "certificate signers"],
      list.blocks.map((b) => [blockLink(b.height), el("span", { class: "time", title: ago(b.timestamp_ms) }, date(b.timestamp_ms)),
        String(b.tx_count), String(b.view), b.proposer_name,
        b.signers.map((s) => el("span", { class: "signer" }, s))])));
  const vals = el("section", { id: "validators" }, el("h2", {}, "Validators"),
    table(["name", "public key", "connected", "last height its signature certified"],
      validators.validators.map((v) => [v.name + (v.self ? " (this node)" : ""), el("code", {}, short(v.public_key)),
        v.connected ? "yes" : "no", v.last_signed_height === null ? "—" : blockLink(v.last_signed_height)])));
  return [blocks, vals];
}

async function viewBlock(height) {
  const block = await api(`/v1/blocks/${height}`);
  if (!block) return el("p", { class: "error" }, `No block at height ${height}.`);
  const h = block.header;
  const cert = block.certificate;
  const txs = await Promise.all(block.transactions.slice(0, BLOCK_TXS_SHOWN).map((t) => api(`/v1/transactions/${t}`)));
  return [
    el("section", { id: "block" }, el("h2", {}, `Block ${h.height}`), fields([
      ["hash", el("code", {}, h.hash)],
      ["time", el("span", { class: "time" }, `${date(h.timestamp_ms)} (${ago(h.timestamp_ms)})`)],
      ["previous", h.height > 1 ? blockLink(h.height - 1) : "genesis"],
      ["view / proposer", `${h.view} / ${block.proposer_name}`],
      ["transactions", String(h.tx_count)],
      ["state root", el("code", {}, h.state_root)],
      ["signers", cert ? cert.votes.map((v) => el("span", { class: "signer" }, v.name || `#${v.validator}`)) : "none"],
    ])),
    el("section", { id: "block-txs" }, el("h2", {}, "Transactions"),
      table(["hash", "kind", "sender", "status"], txs.filter((t) => t).map((t) => [txLink(t.tx_hash), t.kind,
        accountLink(t.sender), t.status]))),
  ];
}

async function viewTx(hash) {
  const tx = await api(`/v1/transactions/${hash}`);
  if (!tx) return el("p", { class: "error" }, `No transaction ${hash}.`);
  const p = tx.payload || {};
  const receipt = tx.receipt;
  const contract = p.to && tx.kind === "call" ? p.to : receipt && receipt.created_address;
  const abi = contract ? await contractAbi(contract) : null;
  const method = abi ? (tx.kind === "deploy" ? abi.constructor : abi.methods.find((m) => m.name === p.method)) : null;
  const args = typedArgs(method, p.args || []);
  const rows = [
    ["hash", el("code", {}, tx.tx_hash)],
    ["status", tx.status],
    ["block", tx.height !== undefined && tx.height !== null ? blockLink(tx.height) : "—"],
    ["kind", tx.kind],
    ["sender", accountLink(tx.sender)],
    ["nonce", String(tx.nonce)],
  ];
  if (tx.kind === "transfer") rows.push(["to", accountLink(p.to)], ["amount", String(p.amount)]);
  if (tx.kind === "call") rows.push(["contract", accountLink(p.to)], ["method", p.method]);
  if (args.length) rows.push(["arguments", el("span", { class: "args" }, args.map((a, i) => [i ? ", " : "", `${a.name} = `, typed(a.value, a.type)]))]);
  const sections = [el("section", { id: "tx" }, el("h2", {}, "Transaction"), fields(rows))];
  if (receipt) {
    const events = receipt.events.map((e) => [accountLink(e.address), e.name,
      el("span", { class: "event-args" }, e.args.map((a, i) => [i ? ", " : "", eventArg(a, args)]))]);
    sections.push(el("section", { id: "receipt" }, el("h2", {}, "Receipt"), fields([
      ["status", receipt.status],
      ["gas used", String(receipt.gas_used)],
      ["return", typed(receipt.return, method ? method.returns : null)],
      receipt.error ? ["error", receipt.error] : null,
      receipt.created_address ? ["created", accountLink(receipt.created_address)] : null,
    ]), el("h2", {}, "Events"), events.length ? table(["contract", "event", "arguments"], events) : el("p", { class: "muted" }, "none")));
  }
  return sections;
}

async function viewAccount(address) {
  const account = await api(`/v1/accounts/${address}`);
  const sections = [el("section", { id: "account" }, el("h2", {}, account.contract ? "Contract" : "Account"), fields([
    ["address", el("code", {}, account.address)],
    ["balance", el("span", { id: "balance" }, String(account.balance))],
    ["nonce", el("span", { id: "nonce" }, String(account.nonce))],
  ]))];
  if (account.contract) {
    const abi = await contractAbi(account.address);
    if (abi) sections.push(el("section", {}, el("h2", {}, "Methods"), table(["method"], abi.methods.map((m) => [el("code", {}, m.signature)]))));
  }
  return sections;
}

// ---------------------------------------------------------------- routing and refresh

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  if (parts[0] === "block" && /^\d+$/.test(parts[1] || "")) return () => viewBlock(parts[1]);
  if (parts[0] === "tx" && parts[1]) return () => viewTx(parts[1].toLowerCase());
  if (parts[0] === "account" && parts[1]) return () => viewAccount(parts[1].toLowerCase());
  return viewHome;
}

async function refreshStatus() {
  const [status, health] = await Promise.all([api("/v1/status"), api("/health")]);
  document.getElementById("live-chain").textContent = status.chain_id;
  document.getElementById("live-height").textContent = String(status.height);
  document.getElementById("live-view").textContent = String(status.view);
  document.getElementById("live-primary").textContent = status.primary;
  document.getElementById("live-peers").textContent = String(status.peers.length);
  document.getElementById("node-name").textContent = status.name;
  const badge = document.getElementById("live-health");
  badge.textContent = health.healthy ? "healthy" : `unhealthy: ${health.problems.map((p) => p.code).join(", ")}`;
  badge.title = health.healthy ? "" : health.problems.map((p) => p.message).join("\n");
  badge.className = `badge ${health.healthy ? "ok" : "bad"}`;
  document.getElementById("updated").textContent = date(Date.now());
}

async function render() {
  if (rendering) return;
  rendering = true;
  const main = document.getElementById("main");
  try {
    await refreshStatus();
    const content = await route()();
    main.replaceChildren(...[content].flat(Infinity));
    refreshes += 1;
    main.dataset.refreshes = String(refreshes);
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, `Cannot reach the node: ${error.message}`));
  } finally {
    rendering = false;
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const q = document.getElementById("search-input").value.trim().replace(/^0x/, "").toLowerCase();
  if (/^\d+$/.test(q)) location.hash = `#/block/${q}`;
  else if (/^[0-9a-f]{64}$/.test(q)) location.hash = `#/tx/${q}`;
  else if (/^[0-9a-f]{40}$/.test(q)) location.hash = `#/account/${q}`;
});
window.addEventListener("hashchange", render);
render();
setInterval(render, REFRESH_MS);
