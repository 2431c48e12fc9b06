// Helpers for the tests of the cluster adapter (SOKETI_ADAPTER_DRIVER=cluster): nodes that find
// each other over UDP (broadcast, multicast or unicast) and exchange data over TCP.
//
// A node's view of the fleet is `GET /cluster` on its metrics (operations) port:
//   {"driver":"cluster","node_id":"…","master_id":"…","is_master":bool,"connections":{app:n},
//    "nodes":[{"node_id":"…","address":"ip:port","is_master":bool,"connections":{app:n}}, …]}
// where `nodes` lists the OTHER live nodes, `connections` the node's own open connections per
// app and `nodes[].connections` what it last heard of each peer's (the fleet-wide quota). `useFleet` starts nodes one after the other (so
// that the first is the longest-running one, the master), and waits until every node lists
// every other one. `fleetTransports()` and `useTransportFleet` run a feature's fleet tests over
// every transport (Redis, NATS, the cluster adapter on loopback and between network namespaces).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, before, beforeEach } from 'node:test';

import { Scope, connected, httpRequest, parseData, rawWs, startServer, subscribe, uniqueChannel, waitFor } from './harness.mjs';
import { natsSkip, startNats } from './nats.mjs';
import { BRIDGE_ADDRESS, createNetwork, netnsSkip, ownLeftovers } from './netns.mjs';
import { FLEET_NODE_TIMEOUT_MS, redisFleetEnv, redisSkip, startRedis } from './redis.mjs';
import { dumpRequests } from './webhook-checks.mjs';
import { startReceiver } from './webhook-receiver.mjs';

/** A UDP port for the cluster's discovery, random in 20000-40000 (one per test file or suite). */
export function randomClusterPort() {
  return 20_000 + crypto.randomInt(20_000);
}

/** A multicast group in the administratively scoped 239.255.0.0/16, random. */
export function randomMulticastGroup() {
  return `239.255.${crypto.randomInt(1, 255)}.${crypto.randomInt(1, 255)}`;
}

/**
 * Calls `fetch` until `accept` holds for its value, and resolves with that value. An error
 * thrown by `fetch` counts as a value that is not accepted; the last value or error is in the
 * timeout's message.
 */
export async function poll(what, fetch, accept = Boolean, { timeout = 5_000, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last = 'nothing yet';
  for (;;) {
    try {
      const value = await fetch();
      if (accept(value)) return value;
      last = `last value: ${JSON.stringify(value)}`;
    } catch (err) {
      last = `last error: ${describeError(err)}`;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what} (${last})`);
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
}

export function describeError(err) {
  return err.status === undefined ? err.message : `${err.message} (status ${err.status}: ${err.body})`;
}

/** `GET /cluster` on the node's metrics port, parsed; throws unless 200 with JSON. */
export async function clusterView(scope) {
  const res = await httpRequest(`${scope.server.metricsUrl}/cluster`, { timeout: 1_000 });
  if (res.status !== 200 || res.json === undefined) {
    throw new Error(`GET /cluster on node ${scope.label} answered ${res.status}: ${res.text.slice(0, 300)}`);
  }
  return res.json;
}

/** The ids of the other nodes a `/cluster` view lists, sorted. */
export function peerIds(view) {
  return (view.nodes ?? []).map((n) => n.node_id).sort();
}

/** Whether a node's view lists exactly the nodes `expectedIds` (sorted ids) as its peers. */
function listsExactly(view, expectedIds) {
  const ids = peerIds(view);
  return ids.length === expectedIds.length && ids.every((id, i) => id === expectedIds[i]);
}

/**
 * Reads each node's own id (`node_id` of its `/cluster`) into `scope.nodeId`, then polls
 * `/cluster` on every node until each lists exactly the others. Resolves with the views, by
 * label, and how long the mesh took from the call.
 */
export async function awaitMesh(nodes, { timeout = 10_000, interval = 25 } = {}) {
  const started = Date.now();
  for (const scope of nodes) {
    const view = await poll(`GET /cluster on node ${scope.label} to answer`, () => clusterView(scope), (v) => typeof v?.node_id === 'string', {
      timeout,
      interval,
    });
    scope.nodeId = view.node_id;
  }
  const ids = nodes.map((s) => s.nodeId);
  assert.equal(new Set(ids).size, ids.length, `every node has its own node_id: ${JSON.stringify(ids)}`);
  const views = {};
  await Promise.all(
    nodes.map(async (scope) => {
      const others = nodes.filter((n) => n !== scope).map((n) => n.nodeId).sort();
      const names = nodes.filter((n) => n !== scope).map((n) => `${n.label}=${n.nodeId}`).join(', ');
      views[scope.label] = await poll(
        `GET /cluster on node ${scope.label} (${scope.nodeId}) to list exactly ${names || 'nobody'}`,
        () => clusterView(scope),
        (view) => listsExactly(view, others),
        { timeout: Math.max(0, timeout - (Date.now() - started)), interval },
      );
    }),
  );
  return { views, took: Date.now() - started };
}

/**
 * Polls until every node in `nodes` agrees on one master that is one of them, and resolves
 * with its id. `accept(masterId)` can demand a particular one.
 */
export async function awaitMasterAgreement(nodes, { timeout = 5_000, interval = 25, accept = () => true } = {}) {
  const live = new Set(nodes.map((n) => n.nodeId));
  const views = await poll(
    `nodes ${nodes.map((n) => n.label).join(', ')} to agree on a master among them`,
    () => Promise.all(nodes.map((n) => clusterView(n))),
    (vs) => {
      const master = vs[0].master_id;
      return live.has(master) && vs.every((v) => v.master_id === master) && accept(master);
    },
    { timeout, interval },
  );
  return { masterId: views[0].master_id, views };
}

/**
 * Asserts that the views (by scope) agree that `masterId` is the master: `master_id`,
 * `is_master` of the node itself, and `is_master` of each listed peer.
 */
export function assertMaster(nodes, views, masterId, when) {
  nodes.forEach((scope, i) => {
    const view = views[i];
    assert.equal(view.master_id, masterId, `master_id on node ${scope.label} ${when}: ${JSON.stringify(view)}`);
    assert.equal(view.is_master, scope.nodeId === masterId, `is_master of node ${scope.label} itself ${when}: ${JSON.stringify(view)}`);
    for (const peer of view.nodes) {
      assert.equal(peer.is_master, peer.node_id === masterId, `is_master of peer ${peer.node_id} in the view of node ${scope.label} ${when}: ${JSON.stringify(view)}`);
    }
  });
}

/**
 * Registers suite hooks that start one node per spec (`[{ label, env, options }]`, in order,
 * each once the previous one is ready), then wait until every node's `/cluster` lists every
 * other node. The returned fleet has a `Scope` per label (`fleet.h1`, ...; `scope.label`,
 * `scope.spec`, `scope.nodeId` once known), `fleet.nodes`, `groups(fleet)` (the lists of nodes that
 * must list exactly each other, all the nodes by default), `fleet.discovery` (null, or the error of
 * the wait, which the first test reports), `fleet.mesh` (`{ views, took }`, `took` counted from
 * the moment the last node was ready) and `fleet.restart(scope)` (starts a stopped node again
 * with its spec). `specs` may be a function, called in `before`, for specs known only then.
 * `setup(fleet)` runs before the nodes start (a bus, a receiver), `settle(fleet)` once the mesh
 * is complete (its error is the discovery error too), `teardown(fleet)` after the nodes stopped,
 * and `onFailure(fleet, test)` after a failed test's node output (the bus's output, say).
 * Clients are closed after each test; when a test fails, every node's output during it follows.
 */
export function useFleet(specs, { meshTimeout = 10_000, setup, settle, teardown, onFailure, groups = (f) => [f.nodes] } = {}) {
  const fleet = { nodes: [], discovery: null, mesh: null };
  const marks = new Map();

  fleet.restart = async (scope) => {
    scope.closeClients();
    scope.previous = [...(scope.previous ?? []), scope.server];
    scope.server = await startServer(scope.spec.env, scope.spec.options);
    return scope;
  };

  before(async () => {
    if (setup) await setup(fleet);
    const list = typeof specs === 'function' ? specs(fleet) : specs;
    for (const spec of list) {
      const scope = new Scope();
      scope.label = spec.label;
      scope.spec = spec;
      fleet[spec.label] = scope;
      fleet.nodes.push(scope);
    }
    for (const scope of fleet.nodes) {
      scope.server = await startServer(scope.spec.env, scope.spec.options);
    }
    // Each group must list exactly its own members (all the nodes, unless `groups` says otherwise).
    const meshes = await Promise.all(groups(fleet).map((group) => awaitMesh(group, { timeout: meshTimeout }))).catch((err) => {
      fleet.discovery = err;
      return null;
    });
    fleet.mesh = meshes && { views: Object.assign({}, ...meshes.map((m) => m.views)), took: Math.max(...meshes.map((m) => m.took)) };
    if (meshes && settle) fleet.discovery = await settle(fleet).then(() => null, (err) => err);
  });
  beforeEach(() => {
    for (const scope of fleet.nodes) marks.set(scope, scope.server?.logMark() ?? 0);
  });
  afterEach((t) => {
    if (t.passed === false) {
      for (const scope of fleet.nodes) {
        for (const old of scope.previous ?? []) old.dumpLogs(`node ${scope.label} (an earlier run of it), test "${t.name}" failed`);
        scope.previous = [];
        scope.server?.dumpLogs(`node ${scope.label}, test "${t.name}" failed`, marks.get(scope));
      }
      onFailure?.(fleet, t);
    }
    for (const scope of fleet.nodes) scope.closeClients();
  });
  after(async () => {
    for (const scope of fleet.nodes) scope.closeClients();
    await Promise.all(fleet.nodes.map((scope) => scope.server?.stop()));
    await teardown?.(fleet);
  });
  return fleet;
}

// ---------------------------------------------------------------------------------------------
// Clients and channels (as in redis-adapter.test.mjs)
// ---------------------------------------------------------------------------------------------

/** `promise`, with `label` in front of its error's message. */
export function labelled(label, promise) {
  return promise.catch((err) => {
    err.message = `${label}: ${err.message}`;
    throw err;
  });
}

export const member = (id) => ({ user_id: id, user_info: { name: id.toUpperCase() } });

/** Every frame a pusher-js client receives, as `{ event, channel, data }` (bind before connecting). */
export function wireLog(client) {
  const frames = [];
  client.connection.bind('message', (frame) => frames.push(frame));
  return frames;
}

/** The member_added/member_removed frames of `channel` in a wire log, as `added:<id>`/`removed:<id>`. */
export function memberChanges(frames, channel) {
  return frames
    .filter((f) => f.channel === channel && /^pusher_internal:member_(added|removed)$/.test(f.event))
    .map((f) => `${f.event.slice('pusher_internal:member_'.length)}:${parseData(f).user_id}`);
}

/** A pusher-js client on `scope`'s node with a wire log in `client.frames`, once connected. */
export async function loggedPusher(scope, opts) {
  const client = scope.pusher(opts);
  client.frames = wireLog(client);
  await connected(client);
  return client;
}

/**
 * Publishes a `sentinel` event through node `via` and waits until every pusher-js channel in
 * `channels` (an object: a label for messages to the channel) got it.
 */
export async function sentinel(via, channelName, channels) {
  const id = crypto.randomBytes(4).toString('hex');
  const arrivals = Object.entries(channels).map(([label, channel]) =>
    labelled(`${label}, for the sentinel published through node ${via.label}`, waitFor(channel, 'sentinel', { filter: (data) => data?.id === id })),
  );
  await via.sdk().trigger(channelName, 'sentinel', { id });
  await Promise.all(arrivals);
}

/** `GET /apps/<id>/channels/<channel>` through a node's SDK. */
export async function channelInfo(scope, channel, info) {
  const res = await scope.sdk().get({ path: `/channels/${channel}`, params: info ? { info } : {} });
  return res.json();
}

/** `GET /apps/<id>/channels/<channel>/users` through a node's SDK: the user ids, sorted. */
export async function userIds(scope, channel) {
  const res = await scope.sdk().get({ path: `/channels/${channel}/users` });
  return (await res.json()).users.map((u) => u.id).sort();
}

/**
 * Subscribes a probe channel on every node and polls `GET /channels` on every node until it
 * lists all of them: then every node hears every other one, and answers for it.
 */
export async function awaitDiscovery(nodes, timeout = 10_000) {
  const probes = [];
  try {
    for (const scope of nodes) {
      const client = await rawWs(scope.server.wsUrl());
      probes.push(client);
      await client.established();
      client.channel = uniqueChannel(`probe-${scope.label}-`);
      await client.subscribeOk(client.channel);
    }
    for (const scope of nodes) {
      await poll(
        `GET /channels on node ${scope.label} to list the probe channels of nodes ${nodes.map((n) => n.label).join(', ')}`,
        async () => (await (await scope.sdk().get({ path: '/channels' })).json()).channels,
        (channels) => probes.every((probe) => probe.channel in channels),
        { timeout, interval: 100 },
      );
    }
  } finally {
    for (const probe of probes) probe.terminate();
  }
}

/**
 * Registers suite hooks that start a bus (`bus.start(bus.options)`: a redis-server, a
 * nats-server), then the nodes of each fleet on it (`{ fleetName: { labels: ['A', 'B'], env } }`,
 * each node's environment `bus.nodeEnv(theBus, env)`), and wait until the nodes of each fleet
 * discover each other (`awaitDiscovery`). The returned context has the bus under `bus.name`
 * (`ctx.redis`, `ctx.nats`), a `Scope` per label (`ctx.A`, ...; `scope.label`, `scope.fleet`),
 * `ctx.fleets` (name to scopes), `ctx.nodes` and `ctx.discovery` (null, or the error of the
 * wait, which each describe's first test reports). When a test fails, every node's output during
 * it and the bus's output follow the failure.
 */
export function useBusFleets(bus, fleetSpecs, { discoveryTimeout = 10_000 } = {}) {
  const ctx = { [bus.name]: null, discovery: null, nodes: [], fleets: {} };
  for (const [fleet, { labels }] of Object.entries(fleetSpecs)) {
    ctx.fleets[fleet] = labels.map((label) => {
      const scope = new Scope();
      scope.label = label;
      scope.fleet = fleet;
      ctx[label] = scope;
      ctx.nodes.push(scope);
      return scope;
    });
  }
  const marks = new Map();

  before(async () => {
    ctx[bus.name] = await bus.start(bus.options);
    for (const [fleet, { env }] of Object.entries(fleetSpecs)) {
      for (const scope of ctx.fleets[fleet]) scope.server = await startServer(bus.nodeEnv(ctx[bus.name], env));
    }
    ctx.discovery = await Promise.all(Object.values(ctx.fleets).map((nodes) => awaitDiscovery(nodes, discoveryTimeout))).then(
      () => null,
      (err) => err,
    );
  });
  beforeEach(() => {
    for (const scope of ctx.nodes) marks.set(scope, scope.server?.logMark() ?? 0);
  });
  afterEach((t) => {
    if (t.passed === false) {
      for (const scope of ctx.nodes) scope.server?.dumpLogs(`node ${scope.label}, test "${t.name}" failed`, marks.get(scope));
      const running = ctx[bus.name];
      if (running) process.stderr.write(`\n----- ${bus.name} output (port ${running.port}) -----\n${running.logs()}\n-----\n`);
    }
    for (const scope of ctx.nodes) scope.closeClients();
  });
  after(async () => {
    for (const scope of ctx.nodes) scope.closeClients();
    await Promise.all(ctx.nodes.map((scope) => scope.server?.stop()));
    await ctx[bus.name]?.stop();
  });
  return ctx;
}

/** Publishes through node `from` and checks that a pusher-js client on node `to` gets the event. */
export async function assertCrosses(from, to) {
  const client = await to.connectedPusher();
  const name = uniqueChannel(`cross-${from.label}-${to.label}-`);
  const { channel } = await subscribe(client, name);
  const id = crypto.randomBytes(4).toString('hex');
  const arrival = labelled(`the event published through node ${from.label}, at a client of node ${to.label}`, waitFor(channel, 'crossed'));
  await from.sdk().trigger(name, 'crossed', { id });
  assert.deepEqual(await arrival, { id });
}

// ---------------------------------------------------------------------------------------------
// One fleet over every transport
// ---------------------------------------------------------------------------------------------

/**
 * The environment of a process of a cluster on loopback (`bus`: `{ port, group }`): it binds
 * 127.0.0.1, and its hellos go to the multicast group `group` out of 127.0.0.1 only, never a real
 * interface. Hellos every 100 ms, a node or master gone after `FLEET_NODE_TIMEOUT_MS`.
 */
export function loopbackClusterEnv({ port, group }, extra = {}) {
  return {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_HOST: '127.0.0.1',
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(port),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: group,
    SOKETI_CLUSTER_PREFIX: `skt-fleet-${process.pid}-${port}`,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: '100',
    SOKETI_CLUSTER_CHECK_INTERVAL: '100',
    SOKETI_CLUSTER_NODE_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
    SOKETI_CLUSTER_MASTER_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT: '1000',
    ...extra,
  };
}

/**
 * The `useFleet` specs of nodes of the cluster adapter in the namespaces of `network`
 * (`createNetwork`), the node of `labels[i]` on host i: each listens on 0.0.0.0 in its namespace,
 * is reached by the test at its address, and finds the others by unicast to their addresses
 * (no broadcast, no multicast). Hellos every 200 ms, a node or master gone after
 * `FLEET_NODE_TIMEOUT_MS`.
 */
export function netnsClusterSpecs(network, labels, extra = {}) {
  const port = randomClusterPort();
  const addresses = JSON.stringify(network.hosts.map((h) => h.address));
  return labels.map((label, i) => {
    const host = network.hosts[i];
    const env = {
      SOKETI_ADAPTER_DRIVER: 'cluster',
      SOKETI_HOST: '0.0.0.0',
      SOKETI_METRICS_HOST: '0.0.0.0',
      SOKETI_CLUSTER_HOST: host.address,
      SOKETI_CLUSTER_PORT: String(port),
      SOKETI_CLUSTER_UNICAST_ADDRESSES: addresses,
      SOKETI_CLUSTER_PREFIX: `skt-fleet-${process.pid}-${port}`,
      SOKETI_CLUSTER_KEEPALIVE_INTERVAL: '200',
      SOKETI_CLUSTER_CHECK_INTERVAL: '200',
      SOKETI_CLUSTER_NODE_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
      SOKETI_CLUSTER_MASTER_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
      SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT: '1000',
      ...extra,
    };
    return { label, host, env, options: { host: host.address, wrap: host.wrap } };
  });
}

/**
 * The transports that a feature's fleet tests run over, in the shape of the fleet suite's
 * (fleet-suite.mjs: `{ title, skip, nodeTimeoutMs, receiverHost, setup, nodeSpecs, teardown,
 * logs }`): the Redis adapter and the NATS adapter (a redis-server, a nats-server of their own),
 * the cluster adapter on loopback (multicast on 127.0.0.1), and the cluster adapter between
 * three network namespaces (netns.mjs, root only; unicast by address), whose nodes reach the
 * webhook receiver at the bridge's address. Each skips, with its reason, without what it needs.
 */
export function fleetTransports() {
  return [
    {
      title: 'the redis adapter',
      skip: redisSkip(),
      nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
      setup: () => startRedis(),
      nodeSpecs: (redis, labels, env) =>
        labels.map((label) => ({ label, env: redisFleetEnv({ SOKETI_DB_REDIS_HOST: '127.0.0.1', SOKETI_DB_REDIS_PORT: String(redis.port) }, env) })),
      teardown: (redis) => redis?.stop(),
      logs: (redis) => redis.logs(),
    },
    {
      title: 'the nats adapter',
      skip: natsSkip(),
      nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
      setup: () => startNats(),
      nodeSpecs: (nats, labels, env) =>
        labels.map((label) => ({
          label,
          env: {
            SOKETI_ADAPTER_DRIVER: 'nats',
            SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${nats.port}`]),
            SOKETI_ADAPTER_NATS_HEARTBEAT_INTERVAL: '200',
            SOKETI_ADAPTER_NATS_NODE_TIMEOUT: String(FLEET_NODE_TIMEOUT_MS),
            SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT: '1000',
            ...env,
          },
        })),
      teardown: (nats) => nats?.stop(),
      logs: (nats) => nats.logs(),
    },
    {
      title: 'the cluster adapter on loopback',
      skip: false,
      nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
      setup: async () => ({ port: randomClusterPort(), group: randomMulticastGroup() }),
      nodeSpecs: (bus, labels, env) => labels.map((label) => ({ label, env: loopbackClusterEnv(bus, env) })),
    },
    {
      title: 'the cluster adapter between network namespaces (unicast by address)',
      skip: netnsSkip(),
      nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
      receiverHost: BRIDGE_ADDRESS,
      // Without namespaces (under SOKETI_TEST_REQUIRE_ALL=1), createNetwork fails with the reason.
      setup: async () => {
        const network = await createNetwork({ hosts: 3 });
        if (network.leftovers.length) process.stderr.write(`removed what an earlier run left: ${network.leftovers.join(', ')}\n`);
        return network;
      },
      nodeSpecs: netnsClusterSpecs,
      teardown: (network) => {
        network?.destroy();
        assert.deepEqual(ownLeftovers(), [], 'the namespaces, veths and bridge of this run are gone');
      },
    },
  ];
}

/**
 * Registers suite hooks that start `transport` (one of `fleetTransports()`), a webhook receiver
 * where its nodes reach it (`transport.receiverHost`, loopback by default), then one node per
 * label, each with `env(receiver)` on top of the transport's environment, and wait until every
 * node lists the others (`useFleet`) and answers for their channels (`awaitDiscovery`). The
 * fleet is `useFleet`'s, with `fleet.bus` (what `setup` resolved with) and `fleet.receiver`;
 * when a test fails, the webhook requests received during it and the bus's output follow the
 * nodes' output.
 */
export function useTransportFleet(transport, env, { labels = ['A', 'B', 'C'] } = {}) {
  let requestMark = 0;
  const fleet = useFleet((f) => transport.nodeSpecs(f.bus, labels, env(f.receiver)), {
    setup: async (f) => {
      f.bus = await transport.setup();
      f.receiver = await startReceiver({ host: transport.receiverHost ?? '127.0.0.1' });
    },
    settle: (f) => awaitDiscovery(f.nodes),
    teardown: async (f) => {
      await f.receiver?.close();
      await transport.teardown?.(f.bus);
    },
    onFailure: (f, t) => {
      dumpRequests(f.receiver, requestMark, t.name);
      const logs = f.bus && transport.logs?.(f.bus);
      if (logs) process.stderr.write(`\n----- ${transport.title}: the bus's output -----\n${logs}\n-----\n`);
    },
  });
  beforeEach(() => {
    requestMark = fleet.receiver?.mark() ?? 0;
  });
  return fleet;
}
