// Streams the PCM of a WAV file (s16le, 44.1 kHz, stereo) to a RAOP receiver with npm `node-airtunes2` 2.5.0
// (docs/peers.md): OPTIONS *, ANNOUNCE (ALAC, compressed by its native encoder), SETUP, RECORD,
// SET_PARAMETER, audio over RTP/UDP, then TEARDOWN with an empty request URI. Exits 0 once the
// device is stopped, 1 on a device error, 2 after 60 s.
// Usage: node airtunes2-play.js PEERS HOST PORT FILE.wav
'use strict'
const [peers, host, port, file] = process.argv.slice(2)
const fs = require('fs')
const dgram = require('dgram')
// node-airtunes2 binds its UDP control and timing sockets (and, implicitly, its audio socket) on
// every interface; airtwin's peers stay on loopback, so a bind without an address gets 127.0.0.1.
const bind = dgram.Socket.prototype.bind
dgram.Socket.prototype.bind = function (...args) {
  if (args.length === 0 || typeof args[0] === 'function') {
    return bind.call(this, 0, '127.0.0.1', ...args)
  }
  if (typeof args[0] === 'object' && args[0] !== null) {
    return bind.call(this, { address: '127.0.0.1', ...args[0] }, ...args.slice(1))
  }
  if (typeof args[1] !== 'string') {
    return bind.call(this, args[0], '127.0.0.1', ...args.slice(1))
  }
  return bind.apply(this, args)
}
const AirTunes = require(`${peers}/node/node-airtunes2/package/lib/index.js`)
const say = (...a) => console.log(...a)
setTimeout(() => { say('timeout'); process.exit(2) }, 60000)
// Where the samples of a RIFF/WAVE file start: just past the `data` chunk header.
function dataOffset (path) {
  const b = fs.readFileSync(path)
  let at = 12
  while (at + 8 <= b.length) {
    const id = b.toString('ascii', at, at + 4), size = b.readUInt32LE(at + 4)
    if (id === 'data') return at + 8
    at += 8 + size + (size & 1)
  }
  throw new Error(`${path}: no data chunk`)
}
const at = new AirTunes()
at.add(host, { port: Number(port), volume: 50 }, 0, [])
let started = false
at.on('device', (key, status, desc) => {
  say('device', key, status, desc || '')
  if (status === 'ready' && !started) {
    started = true
    const s = fs.createReadStream(file, { start: dataOffset(file) })
    s.pipe(at)
    s.on('end', () => setTimeout(() => at.stopAll(() => { say('stopped'); process.exit(0) }), 3000))
  }
  if (status === 'error') process.exit(1)
})
