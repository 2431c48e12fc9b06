// Webhooks: every event type's body and headers, the signature (checked with the official
// `pusher` SDK), filters and event types, batching (and that batches never mix apps, and that
// a filtered body is what gets signed), the delay of channel_vacated/member_removed and its
// cancellation, retries of the sync queue and the durable Redis queue across a server restart.
// That a fleet sends each fleet-wide event once is part of the fleet suite (fleet-suite.mjs),
// over every adapter.
//
// Each `describe` starts a webhook receiver (webhook-receiver.mjs) and the server(s) posting to
// it; tests share the receiver and use their own channel names, so they only look at the
// events of their channels. channel_vacated and member_removed are delayed by
// SOKETI_WEBHOOKS_VACATED_DELAY=200 ms here. To show that something does NOT arrive, a test
// makes a sentinel event that must arrive after it (a sentinel channel left at the same moment,
// whose channel_vacated comes when the unwanted one would have), then checks what arrived.
// Three waits are fixed instead: a receiver that is down cannot see the refused attempts it
// waits out, and a duplicate from the Redis queue's retries (or an attempt after the last one)
// has no sentinel to come before, so those tests watch a short window (at most 1.5 s).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import PusherSdk from 'pusher';

import { APP, Scope, parseData, startServer, subscribeData, uniqueChannel, until, writeConfig } from './harness.mjs';
import { redisSkip, startRedis } from './redis.mjs';
import { startReceiver } from './webhook-receiver.mjs';

const VACATED_DELAY_MS = 200;
const QUEUE_BACKOFF_MS = 100;
const BATCHING_DURATION_MS = 300;
const ALL_TYPES = ['channel_occupied', 'channel_vacated', 'member_added', 'member_removed', 'client_event', 'cache_miss'];
const CUSTOM_HEADERS = { 'X-Custom': 'yes' };

/** The server settings every webhook test uses. */
const BASE_ENV = Object.freeze({
  SOKETI_WEBHOOKS_VACATED_DELAY: String(VACATED_DELAY_MS),
  SOKETI_QUEUE_BACKOFF: String(QUEUE_BACKOFF_MS),
  SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
});

const DEFAULT_APP = Object.freeze({ id: APP.appId, key: APP.key, secret: APP.secret });

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

function dumpRequests(receiver, since, name) {
  if (!receiver) return;
  process.stderr.write(`\n----- webhook requests received during "${name}" -----\n  ${receiver.describe(since)}\n-----\n`);
}

/** The webhook list of SOKETI_DEFAULT_APP_WEBHOOKS, as JSON text. */
const hooksEnv = (hooks) => ({ SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify(hooks) });

/** An event without the `request` the receiver attached to it. */
function bare(event) {
  const { request, ...rest } = event;
  return rest;
}

/** `name:channel` of each event, for compact comparisons. */
const tags = (events) => events.map((e) => `${e.name}:${e.channel}${e.user_id === undefined ? '' : `:${e.user_id}`}`);

/** The events of `channel` received on `path` since `since` (accepted requests), as tags. */
function channelTags(receiver, channel, { path = '/hook', since = 0 } = {}) {
  return tags(receiver.events({ path, since }).filter((e) => e.channel === channel));
}

/** Whether the official SDK accepts the request as a webhook of `app` (`{ id, key, secret }`). */
function sdkValid(request, app) {
  const sdk = new PusherSdk({ appId: app.id, key: app.key, secret: app.secret });
  return sdk.webhook({ headers: request.headers, rawBody: request.rawBody }).isValid();
}

function hmacHex(secret, text) {
  return crypto.createHmac('sha256', secret).update(text).digest('hex');
}

/**
 * Asserts what every webhook request of `app` carries: a POST with `Content-Type:
 * application/json`, `X-Pusher-Key` (the app key, once), `X-Pusher-Signature` (the HMAC of the
 * raw body, which the official SDK accepts), the custom headers, and `{ time_ms, events }`.
 */
function assertWebhookRequest(request, app = DEFAULT_APP, { headers = CUSTOM_HEADERS } = {}) {
  const where = `request #${request.seq} on ${request.path}: headers ${JSON.stringify(request.headers)} body ${request.rawBody}`;
  assert.equal(request.method, 'POST', where);
  assert.equal(request.headers['content-type'], 'application/json', `Content-Type; ${where}`);
  assert.equal(request.headers['x-pusher-key'], app.key, `X-Pusher-Key; ${where}`);
  assert.equal(request.headers['x-pusher-signature'], hmacHex(app.secret, request.rawBody), `X-Pusher-Signature; ${where}`);
  assert.equal(sdkValid(request, app), true, `the pusher SDK's webhook(...).isValid(); ${where}`);
  for (const [name, value] of Object.entries(headers)) {
    assert.equal(request.headers[name.toLowerCase()], value, `custom header ${name}; ${where}`);
  }
  assert.ok(request.json && typeof request.json === 'object', `a JSON object body; ${where}`);
  assert.deepEqual(Object.keys(request.json).sort(), ['events', 'time_ms'], `body keys; ${where}`);
  const { time_ms: timeMs, events } = request.json;
  assert.ok(Number.isInteger(timeMs), `time_ms is an integer; ${where}`);
  assert.ok(Math.abs(timeMs - request.at) < 60_000, `time_ms ${timeMs} is about now (${request.at}); ${where}`);
  assert.ok(Array.isArray(events) && events.length >= 1, `a non-empty events array; ${where}`);
}

/** Asserts that the event arrived alone in its body (no batching) and checks that body. */
function assertSingle(event, app = DEFAULT_APP, opts) {
  assertWebhookRequest(event.request, app, opts);
  assert.equal(event.request.json.events.length, 1, `one event per body without batching: ${event.request.rawBody}`);
}

const member = (id) => ({ user_id: id, user_info: { name: id.toUpperCase() } });

/** Sends a client event on a raw client, then a ping, so that the server has handled it once the pong is back. */
async function sendClientEvent(client, channel, event, data) {
  client.send({ event, channel, data });
  await client.ping();
}

/** Subscribes a raw client to several channels at once (frames back to back), then awaits every answer. */
async function subscribeMany(client, channels) {
  for (const channel of channels) client.send({ event: 'pusher:subscribe', data: { channel } });
  for (const channel of channels) {
    const frame = await client.next(
      (f) => f.channel === channel && /^pusher(_internal)?:subscription_(succeeded|error)$/.test(f.event),
    );
    assert.equal(frame.event, 'pusher_internal:subscription_succeeded', `subscription to ${channel}: ${JSON.stringify(frame)}`);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
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

function countBy(list) {
  const counts = {};
  for (const item of list) counts[item] = (counts[item] ?? 0) + 1;
  return counts;
}

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

  /** The requests on `path` since `since` that carry an event of one of `channels`. */
  function requestsFor(receiver, channels, { path = '/batch', since = 0 } = {}) {
    const set = new Set(channels);
    return [...new Set(receiver.events({ path, since }).filter((e) => set.has(e.channel)).map((e) => e.request))];
  }

  it('a burst of channel_occupied for 5 channels arrives in one (at most two) bodies with all 5 events', async (t) => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const one = scope.forApp(ONE);
    const names = channelsOf(ONE, 'batch', 5);
    const client = await one.rawConnected();
    const startedAt = Date.now();
    await subscribeMany(client, names);
    for (const channel of names) await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch', since });

    const requests = requestsFor(receiver, names, { since });
    t.diagnostic(`${requests.length} bodies; the first arrived ${requests[0].at - startedAt} ms after the burst began`);
    assert.ok(requests.length <= 2, `at most 2 bodies, got ${requests.length}: ${requests.map((r) => r.rawBody).join(' | ')}`);
    for (const request of requests) assertWebhookRequest(request, ONE);
    const occupied = requests.flatMap((r) => r.json.events).filter((e) => e.name === 'channel_occupied' && names.includes(e.channel));
    assert.deepEqual(occupied.map((e) => e.channel).sort(), [...names].sort(), 'each channel_occupied once');
  });

  it('batches never mix apps: each body has one app’s events, key and signature', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const namesOne = channelsOf(ONE, 'one', 5);
    const namesTwo = channelsOf(TWO, 'two', 5);
    const clientOne = await scope.forApp(ONE).rawConnected();
    const clientTwo = await scope.forApp(TWO).rawConnected();
    await Promise.all([subscribeMany(clientOne, namesOne), subscribeMany(clientTwo, namesTwo)]);
    for (const channel of [...namesOne, ...namesTwo]) {
      await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path: '/batch', since });
    }

    const requests = requestsFor(receiver, [...namesOne, ...namesTwo], { since });
    assert.ok(requests.length <= 4, `at most 2 bodies per app, got ${requests.length}: ${requests.map((r) => r.rawBody).join(' | ')}`);
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

  it('a receiver that is down (connection refused) gets the event once it is back', async () => {
    const { receiver, scope } = ctx;
    const since = receiver.mark();
    const name = uniqueChannel('retry-down-');
    await receiver.down();
    try {
      await scope.rawSubscribed(name);
      // No request can be seen while the port is closed; give the first attempt time to fail.
      await sleep(300);
    } finally {
      await receiver.up();
    }
    const [event] = await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { since, timeout: 15_000 });
    assertSingle(event);
  });
});

// ---------------------------------------------------------------------------------------------
// 6. The durable Redis queue
// ---------------------------------------------------------------------------------------------

describe('webhooks: the Redis queue (SOKETI_QUEUE_DRIVER=redis)', { skip: redisSkip() }, () => {
  let redis = null;
  let receiver = null;
  const servers = [];
  let logMarks = new Map();
  let requestMark = 0;

  before(async () => {
    redis = await startRedis();
    receiver = await startReceiver();
  });
  beforeEach(() => {
    requestMark = receiver?.mark() ?? 0;
    logMarks = new Map(servers.map((s) => [s.server, s.server.logMark()]));
  });
  afterEach(async (t) => {
    if (t.passed === false) {
      for (const scope of servers) scope.server.dumpLogs(`${scope.label}, test "${t.name}" failed`, logMarks.get(scope.server) ?? 0);
      dumpRequests(receiver, requestMark, t.name);
      if (redis) process.stderr.write(`\n----- redis-server output (port ${redis.port}) -----\n${redis.logs()}\n-----\n`);
    }
    for (const scope of servers.splice(0)) {
      scope.closeClients();
      await scope.server.stop();
    }
    if (receiver) {
      receiver.failing = false;
      await receiver.up();
    }
  });
  after(async () => {
    await receiver?.close();
    await redis?.stop();
  });

  function queueEnv(path, extra = {}) {
    return {
      ...BASE_ENV,
      SOKETI_QUEUE_DRIVER: 'redis',
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(redis.port),
      ...hooksEnv([{ url: receiver.url(path), event_types: ['channel_occupied'], headers: CUSTOM_HEADERS }]),
      ...extra,
    };
  }

  async function start(label, env) {
    const scope = new Scope();
    scope.label = label;
    scope.server = await startServer(env);
    servers.push(scope);
    return scope;
  }

  for (const mode of ['answers 500', 'is down']) {
    it(`jobs survive a server restart: 5 webhooks while the receiver ${mode}, then each delivered exactly once by the next process`, async (t) => {
      const since = receiver.mark();
      const path = mode === 'is down' ? '/durable-down' : '/durable-500';
      // More attempts than the default 6, so that the time the restart takes cannot use them up.
      const env = queueEnv(path, { SOKETI_QUEUE_MAX_ATTEMPTS: '10' });
      const first = await start('the first server', env);
      if (mode === 'is down') await receiver.down();
      else receiver.failing = (r) => r.path === path;

      const names = Array.from({ length: 5 }, (_, i) => uniqueChannel(`durable-${i}-`));
      const client = await first.rawConnected();
      await subscribeMany(client, names);
      if (mode === 'is down') {
        // Refused connections leave no trace here: give the first attempts time to fail.
        await sleep(500);
      } else {
        // Every job has been tried (and refused) at least once before the server goes.
        await until(
          () => names.every((channel) => receiver.events({ path, since, accepted: false }).some((e) => e.channel === channel)),
          { timeout: 10_000, what: `a failed attempt for each of ${names.join(', ')}; received: ${receiver.describe(since)}` },
        );
      }
      const exit = await first.server.stop();
      t.diagnostic(`the first server exited with ${JSON.stringify(exit)} after ${receiver.failed(since).length} refused attempts`);
      assert.equal(exit.code, 0, 'the first server exits cleanly on SIGTERM');
      assert.equal(receiver.accepted(since).length, 0, `nothing was accepted yet: ${receiver.describe(since)}`);

      const second = await start('the second server', env);
      const healthyAt = Date.now();
      receiver.failing = false;
      await receiver.up();
      for (const channel of names) {
        await receiver.waitForEvents({ name: 'channel_occupied', channel }, 1, { path, since, timeout: 10_000 });
      }
      t.diagnostic(`all 5 delivered within ${Date.now() - healthyAt} ms of the second server being ready`);

      // A sentinel through the second server, then a short observation window: a duplicate would
      // come from a job retried after it was delivered, within the backoff of the last attempts.
      const sentinel = uniqueChannel('durable-sentinel-');
      await second.rawSubscribed(sentinel);
      await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel }, 1, { path, since, timeout: 10_000 });
      await sleep(1_500);
      const delivered = receiver.events({ path, since }).filter((e) => names.includes(e.channel));
      assert.deepEqual(countBy(delivered.map((e) => e.channel)), Object.fromEntries(names.map((c) => [c, 1])), 'each exactly once');
      for (const event of delivered) assertWebhookRequest(event.request);
    });
  }

  it(`a webhook that keeps failing is tried SOKETI_QUEUE_MAX_ATTEMPTS times with exponential backoff from SOKETI_QUEUE_BACKOFF, then dropped with a log line`, async (t) => {
    const since = receiver.mark();
    const scope = await start('the server', queueEnv('/drop', { SOKETI_QUEUE_MAX_ATTEMPTS: '3' }));
    const name = uniqueChannel('drop-');
    receiver.failing = (r) => r.rawBody.includes(name);
    await scope.rawSubscribed(name);
    const attemptsOf = () => receiver.requests.slice(since).filter((r) => r.rawBody.includes(name));
    await until(() => attemptsOf().length >= 3, { timeout: 10_000, what: `3 attempts for ${name}; received: ${receiver.describe(since)}` });

    const mark = scope.server.logMark();
    await until(
      () =>
        scope.server
          .logs()
          .split('\n')
          .some((line) => (/webhook/i.test(line) || line.includes(receiver.url('/drop'))) && /(drop|gave up|giving up|discard|exhaust|abandon)/i.test(line)),
      { timeout: 5_000, what: `a log line about the dropped webhook; the output: ${scope.server.logs().slice(-4000)}` },
    );
    // A sentinel posted after the drop, then a window as long as the next backoff would be.
    const sentinel = uniqueChannel('drop-sentinel-');
    await scope.rawSubscribed(sentinel);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: sentinel }, 1, { since });
    await sleep(QUEUE_BACKOFF_MS * 8);
    const attempts = attemptsOf();
    const gaps = attempts.slice(1).map((r, i) => r.at - attempts[i].at);
    t.diagnostic(`attempts ${attempts.length}, gaps ${gaps.join(', ')} ms; log mark ${mark}`);
    assert.equal(attempts.length, 3, `exactly 3 attempts: ${receiver.describe(since)}`);
    assert.ok(gaps[0] >= QUEUE_BACKOFF_MS * 0.8, `the first retry waits about ${QUEUE_BACKOFF_MS} ms, waited ${gaps[0]}`);
    assert.ok(gaps[1] >= QUEUE_BACKOFF_MS * 1.6, `the second retry waits about ${2 * QUEUE_BACKOFF_MS} ms, waited ${gaps[1]}`);
  });
});
