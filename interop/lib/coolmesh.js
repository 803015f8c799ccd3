// An independent implementation of the coolmesh sync protocol
// (docs/protocol.md, version 1), written from the document alone: framing,
// message and record CBOR, signatures and the PeerId -> public key rule.
// Nothing here is generated from or shared with the Rust code.

import { encode, decode } from 'cborg'
import { publicKeyFromProtobuf } from '@libp2p/crypto/keys'

/** Protocol id of the exchange (protocol.md 2, 4). */
export const PROTOCOL = '/coolmesh/sync/1.0.0'
/** Signature domain prefix (protocol.md 5.3): 18 bytes. */
export const SIGNATURE_DOMAIN = new TextEncoder().encode('coolmesh/record/1\n')
/** Record format (payload key 0). */
export const RECORD_FORMAT = 1
/** Our frame limit: the minimum every implementation must accept (4.1). */
export const MAX_FRAME_BYTES = 128 * 1024

/** Request kinds (4.3 key 0). */
export const KIND = { sync: 0, push: 1, records: 2 }

// ---------------------------------------------------------------- framing

/** Unsigned LEB128 (multiformats unsigned-varint) of a non-negative integer. */
export function uvarint (n) {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`uvarint: ${n}`)
  const out = []
  do {
    let b = n % 128
    n = Math.floor(n / 128)
    if (n > 0) b |= 0x80
    out.push(b)
  } while (n > 0)
  return Uint8Array.from(out)
}

/** frame = uvarint(len) || body (4.1). */
export function frame (body) {
  const prefix = uvarint(body.length)
  const out = new Uint8Array(prefix.length + body.length)
  out.set(prefix, 0)
  out.set(body, prefix.length)
  return out
}

/**
 * Try to split one frame off the front of `buf`. Returns
 * `{ body, rest }`, or `null` if more bytes are needed. Throws on a prefix
 * longer than 10 bytes or a length above `max` (before the body arrives).
 */
export function parseFrame (buf, max = MAX_FRAME_BYTES) {
  let len = 0
  let mul = 1
  for (let i = 0; i < buf.length; i++) {
    if (i >= 10) throw new Error('frame: varint longer than 10 bytes')
    const b = buf[i]
    len += (b & 0x7f) * mul
    mul *= 128
    if ((b & 0x80) === 0) {
      if (len > max) throw new Error(`frame: ${len} bytes exceeds the ${max} byte limit`)
      const start = i + 1
      if (buf.length < start + len) return null
      return { body: buf.subarray(start, start + len), rest: buf.subarray(start + len) }
    }
  }
  return null
}

function concat (a, b) {
  const out = new Uint8Array(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * Read exactly one frame from a libp2p stream source (an async iterable of
 * Uint8Array or Uint8ArrayList). Rejects if the stream ends first.
 */
export async function readFrame (source, max = MAX_FRAME_BYTES) {
  let buf = new Uint8Array(0)
  for await (const chunk of source) {
    const bytes = chunk instanceof Uint8Array ? chunk : chunk.subarray()
    buf = concat(buf, bytes)
    const f = parseFrame(buf, max)
    if (f !== null) {
      if (f.rest.length !== 0) throw new Error(`frame: ${f.rest.length} trailing bytes`)
      return f.body
    }
  }
  throw new Error(`stream ended inside a frame (${buf.length} bytes read)`)
}

// ---------------------------------------------------------------- CBOR

// Every structure is a map with small unsigned integer keys (4.2). JS
// objects would encode their keys as text, so maps are built as Map, and
// decoded with useMaps so integer keys stay integers.
const DECODE_OPTIONS = { useMaps: true }

/** CBOR of a value built from Maps (cborg's default: shortest floats). */
export function cbor (value) {
  return encode(value)
}

/** Decode one CBOR item; maps come back as Map. */
export function uncbor (bytes) {
  return decode(bytes, DECODE_OPTIONS)
}

function asMap (v, what) {
  if (!(v instanceof Map)) throw new Error(`${what}: not a CBOR map`)
  return v
}

/** Optional keys may be absent or null (4.2). */
function opt (m, k) {
  const v = m.get(k)
  return v === null ? undefined : v
}

/** Request (4.3). `digest` is [[peerIdBytes, version], ...]. */
export function encodeRequest ({ kind = KIND.sync, cluster, digest = [], records = [] }) {
  return cbor(new Map([
    [0, kind],
    [1, cluster],
    [2, digest.map(([p, v]) => [p, v])],
    [3, records.map(encodeSignedMap)]
  ]))
}

export function decodeRequest (bytes) {
  const m = asMap(uncbor(bytes), 'request')
  const kind = opt(m, 0) ?? 0
  const cluster = m.get(1)
  if (typeof cluster !== 'string') throw new Error('request: cluster (key 1) missing')
  return {
    kind,
    cluster,
    digest: (opt(m, 2) ?? []).map(([p, v]) => [p, v]),
    records: (opt(m, 3) ?? []).map(decodeSignedMap)
  }
}

/** Response (4.4). */
export function encodeResponse ({ records = [], want = [] }) {
  return cbor(new Map([
    [0, records.map(encodeSignedMap)],
    [1, want]
  ]))
}

export function decodeResponse (bytes) {
  const m = asMap(uncbor(bytes), 'response')
  return {
    records: (opt(m, 0) ?? []).map(decodeSignedMap),
    want: opt(m, 1) ?? []
  }
}

function encodeSignedMap ({ payload, signature }) {
  return new Map([[0, payload], [1, signature]])
}

function decodeSignedMap (v) {
  const m = asMap(v, 'SignedRecord')
  const payload = m.get(0)
  const signature = m.get(1)
  if (!(payload instanceof Uint8Array) || !(signature instanceof Uint8Array)) {
    throw new Error('SignedRecord: keys 0 and 1 must be byte strings')
  }
  return { payload, signature }
}

// ---------------------------------------------------------------- records

/**
 * Record payload bytes (5.1) from a plain description. Keys that are
 * undefined are left out; `extra` is a list of [key, value] pairs appended
 * as-is (for unknown-key tests).
 */
export function encodePayload (r) {
  const m = new Map()
  const put = (k, v) => { if (v !== undefined) m.set(k, v) }
  put(0, r.format ?? RECORD_FORMAT)
  put(1, r.cluster)
  put(2, r.peerId)
  put(3, r.version)
  put(4, r.node)
  put(5, r.updatedMs)
  if (r.thermal) {
    const t = new Map()
    const tput = (k, v) => { if (v !== undefined) t.set(k, v) }
    tput(0, r.thermal.hottest)
    tput(1, r.thermal.headroom)
    tput(2, r.thermal.trend)
    tput(3, r.thermal.timeToCritical)
    tput(4, r.thermal.critical)
    m.set(6, t)
  }
  if (r.power) m.set(7, r.power.map(o => new Map([[0, o.target], [1, o.up], [2, o.atMs ?? 0]])))
  put(8, r.powerUp)
  if (r.fsm) {
    const f = new Map([[0, r.fsm.state], [1, r.fsm.reason ?? '']])
    if (r.fsm.deadlineMs !== undefined) f.set(2, r.fsm.deadlineMs)
    m.set(9, f)
  }
  if (r.counters) {
    m.set(10, r.counters.map(c => new Map([
      [0, c.name], [1, c.kind], [2, c.owner ?? r.peerId], [3, c.p], [4, c.n ?? 0]
    ])))
  }
  if (r.addrs) m.set(11, r.addrs)
  for (const [k, v] of r.extra ?? []) m.set(k, v)
  return cbor(m)
}

/** Decode a record payload (5.1) into a plain object (no validation). */
export function decodePayload (bytes) {
  const m = asMap(uncbor(bytes), 'record payload')
  const t = opt(m, 6)
  const f = opt(m, 9)
  return {
    format: m.get(0),
    cluster: m.get(1),
    peerId: m.get(2),
    version: m.get(3),
    node: opt(m, 4) ?? '',
    updatedMs: opt(m, 5) ?? 0,
    thermal: t === undefined
      ? undefined
      : {
          hottest: opt(t, 0),
          headroom: opt(t, 1),
          trend: opt(t, 2),
          timeToCritical: opt(t, 3),
          critical: opt(t, 4) ?? false
        },
    power: (opt(m, 7) ?? []).map(o => ({ target: o.get(0), up: o.get(1), atMs: opt(o, 2) ?? 0 })),
    powerUp: opt(m, 8),
    fsm: f === undefined ? undefined : { state: f.get(0), reason: opt(f, 1) ?? '', deadlineMs: opt(f, 2) },
    counters: (opt(m, 10) ?? []).map(c => ({ name: c.get(0), kind: c.get(1), owner: c.get(2), p: c.get(3), n: opt(c, 4) ?? 0 })),
    addrs: opt(m, 11) ?? [],
    keys: [...m.keys()]
  }
}

/** The signed message: SIGNATURE_DOMAIN || payload (5.3). */
export function signingInput (payload) {
  return concat(SIGNATURE_DOMAIN, payload)
}

/** Sign payload bytes with an Ed25519 private key from @libp2p/crypto. */
export async function signPayload (payload, privateKey) {
  const signature = await privateKey.sign(signingInput(payload))
  return { payload, signature: Uint8Array.from(signature) }
}

function readUvarint (bytes, pos) {
  let n = 0
  let mul = 1
  for (let i = pos; i < bytes.length && i < pos + 10; i++) {
    n += (bytes[i] & 0x7f) * mul
    mul *= 128
    if ((bytes[i] & 0x80) === 0) return [n, i + 1]
  }
  throw new Error('truncated varint')
}

/**
 * The owner's public key from a binary PeerId (5.3): an identity multihash
 * (code 0x00) whose digest is the protobuf PublicKey {Type = Ed25519 (1),
 * Data = 32 bytes}. Parsed by hand to check the document's description,
 * then handed to @libp2p/crypto.
 */
export function publicKeyFromPeerIdBytes (peerId) {
  const [code, p1] = readUvarint(peerId, 0)
  if (code !== 0x00) throw new Error(`PeerId uses multihash code 0x${code.toString(16)}, not identity`)
  const [len, p2] = readUvarint(peerId, p1)
  const digest = peerId.subarray(p2)
  if (digest.length !== len) throw new Error('PeerId: multihash length mismatch')
  // protobuf: field 1 (varint) Type, field 2 (bytes) Data.
  if (digest[0] !== 0x08 || digest[1] !== 0x01) throw new Error('PeerId: key type is not Ed25519 (1)')
  if (digest[2] !== 0x12 || digest[3] !== 32 || digest.length !== 36) throw new Error('PeerId: Ed25519 key data is not 32 bytes')
  return publicKeyFromProtobuf(digest)
}

/**
 * Verify a SignedRecord as 5.3/5.4 describe: the signer is the payload's
 * peer_id. Returns the decoded payload, or throws.
 */
export async function verifyRecord ({ payload, signature }) {
  const p = decodePayload(payload)
  if (p.format !== RECORD_FORMAT) throw new Error(`record format ${p.format}`)
  if (!(p.peerId instanceof Uint8Array)) throw new Error('record peer_id (key 2) is not bytes')
  const key = publicKeyFromPeerIdBytes(p.peerId)
  const ok = await key.verify(signingInput(payload), signature)
  if (!ok) throw new Error('bad signature')
  return p
}

/** Hex, for messages. */
export function hex (b) {
  return Buffer.from(b).toString('hex')
}
