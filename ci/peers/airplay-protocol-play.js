// Plays a URL on an AirPlay receiver with npm `airplay-protocol` 2.0.2 (docs/peers.md) and prints
// what its event channel reports: `POST /play` opens `POST /reverse` (PTTH/1.0). On the first
// `playing` it reads the playback info and the access log (`POST /getProperty`), sets
// `forwardEndTime` (`PUT /setProperty`) and pauses; on `paused` it scrubs to 1.5 s and resumes;
// on the next `playing` it stops. Exits 0 on the `stopped` event, 2 after 20 s.
// Usage: node airplay-protocol-play.js PEERS HOST PORT URL
'use strict'
const [peers, host, port, url] = process.argv.slice(2)
const AirPlay = require(`${peers}/node/airplay-protocol/node_modules/airplay-protocol`)
const ap = new AirPlay(host, Number(port))
const say = (...a) => console.log(...a)
const result = (name, err, value) => say(name, err ? err.message : JSON.stringify(value))
let playing = 0
setTimeout(() => { say('timeout: no stopped event'); process.exit(2) }, 20000)
ap.on('event', (e) => {
  say('event', JSON.stringify(e))
  if (e.state === 'playing' && ++playing === 1) {
    ap.playbackInfo((err, res, info) => {
      result('playback-info', err, info && { duration: info.duration, rate: info.rate })
      ap.property('playbackAccessLog', (err, res, log) => {
        result('playbackAccessLog', err, log)
        ap.property('forwardEndTime', { value: 12 }, (err, res, body) => {
          result('setProperty forwardEndTime', err, body)
          ap.pause((err) => result('pause', err, 'ok'))
        })
      })
    })
  } else if (e.state === 'paused') {
    ap.scrub(1.5, (err) => {
      result('scrub', err, 'ok')
      ap.resume((err) => result('resume', err, 'ok'))
    })
  } else if (e.state === 'playing') {
    ap.stop((err) => result('stop', err, 'ok'))
  } else if (e.state === 'stopped') {
    say('event channel reported stopped')
    setTimeout(() => process.exit(0), 200)
  }
})
ap.serverInfo((err, res, info) => {
  result('server-info', err, info && info.model)
  ap.play(url, 0, (err) => result('play', err, 'ok'))
  // Without a handler, an error of the reverse connection kills the process (docs/peers.md).
  ap._rserver.on('error', (e) => say('reverse error:', e.message))
})
