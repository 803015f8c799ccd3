// Interop: a js-libp2p peer joins a running cluster of real coolmesh agents
// (release binary, loopback, private network key) and speaks
// /coolmesh/sync/1.0.0 as docs/protocol.md describes it.
//
//   COOLMESH_BIN=/path/to/coolmesh node --test test/
//
// Three agents are started; the JS node dials agent 1 with pnet + noise +
// yamux, fetches every record with an empty-digest sync request, verifies
// their signatures with keys derived from the PeerIds, receives agent 1's
// digest in the agent's own sync requests, then publishes a valid record
// (accepted and relayed to every agent) and two records with bad signatures
// (rejected as bad_signature, never visible).

import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, writeFileSync, readFileSync, rmSync, createWriteStream, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

import '../lib/node20.js'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { preSharedKey } from '@libp2p/pnet'
import { identify } from '@libp2p/identify'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString, peerIdFromPublicKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'

import {
  PROTOCOL, KIND, frame, readFrame, encodeRequest, decodeRequest, encodeResponse,
  decodeResponse, encodePayload, decodePayload, signPayload, verifyRecord,
  publicKeyFromPeerIdBytes, hex
} from '../lib/coolmesh.js'

const here = dirname(fileURLToPath(import.meta.url))
const repo = resolve(here, '..', '..')
const BIN = process.env.COOLMESH_BIN ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'release', 'coolmesh')
const CLUSTER = 'interop'
const AGENTS = 3

// COOLMESH_INTEROP_DUMP=DIR writes every frame seen on the wire to DIR
// (seeds for the wire_decode fuzzer, see fuzz/README.md).
const DUMP = process.env.COOLMESH_INTEROP_DUMP
let dumped = 0
function dump (what, body) {
  if (!DUMP) return
  mkdirSync(DUMP, { recursive: true })
  writeFileSync(join(DUMP, `${String(++dumped).padStart(3, '0')}-${what}.bin`), frame(body))
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

async function eventually (what, fn, { within = 15000, every = 200 } = {}) {
  const deadline = Date.now() + within
  let last
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (e) {
      last = e
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${within} ms waiting for ${what}${last ? `: ${last.message}` : ''}`)
    }
    await sleep(every)
  }
}

/** The agent's first JSON log line (flat: time, level, source, msg, fields) with this message. */
function logged (a, message) {
  if (!existsSync(a.log)) return undefined
  for (const line of readFileSync(a.log, 'utf8').split('\n')) {
    try {
      const f = JSON.parse(line)
      if (f && f.msg === message) return f
    } catch {}
  }
  return undefined
}

/**
 * The agent binds port 0 for HTTP and libp2p; its ports come from its log
 * ("serving HTTP", "listening"): a port picked here and released could be
 * taken by anyone before the agent binds it.
 */
async function listening (a) {
  const http = await eventually(`${a.name} to say where it serves HTTP`,
    () => logged(a, 'serving HTTP'), { within: 30000, every: 100 })
  a.http = Number(http.address.split(':').pop())
  const p2p = await eventually(`${a.name} to say where it listens for peers`,
    () => logged(a, 'listening'), { within: 30000, every: 100 })
  a.p2p = Number(/\/tcp\/(\d+)/.exec(p2p.address)[1])
  a.addr = `/ip4/127.0.0.1/tcp/${a.p2p}/p2p/${a.peerId}`
}

async function getJson (agent, path) {
  const r = await fetch(`http://127.0.0.1:${agent.http}${path}`, { signal: AbortSignal.timeout(3000) })
  assert.equal(r.status, 200, `${path} on ${agent.name}`)
  return r.json()
}

/** coolmesh_gossip_rejected_total by reason. */
async function rejected (agent) {
  const r = await fetch(`http://127.0.0.1:${agent.http}/metrics`, { signal: AbortSignal.timeout(3000) })
  const text = await r.text()
  const out = {}
  for (const m of text.matchAll(/^coolmesh_gossip_rejected_total\{reason="([a-z_]+)"\} (\S+)$/gm)) {
    out[m[1]] = Number(m[2])
  }
  assert.ok('bad_signature' in out, `no coolmesh_gossip_rejected_total series on ${agent.name}`)
  return out
}

/** Gossip messages the agent has sent (coolmesh_gossip_messages_total, out). */
async function gossipOut (agent) {
  const r = await fetch(`http://127.0.0.1:${agent.http}/metrics`, { signal: AbortSignal.timeout(3000) })
  const text = await r.text()
  let n = 0
  for (const m of text.matchAll(/^coolmesh_gossip_messages_total\{direction="out"[^}]*\} (\S+)$/gm)) {
    n += Number(m[1])
  }
  return n
}

const peersOf = agent => getJson(agent, '/v1/peers')
const counterOf = async (agent, name) =>
  (await getJson(agent, '/v1/counters')).find(c => c.name === name)?.value

// ------------------------------------------------------------ the cluster

let tmp
const agents = []
let pskFile

function startAgent (a, peers) {
  const args = [
    'agent',
    '--cluster.name', CLUSTER,
    '--cluster.listen', '/ip4/127.0.0.1/tcp/0',
    '--cluster.no-mdns',
    '--cluster.psk-file', pskFile,
    ...peers.flatMap(p => ['--cluster.peer', p]),
    '--web.listen-address', '127.0.0.1:0',
    '--state-dir', a.state,
    '--node.name', a.name,
    '--dry-run',
    '--sensors.source', 'file',
    '--sensors.file', a.readings,
    '--sensors.interval', '1s',
    '--log.format', 'json',
    '--log.level', 'info,coolmesh_agent::cluster=debug'
  ]
  const log = createWriteStream(a.log)
  a.proc = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  a.proc.stderr.pipe(log)
  a.exited = new Promise(resolve => a.proc.on('exit', (code, signal) => resolve({ code, signal })))
}

before(async () => {
  assert.ok(existsSync(BIN), `no agent binary at ${BIN} (build it: cargo build --release, or set COOLMESH_BIN)`)
  tmp = mkdtempSync(join(tmpdir(), 'coolmesh-interop-'))
  pskFile = join(tmp, 'swarm.key')
  execFileSync(BIN, ['keygen', '--psk', '--out', pskFile], { stdio: ['ignore', 'ignore', 'pipe'] })
  for (let i = 1; i <= AGENTS; i++) {
    const a = {
      name: `agent-${i}`,
      dir: join(tmp, `agent-${i}`)
    }
    a.state = join(a.dir, 'state')
    a.readings = join(tmp, `readings-${i}.json`)
    a.log = join(tmp, `agent-${i}.log`)
    writeFileSync(a.readings, JSON.stringify([
      { chip: 'inlet', sensor: 't', celsius: 30 + i, critical_celsius: 80 }
    ]))
    // `keygen` creates the identity and prints its PeerId.
    const out = execFileSync(BIN, ['keygen', '--state-dir', a.state], { encoding: 'utf8' })
    a.peerId = out.trim().split(/\s+/).find(w => w.startsWith('12D3Koo'))
    assert.ok(a.peerId, `keygen printed no PeerId: ${out}`)
    agents.push(a)
  }
  // The first agent's real port is the others' bootstrap address.
  for (const [i, a] of agents.entries()) {
    startAgent(a, i === 0 ? [] : [agents[0].addr])
    await listening(a)
  }
  // Every agent sees the other two alive.
  for (const a of agents) {
    await eventually(`${a.name} to see ${AGENTS - 1} alive peers`, async () => {
      const ps = await peersOf(a)
      return ps.filter(p => p.liveness === 'alive').length === AGENTS - 1
    }, { within: 30000 })
  }
})

after(async () => {
  for (const a of agents) {
    if (a.proc && a.proc.exitCode === null) {
      a.proc.kill('SIGTERM')
      const r = await Promise.race([a.exited, sleep(5000).then(() => null)])
      if (r === null) a.proc.kill('SIGKILL')
    }
  }
  if (process.env.COOLMESH_INTEROP_KEEP) {
    console.log(`kept ${tmp}`)
  } else if (tmp) {
    rmSync(tmp, { recursive: true, force: true })
  }
})

function agentLogs () {
  return agents.map(a => `--- ${a.name} (${a.log})\n${existsSync(a.log) ? readFileSync(a.log, 'utf8').split('\n').slice(-40).join('\n') : ''}`).join('\n')
}

// ------------------------------------------------------------ the JS peer

/**
 * A minimal member: holds verified records (owner hex -> signed), answers
 * inbound sync requests as protocol.md 4.5 says, and records what it saw.
 */
class Member {
  constructor (peerIdBytes) {
    this.me = hex(peerIdBytes)
    this.store = new Map() // owner hex -> { version, signed }
    this.inbound = [] // decoded requests received
    this.errors = []
  }

  async accept (signed) {
    const p = await verifyRecord(signed) // throws on a bad one
    if (p.cluster !== CLUSTER) throw new Error(`record of cluster ${p.cluster}`)
    const owner = hex(p.peerId)
    if (owner === this.me) return p
    const cur = this.store.get(owner)
    if (!cur || cur.version < p.version) this.store.set(owner, { version: p.version, signed })
    return p
  }

  digest () {
    return [...this.store.entries()].map(([o, e]) => [Buffer.from(o, 'hex'), e.version])
  }

  async onRequest ({ stream, connection }) {
    try {
      const body = await readFrame(stream.source)
      dump(`rust-request-kind${body[2] ?? ''}`, body)
      const req = decodeRequest(body)
      this.inbound.push({ from: connection.remotePeer.toString(), req })
      if (req.cluster !== CLUSTER) {
        stream.abort(new Error('unauthorized'))
        return
      }
      for (const s of req.records) await this.accept(s)
      let resp = { records: [], want: [] }
      if (req.kind !== KIND.records) {
        const theirs = new Map(req.digest.map(([p, v]) => [hex(p), v]))
        const requester = hex(connection.remotePeer.toMultihash().bytes)
        resp = {
          records: [...this.store.entries()]
            .filter(([o, e]) => o !== requester && !(theirs.get(o) >= e.version))
            .map(([, e]) => e.signed),
          want: [...theirs.entries()]
            .filter(([o, v]) => o !== this.me && !((this.store.get(o)?.version ?? -1) >= v))
            .map(([o]) => Buffer.from(o, 'hex'))
        }
      }
      const out = encodeResponse(resp)
      dump('js-response', out)
      await stream.sink([frame(out)])
    } catch (e) {
      this.errors.push(e)
      stream.abort(e)
    }
  }
}

async function newNode (privateKey, psk) {
  return createLibp2p({
    privateKey,
    addresses: { listen: [] },
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify() }
  })
}

/** One exchange: write the request frame, close, read the response frame. */
async function exchange (node, addr, req) {
  const stream = await node.dialProtocol(multiaddr(addr), PROTOCOL, { signal: AbortSignal.timeout(5000) })
  const out = encodeRequest(req)
  dump('js-request', out)
  await stream.sink([frame(out)])
  const body = await readFrame(stream.source)
  dump('rust-response', body)
  return decodeResponse(body)
}

// ------------------------------------------------------------ the test

test('a js-libp2p peer joins the cluster and speaks /coolmesh/sync/1.0.0', async (t) => {
  const key = await generateKeyPair('Ed25519')
  const peerId = peerIdFromPrivateKey(key)
  const pidBytes = peerId.toMultihash().bytes
  const member = new Member(pidBytes)
  const psk = readFileSync(pskFile)
  const node = await newNode(key, psk)
  await node.handle(PROTOCOL, args => member.onRequest(args))
  await node.start()
  const [a1] = agents
  const byId = new Map(agents.map(a => [a.peerId, a]))

  try {
    // -- 1. fetch every record with an empty-digest sync request
    const resp = await exchange(node, a1.addr, { kind: KIND.sync, cluster: CLUSTER, digest: [], records: [] })
    assert.equal(resp.want.length, 0, 'an empty digest makes the responder want nothing')
    assert.equal(resp.records.length, AGENTS, 'one record per agent')
    const seen = new Set()
    for (const s of resp.records) {
      const p = await verifyRecord(s) // Ed25519 over "coolmesh/record/1\n" || payload
      const owner = peerIdFromPublicKey(publicKeyFromPeerIdBytes(p.peerId)).toString()
      assert.ok(byId.has(owner), `record of an unknown owner ${owner}`)
      assert.equal(p.node, byId.get(owner).name)
      assert.equal(p.cluster, CLUSTER)
      assert.equal(p.format, 1)
      assert.equal(typeof p.version, 'number')
      assert.ok(p.version >= 1_600_000_000_000, `version ${p.version} is at least the wall clock in ms (5.5)`)
      assert.equal(p.fsm?.state, 'normal')
      assert.equal(p.thermal?.hottest, 30 + Number(byId.get(owner).name.split('-')[1]))
      for (const c of p.counters) assert.equal(hex(c.owner), hex(p.peerId), 'own slots only')
      // A tampered copy must fail.
      const bad = Uint8Array.from(s.signature)
      bad[0] ^= 1
      await assert.rejects(verifyRecord({ payload: s.payload, signature: bad }), /bad signature/)
      await member.accept(s)
      seen.add(owner)
    }
    assert.equal(seen.size, AGENTS)
    t.diagnostic(`fetched and verified ${resp.records.length} records; payload keys ${JSON.stringify(decodePayload(resp.records[0].payload).keys)}`)

    // -- 2. the agent's own sync requests carry its digest (first contact
    // and hub rounds); the JS member answers them.
    const inbound = await eventually('a sync request with a digest from agent-1', () =>
      member.inbound.find(r => r.from === a1.peerId && r.req.kind === KIND.sync && r.req.digest.length >= AGENTS))
    const digest = new Map(inbound.req.digest.map(([p, v]) => [peerIdFromPublicKey(publicKeyFromPeerIdBytes(p)).toString(), v]))
    for (const a of agents) assert.ok(digest.get(a.peerId) > 0, `digest of agent-1 lists ${a.name}`)
    assert.equal(inbound.req.cluster, CLUSTER)
    assert.deepEqual(member.errors, [])

    // identify (protocol.md 2): the agents advertise the sync protocol and
    // their protocol version; they keep the JS peer connected because it
    // lists /coolmesh/sync/1.0.0 too.
    const info = await eventually('identify of agent-1', async () => {
      const p = await node.peerStore.get(peerIdFromString(a1.peerId))
      return p.protocols.includes(PROTOCOL) ? p : null
    })
    assert.equal(new TextDecoder().decode(info.metadata.get('ProtocolVersion')), '/coolmesh/1.0.0')
    assert.match(new TextDecoder().decode(info.metadata.get('AgentVersion')), /^coolmesh\/\d+\.\d+\.\d+/)

    const before = await Promise.all(agents.map(rejected))

    // -- 3. publish a record of our own (kind 1 = push, as agents do)
    const version = Date.now()
    const payload = encodePayload({
      cluster: CLUSTER,
      peerId: pidBytes,
      version,
      node: 'js-interop',
      updatedMs: version,
      // cborg writes 42.5 as a half float and 37 as an integer: both are
      // valid "numbers" (4.2).
      thermal: { hottest: 42.5, headroom: 37, trend: 0.25, critical: false },
      power: [{ target: 'tcp://127.0.0.1:1', up: true, atMs: version }],
      powerUp: true,
      fsm: { state: 'normal', reason: 'js-libp2p interop peer' },
      counters: [{ name: 'interop_js', kind: 0, p: 7 }],
      // An unknown key (append-only rule, 4.2): must be ignored.
      extra: [[99, 'from the future']]
    })
    const good = await signPayload(payload, key)
    const pushResp = await exchange(node, a1.addr, {
      kind: KIND.push,
      cluster: CLUSTER,
      digest: [[pidBytes, version], ...member.digest()],
      records: [good]
    })
    assert.equal(pushResp.want.length, 0)
    member.store.set(member.me, { version, signed: good })

    // Accepted by agent-1 and relayed, unchanged, to the others.
    for (const a of agents) {
      const entry = await eventually(`${a.name} to list the JS peer in /v1/peers`, async () =>
        (await peersOf(a)).find(p => p.peer_id === peerId.toString()))
      assert.equal(entry.node, 'js-interop')
      assert.equal(entry.version, version)
      assert.equal(entry.thermal.hottest_celsius, 42.5)
      assert.equal(entry.power_up, true)
      assert.equal(entry.state, 'normal')
      assert.equal(await eventually(`${a.name} to count interop_js`, () => counterOf(a, 'interop_js')), 7)
    }
    const afterGood = await Promise.all(agents.map(rejected))
    assert.deepEqual(afterGood, before, 'no rejection for the valid record')

    // -- 4. two records with bad signatures
    // (a) a stranger's record whose signature has one bit flipped
    const stranger = await generateKeyPair('Ed25519')
    const strangerId = peerIdFromPrivateKey(stranger)
    const strangerSigned = await signPayload(encodePayload({
      cluster: CLUSTER,
      peerId: strangerId.toMultihash().bytes,
      version: Date.now(),
      node: 'forged',
      fsm: { state: 'shutdown', reason: 'forged' }
    }), stranger)
    strangerSigned.signature[5] ^= 0x40
    // (b) a newer version of our own record, altered after signing
    const forgedOwn = {
      payload: encodePayload({
        cluster: CLUSTER, peerId: pidBytes, version: version + 1, node: 'js-interop-forged', updatedMs: version + 1
      }),
      signature: good.signature
    }
    const r2 = await exchange(node, a1.addr, {
      kind: KIND.records, cluster: CLUSTER, digest: [], records: [strangerSigned, forgedOwn]
    })
    assert.equal(r2.records.length, 0, 'a kind-2 request gets an empty response')
    await eventually('agent-1 to count two bad_signature rejections', async () =>
      (await rejected(a1)).bad_signature >= before[0].bad_signature + 2)
    const afterBad = await Promise.all(agents.map(rejected))
    assert.equal(afterBad[0].bad_signature, before[0].bad_signature + 2)
    for (const [i, a] of agents.entries()) {
      for (const reason of Object.keys(before[i])) {
        if (i === 0 && reason === 'bad_signature') continue
        assert.equal(afterBad[i][reason], before[i][reason], `${a.name} ${reason}`)
      }
    }
    // Never visible, anywhere, and our good version stays: two more gossip
    // messages out of every agent (rounds that would have spread it).
    const sent = await Promise.all(agents.map(gossipOut))
    await eventually('two more gossip messages out of every agent', async () =>
      (await Promise.all(agents.map(gossipOut))).every((n, i) => n >= sent[i] + 2), { within: 30000 })
    for (const a of agents) {
      const ps = await peersOf(a)
      assert.equal(ps.find(p => p.peer_id === strangerId.toString()), undefined, `${a.name} lists the forged record`)
      const mine = ps.find(p => p.peer_id === peerId.toString())
      assert.equal(mine.node, 'js-interop')
      assert.equal(mine.version, version)
    }

    // -- 5. without the key, nothing gets through (2.1)
    const other = await newNode(await generateKeyPair('Ed25519'), new TextEncoder().encode(generateKeyString()))
    await other.start()
    try {
      await assert.rejects(exchange(other, a1.addr, { kind: KIND.sync, cluster: CLUSTER }))
    } finally {
      await other.stop()
    }

    assert.deepEqual(member.errors.map(String), [], 'inbound requests all decoded')
    t.diagnostic(`inbound requests from agents: ${JSON.stringify(countKinds(member.inbound))}`)
  } catch (e) {
    console.error(agentLogs())
    throw e
  } finally {
    await node.stop()
  }
})

function countKinds (list) {
  const out = {}
  for (const { req } of list) out[req.kind] = (out[req.kind] ?? 0) + 1
  return out
}

/** Another private network's swarm.key (protocol.md 2.1 format). */
function generateKeyString () {
  return `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`
}
