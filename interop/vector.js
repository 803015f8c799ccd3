// Prints the test vector of docs/protocol.md section 13 (deterministic:
// Ed25519 signatures are, and the key comes from a fixed seed).
//   node vector.js
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { encode } from 'cborg'
import { frame, signingInput, hex } from './lib/coolmesh.js'

export async function vector () {
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i)
  const key = await generateKeyPairFromSeed('Ed25519', seed)
  const id = peerIdFromPrivateKey(key)
  const pid = id.toMultihash().bytes
  // Canonical form: definite lengths, keys ascending, shortest integers,
  // every non-integer number as float64.
  const opts = { float64: true }
  const payload = encode(new Map([
    [0, 1],
    [1, 'room-1'],
    [2, pid],
    [3, 1700000000123],
    [4, 'rack3-srv12'],
    [5, 1700000000123],
    [6, new Map([[0, 71.5], [1, 28.5], [2, 0.4], [3, 4275.5], [4, false]])],
    [7, [new Map([[0, 'icmp://10.0.0.254'], [1, true], [2, 1700000000000]])]],
    [8, true],
    [9, new Map([[0, 'normal'], [1, 'power up']])],
    [10, [new Map([[0, 'jobs'], [1, 1], [2, pid], [3, 10], [4, 4]])]],
    [11, [Uint8Array.from([0x04, 127, 0, 0, 1, 0x06, 0x26, 0x95])]]
  ]), opts)
  const signature = await key.sign(signingInput(payload))
  const request = encode(new Map([
    [0, 1],
    [1, 'room-1'],
    [2, [[pid, 1700000000123]]],
    [3, [new Map([[0, payload], [1, signature]])]]
  ]), opts)
  return { seed, peerId: id.toString(), pid, payload, signature, requestFrame: frame(request) }
}

function block (bytes) {
  return hex(bytes).match(/.{1,64}/g).map(l => `    ${l}`).join('\n')
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const v = await vector()
  console.log(`seed (32 bytes):\n\n${block(v.seed)}\n`)
  console.log(`peer_id: \`${v.peerId}\`; as bytes (${v.pid.length}):\n\n${block(v.pid)}\n`)
  console.log(`payload (${v.payload.length} bytes):\n\n${block(v.payload)}\n`)
  console.log(`signature (${v.signature.length} bytes):\n\n${block(v.signature)}\n`)
  console.log(`request frame (${v.requestFrame.length} bytes):\n\n${block(v.requestFrame)}`)
}
