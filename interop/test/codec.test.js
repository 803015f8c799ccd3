// The JS codec against the vectors of docs/protocol.md (no agent needed).

import { test } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromPublicKey } from '@libp2p/peer-id'

import {
  uvarint, frame, parseFrame, readFrame, encodeRequest, decodeRequest, encodePayload,
  decodePayload, signPayload, verifyRecord, publicKeyFromPeerIdBytes, SIGNATURE_DOMAIN, hex
} from '../lib/coolmesh.js'

test('uvarint is unsigned LEB128', () => {
  assert.equal(hex(uvarint(0)), '00')
  assert.equal(hex(uvarint(127)), '7f')
  assert.equal(hex(uvarint(128)), '8001')
  assert.equal(hex(uvarint(300)), 'ac02')
  assert.equal(hex(uvarint(1024 * 1024)), '808040')
})

test('frames split, wait for more bytes, and refuse oversize before the body', async () => {
  const f = frame(new Uint8Array([1, 2, 3]))
  assert.equal(hex(f), '03010203')
  assert.equal(parseFrame(f.subarray(0, 2)), null)
  assert.deepEqual([...parseFrame(f).body], [1, 2, 3])
  assert.throws(() => parseFrame(uvarint(200_000)), /exceeds/)
  assert.throws(() => parseFrame(new Uint8Array(11).fill(0xff)), /10 bytes/)
  async function * chunks () { yield f.subarray(0, 1); yield f.subarray(1) }
  assert.deepEqual([...await readFrame(chunks())], [1, 2, 3])
  async function * short () { yield f.subarray(0, 2) }
  await assert.rejects(readFrame(short()), /ended inside a frame/)
})

test('the signature domain is the 18 bytes "coolmesh/record/1\\n"', () => {
  assert.equal(SIGNATURE_DOMAIN.length, 18)
  assert.equal(SIGNATURE_DOMAIN[17], 0x0a)
})

test('requests use integer map keys', () => {
  const req = encodeRequest({ kind: 1, cluster: 'room-1', digest: [[new Uint8Array([0, 1]), 5]], records: [] })
  // a4 (map 4) 00 01 (0: 1) 01 66 "room-1" ...
  assert.equal(hex(req.subarray(0, 5)), 'a400010166')
  const back = decodeRequest(req)
  assert.equal(back.kind, 1)
  assert.equal(back.cluster, 'room-1')
  assert.equal(back.digest[0][1], 5)
})

test('records sign and verify; the key comes out of the PeerId', async () => {
  const key = await generateKeyPair('Ed25519')
  const id = peerIdFromPrivateKey(key)
  const pid = id.toMultihash().bytes
  assert.equal(hex(pid.subarray(0, 6)), '002408011220', 'identity multihash of a protobuf Ed25519 key')
  assert.ok(peerIdFromPublicKey(publicKeyFromPeerIdBytes(pid)).equals(id))
  const s = await signPayload(encodePayload({ cluster: 'c', peerId: pid, version: 1, thermal: { hottest: 1.5 } }), key)
  assert.equal(s.signature.length, 64)
  const p = await verifyRecord(s)
  assert.equal(p.thermal.hottest, 1.5)
  assert.deepEqual(decodePayload(s.payload).keys, [0, 1, 2, 3, 6])
  const other = await generateKeyPair('Ed25519')
  const forged = await signPayload(s.payload, other)
  await assert.rejects(verifyRecord(forged), /bad signature/)
})

test('docs/protocol.md section 13: the test vector is what this codec produces', async () => {
  const { readFileSync } = await import('node:fs')
  const { vector } = await import('../vector.js')
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8')
  const section = doc.slice(doc.indexOf('## 13. Test vector'))
  const block = label => {
    const lines = section.slice(section.indexOf(`\n${label} (`) + 1).split('\n').slice(1)
    const body = []
    for (const l of lines.slice(lines.findIndex(l => l.trim() !== ''))) {
      if (!l.startsWith('    ')) break
      body.push(l.trim())
    }
    return body.join('')
  }
  const v = await vector()
  assert.equal(block('payload'), hex(v.payload))
  assert.equal(block('signature'), hex(v.signature))
  assert.equal(block('request frame'), hex(v.requestFrame))
  assert.ok(section.includes(v.peerId))
  const p = await verifyRecord({ payload: v.payload, signature: v.signature })
  assert.equal(p.thermal.timeToCritical, 4275.5)
})
