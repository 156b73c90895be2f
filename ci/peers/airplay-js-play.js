// Plays, scrubs and stops a URL on an AirPlay receiver with npm `airplay-js` 0.2.16
// (docs/peers.md), whose client writes every request with bare LF line ends. Its Device class
// hard-codes port 7000, so this drives its Client directly: the connect ping (GET
// /playback-info), POST /play, POST /rate?value=0, POST /scrub?position=1.5, GET /scrub,
// POST /stop; prints each status and exits 0, or 1 when a step fails, 2 after 20 s.
// Usage: node airplay-js-play.js PEERS HOST PORT URL
'use strict'
const [peers, host, port, url] = process.argv.slice(2)
const { Client } = require(`${peers}/node/airplay-js/node_modules/airplay-js/airplay/client`)
const say = (...a) => console.log(...a)
setTimeout(() => { say('timeout'); process.exit(2) }, 20000)
const step = (name, res, next) => {
  say(name, res ? res.statusCode : 'no answer', res && res.body ? JSON.stringify(res.body.trim()) : '')
  if (!res || res.statusCode !== 200) process.exit(1)
  next()
}
const c = new Client({ host, port: Number(port) }, (res) => step('ping', res, () =>
  c.simpleplay(url, 0, (res) => step('play', res, () =>
    c.rate(0, (res) => step('pause', res, () =>
      c.scrub(1.5, (res) => step('scrub', res, () =>
        c.get('/scrub', (res) => step('position', res, () =>
          c.stop((res) => step('stop', res, () => { c.close(); say('done'); process.exit(0) }))))))))))))
c.on('error', (e) => { say('error', e.type, e.res && e.res.message); process.exit(1) })
