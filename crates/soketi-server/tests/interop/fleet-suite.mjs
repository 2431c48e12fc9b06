// The fleet suite: what several server processes must do to act as one server, whatever carries
// their messages. One suite, parametrised by a transport, run over every adapter and discovery
// mode: the Redis adapter (redis-adapter.test.mjs), NATS (nats-adapter.test.mjs), the cluster
// adapter on loopback (cluster-loopback.test.mjs) and between network namespaces by broadcast,
// multicast and unicast (cluster-netns.test.mjs).
//
// A transport is
//   { title, skip, nodeTimeoutMs, setup(), nodeSpecs(bus, labels, env), teardown(bus), logs(bus) }
// where `skip` is a skip reason or false (as `redisSkip()`), `setup()` starts what the nodes
// share (a redis-server, a nats-server; null for the cluster adapter) and resolves with it,
// `nodeSpecs` returns one `useFleet` spec (`{ label, env, options }`) per label with `env` (the
// suite's settings) merged into each node's environment, `receiverHost` the address the nodes
// reach the webhook receiver at (loopback unless they live in namespaces), and `nodeTimeoutMs`
// how long the transport keeps a silent node.
//
// The nodes A, B and C start one after the other; the suite waits until each lists the others in
// `GET /cluster` and answers for their channels (`awaitDiscovery`). They post the fleet-wide
// webhooks (occupied, vacated, member added and removed) to one receiver. The last test kills C
// with SIGKILL; `extra(fleet, ctx)` registers a transport's own tests after it (they may restart
// C with `fleet.restart(fleet.C)`).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, it } from 'node:test';

import { httpRequest, parseData, record, subscribe, subscribeData, uniqueChannel, until, waitFor, withTimeout } from './harness.mjs';
import {
  awaitDiscovery,
  channelInfo,
  labelled,
  loggedPusher,
  member,
  memberChanges,
  poll,
  sentinel,
  useFleet,
  userIds,
} from './cluster.mjs';
import { startReceiver } from './webhook-receiver.mjs';
import { assertSingle, channelTags, countBy, CUSTOM_HEADERS, dumpRequests, hooksEnv } from './webhook-checks.mjs';

/** How many presence members join at once in the crowd test, and how many times. */
const CROWD = 30;
const CROWD_ROUNDS = 3;

/** The delay of channel_vacated and member_removed webhooks in the suite, ms. */
export const VACATED_DELAY_MS = 200;

const FLEET_TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'];
const HOOK_PATH = '/fleet';

/** The settings of every node of the suite, besides the transport's own. */
function suiteEnv(receiver) {
  return {
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    SOKETI_METRICS_ENABLED: 'true',
    SOKETI_WEBHOOKS_VACATED_DELAY: String(VACATED_DELAY_MS),
    ...hooksEnv([{ url: receiver.url(HOOK_PATH), event_types: FLEET_TYPES, headers: CUSTOM_HEADERS }]),
  };
}

/**
 * A node's `soketi_horizontal_adapter_*` samples of the app `app-id`, by name without the
 * prefix (`resolve_time_count` for the histogram's count).
 */
async function adapterMetrics(scope) {
  const res = await httpRequest(`${scope.server.metricsUrl}/metrics`);
  assert.equal(res.status, 200, `GET /metrics on node ${scope.label}: ${res.text.slice(0, 300)}`);
  const out = {};
  for (const line of res.text.split('\n')) {
    const m = /^soketi_horizontal_adapter_(\w+)\{([^}]*)\}\s+(\S+)/.exec(line);
    if (m && /app_id="app-id"/.test(m[2]) && !m[1].endsWith('_bucket')) out[m[1]] = Number(m[3]);
  }
  return out;
}

/** `GET /apps/<id>/channels` on a node: the `channels` object. */
async function listChannels(scope, params = {}) {
  const res = await scope.sdk().get({ path: '/channels', params });
  return (await res.json()).channels;
}

/** Asserts that `GET .../users` on each node lists exactly `expected`, each once. */
async function assertUsers(nodes, channel, expected, when) {
  for (const scope of nodes) {
    assert.deepEqual(await userIds(scope, channel), [...expected].sort(), `GET /channels/${channel}/users on node ${scope.label} ${when}`);
  }
}

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client, timeout) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'), timeout);
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

/** Registers the fleet suite over `transport` (see the top of this file). */
export function fleetSuite(transport, { extra } = {}) {
  describe(`${transport.title}: three nodes act as one server`, { skip: transport.skip }, () => {
    const ctx = { bus: null, receiver: null, requestMark: 0 };
    const fleet = useFleet(() => transport.nodeSpecs(ctx.bus, ['A', 'B', 'C'], suiteEnv(ctx.receiver)), {
      setup: async () => {
        ctx.receiver = await startReceiver({ host: transport.receiverHost ?? '127.0.0.1' });
        ctx.bus = await transport.setup();
      },
      settle: (f) => awaitDiscovery(f.nodes),
      teardown: async () => {
        await transport.teardown?.(ctx.bus);
        await ctx.receiver?.close();
      },
      onFailure: (_, t) => {
        dumpRequests(ctx.receiver, ctx.requestMark, t.name);
        const logs = ctx.bus && transport.logs?.(ctx.bus);
        if (logs) process.stderr.write(`\n----- ${transport.title}: the bus's output -----\n${logs}\n-----\n`);
      },
    });
    const node = (label) => fleet[label];

    /** A sentinel channel on `scope`: `leave()` it, then `vacated()` waits for its channel_vacated. */
    async function sentinelChannel(scope) {
      const name = uniqueChannel(`sentinel-${scope.label}-`);
      const client = await scope.rawSubscribed(name);
      await ctx.receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { path: HOOK_PATH });
      return {
        leave: () => client.terminate(),
        vacated: () =>
          ctx.receiver.waitForEvents({ name: 'channel_vacated', channel: name }, 1, { path: HOOK_PATH, what: `the sentinel's channel_vacated (${name})` }),
      };
    }
    const hookTags = (name) => channelTags(ctx.receiver, name, { path: HOOK_PATH });
    const waitHook = (match) => ctx.receiver.waitForEvents(match, 1, { path: HOOK_PATH });

    it('nodes discover each other: each lists the others in GET /cluster and answers for their channels', () => {
      ctx.requestMark = ctx.receiver.mark();
      if (fleet.discovery) throw fleet.discovery;
    });

    it('delivers SDK events published on A to subscribers on A, B and C exactly once each, in order', async () => {
      const N = 20;
      const name = uniqueChannel();
      const subscribers = [];
      for (const scope of fleet.nodes) {
        const client = await scope.connectedPusher();
        const { channel } = await subscribe(client, name);
        const done = labelled(`the subscriber on node ${scope.label}`, waitFor(channel, 'done'));
        done.catch(() => {});
        subscribers.push({ label: scope.label, seen: record(channel, 'seq'), done });
      }
      const sdk = node('A').sdk();
      for (let n = 1; n <= N; n += 1) assert.equal((await sdk.trigger(name, 'seq', { n })).status, 200);
      await sdk.trigger(name, 'done', {});
      const expected = Array.from({ length: N }, (_, i) => i + 1);
      for (const { label, seen, done } of subscribers) {
        await done.catch((err) => {
          err.message += `; the seq events it got: ${JSON.stringify(seen.map(([data]) => data?.n))}`;
          throw err;
        });
        seen.stop();
        // pusher-js calls channel callbacks with (data, metadata), so `record` keeps both.
        assert.deepEqual(seen.map(([data]) => data?.n), expected, `the subscriber on node ${label} gets 1..${N} once each, in order`);
      }
    });

    it('honours socket_id exclusion for a socket on another node', async () => {
      const [A, B, C] = fleet.nodes;
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
      const [A, B, C] = fleet.nodes;
      const name = uniqueChannel('private-');
      const { channel: sent } = await subscribe(await A.connectedPusher(), name);
      const { channel: gotB } = await subscribe(await B.connectedPusher(), name);
      const { channel: gotC } = await subscribe(await C.connectedPusher(), name);
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
      const [A, B, C] = fleet.nodes;
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
      await assertUsers(fleet.nodes, name, ['u1', 'u2'], 'with u1 on A and u2 on B');

      // u1's second connection, on B: no member_added anywhere, user_count stays 2.
      const u1OnB = await loggedPusher(B, { presence: u1 });
      const { channel: chB2 } = await subscribe(u1OnB, name);
      assert.equal(chB2.members.count, 2, `u1's second connection sees u1 and u2; members: ${JSON.stringify(chB2.members.members)}`);
      const counted = await channelInfo(C, name, 'user_count');
      assert.equal(counted.user_count, 2, `GET /channels/${name}?info=user_count on C: ${JSON.stringify(counted)}`);
      await assertUsers(fleet.nodes, name, ['u1', 'u2'], 'with u1 on A and B, u2 on B');
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
      // A hears of u1's leave over its own link from B, which nothing here waited for: the fleet
      // converges, and each node then answers without u1.
      for (const scope of fleet.nodes) {
        await poll(`GET /channels/${name}/users on node ${scope.label} to drop u1, which left everywhere`, () => userIds(scope, name), (ids) => JSON.stringify(ids) === JSON.stringify(['u2', 'u3']));
      }
    });

    it("counts the requests between nodes under soketi's horizontal_adapter_* metrics", async () => {
      const [A, B] = fleet.nodes;
      const tag = uniqueChannel('counted-');
      await B.rawSubscribed(tag);
      const before = await Promise.all(fleet.nodes.map(adapterMetrics));
      const listed = await listChannels(A);
      assert.deepEqual(listed[tag], { subscription_count: 1 }, `${tag} in GET /channels on A`);
      // A asked B and C once, both answered, and the request resolved complete; B and C count
      // the request they answered. Other tests' requests may add to these, never take away.
      const grew = (after, i, name, by) => (after[i][name] ?? 0) - (before[i][name] ?? 0) >= by;
      const after = await poll(
        'the horizontal_adapter_* metrics of A, B and C to count the GET /channels on A',
        () => Promise.all(fleet.nodes.map(adapterMetrics)),
        (m) =>
          grew(m, 0, 'sent_requests', 1) &&
          grew(m, 0, 'received_responses', 2) &&
          grew(m, 0, 'resolved_promises', 1) &&
          grew(m, 0, 'resolve_time_count', 1) &&
          grew(m, 1, 'received_requests', 1) &&
          grew(m, 2, 'received_requests', 1),
      );
      assert.equal(after[0].uncomplete_promises ?? 0, before[0].uncomplete_promises ?? 0, 'no request of A timed out');
      assert.ok(after[0].resolve_time_sum > (before[0].resolve_time_sum ?? 0), `A's resolve time grew: ${JSON.stringify(after[0])}`);
    });

    it('lists channels of every node in GET /channels, with subscription counts summed over nodes', async () => {
      const [A, B, C] = fleet.nodes;
      const tag = uniqueChannel('union-');
      const [onlyA, onlyB, both] = [`${tag}-a`, `${tag}-b`, `${tag}-both`];
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
      for (const scope of fleet.nodes) {
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
      const [A, B, C] = fleet.nodes;
      const onB = await signedInPusher(B, 'v1');
      const onC = await signedInPusher(C, 'v1');
      const other = await signedInPusher(A, 'v0');
      const seenB = record(onB.user, 'notice');
      const seenC = record(onC.user, 'notice');
      const seenOther = record(other.user, 'notice');
      const firstB = labelled('v1 on B', waitFor(onB.user, 'notice'));
      const firstC = labelled('v1 on C', waitFor(onC.user, 'notice'));
      assert.equal((await A.sdk().sendToUser('v1', 'notice', { n: 1 })).status, 200);
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
      const [A, B, C] = fleet.nodes;
      const onA = await signedInRaw(A, 'v2');
      const onB = await signedInRaw(B, 'v2');
      const bystander = await signedInRaw(B, 'v3');
      assert.equal((await C.sdk().terminateUserConnections('v2')).status, 200);
      assert.equal((await onA.closed()).code, 4009, 'v2 on A');
      assert.equal((await onB.closed()).code, 4009, 'v2 on B');
      await bystander.ping();
      assert.ok(bystander.isOpen, 'v3 on B stays connected');
    });

    it('carries a 90 KB event from A to B intact', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel();
      const receiver = await B.rawSubscribed(name);
      const payload = { blob: crypto.randomBytes(45 * 1024).toString('hex'), end: 'the end' };
      assert.equal((await A.sdk().trigger(name, 'big', payload)).status, 200);
      const frame = await receiver.next('big');
      assert.equal(typeof frame.data, 'string');
      assert.equal(frame.data.length, JSON.stringify(payload).length, 'the data arrives at full length');
      assert.ok(frame.data === JSON.stringify(payload), 'the data arrives byte for byte');
    });

    it('gives a new cache- subscriber on B the event cached through A, not pusher:cache_miss', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('cache-');
      const onA = await A.rawSubscribed(name);
      assert.equal((await onA.next()).event, 'pusher:cache_miss', `subscriber on A: ${onA.describeHistory()}`);
      // A subscriber already on B shows when the event has reached B (the publish answers once
      // A has it; B gets it a moment later, over the bus).
      const watcherOnB = await B.rawSubscribed(name);
      await A.sdk().trigger(name, 'cached', { n: 1 });
      assert.deepEqual(parseData(await onA.next('cached')), { n: 1 });
      assert.deepEqual(parseData(await watcherOnB.next('cached')), { n: 1 });
      const onB = await B.rawSubscribed(name);
      // The cached event comes right after subscription_succeeded.
      const frame = await onB.next();
      assert.deepEqual({ event: frame.event, channel: frame.channel }, { event: 'cached', channel: name }, `subscriber on B: ${onB.describeHistory()}`);
      assert.deepEqual(parseData(frame), { n: 1 });
    });

    it(`presence: ${CROWD} members joining at once over the nodes, then half leaving while others join, all end with the fleet's members (${CROWD_ROUNDS} rounds)`, async () => {
      for (let round = 1; round <= CROWD_ROUNDS; round += 1) {
        const name = uniqueChannel(`presence-crowd-${round}-`);
        const ids = (from, to) => Array.from({ length: to - from }, (_, i) => `c${from + i}`);
        const open = async (id, i) => {
          const client = await loggedPusher(fleet.nodes[i % fleet.nodes.length], { presence: member(id) });
          return { id, client };
        };
        // Everyone connects first, then all subscribe at the same moment.
        let crowd = await Promise.all(ids(0, CROWD).map(open));
        await Promise.all(crowd.map(({ client }) => subscribe(client, name, 10_000)));
        await assertCrowd(crowd, name, ids(0, CROWD), `round ${round}, after ${CROWD} joined at once`);

        // Half leave while as many others join, at the same moment.
        const half = CROWD / 2;
        const [leaving, staying] = [crowd.slice(0, half), crowd.slice(half)];
        const joining = await Promise.all(ids(CROWD, CROWD + half).map((id, i) => open(id, i + 1)));
        for (const { client } of leaving) client.disconnect();
        await Promise.all(joining.map(({ client }) => subscribe(client, name, 10_000)));
        crowd = [...staying, ...joining];
        await assertCrowd(crowd, name, ids(half, CROWD + half), `round ${round}, after ${half} left while ${half} joined`);
        for (const { client } of crowd) client.disconnect();
      }
    });

    /**
     * Waits until every client of `crowd` shows exactly `expected` as the channel's members
     * (pusher-js's own list), then checks what each heard: no member event before its
     * subscription_succeeded, nobody added twice, and the list plus the changes after it
     * giving `expected`; and that GET .../users on every node says the same.
     */
    async function assertCrowd(crowd, name, expected, when) {
      const want = [...expected].sort();
      const shown = (client) => {
        const ids = [];
        client.channel(name).members.each((m) => ids.push(m.id));
        return ids.sort();
      };
      await until(() => crowd.every(({ client }) => JSON.stringify(shown(client)) === JSON.stringify(want)), {
        timeout: 15_000,
        what: `every client to show the ${want.length} members ${when}; ` +
          crowd.filter(({ client }) => JSON.stringify(shown(client)) !== JSON.stringify(want)).map(({ id, client }) => `${id} shows ${shown(client).length}`).join(', '),
      });
      for (const { id, client } of crowd) {
        const frames = client.frames.filter((f) => f.channel === name && /^pusher_internal:(subscription_succeeded|member_added|member_removed)$/.test(f.event));
        assert.equal(frames[0]?.event, 'pusher_internal:subscription_succeeded', `${id} ${when}: its first presence frame: ${JSON.stringify(frames.slice(0, 3))}`);
        let members = new Set(parseData(frames[0]).presence.ids);
        for (const frame of frames.slice(1)) {
          const user = parseData(frame).user_id;
          if (frame.event === 'pusher_internal:member_added') {
            assert.ok(!members.has(user), `${id} ${when}: member_added for ${user}, already in its list`);
            members.add(user);
          } else {
            assert.ok(members.has(user), `${id} ${when}: member_removed for ${user}, not in its list`);
            members.delete(user);
          }
        }
        assert.deepEqual([...members].sort(), want, `${id} ${when}: its list and the changes after it`);
      }
      for (const scope of fleet.nodes) {
        assert.deepEqual(await userIds(scope, name), want, `GET /channels/${name}/users on node ${scope.label} ${when}`);
      }
    }

    // Webhooks: each fleet-wide event is sent once, by one node. To show that something does NOT
    // arrive, a test leaves a sentinel channel at the same moment and waits for its
    // channel_vacated, which comes when the unwanted event would have.

    it('webhooks: a channel with subscribers on A and B gets channel_occupied once, channel_vacated once after the last leaves', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('fleet-');
      const onA = await A.rawSubscribed(name);
      await waitHook({ name: 'channel_occupied', channel: name });
      const onB = await B.rawSubscribed(name);
      // A leaves while B stays: no channel_vacated.
      const first = await sentinelChannel(A);
      onA.terminate();
      first.leave();
      await first.vacated();
      assert.deepEqual(hookTags(name), [`channel_occupied:${name}`], 'still occupied on B');
      onB.terminate();
      await waitHook({ name: 'channel_vacated', channel: name });
      const later = await sentinelChannel(B);
      later.leave();
      await later.vacated();
      assert.deepEqual(hookTags(name), [`channel_occupied:${name}`, `channel_vacated:${name}`]);
      for (const event of ctx.receiver.events({ path: HOOK_PATH }).filter((e) => e.channel === name)) assertSingle(event);
    });

    it('webhooks: first subscriptions on A and B at the same moment give channel_occupied once', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('fleet-race-in-');
      const [onA, onB] = await Promise.all([A.rawConnected(), B.rawConnected()]);
      await Promise.all([onA.subscribeOk(name), onB.subscribeOk(name)]);
      await waitHook({ name: 'channel_occupied', channel: name });
      const later = await sentinelChannel(B);
      later.leave();
      await later.vacated();
      assert.deepEqual(hookTags(name), [`channel_occupied:${name}`]);
    });

    it('webhooks: the last subscribers on A and B leaving at the same moment give channel_vacated once', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('fleet-race-out-');
      const onA = await A.rawSubscribed(name);
      await waitHook({ name: 'channel_occupied', channel: name });
      const onB = await B.rawSubscribed(name);
      const first = await sentinelChannel(B);
      onA.terminate();
      onB.terminate();
      first.leave();
      await first.vacated();
      await waitHook({ name: 'channel_vacated', channel: name });
      const later = await sentinelChannel(A);
      later.leave();
      await later.vacated();
      assert.deepEqual(hookTags(name), [`channel_occupied:${name}`, `channel_vacated:${name}`]);
    });

    it('webhooks: a channel that moves from A to B within the delay is never vacated', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('fleet-move-');
      const onA = await A.rawSubscribed(name);
      await waitHook({ name: 'channel_occupied', channel: name });
      const onB = await B.rawConnected();
      const first = await sentinelChannel(A);
      onA.terminate();
      first.leave();
      await onB.subscribeOk(name);
      await first.vacated();
      assert.deepEqual(hookTags(name), [`channel_occupied:${name}`], 'a quick move is invisible');
    });

    it('webhooks: a presence user on A and B gets member_added once, member_removed once after the last connection leaves', async () => {
      const [A, B] = fleet.nodes;
      const name = uniqueChannel('presence-fleet-');
      const onA = await A.rawSubscribed(name, member('ivy'));
      await waitHook({ name: 'member_added', channel: name, user_id: 'ivy' });
      // B has heard of ivy on A before ivy joins on B: a second connection, not a race of two
      // first ones (the webhook can outrun A's share to B on a loaded machine).
      await until(async () => (await userIds(B, name)).includes('ivy'), { what: `node B to list ivy in ${name}` });
      const onB = await B.rawSubscribed(name, member('ivy'));
      await B.rawSubscribed(name, member('jack'));
      await waitHook({ name: 'member_added', channel: name, user_id: 'jack' });
      // ivy leaves A but is still on B: no member_removed.
      const first = await sentinelChannel(A);
      onA.terminate();
      first.leave();
      await first.vacated();
      assert.deepEqual(
        hookTags(name).sort(),
        [`channel_occupied:${name}`, `member_added:${name}:ivy`, `member_added:${name}:jack`].sort(),
        'ivy is still on B',
      );
      onB.terminate();
      await waitHook({ name: 'member_removed', channel: name, user_id: 'ivy' });
      const later = await sentinelChannel(A);
      later.leave();
      await later.vacated();
      assert.deepEqual(countBy(hookTags(name)), {
        [`channel_occupied:${name}`]: 1,
        [`member_added:${name}:ivy`]: 1,
        [`member_added:${name}:jack`]: 1,
        [`member_removed:${name}:ivy`]: 1,
      });
    });

    it('forgets C, killed with SIGKILL, after the node timeout: member_removed once to the watchers on A and B', async (t) => {
      const [A, B, C] = fleet.nodes;
      const name = uniqueChannel('presence-');
      const alone = uniqueChannel('only-on-C-');
      ctx.killed = { name, alone };
      const watcherA = await loggedPusher(A, { presence: member('wa') });
      const { channel: chA } = await subscribe(watcherA, name);
      // wa reaches B's list over the bus a moment after A answered; a watcher on B that joined
      // before that would hear member_added for wa (legal: in the list or announced after it),
      // which this test does not count.
      await until(async () => (await userIds(B, name)).includes('wa'), { what: `node B to list wa in ${name}` });
      const watcherB = await loggedPusher(B, { presence: member('wb') });
      const { channel: chB } = await subscribe(watcherB, name);
      const added = [chA, chB].map((ch, i) =>
        labelled(`the watcher on ${i ? 'B' : 'A'}`, waitFor(ch, 'pusher:member_added', { filter: (m) => m.id === 'k' })),
      );
      await C.rawSubscribed(name, member('k'));
      await Promise.all(added);
      await waitHook({ name: 'member_added', channel: name, user_id: 'k' });
      await C.rawSubscribed(alone);
      await waitHook({ name: 'channel_occupied', channel: alone });
      await assertUsers([A, B], name, ['k', 'wa', 'wb'], 'with k on C');

      // The node timeout, then one check, then a wide margin for a loaded machine: the bound is
      // about the timeout being honoured, not about speed.
      const deadline = transport.nodeTimeoutMs * 2 + 5_000;
      const removed = [chA, chB].map((ch, i) =>
        labelled(`the watcher on ${i ? 'B' : 'A'} after C was killed`, waitFor(ch, 'pusher:member_removed', { timeout: deadline })),
      );
      const killedAt = Date.now();
      assert.equal((await C.server.kill('SIGKILL')).signal, 'SIGKILL');
      for (const got of await Promise.all(removed)) assert.equal(got.id, 'k');
      t.diagnostic(`member_removed for k reached A and B ${Date.now() - killedAt} ms after C was killed (node timeout ${transport.nodeTimeoutMs} ms)`);
      await sentinel(A, name, { 'the watcher on A': chA, 'the watcher on B': chB });
      await sentinel(B, name, { 'the watcher on A': chA, 'the watcher on B': chB });
      // wb (on B) and k (on C) reach A over two links, in either order; k's removal comes last.
      const changesA = memberChanges(watcherA.frames, name);
      assert.deepEqual([...changesA].sort(), ['added:k', 'added:wb', 'removed:k'], `the watcher on A: each change once: ${changesA}`);
      assert.equal(changesA.at(-1), 'removed:k', `the watcher on A: k removed after it was added: ${changesA}`);
      assert.deepEqual(memberChanges(watcherB.frames, name), ['added:k', 'removed:k'], 'the watcher on B: each change once');
      await assertUsers([A, B], name, ['wa', 'wb'], 'after C was killed');
      for (const scope of [A, B]) assert.equal(scope.server.exitInfo(), null, `node ${scope.label} is still running`);
    });

    it('webhooks: after C was killed, member_removed once for its user and channel_vacated once for the channel only it held', async () => {
      const { name, alone } = ctx.killed ?? {};
      assert.ok(name, 'the test before killed C');
      await waitHook({ name: 'member_removed', channel: name, user_id: 'k' });
      await waitHook({ name: 'channel_vacated', channel: alone });
      // A sentinel channel left now has its channel_vacated after any late duplicate.
      const later = await sentinelChannel(fleet.nodes[0]);
      later.leave();
      await later.vacated();
      assert.deepEqual(
        countBy(hookTags(name)),
        Object.fromEntries(
          [
            `channel_occupied:${name}`,
            ...['wa', 'wb', 'k'].flatMap((id) => [`member_added:${name}:${id}`, `member_removed:${name}:${id}`]),
            // The watchers on A and B were closed after the test before.
            `channel_vacated:${name}`,
          ].map((tag) => [tag, 1]),
        ),
        `the webhooks of ${name}: each once`,
      );
      assert.deepEqual(hookTags(alone), [`channel_occupied:${alone}`, `channel_vacated:${alone}`], `the webhooks of ${alone}, held by C alone`);
      for (const event of ctx.receiver.events({ path: HOOK_PATH }).filter((e) => e.channel === alone || e.channel === name)) assertSingle(event);
    });

    extra?.(fleet, ctx);

    // Last, as it stops a node: of the nodes still running (A and B, or B and C after the
    // cluster's own tests), the second is stopped and the first stays.
    it('webhooks: a node stopped with SIGTERM: channel_vacated once for the channel only it held, none for one shared with a node that stays, and no member_removed for a user back on that node within the delay', async () => {
      const [A, B] = fleet.nodes.filter((scope) => !scope.server.exitInfo());
      assert.ok(A && B, 'two nodes still running');
      const shared = uniqueChannel('shared-with-B-');
      const alone = uniqueChannel('only-on-B-');
      const room = uniqueChannel('presence-leaving-B-');
      await A.rawSubscribed(shared);
      await B.rawSubscribed(shared);
      await B.rawSubscribed(alone);
      const onB = await B.rawSubscribed(room, member('rb'));
      await waitHook({ name: 'channel_occupied', channel: shared });
      await waitHook({ name: 'channel_occupied', channel: alone });
      await waitHook({ name: 'member_added', channel: room, user_id: 'rb' });
      // channel_occupied comes after the fleet's settle time: announced before the room moves.
      await waitHook({ name: 'channel_occupied', channel: room });
      // rb's next connection is open on A before B goes, so that it is back well within the delay.
      const back = await A.rawConnected();

      const stopped = B.server.stop();
      await onB.closed();
      assert.equal(onB.closeCode, 4200, `B asks its clients to reconnect: ${onB.describeHistory()}`);
      await back.subscribeOk(room, subscribeData(A.server, back.socketId, room, member('rb')));
      const exit = await stopped;
      assert.equal(exit.code, 0, 'B exits cleanly on SIGTERM');
      // B decided its delayed events before it exited; a sentinel left on A now has its
      // channel_vacated after any late one.
      const later = await sentinelChannel(A);
      later.leave();
      await later.vacated();
      assert.deepEqual(hookTags(alone), [`channel_occupied:${alone}`, `channel_vacated:${alone}`], `${alone}, held by B alone`);
      assert.deepEqual(hookTags(shared), [`channel_occupied:${shared}`], `${shared} is still occupied on A`);
      assert.deepEqual(hookTags(room).sort(), [`channel_occupied:${room}`, `member_added:${room}:rb`].sort(), `rb came back on A within the delay`);
      for (const event of ctx.receiver.events({ path: HOOK_PATH }).filter((e) => e.channel === alone)) assertSingle(event);
    });
  });
}
