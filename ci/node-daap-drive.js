#!/usr/bin/env node
// Drives a DAAP/DACP library with npm `daap` 0.1.2 (node-daap), a real third-party client: lists
// the library (databases, containers, a container's items, groups), reads an item's artwork,
// plays an item from the library (`playqueue-edit`), reads the play status and pauses.
//
// Usage: node ci/node-daap-drive.js PREFIX HOST PORT [ARTWORK_ITEM] [PLAY_ITEM] [GUID]
//   PREFIX        the npm prefix daap@0.1.2 is installed in (ci/install-peers: target/peers/node/daap)
//   ARTWORK_ITEM  the library item to read artwork of (default 1)
//   PLAY_ITEM     the library item to play (default: ARTWORK_ITEM)
//   GUID          the pairing GUID to log in with (default 0x0000000000000001)
// Prints one line per step ("items: 3", "artwork 1: 73 bytes PNG", "playing: Two | Bob"), and
// "error STEP: …" for a failed step. Exit 0 when every step answered, 1 otherwise, 3 when daap is
// not installed (run ci/install-peers).
//
// Two shims make 0.1.2 run on Node >= 10 (docs/peers.md, "node-daap"): its `bigint` dependency
// is a native addon that no longer builds, so a BigInt-backed stand-in takes its place in the
// module cache; and its parser keeps a module-level `iterator` that must start at 0.
'use strict';
const path = require('path');
const Module = require('module');

const [prefix, host, port, artArg, playArg, guidArg] = process.argv.slice(2);
if (!prefix || !host || !port) {
  console.error('usage: node-daap-drive.js PREFIX HOST PORT [ARTWORK_ITEM] [PLAY_ITEM] [GUID]');
  process.exit(2);
}
const item = Number(artArg || 1);
const playItem = Number(playArg || item);
const modules = path.join(path.resolve(prefix), 'node_modules');
let daap;
try {
  // The stand-in for `bigint`: B(v).and(m).shiftLeft(n).valueOf(), as parser.js uses it.
  const bigintPath = require.resolve('bigint', { paths: [path.join(modules, 'daap')] });
  const B = (v) => {
    const n = BigInt(v);
    return {
      and: (m) => B(n & BigInt(m)),
      shiftLeft: (s) => B(n << BigInt(s)),
      valueOf: () => Number(n),
      toString: () => n.toString(),
    };
  };
  const stub = new Module(bigintPath);
  stub.filename = bigintPath;
  stub.loaded = true;
  stub.exports = B;
  require.cache[bigintPath] = stub;
  daap = require(path.join(modules, 'daap'));
  require(path.join(modules, 'daap', 'lib', 'parser.js')).iterator = 0;
} catch (e) {
  console.error(`node-daap-drive: daap is not installed under ${prefix} (run ci/install-peers): ${e.message}`);
  process.exit(3);
}
daap.host = host;
daap.port = Number(port);
daap.pairingCode = guidArg || '0x0000000000000001';

// Every value under `key`, at any depth (the parser nests repeated tags as arrays of objects).
function all(tree, key, out = []) {
  if (Array.isArray(tree)) {
    tree.forEach((t) => all(t, key, out));
  } else if (tree && typeof tree === 'object' && !Buffer.isBuffer(tree)) {
    for (const [k, v] of Object.entries(tree)) {
      if (k === key) out.push(v);
      all(v, key, out);
    }
  }
  return out;
}

const call = (fn, ...args) =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ err: 'timeout' }), 5000);
    fn(...args, (err, body) => {
      clearTimeout(timer);
      resolve({ err, body });
    });
  });

let failed = false;
function fail(step, err) {
  failed = true;
  console.log(`error ${step}: ${err && err.message ? err.message : err}`);
}

async function main() {
  let r = await call(daap.serverInfo);
  if (r.err) return fail('server-info', r.err);
  console.log(`server-info: ${all(r.body, 'dmap.itemname')[0]}`);

  r = await call(daap.login);
  const sid = r.err ? undefined : all(r.body, 'dmap.sessionid')[0];
  if (!sid) return fail('login', r.err || 'no session id');
  console.log('login: ok');

  r = await call(daap.databases, sid);
  if (r.err) return fail('databases', r.err);
  const db = all(r.body, 'dmap.itemid')[0];
  console.log(`databases: ${db} "${all(r.body, 'dmap.itemname')[0]}" items ${all(r.body, 'dmap.itemcount')[0]}`);

  r = await call(daap.containers, sid, db);
  if (r.err) return fail('containers', r.err);
  const names = all(r.body, 'dmap.itemname');
  const ids = all(r.body, 'dmap.itemid');
  console.log(`containers: ${names.map((n, i) => `${ids[i]} "${n}"`).join(', ')}`);

  for (const c of ids) {
    r = await call(daap.items, sid, db, c);
    if (r.err) return fail(`items ${c}`, r.err);
    const titles = all(r.body, 'dmap.itemname');
    const artists = all(r.body, 'daap.songartist');
    console.log(`container ${c} items: ${titles.length}: ${titles.map((t, i) => `${t} | ${artists[i]}`).join('; ')}`);
  }

  r = await call(daap.groups, sid, db);
  if (r.err) return fail('groups', r.err);
  console.log(`groups (artists): ${all(r.body, 'dmap.itemname').join(', ')}`);

  r = await call(daap.artwork, sid, db, item);
  if (r.err) {
    fail(`artwork ${item}`, r.err);
  } else {
    const png = Buffer.isBuffer(r.body) && r.body.slice(1, 4).toString() === 'PNG';
    console.log(`artwork ${item}: ${r.body.length} bytes${png ? ' PNG' : ''}`);
  }

  r = await call(daap.play, sid, playItem);
  if (r.err) return fail(`play ${playItem}`, r.err);
  console.log(`play ${playItem}: ok`);

  r = await call(daap.playStatusUpdate, sid);
  if (r.err) return fail('playstatusupdate', r.err);
  const caps = all(r.body, 'dacp.playerstate')[0];
  console.log(`playing: ${all(r.body, 'dacp.nowplayingname')[0]} | ${all(r.body, 'dacp.nowplayingartist')[0]}${caps !== undefined ? ` (state ${caps})` : ''}`);

  r = await call(daap.pause, sid);
  if (r.err) return fail('pause', r.err);
  console.log('pause: ok');

  r = await call(daap.getProperty, sid, ['dmcp.volume']);
  if (r.err) return fail('getproperty', r.err);
  console.log(`volume: ${all(r.body, 'dmcp.volume')[0]}`);
}

main().then(
  () => process.exit(failed ? 1 : 0),
  (e) => {
    console.log(`error: ${e.stack || e}`);
    process.exit(1);
  },
);
