// Apps from soketi's SQL table (`SOKETI_APP_MANAGER_DRIVER=postgres|mysql`), one `describe` per
// backend: the machine's PostgreSQL and MariaDB (see sql.mjs). Each describe creates its own
// database with three tables of soketi's layout, `apps` (the default table name), `apps_cached`
// and `apps_kept` (SOKETI_APP_MANAGER_*_TABLE), and starts three servers, `direct` (no cache),
// `cached` (TTL 1 s) and `kept` (TTL an hour), each reaching the database through its own
// cuttable TCP proxy (app-store-checks.mjs's `useAppStore`). The lookups, the cache and the
// database going away are checked as for every app store (app-store-checks.mjs); this file adds
// what is the SQL table's own: its columns, the NULL limits.
//
// Every app is used by one test only, so counters and cache entries never cross tests.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { assertHttpError, uniqueChannel } from './harness.mjs';
import { BACKENDS, createAppsTable, createDatabase, dropLeftovers, insertApp, probe, sqlSkip, updateApp } from './sql.mjs';
import { KEPT_TTL_MS, TABLES, TTL_MS, app, assertClientEvent, assertRefused, nextAppEvent, publish } from './app-store-checks.mjs';
import { describeCache, describeLookups, describeOutage, useAppStore } from './app-store-checks.mjs';

const APPS = {
  main: app('main'),
  disabled: app('disabled', { enabled: false }),
  oneConn: app('one-conn', { max_connections: 1 }),
  clientOn: app('client-on', { enable_client_messages: true }),
  shortNames: app('short-names', { max_event_name_length: 20 }),
  hooks: app('hooks'), // its webhooks column is set once the receiver listens
  outage: app('outage'),
};

// Reachability is known before the describes are declared, so that they can be skipped.
const PROBES = Object.fromEntries(
  await Promise.all(Object.values(BACKENDS).map(async (backend) => [backend.id, await probe(backend)])),
);

/** The app store of app-store-checks.mjs for a database of its own on `backend`. */
function sqlStore(backend, unreachable) {
  let database = null;
  return {
    name: 'the database',
    item: 'row',
    inserted: 'inserted',
    disabled: 'app disabled',
    apps: APPS,
    async open(receiver) {
      if (unreachable) {
        throw new Error(`SOKETI_TEST_REQUIRE_ALL=1 and ${unreachable}`);
      }
      await dropLeftovers(backend);
      database = await createDatabase(backend);
      APPS.hooks.webhooks = [{ url: receiver.url('/hooks'), event_types: ['channel_occupied'] }];
      return { port: backend.port, host: backend.host };
    },
    createTable: (table) => database.sql(createAppsTable(backend, table)),
    put: (table, row) => database.sql(insertApp(backend, table, row)),
    disable: (table, id) => database.sql(updateApp(backend, table, id, { enabled: false })),
    env(proxy, server) {
      const env = {
        SOKETI_APP_MANAGER_DRIVER: backend.driver,
        [`${backend.envPrefix}HOST`]: '127.0.0.1',
        [`${backend.envPrefix}PORT`]: String(proxy.port),
        [`${backend.envPrefix}USERNAME`]: backend.user,
        // Empty: the server must not send a password (trust auth, MariaDB's root without one).
        [`${backend.envPrefix}PASSWORD`]: '',
        [`${backend.envPrefix}DATABASE`]: database.name,
      };
      if (server === 'direct') return env;
      return {
        ...env,
        [backend.tableEnv]: TABLES[server],
        SOKETI_APP_MANAGER_CACHE_ENABLED: 'true',
        SOKETI_APP_MANAGER_CACHE_TTL: String((server === 'cached' ? TTL_MS : KEPT_TTL_MS) / 1000),
      };
    },
    close: () => database?.drop(),
  };
}

for (const backend of Object.values(BACKENDS)) {
  const unreachable = PROBES[backend.id];

  describe(`apps from ${backend.label} (SOKETI_APP_MANAGER_DRIVER=${backend.driver})`, { skip: sqlSkip(unreachable) }, () => {
    const ctx = useAppStore(sqlStore(backend, unreachable));
    const { direct } = ctx;

    describeLookups(ctx, () => {
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
        await assertClientEvent(direct.forApp(APPS.clientOn), true);
        await assertClientEvent(direct.forApp(APPS.main), false);
      });

      it('the webhooks column (JSON) is read: channel_occupied reaches its URL', async () => {
        const scope = direct.forApp(APPS.hooks);
        const channel = uniqueChannel();
        await scope.rawSubscribed(channel);
        const [event] = await ctx.receiver.waitForEvents((e) => e.name === 'channel_occupied' && e.channel === channel, 1);
        assert.equal(event.request.headers['x-pusher-key'], APPS.hooks.key);
      });
    });

    describeCache(ctx);
    describeOutage(ctx);
  });
}

