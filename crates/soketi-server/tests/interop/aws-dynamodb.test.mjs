// Apps from soketi's DynamoDB table (`APP_MANAGER_DRIVER=dynamodb`), against moto's DynamoDB on
// loopback (aws.mjs): tables made with soketi's hash key `AppId` and its global secondary index
// `AppKeyIndex` on `AppKey`, and items in soketi's layout (flags as the bytes of "true" or
// "false", B; quotas and limits as N; the webhook list as JSON text, S), which the server reads
// by key through a Query on the index and by id through GetItem. The expectations are the SQL
// app managers' (app-managers.test.mjs): the same refusals, limits, cache and outages.
//
// Three tables, `apps` (the default name), `apps_cached` and `apps_kept`, and three servers,
// each reaching moto through its own cuttable TCP proxy (sql.mjs's `startProxy`):
// - `direct`: no cache, table `apps` (APP_MANAGER_DYNAMODB_TABLE unset): lookups, refusals,
//   limits, DynamoDB going away;
// - `cached`: APP_MANAGER_CACHE_ENABLED=true, TTL 1 s, table `apps_cached`: what happens once the
//   TTL is over, and that it does not happen sooner (checked from below);
// - `kept`: the same with a TTL of an hour, table `apps_kept`: what happens within the TTL.
//
// Every app is used by one test only, so counters and cache entries never cross tests.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  APP,
  Scope,
  assertHttpError,
  parseData,
  signedRequest,
  startServer,
  subscribe,
  uniqueChannel,
  until,
  waitFor,
} from './harness.mjs';
import { awsEnv, createAppsTable, getApp, motoSkip, putApp, queryAppKey, startMoto, updateApp } from './aws.mjs';
import { startProxy } from './sql.mjs';
import { assertWebhookRequest } from './webhook-checks.mjs';
import { startReceiver } from './webhook-receiver.mjs';

const TTL_MS = 1_000;
/** The TTL of the `kept` server, which no test comes near. */
const KEPT_TTL_MS = 3_600_000;
/** A changed item must not be seen before the entry can have expired (timer slack allowed). */
const EARLIEST_EXPIRY_MS = TTL_MS - 50;
const OUTAGE_ANSWER_MS = 5_000;
const RECOVERY_MS = 10_000;
const USER_AUTHENTICATION_TIMEOUT_MS = 500;

/** An app named `name` with the given attributes (aws.mjs's `appItem` writes them). */
function app(name, fields = {}) {
  return { id: `${name}-id`, key: `${name}-key`, secret: `${name}-secret`, ...fields };
}

const APPS = {
  main: app('main'),
  // Only the three attributes soketi cannot do without: every other one takes its default.
  bare: app('bare', {
    MaxConnections: undefined,
    EnableClientMessages: undefined,
    Enabled: undefined,
    MaxBackendEventsPerSecond: undefined,
    MaxClientEventsPerSecond: undefined,
    MaxReadRequestsPerSecond: undefined,
    Webhooks: undefined,
    EnableUserAuthentication: undefined,
  }),
  disabledBinary: app('disabled-binary', { Enabled: false }),
  disabledBool: app('disabled-bool', { Enabled: { BOOL: false } }),
  boolFlags: app('bool-flags', { Enabled: { BOOL: true }, EnableClientMessages: { BOOL: true } }),
  oneConn: app('one-conn', { MaxConnections: 1 }),
  clientOn: app('client-on', { EnableClientMessages: true }),
  shortChannels: app('short-channels', { MaxChannelNameLength: 40 }),
  shortNames: app('short-names', { MaxEventNameLength: 20 }),
  userAuth: app('user-auth', { EnableUserAuthentication: true }),
  hooks: app('hooks'), // its Webhooks attribute is set once the receiver listens
  outage: app('outage'),
};

// Items of both `apps_cached` and `apps_kept`.
const CACHED_APPS = {
  hit: app('hit'),
  change: app('change'),
  // `late` is not in the tables at first: the test puts it.
  late: app('late'),
};

/** Asserts that a raw client got `pusher:error` with `code` and was then closed with it. */
async function assertRefused(client, code, timeout) {
  const error = await client.next('pusher:error', timeout);
  assert.equal(parseData(error).code, code, `pusher:error code; frames: ${client.describeHistory()}`);
  const { code: closeCode } = await client.closed(timeout);
  assert.equal(closeCode, code, `close code; frames: ${client.describeHistory()}`);
  assert.ok(!client.history.some((f) => f.event === 'pusher:connection_established'), 'a refused connection is never established');
}

/**
 * Opens a raw connection for `scope`'s app and resolves with how the server answered:
 * `{ client, established, code, ms }` (`code` is the pusher:error code when refused).
 */
async function connectOutcome(scope, timeout = OUTAGE_ANSWER_MS + 1_000) {
  const started = Date.now();
  const client = await scope.raw();
  const frame = await client.next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error', timeout);
  const established = frame.event === 'pusher:connection_established';
  return { client, established, code: established ? null : parseData(frame).code, ms: Date.now() - started };
}

/** Publishes one event for `server`'s app with a raw signed request (its lookup is by id). */
function publish(server, channel = uniqueChannel(), name = 'e') {
  return signedRequest(server, { path: `/apps/${server.appId}/events`, body: { name, channel, data: '{}' } });
}

/** Like `publish`, also measuring how long the answer took (`ms`). */
async function timedPublish(server) {
  const started = Date.now();
  const res = await publish(server);
  return { res, ms: Date.now() - started };
}

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
}

/** A channel name of exactly `length` characters that no other test uses. */
function channelOfLength(length, prefix = '') {
  const base = uniqueChannel(prefix);
  assert.ok(base.length <= length, `${base} is longer than ${length}`);
  return base + 'x'.repeat(length - base.length);
}

/** Asserts a raw API answer was a success. */
function assertNotFailed(res, what) {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
}

describe('apps from DynamoDB (APP_MANAGER_DRIVER=dynamodb, moto)', { skip: motoSkip() }, () => {
  const direct = new Scope();
  const cached = new Scope();
  const kept = new Scope();
  let moto = null;
  let directProxy = null;
  let cachedProxy = null;
  let keptProxy = null;
  let receiver = null;
  const marks = new Map();

  /** The server environment for moto behind `proxy`. */
  const serverEnv = (proxy, extra = {}) =>
    awsEnv({
      SOKETI_APP_MANAGER_DRIVER: 'dynamodb',
      SOKETI_APP_MANAGER_DYNAMODB_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
      SOKETI_USER_AUTHENTICATION_TIMEOUT: String(USER_AUTHENTICATION_TIMEOUT_MS),
      ...extra,
    });

  before(async () => {
    moto = await startMoto();
    receiver = await startReceiver();
    APPS.hooks.Webhooks = [{ url: receiver.url('/hooks'), event_types: ['channel_occupied'] }];
    for (const table of ['apps', 'apps_cached', 'apps_kept']) await createAppsTable(moto, table);
    for (const item of Object.values(APPS)) await putApp(moto, 'apps', item);
    for (const table of ['apps_cached', 'apps_kept']) {
      for (const item of [CACHED_APPS.hit, CACHED_APPS.change]) await putApp(moto, table, item);
    }

    directProxy = await startProxy(moto.port);
    cachedProxy = await startProxy(moto.port);
    keptProxy = await startProxy(moto.port);
    [direct.server, cached.server, kept.server] = await Promise.all([
      startServer(serverEnv(directProxy)),
      startServer(
        serverEnv(cachedProxy, {
          SOKETI_APP_MANAGER_DYNAMODB_TABLE: 'apps_cached',
          SOKETI_APP_MANAGER_DYNAMODB_REGION: 'us-east-1',
          SOKETI_APP_MANAGER_CACHE_ENABLED: 'true',
          SOKETI_APP_MANAGER_CACHE_TTL: String(TTL_MS / 1000),
        }),
      ),
      // soketi's own names, without the SOKETI_ prefix.
      startServer(
        serverEnv(keptProxy, {
          APP_MANAGER_DYNAMODB_TABLE: 'apps_kept',
          APP_MANAGER_CACHE_ENABLED: 'true',
          APP_MANAGER_CACHE_TTL: String(KEPT_TTL_MS / 1000),
        }),
      ),
    ]);
  });

  beforeEach(() => {
    for (const scope of [direct, cached, kept]) marks.set(scope, scope.server?.logMark() ?? 0);
  });

  afterEach((t) => {
    if (t.passed === false) {
      const proxy = (p) => JSON.stringify({ mode: p?.mode(), ...p?.stats });
      const proxies = `proxies: direct ${proxy(directProxy)}, cached ${proxy(cachedProxy)}, kept ${proxy(keptProxy)}`;
      direct.server?.dumpLogs(`test "${t.name}" failed (direct server; ${proxies})`, marks.get(direct));
      cached.server?.dumpLogs(`test "${t.name}" failed (cached server)`, marks.get(cached));
      kept.server?.dumpLogs(`test "${t.name}" failed (kept server)`, marks.get(kept));
      if (moto) process.stderr.write(`\n----- moto_server output (port ${moto.port}) -----\n${moto.logs().slice(-8_000)}\n-----\n`);
    }
    // A test that failed half-way must not leave the next one without DynamoDB.
    for (const proxy of [directProxy, cachedProxy, keptProxy]) proxy?.restore();
    for (const scope of [direct, cached, kept]) scope.closeClients();
  });

  after(async () => {
    for (const scope of [direct, cached, kept]) scope.closeClients();
    await Promise.all([direct.server?.stop(), cached.server?.stop(), kept.server?.stop()]);
    await Promise.all([directProxy?.close(), cachedProxy?.close(), keptProxy?.close(), receiver?.close()]);
    await moto?.stop();
  });

  describe('the table as the tests wrote it', () => {
    it('moto answers the lookups the server makes: Query on AppKeyIndex by key, GetItem by id', async () => {
      // Not the server under test: this shows that a failure below is the server's reading of
      // a table that does hold the item.
      const [byKey] = await queryAppKey(moto, 'apps', APPS.main.key);
      assert.equal(byKey?.AppId?.S, APPS.main.id, JSON.stringify(byKey));
      const byId = await getApp(moto, 'apps', APPS.disabledBinary.id);
      assert.equal(Buffer.from(byId.Enabled.B, 'base64').toString(), 'false', JSON.stringify(byId));
      assert.deepEqual(await queryAppKey(moto, 'apps', APP.key), [], 'the default app is not in the table');
    });
  });

  describe('lookups', () => {
    it('a pusher-js client connects with a key found only in the table and gets what the SDK publishes by id; app-key and an unknown key get 4001', async () => {
      const scope = direct.forApp(APPS.main);
      const client = await scope.connectedPusher();
      const name = uniqueChannel();
      const { channel } = await subscribe(client, name);
      const received = waitFor(channel, 'greeting');
      // Signed with the item's AppSecret: the server finds the app by id and checks it.
      const res = await scope.sdk().trigger(name, 'greeting', { from: 'the table' });
      assert.equal(res.status, 200);
      assert.deepEqual(await received, { from: 'the table' });

      // The server's default app is not in the table: neither its key nor its id is known.
      await assertRefused(await direct.raw(direct.server.wsUrl(APP.key)), 4001);
      await assertRefused(await direct.raw(direct.server.wsUrl('no-such-key')), 4001);
      assertHttpError(await publish(direct.server), 404);
    });

    it('an item with only AppId, AppKey and AppSecret is an enabled app with the defaults', async () => {
      const scope = direct.forApp(APPS.bare);
      const channel = uniqueChannel();
      const client = await scope.rawSubscribed(channel);
      assert.equal((await publish(scope.server, channel, 'n'.repeat(150))).status, 200);
      assert.equal((await nextAppEvent(client)).event, 'n'.repeat(150), client.describeHistory());
      assertHttpError(await publish(scope.server, channel, 'n'.repeat(201)), 400);
    });

    it('a disabled app is refused with 4003: Enabled as the bytes of "false" (B) and as BOOL false', async () => {
      await assertRefused(await direct.forApp(APPS.disabledBinary).raw(), 4003);
      await assertRefused(await direct.forApp(APPS.disabledBool).raw(), 4003);
    });

    it('BOOL true is read too: Enabled and EnableClientMessages as BOOL let a client event through', async () => {
      const scope = direct.forApp(APPS.boolFlags);
      const channel = uniqueChannel('private-');
      const receiverClient = await scope.rawSubscribed(channel);
      const sender = await scope.rawSubscribed(channel);
      sender.send({ event: 'client-hello', channel, data: { hi: 1 } });
      assert.equal((await nextAppEvent(receiverClient)).event, 'client-hello', receiverClient.describeHistory());
    });
  });

  describe("an item's limits", () => {
    it('MaxConnections 1: the second connection gets 4100, the first keeps working', async () => {
      const scope = direct.forApp(APPS.oneConn);
      const first = await scope.rawConnected();
      await assertRefused(await scope.raw(), 4100);
      await first.ping();
    });

    it('EnableClientMessages "true" (B) lets a client event through; "false" refuses it with 4301', async () => {
      for (const [item, allowed] of [[APPS.clientOn, true], [APPS.main, false]]) {
        const scope = direct.forApp(item);
        const channel = uniqueChannel('private-');
        const receiverClient = await scope.rawSubscribed(channel);
        const sender = await scope.rawSubscribed(channel);
        sender.send({ event: 'client-hello', channel, data: { hi: 1 } });
        if (allowed) {
          assert.equal((await nextAppEvent(receiverClient)).event, 'client-hello', receiverClient.describeHistory());
        } else {
          assert.equal(parseData(await sender.next('pusher:error')).code, 4301, sender.describeHistory());
        }
      }
    });

    it('MaxChannelNameLength 40: subscription_error 4009 and HTTP 400 for 41 characters', async () => {
      const scope = direct.forApp(APPS.shortChannels);
      const client = await scope.rawConnected();
      await client.subscribeOk(channelOfLength(40));
      const frame = await client.subscribe(channelOfLength(41));
      assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
      assert.equal(parseData(frame).status, 4009);
      await client.ping();
      assert.equal((await publish(scope.server, channelOfLength(40))).status, 200);
      assertHttpError(await publish(scope.server, channelOfLength(41)), 400);
    });

    it('MaxEventNameLength 20: 20 characters are accepted, 21 refused with 400', async () => {
      const scope = direct.forApp(APPS.shortNames);
      assert.equal((await publish(scope.server, uniqueChannel(), 'n'.repeat(20))).status, 200);
      assertHttpError(await publish(scope.server, uniqueChannel(), 'n'.repeat(21)), 400);
    });

    it(`EnableUserAuthentication "true" (B): a connection that does not sign in is closed with 4009, not before ${USER_AUTHENTICATION_TIMEOUT_MS} ms`, async (t) => {
      const scope = direct.forApp(APPS.userAuth);
      const start = Date.now();
      const client = await scope.rawConnected();
      const { code } = await client.closed(USER_AUTHENTICATION_TIMEOUT_MS + 5_000);
      const elapsed = Date.now() - start;
      t.diagnostic(`closed ${elapsed} ms after the connection began`);
      assert.equal(code, 4009, client.describeHistory());
      assert.ok(elapsed >= USER_AUTHENTICATION_TIMEOUT_MS - 2, `closed after ${elapsed} ms, before the ${USER_AUTHENTICATION_TIMEOUT_MS} ms timeout`);
    });

    it('the Webhooks attribute (JSON text) is read: channel_occupied reaches its URL, signed with the item\'s secret', async () => {
      const scope = direct.forApp(APPS.hooks);
      const channel = uniqueChannel();
      await scope.rawSubscribed(channel);
      const [event] = await receiver.waitForEvents((e) => e.name === 'channel_occupied' && e.channel === channel, 1);
      assertWebhookRequest(event.request, APPS.hooks, { headers: {} });
    });
  });

  describe(`the cache (TTL ${TTL_MS / 1000} s, and an hour)`, () => {
    /** Asserts that a `kept` test stayed within its TTL, as it always does, and says so if not. */
    const assertWithinKeptTtl = (started) => {
      const elapsed = Date.now() - started;
      assert.ok(elapsed < KEPT_TTL_MS, `the test took ${elapsed} ms, past the kept server's TTL: nothing above was within it`);
    };

    it('a second lookup within the TTL sends nothing to DynamoDB, even when it is gone; after the TTL it asks again', async () => {
      // Within the TTL (the `kept` server).
      const within = kept.forApp(CACHED_APPS.hit);
      const keptFrom = Date.now();
      // One lookup by key (WebSocket) and one by id (HTTP API) fill the cache.
      await (await within.rawConnected()).ping();
      assert.equal((await publish(within.server)).status, 200);

      // Counted at the proxy: more lookups of the same app send nothing to DynamoDB.
      const counted = { ...keptProxy.stats };
      await within.rawConnected();
      await within.rawConnected();
      assert.equal((await publish(within.server)).status, 200);
      assert.equal(keptProxy.stats.bytesUp, counted.bytesUp, 'bytes sent to DynamoDB by cached lookups');
      assert.equal(keptProxy.stats.accepted, counted.accepted, 'connections to DynamoDB opened by cached lookups');

      // With DynamoDB gone, both lookups still answer from the cache.
      keptProxy.cut();
      const again = await connectOutcome(within);
      const api = await publish(within.server);
      assert.ok(again.established, `a connection within the TTL with DynamoDB gone: ${again.client.describeHistory()}`);
      assertNotFailed(api, 'a publish within the TTL with DynamoDB gone');
      assertWithinKeptTtl(keptFrom);
      keptProxy.restore();

      // After the TTL (the `cached` server): DynamoDB is asked again; it is gone, so 4100
      // (errors are not cached), and not before the entry can have expired.
      const scope = cached.forApp(CACHED_APPS.hit);
      const started = Date.now();
      await (await scope.rawConnected()).ping();
      cachedProxy.cut();
      const expired = await until(
        async () => {
          const outcome = await connectOutcome(scope);
          outcome.client.terminate();
          return outcome.established ? null : { ...outcome, at: Date.now() - started };
        },
        { timeout: TTL_MS + OUTAGE_ANSWER_MS, interval: 100, what: 'the cache entry to expire while DynamoDB is gone' },
      );
      assert.equal(expired.code, 4100, 'refusal after the TTL with DynamoDB gone');
      assert.ok(expired.at >= EARLIEST_EXPIRY_MS, `the entry expired ${expired.at} ms after the first lookup, before the TTL`);

      cachedProxy.restore();
      await until(
        async () => {
          const outcome = await connectOutcome(scope);
          outcome.client.terminate();
          return outcome.established;
        },
        { timeout: RECOVERY_MS, interval: 100, what: 'lookups to work again once DynamoDB is back' },
      );
    });

    it('an item changed in the table (Enabled "false") takes effect after the TTL, not before', async () => {
      // Each clock starts before its server's first lookup, so that an entry cannot be older
      // than it says.
      const keptFrom = Date.now();
      await kept.forApp(CACHED_APPS.change).rawConnected();
      const started = Date.now();
      await cached.forApp(CACHED_APPS.change).rawConnected();
      for (const table of ['apps_kept', 'apps_cached']) await updateApp(moto, table, CACHED_APPS.change.id, { Enabled: false });

      // Within the TTL the cached (enabled) item is used.
      const soon = await connectOutcome(kept.forApp(CACHED_APPS.change));
      assert.ok(soon.established, `within the TTL the cached (enabled) item is used: ${soon.client.describeHistory()}`);
      assertWithinKeptTtl(keptFrom);

      // After it, the disabled item.
      const scope = cached.forApp(CACHED_APPS.change);
      const refused = await until(
        async () => {
          const outcome = await connectOutcome(scope);
          outcome.client.terminate();
          return outcome.established ? null : { ...outcome, at: Date.now() - started };
        },
        { timeout: TTL_MS + 4_000, interval: 50, what: 'the disabled item to take effect' },
      );
      assert.equal(refused.code, 4003, 'a disabled app');
      assert.ok(refused.at >= EARLIEST_EXPIRY_MS, `the change took effect ${refused.at} ms after the first lookup, before the TTL`);
    });

    it('"not found" is cached too: an item put after a 4001 is found after the TTL, not before', async () => {
      const keptFrom = Date.now();
      await assertRefused(await kept.forApp(CACHED_APPS.late).raw(), 4001);
      const started = Date.now();
      await assertRefused(await cached.forApp(CACHED_APPS.late).raw(), 4001);
      for (const table of ['apps_kept', 'apps_cached']) await putApp(moto, table, CACHED_APPS.late);

      // Within the TTL the cached "not found" is used.
      const soon = await connectOutcome(kept.forApp(CACHED_APPS.late));
      assert.equal(soon.code, 4001, `within the TTL the cached "not found" is used: ${soon.client.describeHistory()}`);
      assertWithinKeptTtl(keptFrom);

      // After it, the new item.
      const scope = cached.forApp(CACHED_APPS.late);
      const found = await until(
        async () => {
          const outcome = await connectOutcome(scope);
          outcome.client.terminate();
          return outcome.established ? { at: Date.now() - started } : null;
        },
        { timeout: TTL_MS + 4_000, interval: 50, what: 'the new item to be found' },
      );
      assert.ok(found.at >= EARLIEST_EXPIRY_MS, `the new item was found ${found.at} ms after the first lookup, before the TTL`);
    });
  });

  describe('DynamoDB going away (no cache)', () => {
    for (const how of ['cut', 'blackhole']) {
      const what = how === 'cut' ? 'connections reset and refused' : 'connections accepted, nothing answered';
      it(`${how} (${what}): the API answers 503 and a new WebSocket gets 4100 within ${OUTAGE_ANSWER_MS / 1000} s; once restored both work again, same process`, async () => {
        const scope = direct.forApp(APPS.outage);
        const pid = scope.server.pid;
        // Warm the client's connections, and keep one WebSocket open across the outage.
        const survivor = await scope.rawConnected();
        assert.equal((await publish(scope.server)).status, 200);

        directProxy[how]();
        const [api, ws] = await Promise.all([timedPublish(scope.server), connectOutcome(scope)]);
        assertHttpError(api.res, 503);
        assert.ok(api.ms < OUTAGE_ANSWER_MS, `the API answered after ${api.ms} ms`);
        assert.ok(!ws.established, `a new connection while DynamoDB is away: ${ws.client.describeHistory()}`);
        assert.equal(ws.code, 4100, ws.client.describeHistory());
        const { code: closeCode } = await ws.client.closed();
        assert.equal(closeCode, 4100, ws.client.describeHistory());
        assert.ok(ws.ms < OUTAGE_ANSWER_MS, `the WebSocket was refused after ${ws.ms} ms`);
        // A connection made before the outage needs no lookup to keep working.
        await survivor.ping();

        directProxy.restore();
        const recovered = await until(
          async () => {
            const [res, outcome] = await Promise.all([publish(scope.server), connectOutcome(scope)]);
            outcome.client.terminate();
            return res.status === 200 && outcome.established ? true : null;
          },
          { timeout: RECOVERY_MS, interval: 100, what: 'the API (200) and a WebSocket (established) to work once DynamoDB is back' },
        );
        assert.ok(recovered);
        assert.equal(scope.server.exitInfo(), null, 'the server is still running');
        assert.equal(scope.server.pid, pid);
      });
    }
  });
});
