// Per-app limits, each set on its own app in one config file (camelCase fields, and one
// snake_case alias), enforced with soketi's codes: connection limits and disabled apps, client
// messages, presence limits, name and size limits, the three rate limits (1 s windows), and
// the user authentication timeout.
//
// Every app has its own limits and counters, so the tests cannot disturb one another even
// though they share one server. A rate limit must admit its budget and no more: a burst is
// bounded by what the budget allows over the burst's measured span, which is exactly the budget
// for a burst within one window (the usual case) and only more on a machine slow enough to
// spread it out. A timeout is checked from below (never sooner), and what stays open past it is
// shown with a later connection's timeout as the sentinel.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  assertHttpError,
  parseData,
  sdkFailure,
  signedRequest,
  subscribeData,
  uniqueChannel,
  until,
  useServer,
  writeConfig,
} from './harness.mjs';

/** An app named `name` with the given extra fields. */
function app(name, fields = {}) {
  return { id: `${name}-id`, key: `${name}-key`, secret: `${name}-secret`, ...fields };
}

const RATE_LIMIT = 2;
const USER_AUTHENTICATION_TIMEOUT_MS = 500;

const APPS = {
  conns: app('conns', { maxConnections: 2 }),
  connsAlias: app('conns-alias', { max_connections: 1 }),
  disabled: app('disabled', { enabled: false }),
  clientOn: app('client-on', { enableClientMessages: true }),
  clientOff: app('client-off', { enableClientMessages: false }),
  members: app('members', { maxPresenceMembersPerChannel: 2 }),
  memberSize: app('member-size', { maxPresenceMemberSizeInKb: 1 }),
  channelName: app('channel-name', { maxChannelNameLength: 40 }),
  eventChannels: app('event-channels', { maxEventChannelsAtOnce: 2 }),
  eventName: app('event-name', { maxEventNameLength: 20, enableClientMessages: true }),
  payload: app('payload', { maxEventPayloadInKb: 1, enableClientMessages: true }),
  batch: app('batch', { maxEventBatchSize: 2 }),
  backendRate: app('backend-rate', { maxBackendEventsPerSecond: RATE_LIMIT }),
  backendRateChannels: app('backend-rate-channels', { maxBackendEventsPerSecond: RATE_LIMIT }),
  backendRateBatch: app('backend-rate-batch', { maxBackendEventsPerSecond: RATE_LIMIT }),
  clientRate: app('client-rate', { maxClientEventsPerSecond: RATE_LIMIT, enableClientMessages: true }),
  readRate: app('read-rate', { maxReadRequestsPerSecond: RATE_LIMIT }),
  unlimited: app('unlimited', {
    maxConnections: -1,
    maxBackendEventsPerSecond: -1,
    maxClientEventsPerSecond: -1,
    maxReadRequestsPerSecond: -1,
    enableClientMessages: true,
  }),
  userAuth: app('user-auth', { enableUserAuthentication: true }),
};

const alice = { user_id: 'alice', user_info: { name: 'Alice' } };
const bob = { user_id: 'bob', user_info: { name: 'Bob' } };
const carol = { user_id: 'carol', user_info: { name: 'Carol' } };

/** A channel name of exactly `length` characters that no other test uses. */
function channelOfLength(length, prefix = '') {
  const base = uniqueChannel(prefix);
  assert.ok(base.length <= length, `${base} is longer than ${length}`);
  return base + 'x'.repeat(length - base.length);
}

/** Asserts that a raw client got `pusher:error` with `code` and was then closed with it. */
async function assertRefused(client, code) {
  const error = await client.next('pusher:error');
  assert.equal(parseData(error).code, code, `pusher:error code; frames: ${client.describeHistory()}`);
  const { code: closeCode } = await client.closed();
  assert.equal(closeCode, code, `close code; frames: ${client.describeHistory()}`);
}

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
}

/** Publishes one event to `channel` with a raw signed request; resolves with the response. */
function publish(server, channels, name = 'e') {
  const body = Array.isArray(channels) ? { name, channels, data: '{}' } : { name, channel: channels, data: '{}' };
  return signedRequest(server, { path: `/apps/${server.appId}/events`, body });
}

/**
 * Sends `count` requests at once; resolves with their responses in order and `spanMs`, the time
 * from the first send to the last answer, which holds every moment the server checked a budget.
 */
async function burst(count, send) {
  const sentAt = Date.now();
  const responses = await Promise.all(Array.from({ length: count }, () => send()));
  return { responses, spanMs: Date.now() - sentAt };
}

// The HTTP budgets are sliding one-second windows of 10 ms slots: a point leaves the window
// between 990 and 1000 ms after it was taken, so no period shorter than 990 ms holds more than
// the budget.
const WINDOW_HOLDS_MS = 990;

/**
 * The most a sliding window of `limit` per second can admit within `spanMs`: the span cut into
 * periods shorter than WINDOW_HOLDS_MS, a budget each; exactly `limit` for a burst that took
 * less than that (the usual case), more only for a burst a busy machine spread out.
 */
function windowBound(limit, spanMs) {
  return limit * (Math.floor(spanMs / WINDOW_HOLDS_MS) + 1);
}

/**
 * Asserts a burst of a fresh budget of `limit` per second: only 200s and 429s, at least `limit`
 * admitted (nothing was spent before) and at most what the window allows over the burst's span,
 * every 429 a `{error, code: 429}` body with the budget headers.
 */
function assertRateLimited({ responses, spanMs }, limit) {
  const statuses = responses.map((r) => r.status);
  const ok = responses.filter((r) => r.status === 200);
  const limited = responses.filter((r) => r.status === 429);
  const most = Math.min(responses.length, windowBound(limit, spanMs));
  const where = `statuses ${statuses} over ${spanMs} ms`;
  assert.equal(ok.length + limited.length, responses.length, `only 200 and 429 expected: ${where}`);
  assert.ok(ok.length >= limit, `the budget of ${limit} is admitted: ${where}`);
  assert.ok(ok.length <= most, `at most ${most} admitted (a budget of ${limit} per ${WINDOW_HOLDS_MS} ms): ${where}`);
  for (const res of limited) {
    assertHttpError(res, 429);
    assert.equal(res.headers.get('x-ratelimit-limit'), String(limit), `X-RateLimit-Limit of a 429: ${where}`);
    assert.equal(res.headers.get('x-ratelimit-remaining'), '0', `X-RateLimit-Remaining of a 429: ${where}`);
    // A point leaves the window within a second, and Retry-After is in whole seconds.
    assert.equal(res.headers.get('retry-after'), '1', `Retry-After of a 429: ${where}`);
  }
  for (const res of ok) {
    assert.equal(res.headers.get('x-ratelimit-limit'), String(limit), `X-RateLimit-Limit of a passing request: ${where}`);
    const remaining = Number(res.headers.get('x-ratelimit-remaining'));
    assert.ok(Number.isInteger(remaining) && remaining >= 0 && remaining < limit, `X-RateLimit-Remaining ${remaining} of a passing request: ${where}`);
  }
  return { ok, limited };
}

describe('per-app limits from a config file', () => {
  const file = writeConfig('limits.json', { appManager: { array: { apps: Object.values(APPS) } } });
  const root = useServer({ SOKETI_USER_AUTHENTICATION_TIMEOUT: String(USER_AUTHENTICATION_TIMEOUT_MS) }, { args: ['start', '--config', file] });

  describe('connections', () => {
    it('maxConnections 2: the third connection gets 4100, and a close frees a place', async () => {
      const scope = root.forApp(APPS.conns);
      const first = await scope.rawConnected();
      await scope.rawConnected();
      await assertRefused(await scope.raw(), 4100);

      first.close();
      await first.closed();
      const accepted = await scope.rawAcceptedAgain();
      await accepted.ping();
    });

    it('max_connections 1 (the snake_case alias): the second connection gets 4100', async () => {
      const scope = root.forApp(APPS.connsAlias);
      await scope.rawConnected();
      await assertRefused(await scope.raw(), 4100);
    });

    it('maxConnections -1 is unlimited', async () => {
      const scope = root.forApp(APPS.unlimited);
      const clients = await Promise.all(Array.from({ length: 5 }, () => scope.rawConnected()));
      for (const client of clients) await client.ping();
    });

    it('enabled false: the connection gets 4003', async () => {
      await assertRefused(await root.forApp(APPS.disabled).raw(), 4003);
    });
  });

  describe('client messages', () => {
    it('enableClientMessages true delivers a client event to the other subscriber', async () => {
      const scope = root.forApp(APPS.clientOn);
      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      sender.send({ event: 'client-hello', channel, data: { hi: 1 } });
      const frame = await nextAppEvent(receiver);
      assert.equal(frame.event, 'client-hello', receiver.describeHistory());
    });

    it('enableClientMessages false refuses a client event with 4301 and keeps the connection', async () => {
      const scope = root.forApp(APPS.clientOff);
      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      sender.send({ event: 'client-hello', channel, data: { hi: 1 } });
      assert.equal(parseData(await sender.next('pusher:error')).code, 4301, sender.describeHistory());
      await sender.ping();
      await scope.sdk().trigger(channel, 'sentinel', {});
      assert.equal((await nextAppEvent(receiver)).event, 'sentinel', receiver.describeHistory());
    });
  });

  describe('presence', () => {
    it('maxPresenceMembersPerChannel 2: a third member gets subscription_error 4100', async () => {
      const scope = root.forApp(APPS.members);
      const channel = uniqueChannel('presence-');
      await scope.rawSubscribed(channel, alice);
      await scope.rawSubscribed(channel, bob);
      const third = await scope.rawConnected();
      const frame = await third.subscribe(channel, subscribeData(scope.server, third.socketId, channel, carol));
      assert.equal(frame.event, 'pusher:subscription_error', third.describeHistory());
      assert.equal(parseData(frame).status, 4100);
      await third.ping();
    });

    it('maxPresenceMemberSizeInKb 1: a 1.5 KB user_info gets subscription_error 4301', async () => {
      const scope = root.forApp(APPS.memberSize);
      const channel = uniqueChannel('presence-');
      await scope.rawSubscribed(channel, { user_id: 'small', user_info: { blob: 'x'.repeat(500) } });
      const client = await scope.rawConnected();
      const big = { user_id: 'big', user_info: { blob: 'x'.repeat(1500) } };
      const frame = await client.subscribe(channel, subscribeData(scope.server, client.socketId, channel, big));
      assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
      assert.equal(parseData(frame).status, 4301);
      await client.ping();
    });
  });

  describe('names and sizes', () => {
    it('maxChannelNameLength 40: subscription_error 4009 for 41 characters', async () => {
      const scope = root.forApp(APPS.channelName);
      const client = await scope.rawConnected();
      await client.subscribeOk(channelOfLength(40));
      const tooLong = channelOfLength(41);
      const frame = await client.subscribe(tooLong);
      assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
      assert.equal(parseData(frame).status, 4009);
      await client.ping();
    });

    it('maxChannelNameLength 40: publishing to 41 characters answers 400', async () => {
      const scope = root.forApp(APPS.channelName);
      assert.equal((await publish(scope.server, channelOfLength(40))).status, 200);
      assertHttpError(await publish(scope.server, channelOfLength(41)), 400);
    });

    it('maxEventChannelsAtOnce 2: three channels answer 400', async () => {
      const sdk = root.forApp(APPS.eventChannels).sdk();
      assert.equal((await sdk.trigger([uniqueChannel(), uniqueChannel()], 'e', {})).status, 200);
      assertHttpError(await sdkFailure(sdk.trigger([uniqueChannel(), uniqueChannel(), uniqueChannel()], 'e', {})), 400);
    });

    it('maxEventNameLength 20: 400 over HTTP, 4301 for a client event', async () => {
      const scope = root.forApp(APPS.eventName);
      const sdk = scope.sdk();
      assert.equal((await sdk.trigger(uniqueChannel(), 'e'.repeat(20), {})).status, 200);
      assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e'.repeat(21), {})), 400);

      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      sender.send({ event: `client-${'x'.repeat(14)}`, channel, data: {} });
      assert.equal(parseData(await sender.next('pusher:error')).code, 4301, sender.describeHistory());
      sender.send({ event: `client-${'x'.repeat(13)}`, channel, data: {} });
      assert.equal((await nextAppEvent(receiver)).event, `client-${'x'.repeat(13)}`, receiver.describeHistory());
    });

    it('maxEventPayloadInKb 1: 413 over HTTP, 4301 for a client event', async () => {
      const scope = root.forApp(APPS.payload);
      const sdk = scope.sdk();
      assert.equal((await sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(800))).status, 200);
      assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(1500))), 413);

      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      sender.send({ event: 'client-big', channel, data: { blob: 'x'.repeat(1500) } });
      assert.equal(parseData(await sender.next('pusher:error')).code, 4301, sender.describeHistory());
      sender.send({ event: 'client-small', channel, data: { blob: 'x'.repeat(500) } });
      assert.equal((await nextAppEvent(receiver)).event, 'client-small', receiver.describeHistory());
    });

    it('maxEventBatchSize 2: a batch of three answers 400', async () => {
      const sdk = root.forApp(APPS.batch).sdk();
      const batch = (n) => Array.from({ length: n }, () => ({ channel: uniqueChannel(), name: 'e', data: {} }));
      assert.equal((await sdk.triggerBatch(batch(2))).status, 200);
      assertHttpError(await sdkFailure(sdk.triggerBatch(batch(3))), 400);
    });
  });

  describe('rate limits (1 s windows)', () => {
    it(`maxBackendEventsPerSecond ${RATE_LIMIT}: a burst of 5 publishes admits the budget and no more, with X-RateLimit-* on every answer`, async (t) => {
      const { server } = root.forApp(APPS.backendRate);
      const result = await burst(5, () => publish(server, uniqueChannel()));
      t.diagnostic(`statuses ${result.responses.map((r) => r.status)} within ${result.spanMs} ms`);
      assertRateLimited(result, RATE_LIMIT);
    });

    it('maxBackendEventsPerSecond 2 counts channels: one publish to 3 channels is refused', async () => {
      const { server } = root.forApp(APPS.backendRateChannels);
      assertHttpError(await publish(server, [uniqueChannel(), uniqueChannel(), uniqueChannel()]), 429);
      // Not a refusal of everything: a single channel passes again within a window or two.
      await until(async () => (await publish(server, uniqueChannel())).status === 200, {
        interval: 100,
        what: 'a one-channel publish to pass after the window',
      });
    });

    it('maxBackendEventsPerSecond 2 counts batch items: a batch of 3 events is refused', async () => {
      const { server } = root.forApp(APPS.backendRateBatch);
      const batch = Array.from({ length: 3 }, () => ({ channel: uniqueChannel(), name: 'e', data: '{}' }));
      const res = await signedRequest(server, { path: `/apps/${server.appId}/batch_events`, body: { batch } });
      assertHttpError(res, 429);
    });

    it('maxBackendEventsPerSecond -1 is unlimited', async () => {
      const { server } = root.forApp(APPS.unlimited);
      const { responses } = await burst(10, () => publish(server, uniqueChannel()));
      assert.deepEqual(
        responses.map((r) => r.status),
        Array(10).fill(200),
      );
    });

    it(`maxReadRequestsPerSecond ${RATE_LIMIT}: a burst of 5 channel queries admits the budget and no more`, async (t) => {
      const { server } = root.forApp(APPS.readRate);
      const result = await burst(5, () => signedRequest(server, { method: 'GET', path: `/apps/${server.appId}/channels` }));
      t.diagnostic(`statuses ${result.responses.map((r) => r.status)} within ${result.spanMs} ms`);
      assertRateLimited(result, RATE_LIMIT);
      // Publishing is not a read: it is not limited by the read limit.
      assert.equal((await publish(server, uniqueChannel())).status, 200);
    });

    it('maxReadRequestsPerSecond -1 is unlimited', async () => {
      const { server } = root.forApp(APPS.unlimited);
      const { responses } = await burst(10, () => signedRequest(server, { method: 'GET', path: `/apps/${server.appId}/channels` }));
      assert.deepEqual(
        responses.map((r) => r.status),
        Array(10).fill(200),
      );
    });

    it(`maxClientEventsPerSecond ${RATE_LIMIT}: a burst of 5 client events admits the budget, refuses the rest with 4301, and the socket stays open`, async (t) => {
      const scope = root.forApp(APPS.clientRate);
      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      const sentAt = Date.now();
      for (let i = 0; i < 5; i += 1) sender.send({ event: 'client-burst', channel, data: { i } });
      // The pong comes after the server has handled the 5 events, and after their errors.
      await sender.ping();
      const spanMs = Date.now() - sentAt;
      assert.ok(sender.isOpen, 'the sender stays connected');
      // The sentinel is published after the server passed on the admitted events: once it is
      // in, so are they.
      await scope.sdk().trigger(channel, 'sentinel', {});
      await receiver.next('sentinel');
      const delivered = receiver.history.filter((f) => f.event === 'client-burst').length;
      const errors = sender.history.filter((f) => f.event === 'pusher:error');
      // A connection's budget refills one event every 1000 / limit ms after a full burst (GCRA),
      // so the span of the burst bounds what it admits; exactly the budget within 500 ms.
      const most = Math.min(5, RATE_LIMIT + Math.floor((spanMs * RATE_LIMIT) / 1000));
      t.diagnostic(`${delivered} delivered, ${errors.length} refused within ${spanMs} ms`);
      const where = `${delivered} delivered, ${errors.length} refused within ${spanMs} ms; sender: ${sender.describeHistory()}`;
      assert.equal(delivered + errors.length, 5, `each event delivered or refused: ${where}`);
      assert.ok(delivered >= RATE_LIMIT, `the budget of ${RATE_LIMIT} is delivered: ${where}`);
      assert.ok(delivered <= most, `at most ${most} delivered: ${where}`);
      for (const error of errors) assert.equal(parseData(error).code, 4301, where);

      // The limit is per socket: another sender of the same app is not limited by it.
      const other = await scope.rawSubscribed(channel);
      other.send({ event: 'client-other', channel, data: {} });
      await receiver.next('client-other');
      await other.ping();
      assert.ok(
        !other.history.some((f) => f.event === 'pusher:error'),
        `the other sender got no error: ${other.describeHistory()}`,
      );
    });

    it('maxClientEventsPerSecond -1 is unlimited', async () => {
      const scope = root.forApp(APPS.unlimited);
      const channel = uniqueChannel('private-');
      const receiver = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      for (let i = 0; i < 10; i += 1) sender.send({ event: 'client-burst', channel, data: { i } });
      for (let i = 0; i < 10; i += 1) await receiver.next('client-burst');
      await sender.ping();
      assert.ok(!sender.history.some((f) => f.event === 'pusher:error'), sender.describeHistory());
    });
  });

  describe(`user authentication (timeout ${USER_AUTHENTICATION_TIMEOUT_MS} ms)`, () => {
    it('closes a connection that does not sign in with 4009, not before the timeout', async (t) => {
      const scope = root.forApp(APPS.userAuth);
      // Taken before the connection opens: the server starts its clock later, so the close
      // cannot come sooner than the timeout after this (the few ms are both clocks' rounding).
      const start = Date.now();
      const client = await scope.rawConnected();
      const { code } = await client.closed(USER_AUTHENTICATION_TIMEOUT_MS + 5_000);
      const elapsed = Date.now() - start;
      t.diagnostic(`closed ${elapsed} ms after the connection began`);
      assert.equal(code, 4009, client.describeHistory());
      assert.ok(elapsed >= USER_AUTHENTICATION_TIMEOUT_MS - 2, `closed after ${elapsed} ms, before the ${USER_AUTHENTICATION_TIMEOUT_MS} ms timeout`);
    });

    it('keeps a connection that signs in, and connections of apps without enableUserAuthentication', async () => {
      const scope = root.forApp(APPS.userAuth);
      const signedIn = await scope.rawConnected();
      const frame = await signedIn.signin(scope.sdk(), { id: 'alice' });
      assert.equal(frame.event, 'pusher:signin_success', signedIn.describeHistory());
      const otherApp = await root.forApp(APPS.clientOff).rawConnected();
      // The sentinel: a connection opened after both that does not sign in. Its timeout ends
      // after theirs would have, so once it is closed the server has judged them too.
      const sentinel = await scope.rawConnected();
      assert.equal((await sentinel.closed(USER_AUTHENTICATION_TIMEOUT_MS + 5_000)).code, 4009, sentinel.describeHistory());
      for (const client of [signedIn, otherApp]) {
        // A close sent before the sentinel's would come before this pong.
        await client.ping();
        assert.ok(client.isOpen, `closed with ${client.closeCode}: ${client.describeHistory()}`);
      }
    });
  });
});
