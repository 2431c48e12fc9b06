// The cluster adapter (SOKETI_ADAPTER_DRIVER=cluster) on one host, without root: three
// processes share one WebSocket port (SOKETI_REUSE_PORT=true, SO_REUSEPORT: the kernel spreads
// the connections, and the HTTP requests, over them) and find each other by multicast on
// loopback (SOKETI_CLUSTER_HOST=127.0.0.1, a random group in 239.255.0.0/16: the datagrams go
// out of 127.0.0.1 only, never a real interface). Each process has its own metrics port, where
// `GET /cluster` shows its view of the fleet and `/metrics` its own connection count.
//
// A test cannot choose the process a connection lands on, so it opens several clients and
// asserts on all of them together, after checking (per-process `soketi_connected`) that they did
// land on more than one process. The fleet suite (fleet-suite.mjs) runs first, over three
// processes with a WebSocket port each that share the discovery port and multicast group.
//
// Not tested here: unicast on loopback. With SOKETI_CLUSTER_UNICAST_ADDRESSES=["127.0.0.1"]
// every process binds the same discovery port with SO_REUSEPORT too, and the kernel delivers a
// unicast datagram to ONE of the sockets sharing 127.0.0.1:<port>, so each hello reaches only
// one process (possibly the sender itself): the processes cannot all find each other. Unicast
// is tested between network namespaces, where each node has its own address
// (cluster-netns.test.mjs).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';

import {
  freePort,
  httpRequest,
  parseData,
  record,
  signRequest,
  subscribe,
  subscribeData,
  uniqueChannel,
  waitFor,
} from './harness.mjs';
import {
  assertMaster,
  awaitMasterAgreement,
  clusterView,
  labelled,
  loggedPusher,
  member,
  memberChanges,
  poll,
  randomClusterPort,
  randomMulticastGroup,
  sentinel,
  useFleet,
} from './cluster.mjs';
import { fleetSuite } from './fleet-suite.mjs';

const KEEPALIVE_MS = 100;
const CHECK_MS = 100;
// Ten hellos: a process of a loaded machine that misses a few is not taken for dead.
const NODE_TIMEOUT_MS = 1_000;
const MASTER_TIMEOUT_MS = 1_000;
// What a drop or an election may take beyond the timeout and one check, on a loaded two-core
// machine: these tests show that the timeouts are honoured, not how fast the machine is.
const LOAD_MARGIN_MS = 2_000;
const CLIENTS = 9;

/** The settings of a process of the loopback cluster, whose discovery uses `clusterPort`. */
function loopbackEnv(clusterPort, group) {
  return {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_HOST: '127.0.0.1',
    SOKETI_METRICS_ENABLED: 'true',
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(clusterPort),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: group,
    SOKETI_CLUSTER_PREFIX: `skt-loopback-${process.pid}-${clusterPort}`,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: String(KEEPALIVE_MS),
    SOKETI_CLUSTER_CHECK_INTERVAL: String(CHECK_MS),
    SOKETI_CLUSTER_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_CLUSTER_MASTER_TIMEOUT: String(MASTER_TIMEOUT_MS),
    SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT: '1000',
    SOKETI_EVENT_MAX_SIZE_IN_KB: '2048',
  };
}

// The fleet suite over processes of one host, each with its own WebSocket port (so that a test
// picks the node of each client), that share one discovery port and multicast group on 127.0.0.1.
fleetSuite({
  title: 'cluster adapter on loopback (processes sharing one discovery port, multicast on 127.0.0.1)',
  skip: false,
  nodeTimeoutMs: NODE_TIMEOUT_MS,
  setup: async () => ({ port: randomClusterPort(), group: randomMulticastGroup() }),
  nodeSpecs: (bus, labels, env) => labels.map((label) => ({ label, env: { ...loopbackEnv(bus.port, bus.group), ...env } })),
});

function loopbackSpecs(sharedPort) {
  const env = {
    ...loopbackEnv(randomClusterPort(), randomMulticastGroup()),
    SOKETI_PORT: String(sharedPort),
    SOKETI_REUSE_PORT: 'true',
  };
  // /ready on the shared port may be answered by a process started earlier: poll the metrics port.
  return ['P1', 'P2', 'P3'].map((label) => ({ label, env, options: { readyOn: 'metrics' } }));
}

/** The sum of `soketi_connected{app_id="app-id"}` on a process's own /metrics. */
async function connectedOn(scope) {
  const res = await httpRequest(`${scope.server.metricsUrl}/metrics`);
  assert.equal(res.status, 200, `GET /metrics on process ${scope.label}: ${res.text.slice(0, 300)}`);
  let sum = 0;
  for (const line of res.text.split('\n')) {
    const m = /^soketi_connected\{([^}]*)\}\s+(\S+)/.exec(line);
    if (m && /app_id="app-id"/.test(m[1])) sum += Number(m[2]);
  }
  return sum;
}

/** How many of the test's connections each process holds, once they add up to `total`. */
async function spread(fleet, total) {
  const counts = await poll(
    `soketi_connected on the three processes to add up to ${total}`,
    () => Promise.all(fleet.nodes.map(connectedOn)),
    (c) => c.reduce((a, b) => a + b, 0) === total,
    { timeout: 3_000 },
  );
  return Object.fromEntries(fleet.nodes.map((s, i) => [s.label, counts[i]]));
}

/** A signed GET on the shared port over a new TCP connection (so the kernel may pick any process). */
async function freshGet(server, path, query = {}) {
  const { url } = signRequest(server, { method: 'GET', path: `/apps/${server.appId}${path}`, query });
  const res = await httpRequest(url);
  assert.equal(res.status, 200, `GET ${path}: ${res.text}`);
  return res.json;
}

describe('cluster adapter on loopback: three processes sharing one port (SO_REUSEPORT), multicast discovery', () => {
  let sharedPort;
  const fleet = useFleet(() => loopbackSpecs(sharedPort), {
    setup: async () => {
      sharedPort = await freePort();
    },
  });

  it('each process lists the two others in GET /cluster, and they agree that the first started is the master', async (t) => {
    if (fleet.discovery) throw fleet.discovery;
    t.diagnostic(`the three processes listed each other ${fleet.mesh.took} ms after the last one was ready`);
    for (const scope of fleet.nodes) {
      const view = await clusterView(scope);
      assert.equal(view.driver, 'cluster', `GET /cluster on ${scope.label}: ${JSON.stringify(view)}`);
      assert.equal(view.node_id, scope.nodeId);
      for (const peer of view.nodes) {
        assert.match(peer.address, /^127\.0\.0\.1:\d+$/, `address of peer ${peer.node_id} in the view of ${scope.label}`);
      }
    }
    const { views } = await awaitMasterAgreement(fleet.nodes, { timeout: 2_000 });
    assertMaster(fleet.nodes, views, fleet.P1.nodeId, '(P1 was started first, so it runs longest)');
  });

  it(`delivers one SDK publish exactly once to each of ${CLIENTS} clients spread over the processes`, async (t) => {
    const name = uniqueChannel();
    const subscribers = [];
    for (let i = 0; i < CLIENTS; i += 1) {
      const client = await fleet.P1.connectedPusher();
      const { channel } = await subscribe(client, name);
      subscribers.push({ i, seen: record(channel, 'once'), channel });
    }
    const counts = await spread(fleet, CLIENTS);
    t.diagnostic(`connections per process: ${JSON.stringify(counts)}`);
    assert.ok(
      Object.values(counts).filter((n) => n > 0).length >= 2,
      `the ${CLIENTS} connections landed on at least two processes: ${JSON.stringify(counts)}`,
    );

    const firsts = subscribers.map(({ i, channel }) => labelled(`client ${i}`, waitFor(channel, 'once')));
    const res = await fleet.P1.sdk().trigger(name, 'once', { n: 1 });
    assert.equal(res.status, 200);
    await Promise.all(firsts);
    // A second event from the same publisher is the sentinel for duplicates of the first.
    const seconds = subscribers.map(({ i, channel }) => labelled(`client ${i}, the second event`, waitFor(channel, 'once', { filter: (d) => d?.n === 2 })));
    await fleet.P1.sdk().trigger(name, 'once', { n: 2 });
    await Promise.all(seconds);
    for (const { i, seen } of subscribers) {
      seen.stop();
      assert.deepEqual(
        seen.map(([data]) => data?.n),
        [1, 2],
        `client ${i} gets each event once`,
      );
    }
  });

  it('counts a user with connections on several processes once in presence, and removes it when its last connection leaves', async (t) => {
    const name = uniqueChannel('presence-');
    const users = ['u1', 'u2', 'u3'];
    const watcher = await loggedPusher(fleet.P1, { presence: member('w') });
    const { channel: watched } = await subscribe(watcher, name);

    // Three connections per user, subscribed one at a time.
    // Presence is replicated between the processes (each tells the others of a join), so a
    // user's first join is awaited (member_added at the watcher) before its next connections.
    const connections = Object.fromEntries(users.map((u) => [u, []]));
    for (let round = 0; round < 3; round += 1) {
      for (const u of users) {
        const client = await loggedPusher(fleet.P1, { presence: member(u) });
        const added = round === 0 ? labelled(`the watcher, member_added for ${u}`, waitFor(watched, 'pusher:member_added', { filter: (m) => m?.id === u })) : null;
        const { channel } = await subscribe(client, name);
        connections[u].push({ client, channel });
        await added;
      }
    }
    const counts = await spread(fleet, 1 + 3 * users.length);
    t.diagnostic(`connections per process: ${JSON.stringify(counts)}`);
    assert.ok(Object.values(counts).filter((n) => n > 0).length >= 2, `connections on at least two processes: ${JSON.stringify(counts)}`);

    const everyone = { watcher: watched };
    for (const u of users) connections[u].forEach(({ channel }, k) => (everyone[`connection ${k} of ${u}`] = channel));
    await sentinel(fleet.P1, name, everyone);
    assert.deepEqual(memberChanges(watcher.frames, name), ['added:u1', 'added:u2', 'added:u3'], 'the watcher: member_added once per user');
    assert.equal(watched.members.count, 4, "the watcher's member list");
    for (const u of users) {
      for (const [k, { channel }] of connections[u].entries()) {
        assert.equal(channel.members.count, 4, `connection ${k} of ${u}: members.count`);
      }
    }

    // Several requests, each on a new connection to the shared port: each answers for the fleet.
    for (let i = 0; i < 6; i += 1) {
      const info = await freshGet(fleet.P1.server, `/channels/${name}`, { info: 'user_count,subscription_count' });
      assert.deepEqual(info, { occupied: true, user_count: 4, subscription_count: 10 }, `GET /channels/${name}, request ${i + 1}`);
      const listed = await freshGet(fleet.P1.server, `/channels/${name}/users`);
      assert.deepEqual(listed.users.map((u) => u.id).sort(), ['u1', 'u2', 'u3', 'w'], `GET /channels/${name}/users, request ${i + 1}`);
    }

    // u1's connections leave one by one: member_removed only after the last one.
    for (const [k, { client }] of connections.u1.entries()) {
      const before = 10 - k;
      client.disconnect();
      await poll(
        `the fleet to count ${before - 1} subscriptions after connection ${k} of u1 left`,
        () => freshGet(fleet.P1.server, `/channels/${name}`, { info: 'subscription_count' }),
        (info) => info.subscription_count === before - 1,
        { timeout: 3_000 },
      );
      if (k < 2) {
        await sentinel(fleet.P1, name, { watcher: watched });
        assert.deepEqual(memberChanges(watcher.frames, name), ['added:u1', 'added:u2', 'added:u3'], `no member_removed while u1 has ${2 - k} connection(s) left`);
      }
    }
    await poll('member_removed for u1 to reach the watcher', async () => memberChanges(watcher.frames, name), (c) => c.length === 4, { timeout: 3_000 });
    await sentinel(fleet.P1, name, { watcher: watched });
    assert.deepEqual(memberChanges(watcher.frames, name), ['added:u1', 'added:u2', 'added:u3', 'removed:u1'], 'member_removed for u1, once, after its last connection left');
    const info = await freshGet(fleet.P1.server, `/channels/${name}`, { info: 'user_count' });
    assert.equal(info.user_count, 3, `user_count after u1 left: ${JSON.stringify(info)}`);
  });

  it('answers GET /channels the same way whichever process takes the request', async () => {
    const tag = uniqueChannel('same-');
    const names = [`${tag}-a`, `${tag}-b`, `${tag}-c`];
    // Nine raw clients, three per channel, wherever the kernel puts them.
    for (let i = 0; i < CLIENTS; i += 1) await fleet.P1.rawSubscribed(names[i % 3]);
    const counts = await spread(fleet, CLIENTS);
    assert.ok(Object.values(counts).filter((n) => n > 0).length >= 2, `connections on at least two processes: ${JSON.stringify(counts)}`);

    const expected = Object.fromEntries(names.map((n) => [n, { subscription_count: 3 }]));
    for (let i = 0; i < 8; i += 1) {
      const { channels } = await freshGet(fleet.P1.server, '/channels', { filter_by_prefix: tag, info: 'subscription_count' });
      assert.deepEqual(channels, expected, `GET /channels?filter_by_prefix=${tag}, request ${i + 1}`);
    }
  });

  it('carries a 1 MB event to clients on every process intact', async () => {
    const name = uniqueChannel();
    const receivers = [];
    for (let i = 0; i < 6; i += 1) receivers.push(await fleet.P1.rawSubscribed(name));
    const counts = await spread(fleet, receivers.length);
    assert.ok(Object.values(counts).filter((n) => n > 0).length >= 2, `connections on at least two processes: ${JSON.stringify(counts)}`);
    // 10^6 bytes: a frame of a little more than 1 MiB would pass the default per-connection
    // queue limit (SOKETI_MAX_BACKPRESSURE, 1 MiB as in soketi) and close the client with 4100.
    const payload = { blob: crypto.randomBytes(500_000).toString('hex'), end: 'the end' };
    const res = await fleet.P1.sdk().trigger(name, 'big', payload);
    assert.equal(res.status, 200);
    const text = JSON.stringify(payload);
    for (const [i, receiver] of receivers.entries()) {
      const frame = await receiver.next('big');
      assert.equal(frame.data.length, text.length, `receiver ${i}: the data arrives at full length`);
      assert.ok(frame.data === text, `receiver ${i}: the data arrives byte for byte`);
    }
  });
});

/**
 * Opens a raw connection to the shared port and finds the process it landed on, by which
 * process's soketi_connected grew. Resolves with `{ client, on }` (`on` a scope).
 */
async function rawConnectedWhere(fleet) {
  const live = fleet.nodes.filter((s) => !s.server.exitInfo());
  const before = await Promise.all(live.map(connectedOn));
  const client = await live[0].rawConnected();
  const after = await poll(
    `a process's soketi_connected to count a new connection (before: ${JSON.stringify(before)})`,
    () => Promise.all(live.map(connectedOn)),
    (c) => c.some((n, i) => n > before[i]),
    { timeout: 2_000, interval: 20 },
  );
  return { client, on: live[after.findIndex((n, i) => n > before[i])] };
}

/**
 * Raw connections, opened until one is on process `target` and one is on another process;
 * the others are closed. Resolves with `{ onTarget, elsewhere }`.
 */
async function connectionsAround(fleet, target, tries = 40) {
  let onTarget = null;
  let elsewhere = null;
  // Extra connections stay open until the end: closing one while the next opens could make a
  // process's count fall and rise at once, hiding where the new one landed.
  const extras = [];
  for (let i = 0; i < tries && !(onTarget && elsewhere); i += 1) {
    const { client, on } = await rawConnectedWhere(fleet);
    if (on === target && !onTarget) onTarget = client;
    else if (on !== target && !elsewhere) elsewhere = client;
    else extras.push(client);
  }
  for (const client of extras) client.terminate();
  if (!(onTarget && elsewhere)) throw new Error(`${tries} connections to the shared port did not give one on ${target.label} and one elsewhere`);
  return { onTarget, elsewhere };
}

describe('cluster adapter on loopback: processes killed with SIGKILL', () => {
  let sharedPort;
  const fleet = useFleet(() => loopbackSpecs(sharedPort), {
    setup: async () => {
      sharedPort = await freePort();
    },
  });
  const dropDeadline = NODE_TIMEOUT_MS + CHECK_MS + LOAD_MARGIN_MS;
  const masterDeadline = MASTER_TIMEOUT_MS + CHECK_MS + LOAD_MARGIN_MS;
  // The last hello of a killed process left at most one keep-alive interval before the kill.
  const dropEarliest = NODE_TIMEOUT_MS - KEEPALIVE_MS;

  it('the three processes list each other', () => {
    if (fleet.discovery) throw fleet.discovery;
  });

  it(`drops a killed process within ${dropDeadline} ms and sends member_removed for its user`, async (t) => {
    const { P1, P2, P3 } = fleet;
    const name = uniqueChannel('presence-');
    const { onTarget: onP3, elsewhere: watcher } = await connectionsAround(fleet, P3);
    // The watcher first: presence is replicated between nodes, so it waits for member_added.
    await watcher.subscribeOk(name, subscribeData(P1.server, watcher.socketId, name, member('w')));
    await onP3.subscribeOk(name, subscribeData(P3.server, onP3.socketId, name, member('k')));
    const added = await watcher.next((f) => f.event === 'pusher_internal:member_added' && f.channel === name);
    assert.equal(parseData(added).user_id, 'k', 'the watcher hears of k (on P3)');

    const killedAt = Date.now();
    assert.equal((await P3.server.kill('SIGKILL')).signal, 'SIGKILL');
    await Promise.all(
      [P1, P2].map((scope) =>
        poll(`GET /cluster on ${scope.label} to drop P3 (${P3.nodeId})`, () => clusterView(scope), (v) => !v.nodes.some((n) => n.node_id === P3.nodeId), {
          timeout: 5_000,
          interval: 20,
        }),
      ),
    );
    const dropped = Date.now() - killedAt;
    const removed = await watcher.next((f) => f.event === 'pusher_internal:member_removed' && f.channel === name, 5_000);
    const removedAfter = Date.now() - killedAt;
    t.diagnostic(`P1 and P2 dropped P3 ${dropped} ms after the kill; member_removed after ${removedAfter} ms`);
    assert.ok(dropped <= dropDeadline, `P3 dropped after ${dropped} ms (limit ${dropDeadline})`);
    assert.ok(dropped >= dropEarliest, `P3 dropped after ${dropped} ms, before its node timeout ran out (${dropEarliest} ms at the earliest)`);
    assert.equal(parseData(removed).user_id, 'k');
    assert.ok(removedAfter <= dropDeadline + LOAD_MARGIN_MS, `member_removed after ${removedAfter} ms`);
    for (const scope of [P1, P2]) {
      const view = await clusterView(scope);
      assert.deepEqual(view.nodes.map((n) => n.node_id), [scope === P1 ? P2.nodeId : P1.nodeId], `GET /cluster on ${scope.label}`);
    }
  });

  it(`elects the next longest-running process when the master is killed, within ${masterDeadline} ms`, async (t) => {
    const { P1, P2 } = fleet;
    const view = await clusterView(P2);
    assert.equal(view.master_id, P1.nodeId, `P1 is the master before the kill: ${JSON.stringify(view)}`);
    const killedAt = Date.now();
    await P1.server.kill('SIGKILL');
    const { masterId, views: after } = await awaitMasterAgreement([P2], { timeout: 5_000, interval: 20, accept: (id) => id !== P1.nodeId });
    const took = Date.now() - killedAt;
    t.diagnostic(`P2 became the master ${took} ms after P1 was killed`);
    assert.equal(masterId, P2.nodeId);
    assertMaster([P2], after, P2.nodeId, 'after P1 was killed');
    assert.ok(took <= masterDeadline, `new master after ${took} ms (limit ${masterDeadline})`);
    assert.ok(took >= MASTER_TIMEOUT_MS - KEEPALIVE_MS, `new master after ${took} ms, before the master timeout ran out`);
  });
});

describe('cluster adapter on loopback: nodes on another SOKETI_CLUSTER_PORT never meet', () => {
  const group = randomMulticastGroup();
  const portA = randomClusterPort();
  const portB = portA + 1;
  const fleet = useFleet(
    [
      { label: 'P1', env: { ...loopbackEnv(portA, group), SOKETI_CLUSTER_PREFIX: `skt-ports-${process.pid}` } },
      { label: 'P2', env: { ...loopbackEnv(portB, group), SOKETI_CLUSTER_PREFIX: `skt-ports-${process.pid}` } },
    ],
    { groups: (f) => [[f.P1], [f.P2]] },
  );

  it('same prefix and group, other discovery port: for a node timeout, neither lists the other', async () => {
    if (fleet.discovery) throw fleet.discovery;
    const { P1, P2 } = fleet;
    // A hello every keep-alive interval: ten of them would have been heard by now.
    const until = Date.now() + NODE_TIMEOUT_MS;
    while (Date.now() < until) {
      const [v1, v2] = await Promise.all([P1, P2].map(clusterView));
      assert.deepEqual(v1.nodes, [], `GET /cluster on P1 (port ${portA}): ${JSON.stringify(v1)}`);
      assert.deepEqual(v2.nodes, [], `GET /cluster on P2 (port ${portB}): ${JSON.stringify(v2)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  });
});
