// The status page in headless Chromium, against three real coolmesh agents
// on loopback that form a cluster (file sensors, a TCP power target this
// test owns, dry-run). Run by .ci/status-page.sh; by hand:
//
//   COOLMESH_BIN=target/debug/coolmesh node --test tests/browser/status-page.test.mjs
//
// Environment: COOLMESH_BIN (the binary, required), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT_DIR (default: the current directory).
// The screenshot's path is printed as "screenshot: PATH".

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.COOLMESH_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOT_DIR = path.resolve(process.env.SCREENSHOT_DIR || ".");
const TOKEN = "status-page-test-token-0123456789";
const NODES = ["n1", "n2", "n3"];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// The "air conditioner": a TCP listener. Cutting power closes it, so probes
// get "connection refused" at once.
class PowerTarget {
  constructor(port) { this.port = port; this.sockets = new Set(); }
  async up() {
    this.server = net.createServer((s) => { this.sockets.add(s); s.on("close", () => this.sockets.delete(s)); s.on("error", () => {}); });
    await new Promise((r, j) => { this.server.once("error", j); this.server.listen(this.port, "127.0.0.1", r); });
  }
  async cut() {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => this.server.close(r));
  }
}

async function waitFor(what, timeoutMs, f) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ": " + last : ""}`);
}

async function api(node, p, method = "GET") {
  const r = await fetch(`http://127.0.0.1:${node.http}${p}`, {
    method,
    headers: method === "POST" ? { authorization: `Bearer ${TOKEN}` } : {},
    signal: AbortSignal.timeout(3000),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(`${p}: HTTP ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

let dir, power, nodes = [], browser, page, requests = [], pageErrors = [];

before(async () => {
  assert.ok(BIN && fs.existsSync(BIN), `COOLMESH_BIN must name the coolmesh binary (got ${BIN})`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "coolmesh-status-page-"));
  power = new PowerTarget(await freePort());
  await power.up();
  fs.writeFileSync(path.join(dir, "token"), TOKEN);
  for (const [i, name] of NODES.entries()) {
    const node = { name, http: await freePort(), p2p: await freePort(), dir: path.join(dir, name) };
    fs.mkdirSync(node.dir);
    // Different temperatures, so the grid shows different headroom colours.
    const celsius = [48, 71, 83][i];
    fs.writeFileSync(path.join(node.dir, "t.json"),
      JSON.stringify([{ chip: "inlet", sensor: "temp1", label: "Inlet", celsius, max_celsius: 80, critical_celsius: 90 }]));
    nodes.push(node);
  }
  for (const [i, node] of nodes.entries()) {
    const peers = i === 0 ? "" : `"/ip4/127.0.0.1/tcp/${nodes[0].p2p}"`;
    const cfg = `[node]
name = "${node.name}"
state_dir = "${node.dir}/state"
[http]
listen_address = "127.0.0.1:${node.http}"
token_file = "${dir}/token"
[sensors]
sources = ["file"]
file = "${node.dir}/t.json"
interval = "1s"
timeout = "500ms"
[power]
targets = ["tcp://127.0.0.1:${power.port}"]
interval = "500ms"
timeout = "300ms"
[shutdown]
grace = "10m"
command = ["true"]
dry_run = true
dry_run_marker = "${node.dir}/dry-run-shutdowns"
[cluster]
name = "browser-test"
listen = ["/ip4/127.0.0.1/tcp/${node.p2p}"]
peers = [${peers}]
mdns = false
suspect_after = "2s"
dead_after = "4s"
`;
    const cfgPath = path.join(node.dir, "coolmesh.toml");
    fs.writeFileSync(cfgPath, cfg);
    const log = fs.openSync(path.join(node.dir, "agent.log"), "w");
    node.proc = spawn(BIN, ["agent", "--config", cfgPath, "--dry-run", "--log.format", "json"], { stdio: ["ignore", log, log] });
    node.proc.on("exit", (code, sig) => { node.exited = { code, sig }; });
  }
  // A cluster: every agent sees the two others alive.
  await waitFor("3 agents to see each other alive", 30000, async () => {
    for (const n of nodes) {
      if (n.exited) throw new Error(`${n.name} exited ${JSON.stringify(n.exited)}: ${fs.readFileSync(path.join(n.dir, "agent.log"), "utf8").slice(-2000)}`);
      const peers = await api(n, "/v1/peers");
      if (peers.filter((p) => p.liveness === "alive").length !== 2) return false;
    }
    return true;
  });
  // A user counter, on another node than the one whose page we open.
  await api(nodes[1], "/v1/counters/browser_test/inc?amount=3", "POST");

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${nodes[0].http}/`);
});

after(async () => {
  if (browser) await browser.close();
  for (const n of nodes) if (n.proc && !n.exited) n.proc.kill("SIGKILL");
  if (power && power.server?.listening) await power.cut();
  if (dir && !process.env.KEEP_DIR) fs.rmSync(dir, { recursive: true, force: true });
});

test("the grid shows the three nodes, each with its state", async () => {
  await page.waitForFunction(() => document.querySelectorAll("#room li.node").length === 3, null, { timeout: 15000 });
  const cards = await page.$$eval("#room li.node", (ls) => ls.map((l) => ({
    node: l.dataset.node, state: l.dataset.state, band: l.dataset.band, text: l.innerText, label: l.getAttribute("aria-label"),
  })));
  assert.deepEqual(cards.map((c) => c.node), NODES);
  for (const c of cards) {
    assert.equal(c.state, "normal", JSON.stringify(c));
    assert.match(c.text, /normal/i);
    assert.match(c.label, /normal, alive/);
  }
  // Headroom 42, 19 and 7 degrees: three colour bands.
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")].every((l) => l.dataset.band !== "none"), null, { timeout: 10000 });
  assert.deepEqual(await page.$$eval("#room li.node", (ls) => ls.map((l) => l.dataset.band)), ["ok", "mid", "low"]);
  assert.match(await page.textContent("#room li.node.self"), /n1 \(this node\)/);
});

test("power votes: one row per target, every node voting up", async () => {
  await page.waitForFunction(() => {
    const r = document.querySelector("#power tbody tr");
    return r && r.cells.length === 7 && r.cells[3].textContent === "3";
  }, null, { timeout: 15000 });
  const rows = await page.$$eval("#power tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.equal(rows.length, 1);
  assert.equal(rows[0][0], `tcp://127.0.0.1:${power.port}`);
  assert.equal(rows[0][1], "up");
  assert.equal(rows[0][3], "3");
  assert.equal(rows[0][4], "0");
});

test("peers: two alive peers; counters: the cluster-wide total", async () => {
  const live = await page.$$eval("#peers tbody tr", (rs) => rs.map((r) => [r.cells[0].textContent, r.dataset.liveness]));
  assert.deepEqual(live, [["n2", "alive"], ["n3", "alive"]]);
  assert.match(await page.textContent("#peer-counts"), /2 alive · 0 suspect · 0 dead/);
  await page.waitForFunction(() => [...document.querySelectorAll("#counters tbody tr")]
    .some((r) => r.cells[0].textContent === "browser_test" && r.cells[1].textContent === "3"), null, { timeout: 15000 });
  const row = await page.$$eval("#counters tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent))
    .find((c) => c[0] === "browser_test"));
  // Counted on n2: the total is 3, this node's (n1's) slot 0.
  assert.deepEqual(row, ["browser_test", "3", "0"]);
});

test("power cut: every node counts down to its shutdown, the banner says so", async () => {
  await power.cut();
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")].every((l) => l.dataset.state === "pre_fail"),
    null, { timeout: 20000 });
  const first = await page.$$eval("#room .deadline", (ds) => ds.map((d) => d.textContent));
  for (const t of first) assert.match(t, /^shutdown in (9|10)m \d\ds$/, t);
  const banner = await page.textContent("#banner");
  assert.match(banner, /^3 nodes will shut down: /);
  for (const n of NODES) assert.match(banner, new RegExp(`${n} in (9|10)m \\d\\ds \\(power\\)`));
  assert.equal(await page.getAttribute("#banner", "role"), "alert");
  // The countdown runs between refreshes.
  const secs = (t) => { const m = t.match(/(\d+)m (\d+)s/); return Number(m[1]) * 60 + Number(m[2]); };
  await sleep(2500);
  const later = await page.$eval("#room li.node.self .deadline", (d) => d.textContent);
  assert.ok(secs(later) < secs(first[0]), `${later} should be less than ${first[0]}`);
  const votes = await page.$$eval("#power tbody tr td", (ts) => ts.map((t) => t.textContent));
  assert.equal(votes[4], "3", "3 down votes");
  assert.match(votes[6], /down votes reach quorum/);
  assert.match(await page.textContent("title"), /PRE_FAIL/);
});

test("a killed agent turns dead, then the screenshot", async () => {
  nodes[2].proc.kill("SIGKILL");
  await page.waitForFunction(() => document.querySelector('#room li.node[data-node="n3"]')?.dataset.liveness === "dead",
    null, { timeout: 20000 });
  assert.match(await page.textContent('#room li.node[data-node="n3"]'), /dead.*seen \d+s ago/s);
  assert.match(await page.textContent("#peer-counts"), /1 alive · 0 suspect · 1 dead/);
  // What a dead peer last said is not a live countdown.
  assert.match(await page.textContent('#room li.node[data-node="n3"] .deadline'), /^last known: shutdown in /);
  await page.waitForFunction(() => document.querySelector("#banner").textContent.startsWith("2 nodes will shut down"), null, { timeout: 5000 });
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  const shot = path.join(SHOT_DIR, "status-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10000);
  console.log(`screenshot: ${shot}`);
});

test("only this agent's API was asked; an unreachable agent is said so", async () => {
  const origin = `http://127.0.0.1:${nodes[0].http}/`;
  const foreign = requests.filter((u) => !u.startsWith(origin));
  assert.deepEqual(foreign, [], "requests outside the agent");
  assert.deepEqual(pageErrors, [], "JavaScript errors on the page");
  const paths = new Set(requests.map((u) => new URL(u).pathname));
  assert.deepEqual([...paths].sort(), ["/", "/v1/peers", "/v1/state"]);
  nodes[0].proc.kill("SIGKILL");
  await page.waitForFunction(() => document.body.classList.contains("unreachable"), null, { timeout: 10000 });
  assert.match(await page.textContent("#banner"), /Cannot reach this agent/);
  // The last view stays on screen.
  assert.equal(await page.$$eval("#room li.node", (ls) => ls.length), 3);
});
