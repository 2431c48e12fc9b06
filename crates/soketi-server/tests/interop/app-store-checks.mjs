// What the tests of the app stores check in the same way whatever the store: the SQL tables of
// app-managers.test.mjs (PostgreSQL, MariaDB) and the DynamoDB table of aws-dynamodb.test.mjs.
// A test file describes its store (see `useAppStore`) and gets, in each `describe` it calls it
// from, three servers reaching the store through a cuttable TCP proxy each (sql.mjs's
// `startProxy`):
// - `direct`: no cache, table `apps`: lookups, refusals, limits, the store going away;
// - `cached`: the cache on, TTL 1 s, table `apps_cached`: what happens once the TTL is over, and
//   that it does not happen sooner (checked from below, so a busy machine, which only makes
//   things later, cannot fail it);
// - `kept`: the same with a TTL of an hour, table `apps_kept`: what happens within the TTL. No
//   test comes near an hour, so "within the TTL" always applies and is always asserted, however
//   slow the machine (each test still asserts the time it took, to say so if it ever did not).
//
// `describeLookups`, `describeCache` and `describeOutage` declare the tests that every store
// passes; the test files keep what only their store has (the SQL table's NULL limits,
// DynamoDB's B and BOOL flags, ...). Every app is used by one test only, so counters and cache
// entries never cross tests.

import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import { APP, Scope, assertHttpError, parseData, signedRequest, startServer, subscribe, uniqueChannel, until, waitFor } from './harness.mjs';
import { startProxy } from './sql.mjs';
import { startReceiver } from './webhook-receiver.mjs';

/** The TTL of the `cached` server. */
export const TTL_MS = 1_000;
/** The TTL of the `kept` server, which no test comes near. */
export const KEPT_TTL_MS = 3_600_000;
/** A changed app must not be seen before the entry can have expired (timer slack allowed). */
const EARLIEST_EXPIRY_MS = TTL_MS - 50;
export const OUTAGE_ANSWER_MS = 5_000;
const RECOVERY_MS = 10_000;

/** The table each server reads. */
export const TABLES = Object.freeze({ direct: 'apps', cached: 'apps_cached', kept: 'apps_kept' });

/** An app named `name` with the given extra fields (columns, attributes) of its store. */
export function app(name, fields = {}) {
  return { id: `${name}-id`, key: `${name}-key`, secret: `${name}-secret`, ...fields };
}

// The apps of both `apps_cached` and `apps_kept`.
const CACHED_APPS = {
  hit: app('hit'),
  change: app('change'),
  // `late` is not in the tables at first: the test adds it.
  late: app('late'),
};

/** Asserts that a raw client got `pusher:error` with `code` and was then closed with it. */
export async function assertRefused(client, code, timeout) {
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
export async function connectOutcome(scope, timeout = OUTAGE_ANSWER_MS + 1_000) {
  const started = Date.now();
  const client = await scope.raw();
  const frame = await client.next((f) => f.event === 'pusher:connection_established' || f.event === 'pusher:error', timeout);
  const established = frame.event === 'pusher:connection_established';
  return { client, established, code: established ? null : parseData(frame).code, ms: Date.now() - started };
}

/**
 * Connects to `scope`'s app again and again (each connection closed at once) until
 * `decide(outcome)` (see `connectOutcome`) returns a value, which it resolves with.
 */
function untilOutcome(scope, decide, options) {
  return until(async () => {
    const outcome = await connectOutcome(scope);
    outcome.client.terminate();
    return decide(outcome);
  }, options);
}

/** Publishes one event for `server`'s app with a raw signed request (its lookup is by id). */
export function publish(server, channel = uniqueChannel(), name = 'e') {
  return signedRequest(server, { path: `/apps/${server.appId}/events`, body: { name, channel, data: '{}' } });
}

/** Like `publish`, also measuring how long the answer took (`ms`). */
async function timedPublish(server) {
  const started = Date.now();
  const res = await publish(server);
  return { res, ms: Date.now() - started };
}

/** The next frame that is an event for the application, not a protocol frame. */
export function nextAppEvent(client) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
}

/** Asserts a raw API answer was a success. */
function assertNotFailed(res, what) {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
}

/**
 * Sends a client event between two raw clients of `scope`'s app on a private channel and asserts
 * that it reaches the other client (`allowed`) or that the sender gets 4301.
 */
export async function assertClientEvent(scope, allowed) {
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

/**
 * Registers the hooks of a `describe` that tests apps from `store`, and returns
 * `{ store, direct, cached, kept, proxies: { direct, cached, kept }, receiver }` (the scopes of
 * the three servers; the proxies and `receiver` are set once the suite's `before` ran). `store`:
 * - `name`: the store in test names and messages ("the database", "DynamoDB"); `item`: what one
 *   app is in it ("row", "item"); `inserted`: what adding one is called ("inserted", "put");
 *   `disabled`: how the disabled app of the cache test is written ("app disabled");
 * - `apps`: the apps of table `apps`, `main` and `outage` among them (the shared tests use those);
 * - `open(receiver)`: makes the store (the receiver listens, for apps with webhooks) and resolves
 *   with `{ port, host }`, where the proxies reach it; it throws when the store cannot be had;
 * - `createTable(table)`, `put(table, app)`, `disable(table, id)`: the store's writes;
 * - `env(proxy, server)`: the environment of the server `'direct'`, `'cached'` or `'kept'` (see
 *   `TABLES`, `TTL_MS`, `KEPT_TTL_MS`) reaching the store through `proxy`;
 * - `dumpLogs()` (optional): prints the store's own output when a test failed;
 * - `close()`: removes what `open` made.
 */
export function useAppStore(store) {
  const ctx = { store, direct: new Scope(), cached: new Scope(), kept: new Scope(), proxies: {}, receiver: null };
  const servers = ['direct', 'cached', 'kept'];
  const marks = new Map();

  before(async () => {
    ctx.receiver = await startReceiver();
    const upstream = await store.open(ctx.receiver);
    for (const table of Object.values(TABLES)) await store.createTable(table);
    for (const item of Object.values(store.apps)) await store.put(TABLES.direct, item);
    for (const table of [TABLES.cached, TABLES.kept]) {
      for (const item of [CACHED_APPS.hit, CACHED_APPS.change]) await store.put(table, item);
    }

    for (const server of servers) ctx.proxies[server] = await startProxy(upstream.port, upstream.host);
    const started = await Promise.all(servers.map((server) => startServer(store.env(ctx.proxies[server], server))));
    servers.forEach((server, i) => {
      ctx[server].server = started[i];
    });
  });

  beforeEach(() => {
    for (const server of servers) marks.set(server, ctx[server].server?.logMark() ?? 0);
  });

  afterEach((t) => {
    if (t.passed === false) {
      const proxy = (p) => JSON.stringify({ mode: p?.mode(), ...p?.stats });
      const proxies = servers.map((server) => `${server} ${proxy(ctx.proxies[server])}`).join(', ');
      ctx.direct.server?.dumpLogs(`test "${t.name}" failed (direct server; proxies: ${proxies})`, marks.get('direct'));
      ctx.cached.server?.dumpLogs(`test "${t.name}" failed (cached server)`, marks.get('cached'));
      ctx.kept.server?.dumpLogs(`test "${t.name}" failed (kept server)`, marks.get('kept'));
      store.dumpLogs?.();
    }
    // A test that failed half-way must not leave the next one without its store.
    for (const server of servers) ctx.proxies[server]?.restore();
    for (const server of servers) ctx[server].closeClients();
  });

  after(async () => {
    for (const server of servers) ctx[server].closeClients();
    await Promise.all(servers.map((server) => ctx[server].server?.stop()));
    await Promise.all([...servers.map((server) => ctx.proxies[server]?.close()), ctx.receiver?.close()]);
    await store.close();
  });

  return ctx;
}

/** `a row`, `an item`. */
const withArticle = (word) => `${/^[aeiou]/i.test(word) ? 'an' : 'a'} ${word}`;

/**
 * Declares `describe('lookups')`: a key and an id found only in the table, and the default app's
 * unknown to it; `own()` declares the store's own lookup tests after it.
 */
export function describeLookups(ctx, own = () => {}) {
  const { direct, store } = ctx;
  describe('lookups', () => {
    it('a pusher-js client connects with a key found only in the table and gets what the SDK publishes by id; app-key and an unknown key get 4001', async () => {
      const scope = direct.forApp(store.apps.main);
      const client = await scope.connectedPusher();
      const name = uniqueChannel();
      const { channel } = await subscribe(client, name);
      const received = waitFor(channel, 'greeting');
      // Signed with the secret of the table: the server finds the app by id and checks it.
      const res = await scope.sdk().trigger(name, 'greeting', { from: 'the table' });
      assert.equal(res.status, 200);
      assert.deepEqual(await received, { from: 'the table' });

      // The server's default app is not in the table: neither its key nor its id is known.
      await assertRefused(await direct.raw(direct.server.wsUrl(APP.key)), 4001);
      await assertRefused(await direct.raw(direct.server.wsUrl('no-such-key')), 4001);
      assertHttpError(await publish(direct.server), 404);
    });

    own();
  });
}

/** Declares `describe('the cache (TTL 1 s, and an hour)')` over the `kept` and `cached` servers. */
export function describeCache(ctx) {
  const { cached, kept, proxies, store } = ctx;
  const { name, item } = store;

  describe(`the cache (TTL ${TTL_MS / 1000} s, and an hour)`, () => {
    /** Asserts that a `kept` test stayed within its TTL, as it always does, and says so if not. */
    const assertWithinKeptTtl = (started) => {
      const elapsed = Date.now() - started;
      assert.ok(elapsed < KEPT_TTL_MS, `the test took ${elapsed} ms, past the kept server's TTL: nothing above was within it`);
    };

    it(`a second lookup within the TTL sends nothing to ${name}, even when it is gone; after the TTL it asks again`, async () => {
      // Within the TTL (the `kept` server).
      const within = kept.forApp(CACHED_APPS.hit);
      const keptFrom = Date.now();
      // One lookup by key (WebSocket) and one by id (HTTP API) fill the cache.
      await (await within.rawConnected()).ping();
      assert.equal((await publish(within.server)).status, 200);

      // Counted at the proxy: more lookups of the same app send nothing to the store.
      const counted = { ...proxies.kept.stats };
      await within.rawConnected();
      await within.rawConnected();
      assert.equal((await publish(within.server)).status, 200);
      assert.equal(proxies.kept.stats.bytesUp, counted.bytesUp, `bytes sent to ${name} by cached lookups`);
      assert.equal(proxies.kept.stats.accepted, counted.accepted, `connections to ${name} opened by cached lookups`);

      // With the store gone, both lookups still answer from the cache.
      proxies.kept.cut();
      const again = await connectOutcome(within);
      const api = await publish(within.server);
      assert.ok(again.established, `a connection within the TTL with ${name} gone: ${again.client.describeHistory()}`);
      assertNotFailed(api, `a publish within the TTL with ${name} gone`);
      assertWithinKeptTtl(keptFrom);
      proxies.kept.restore();

      // After the TTL (the `cached` server): the store is asked again; it is gone, so 4100
      // (errors are not cached), and not before the entry can have expired.
      const scope = cached.forApp(CACHED_APPS.hit);
      const started = Date.now();
      await (await scope.rawConnected()).ping();
      proxies.cached.cut();
      const expired = await untilOutcome(
        scope,
        (outcome) => (outcome.established ? null : { ...outcome, at: Date.now() - started }),
        { timeout: TTL_MS + OUTAGE_ANSWER_MS, interval: 100, what: `the cache entry to expire while ${name} is gone` },
      );
      assert.equal(expired.code, 4100, `refusal after the TTL with ${name} gone`);
      assert.ok(expired.at >= EARLIEST_EXPIRY_MS, `the entry expired ${expired.at} ms after the first lookup, before the TTL`);

      proxies.cached.restore();
      await untilOutcome(scope, (outcome) => outcome.established, {
        timeout: RECOVERY_MS,
        interval: 100,
        what: `lookups to work again once ${name} is back`,
      });
    });

    it(`${withArticle(item)} changed in the table (${store.disabled}) takes effect after the TTL, not before`, async () => {
      // Each clock starts before its server's first lookup, so that an entry cannot be older
      // than it says.
      const keptFrom = Date.now();
      await kept.forApp(CACHED_APPS.change).rawConnected();
      const started = Date.now();
      await cached.forApp(CACHED_APPS.change).rawConnected();
      for (const table of [TABLES.kept, TABLES.cached]) await store.disable(table, CACHED_APPS.change.id);

      // Within the TTL the cached (enabled) app is used.
      const soon = await connectOutcome(kept.forApp(CACHED_APPS.change));
      assert.ok(soon.established, `within the TTL the cached (enabled) ${item} is used: ${soon.client.describeHistory()}`);
      assertWithinKeptTtl(keptFrom);

      // After it, the disabled one.
      const scope = cached.forApp(CACHED_APPS.change);
      const refused = await untilOutcome(
        scope,
        (outcome) => (outcome.established ? null : { ...outcome, at: Date.now() - started }),
        { timeout: TTL_MS + 4_000, interval: 50, what: `the disabled ${item} to take effect` },
      );
      assert.equal(refused.code, 4003, 'a disabled app');
      assert.ok(refused.at >= EARLIEST_EXPIRY_MS, `the change took effect ${refused.at} ms after the first lookup, before the TTL`);
    });

    it(`"not found" is cached too: ${withArticle(item)} ${store.inserted} after a 4001 is found after the TTL, not before`, async () => {
      const keptFrom = Date.now();
      await assertRefused(await kept.forApp(CACHED_APPS.late).raw(), 4001);
      const started = Date.now();
      await assertRefused(await cached.forApp(CACHED_APPS.late).raw(), 4001);
      for (const table of [TABLES.kept, TABLES.cached]) await store.put(table, CACHED_APPS.late);

      // Within the TTL the cached "not found" is used.
      const soon = await connectOutcome(kept.forApp(CACHED_APPS.late));
      assert.equal(soon.code, 4001, `within the TTL the cached "not found" is used: ${soon.client.describeHistory()}`);
      assertWithinKeptTtl(keptFrom);

      // After it, the new app.
      const scope = cached.forApp(CACHED_APPS.late);
      const found = await untilOutcome(
        scope,
        (outcome) => (outcome.established ? { at: Date.now() - started } : null),
        { timeout: TTL_MS + 4_000, interval: 50, what: `the new ${item} to be found` },
      );
      assert.ok(found.at >= EARLIEST_EXPIRY_MS, `the new ${item} was found ${found.at} ms after the first lookup, before the TTL`);
    });
  });
}

/**
 * Declares `describe('<the store> going away (no cache)')`: the `direct` server's proxy cut
 * (connections reset and refused) and turned into a black hole (accepted, never answered).
 */
export function describeOutage(ctx) {
  const { direct, proxies, store } = ctx;
  const { name } = store;

  describe(`${name} going away (no cache)`, () => {
    for (const how of ['cut', 'blackhole']) {
      const what = how === 'cut' ? 'connections reset and refused' : 'connections accepted, nothing answered';
      it(`${how} (${what}): the API answers 503 and a new WebSocket gets 4100 within ${OUTAGE_ANSWER_MS / 1000} s; once restored both work again, same process`, async () => {
        const scope = direct.forApp(store.apps.outage);
        const pid = scope.server.pid;
        // Warm the server's connections to the store (a pool, an HTTP client), and keep one
        // WebSocket open across the outage.
        const survivor = await scope.rawConnected();
        assert.equal((await publish(scope.server)).status, 200);

        proxies.direct[how]();
        const [api, ws] = await Promise.all([timedPublish(scope.server), connectOutcome(scope)]);
        assertHttpError(api.res, 503);
        assert.ok(api.ms < OUTAGE_ANSWER_MS, `the API answered after ${api.ms} ms`);
        assert.ok(!ws.established, `a new connection while ${name} is away: ${ws.client.describeHistory()}`);
        assert.equal(ws.code, 4100, ws.client.describeHistory());
        const { code: closeCode } = await ws.client.closed();
        assert.equal(closeCode, 4100, ws.client.describeHistory());
        assert.ok(ws.ms < OUTAGE_ANSWER_MS, `the WebSocket was refused after ${ws.ms} ms`);
        // A connection made before the outage needs no lookup to keep working.
        await survivor.ping();

        proxies.direct.restore();
        const recovered = await until(
          async () => {
            const [res, outcome] = await Promise.all([publish(scope.server), connectOutcome(scope)]);
            outcome.client.terminate();
            return res.status === 200 && outcome.established ? true : null;
          },
          { timeout: RECOVERY_MS, interval: 100, what: `the API (200) and a WebSocket (established) to work once ${name} is back` },
        );
        assert.ok(recovered);
        assert.equal(scope.server.exitInfo(), null, 'the server is still running');
        assert.equal(scope.server.pid, pid);
      });
    }
  });
}
