// Webhooks: every event type's body and headers, the signature (checked with the official
// `pusher` SDK), filters and event types, batching (and that batches never mix apps, and that
// a filtered body is what gets signed), the delay of channel_vacated/member_removed and its
// cancellation, retries of the sync queue (after a 500, a reset connection and a receiver slower
// than SOKETI_WEBHOOKS_TIMEOUT), and the durable Redis queue across a server restart (delayed
// channel_vacated and member_removed included). That a fleet sends each fleet-wide event once is
// part of the fleet suite (fleet-suite.mjs), over every adapter.
//
// Each `describe` starts a webhook receiver (webhook-receiver.mjs) and the server(s) posting to
// it; tests share the receiver and use their own channel names, so they only look at the
// events of their channels. channel_vacated and member_removed are delayed by
// SOKETI_WEBHOOKS_VACATED_DELAY=200 ms here. To show that something does NOT arrive, a test
// makes a sentinel event that must arrive after it (a sentinel channel left at the same moment,
// whose channel_vacated comes when the unwanted one would have), then checks what arrived.
// No test waits for time to pass: a receiver "down" is one that resets each connection
// (`refusing`), so that the failed attempts it waits for are seen; and a duplicate from the Redis
// queue's retries (or an attempt after the last one) has no sentinel to come before, so those
// tests wait until the queue's lists in Redis are empty, after which no attempt can follow.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { APP, Scope, parseData, startServer, subscribeData, uniqueChannel, until, writeConfig } from './harness.mjs';
import { redisCommands, redisSkip, startRedis } from './redis.mjs';
import { startReceiver, useServersAndReceiver } from './webhook-receiver.mjs';
import {
  CUSTOM_HEADERS,
  DEFAULT_APP,
  assertSingle,
  assertWebhookRequest,
  channelTags,
  countBy,
  dumpRequests,
  hooksEnv,
  sdkValid,
  subscribeMany,
  tags,
} from './webhook-checks.mjs';

const VACATED_DELAY_MS = 200;
const QUEUE_BACKOFF_MS = 100;
const BATCHING_DURATION_MS = 300;
const ALL_TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss'];

/** The server settings every webhook test uses. */
const BASE_ENV = Object.freeze({
  SOKETI_WEBHOOKS_VACATED_DELAY: String(VACATED_DELAY_MS),
  SOKETI_QUEUE_BACKOFF: String(QUEUE_BACKOFF_MS),
  SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/**
 * Registers suite hooks that start a webhook receiver, then a server configured by
 * `setup(receiver)` (which returns `{ env, options }`), and stop both at the end. Returns
 * `{ receiver, scope }`. Clients are closed after each test; when a test fails, the server's
 * output and the requests received during the test follow the failure.
 */
function useHooked(setup) {
  const ctx = { receiver: null, scope: new Scope() };
  let logMark = 0;
  let requestMark = 0;
  before(async () => {
    ctx.receiver = await startReceiver();
    const { env, options = {} } = setup(ctx.receiver);
    ctx.scope.server = await startServer({ ...BASE_ENV, ...env }, options);
  });
  beforeEach(() => {
    logMark = ctx.scope.server?.logMark() ?? 0;
    requestMark = ctx.receiver?.mark() ?? 0;
  });
  afterEach((t) => {
    if (t.passed === false) {
      ctx.scope.server?.dumpLogs(`test "${t.name}" failed`, logMark);
      dumpRequests(ctx.receiver, requestMark, t.name);
    }
    ctx.scope.closeClients();
  });
  after(async () => {
    ctx.scope.closeClients();
    await ctx.scope.server?.stop();
    await ctx.receiver?.close();
  });
  return ctx;
}

/** An event without the `request` the receiver attached to it. */
function bare(event) {
  const { request, ...rest } = event;
  return rest;
}

const member = (id) => ({ user_id: id, user_info: { name: id.toUpperCase() } });

/** Sends a client event on a raw client, then a ping, so that the server has handled it once the pong is back. */
async function sendClientEvent(client, channel, event, data) {
  client.send({ event, channel, data });
  await client.ping();
}

/**
 * Runs `commands` (each an array of words) in one MULTI/EXEC on the redis-server at `port` and
 * resolves with their integer replies, for the lengths of the Redis queue's lists.
 */
async function redisIntegers(port, commands) {
  const replies = await redisCommands(port, [['MULTI'], ...commands, ['EXEC']]);
  const failed = replies.find((r) => r instanceof Error);
  if (failed) throw new Error(`Redis ${JSON.stringify(commands)}: ${failed.message}`);
  return replies.at(-1);
}

/** The jobs of the webhook queue under `prefix` in Redis: `[waiting, processing, delayed]`. */
function queueLengths(redis, prefix) {
  return redisIntegers(redis.port, [
    ['LLEN', `${prefix}queue:webhooks:waiting`],
    ['LLEN', `${prefix}queue:webhooks:processing`],
    ['ZCARD', `${prefix}queue:webhooks:delayed`],
  ]);
}

/** Waits until the webhook queue under `prefix` holds `count` jobs in all (read at once). */
async function queueHolds(redis, prefix, count, what) {
  let last = null;
  try {
    await until(
      async () => {
        last = await queueLengths(redis, prefix);
        return last.reduce((a, b) => a + b, 0) === count;
      },
      { timeout: 10_000, what: `${count} jobs in the Redis queue (${what})` },
    );
  } catch (err) {
    throw new Error(`${err.message}; last seen waiting, processing, delayed: ${last}`);
  }
}

/**
 * Waits until the webhook queue under `prefix` in Redis is empty: no job waiting, being
 * processed or delayed for a retry, so that no attempt can follow. Jobs move between the lists
 * in one atomic command each, except a delayed job that comes due (removed from the delayed set,
 * then pushed to the waiting list); two empty reads in a row, a poll apart, cannot both fall in
 * that gap, since a job is delayed again for at least the backoff.
 */
async function queueDrained(redis, prefix, what) {
  let emptyBefore = false;
  let last = null;
  try {
    await until(
      async () => {
        last = await queueLengths(redis, prefix);
        const empty = last.every((n) => n === 0);
        const twice = empty && emptyBefore;
        emptyBefore = empty;
        return twice;
      },
      { timeout: 15_000, what: `the Redis queue to be empty (${what})` },
    );
  } catch (err) {
    throw new Error(`${err.message}; last seen waiting, processing, delayed: ${last}`);
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Each event type
// ---------------------------------------------------------------------------------------------

describe('webhooks: each event type, without batching (sync queue)', () => {
  const ctx = useHooked((receiver) => ({
    env: hooksEnv([{ url: receiver.url('/hook'), event_types: ALL_TYPES, headers: CUSTOM_HEADERS }]),
  }));

  it('channel_occupied: {name, channel} when the first connection subscribes', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('occ-');
    await scope.rawSubscribed(name);
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    assert.deepEqual(bare(event), { name: 'channel_occupied', channel: name });
    assert.equal(event.request.path, '/hook');
    assertSingle(event);

    // A second subscriber does not occupy it again; a sentinel channel subscribed after it
    // shows that nothing else was sent for it.
    await scope.rawSubscribed(name);
    const sentinel = uniqueChannel('occ-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel });
    assert.deepEqual(channelTags(receiver, name), [`channel_occupied:${name}`]);
  });

  it('channel_vacated: {name, channel} after the last connection leaves, not before the delay', async (t) => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('vac-');
    const client = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    const leftAt = Date.now();
    client.terminate();
    const [event] = await receiver.waitForEvents({ name: 'channel_vacated', channel: name });
    const took = event.request.at - leftAt;
    t.diagnostic(`channel_vacated arrived ${took} ms after the connection was closed`);
    assert.deepEqual(bare(event), { name: 'channel_vacated', channel: name });
    assertSingle(event);
    assert.ok(took >= VACATED_DELAY_MS - 20, `channel_vacated came ${took} ms after the leave, before the ${VACATED_DELAY_MS} ms delay`);
  });

  it('channel_vacated also follows pusher:unsubscribe by a connection that stays open', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('vac-unsub-');
    const client = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    client.send({ event: 'pusher:unsubscribe', data: { channel: name } });
    const [event] = await receiver.waitForEvents({ name: 'channel_vacated', channel: name });
    assert.deepEqual(bare(event), { name: 'channel_vacated', channel: name });
    assertSingle(event);
  });

  it('member_added: {name, channel, user_id} when a user first joins a presence channel', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('presence-added-');
    await scope.rawSubscribed(name, member('alice'));
    const [event] = await receiver.waitForEvents({ name: 'member_added', channel: name });
    assert.deepEqual(bare(event), { name: 'member_added', channel: name, user_id: 'alice' });
    assertSingle(event);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
  });

  it('member_removed: {name, channel, user_id} after the user leaves, not before the delay', async (t) => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('presence-removed-');
    const stays = await scope.rawSubscribed(name, member('stays'));
    const leaves = await scope.rawSubscribed(name, member('leaves'));
    await receiver.waitForEvents({ name: 'member_added', channel: name, user_id: 'leaves' });
    const leftAt = Date.now();
    leaves.terminate();
    const [event] = await receiver.waitForEvents({ name: 'member_removed', channel: name });
    const took = event.request.at - leftAt;
    t.diagnostic(`member_removed arrived ${took} ms after the connection was closed`);
    assert.deepEqual(bare(event), { name: 'member_removed', channel: name, user_id: 'leaves' });
    assertSingle(event);
    assert.ok(took >= VACATED_DELAY_MS - 20, `member_removed came ${took} ms after the leave, before the ${VACATED_DELAY_MS} ms delay`);

    stays.terminate();
    await receiver.waitForEvents({ name: 'member_removed', channel: name, user_id: 'stays' });
    await receiver.waitForEvents({ name: 'channel_vacated', channel: name });
    const counts = countBy(channelTags(receiver, name));
    assert.deepEqual(counts, {
      [`channel_occupied:${name}`]: 1,
      [`member_added:${name}:stays`]: 1,
      [`member_added:${name}:leaves`]: 1,
      [`member_removed:${name}:leaves`]: 1,
      [`member_removed:${name}:stays`]: 1,
      [`channel_vacated:${name}`]: 1,
    });
  });

  it('client_event on a private channel: {name, channel, event, data, socket_id}, no user_id', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('private-client-');
    const sender = await scope.rawSubscribed(name);
    const other = await scope.rawSubscribed(name);
    await sendClientEvent(sender, name, 'client-x', { hello: 'world', n: 1 });
    assert.deepEqual(parseData(await other.next('client-x')), { hello: 'world', n: 1 }, 'the other subscriber gets it');

    const [event] = await receiver.waitForEvents({ name: 'client_event', channel: name });
    assert.deepEqual(bare(event), {
      name: 'client_event',
      channel: name,
      event: 'client-x',
      data: { hello: 'world', n: 1 },
      socket_id: sender.socketId,
    });
    assertSingle(event);
  });

  it('client_event keeps data sent as a JSON string a string', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('private-client-string-');
    const sender = await scope.rawSubscribed(name);
    const text = JSON.stringify({ as: 'text', n: 2 });
    await sendClientEvent(sender, name, 'client-text', text);
    const [event] = await receiver.waitForEvents({ name: 'client_event', channel: name });
    assert.deepEqual(bare(event), { name: 'client_event', channel: name, event: 'client-text', data: text, socket_id: sender.socketId });
    assertSingle(event);
  });

  it('client_event on a presence channel also carries the sender’s user_id', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('presence-client-');
    const sender = await scope.rawSubscribed(name, member('carol'));
    await scope.rawSubscribed(name, member('dave'));
    await sendClientEvent(sender, name, 'client-y', { from: 'carol' });
    const [event] = await receiver.waitForEvents({ name: 'client_event', channel: name });
    assert.deepEqual(bare(event), {
      name: 'client_event',
      channel: name,
      event: 'client-y',
      data: { from: 'carol' },
      socket_id: sender.socketId,
      user_id: 'carol',
    });
    assertSingle(event);
  });

  it('cache_miss: {name, channel} when a cache channel subscriber finds nothing cached, not once something is', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('cache-');
    const first = await scope.rawSubscribed(name);
    assert.equal((await first.next()).event, 'pusher:cache_miss', `the subscriber: ${first.describeHistory()}`);
    const [event] = await receiver.waitForEvents({ name: 'cache_miss', channel: name });
    assert.deepEqual(bare(event), { name: 'cache_miss', channel: name });
    assertSingle(event);

    // Once an event is cached, a new subscriber gets it and no cache_miss is sent.
    await scope.sdk().trigger(name, 'cached', { n: 1 });
    await first.next('cached');
    const second = await scope.rawSubscribed(name);
    assert.equal((await second.next()).event, 'cached', `the second subscriber: ${second.describeHistory()}`);
    const sentinel = uniqueChannel('cache-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'cache_miss', channel: sentinel });
    assert.equal(
      channelTags(receiver, name).filter((tag) => tag.startsWith('cache_miss:')).length,
      1,
      `one cache_miss for ${name}: ${channelTags(receiver, name)}`,
    );
  });

  it('without batching, channel_occupied of 5 channels at once comes as 5 bodies of one event', async () => {
    const { receiver, scope } = ctx;
    const names = Array.from({ length: 5 }, (_, i) => uniqueChannel(`burst-${i}-`));
    const client = await scope.rawConnected();
    await subscribeMany(client, names);
    const events = await Promise.all(names.map((channel) => receiver.waitForEvents({ name: 'channel_occupied', channel })));
    const requests = new Set(events.map(([e]) => e.request));
    assert.equal(requests.size, 5, `5 requests: ${[...requests].map((r) => r.rawBody).join(' | ')}`);
    for (const [event] of events) assertSingle(event);
  });
});


// ---------------------------------------------------------------------------------------------
// 5. The delay of channel_vacated and member_removed
// ---------------------------------------------------------------------------------------------

describe(`webhooks: channel_vacated and member_removed wait ${VACATED_DELAY_MS} ms and are cancelled by a return`, () => {
  const ctx = useHooked((receiver) => ({
    env: hooksEnv([{ url: receiver.url('/hook'), event_types: ALL_TYPES, headers: CUSTOM_HEADERS }]),
  }));

  /**
   * A sentinel channel, occupied now; `leave()` terminates its connection and `vacated()` waits
   * for its channel_vacated, which comes when a vacated of a channel left at the same moment would.
   */
  async function sentinelChannel(scope, receiver) {
    const name = uniqueChannel('sentinel-');
    const client = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    return {
      name,
      leave: () => client.terminate(),
      unsubscribe: () => client.send({ event: 'pusher:unsubscribe', data: { channel: name } }),
      vacated: () => receiver.waitForEvents({ name: 'channel_vacated', channel: name }, 1, { what: `the sentinel's channel_vacated (${name})` }),
    };
  }

  it('unsubscribe and subscribe again within the delay: neither channel_vacated nor a second channel_occupied', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('bounce-');
    const client = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    const sentinel = await sentinelChannel(scope, receiver);

    client.send({ event: 'pusher:unsubscribe', data: { channel: name } });
    sentinel.unsubscribe();
    await client.subscribeOk(name);
    await sentinel.vacated();
    assert.deepEqual(channelTags(receiver, name), [`channel_occupied:${name}`], 'a quick return is invisible');

    // Leaving for longer than the delay: channel_vacated, once.
    client.terminate();
    await receiver.waitForEvents({ name: 'channel_vacated', channel: name });
    const second = await sentinelChannel(scope, receiver);
    second.leave();
    await second.vacated();
    assert.deepEqual(channelTags(receiver, name), [`channel_occupied:${name}`, `channel_vacated:${name}`]);
  });

  it('a connection that drops and a new one that subscribes within the delay: nothing is sent', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('reconnect-');
    const before = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    const sentinel = await sentinelChannel(scope, receiver);
    const after = await scope.rawConnected();

    before.terminate();
    sentinel.leave();
    await after.subscribeOk(name);
    await sentinel.vacated();
    assert.deepEqual(channelTags(receiver, name), [`channel_occupied:${name}`], 'a quick reconnect is invisible');
  });

  it('leaving for longer than the delay: channel_vacated once; a later subscriber occupies it again', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('leave-');
    const first = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name });
    first.terminate();
    await receiver.waitForEvents({ name: 'channel_vacated', channel: name });

    const again = await scope.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 2);
    again.terminate();
    await receiver.waitForEvents({ name: 'channel_vacated', channel: name }, 2);

    const sentinel = await sentinelChannel(scope, receiver);
    sentinel.leave();
    await sentinel.vacated();
    assert.deepEqual(channelTags(receiver, name), [
      `channel_occupied:${name}`,
      `channel_vacated:${name}`,
      `channel_occupied:${name}`,
      `channel_vacated:${name}`,
    ]);
  });

  it('a presence user who leaves and comes back within the delay: no member_removed, no second member_added', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('presence-bounce-');
    await scope.rawSubscribed(name, member('watcher'));
    const bouncer = await scope.rawSubscribed(name, member('bouncer'));
    await receiver.waitForEvents({ name: 'member_added', channel: name, user_id: 'bouncer' });
    const sentinel = await sentinelChannel(scope, receiver);
    const back = await scope.rawConnected();

    bouncer.terminate();
    sentinel.leave();
    await back.subscribeOk(name, subscribeData(scope.server, back.socketId, name, member('bouncer')));
    await sentinel.vacated();
    assert.deepEqual(channelTags(receiver, name).sort(), [`channel_occupied:${name}`, `member_added:${name}:bouncer`, `member_added:${name}:watcher`].sort());

    // Gone for good: member_removed once, after the delay.
    back.terminate();
    await receiver.waitForEvents({ name: 'member_removed', channel: name, user_id: 'bouncer' });
    const second = await sentinelChannel(scope, receiver);
    second.leave();
    await second.vacated();
    assert.equal(countBy(channelTags(receiver, name))[`member_removed:${name}:bouncer`], 1, `${channelTags(receiver, name)}`);
  });

  it('a user with two connections: member_added once, member_removed only after the last one leaves', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('presence-twice-');
    const one = await scope.rawSubscribed(name, member('erin'));
    await receiver.waitForEvents({ name: 'member_added', channel: name, user_id: 'erin' });
    const two = await scope.rawSubscribed(name, member('erin'));

    const sentinel = await sentinelChannel(scope, receiver);
    one.terminate();
    sentinel.leave();
    await sentinel.vacated();
    assert.deepEqual(channelTags(receiver, name).sort(), [`channel_occupied:${name}`, `member_added:${name}:erin`].sort(), 'erin is still there');

    two.terminate();
    await receiver.waitForEvents({ name: 'channel_vacated', channel: name });
    const later = await sentinelChannel(scope, receiver);
    later.leave();
    await later.vacated();
    assert.deepEqual(countBy(channelTags(receiver, name)), {
      [`channel_occupied:${name}`]: 1,
      [`member_added:${name}:erin`]: 1,
      [`member_removed:${name}:erin`]: 1,
      [`channel_vacated:${name}`]: 1,
    });
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Signatures
// ---------------------------------------------------------------------------------------------

describe('webhooks: signatures, checked with the official pusher SDK', () => {
  const ctx = useHooked((receiver) => ({
    env: hooksEnv([
      { url: receiver.url('/hook'), event_types: ALL_TYPES, headers: CUSTOM_HEADERS },
      {
        url: receiver.url('/override'),
        event_types: ['channel_occupied'],
        headers: { 'X-Pusher-Key': 'not-the-key', 'x-pusher-signature': 'not-the-signature', 'X-Custom': 'yes' },
        filter: { channel_name_starts_with: 'override-' },
      },
    ]),
  }));

  it('every request of every event type is valid for the SDK with the app secret, and invalid with a wrong one', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const plain = uniqueChannel('sig-');
    const presence = uniqueChannel('presence-sig-');
    const cache = uniqueChannel('cache-sig-');
    const a = await scope.rawSubscribed(plain);
    const b = await scope.rawSubscribed(presence, member('frank'));
    const c = await scope.rawSubscribed(cache);
    await sendClientEvent(b, presence, 'client-sig', { text: 'ünïcødé ✓ "quoted" \\ slash' });
    a.terminate();
    b.terminate();
    c.terminate();
    for (const [name, channel] of [
      ['channel_occupied', plain],
      ['channel_vacated', plain],
      ['member_added', presence],
      ['member_removed', presence],
      ['client_event', presence],
      ['cache_miss', cache],
    ]) {
      await receiver.waitForEvents({ name, channel }, 1, { path: '/hook', since });
    }
    await receiver.waitForEvents({ name: 'channel_vacated', channel: presence }, 1, { since });
    await receiver.waitForEvents({ name: 'channel_vacated', channel: cache }, 1, { since });

    const requests = receiver.accepted(since).filter((r) => r.path === '/hook');
    assert.ok(requests.length >= 8, `at least 8 requests: ${receiver.describe(since)}`);
    const wrongSecret = { ...DEFAULT_APP, secret: 'not-the-secret' };
    const wrongKey = { ...DEFAULT_APP, key: 'not-the-key' };
    for (const request of requests) {
      assertWebhookRequest(request);
      assert.equal(sdkValid(request, wrongSecret), false, `a wrong secret must not validate request #${request.seq}`);
      assert.equal(sdkValid(request, wrongKey), false, `another app key must not validate request #${request.seq}`);
      const tampered = { ...request, rawBody: request.rawBody.replace('"events"', '"events" ') };
      assert.equal(sdkValid(tampered, DEFAULT_APP), false, `a changed body must not validate request #${request.seq}`);
    }
    const clientEvent = receiver.events({ since }).find((e) => e.name === 'client_event' && e.channel === presence);
    assert.deepEqual(clientEvent.data, { text: 'ünïcødé ✓ "quoted" \\ slash' }, 'non-ASCII data survives, and is what was signed');
  });

  it('custom headers cannot replace X-Pusher-Key or X-Pusher-Signature', async () => {
    const { receiver, scope } = ctx;
    const name = uniqueChannel('override-');
    await scope.rawSubscribed(name);
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { path: '/override' });
    assertSingle(event);
    assert.equal(event.request.headers['x-pusher-key'], APP.key);
    assert.notEqual(event.request.headers['x-pusher-signature'], 'not-the-signature');
  });
});

// ---------------------------------------------------------------------------------------------
// 3. Filters and event types
// ---------------------------------------------------------------------------------------------

describe('webhooks: channel filters and event types', () => {
  const ctx = useHooked((receiver) => ({
    env: hooksEnv([
      { url: receiver.url('/both'), event_types: ALL_TYPES, filter: { channel_name_starts_with: 'presence-', channel_name_ends_with: '-room' } },
      { url: receiver.url('/starts'), event_types: ALL_TYPES, filter: { channel_name_starts_with: 'private-' } },
      { url: receiver.url('/ends'), event_types: ALL_TYPES, filter: { channel_name_ends_with: '-room' } },
      { url: receiver.url('/types'), event_types: ['channel_occupied', 'member_removed'] },
    ]),
  }));

  const FILTERS = {
    '/both': (c) => c.startsWith('presence-') && c.endsWith('-room'),
    '/starts': (c) => c.startsWith('private-'),
    '/ends': (c) => c.endsWith('-room'),
  };

  /** Occupies `channel` with two members (or subscribers), sends a client event, and leaves. */
  async function lifecycle(scope, channel) {
    const presence = channel.startsWith('presence-');
    const one = await scope.rawSubscribed(channel, presence ? member('m1') : undefined);
    const two = await scope.rawSubscribed(channel, presence ? member('m2') : undefined);
    if (presence || channel.startsWith('private-')) await sendClientEvent(one, channel, 'client-f', { n: 1 });
    return () => {
      one.terminate();
      two.terminate();
    };
  }

  it('events of channels that do not match a filter never arrive; both filters must match when both are set', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const base = uniqueChannel('');
    const prefixOnly = `presence-${base}-hall`;
    const suffixOnly = `private-${base}-room`;
    const neither = `${base}-lobby`;
    const publicRoom = `${base}-room`;
    const match = `presence-${base}-room`;

    const leaves = [];
    for (const channel of [prefixOnly, suffixOnly, neither, publicRoom]) leaves.push(await lifecycle(scope, channel));
    for (const leave of leaves) leave();

    // The sentinel: the matching channel's whole life, after the others'.
    const leaveMatch = await lifecycle(scope, match);
    const [first] = await receiver.waitForEvents(() => true, 1, { path: '/both', since });
    assert.equal(first.channel, match, `the first event on the /both webhook is one of the sentinel's: ${JSON.stringify(bare(first))}`);
    leaveMatch();
    await receiver.waitForEvents({ name: 'channel_vacated', channel: match }, 1, { path: '/both', since });
    await receiver.waitForEvents({ name: 'member_removed', channel: match }, 2, { path: '/both', since });

    const onBoth = receiver.events({ path: '/both', since });
    assert.deepEqual(
      [...new Set(onBoth.map((e) => e.channel))],
      [match],
      `only ${match} on /both: ${tags(onBoth)}`,
    );
    const names = onBoth.map((e) => e.name).sort();
    assert.deepEqual(
      names,
      ['channel_occupied', 'channel_vacated', 'client_event', 'member_added', 'member_added', 'member_removed', 'member_removed'].sort(),
      `the full life of ${match} on /both: ${tags(onBoth)}`,
    );
    for (const event of onBoth) assertWebhookRequest(event.request, DEFAULT_APP, { headers: {} });

    // The single filters: /starts saw only private-*, /ends only *-room.
    const onStarts = new Set(receiver.events({ path: '/starts', since }).map((e) => e.channel));
    assert.ok(onStarts.has(suffixOnly), `${suffixOnly} on /starts: ${[...onStarts]}`);
    for (const channel of [prefixOnly, neither, publicRoom, match]) assert.ok(!onStarts.has(channel), `${channel} must not reach /starts`);
    for (const channel of [suffixOnly, publicRoom, match]) {
      await receiver.waitForEvents({ name: 'channel_vacated', channel }, 1, { path: '/ends', since });
    }
    const onEndsNow = new Set(receiver.events({ path: '/ends', since }).map((e) => e.channel));
    for (const channel of [prefixOnly, neither]) assert.ok(!onEndsNow.has(channel), `${channel} must not reach /ends: ${[...onEndsNow]}`);
  });

  it('event types a webhook does not list never arrive at it', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const presence = uniqueChannel('presence-types-');
    const cache = uniqueChannel('cache-types-');
    const a = await scope.rawSubscribed(presence, member('gina'));
    const b = await scope.rawSubscribed(presence, member('hank'));
    await sendClientEvent(a, presence, 'client-t', { n: 1 });
    const c = await scope.rawSubscribed(cache);
    b.terminate();
    c.terminate();
    await receiver.waitForEvents({ name: 'member_removed', channel: presence, user_id: 'hank' }, 1, { path: '/types', since });
    a.terminate();
    await receiver.waitForEvents({ name: 'member_removed', channel: presence, user_id: 'gina' }, 1, { path: '/types', since });

    // The sentinel: a channel occupied after everything above.
    const sentinel = uniqueChannel('types-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel }, 1, { path: '/types', since });
    const seen = tags(receiver.events({ path: '/types', since }).filter((e) => [presence, cache, sentinel].includes(e.channel)));
    assert.deepEqual(
      seen.sort(),
      [
        `channel_occupied:${presence}`,
        `channel_occupied:${cache}`,
        `member_removed:${presence}:hank`,
        `member_removed:${presence}:gina`,
        `channel_occupied:${sentinel}`,
      ].sort(),
      'only channel_occupied and member_removed reach /types',
    );
    const last = receiver.events({ path: '/types', since }).at(-1);
    assert.deepEqual(bare(last), { name: 'channel_occupied', channel: sentinel }, 'the sentinel is the last thing received');
  });

  it('over the whole block, no filtered webhook got an event of a channel outside its filter', () => {
    const { receiver } = ctx;
    for (const [path, accepts] of Object.entries(FILTERS)) {
      const wrong = receiver.events({ path, accepted: false }).filter((e) => !accepts(e.channel));
      assert.deepEqual(tags(wrong), [], `events on ${path} outside its filter`);
    }
    const wrongTypes = receiver.events({ path: '/types', accepted: false }).filter((e) => !['channel_occupied', 'member_removed'].includes(e.name));
    assert.deepEqual(tags(wrongTypes), [], 'events on /types of unlisted types');
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Batching
// ---------------------------------------------------------------------------------------------

const ONE = Object.freeze({ id: 'wh-one-id', key: 'wh-one-key', secret: 'wh-one-secret' });
const TWO = Object.freeze({ id: 'wh-two-id', key: 'wh-two-key', secret: 'wh-two-secret' });

describe(`webhooks: batching (SOKETI_WEBHOOKS_BATCHING_DURATION=${BATCHING_DURATION_MS}), two apps from a config file`, () => {
  const ctx = useHooked((receiver) => {
    const file = writeConfig('webhooks-batching.json', {
      appManager: {
        array: {
          apps: [
            {
              ...ONE,
              enableClientMessages: true,
              webhooks: [
                { url: receiver.url('/batch'), event_types: ALL_TYPES, headers: CUSTOM_HEADERS },
                { url: receiver.url('/batch-filtered'), event_types: ['channel_occupied'], filter: { channel_name_starts_with: 'keep-' } },
              ],
            },
            { ...TWO, enableClientMessages: true, webhooks: [{ url: receiver.url('/batch'), event_types: ALL_TYPES, headers: CUSTOM_HEADERS }] },
          ],
        },
      },
    });
    return {
      env: { SOKETI_WEBHOOKS_BATCHING: 'true', SOKETI_WEBHOOKS_BATCHING_DURATION: String(BATCHING_DURATION_MS) },
      options: { args: ['start', '--config', file] },
    };
  });

  // The app of every channel the tests of this block use, to tell which app a body is for.
  const appOf = new Map();
  const channelsOf = (app, prefix, count) =>
    Array.from({ length: count }, (_, i) => {
      const name = uniqueChannel(`${prefix}-${i}-`);
      appOf.set(name, app);
      return name;
    });

  /**
   * The most bodies a burst of events spread over `spanMs` can fill: a batch collects for
   * BATCHING_DURATION_MS from its first event, so one per duration of the span, plus one for a
   * burst whose ends fall in two batches. Two for a burst within a batch (the usual case), more
   * only for one a busy machine spread out. `spanMs` runs from before the first subscribe to the
   * last subscription's answer, which holds every channel_occupied.
   */
  const mostBodies = (spanMs) => Math.floor(spanMs / BATCHING_DURATION_MS) + 2;

  /** The requests on `path` since `since` that carry an event of one of `channels`. */
  function requestsFor(receiver, channels, { path = '/batch', since = 0 } = {}) {
    const set = new Set(channels);
    return [...new Set(receiver.events({ path, since }).filter((e) => set.has(e.channel)).map((e) => e.request))];
  }

  it('a burst of channel_occupied for 5 channels arrives in one or two bodies (more only for a burst longer than a batch) with all 5 events', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const one = scope.forApp(ONE);
    const names = channelsOf(ONE, 'batch', 5);
    const client = await one.rawConnected();
    const startedAt = Date.now();
    await subscribeMany(client, names);
    const spanMs = Date.now() - startedAt;
    for (const channel of names) await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch', since });

    const requests = requestsFor(receiver, names, { since });
    const most = mostBodies(spanMs);
    t.diagnostic(`${requests.length} bodies for a burst of ${spanMs} ms; the first arrived ${requests[0].at - startedAt} ms after the burst began`);
    assert.ok(requests.length <= most, `at most ${most} bodies, got ${requests.length}: ${requests.map((r) => r.rawBody).join(' | ')}`);
    for (const request of requests) assertWebhookRequest(request, ONE);
    const occupied = requests.flatMap((r) => r.json.events).filter((e) => e.name === 'channel_occupied' && names.includes(e.channel));
    assert.deepEqual(occupied.map((e) => e.channel).sort(), [...names].sort(), 'each channel_occupied once');
  });

  it('batches never mix apps: each body has one app’s events, key and signature', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const namesOne = channelsOf(ONE, 'one', 5);
    const namesTwo = channelsOf(TWO, 'two', 5);
    const clientOne = await scope.forApp(ONE).rawConnected();
    const clientTwo = await scope.forApp(TWO).rawConnected();
    const startedAt = Date.now();
    await Promise.all([subscribeMany(clientOne, namesOne), subscribeMany(clientTwo, namesTwo)]);
    const spanMs = Date.now() - startedAt;
    for (const channel of [...namesOne, ...namesTwo]) {
      await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch', since });
    }

    const requests = requestsFor(receiver, [...namesOne, ...namesTwo], { since });
    const most = 2 * mostBodies(spanMs);
    t.diagnostic(`${requests.length} bodies for a burst of ${spanMs} ms`);
    assert.ok(requests.length <= most, `at most ${most / 2} bodies per app, got ${requests.length}: ${requests.map((r) => r.rawBody).join(' | ')}`);
    for (const request of receiver.accepted(since).filter((r) => r.path === '/batch')) {
      const apps = new Set(request.json.events.map((e) => appOf.get(e.channel)));
      assert.equal(apps.size, 1, `a body with events of one app: ${request.rawBody}`);
      const [app] = apps;
      assert.ok(app, `a body with events of channels this block did not make: ${request.rawBody}`);
      assertWebhookRequest(request, app);
      assert.equal(sdkValid(request, app === ONE ? TWO : ONE), false, 'the other app’s credentials do not validate it');
    }
  });

  it('a filtered webhook gets only its events in its bodies, and the signature covers that body', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const keep = channelsOf(ONE, 'keep', 3);
    const drop = channelsOf(ONE, 'drop', 3);
    const client = await scope.forApp(ONE).rawConnected();
    await subscribeMany(client, [keep[0], drop[0], keep[1], drop[1], keep[2], drop[2]]);
    for (const channel of [...keep, ...drop]) {
      await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch', since });
    }
    for (const channel of keep) {
      await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch-filtered', since });
    }
    // Every keep-* event has arrived on /batch-filtered; a drop-* event would have come with them.
    const filtered = receiver.accepted(since).filter((r) => r.path === '/batch-filtered');
    for (const request of filtered) {
      assertWebhookRequest(request, ONE, { headers: {} });
      assert.deepEqual(
        request.json.events.filter((e) => !e.channel.startsWith('keep-')),
        [],
        `only keep-* channels in a /batch-filtered body: ${request.rawBody}`,
      );
      assert.ok(!request.rawBody.includes('drop-'), `the body posted (and signed) is the filtered one: ${request.rawBody}`);
    }
    const got = filtered.flatMap((r) => r.json.events).map((e) => `${e.name}:${e.channel}`);
    assert.deepEqual(got.sort(), keep.map((c) => `channel_occupied:${c}`).sort());
  });
});

// ---------------------------------------------------------------------------------------------
// Retries of the sync queue
// ---------------------------------------------------------------------------------------------

describe('webhooks: the sync queue retries a failed POST', () => {
  const ctx = useHooked((receiver) => ({
    env: hooksEnv([{ url: receiver.url('/hook'), event_types: ['channel_occupied'], headers: CUSTOM_HEADERS }]),
  }));

  it('after two 500 answers, the third attempt delivers the event', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const name = uniqueChannel('retry-500-');
    let refusals = 0;
    receiver.failing = (r) => r.rawBody.includes(name) && (refusals += 1) <= 2;
    await scope.rawSubscribed(name);
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { since, timeout: 15_000 });
    assertSingle(event);
    const attempts = receiver.requests.slice(since).filter((r) => r.rawBody.includes(name));
    t.diagnostic(`attempts at +${attempts.map((r) => r.at - attempts[0].at).join(' ms, +')} ms`);
    assert.deepEqual(
      attempts.map((r) => r.status),
      [500, 500, 200],
      'two failures, then one success, and nothing after it (checked again below)',
    );
    const sentinel = uniqueChannel('retry-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel }, 1, { since });
    assert.equal(receiver.requests.slice(since).filter((r) => r.rawBody.includes(name)).length, 3);
  });

  it('a receiver that resets the connection (down) gets the event once it answers again', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const name = uniqueChannel('retry-down-');
    const carries = (r) => r.rawBody.includes(name);
    receiver.refusing = carries;
    try {
      await scope.rawSubscribed(name);
      // The first attempt, read and then reset: the server has seen it fail.
      await receiver.waitForRequests((r) => carries(r) && r.status === 'reset', 1, { since, what: `a refused attempt for ${name}` });
    } finally {
      receiver.refusing = false;
    }
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { since, timeout: 15_000 });
    assertSingle(event);
    const attempts = receiver.requests.slice(since).filter(carries);
    t.diagnostic(`attempts: ${attempts.map((r) => `${r.status} at +${r.at - attempts[0].at} ms`).join(', ')}`);
    const delivered = attempts.findIndex((r) => r.status === 200);
    assert.ok(delivered >= 1, `refused at least once before the delivery: ${receiver.describe(since)}`);
    assert.deepEqual(
      attempts.slice(0, delivered).map((r) => r.status),
      Array(delivered).fill('reset'),
      'every attempt before the delivery was refused',
    );
    // Nothing after the delivery: a sentinel occupied after it comes after any retry would.
    const sentinel = uniqueChannel('retry-down-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel }, 1, { since });
    assert.equal(receiver.requests.slice(since).filter(carries).length, delivered + 1, `one delivery: ${receiver.describe(since)}`);
  });
});

// ---------------------------------------------------------------------------------------------
// The webhook timeout
// ---------------------------------------------------------------------------------------------

// A prompt answer on loopback takes milliseconds; a second leaves room for a busy machine before
// a prompt answer would count as a timeout too.
const WEBHOOK_TIMEOUT_MS = 1_000;

describe(`webhooks: a receiver slower than SOKETI_WEBHOOKS_TIMEOUT=${WEBHOOK_TIMEOUT_MS} is tried again`, () => {
  const ctx = useHooked((receiver) => ({
    env: {
      SOKETI_WEBHOOKS_TIMEOUT: String(WEBHOOK_TIMEOUT_MS),
      ...hooksEnv([{ url: receiver.url('/hook'), event_types: ['channel_occupied'], headers: CUSTOM_HEADERS }]),
    },
  }));

  it('the first attempt, held without an answer, is given up after the timeout; the retry, answered at once, delivers the event', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const name = uniqueChannel('timeout-');
    const carries = (r) => r.rawBody.includes(name);
    let held = 0;
    receiver.holding = (r) => carries(r) && (held += 1) === 1;
    const subscribedFrom = Date.now();
    try {
      await scope.rawSubscribed(name);
      const [first] = await receiver.waitForRequests((r) => carries(r) && r.status === 'held' && r.closedAt !== undefined, 1, {
        since,
        timeout: WEBHOOK_TIMEOUT_MS + 10_000,
        what: `the held attempt for ${name} to be given up by the server`,
      });
      // The server sent the request after the subscription began, so it cannot have given up on
      // it earlier than the timeout after that.
      const gaveUpAfter = first.closedAt - subscribedFrom;
      t.diagnostic(`the held attempt arrived ${first.at - subscribedFrom} ms and was given up ${gaveUpAfter} ms after the subscription began`);
      assert.ok(gaveUpAfter >= WEBHOOK_TIMEOUT_MS, `given up ${gaveUpAfter} ms after the subscription began, before the ${WEBHOOK_TIMEOUT_MS} ms timeout`);
    } finally {
      receiver.holding = false;
    }
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { since, timeout: 10_000 });
    assertSingle(event);
    const attempts = receiver.requests.slice(since).filter(carries);
    assert.deepEqual(attempts.slice(0, 2).map((r) => r.status), ['held', 200], `a held attempt, then the delivery: ${receiver.describe(since)}`);
    assert.ok(attempts[1].at >= attempts[0].closedAt, 'the retry comes after the server gave up the first attempt');
  });
});

// ---------------------------------------------------------------------------------------------
// 6. The durable Redis queue
// ---------------------------------------------------------------------------------------------

describe('webhooks: the Redis queue (SOKETI_QUEUE_DRIVER=redis)', { skip: redisSkip() }, () => {
  const suite = useServersAndReceiver({ name: 'redis-server', start: startRedis });
  const { start } = suite;
  let queues = 0;

  /**
   * The environment of a server with the Redis queue, posting `types` to `path`. Each test has
   * its own key prefix (`prefix`), so that its queue holds its jobs alone.
   */
  function queueEnv(path, { types = ['channel_occupied'], prefix, ...extra } = {}) {
    return {
      ...BASE_ENV,
      SOKETI_QUEUE_DRIVER: 'redis',
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(suite.service.port),
      SOKETI_DB_REDIS_KEY_PREFIX: prefix,
      ...hooksEnv([{ url: suite.receiver.url(path), event_types: types, headers: CUSTOM_HEADERS }]),
      ...extra,
    };
  }

  function newPrefix() {
    queues += 1;
    return `webhooks-test-${queues}:`;
  }

  for (const mode of ['answers 500', 'resets every connection']) {
    it(`jobs survive a server restart: 5 webhooks while the receiver ${mode}, then each delivered exactly once by the next process`, async (t) => {
      const { receiver, service: redis } = suite;
      const since = receiver.mark();
      const path = mode === 'answers 500' ? '/durable-500' : '/durable-reset';
      const prefix = newPrefix();
      // More attempts than the default 6, so that the time the restart takes cannot use them up.
      const env = queueEnv(path, { prefix, SOKETI_QUEUE_MAX_ATTEMPTS: '10' });
      const first = await start('the first server', env);
      if (mode === 'answers 500') receiver.failing = (r) => r.path === path;
      else receiver.refusing = (r) => r.path === path;

      const names = Array.from({ length: 5 }, (_, i) => uniqueChannel(`durable-${i}-`));
      const client = await first.rawConnected();
      await subscribeMany(client, names);
      // Every job has been tried (and refused) at least once before the server goes.
      await until(
        () => names.every((channel) => receiver.events({ path, since, accepted: false }).some((e) => e.channel === channel)),
        { timeout: 10_000, what: `a failed attempt for each of ${names.join(', ')}; received: ${receiver.describe(since)}` },
      );
      // The 5 jobs are in Redis (which also shows that `queueDrained` below reads the right keys).
      await queueHolds(redis, prefix, 5, `the 5 refused jobs of ${first.label}`);
      const exit = await first.server.stop();
      t.diagnostic(`the first server exited with ${JSON.stringify(exit)} after ${receiver.failed(since).length} refused attempts`);
      assert.equal(exit.code, 0, 'the first server exits cleanly on SIGTERM');
      assert.equal(receiver.accepted(since).length, 0, `nothing was accepted yet: ${receiver.describe(since)}`);

      const second = await start('the second server', env);
      const healthyAt = Date.now();
      receiver.failing = false;
      receiver.refusing = false;
      for (const channel of names) {
        await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path, since, timeout: 10_000 });
      }
      t.diagnostic(`all 5 delivered within ${Date.now() - healthyAt} ms of the second server being ready`);

      // A duplicate would come from a job still queued after its delivery; once the queue is
      // empty, none can.
      await queueDrained(redis, prefix, `the 5 jobs of ${second.label}`);
      const delivered = receiver.events({ path, since }).filter((e) => names.includes(e.channel));
      assert.deepEqual(countBy(delivered.map((e) => e.channel)), Object.fromEntries(names.map((c) => [c, 1])), 'each exactly once');
      for (const event of delivered) assertWebhookRequest(event.request);
    });
  }

  // A client leaves and the server is stopped within the vacated delay (3 s here), while the
  // receiver is down. SIGTERM: the waiting channel_vacated and member_removed are decided and
  // queued before the exit, and the next process delivers all six events once each. SIGKILL:
  // what waited out the delay in the process's memory is lost with it, and nothing else is.
  for (const signal of ['SIGTERM', 'SIGKILL']) {
    it(`${signal} within the vacated delay, receiver down: after a restart, ${signal === 'SIGTERM' ? 'every event arrives exactly once' : 'only the delayed events are lost, the rest arrive once'}`, async (t) => {
      const { receiver, service: redis } = suite;
      const since = receiver.mark();
      const path = `/stopped-in-delay-${signal}`;
      const prefix = newPrefix();
      const types = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'];
      const env = queueEnv(path, { types, prefix, SOKETI_QUEUE_MAX_ATTEMPTS: '10', SOKETI_WEBHOOKS_VACATED_DELAY: '3000' });
      const first = await start('the first server', env);
      receiver.refusing = (r) => r.path === path;

      const name = uniqueChannel('stopped-');
      const room = uniqueChannel('presence-stopped-');
      const client = await first.rawConnected();
      await client.subscribeOk(name);
      await client.subscribeOk(room, subscribeData(first.server, client.socketId, room, member('ann')));
      const queuedFirst = [`channel_occupied:${name}`, `channel_occupied:${room}`, `member_added:${room}:ann`];
      const delayed = [`member_removed:${room}:ann`, `channel_vacated:${room}`, `channel_vacated:${name}`];
      await until(() => queuedFirst.every((tag) => tags(receiver.events({ path, since, accepted: false })).includes(tag)), {
        timeout: 10_000,
        what: `refused attempts for the occupied and added events; received: ${receiver.describe(since)}`,
      });

      client.terminate();
      // Well inside the 3 s delay; whether the server saw the leave or closes the connection
      // itself at shutdown, the channels empty before the process ends.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const exit = signal === 'SIGTERM' ? await first.server.stop() : await first.server.kill('SIGKILL');
      t.diagnostic(`the first server exited with ${JSON.stringify(exit)}`);
      if (signal === 'SIGTERM') assert.equal(exit.code, 0, 'the first server exits cleanly on SIGTERM');
      assert.equal(receiver.accepted(since).length, 0, `nothing was accepted yet: ${receiver.describe(since)}`);

      const second = await start('the second server', env);
      receiver.refusing = false;
      const expected = signal === 'SIGTERM' ? [...queuedFirst, ...delayed] : queuedFirst;
      for (const tag of expected) {
        await receiver.waitForEvents((e) => tags([e])[0] === tag, 1, { path, since, timeout: 10_000, what: tag });
      }
      await queueDrained(redis, prefix, `the jobs of ${name} and ${room} on ${second.label}`);
      const delivered = receiver.events({ path, since }).filter((e) => e.channel === name || e.channel === room);
      assert.deepEqual(countBy(tags(delivered)), Object.fromEntries(expected.map((tag) => [tag, 1])), 'each exactly once, and nothing else');
      for (const event of delivered) assertWebhookRequest(event.request);
    });
  }

  it(`channel_vacated and member_removed wait ${VACATED_DELAY_MS} ms, then go through the queue: refused, kept across a restart, delivered once each`, async (t) => {
    const { receiver, service: redis } = suite;
    const since = receiver.mark();
    const path = '/delayed';
    const prefix = newPrefix();
    const types = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed'];
    const env = queueEnv(path, { types, prefix, SOKETI_QUEUE_MAX_ATTEMPTS: '10' });
    const first = await start('the first server', env);
    receiver.refusing = (r) => r.path === path;

    const name = uniqueChannel('delayed-');
    const room = uniqueChannel('presence-delayed-');
    const client = await first.rawConnected();
    await client.subscribeOk(name);
    await client.subscribeOk(room, subscribeData(first.server, client.socketId, room, member('ann')));
    const expected = [
      `channel_occupied:${name}`,
      `channel_occupied:${room}`,
      `member_added:${room}:ann`,
      `member_removed:${room}:ann`,
      `channel_vacated:${room}`,
      `channel_vacated:${name}`,
    ];
    const refusedTags = () => tags(receiver.events({ path, since, accepted: false }));
    await until(() => expected.slice(0, 3).every((tag) => refusedTags().includes(tag)), {
      timeout: 10_000,
      what: `refused attempts for the occupied and added events; received: ${receiver.describe(since)}`,
    });

    const leftAt = Date.now();
    client.terminate();
    await until(() => expected.every((tag) => refusedTags().includes(tag)), {
      timeout: 10_000,
      what: `refused attempts for every event; received: ${receiver.describe(since)}`,
    });
    // The delayed events were posted (and refused) no earlier than the delay after the leave.
    for (const tag of expected.slice(3)) {
      const firstAttempt = receiver.events({ path, since, accepted: false }).find((e) => tags([e])[0] === tag);
      const after = firstAttempt.request.at - leftAt;
      t.diagnostic(`${tag}: first attempt ${after} ms after the leave`);
      assert.ok(after >= VACATED_DELAY_MS, `${tag} was posted ${after} ms after the leave, before the ${VACATED_DELAY_MS} ms delay`);
    }

    // One job per event, each refused and now in Redis.
    await queueHolds(redis, prefix, expected.length, `the refused jobs of ${first.label}`);
    const exit = await first.server.stop();
    assert.equal(exit.code, 0, 'the first server exits cleanly on SIGTERM');
    assert.equal(receiver.accepted(since).length, 0, `nothing was accepted yet: ${receiver.describe(since)}`);

    // Nothing is left of the channels in the second process: what it sends comes from Redis.
    const second = await start('the second server', env);
    receiver.refusing = false;
    for (const tag of expected) {
      await receiver.waitForEvents((e) => tags([e])[0] === tag, 1, { path, since, timeout: 10_000, what: tag });
    }
    await queueDrained(redis, prefix, `the jobs of ${name} and ${room} on ${second.label}`);
    const delivered = receiver.events({ path, since }).filter((e) => e.channel === name || e.channel === room);
    assert.deepEqual(countBy(tags(delivered)), Object.fromEntries(expected.map((tag) => [tag, 1])), 'each exactly once');
    for (const event of delivered) assertWebhookRequest(event.request);
  });

  it(`a webhook that keeps failing is tried SOKETI_QUEUE_MAX_ATTEMPTS times with exponential backoff from SOKETI_QUEUE_BACKOFF, then dropped with a log line`, async (t) => {
    const { receiver, service: redis } = suite;
    const since = receiver.mark();
    const prefix = newPrefix();
    const scope = await start('the server', queueEnv('/drop', { prefix, SOKETI_QUEUE_MAX_ATTEMPTS: '3' }));
    const name = uniqueChannel('drop-');
    receiver.failing = (r) => r.rawBody.includes(name);
    await scope.rawSubscribed(name);
    const attemptsOf = () => receiver.requests.slice(since).filter((r) => r.rawBody.includes(name));
    await until(() => attemptsOf().length >= 3, { timeout: 10_000, what: `3 attempts for ${name}; received: ${receiver.describe(since)}` });

    await until(
      () =>
        scope.server
          .logs()
          .split('\n')
          .some((line) => (/webhook/i.test(line) || line.includes(receiver.url('/drop'))) && /(drop|gave up|giving up|discard|exhaust|abandon)/i.test(line)),
      { timeout: 5_000, what: `a log line about the dropped webhook; the output: ${scope.server.logs().slice(-4000)}` },
    );
    // Once the queue is empty, the dropped job is nowhere: no attempt can follow.
    await queueDrained(redis, prefix, `after the drop of ${name}`);
    const attempts = attemptsOf();
    const gaps = attempts.slice(1).map((r, i) => r.at - attempts[i].at);
    t.diagnostic(`attempts ${attempts.length}, gaps ${gaps.join(', ')} ms`);
    assert.equal(attempts.length, 3, `exactly 3 attempts: ${receiver.describe(since)}`);
    // Lower bounds: the server posts a retry no earlier than its delay after it heard the
    // failure, which is after the receiver recorded the attempt; a busy machine only adds.
    assert.ok(gaps[0] >= QUEUE_BACKOFF_MS, `the first retry waits ${QUEUE_BACKOFF_MS} ms, waited ${gaps[0]}`);
    assert.ok(gaps[1] >= 2 * QUEUE_BACKOFF_MS, `the second retry waits ${2 * QUEUE_BACKOFF_MS} ms, waited ${gaps[1]}`);
  });
});
