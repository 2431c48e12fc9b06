// Injected faults, each with real processes, and their measured effect (printed as test
// diagnostics, for docs/faults.md):
//
// 1. A cluster peer that takes the data connection and never reads: a fake node in this process
//    sends hellos (hand-encoded protobuf) naming a TCP listener that accepts and never reads.
//    The real nodes' queue toward it stays bounded (their memory), it is dropped with one warning
//    per stall, every HTTP publish answers 200, and delivery between the two real nodes loses
//    nothing (p99 latency before and during the fault).
// 2. Garbage on the cluster's ports: data connections without a handshake, with one that does not
//    decode or names another cluster, oversized frames and envelopes that do not decode after a
//    valid one; datagrams that are not hellos and hellos of another cluster. Each is logged once
//    (per connection, per sender), no node crashes, and delivery between them goes on.
// 3. Redis stalled with SIGSTOP (not killed) under the Redis adapter: each node's own traffic
//    flows, the HTTP API answers within 1 s, and after SIGCONT the fleet delivers across nodes
//    again with no duplicate. NATS killed and restarted under the NATS adapter: back within 5 s.
// 4. SIGKILL of a node in the middle of webhook batches with the Redis queue: every webhook
//    arrives at least once (through the restarted node), the open batch included (its events
//    are in Redis from the moment they fire); the duplicates are counted.
//
// Waits have deadlines, as everywhere in this suite; the fixed durations are the subject of a
// test (Redis stays stopped for 10 s).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';

import { Scope, httpRequest, signRequest, startServer, uniqueChannel, until } from './harness.mjs';
import { clusterView, poll, randomClusterPort, randomMulticastGroup, useBusFleets, useFleet } from './cluster.mjs';
import { natsSkip, startNats } from './nats.mjs';
import { redisCommands, redisSkip, startRedis } from './redis.mjs';
import { DEFAULT_APP, assertWebhookRequest, countBy, hooksEnv } from './webhook-checks.mjs';
import { startReceiver } from './webhook-receiver.mjs';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** The output a server printed since `mark` (a `logMark()`), as far as its kept tail reaches. */
function logsSince(server, mark) {
  const all = server.logs();
  return all.slice(Math.max(0, all.length - (server.logMark() - mark)));
}

/** The lines of `text` that contain `needle`. */
function linesWith(text, needle) {
  return text.split('\n').filter((line) => line.includes(needle));
}

/** The resident memory of a process, in MiB, from /proc. */
function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
  return kb / 1024;
}

/** The `q`-quantile (0..1) of a list of numbers, by the nearest rank. */
function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function summary(latencies) {
  const f = (v) => v.toFixed(1);
  return `p50 ${f(quantile(latencies, 0.5))} ms, p99 ${f(quantile(latencies, 0.99))} ms, max ${f(Math.max(...latencies))} ms over ${latencies.length}`;
}

/** A signed POST /events through `scope`'s node, with the answer's status and time. */
async function postEvent(scope, channel, name, data, { timeout = 5_000 } = {}) {
  const body = JSON.stringify({ name, channels: [channel], data: typeof data === 'string' ? data : JSON.stringify(data) });
  const { url } = signRequest(scope.server, { method: 'POST', path: `/apps/${scope.server.appId}/events`, body });
  const started = performance.now();
  const res = await httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, timeout });
  return { status: res.status, text: res.text, ms: performance.now() - started };
}

/** A signed GET through `scope`'s node, with the answer's status and time. */
async function getSigned(scope, path, { timeout = 5_000 } = {}) {
  const { url } = signRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}${path}` });
  const started = performance.now();
  const res = await httpRequest(url, { timeout });
  return { status: res.status, json: res.json, text: res.text, ms: performance.now() - started };
}

/**
 * A raw client on `scope`'s node subscribed to `channel` that records, by `seq`, when each event
 * `name` arrives (`performance.now()`), and how many times.
 */
async function arrivals(scope, channel, name) {
  const client = await scope.rawConnected();
  await client.subscribeOk(channel);
  const at = new Map();
  const counts = new Map();
  const waiters = new Map();
  client.ws.on('message', (raw) => {
    let frame;
    try {
      frame = JSON.parse(raw.toString());
    } catch {
      return;
    }
    if (frame.event !== name || frame.channel !== channel) return;
    const { seq } = JSON.parse(frame.data);
    counts.set(seq, (counts.get(seq) ?? 0) + 1);
    if (!at.has(seq)) at.set(seq, performance.now());
    waiters.get(seq)?.();
  });
  return {
    client,
    at,
    counts,
    /** Resolves with the arrival time of `seq`, or rejects after `timeout`. */
    wait(seq, timeout = 10_000) {
      if (at.has(seq)) return Promise.resolve(at.get(seq));
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(seq);
          reject(new Error(`event ${name} #${seq} did not reach ${scope.label}'s client on ${channel} within ${timeout} ms`));
        }, timeout);
        waiters.set(seq, () => {
          clearTimeout(timer);
          waiters.delete(seq);
          resolve(at.get(seq));
        });
      });
    },
  };
}

/**
 * Publishes `count` probes one after the other through `from` (seq `first`, `first + 1`, ...)
 * and resolves with each one's latency (ms) from the request to its arrival at `to`.
 */
async function probeLatencies(from, to, channel, first, count) {
  const latencies = [];
  for (let seq = first; seq < first + count; seq++) {
    const sent = performance.now();
    const arrived = to.wait(seq);
    const res = await postEvent(from, channel, 'probe', { seq });
    assert.equal(res.status, 200, `probe #${seq} through ${from.label}: ${res.status} ${res.text}`);
    latencies.push((await arrived) - sent);
  }
  return latencies;
}

// Protocol buffers, hand-encoded: the few fields of crates/soketi-adapter-cluster/proto.

function varint(value) {
  const out = [];
  let v = BigInt(value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

const pbUint = (field, value) => Buffer.concat([varint(field << 3), varint(value)]);
const pbString = (field, text) => {
  const bytes = Buffer.from(text);
  return Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
};

/** A discovery `Hello` (version 1). */
function hello({ prefix, nodeId, startedAtMs, dataPort }) {
  return Buffer.concat([pbUint(1, 1), pbString(2, prefix), pbString(3, nodeId), pbUint(4, startedAtMs), pbUint(5, dataPort)]);
}

/** A data-plane `Handshake` (version 1). */
function handshake({ prefix, nodeId }) {
  return Buffer.concat([pbUint(1, 1), pbString(2, prefix), pbString(3, nodeId)]);
}

/** A data-plane frame: a 4-byte big-endian length, then the bytes. */
function frame(bytes) {
  const head = Buffer.alloc(4);
  head.writeUInt32BE(bytes.length);
  return Buffer.concat([head, bytes]);
}

/** Bytes that are no protobuf message: a field key whose varint never ends. */
const NOT_PROTOBUF = Buffer.alloc(12, 0xff);

/** A UDP socket that sends to the cluster's multicast group on loopback only (TTL 1). */
async function multicastSender() {
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', resolve);
  });
  socket.setMulticastInterface('127.0.0.1');
  socket.setMulticastTTL(1);
  socket.setMulticastLoopback(true);
  return socket;
}

function sendDatagram(socket, bytes, port, group) {
  return new Promise((resolve, reject) => socket.send(bytes, port, group, (err) => (err ? reject(err) : resolve())));
}

/**
 * A fake cluster node: it sends a hello every `intervalMs` naming a TCP listener that accepts
 * data connections and never reads them. `connections` counts what it accepted.
 */
async function startStuckPeer({ clusterPort, group, prefix, intervalMs }) {
  const held = [];
  const listener = net.createServer((socket) => {
    socket.pause();
    held.push(socket);
  });
  await new Promise((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const dataPort = listener.address().port;
  const nodeId = `stuck-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  const socket = await multicastSender();
  const bytes = hello({ prefix, nodeId, startedAtMs: Date.now() + 60_000, dataPort });
  const send = () => socket.send(bytes, clusterPort, group);
  send();
  const timer = setInterval(send, intervalMs);
  return {
    nodeId,
    dataPort,
    get connections() {
      return held.length;
    },
    async stop() {
      clearInterval(timer);
      socket.close();
      for (const s of held) s.destroy();
      await new Promise((resolve) => listener.close(resolve));
    },
  };
}

/** Connects to a data listener, writes `bytes`, and resolves once the node closed the connection. */
function dataConnection(port, bytes) {
  const socket = net.connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.resume();
  const closed = new Promise((resolve) => socket.on('close', resolve));
  socket.on('connect', () => socket.write(bytes));
  return {
    socket,
    closed: (what, timeout = 5_000) =>
      Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error(`the node did not close ${what} within ${timeout} ms`)), timeout))]),
  };
}

// ---------------------------------------------------------------------------------------------
// 1 and 2. The cluster adapter
// ---------------------------------------------------------------------------------------------

const KEEPALIVE_MS = 100;
const NODE_TIMEOUT_MS = 1_000;
// A stalled peer's hellos are ignored for the node timeout, at least 1 s, doubled per new stall
// (crates/soketi-adapter-cluster/src/lib.rs, `bench_time`).
const FIRST_BENCH_MS = 1_000;
// The bytes a node queues for one peer before the peer counts as stalled
// (crates/soketi-server/src/config/transports.rs).
const MAX_QUEUED_MIB = 64;

describe('faults: the cluster adapter (two real nodes on loopback, multicast on 127.0.0.1)', () => {
  const clusterPort = randomClusterPort();
  const group = randomMulticastGroup();
  const prefix = `skt-faults-${process.pid}-${clusterPort}`;
  const env = {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(clusterPort),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: group,
    SOKETI_CLUSTER_PREFIX: prefix,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: String(KEEPALIVE_MS),
    SOKETI_CLUSTER_CHECK_INTERVAL: String(KEEPALIVE_MS),
    SOKETI_CLUSTER_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_CLUSTER_MASTER_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT: '1000',
    SOKETI_EVENT_MAX_SIZE_IN_KB: '1024',
  };
  const fleet = useFleet([
    { label: 'A', env },
    { label: 'B', env },
  ]);

  it('a peer that takes the data connection and never reads: dropped with a warning, memory bounded, publishes answer 200, nothing lost between the others', async (t) => {
    if (fleet.discovery) throw fleet.discovery;
    const { A, B } = fleet;
    const probes = uniqueChannel('fault-probe-');
    const atB = await arrivals(B, probes, 'probe');
    const before = await probeLatencies(A, atB, probes, 0, 100);
    // The control: the same load of 1 MB events through A, with no stuck peer.
    const big = 'x'.repeat(1000 * 1024 - 64);
    const load = uniqueChannel('fault-load-');
    let controlStop = false;
    const controlLoader = async () => {
      while (!controlStop) {
        const res = await postEvent(A, load, 'big', big, { timeout: 10_000 });
        if (res.status !== 200) throw new Error(`a publish of the control load answered ${res.status}: ${res.text}`);
      }
    };
    const controlLoaders = [controlLoader(), controlLoader()];
    let loaded;
    try {
      loaded = await probeLatencies(A, atB, probes, 100, 100);
    } finally {
      controlStop = true;
      await Promise.allSettled(controlLoaders);
    }
    await Promise.all(controlLoaders);

    const mark = A.server.logMark();
    const stuck = await startStuckPeer({ clusterPort, group, prefix, intervalMs: KEEPALIVE_MS });
    try {
      await poll(`A and B to list the stuck peer ${stuck.nodeId}`, () => Promise.all([clusterView(A), clusterView(B)]), (views) =>
        views.every((v) => v.nodes.some((n) => n.node_id === stuck.nodeId)),
      );
      const rssBefore = rssMiB(A.server.pid);

      // The load: 1 MB events through A, until A has dropped the stuck peer, then as much again,
      // two requests at a time, while the probes run.
      const statuses = new Map();
      let loadMiB = 0;
      let droppedAfterMiB = null;
      let stop = false;
      const loader = async () => {
        while (!stop) {
          const res = await postEvent(A, load, 'big', big, { timeout: 10_000 });
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          if (res.status !== 200) throw new Error(`a publish during the fault answered ${res.status}: ${res.text}`);
          loadMiB += 1;
        }
      };
      const watcher = (async () => {
        await poll(`A to drop the stuck peer`, () => clusterView(A), (v) => !v.nodes.some((n) => n.node_id === stuck.nodeId), {
          timeout: 60_000,
          interval: 20,
        });
        droppedAfterMiB = loadMiB;
        await until(() => loadMiB >= 2 * droppedAfterMiB + 20, { timeout: 60_000, what: 'as much load again after the drop' });
      })();
      const loadStarted = performance.now();
      const loaders = [loader(), loader()];
      let during;
      try {
        during = await probeLatencies(A, atB, probes, 200, 100);
        await watcher;
      } finally {
        stop = true;
        await Promise.allSettled(loaders);
      }
      await Promise.all(loaders);
      const rssAfter = rssMiB(A.server.pid);
      const loadMs = performance.now() - loadStarted;

      // Every probe arrived at B exactly once.
      await until(() => atB.at.size === 300, { what: 'all 300 probes at B' });
      const counts = [...atB.counts.values()];
      assert.ok(counts.every((c) => c === 1), `each probe once at B: ${JSON.stringify([...atB.counts])}`);

      const warnings = linesWith(logsSince(A.server, mark), 'does not read what this node sends');
      t.diagnostic(`the stuck peer was dropped by A after ${droppedAfterMiB} MiB of 1 MB events; ${loadMiB} MiB published in all, statuses ${JSON.stringify([...statuses])}`);
      t.diagnostic(`A's RSS ${rssBefore.toFixed(0)} MiB before the load, ${rssAfter.toFixed(0)} MiB after (queue limit ${MAX_QUEUED_MIB} MiB per peer)`);
      t.diagnostic(`A logged ${warnings.length} stall warning(s); the stuck peer accepted ${stuck.connections} data connection(s)`);
      t.diagnostic(`A -> B delivery before the fault: ${summary(before)}`);
      t.diagnostic(`A -> B delivery with the 1 MB load and no stuck peer: ${summary(loaded)}`);
      t.diagnostic(`A -> B delivery with the 1 MB load and the stuck peer: ${summary(during)}`);

      assert.deepEqual([...statuses.keys()], [200], 'every publish answered 200');
      assert.ok(droppedAfterMiB !== null, 'A dropped the stuck peer');
      // The queue (64 MiB) and the socket buffers of loopback (a few MiB each way) filled: the
      // drop came after that much, and before everything published so far had to be kept.
      assert.ok(rssAfter - rssBefore < MAX_QUEUED_MIB * 2, `A's memory grew by ${(rssAfter - rssBefore).toFixed(0)} MiB (limit ${MAX_QUEUED_MIB} MiB queued, plus as much for the rest), after ${loadMiB} MiB published`);
      assert.ok(warnings.length >= 1, 'A warned about the stuck peer');
      // One warning per stall, and a stalled peer is ignored for at least FIRST_BENCH_MS.
      assert.ok(warnings.length <= 1 + Math.floor(loadMs / FIRST_BENCH_MS), `${warnings.length} warnings`);
      assert.ok(warnings.length <= stuck.connections, `no more warnings (${warnings.length}) than data connections to the stuck peer (${stuck.connections})`);
      // B kept A, and A kept B.
      const [viewA, viewB] = await Promise.all([clusterView(A), clusterView(B)]);
      assert.ok(viewA.nodes.some((n) => n.node_id === B.nodeId), `A still lists B: ${JSON.stringify(viewA)}`);
      assert.ok(viewB.nodes.some((n) => n.node_id === A.nodeId), `B still lists A: ${JSON.stringify(viewB)}`);
      assert.equal(A.server.exitInfo(), null, 'A runs');
    } finally {
      await stuck.stop();
    }
  });

  it('garbage on the data and discovery ports: each connection or sender logged once, no crash, delivery goes on', async (t) => {
    if (fleet.discovery) throw fleet.discovery;
    const { A, B } = fleet;
    const viewB = await clusterView(B);
    const dataPort = Number(viewB.nodes.find((n) => n.node_id === A.nodeId).address.split(':').at(-1));
    const marks = { A: A.server.logMark(), B: B.server.logMark() };
    const intruder = `intruder-${process.pid}`;
    const valid = frame(handshake({ prefix, nodeId: intruder }));

    // Data connections to A, each of which A must close.
    const cases = [
      ['no handshake (an HTTP request)', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 'dropping a data connection without a handshake'],
      ['a handshake that does not decode', frame(NOT_PROTOBUF), 'dropping a data connection whose handshake does not decode'],
      ['a handshake of another cluster', frame(handshake({ prefix: `${prefix}-other`, nodeId: intruder })), 'dropping a data connection from another cluster or version'],
      ['an oversized frame after a valid handshake', Buffer.concat([valid, Buffer.from([0x7f, 0xff, 0xff, 0xff]), Buffer.alloc(1024)]), 'dropping a data connection that sent an oversized frame'],
    ];
    for (const [what, bytes] of cases) {
      const conn = dataConnection(dataPort, bytes);
      await conn.closed(what);
    }
    // After a valid handshake, 50 envelopes that do not decode: dropped, and reported once.
    const garbage = Buffer.concat(Array.from({ length: 50 }, () => frame(NOT_PROTOBUF)));
    const noisy = dataConnection(dataPort, Buffer.concat([valid, garbage]));
    await until(() => linesWith(logsSince(A.server, marks.A), 'dropping envelopes that do not decode').length >= 1, {
      what: 'A to report the envelopes that do not decode',
    });

    // Discovery: 10 datagrams that are no hello, 10 hellos of another cluster, each from a socket of its own.
    const stray = await multicastSender();
    const foreign = await multicastSender();
    const foreignHello = hello({ prefix: `${prefix}-other`, nodeId: intruder, startedAtMs: 1, dataPort: 9 });
    for (let i = 0; i < 10; i++) {
      await sendDatagram(stray, NOT_PROTOBUF, clusterPort, group);
      await sendDatagram(foreign, foreignHello, clusterPort, group);
    }
    try {
      for (const scope of [A, B]) {
        await until(
          () => {
            const logs = logsSince(scope.server, marks[scope.label]);
            return linesWith(logs, 'that are not hellos').length >= 1 && linesWith(logs, 'ignoring hellos of another cluster').length >= 1;
          },
          { what: `node ${scope.label} to report the stray datagrams and the foreign hellos` },
        );
      }
      // Delivery between the two nodes goes on, both ways, in order.
      const channel = uniqueChannel('fault-after-garbage-');
      const atA = await arrivals(A, channel, 'probe');
      const atB = await arrivals(B, channel, 'probe');
      for (let seq = 0; seq < 20; seq++) {
        const res = await postEvent(seq % 2 ? A : B, channel, 'probe', { seq });
        assert.equal(res.status, 200, res.text);
      }
      await Promise.all(Array.from({ length: 20 }, (_, seq) => Promise.all([atA.wait(seq), atB.wait(seq)])));
      assert.equal(noisy.socket.destroyed, false, 'a connection that sends undecodable envelopes stays open (the transport does not decode them)');
    } finally {
      noisy.socket.destroy();
      stray.close();
      foreign.close();
    }

    const logsA = logsSince(A.server, marks.A);
    const logsB = logsSince(B.server, marks.B);
    for (const [what, , line] of cases) {
      const found = linesWith(logsA, line);
      t.diagnostic(`${what}: A closed it and logged ${JSON.stringify(found.at(0)?.trim())}`);
      assert.equal(found.length, 1, `one line for ${what}: ${JSON.stringify(found)}`);
      assert.match(found[0], /WARN/, `at the default level: ${found[0]}`);
    }
    const envelopes = linesWith(logsA, 'dropping envelopes that do not decode');
    t.diagnostic(`50 undecodable envelopes after a valid handshake: ${envelopes.length} line(s): ${JSON.stringify(envelopes.at(0)?.trim())}`);
    assert.equal(envelopes.length, 1, `one line for 50 envelopes: ${JSON.stringify(envelopes)}`);
    for (const [label, logs] of [['A', logsA], ['B', logsB]]) {
      const strays = linesWith(logs, 'that are not hellos');
      const foreigners = linesWith(logs, 'ignoring hellos of another cluster');
      t.diagnostic(`node ${label}: 10 stray datagrams -> ${strays.length} line(s), 10 foreign hellos -> ${foreigners.length} line(s)`);
      assert.equal(strays.length, 1, `node ${label}: one line for the stray sender: ${JSON.stringify(strays)}`);
      assert.equal(foreigners.length, 1, `node ${label}: one line for the foreign sender: ${JSON.stringify(foreigners)}`);
      assert.ok(!/panicked/.test(logs), `node ${label} did not panic`);
    }
    for (const scope of [A, B]) assert.equal(scope.server.exitInfo(), null, `node ${scope.label} runs`);
    const view = await clusterView(A);
    assert.ok(!view.nodes.some((n) => n.node_id === intruder), `the intruder never joined: ${JSON.stringify(view)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// 3. The Redis adapter with Redis stalled, the NATS adapter with NATS restarted
// ---------------------------------------------------------------------------------------------

const BUS_HEARTBEAT_MS = 200;
const BUS_NODE_TIMEOUT_MS = 1_000;
// A query waits at most this long for the other nodes (a partial answer after it): the bound of
// the HTTP API's answers while the bus is stalled.
const BUS_REQUESTS_TIMEOUT_MS = 500;
const STALL_MS = 10_000;
// What "the HTTP API answers" means while Redis is stalled (issue 17).
const API_DEADLINE_MS = 1_000;

/** A fleet's node environment over Redis at `redis.port`, or over NATS at `nats.port`. */
function busEnv(driver, bus) {
  const upper = driver.toUpperCase();
  const common = {
    SOKETI_ADAPTER_DRIVER: driver,
    [`SOKETI_ADAPTER_${upper}_HEARTBEAT_INTERVAL`]: String(BUS_HEARTBEAT_MS),
    [`SOKETI_ADAPTER_${upper}_NODE_TIMEOUT`]: String(BUS_NODE_TIMEOUT_MS),
    [`SOKETI_ADAPTER_${upper}_REQUESTS_TIMEOUT`]: String(BUS_REQUESTS_TIMEOUT_MS),
  };
  if (driver === 'nats') return { ...common, SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${bus.port}`]) };
  return { ...common, SOKETI_DB_REDIS_HOST: '127.0.0.1', SOKETI_DB_REDIS_PORT: String(bus.port) };
}

describe('faults: Redis stalled with SIGSTOP for 10 s under the Redis adapter', { skip: redisSkip() }, () => {
  const ctx = useBusFleets({ name: 'redis', start: () => startRedis(), nodeEnv: (redis) => busEnv('redis', redis) }, { fleet: { labels: ['A', 'B'] } });

  it('each node serves its own clients and the HTTP API answers within 1 s during the stall; after SIGCONT delivery crosses again, nothing twice', async (t) => {
    if (ctx.discovery) throw ctx.discovery;
    const { A, B, redis } = ctx;
    const channel = uniqueChannel('fault-stall-');
    const at = { A: await arrivals(A, channel, 'tick'), B: await arrivals(B, channel, 'tick') };
    // Before: one event each way crosses.
    let seq = 0;
    const sentBy = new Map();
    const publish = async (scope) => {
      const n = seq++;
      sentBy.set(n, scope.label);
      const res = await postEvent(scope, channel, 'tick', { seq: n }, { timeout: 5_000 });
      return { n, ...res };
    };
    for (const [from, to] of [['A', 'B'], ['B', 'A']]) {
      const { n, status } = await publish(ctx[from]);
      assert.equal(status, 200);
      await at[to].wait(n);
    }

    const times = { post: [], channels: [] };
    const local = [];
    const stalled = [];
    process.kill(redis.pid, 'SIGSTOP');
    const stoppedAt = performance.now();
    try {
      while (performance.now() - stoppedAt < STALL_MS) {
        for (const scope of [A, B]) {
          const res = await publish(scope);
          assert.equal(res.status, 200, `POST /events on ${scope.label} during the stall: ${res.status} ${res.text}`);
          times.post.push(res.ms);
          stalled.push(res.n);
          // This node's own subscriber gets it, from this node alone.
          local.push((await at[scope.label].wait(res.n, 2_000)) - (performance.now() - res.ms));
          const list = await getSigned(scope, '/channels');
          assert.equal(list.status, 200, `GET /channels on ${scope.label} during the stall: ${list.status} ${list.text}`);
          times.channels.push(list.ms);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    } finally {
      process.kill(redis.pid, 'SIGCONT');
    }
    const resumedAt = performance.now();

    // The fleet heals: an event through each node reaches the other.
    const healed = {};
    for (const [from, to] of [['A', 'B'], ['B', 'A']]) {
      await until(
        async () => {
          const { n } = await publish(ctx[from]);
          return at[to].wait(n, 500).then(
            () => true,
            () => false,
          );
        },
        { timeout: 15_000, interval: 0, what: `an event through ${from} to reach ${to} after SIGCONT` },
      );
      healed[from] = performance.now() - resumedAt;
    }
    // A last event each way, and every earlier one has had its chance to arrive (in order, on one
    // connection each way).
    for (const [from, to] of [['A', 'B'], ['B', 'A']]) {
      const { n } = await publish(ctx[from]);
      await at[to].wait(n);
    }

    const twice = ['A', 'B'].flatMap((label) => [...at[label].counts].filter(([, c]) => c > 1).map(([n, c]) => `${label}:#${n}x${c}`));
    const crossedLate = stalled.filter((n) => at[sentBy.get(n) === 'A' ? 'B' : 'A'].at.has(n)).length;
    t.diagnostic(`during the ${STALL_MS} ms stall: ${stalled.length} publishes, POST /events ${summary(times.post)}; GET /channels ${summary(times.channels)}`);
    t.diagnostic(`own subscribers got every one of them; the other node got ${crossedLate} of ${stalled.length} (after SIGCONT, or not at all)`);
    t.diagnostic(`after SIGCONT, delivery crossed again in ${healed.A.toFixed(0)} ms (A to B) and ${healed.B.toFixed(0)} ms (B to A); duplicates: ${twice.length ? twice.join(' ') : 'none'}`);
    assert.ok(Math.max(...times.post) < API_DEADLINE_MS, `POST /events within ${API_DEADLINE_MS} ms: ${summary(times.post)}`);
    assert.ok(Math.max(...times.channels) < API_DEADLINE_MS, `GET /channels within ${API_DEADLINE_MS} ms: ${summary(times.channels)}`);
    assert.deepEqual(twice, [], 'no event delivered twice');
    for (const scope of [A, B]) assert.equal(scope.server.exitInfo(), null, `node ${scope.label} runs`);
  });
});

describe('faults: NATS killed and restarted under the NATS adapter', { skip: natsSkip() }, () => {
  const ctx = useBusFleets({ name: 'nats', start: () => startNats(), nodeEnv: (nats) => busEnv('nats', nats) }, { fleet: { labels: ['A', 'B'] } });

  it('cross-node delivery is back within 5 s of NATS being back', async (t) => {
    if (ctx.discovery) throw ctx.discovery;
    const { A, B, nats } = ctx;
    const channel = uniqueChannel('fault-nats-');
    const atB = await arrivals(B, channel, 'tick');
    let seq = 0;
    const first = seq++;
    assert.equal((await postEvent(A, channel, 'tick', { seq: first })).status, 200);
    await atB.wait(first);

    await nats.restart();
    const backAt = performance.now();
    const outcomes = [];
    let arrivedSeq = null;
    await until(
      async () => {
        const n = seq++;
        const arrival = atB.wait(n, 250).then(
          () => n,
          () => null,
        );
        postEvent(A, channel, 'tick', { seq: n }, { timeout: 2_000 }).then(
          (res) => outcomes.push(`${n}:${res.status}`),
          (err) => outcomes.push(`${n}:${err.message}`),
        );
        arrivedSeq = await arrival;
        return arrivedSeq !== null;
      },
      { timeout: 15_000, interval: 0, what: `an event through A to reach B after the NATS restart (publishes: ${outcomes.join(', ')})` },
    );
    const took = performance.now() - backAt;
    t.diagnostic(`event #${arrivedSeq} reached B ${took.toFixed(0)} ms after NATS was back; publishes: ${outcomes.join(', ')}`);
    assert.ok(took <= 5_000, `back within 5 s: ${took.toFixed(0)} ms`);
    const twice = [...atB.counts].filter(([, c]) => c > 1);
    assert.deepEqual(twice, [], 'no event twice');
  });
});

// ---------------------------------------------------------------------------------------------
// 4. SIGKILL in the middle of webhook batches, with the Redis queue
// ---------------------------------------------------------------------------------------------

const BATCH_MS = 200;
const CHANNELS = 60;

/** The jobs of the webhook queue under `prefix`: waiting + processing + delayed + open batches. */
async function queuedJobs(redis, prefix) {
  const replies = await redisCommands(redis.port, [
    ['LLEN', `${prefix}queue:webhooks:waiting`],
    ['LLEN', `${prefix}queue:webhooks:processing`],
    ['ZCARD', `${prefix}queue:webhooks:delayed`],
    ['ZCARD', `${prefix}queue:webhooks:batches`],
  ]);
  const failed = replies.find((r) => r instanceof Error);
  if (failed) throw failed;
  return replies.reduce((a, b) => a + b, 0);
}

describe('faults: SIGKILL of a node in the middle of webhook batches (SOKETI_QUEUE_DRIVER=redis)', { skip: redisSkip() }, () => {
  let redis = null;
  let receiver = null;
  const scopes = [];
  before(async () => {
    redis = await startRedis();
    receiver = await startReceiver();
  });
  afterEach((t) => {
    if (t.passed === false) {
      for (const scope of scopes) scope.server.dumpLogs(`${scope.label}, test "${t.name}" failed`);
      process.stderr.write(`\n----- webhook requests -----\n${receiver.describe(0)}\n-----\n`);
    }
  });
  after(async () => {
    for (const scope of scopes) {
      scope.closeClients();
      await scope.server.stop();
    }
    await receiver?.close();
    await redis?.stop();
  });

  it(`every channel_occupied fired before the kill arrives after the restart, the open batch (${BATCH_MS} ms) included; duplicates counted`, async (t) => {
    const path = '/killed';
    const prefix = `faults-webhooks-${process.pid}:`;
    const env = {
      SOKETI_QUEUE_DRIVER: 'redis',
      SOKETI_QUEUE_BACKOFF: '100',
      SOKETI_QUEUE_MAX_ATTEMPTS: '10',
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(redis.port),
      SOKETI_DB_REDIS_KEY_PREFIX: prefix,
      SOKETI_WEBHOOKS_BATCHING: 'true',
      SOKETI_WEBHOOKS_BATCHING_DURATION: String(BATCH_MS),
      ...hooksEnv([{ url: receiver.url(path), event_types: ['channel_occupied'] }]),
    };
    const start = async (label) => {
      const scope = new Scope();
      scope.label = label;
      scope.server = await startServer(env);
      scopes.push(scope);
      return scope;
    };
    const first = await start('the first process');
    const client = await first.rawConnected();
    const names = Array.from({ length: CHANNELS }, (_, i) => uniqueChannel(`killed-${i}-`));
    const occupiedAt = new Map();

    // A stream of channel_occupied; half-way, the receiver starts holding its answers, so that a
    // POST is in flight (the job in the processing list) and the next batches wait in the queue.
    let killedAt = null;
    for (const [i, name] of names.entries()) {
      await client.subscribeOk(name);
      occupiedAt.set(name, performance.now());
      if (i === CHANNELS / 2) {
        receiver.holding = (r) => r.path === path;
        await receiver.waitForRequest((r) => r.path === path && r.status === 'held', { timeout: 10_000 });
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    // More than one batch is queued behind the held one, and the last one is still open.
    await until(async () => (await queuedJobs(redis, prefix)) >= 2, { what: 'jobs queued behind the held POST' });
    const last = uniqueChannel('killed-open-batch-');
    names.push(last);
    await client.subscribeOk(last);
    occupiedAt.set(last, performance.now());
    // The event is pushed to Redis right after the subscription succeeds: the kill comes once it
    // is there (in its open batch, whose window has not ended).
    const openBatch = `${prefix}queue:webhooks:batch:0:${DEFAULT_APP.id}`;
    await until(
      async () => {
        const [items] = await redisCommands(redis.port, [['LRANGE', openBatch, '0', '-1']]);
        return Array.isArray(items) && items.some((item) => String(item).includes(last));
      },
      { interval: 5, what: 'the last channel_occupied in its open batch in Redis' },
    );
    killedAt = performance.now();
    await first.server.kill('SIGKILL');
    const held = receiver.requests.filter((r) => r.path === path && r.status === 'held').length;
    const queuedAtKill = await queuedJobs(redis, prefix);
    receiver.holding = false;

    const second = await start('the restarted process');
    const restartedAt = performance.now();
    // Everything queued is delivered; then the queue is empty (twice, a poll apart), so nothing follows.
    let emptyBefore = false;
    await until(
      async () => {
        const empty = (await queuedJobs(redis, prefix)) === 0;
        const twice = empty && emptyBefore;
        emptyBefore = empty;
        return twice;
      },
      { timeout: 20_000, interval: 200, what: 'the Redis queue to be empty after the restart' },
    );
    const drainedMs = performance.now() - restartedAt;

    const delivered = receiver.events({ path }).filter((e) => names.includes(e.channel));
    const counts = countBy(delivered.map((e) => e.channel));
    const missing = names.filter((name) => !counts[name]);
    const duplicates = Object.entries(counts).filter(([, n]) => n > 1);
    t.diagnostic(
      `${CHANNELS} channel_occupied in batches of ${BATCH_MS} ms; at the kill: ${held} POST(s) held in flight, ${queuedAtKill} job(s) in Redis; ` +
        `after the restart the queue drained in ${drainedMs.toFixed(0)} ms`,
    );
    t.diagnostic(
      `delivered ${Object.keys(counts).length} of ${names.length}; lost ${missing.length} (fired ${missing.map((m) => (killedAt - occupiedAt.get(m)).toFixed(0)).join(', ') || '-'} ms before the kill); ` +
        `duplicated ${duplicates.length}${duplicates.length ? `: ${JSON.stringify(duplicates)}` : ''}`,
    );
    for (const event of delivered) assertWebhookRequest(event.request, DEFAULT_APP, { headers: {} });
    // Nothing dies with the process: the open batch was in Redis, and the restarted process
    // closed and sent it.
    assert.deepEqual(missing, [], `lost: ${missing.map((m) => `${m} (fired ${(killedAt - occupiedAt.get(m)).toFixed(0)} ms before the kill)`).join(', ')}`);
    // A job whose POST was answered but not yet removed from Redis at the kill runs again: at
    // most the jobs in flight at the kill (one per worker) are sent twice.
    const twiceRequests = new Set(duplicates.flatMap(([name]) => delivered.filter((e) => e.channel === name).map((e) => e.request.seq)));
    assert.ok(twiceRequests.size <= 2 * Math.max(1, held), `duplicates only from the POSTs in flight at the kill: ${JSON.stringify(duplicates)}`);
    assert.equal(second.server.exitInfo(), null, 'the restarted process runs');
  });
});
