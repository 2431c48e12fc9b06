// Pusher's `subscription_count` (`enableSubscriptionCount`) seen through pusher-js 8's
// `channel.bind('pusher:subscription_count')`, and its webhook, on one node and on three nodes
// over every transport of cluster.mjs's `fleetTransports()` (the Redis adapter, the NATS
// adapter, the cluster adapter on loopback and between network namespaces): the count of the
// whole fleet reaching every node's subscribers, lowered when a connection closes without
// unsubscribing, sent at most once per channel per interval (2 s; the first change at once),
// nothing when the setting is off, and the webhook once for the fleet.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { freePort, uniqueChannel, until, useServer } from './harness.mjs';
import { fleetTransports, useTransportFleet } from './cluster.mjs';
import { startReceiver } from './webhook-receiver.mjs';
import { CUSTOM_HEADERS, assertSingle, hooksEnv } from './webhook-checks.mjs';

// Two intervals and some: the longest a change can wait on a node, plus the fleet's share.
const WAIT = { timeout: 8_000 };
const SINGLE_PORT = await freePort();
const OFF_PORT = await freePort();
const hookUrl = (port) => `http://127.0.0.1:${port}/hook`;
const TYPES = ['subscription_count', 'channel_occupied'];

/** Subscribes `client` to `name` and logs the counts its channel hears. */
async function counting(client, name) {
  const channel = client.subscribe(name);
  const log = [];
  channel.bind('pusher:subscription_count', (data) => log.push(data.subscription_count));
  await new Promise((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', resolve);
    channel.bind('pusher:subscription_error', reject);
  });
  return { channel, log };
}

/** Waits until the last count in `log` is `n`. */
async function lastIs(log, n, what) {
  try {
    await until(() => log.at(-1) === n, { ...WAIT, what });
  } catch (err) {
    throw new Error(`${err.message}: counts ${JSON.stringify(log)}`);
  }
}

/** The counts of the `subscription_count` webhooks about `channel`, in order of arrival. */
const hookCounts = (receiver, channel) =>
  receiver
    .events()
    .filter((e) => e.name === 'subscription_count' && e.channel === channel)
    .map((e) => e.subscription_count);

describe('subscription_count on one node', () => {
  const ctx = { receiver: null };
  const scope = useServer({
    SOKETI_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT: 'true',
    ...hooksEnv([{ url: hookUrl(SINGLE_PORT), event_types: TYPES, headers: CUSTOM_HEADERS }]),
  });
  before(async () => {
    ctx.receiver = await startReceiver({ port: SINGLE_PORT });
  });
  after(() => ctx.receiver?.close());

  it('counts subscribers, lowers the count when a connection closes without unsubscribing, and sends the webhook', async () => {
    const name = uniqueChannel('counted-');
    const first = await counting(await scope.connectedPusher(), name);
    await lastIs(first.log, 1, 'the first subscriber counted at once');
    const secondClient = await scope.connectedPusher();
    const second = await counting(secondClient, name);
    await lastIs(first.log, 2, 'the first subscriber hears of the second');
    await lastIs(second.log, 2, 'the second hears the count');
    assert.equal(first.channel.subscriptionCount, 2, 'pusher-js keeps the count on the channel');
    // Closed, not unsubscribed.
    secondClient.disconnect();
    await lastIs(first.log, 1, 'the count lowered by the closed connection');
    assert.deepEqual(first.log, [1, 2, 1], 'one frame per change');

    const { receiver } = ctx;
    await receiver.waitForEvents({ name: 'subscription_count', channel: name, subscription_count: 1 }, 2, WAIT);
    assert.deepEqual(hookCounts(receiver, name), [1, 2, 1]);
    for (const e of receiver.events().filter((e) => e.name === 'subscription_count' && e.channel === name)) {
      assert.deepEqual(Object.keys(e).filter((k) => k !== 'request').sort(), ['channel', 'name', 'subscription_count']);
      assertSingle(e);
    }
  });

  it('coalesces a join storm into one frame per interval', async () => {
    const name = uniqueChannel('storm-');
    const watcher = await counting(await scope.connectedPusher(), name);
    await lastIs(watcher.log, 1, 'the watcher counted');
    const joiners = await Promise.all(Array.from({ length: 20 }, () => scope.connectedPusher()));
    await Promise.all(joiners.map((c) => counting(c, name)));
    await lastIs(watcher.log, 21, 'the storm counted');
    assert.ok(watcher.log.length <= 3, `at most one frame per interval: ${JSON.stringify(watcher.log)}`);
  });

  it('sends nothing for a presence channel', async () => {
    const name = uniqueChannel('presence-counted-');
    const client = await scope.rawSubscribed(name, { user_id: 'u1' });
    await scope.rawSubscribed(name, { user_id: 'u2' });
    await new Promise((r) => setTimeout(r, 300));
    await client.ping();
    assert.ok(!client.describeHistory().includes('subscription_count'), client.describeHistory());
  });
});

describe('subscription_count under its alias SOKETI_DEFAULT_APP_SUBSCRIPTION_COUNT_ENABLED', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_SUBSCRIPTION_COUNT_ENABLED: 'true' });

  it('is on', async () => {
    const { log } = await counting(await scope.connectedPusher(), uniqueChannel('alias-'));
    await lastIs(log, 1, 'the count');
  });
});

describe('subscription_count is off by default', () => {
  const ctx = { receiver: null };
  const scope = useServer(hooksEnv([{ url: hookUrl(OFF_PORT), event_types: TYPES }]));
  before(async () => {
    ctx.receiver = await startReceiver({ port: OFF_PORT });
  });
  after(() => ctx.receiver?.close());

  it('sends neither the frame nor the webhook', async () => {
    const name = uniqueChannel('uncounted-');
    const first = await scope.rawSubscribed(name);
    await scope.rawSubscribed(name);
    await ctx.receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    // Past the first tick and the settle of the webhooks.
    await new Promise((r) => setTimeout(r, 500));
    await first.ping();
    assert.ok(!first.describeHistory().includes('subscription_count'), first.describeHistory());
    assert.deepEqual(hookCounts(ctx.receiver, name), []);
  });
});

// Three nodes over every transport (cluster.mjs's fleetTransports).
for (const transport of fleetTransports()) describe(`subscription_count over ${transport.title}, three nodes`, { skip: transport.skip }, () => {
  const fleet = useTransportFleet(transport, (receiver) => ({
    SOKETI_DEFAULT_APP_ENABLE_SUBSCRIPTION_COUNT: 'true',
    ...hooksEnv([{ url: receiver.url('/hook'), event_types: TYPES, headers: CUSTOM_HEADERS }]),
  }));

  it('nodes discover each other', () => {
    if (fleet.discovery) throw fleet.discovery;
  });

  it("every node's subscribers hear the fleet's count, lowered when a connection on C closes, and the webhook fires once per change", async () => {
    const { A, B, C } = fleet;
    const name = uniqueChannel('fleet-counted-');
    const onA = await counting(await A.connectedPusher(), name);
    await lastIs(onA.log, 1, 'A alone');
    const onB = await counting(await B.connectedPusher(), name);
    const cClient = await C.connectedPusher();
    const onC = await counting(cClient, name);
    for (const [node, { log }] of [['A', onA], ['B', onB], ['C', onC]]) await lastIs(log, 3, `3 on ${node}`);
    // C's connection closes without unsubscribing: A and B hear 2.
    cClient.disconnect();
    await lastIs(onA.log, 2, 'A hears C leave');
    await lastIs(onB.log, 2, 'B hears C leave');

    const { receiver } = fleet;
    await receiver.waitForEvents({ name: 'subscription_count', channel: name, subscription_count: 2 }, 1, WAIT);
    // Any second sender would have posted by now.
    await new Promise((r) => setTimeout(r, 500));
    const counts = hookCounts(receiver, name);
    assert.equal(counts.at(-1), 2, JSON.stringify(counts));
    assert.equal(counts[0], 1, JSON.stringify(counts));
    for (let i = 1; i < counts.length; i++) {
      assert.notEqual(counts[i], counts[i - 1], `each change once for the fleet: ${JSON.stringify(counts)}`);
    }
    for (const e of receiver.events().filter((e) => e.name === 'subscription_count' && e.channel === name)) assertSingle(e);
  });
});
