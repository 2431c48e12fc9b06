// Apps from soketi's SQL table (`SOKETI_APP_MANAGER_DRIVER=postgres|mysql`), one `describe` per
// backend: the machine's PostgreSQL and MariaDB (see sql.mjs). Each describe creates its own
// database with three tables of soketi's layout, `apps` (the default table name), `apps_cached`
// and `apps_kept` (SOKETI_APP_MANAGER_*_TABLE), and starts three servers, each reaching the
// database through its own cuttable TCP proxy:
// - `direct`: no cache, table `apps`: lookups, refusals, limits, the database going away;
// - `cached`: SOKETI_APP_MANAGER_CACHE_ENABLED=true, TTL 1 s, table `apps_cached`: what happens
//   once the TTL is over, and that it does not happen sooner (checked from below, so a busy
//   machine, which only makes things later, cannot fail it);
// - `kept`: the same with a TTL of an hour, table `apps_kept`: what happens within the TTL. No
//   test comes near an hour, so "within the TTL" always applies and is always asserted, however
//   slow the machine (each test still asserts the time it took, to say so if it ever did not).
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
import {
  BACKENDS,
  createAppsTable,
  createDatabase,
  dropLeftovers,
  insertApp,
  probe,
  sqlSkip,
  startProxy,
  updateApp,
} from './sql.mjs';
import { startReceiver } from './webhook-receiver.mjs';

const TTL_MS = 1_000;
/** The TTL of the `kept` server, which no test comes near. */
const KEPT_TTL_MS = 3_600_000;
/** A changed row must not be seen before the entry can have expired (timer slack allowed). */
const EARLIEST_EXPIRY_MS = TTL_MS - 50;
const OUTAGE_ANSWER_MS = 5_000;
const RECOVERY_MS = 10_000;

/** An app row named `name` with the given extra columns. */
function app(name, columns = {}) {
  return { id: `${name}-id`, key: `${name}-key`, secret: `${name}-secret`, ...columns };
}

const APPS = {
  main: app('main'),
  disabled: app('disabled', { enabled: false }),
  oneConn: app('one-conn', { max_connections: 1 }),
  clientOn: app('client-on', { enable_client_messages: true }),
  shortNames: app('short-names', { max_event_name_length: 20 }),
  hooks: app('hooks'), // its webhooks column is set once the receiver listens
  outage: app('outage'),
};

// Rows of both `apps_cached` and `apps_kept`.
const CACHED_APPS = {
  hit: app('hit'),
  change: app('change'),
  // `late` is not in the tables at first: its row is inserted by the test.
  late: app('late'),
};

// Reachability is known before the describes are declared, so that they can be skipped.
const PROBES = Object.fromEntries(
  await Promise.all(Object.values(BACKENDS).map(async (backend) => [backend.id, await probe(backend)])),
);

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

for (const backend of Object.values(BACKENDS)) {
  const unreachable = PROBES[backend.id];

  describe(`apps from ${backend.label} (SOKETI_APP_MANAGER_DRIVER=${backend.driver})`, { skip: sqlSkip(unreachable) }, () => {
    const direct = new Scope();
    const cached = new Scope();
    const kept = new Scope();
    let database = null;
    let directProxy = null;
    let cachedProxy = null;
    let keptProxy = null;
    let receiver = null;
    const marks = new Map();

    /** The server environment for the database behind `proxy`. */
    const serverEnv = (proxy, extra = {}) => ({
      SOKETI_APP_MANAGER_DRIVER: backend.driver,
      [`${backend.envPrefix}HOST`]: '127.0.0.1',
      [`${backend.envPrefix}PORT`]: String(proxy.port),
      [`${backend.envPrefix}USERNAME`]: backend.user,
      // Empty: the server must not send a password (trust auth, MariaDB's root without one).
      [`${backend.envPrefix}PASSWORD`]: '',
      [`${backend.envPrefix}DATABASE`]: database.name,
      ...extra,
    });

    before(async () => {
      if (unreachable) {
        throw new Error(`SOKETI_TEST_REQUIRE_ALL=1 and ${unreachable}`);
      }
      await dropLeftovers(backend);
      database = await createDatabase(backend);
      receiver = await startReceiver();
      APPS.hooks.webhooks = [{ url: receiver.url('/hooks'), event_types: ['channel_occupied'] }];
      await database.sql(createAppsTable(backend, 'apps'));
      await database.sql(createAppsTable(backend, 'apps_cached'));
      await database.sql(createAppsTable(backend, 'apps_kept'));
      for (const row of Object.values(APPS)) await database.sql(insertApp(backend, 'apps', row));
      for (const table of ['apps_cached', 'apps_kept']) {
        for (const row of [CACHED_APPS.hit, CACHED_APPS.change]) await database.sql(insertApp(backend, table, row));
      }

      directProxy = await startProxy(backend.port, backend.host);
      cachedProxy = await startProxy(backend.port, backend.host);
      keptProxy = await startProxy(backend.port, backend.host);
      const cacheEnv = (proxy, table, ttlMs) =>
        serverEnv(proxy, {
          [backend.tableEnv]: table,
          SOKETI_APP_MANAGER_CACHE_ENABLED: 'true',
          SOKETI_APP_MANAGER_CACHE_TTL: String(ttlMs / 1000),
        });
      [direct.server, cached.server, kept.server] = await Promise.all([
        startServer(serverEnv(directProxy)),
        startServer(cacheEnv(cachedProxy, 'apps_cached', TTL_MS)),
        startServer(cacheEnv(keptProxy, 'apps_kept', KEPT_TTL_MS)),
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
      }
      // A test that failed half-way must not leave the next one without its database.
      for (const proxy of [directProxy, cachedProxy, keptProxy]) proxy?.restore();
      for (const scope of [direct, cached, kept]) scope.closeClients();
    });

    after(async () => {
      for (const scope of [direct, cached, kept]) scope.closeClients();
      await Promise.all([direct.server?.stop(), cached.server?.stop(), kept.server?.stop()]);
      await Promise.all([directProxy?.close(), cachedProxy?.close(), keptProxy?.close(), receiver?.close()]);
      await database?.drop();
    });

    describe('lookups', () => {
      it('a pusher-js client connects with a key found only in the table and gets what the SDK publishes by id; app-key gets 4001', async () => {
        const scope = direct.forApp(APPS.main);
        const client = await scope.connectedPusher();
        const name = uniqueChannel();
        const { channel } = await subscribe(client, name);
        const received = waitFor(channel, 'greeting');
        const res = await scope.sdk().trigger(name, 'greeting', { from: 'the table' });
        assert.equal(res.status, 200);
        assert.deepEqual(await received, { from: 'the table' });

        // The server's default app is not in the table: neither its key nor its id is known.
        await assertRefused(await direct.raw(direct.server.wsUrl(APP.key)), 4001);
        assertHttpError(await publish(direct.server), 404);
      });

      it('a disabled app (enabled false) is refused with 4003', async () => {
        await assertRefused(await direct.forApp(APPS.disabled).raw(), 4003);
      });
    });

    describe("a row's limits", () => {
      it('max_connections 1: the second connection gets 4100, the first keeps working', async () => {
        const scope = direct.forApp(APPS.oneConn);
        const first = await scope.rawConnected();
        await assertRefused(await scope.raw(), 4100);
        await first.ping();
      });

      it('NULL limits fall back to the defaults: a 150-character event name is accepted, 201 is refused with 400', async () => {
        const scope = direct.forApp(APPS.main);
        const channel = uniqueChannel();
        const receiverClient = await scope.rawSubscribed(channel);
        const longName = 'n'.repeat(150);
        assert.equal((await publish(scope.server, channel, longName)).status, 200);
        assert.equal((await nextAppEvent(receiverClient)).event, longName, receiverClient.describeHistory());
        assertHttpError(await publish(scope.server, channel, 'n'.repeat(201)), 400);
      });

      it('max_event_name_length 20: 20 characters are accepted, 21 refused with 400', async () => {
        const scope = direct.forApp(APPS.shortNames);
        assert.equal((await publish(scope.server, uniqueChannel(), 'n'.repeat(20))).status, 200);
        assertHttpError(await publish(scope.server, uniqueChannel(), 'n'.repeat(21)), 400);
      });

      it('enable_client_messages true lets a client event through; false refuses it with 4301', async () => {
        for (const [row, allowed] of [[APPS.clientOn, true], [APPS.main, false]]) {
          const scope = direct.forApp(row);
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

      it('the webhooks column (JSON) is read: channel_occupied reaches its URL', async () => {
        const scope = direct.forApp(APPS.hooks);
        const channel = uniqueChannel();
        await scope.rawSubscribed(channel);
        const [event] = await receiver.waitForEvents((e) => e.name === 'channel_occupied' && e.channel === channel, 1);
        assert.equal(event.request.headers['x-pusher-key'], APPS.hooks.key);
      });
    });

    describe(`the cache (TTL ${TTL_MS / 1000} s, and an hour)`, () => {
      /** Asserts that a `kept` test stayed within its TTL, as it always does, and says so if not. */
      const assertWithinKeptTtl = (started) => {
        const elapsed = Date.now() - started;
        assert.ok(elapsed < KEPT_TTL_MS, `the test took ${elapsed} ms, past the kept server's TTL: nothing above was within it`);
      };

      it('a second lookup within the TTL does not query the database, even when it is gone; after the TTL it does', async () => {
        // Within the TTL (the `kept` server).
        const within = kept.forApp(CACHED_APPS.hit);
        const keptFrom = Date.now();
        // One lookup by key (WebSocket) and one by id (HTTP API) fill the cache.
        await (await within.rawConnected()).ping();
        assert.equal((await publish(within.server)).status, 200);

        // Counted at the proxy: more lookups of the same app send nothing to the database.
        const counted = { ...keptProxy.stats };
        await within.rawConnected();
        await within.rawConnected();
        assert.equal((await publish(within.server)).status, 200);
        assert.equal(keptProxy.stats.bytesUp, counted.bytesUp, 'bytes sent to the database by cached lookups');
        assert.equal(keptProxy.stats.accepted, counted.accepted, 'database connections opened by cached lookups');

        // With the database gone, both lookups still answer from the cache.
        keptProxy.cut();
        const again = await connectOutcome(within);
        const api = await publish(within.server);
        assert.ok(again.established, `a connection within the TTL with the database gone: ${again.client.describeHistory()}`);
        assertNotFailed(api, 'a publish within the TTL with the database gone');
        assertWithinKeptTtl(keptFrom);
        keptProxy.restore();

        // After the TTL (the `cached` server): the database is asked again; it is gone, so 4100
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
          { timeout: TTL_MS + OUTAGE_ANSWER_MS, interval: 100, what: 'the cache entry to expire while the database is gone' },
        );
        assert.equal(expired.code, 4100, `refusal after the TTL with the database gone`);
        assert.ok(expired.at >= EARLIEST_EXPIRY_MS, `the entry expired ${expired.at} ms after the first lookup, before the TTL`);

        cachedProxy.restore();
        await until(async () => {
          const outcome = await connectOutcome(scope);
          outcome.client.terminate();
          return outcome.established;
        }, { timeout: RECOVERY_MS, interval: 100, what: 'lookups to work again once the database is back' });
      });

      it('a row changed in the table (app disabled) takes effect after the TTL, not before', async () => {
        // Each clock starts before its server's first lookup, so that an entry cannot be older
        // than it says.
        const keptFrom = Date.now();
        await kept.forApp(CACHED_APPS.change).rawConnected();
        const started = Date.now();
        await cached.forApp(CACHED_APPS.change).rawConnected();
        for (const table of ['apps_kept', 'apps_cached']) {
          await database.sql(updateApp(backend, table, CACHED_APPS.change.id, { enabled: false }));
        }

        // Within the TTL the cached (enabled) row is used.
        const soon = await connectOutcome(kept.forApp(CACHED_APPS.change));
        assert.ok(soon.established, `within the TTL the cached (enabled) row is used: ${soon.client.describeHistory()}`);
        assertWithinKeptTtl(keptFrom);

        // After it, the disabled row.
        const scope = cached.forApp(CACHED_APPS.change);
        const refused = await until(
          async () => {
            const outcome = await connectOutcome(scope);
            outcome.client.terminate();
            return outcome.established ? null : { ...outcome, at: Date.now() - started };
          },
          { timeout: TTL_MS + 4_000, interval: 50, what: 'the disabled row to take effect' },
        );
        assert.equal(refused.code, 4003, 'a disabled app');
        assert.ok(refused.at >= EARLIEST_EXPIRY_MS, `the change took effect ${refused.at} ms after the first lookup, before the TTL`);
      });

      it('"not found" is cached too: a row inserted after a 4001 is found after the TTL, not before', async () => {
        const keptFrom = Date.now();
        await assertRefused(await kept.forApp(CACHED_APPS.late).raw(), 4001);
        const started = Date.now();
        await assertRefused(await cached.forApp(CACHED_APPS.late).raw(), 4001);
        for (const table of ['apps_kept', 'apps_cached']) await database.sql(insertApp(backend, table, CACHED_APPS.late));

        // Within the TTL the cached "not found" is used.
        const soon = await connectOutcome(kept.forApp(CACHED_APPS.late));
        assert.equal(soon.code, 4001, `within the TTL the cached "not found" is used: ${soon.client.describeHistory()}`);
        assertWithinKeptTtl(keptFrom);

        // After it, the new row.
        const scope = cached.forApp(CACHED_APPS.late);
        const found = await until(
          async () => {
            const outcome = await connectOutcome(scope);
            outcome.client.terminate();
            return outcome.established ? { at: Date.now() - started } : null;
          },
          { timeout: TTL_MS + 4_000, interval: 50, what: 'the inserted row to be found' },
        );
        assert.ok(found.at >= EARLIEST_EXPIRY_MS, `the new row was found ${found.at} ms after the first lookup, before the TTL`);
      });
    });

    describe('the database going away (no cache)', () => {
      for (const how of ['cut', 'blackhole']) {
        const what = how === 'cut' ? 'connections reset and refused' : 'connections accepted, nothing answered';
        it(`${how} (${what}): the API answers 503 and a new WebSocket gets 4100 within ${OUTAGE_ANSWER_MS / 1000} s; once restored both work again, same process`, async () => {
          const scope = direct.forApp(APPS.outage);
          const pid = scope.server.pid;
          // Warm the pool, and keep one connection open across the outage.
          const survivor = await scope.rawConnected();
          assert.equal((await publish(scope.server)).status, 200);

          directProxy[how]();
          const [api, ws] = await Promise.all([timedPublish(scope.server), connectOutcome(scope)]);
          assertHttpError(api.res, 503);
          assert.ok(api.ms < OUTAGE_ANSWER_MS, `the API answered after ${api.ms} ms`);
          assert.ok(!ws.established, `a new connection while the database is away: ${ws.client.describeHistory()}`);
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
            { timeout: RECOVERY_MS, interval: 100, what: 'the API (200) and a WebSocket (established) to work once the database is back' },
          );
          assert.ok(recovered);
          assert.equal(scope.server.exitInfo(), null, 'the server is still running');
          assert.equal(scope.server.pid, pid);
        });
      }
    });
  });
}

/** Asserts a raw API answer was a success. */
function assertNotFailed(res, what) {
  assert.equal(res.status, 200, `${what}: ${res.status} ${res.text}`);
}
