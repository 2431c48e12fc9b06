// The Redis adapter (SOKETI_ADAPTER_DRIVER=redis): several server processes sharing one
// throwaway redis-server behave as one server. Events, client events, presence, the HTTP
// listings, users and cache channels span the nodes; a node killed with SIGKILL is forgotten
// after the node timeout; a Redis restart is survived.
//
// Each `describe` starts its own redis-server (see redis.mjs) and its own nodes, with short
// liveness settings (heartbeats every 200 ms, a node gone after 1 s of silence). Before the
// tests run, the nodes' discovery of each other is awaited by subscribing a probe channel on
// every node and polling `GET /channels` on every node until all probes are listed.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  Scope,
  connected,
  httpRequest,
  parseData,
  rawWs,
  record,
  startServer,
  subscribe,
  uniqueChannel,
  until,
  waitFor,
  withTimeout,
} from './harness.mjs';
import { awaitDiscovery, poll } from './cluster.mjs';
import { natsSkip, startNats } from './nats.mjs';
import { redisSkip, startRedis } from './redis.mjs';

// The bus of the fleet: Redis here; nats-adapter.test.mjs reruns this suite over NATS by
// setting SOKETI_TEST_FLEET_BUS=nats before importing it. Both adapters share the
// HorizontalAdapter, so every semantic must hold over both.
const BUS = process.env.SOKETI_TEST_FLEET_BUS === 'nats' ? 'nats' : 'redis';
const busSkip = BUS === 'nats' ? natsSkip : redisSkip;
const startBus = BUS === 'nats' ? startNats : startRedis;

const HEARTBEAT_INTERVAL_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const REQUESTS_TIMEOUT_MS = 1_000;
const DISCOVERY_DEADLINE_MS = 10_000;

/** The environment of a node of the fleet that shares `redis` (or the NATS server). */
function nodeEnv(redis, extra = {}) {
  if (BUS === 'nats') {
    return {
      SOKETI_ADAPTER_DRIVER: 'nats',
      SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${redis.port}`]),
      SOKETI_ADAPTER_NATS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
      SOKETI_ADAPTER_NATS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
      SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
      ...extra,
    };
  }
  return {
    SOKETI_ADAPTER_DRIVER: 'redis',
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(redis.port),
    SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
    SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    ...extra,
  };
}

/**
 * Registers suite hooks that start a redis-server and one node per name (`['A', 'B', 'C']`),
 * all sharing it, and wait for the nodes to discover each other. The returned object has a
 * `Scope` per name (`cluster.A`, ...; `scope.label` is the name), `cluster.nodes` (the scopes
 * in order), `cluster.redis`, `cluster.env` (the nodes' environment) and `cluster.discovery` (null, or the error of the discovery
 * wait, which the first test reports). Clients are closed after each test; when a test fails,
 * every node's output during it and the redis-server's output follow the failure.
 */
function useCluster(names, extraEnv = {}) {
  const cluster = { redis: null, env: null, discovery: null, nodes: [] };
  for (const name of names) {
    const scope = new Scope();
    scope.label = name;
    cluster[name] = scope;
    cluster.nodes.push(scope);
  }
  const marks = new Map();

  before(async () => {
    cluster.redis = await startBus();
    const env = nodeEnv(cluster.redis, extraEnv);
    cluster.env = env;
    const started = await Promise.allSettled(cluster.nodes.map(() => startServer(env)));
    started.forEach((result, i) => {
      if (result.status === 'fulfilled') cluster.nodes[i].server = result.value;
    });
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    cluster.discovery = await awaitDiscovery(cluster.nodes, DISCOVERY_DEADLINE_MS).then(
      () => null,
      (err) => err,
    );
  });
  beforeEach(() => {
    for (const scope of cluster.nodes) marks.set(scope, scope.server?.logMark() ?? 0);
  });
  afterEach((t) => {
    if (t.passed === false) {
      for (const scope of cluster.nodes) {
        scope.server?.dumpLogs(`node ${scope.label}, test "${t.name}" failed`, marks.get(scope));
      }
      if (cluster.redis) {
        process.stderr.write(`\n----- redis-server output (port ${cluster.redis.port}) -----\n${cluster.redis.logs()}\n-----\n`);
      }
    }
    for (const scope of cluster.nodes) scope.closeClients();
  });
  after(async () => {
    for (const scope of cluster.nodes) scope.closeClients();
    await Promise.all(cluster.nodes.map((scope) => scope.server?.stop()));
    await cluster.redis?.stop();
  });
  return cluster;
}


// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** `GET /apps/<id>/channels` on a node: the `channels` object. */
async function listChannels(scope, params = {}) {
  const res = await scope.sdk().get({ path: '/channels', params });
  return (await res.json()).channels;
}

/** `GET /apps/<id>/channels/<channel>` on a node. */
async function channelInfo(scope, channel, info) {
  const res = await scope.sdk().get({ path: `/channels/${channel}`, params: info ? { info } : {} });
  return res.json();
}

/** `GET /apps/<id>/channels/<channel>/users` on a node: the user ids in the order listed. */
async function userIds(scope, channel) {
  const res = await scope.sdk().get({ path: `/channels/${channel}/users` });
  return (await res.json()).users.map((u) => u.id);
}

/** Asserts that `GET .../users` on each node lists exactly `expected`, each once. */
async function assertUsers(nodes, channel, expected, when) {
  for (const scope of nodes) {
    const ids = await userIds(scope, channel);
    assert.deepEqual([...ids].sort(), [...expected].sort(), `GET /channels/${channel}/users on node ${scope.label} ${when}`);
  }
}

/** `promise`, with `label` in front of its error's message. */
function labelled(label, promise) {
  return promise.catch((err) => {
    err.message = `${label}: ${err.message}`;
    throw err;
  });
}

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client, timeout) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'), timeout);
}

/** Every frame a pusher-js client receives, as `{ event, channel, data }` (bind before connecting). */
function wireLog(client) {
  const frames = [];
  client.connection.bind('message', (frame) => frames.push(frame));
  return frames;
}

/** The member_added/member_removed frames of `channel` in a wire log, as `added:<id>`/`removed:<id>`. */
function memberChanges(frames, channel) {
  return frames
    .filter((f) => f.channel === channel && /^pusher_internal:member_(added|removed)$/.test(f.event))
    .map((f) => `${f.event.slice('pusher_internal:member_'.length)}:${parseData(f).user_id}`);
}

/**
 * Publishes a `sentinel` event through node `via` and waits until every pusher-js channel in
 * `channels` (an object: a label for messages to the channel) got it. Frames that a node sent before it published the sentinel reach each
 * connection before it.
 */
async function sentinel(via, channelName, channels) {
  const id = crypto.randomBytes(4).toString('hex');
  const arrivals = Object.entries(channels).map(([label, channel]) =>
    labelled(
      `${label}, for the sentinel published through node ${via.label}`,
      waitFor(channel, 'sentinel', { filter: (data) => data?.id === id }),
    ),
  );
  await via.sdk().trigger(channelName, 'sentinel', { id });
  await Promise.all(arrivals);
}

/** A pusher-js client on `scope`'s node with a wire log in `client.frames`, once connected. */
async function loggedPusher(scope, opts) {
  const client = scope.pusher(opts);
  client.frames = wireLog(client);
  await connected(client);
  return client;
}

/** A pusher-js client signed in as `id`, subscribed to its `#server-to-user-<id>` channel. */
async function signedInPusher(scope, id) {
  const client = await scope.connectedPusher({ user: { id, user_info: { name: id } } });
  client.signin();
  await withTimeout(client.user.signinDonePromise, 5_000, `sign-in of ${id} on node ${scope.label}`);
  await until(() => client.user.serverToUserChannel?.subscribed, {
    what: `the #server-to-user-${id} subscription on node ${scope.label} to succeed`,
  });
  return client;
}

/** A raw client signed in as `id`. */
async function signedInRaw(scope, id) {
  const client = await scope.rawConnected();
  const frame = await client.signin(scope.sdk(), { id });
  assert.equal(frame.event, 'pusher:signin_success', `node ${scope.label}: ${client.describeHistory()}`);
  return client;
}

const member = (id) => ({ user_id: id, user_info: { name: id.toUpperCase() } });

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

describe(`${BUS} adapter: three nodes`, { skip: busSkip() }, () => {
  const cluster = useCluster(['A', 'B', 'C']);
  const { A, B, C } = cluster;

  it('nodes discover each other: GET /channels on each node lists a channel of every node', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it('delivers SDK events published on A to subscribers on A, B and C exactly once each, in order', async () => {
    const N = 20;
    const name = uniqueChannel();
    const subscribers = [];
    for (const scope of [A, B, C]) {
      const client = await scope.connectedPusher();
      const { channel } = await subscribe(client, name);
      const done = labelled(`the subscriber on node ${scope.label}`, waitFor(channel, 'done'));
      done.catch(() => {});
      subscribers.push({ label: scope.label, seen: record(channel, 'seq'), done });
    }

    const sdk = A.sdk();
    for (let n = 1; n <= N; n += 1) {
      const res = await sdk.trigger(name, 'seq', { n });
      assert.equal(res.status, 200);
    }
    await sdk.trigger(name, 'done', {});

    const expected = Array.from({ length: N }, (_, i) => i + 1);
    for (const { label, seen, done } of subscribers) {
      await done.catch((err) => {
        err.message += `; the seq events it got: ${JSON.stringify(seen.map(([data]) => data?.n))}`;
        throw err;
      });
      seen.stop();
      assert.deepEqual(
        // pusher-js calls channel callbacks with (data, metadata), so `record` keeps both.
        seen.map(([data]) => data?.n),
        expected,
        `the subscriber on node ${label} gets 1..${N} once each, in order`,
      );
    }
  });

  it('honours socket_id exclusion for a socket on another node', async () => {
    const name = uniqueChannel();
    const excluded = await B.rawSubscribed(name);
    const included = await B.rawSubscribed(name);
    const onC = await C.rawSubscribed(name);

    const res = await A.sdk().trigger(name, 'not-for-you', { n: 1 }, { socket_id: excluded.socketId });
    assert.equal(res.status, 200);
    assert.deepEqual(parseData(await included.next('not-for-you')), { n: 1 }, 'another socket on B gets it');
    assert.deepEqual(parseData(await onC.next('not-for-you')), { n: 1 }, 'a socket on C gets it');

    // Published after through the same node, the sentinel would come after the excluded event.
    await A.sdk().trigger(name, 'sentinel', {});
    assert.equal((await nextAppEvent(excluded)).event, 'sentinel', `excluded socket on B: ${excluded.describeHistory()}`);
  });

  it('delivers a client event from A to private-channel subscribers on B and C, not back to the sender', async () => {
    const name = uniqueChannel('private-');
    const sender = await A.connectedPusher();
    const onB = await B.connectedPusher();
    const onC = await C.connectedPusher();
    const { channel: sent } = await subscribe(sender, name);
    const { channel: gotB } = await subscribe(onB, name);
    const { channel: gotC } = await subscribe(onC, name);

    const echoes = record(sent, 'client-x');
    const receivedB = labelled('the subscriber on B', waitFor(gotB, 'client-x'));
    const receivedC = labelled('the subscriber on C', waitFor(gotC, 'client-x'));
    assert.equal(sent.trigger('client-x', { hello: 'world' }), true);
    assert.deepEqual(await receivedB, { hello: 'world' }, 'the subscriber on B');
    assert.deepEqual(await receivedC, { hello: 'world' }, 'the subscriber on C');

    // B's reply (also across nodes) is sent after B got the event, so an echo to the sender
    // would have been published before it.
    const reply = labelled('the sender on A, for the reply from B', waitFor(sent, 'client-reply'));
    assert.equal(gotB.trigger('client-reply', { thanks: true }), true);
    assert.deepEqual(await reply, { thanks: true }, 'the reply from B reaches the sender on A');
    echoes.stop();
    assert.deepEqual(echoes, [], 'the sender does not receive its own event');
  });

  it('shares presence: members across nodes, a user with connections on two nodes counted once', async () => {
    const name = uniqueChannel('presence-');
    const [u1, u2, u3] = ['u1', 'u2', 'u3'].map(member);

    // u1 on A, then u2 on B: each sees the other.
    const u1OnA = await loggedPusher(A, { presence: u1 });
    const { channel: chA } = await subscribe(u1OnA, name);
    assert.equal(chA.members.count, 1);
    const u2Added = labelled('u1 on A', waitFor(chA, 'pusher:member_added'));

    const u2OnB = await loggedPusher(B, { presence: u2 });
    const { channel: chB } = await subscribe(u2OnB, name);
    assert.equal(chB.members.count, 2, 'u2 on B sees u1 (on A) in subscription_succeeded');
    assert.deepEqual(chB.members.get('u1'), { id: 'u1', info: u1.user_info });
    assert.deepEqual(await u2Added, { id: 'u2', info: u2.user_info }, 'member_added for u2 reaches u1 on A');
    assert.equal(chA.members.count, 2);
    await assertUsers([A, B, C], name, ['u1', 'u2'], 'with u1 on A and u2 on B');

    // u1's second connection, on B: no member_added anywhere, user_count stays 2.
    const u1OnB = await loggedPusher(B, { presence: u1 });
    const { channel: chB2 } = await subscribe(u1OnB, name);
    assert.equal(chB2.members.count, 2, `u1's second connection sees u1 and u2; members: ${JSON.stringify(chB2.members.members)}`);
    const counted = await channelInfo(C, name, 'user_count');
    assert.equal(counted.user_count, 2, `GET /channels/${name}?info=user_count on C: ${JSON.stringify(counted)}`);
    await assertUsers([A, B, C], name, ['u1', 'u2'], 'with u1 on A and B, u2 on B');
    await sentinel(B, name, { 'u1 on A': chA, 'u2 on B': chB, 'u1 on B': chB2 });
    assert.deepEqual(memberChanges(u1OnA.frames, name), ['added:u2'], 'u1 on A: no member_added for u1 on B');
    assert.deepEqual(memberChanges(u2OnB.frames, name), [], 'u2 on B: no member_added for u1 on B');
    assert.deepEqual(memberChanges(u1OnB.frames, name), [], "u1's second connection: no member changes");

    // u1 leaves A, but is still on B: no member_removed.
    const countBefore = (await channelInfo(A, name)).subscription_count;
    u1OnA.disconnect();
    await poll(
      `node A to count u1's connection on A as gone (subscription_count was ${countBefore})`,
      async () => (await channelInfo(A, name)).subscription_count,
      (count) => count !== countBefore,
    );
    // A fleet-wide query through A, then a sentinel through A: a member_removed that A decided
    // to send after asking the others would have been published before it.
    await assertUsers([A], name, ['u1', 'u2'], 'after u1 left A (u1 is still on B)');
    await sentinel(A, name, { 'u2 on B': chB, 'u1 on B': chB2 });
    assert.deepEqual(memberChanges(u2OnB.frames, name), [], 'u2 on B: no member_removed while u1 is on B');
    assert.deepEqual(memberChanges(u1OnB.frames, name), [], "u1's connection on B: no member_removed");
    assert.equal((await channelInfo(C, name, 'user_count')).user_count, 2, 'user_count on C after u1 left A');
    await assertUsers([B, C], name, ['u1', 'u2'], 'after u1 left A (u1 is still on B)');

    // A watcher on C, then u1's last connection leaves: member_removed reaches B and C once.
    const u3OnC = await loggedPusher(C, { presence: u3 });
    const u3Added = labelled('u2 on B', waitFor(chB, 'pusher:member_added'));
    const { channel: chC } = await subscribe(u3OnC, name);
    assert.equal(chC.members.count, 3, 'u3 on C sees u1, u2 and u3');
    assert.deepEqual(await u3Added, { id: 'u3', info: u3.user_info });

    const removedOnB = labelled('u2 on B', waitFor(chB, 'pusher:member_removed'));
    const removedOnC = labelled('u3 on C', waitFor(chC, 'pusher:member_removed'));
    u1OnB.disconnect();
    assert.deepEqual(await removedOnB, { id: 'u1', info: u1.user_info }, 'member_removed for u1 reaches u2 on B');
    assert.deepEqual(await removedOnC, { id: 'u1', info: u1.user_info }, 'member_removed for u1 reaches u3 on C');
    await sentinel(B, name, { 'u2 on B': chB, 'u3 on C': chC });
    assert.deepEqual(memberChanges(u2OnB.frames, name), ['added:u3', 'removed:u1'], 'u2 on B: every member change, once');
    assert.deepEqual(memberChanges(u3OnC.frames, name), ['removed:u1'], 'u3 on C: member_removed once');
    assert.deepEqual(memberChanges(u1OnA.frames, name), ['added:u2'], 'u1 on A, until it left');
    assert.equal(chB.members.count, 2);
    await assertUsers([A, B, C], name, ['u2', 'u3'], 'after u1 left everywhere');
  });

  it('lists channels of every node in GET /channels, with subscription counts summed over nodes', async () => {
    const tag = uniqueChannel('union-');
    const onlyA = `${tag}-a`;
    const onlyB = `${tag}-b`;
    const both = `${tag}-both`;
    await A.rawSubscribed(onlyA);
    await B.rawSubscribed(onlyB);
    await A.rawSubscribed(both);
    await B.rawSubscribed(both);
    await B.rawSubscribed(both);

    const listed = await listChannels(C);
    assert.deepEqual(listed[onlyA], { subscription_count: 1 }, `${onlyA} in GET /channels on C: ${JSON.stringify(listed)}`);
    assert.deepEqual(listed[onlyB], { subscription_count: 1 }, `${onlyB} in GET /channels on C`);
    assert.deepEqual(listed[both], { subscription_count: 3 }, `${both} in GET /channels on C`);

    assert.deepEqual(
      await listChannels(C, { filter_by_prefix: tag }),
      { [onlyA]: { subscription_count: 1 }, [onlyB]: { subscription_count: 1 }, [both]: { subscription_count: 3 } },
      'GET /channels?filter_by_prefix on C',
    );
    for (const scope of [A, B, C]) {
      assert.deepEqual(
        await channelInfo(scope, both, 'subscription_count'),
        { occupied: true, subscription_count: 3 },
        `GET /channels/${both} on node ${scope.label}`,
      );
    }
    assert.deepEqual(await channelInfo(C, onlyA), { occupied: true, subscription_count: 1 }, `GET /channels/${onlyA} on C`);

    // A presence channel with u1 on A and B and u2 on C: 3 subscriptions of 2 users.
    const presence = `presence-${tag}`;
    await A.rawSubscribed(presence, member('u1'));
    await B.rawSubscribed(presence, member('u1'));
    await C.rawSubscribed(presence, member('u2'));
    assert.deepEqual(
      await listChannels(A, { filter_by_prefix: 'presence-', info: 'user_count' }).then((c) => c[presence]),
      { subscription_count: 3, user_count: 2 },
      'GET /channels?filter_by_prefix=presence-&info=user_count on A',
    );
    assert.deepEqual(
      await channelInfo(B, presence, 'user_count,subscription_count'),
      { occupied: true, subscription_count: 3, user_count: 2 },
      `GET /channels/${presence} on B`,
    );
  });

  it('delivers sendToUser through A to the user on B and C, once each', async () => {
    const onB = await signedInPusher(B, 'v1');
    const onC = await signedInPusher(C, 'v1');
    const other = await signedInPusher(A, 'v0');
    const seenB = record(onB.user, 'notice');
    const seenC = record(onC.user, 'notice');
    const seenOther = record(other.user, 'notice');

    const firstB = labelled('v1 on B', waitFor(onB.user, 'notice'));
    const firstC = labelled('v1 on C', waitFor(onC.user, 'notice'));
    const res = await A.sdk().sendToUser('v1', 'notice', { n: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(await firstB, { n: 1 }, 'v1 on B');
    assert.deepEqual(await firstC, { n: 1 }, 'v1 on C');

    // The second message is the sentinel for duplicates of the first one.
    const secondB = waitFor(onB.user, 'notice', { filter: (d) => d.n === 2 });
    const secondC = waitFor(onC.user, 'notice', { filter: (d) => d.n === 2 });
    await A.sdk().sendToUser('v1', 'notice', { n: 2 });
    await Promise.all([secondB, secondC]);
    const toOther = waitFor(other.user, 'notice');
    await A.sdk().sendToUser('v0', 'notice', { n: 0 });
    await toOther;
    for (const seen of [seenB, seenC, seenOther]) seen.stop();
    assert.deepEqual(seenB, [{ n: 1 }, { n: 2 }], 'v1 on B: each message once');
    assert.deepEqual(seenC, [{ n: 1 }, { n: 2 }], 'v1 on C: each message once');
    assert.deepEqual(seenOther, [{ n: 0 }], 'v0 gets only its own');
  });

  it('closes a user’s connections on A and B with 4009 on terminateUserConnections through C', async () => {
    const onA = await signedInRaw(A, 'v2');
    const onB = await signedInRaw(B, 'v2');
    const bystander = await signedInRaw(B, 'v3');

    const res = await C.sdk().terminateUserConnections('v2');
    assert.equal(res.status, 200);
    assert.equal((await onA.closed()).code, 4009, 'v2 on A');
    assert.equal((await onB.closed()).code, 4009, 'v2 on B');
    await bystander.ping();
    assert.ok(bystander.isOpen, 'v3 on B stays connected');
  });

  it('carries a 90 KB event from A to B intact', async () => {
    const name = uniqueChannel();
    const receiver = await B.rawSubscribed(name);
    const payload = { blob: crypto.randomBytes(45 * 1024).toString('hex'), end: 'the end' };
    const res = await A.sdk().trigger(name, 'big', payload);
    assert.equal(res.status, 200);
    const frame = await receiver.next('big');
    assert.equal(typeof frame.data, 'string');
    assert.equal(frame.data.length, JSON.stringify(payload).length, 'the data arrives at full length');
    assert.ok(frame.data === JSON.stringify(payload), 'the data arrives byte for byte');
  });

  it('gives a new cache- subscriber on B the event cached through A, not pusher:cache_miss', async () => {
    const name = uniqueChannel('cache-');
    const onA = await A.rawSubscribed(name);
    assert.equal((await onA.next()).event, 'pusher:cache_miss', `subscriber on A: ${onA.describeHistory()}`);
    await A.sdk().trigger(name, 'cached', { n: 1 });
    assert.deepEqual(parseData(await onA.next('cached')), { n: 1 });

    const onB = await B.rawSubscribed(name);
    // The cached event comes right after subscription_succeeded.
    const frame = await onB.next();
    assert.deepEqual(
      { event: frame.event, channel: frame.channel },
      { event: 'cached', channel: name },
      `subscriber on B: ${onB.describeHistory()}`,
    );
    assert.deepEqual(parseData(frame), { n: 1 });
  });
});

describe(`${BUS} adapter: a node killed with SIGKILL`, { skip: busSkip() }, () => {
  const cluster = useCluster(['A', 'B']);
  const { A, B } = cluster;

  it('nodes discover each other', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it('removes the members of a killed node after the node timeout', async (t) => {
    const name = uniqueChannel('presence-');
    const u9 = member('u9');
    const watcher = await A.connectedPusher({ presence: member('w') });
    const { channel } = await subscribe(watcher, name);
    const added = labelled('the watcher on A', waitFor(channel, 'pusher:member_added'));
    await B.rawSubscribed(name, u9);
    assert.deepEqual(await added, { id: 'u9', info: u9.user_info }, 'u9 on B is announced on A');
    await assertUsers([A], name, ['u9', 'w'], 'with u9 on B');

    const deadline = NODE_TIMEOUT_MS + 4_000;
    const removed = labelled(
      'the watcher on A after B was killed',
      waitFor(channel, 'pusher:member_removed', { timeout: deadline }),
    );
    const killedAt = Date.now();
    const exit = await B.server.kill('SIGKILL');
    assert.equal(exit.signal, 'SIGKILL');
    assert.deepEqual(await removed, { id: 'u9', info: u9.user_info }, `member_removed for u9 within ${deadline} ms`);
    const took = Date.now() - killedAt;
    t.diagnostic(`member_removed for u9 reached A ${took} ms after B was killed`);
    assert.equal(channel.members.count, 1);

    await poll(
      `GET /channels/${name}/users on A to drop u9 (member_removed came after ${took} ms)`,
      () => userIds(A, name),
      (ids) => ids.length === 1 && ids[0] === 'w',
      { timeout: 2_000 },
    );
    assert.equal(A.server.exitInfo(), null, 'node A is still running');
  });
});

// The rest is about Redis itself.
if (BUS === 'redis') describe('redis adapter: a Redis restart', { skip: redisSkip() }, () => {
  const cluster = useCluster(['A', 'B']);
  const { A, B } = cluster;

  it('nodes discover each other', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it('delivers events from A to B again within 5 s of Redis coming back, with both nodes still up', async (t) => {
    const name = uniqueChannel();
    const subscriber = await B.rawSubscribed(name);
    await A.sdk().trigger(name, 'before', {});
    await subscriber.next('before');

    await cluster.redis.restart();
    const backAt = Date.now();

    // An event every 250 ms until one arrives; the SDK calls are not awaited one by one, since
    // a node may hold a request while it reconnects.
    const sdk = A.sdk({ timeout: 2_000 });
    const outcomes = [];
    let arrived = null;
    for (let n = 1; !arrived; n += 1) {
      if (Date.now() - backAt > 10_000) {
        throw new Error(
          `no event published on A reached B within 10 s of the Redis restart; publish outcomes: ${outcomes.join(', ')}; ` +
            `subscriber on B: ${subscriber.describeHistory()}; node A ${A.server.exitInfo() ? 'exited' : 'running'}, ` +
            `node B ${B.server.exitInfo() ? 'exited' : 'running'}`,
        );
      }
      sdk.trigger(name, 'after', { n }).then(
        (res) => outcomes.push(`${n}:${res.status}`),
        (err) => outcomes.push(`${n}:${err.status ?? err.message}`),
      );
      arrived = await subscriber.next('after', 250).catch(() => null);
    }
    const took = Date.now() - backAt;
    t.diagnostic(`event ${parseData(arrived).n} reached B ${took} ms after Redis was back; publish outcomes: ${outcomes.join(', ')}`);
    assert.ok(took <= 5_000, `the first event (${arrived.data}) reached B ${took} ms after Redis was back; publish outcomes: ${outcomes.join(', ')}`);
    assert.ok(subscriber.isOpen, "B's WebSocket client stayed connected");

    for (const scope of [A, B]) {
      assert.equal(scope.server.exitInfo(), null, `node ${scope.label} is still running`);
      const ready = await httpRequest(`${scope.server.baseUrl}/ready`);
      assert.equal(ready.status, 200, `GET /ready on node ${scope.label}: ${ready.text}`);
    }
  });

  it('answers for the other node again after the Redis restart', async () => {
    const name = uniqueChannel();
    await B.rawSubscribed(name);
    await poll(
      `GET /channels on A to list ${name}, subscribed on B`,
      () => listChannels(A),
      (channels) => channels[name]?.subscription_count === 1,
    );
  });
});

if (BUS === 'redis') describe('redis adapter: cache channels shared in Redis (SOKETI_CACHE_DRIVER=redis)', { skip: redisSkip() }, () => {
  const cluster = useCluster(['A'], { SOKETI_CACHE_DRIVER: 'redis' });
  const { A } = cluster;

  it('gives a subscriber of a node started after the publish the cached event', async () => {
    const name = uniqueChannel('cache-');
    const res = await A.sdk().trigger(name, 'cached', { n: 1 });
    assert.equal(res.status, 200);

    const late = new Scope();
    late.label = 'B (started after the publish)';
    late.server = await startServer(cluster.env);
    try {
      const client = await late.rawSubscribed(name);
      const frame = await client.next();
      assert.deepEqual(
        { event: frame.event, channel: frame.channel },
        { event: 'cached', channel: name },
        `subscriber on the late node: ${client.describeHistory()}`,
      );
      assert.deepEqual(parseData(frame), { n: 1 });
    } catch (err) {
      late.server.dumpLogs('the late node, for a failed test');
      throw err;
    } finally {
      late.closeClients();
      await late.server.stop();
    }
  });
});
