// Apps from soketi's DynamoDB table (`APP_MANAGER_DRIVER=dynamodb`), against moto's DynamoDB on
// loopback (aws.mjs): tables made with soketi's hash key `AppId` and its global secondary index
// `AppKeyIndex` on `AppKey`, and items in soketi's layout (flags as the bytes of "true" or
// "false", B; quotas and limits as N; the webhook list as JSON text, S), which the server reads
// by key through a Query on the index and by id through GetItem. The expectations are the SQL
// app managers' (app-managers.test.mjs): the same refusals, limits, cache and outages.
//
// Three tables, `apps` (the default name), `apps_cached` and `apps_kept`, and three servers,
// `direct` (no cache, APP_MANAGER_DYNAMODB_TABLE unset), `cached` (TTL 1 s) and `kept` (TTL an
// hour), each reaching moto through its own cuttable TCP proxy (app-store-checks.mjs's
// `useAppStore`). The lookups, the cache and DynamoDB going away are checked as for every app
// store (app-store-checks.mjs); this file adds what is DynamoDB's own: the table as moto holds
// it, the attributes and their B and BOOL flags, an item of the three keys alone.
//
// Every app is used by one test only, so counters and cache entries never cross tests.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { APP, assertHttpError, parseData, uniqueChannel } from './harness.mjs';
import { awsEnv, createAppsTable, getApp, motoSkip, putApp, queryAppKey, startMoto, updateApp } from './aws.mjs';
import { KEPT_TTL_MS, TABLES, TTL_MS, app, assertClientEvent, assertRefused, nextAppEvent, publish } from './app-store-checks.mjs';
import { describeCache, describeLookups, describeOutage, useAppStore } from './app-store-checks.mjs';
import { assertWebhookRequest } from './webhook-checks.mjs';

const USER_AUTHENTICATION_TIMEOUT_MS = 500;

// Apps are written by aws.mjs's `appItem`.
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

/** A channel name of exactly `length` characters that no other test uses. */
function channelOfLength(length, prefix = '') {
  const base = uniqueChannel(prefix);
  assert.ok(base.length <= length, `${base} is longer than ${length}`);
  return base + 'x'.repeat(length - base.length);
}

describe('apps from DynamoDB (APP_MANAGER_DRIVER=dynamodb, moto)', { skip: motoSkip() }, () => {
  let moto = null;
  const ctx = useAppStore({
    name: 'DynamoDB',
    item: 'item',
    inserted: 'put',
    disabled: 'Enabled "false"',
    apps: APPS,
    async open(receiver) {
      moto = await startMoto();
      APPS.hooks.Webhooks = [{ url: receiver.url('/hooks'), event_types: ['channel_occupied'] }];
      return { port: moto.port };
    },
    createTable: (table) => createAppsTable(moto, table),
    put: (table, item) => putApp(moto, table, item),
    disable: (table, id) => updateApp(moto, table, id, { Enabled: false }),
    env(proxy, server) {
      const env = {
        SOKETI_APP_MANAGER_DRIVER: 'dynamodb',
        SOKETI_APP_MANAGER_DYNAMODB_ENDPOINT: `http://127.0.0.1:${proxy.port}`,
        SOKETI_USER_AUTHENTICATION_TIMEOUT: String(USER_AUTHENTICATION_TIMEOUT_MS),
      };
      if (server === 'cached') {
        return awsEnv({
          ...env,
          SOKETI_APP_MANAGER_DYNAMODB_TABLE: TABLES.cached,
          SOKETI_APP_MANAGER_DYNAMODB_REGION: 'us-east-1',
          SOKETI_APP_MANAGER_CACHE_ENABLED: 'true',
          SOKETI_APP_MANAGER_CACHE_TTL: String(TTL_MS / 1000),
        });
      }
      if (server === 'kept') {
        // soketi's own names, without the SOKETI_ prefix.
        return awsEnv({
          ...env,
          APP_MANAGER_DYNAMODB_TABLE: TABLES.kept,
          APP_MANAGER_CACHE_ENABLED: 'true',
          APP_MANAGER_CACHE_TTL: String(KEPT_TTL_MS / 1000),
        });
      }
      return awsEnv(env);
    },
    dumpLogs() {
      if (moto) process.stderr.write(`\n----- moto_server output (port ${moto.port}) -----\n${moto.logs().slice(-8_000)}\n-----\n`);
    },
    close: () => moto?.stop(),
  });
  const { direct } = ctx;

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

  describeLookups(ctx, () => {
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
      await assertClientEvent(direct.forApp(APPS.boolFlags), true);
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
      await assertClientEvent(direct.forApp(APPS.clientOn), true);
      await assertClientEvent(direct.forApp(APPS.main), false);
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
      const [event] = await ctx.receiver.waitForEvents((e) => e.name === 'channel_occupied' && e.channel === channel, 1);
      assertWebhookRequest(event.request, APPS.hooks, { headers: {} });
    });
  });

  describeCache(ctx);
  describeOutage(ctx);
});
