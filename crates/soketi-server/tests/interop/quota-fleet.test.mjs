// An app's connection quota (SOKETI_DEFAULT_APP_MAX_CONNS, the app's max_connections) counts the
// connections of the whole fleet, over every horizontal adapter: the cluster adapter (multicast
// on loopback), Redis and NATS, three nodes each.
//
// Each node shares its connections per app with the others (every 50 ms when they change, every
// 5 s in full) and admits a connection while its own count plus the others' last known counts is
// under the quota; `GET /cluster` on the operations port shows a node's own counts
// (`connections`) and what it last heard of each peer (`nodes[].connections`). The tests wait
// for those views (the propagation window, which they print) rather than for time: once every
// node has heard the others, the fleet admits exactly the quota and refuses the rest with 4100.
// Connections opened on several nodes at once, inside the window, can pass the quota by what the
// other nodes admitted meanwhile: the burst test prints by how much, and checks that the fleet
// refuses once the window has passed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { rawWs } from './harness.mjs';
import { clusterView, poll, randomClusterPort, randomMulticastGroup, useFleet } from './cluster.mjs';
import { natsSkip, startNats } from './nats.mjs';
import { redisSkip, startRedis } from './redis.mjs';

const QUOTA = 10;
const APP = 'app-id';
const NODE_TIMEOUT_MS = 1_000;
/** How long a view may take to show a change: 50 ms of sharing, plus a loaded machine's margin. */
const WINDOW_DEADLINE_MS = 5_000;

function clusterEnv(bus) {
  return {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(bus.port),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: bus.group,
    SOKETI_CLUSTER_PREFIX: `skt-quota-${process.pid}-${bus.port}`,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: '100',
    SOKETI_CLUSTER_CHECK_INTERVAL: '100',
    SOKETI_CLUSTER_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_CLUSTER_MASTER_TIMEOUT: String(NODE_TIMEOUT_MS),
  };
}

function redisEnv(redis) {
  return {
    SOKETI_ADAPTER_DRIVER: 'redis',
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(redis.port),
    SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: '200',
    SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
  };
}

function natsEnv(nats) {
  return {
    SOKETI_ADAPTER_DRIVER: 'nats',
    SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${nats.port}`]),
    SOKETI_ADAPTER_NATS_HEARTBEAT_INTERVAL: '200',
    SOKETI_ADAPTER_NATS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
  };
}

const TRANSPORTS = [
  {
    title: 'cluster adapter (multicast on loopback)',
    skip: false,
    setup: async () => ({ port: randomClusterPort(), group: randomMulticastGroup(), stop: async () => {} }),
    env: clusterEnv,
  },
  { title: 'Redis adapter', skip: redisSkip(), setup: () => startRedis(), env: redisEnv },
  { title: 'NATS adapter', skip: natsSkip(), setup: () => startNats(), env: natsEnv },
];

/**
 * Opens a raw connection on `scope` and resolves with `{ client, admitted }`: admitted on
 * `pusher:connection_established`; refused on `pusher:error`, which must be 4100 and followed by
 * a close with 4100.
 */
async function attempt(scope) {
  const client = await rawWs(scope.server.wsUrl());
  scope.clients.push(() => client.terminate());
  const frame = await client.next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error');
  if (frame.event === 'pusher:connection_established') return { client, admitted: true };
  const data = typeof frame.data === 'string' ? JSON.parse(frame.data) : frame.data;
  assert.equal(data.code, 4100, `the refusal on node ${scope.label}: ${JSON.stringify(frame)}`);
  const { code } = await client.closed();
  assert.equal(code, 4100, `the close code of a refused connection on node ${scope.label}`);
  return { client, admitted: false };
}

/** Opens `n` connections on `scope` one after the other; resolves with the admitted and the refused. */
async function attempts(scope, n) {
  const admitted = [];
  let refused = 0;
  for (let i = 0; i < n; i += 1) {
    const { client, admitted: ok } = await attempt(scope);
    if (ok) admitted.push(client);
    else refused += 1;
  }
  return { admitted, refused };
}

/** The app's connections in a `/cluster` view: the node's own, and by peer id what it last heard. */
function countsOf(view) {
  const peers = Object.fromEntries((view.nodes ?? []).map((n) => [n.node_id, n.connections?.[APP] ?? 0]));
  return { own: view.connections?.[APP] ?? 0, peers };
}

/**
 * Waits until every node's own count is `expected[label]`, and every node has heard every other
 * node's count. Resolves with the milliseconds it took, from the call.
 */
async function awaitCounts(fleet, expected) {
  const started = Date.now();
  await poll(
    `every node to count ${JSON.stringify(expected)} and to have heard the others' counts`,
    () => Promise.all(fleet.nodes.map((s) => clusterView(s))),
    (views) =>
      fleet.nodes.every((scope, i) => {
        const { own, peers } = countsOf(views[i]);
        return (
          own === expected[scope.label] &&
          fleet.nodes.filter((o) => o !== scope).every((o) => peers[o.nodeId] === expected[o.label])
        );
      }),
    { timeout: WINDOW_DEADLINE_MS, interval: 10 },
  );
  return Date.now() - started;
}

for (const transport of TRANSPORTS) {
  describe(`${transport.title}: an app's connection quota (${QUOTA}) counts the whole fleet of three nodes`, { skip: transport.skip }, () => {
    let bus;
    const fleet = useFleet(() => ['A', 'B', 'C'].map((label) => ({ label, env: { ...transport.env(bus), SOKETI_DEFAULT_APP_MAX_CONNS: String(QUOTA) } })), {
      setup: async () => {
        bus = await transport.setup();
      },
      teardown: async () => {
        await bus?.stop();
      },
    });
    const none = { A: 0, B: 0, C: 0 };

    it('connecting 4 + 4 + 4 in turn admits exactly 10; the last node refuses 2 with 4100', async (t) => {
      if (fleet.discovery) throw fleet.discovery;
      const { A, B, C } = fleet;
      await awaitCounts(fleet, none);
      const onA = await attempts(A, 4);
      const windowA = await awaitCounts(fleet, { A: 4, B: 0, C: 0 });
      const onB = await attempts(B, 4);
      const windowB = await awaitCounts(fleet, { A: 4, B: 4, C: 0 });
      const onC = await attempts(C, 4);
      const admitted = { A: onA.admitted.length, B: onB.admitted.length, C: onC.admitted.length };
      t.diagnostic(`admitted per node ${JSON.stringify(admitted)}, refused on C ${onC.refused}; every node had heard A's 4 ${windowA} ms and B's 4 ${windowB} ms after they were established`);
      assert.deepEqual(admitted, { A: 4, B: 4, C: 2 });
      assert.equal(onC.refused, 2);
      await awaitCounts(fleet, { A: 4, B: 4, C: 2 });
      for (const scope of [A, B, C]) {
        assert.equal((await attempt(scope)).admitted, false, `node ${scope.label} refuses the 11th connection`);
      }

      // Three connections that close on A free three places, which C fills.
      for (const client of onA.admitted.slice(0, 3)) client.terminate();
      const windowClose = await awaitCounts(fleet, { A: 1, B: 4, C: 2 });
      const again = await attempts(C, 4);
      t.diagnostic(`after 3 closed on A (heard by every node within ${windowClose} ms), C admitted ${again.admitted.length} and refused ${again.refused}`);
      assert.equal(again.admitted.length, 3);
      assert.equal(again.refused, 1);
    });

    it('4 + 4 + 4 at once can pass the quota by what the nodes admit within the window; then every node refuses', async (t) => {
      if (fleet.discovery) throw fleet.discovery;
      await awaitCounts(fleet, none);
      const results = await Promise.all(fleet.nodes.map((scope) => Promise.all(Array.from({ length: 4 }, () => attempt(scope)))));
      const admitted = Object.fromEntries(fleet.nodes.map((s, i) => [s.label, results[i].filter((r) => r.admitted).length]));
      const total = Object.values(admitted).reduce((a, b) => a + b, 0);
      t.diagnostic(`opened at once: admitted per node ${JSON.stringify(admitted)}, ${total} in all for a quota of ${QUOTA}`);
      assert.ok(total >= QUOTA, `no node refuses while the fleet has room: ${total} admitted`);
      assert.ok(total <= 12);
      const window = await awaitCounts(fleet, admitted);
      for (const scope of fleet.nodes) {
        assert.equal((await attempt(scope)).admitted, false, `node ${scope.label} refuses once it has heard the others (${window} ms)`);
      }
    });

    it("a node killed with SIGKILL takes its connections out of the quota when the others drop it", async (t) => {
      if (fleet.discovery) throw fleet.discovery;
      const { A, B, C } = fleet;
      await awaitCounts(fleet, none);
      await attempts(A, 3);
      await attempts(B, 4);
      await attempts(C, 3);
      await awaitCounts(fleet, { A: 3, B: 4, C: 3 });
      assert.equal((await attempt(A)).admitted, false, 'the fleet is full');
      const killed = Date.now();
      assert.equal((await B.server.kill('SIGKILL')).signal, 'SIGKILL');
      await poll(
        'A and C to drop B and its connections',
        () => Promise.all([A, C].map((s) => clusterView(s))),
        (views) => views.every((v) => !(v.nodes ?? []).some((n) => n.node_id === B.nodeId)),
        { timeout: NODE_TIMEOUT_MS + WINDOW_DEADLINE_MS, interval: 10 },
      );
      const dropped = Date.now() - killed;
      const onA = await attempts(A, 5);
      t.diagnostic(`B (4 connections) was dropped by A and C ${dropped} ms after the kill (node timeout ${NODE_TIMEOUT_MS} ms); A then admitted ${onA.admitted.length} of 5`);
      assert.equal(onA.admitted.length, 4);
      assert.equal(onA.refused, 1);
    });
  });
}
