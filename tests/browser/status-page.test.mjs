// The status page in headless Chromium, against the three real agents of
// `coolmesh demo` (a cluster on loopback with simulated sensors and a
// simulated power target, dry-run). Run by .ci/status-page.sh; by hand:
//
//   COOLMESH_BIN=target/debug/coolmesh node --test tests/browser/status-page.test.mjs
//
// Environment: COOLMESH_BIN (the binary, required), CHROMIUM (default
// /usr/bin/chromium), SCREENSHOT_DIR (default: the current directory),
// KEEP_DIR=1 keeps the demo's directory (configs, agent logs).
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
const NODES = ["demo-1", "demo-2", "demo-3"];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function portFree(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

// The demo takes 2N+1 consecutive ports from --base-port. Below the
// ephemeral range (32768 and up on Linux): a port there can be taken by any
// outgoing connection between this check and the demo binding it.
async function freeBase(count) {
  for (let i = 0; i < 50; i++) {
    const base = 20000 + Math.floor(Math.random() * (12000 - count));
    let ok = true;
    for (let p = base; p < base + count && ok; p++) ok = await portFree(p);
    if (ok) return base;
  }
  throw new Error(`no ${count} consecutive free ports`);
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

let demo, demoOut = "", dir, base, token, browser, page, requests = [], pageErrors = [];
const httpPort = (i) => base + i;

async function api(i, p, method = "GET") {
  const r = await fetch(`http://127.0.0.1:${httpPort(i)}${p}`, {
    method,
    headers: method === "POST" ? { authorization: `Bearer ${token}` } : {},
    signal: AbortSignal.timeout(3000),
  });
  const body = await r.json();
  if (!r.ok) throw new Error(`${p}: HTTP ${r.status}: ${JSON.stringify(body)}`);
  return body;
}

// A key for the demo, as typed on its keyboard.
function key(k) { demo.stdin.write(k + "\n"); }

function agentPid(i) {
  return Number(fs.readFileSync(path.join(dir, `demo-${i + 1}`, "agent.pid"), "utf8").trim());
}

before(async () => {
  assert.ok(BIN && fs.existsSync(BIN), `COOLMESH_BIN must name the coolmesh binary (got ${BIN})`);
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium)`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "coolmesh-status-page-"));
  base = await freeBase(2 * NODES.length + 1);
  // Grace 10 minutes: the countdown is visible and nothing reaches shutdown.
  demo = spawn(BIN, ["demo", "--nodes", String(NODES.length), "--base-port", String(base), "--grace", "10m",
    "--dir", dir, "--for", "5m"], { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
  demo.stdout.on("data", (d) => { demoOut += d; });
  demo.stderr.on("data", (d) => { demoOut += d; });
  demo.on("exit", (code, sig) => { demo.exited = { code, sig }; });
  await waitFor("the demo's token", 20000, () => {
    if (demo.exited) throw new Error(`demo exited ${JSON.stringify(demo.exited)}: ${demoOut.slice(-3000)}`);
    return fs.existsSync(path.join(dir, "token"));
  });
  token = fs.readFileSync(path.join(dir, "token"), "utf8").trim();
  // A cluster: every agent sees the two others alive.
  await waitFor("3 agents to see each other alive", 30000, async () => {
    if (demo.exited) throw new Error(`demo exited ${JSON.stringify(demo.exited)}: ${demoOut.slice(-3000)}`);
    for (const i of NODES.keys()) {
      const peers = await api(i, "/v1/peers");
      if (peers.filter((p) => p.liveness === "alive").length !== 2) return false;
    }
    return true;
  });
  // A user counter, on another node than the one whose page we open.
  await api(1, "/v1/counters/browser_test/inc?amount=3", "POST");

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("request", (r) => requests.push(r.url()));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") pageErrors.push(m.text()); });
  await page.goto(`http://127.0.0.1:${httpPort(0)}/`);
});

after(async () => {
  if (browser) await browser.close();
  if (demo && !demo.exited) {
    key("q");
    const gone = await Promise.race([new Promise((r) => demo.once("exit", () => r(true))), sleep(8000).then(() => false)]);
    if (!gone) demo.kill("SIGKILL");
  }
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
  // The demo idles at about 40 degrees, 50 below critical: the "ok" band,
  // painted in the legend's colour for headroom >= 20.
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")].every((l) => l.dataset.band !== "none"), null, { timeout: 10000 });
  assert.deepEqual(await page.$$eval("#room li.node", (ls) => ls.map((l) => l.dataset.band)), ["ok", "ok", "ok"]);
  const [card, swatch] = await page.evaluate(() => [
    getComputedStyle(document.querySelector("#room li.node")).backgroundColor,
    getComputedStyle(document.querySelector(".legend li"), "::before").backgroundColor,
  ]);
  assert.equal(card, swatch);
  assert.match(await page.textContent(".legend"), /headroom ≥ 20 °C.*10–20 °C.*5–10 °C.*< 5 °C/s);
  assert.match(await page.textContent("#room li.node.self"), /demo-1 \(this node\)/);
});

test("power votes: one row per target, every node voting up", async () => {
  await page.waitForFunction(() => {
    const r = document.querySelector("#power tbody tr");
    return r && r.cells.length === 7 && r.cells[3].textContent === "3";
  }, null, { timeout: 15000 });
  const rows = await page.$$eval("#power tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  assert.equal(rows.length, 1);
  assert.equal(rows[0][0], `tcp://127.0.0.1:${base + 2 * NODES.length}`);
  assert.equal(rows[0][1], "up");
  assert.equal(rows[0][3], "3");
  assert.equal(rows[0][4], "0");
});

test("peers: two alive peers; counters: the cluster-wide total", async () => {
  const live = await page.$$eval("#peers tbody tr", (rs) => rs.map((r) => [r.cells[0].textContent, r.dataset.liveness]));
  assert.deepEqual(live, [["demo-2", "alive"], ["demo-3", "alive"]]);
  assert.match(await page.textContent("#peer-counts"), /2 alive · 0 suspect · 0 dead/);
  await page.waitForFunction(() => [...document.querySelectorAll("#counters tbody tr")]
    .some((r) => r.cells[0].textContent === "browser_test" && r.cells[1].textContent === "3"), null, { timeout: 15000 });
  const row = await page.$$eval("#counters tbody tr", (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent))
    .find((c) => c[0] === "browser_test"));
  // Counted on demo-2: the total is 3, this node's (demo-1's) slot 0.
  assert.deepEqual(row, ["browser_test", "3", "0"]);
});

test("power cut: every node counts down to its shutdown, the banner says so", async () => {
  key("p"); // the demo cuts power: its target stops answering
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")].every((l) => l.dataset.state === "pre_fail"),
    null, { timeout: 20000 });
  const first = await page.$$eval("#room .deadline", (ds) => ds.map((d) => d.textContent));
  for (const t of first) assert.match(t, /^shutdown in (9|10)m \d\ds$/, t);
  const banner = await page.textContent("#banner");
  assert.match(banner, /^3 nodes will shut down: /);
  for (const n of NODES) assert.match(banner, new RegExp(`${n} in (9|10)m \\d\\ds \\(power\\)`));
  // Screen readers get the same news once, without the ticking seconds.
  assert.equal(await page.getAttribute("#announce", "role"), "alert");
  const spoken = await page.textContent("#announce");
  assert.match(spoken, /^3 nodes will shut down: /);
  assert.doesNotMatch(spoken, /\dm \d\ds/);
  // The countdown runs between refreshes.
  const secs = (t) => { const m = t.match(/(\d+)m (\d+)s/); return Number(m[1]) * 60 + Number(m[2]); };
  const firstSecs = secs(first[0]);
  await page.waitForFunction((before) => {
    const m = document.querySelector("#room li.node.self .deadline")?.textContent.match(/(\d+)m (\d+)s/);
    return m && Number(m[1]) * 60 + Number(m[2]) < before;
  }, firstSecs, { timeout: 10000 });
  const later = await page.$eval("#room li.node.self .deadline", (d) => d.textContent);
  assert.ok(secs(later) < firstSecs, `${later} should be less than ${first[0]}`);
  const votes = await page.$$eval("#power tbody tr td", (ts) => ts.map((t) => t.textContent));
  assert.equal(votes[4], "3", "3 down votes");
  assert.match(votes[6], /down votes reach quorum/);
  assert.match(await page.textContent("title"), /PRE_FAIL/);
});

test("a killed agent turns dead, then the screenshot", async () => {
  process.kill(agentPid(2), "SIGKILL");
  await page.waitForFunction(() => document.querySelector('#room li.node[data-node="demo-3"]')?.dataset.liveness === "dead",
    null, { timeout: 20000 });
  assert.match(await page.textContent('#room li.node[data-node="demo-3"]'), /dead.*seen \d+s ago/s);
  assert.match(await page.textContent("#peer-counts"), /1 alive · 0 suspect · 1 dead/);
  // What a dead peer last said is not a live countdown.
  assert.match(await page.textContent('#room li.node[data-node="demo-3"] .deadline'), /^last known: shutdown in /);
  await page.waitForFunction(() => document.querySelector("#banner").textContent.startsWith("2 nodes will shut down"), null, { timeout: 5000 });
  fs.mkdirSync(SHOT_DIR, { recursive: true });
  const shot = path.join(SHOT_DIR, "status-page.png");
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(fs.statSync(shot).size > 10000);
  console.log(`screenshot: ${shot}`);
});

test("only this agent's API was asked; an unreachable agent is said so", async () => {
  const origin = `http://127.0.0.1:${httpPort(0)}/`;
  const foreign = requests.filter((u) => !u.startsWith(origin));
  assert.deepEqual(foreign, [], "requests outside the agent");
  assert.deepEqual(pageErrors, [], "JavaScript errors on the page");
  const paths = new Set(requests.map((u) => new URL(u).pathname));
  assert.deepEqual([...paths].sort(), ["/", "/v1/peers", "/v1/state"]);
  process.kill(agentPid(0), "SIGKILL");
  await page.waitForFunction(() => document.body.classList.contains("unreachable"), null, { timeout: 10000 });
  assert.match(await page.textContent("#banner"), /Cannot reach this agent/);
  assert.match(await page.textContent("#announce"), /Cannot reach this agent/);
  // The last view stays on screen.
  assert.equal(await page.$$eval("#room li.node", (ls) => ls.length), 3);
});
