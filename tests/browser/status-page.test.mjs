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
// The demo's agents probe power every second (and sample sensors as often).
const PROBE_MS = 1000;

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

test("history: the sparklines draw for this node and in every card, peers' too", async () => {
  // This node's detail (picked by default): lines of the hottest sensor and
  // the headroom, a point every 10 s and the live one.
  await page.waitForFunction(() => {
    const n = (sel) => Number(document.querySelector(sel)?.dataset.points || 0);
    return document.querySelector("#history").dataset.node === "demo-1" &&
      n("#history svg.spark path.hottest") >= 3 && n("#history svg.spark path.headroom") >= 3;
  }, null, { timeout: 30000 });
  for (const series of ["hottest", "headroom"]) {
    const d = await page.getAttribute(`#history svg.spark path.${series}`, "d");
    const pts = d.match(/[ML]-?[\d.]+ -?[\d.]+/g);
    assert.ok(pts && pts.length >= 3, `${series}: ${d}`);
    for (const p of pts) {
      const [x, y] = p.slice(1).split(" ").map(Number);
      assert.ok(x >= 0 && x <= 300.5 && y >= 0 && y <= 40, `${series} point ${p} outside the chart`);
    }
    // Inside the last few minutes of the 30 shown, the newest at the right edge.
    const xs = pts.map((p) => Number(p.slice(1).split(" ")[0]));
    assert.ok(xs[xs.length - 1] > 295, `${series} ends at ${xs[xs.length - 1]}`);
  }
  assert.match(await page.getAttribute("#history svg.spark", "aria-label"), /demo-1 \(this node\): hottest sensor over the last \d+m \d\ds, now \d+\.\d/);
  // The demo's sensor is a CPU: no air sensor, and the page says so.
  assert.match(await page.textContent("#history"), /no sensor with the role inlet or ambient on this node/);
  // The state band: normal so far, in the state colour of the legend.
  const states = await page.$$eval("#history svg.band rect[data-state]", (rs) => rs.map((r) => r.dataset.state));
  assert.deepEqual([...new Set(states)], ["normal"]);
  const [fill, swatch] = await page.evaluate(() => [
    getComputedStyle(document.querySelector("#history svg.band rect.s-normal")).fill,
    getComputedStyle(document.querySelector("#band-legend li"), "::before").backgroundColor,
  ]);
  assert.equal(fill, swatch);
  // Every card has its small multiple: a line (peers' from their records) and a band.
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")]
    .every((l) => Number(l.querySelector(".mini svg.spark path.hottest")?.dataset.points || 0) >= 2 &&
      l.querySelector(".mini svg.band rect[data-state=normal]")), null, { timeout: 20000 });
  // A peer's history: picked in the list; a click on a card picks too.
  await page.selectOption("#history-node", { label: "demo-2" });
  await page.waitForFunction(() => document.querySelector("#history").dataset.node === "demo-2" &&
    Number(document.querySelector("#history svg.spark path.hottest")?.dataset.points || 0) >= 2, null, { timeout: 10000 });
  assert.match(await page.textContent("#history"), /a peer's record carries no air readings/);
  assert.match(await page.textContent("#journal-note"), /demo-2's own decisions are in its journal/);
  await page.click('#room li.node[data-node="demo-1"] .name');
  await page.waitForFunction(() => document.querySelector("#history").dataset.node === "demo-1", null, { timeout: 5000 });
  assert.equal(await page.$eval("#history-node", (s) => s.selectedOptions[0].textContent), "demo-1 (this node)");
  // The journal: this node's start, newest first.
  await page.waitForFunction(() => document.querySelector("#journal li[data-kind=started]"), null, { timeout: 10000 });
  assert.match(await page.textContent("#journal li[data-kind=started]"), /agent started \(coolmesh [^)]+\), state normal/);
  // What the page drew from: compact arrays, one per series, of equal length.
  const h = await api(0, "/v1/history");
  assert.deepEqual(h.nodes.map((n) => n.node).sort(), NODES);
  assert.equal(h.nodes[0].node, "demo-1");
  for (const n of h.nodes) {
    for (const k of ["hottest", "inlet", "ambient", "headroom", "trend", "state", "air"]) {
      assert.ok(Array.isArray(n[k]) && n[k].length === n.t.length, `${n.node}.${k}`);
    }
    assert.ok(n.t.every((t, i) => typeof t === "number" && t <= 0 && (i === 0 || t >= n.t[i - 1])), `${n.node}.t ${n.t}`);
  }
});

test("a room of 1,000 nodes: the nodes not normal and the hottest first, the rest counted", async () => {
  const r = await page.evaluate(() => {
    const all = [];
    for (let i = 0; i < 1000; i++) {
      all.push({ node: "n" + i, peer_id: "p" + i, self: i === 500, liveness: i === 7 ? "dead" : "alive", stale: false,
        state: i % 100 === 3 ? "pre_fail" : "normal", thermal: { headroom_celsius: 50 - (i % 37), hottest_celsius: 40 + (i % 37) } });
    }
    const v = roomView(all, MAX_CARDS);
    const hr = (n) => n.thermal.headroom_celsius;
    return { max: MAX_CARDS, shown: v.shown.map((n) => n.node), shownHr: v.shown.map(hr), restHr: v.rest.map(hr),
      rest: v.rest.length, text: restText(v.rest) };
  });
  assert.equal(r.max, 60);
  assert.equal(r.shown.length, 60);
  assert.equal(r.rest, 940);
  assert.equal(r.shown[0], "n500", "this node first");
  assert.deepEqual(r.shown.slice(1, 12).sort(), ["n103", "n203", "n3", "n303", "n403", "n503", "n603", "n7", "n703", "n803", "n903"]);
  const hot = r.shownHr.slice(12);
  assert.ok(hot.every((h, i) => i === 0 || h >= hot[i - 1]), "then the least headroom first");
  assert.ok(Math.max(...hot) <= Math.min(...r.restHr), "none left out is hotter than one shown");
  assert.match(r.text, /^\+ 940 more nodes not shown: all normal and alive, headroom \d+\.\d\s°C or more\./);
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

  // History: the transition is in this node's state band and journal at the
  // time the state machine made it (a point of its own, not the next 10 s
  // slot), so within a probe interval; each card's band ends in pre_fail.
  const since = (await api(0, "/v1/state")).fsm.since_ms;
  await page.waitForFunction(() => {
    const rs = [...document.querySelectorAll("#history svg.band rect[data-state]")];
    return rs.length && rs[rs.length - 1].dataset.state === "pre_fail";
  }, null, { timeout: 10000 });
  const bandFrom = await page.$$eval("#history svg.band rect[data-state=pre_fail]", (rs) => Number(rs[0].dataset.fromMs));
  assert.ok(Math.abs(bandFrom - since) <= PROBE_MS, `band: pre_fail from ${bandFrom}, the machine's since ${since}`);
  await page.waitForFunction(() => [...document.querySelectorAll("#room li.node")].every((l) => {
    const rs = l.querySelectorAll(".mini svg.band rect[data-state]");
    return rs.length && rs[rs.length - 1].dataset.state === "pre_fail";
  }), null, { timeout: 10000 });
  // Peers' state changes reach this node by gossip and are sampled every second.
  const h = await api(0, "/v1/history");
  for (const [i, name] of NODES.entries()) {
    const peerSince = (await api(i, "/v1/state")).fsm.since_ms;
    const n = h.nodes.find((x) => x.node === name);
    const first = n.state.findIndex((st) => h.states[st] === "pre_fail");
    assert.ok(first >= 0, `${name}: no pre_fail point in ${JSON.stringify(n.state)}`);
    const at = h.now_ms + n.t[first] * 1000;
    const slack = i === 0 ? PROBE_MS : 2 * PROBE_MS;
    assert.ok(Math.abs(at - peerSince) <= slack, `${name}: pre_fail point at ${at}, its since ${peerSince}`);
  }
  // The journal: the transition, its time, its evidence behind <details>.
  await page.waitForFunction(() => [...document.querySelectorAll("#journal li[data-kind=transition]")]
    .some((li) => /→ pre_fail \(power\)/.test(li.textContent)), null, { timeout: 10000 });
  const entry = await page.$$eval("#journal li[data-kind=transition]", (ls) => {
    const li = ls.find((l) => /→ pre_fail \(power\)/.test(l.textContent));
    return { at: Number(li.dataset.atMs), seq: li.dataset.seq, summary: li.querySelector("details summary").textContent,
      evidence: li.querySelector("details pre").textContent, open: li.querySelector("details").open };
  });
  assert.ok(Math.abs(entry.at - since) <= PROBE_MS, `journal: at ${entry.at}, the machine's since ${since}`);
  assert.match(entry.summary, /\d:\d\d.*→ pre_fail \(power\)/);
  assert.equal(entry.open, false, "evidence folded");
  assert.match(entry.evidence, /^power: own probe round down; \d voting peers/);
  assert.match(entry.evidence, new RegExp(`tcp://127\\.0\\.0\\.1:${base + 2 * NODES.length}: own down; peers down`));
  assert.match(entry.evidence, /thermal: hottest \d+\.\d\s°C, headroom \d+\.\d\s°C/);
  assert.match(entry.evidence, /cooling quorum: weight 0 of \d voting \(needs \d\): not formed/);
  // Unfolded, it stays open across refreshes (the screenshot shows it).
  await page.click(`#journal li[data-seq="${entry.seq}"] summary`);
  assert.equal(await page.$eval(`#journal li[data-seq="${entry.seq}"] details`, (d) => d.open), true);
});

test("a killed agent turns dead, then the screenshot", async () => {
  const killedAt = Date.now();
  process.kill(agentPid(2), "SIGKILL");
  await page.waitForFunction(() => document.querySelector('#room li.node[data-node="demo-3"]')?.dataset.liveness === "dead",
    null, { timeout: 20000 });
  assert.match(await page.textContent('#room li.node[data-node="demo-3"]'), /dead.*seen \d+s ago/s);
  assert.match(await page.textContent("#peer-counts"), /1 alive · 0 suspect · 1 dead/);
  // What a dead peer last said is not a live countdown.
  assert.match(await page.textContent('#room li.node[data-node="demo-3"] .deadline'), /^last known: shutdown in /);
  await page.waitForFunction(() => document.querySelector("#banner").textContent.startsWith("2 nodes will shut down"), null, { timeout: 5000 });
  // The dead peer's band stops where its records did: it no longer grows.
  const bandEnd = () => page.$$eval('#room li.node[data-node="demo-3"] .mini svg.band rect[data-state]',
    (rs) => Number(rs[rs.length - 1].dataset.toMs));
  const end = await bandEnd();
  // Sampled until it turned suspect (4 s), its last point drawn for one period (10 s).
  assert.ok(end <= killedAt + 4000 + 10000 + PROBE_MS, `demo-3's band runs to ${end}, killed at ${killedAt}`);
  await sleep(2500); // a refresh
  // (Times in /v1/history are tenths of a second before its answer.)
  assert.ok(Math.abs(await bandEnd() - end) <= 100, "demo-3's band keeps growing");
  assert.equal(await page.$eval("#journal details[open] summary", (s) => /→ pre_fail/.test(s.textContent)), true);
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
  assert.deepEqual([...paths].sort(), ["/", "/v1/events", "/v1/history", "/v1/peers", "/v1/state"]);
  process.kill(agentPid(0), "SIGKILL");
  await page.waitForFunction(() => document.body.classList.contains("unreachable"), null, { timeout: 10000 });
  assert.match(await page.textContent("#banner"), /Cannot reach this agent/);
  assert.match(await page.textContent("#announce"), /Cannot reach this agent/);
  // The last view stays on screen.
  assert.equal(await page.$$eval("#room li.node", (ls) => ls.length), 3);
});
