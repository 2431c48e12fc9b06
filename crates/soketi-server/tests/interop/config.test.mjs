// Configuration: the default app's credentials and the limits set through the environment (far
// from their defaults so that each one is seen to take effect); the sources and their
// precedence (defaults < config file < unprefixed names < SOKETI_ names) as `soketi-server
// config` prints them; config files in every format driving a real server; and the values that
// stop start-up with one line naming the option and where it came from.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { describe, it } from 'node:test';

import {
  APP,
  assertHttpError,
  effectiveConfig,
  failedStart,
  freePort,
  parseData,
  pusherServer,
  scratch,
  sdkFailure,
  signedRequest,
  subscribe,
  subscribeData,
  uniqueChannel,
  useServer,
  waitFor,
  writeConfig,
} from './harness.mjs';

/** A channel name of exactly `length` characters that no other test uses. */
function channelOfLength(length) {
  const base = uniqueChannel();
  assert.ok(base.length <= length, `${base} is longer than ${length}`);
  return base + 'x'.repeat(length - base.length);
}

describe('custom default app credentials', () => {
  const scope = useServer({
    SOKETI_DEFAULT_APP_ID: 'custom-id',
    SOKETI_DEFAULT_APP_KEY: 'custom-key',
    SOKETI_DEFAULT_APP_SECRET: 'custom-secret',
  });

  it('serves pusher-js and the SDK with the configured id, key and secret', async () => {
    assert.equal(scope.server.key, 'custom-key');
    const name = uniqueChannel('private-');
    const client = await scope.connectedPusher();
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'configured');
    const res = await scope.sdk().trigger(name, 'configured', { ok: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(await received, { ok: 1 });
  });

  it('no longer knows the stock key, id or secret', async () => {
    const client = await scope.raw(scope.server.wsUrl('app-key'));
    assert.equal(parseData(await client.next('pusher:error')).code, 4001);
    assert.equal((await client.closed()).code, 4001);

    const stockId = pusherServer(scope.server, { appId: 'app-id' });
    assertHttpError(await sdkFailure(stockId.trigger(uniqueChannel(), 'e', {})), 404);
    const stockSecret = pusherServer(scope.server, { secret: 'app-secret' });
    assertHttpError(await sdkFailure(stockSecret.trigger(uniqueChannel(), 'e', {})), 401);
  });
});

describe('custom limits', () => {
  const scope = useServer({
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    SOKETI_EVENT_MAX_SIZE_IN_KB: '1',
    SOKETI_EVENT_MAX_CHANNELS_AT_ONCE: '2',
    SOKETI_EVENT_MAX_BATCH_SIZE: '2',
    SOKETI_EVENT_MAX_NAME_LENGTH: '20',
    SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH: '40',
    SOKETI_PRESENCE_MAX_MEMBER_SIZE: '1',
  });

  it('applies SOKETI_EVENT_MAX_SIZE_IN_KB to published data', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(800))).status, 200);
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(1500))), 413);
  });

  it('applies SOKETI_EVENT_MAX_CHANNELS_AT_ONCE', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger([uniqueChannel(), uniqueChannel()], 'e', {})).status, 200);
    const three = [uniqueChannel(), uniqueChannel(), uniqueChannel()];
    assertHttpError(await sdkFailure(sdk.trigger(three, 'e', {})), 400);
  });

  it('applies SOKETI_EVENT_MAX_BATCH_SIZE', async () => {
    const sdk = scope.sdk();
    const batch = (n) => Array.from({ length: n }, () => ({ channel: uniqueChannel(), name: 'e', data: {} }));
    assert.equal((await sdk.triggerBatch(batch(2))).status, 200);
    assertHttpError(await sdkFailure(sdk.triggerBatch(batch(3))), 400);
  });

  it('applies SOKETI_EVENT_MAX_NAME_LENGTH to published events', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger(uniqueChannel(), 'e'.repeat(20), {})).status, 200);
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e'.repeat(21), {})), 400);
  });

  it('applies SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH to subscriptions', async () => {
    const client = await scope.rawConnected();
    await client.subscribeOk(channelOfLength(40));
    const tooLong = channelOfLength(41);
    client.send({ event: 'pusher:subscribe', data: { channel: tooLong } });
    const frame = await client.next(
      (f) => f.event === 'pusher:error' || (f.channel === tooLong && f.event?.startsWith('pusher')),
    );
    assert.ok(
      frame.event === 'pusher:subscription_error' || frame.event === 'pusher:error',
      `expected a refusal, got ${JSON.stringify(frame)}`,
    );
    await client.ping();
  });

  it('applies SOKETI_PRESENCE_MAX_MEMBER_SIZE', async () => {
    const channel = uniqueChannel('presence-');
    const small = { user_id: 'small', user_info: { blob: 'x'.repeat(500) } };
    await scope.rawSubscribed(channel, small);

    const client = await scope.rawConnected();
    const big = { user_id: 'big', user_info: { blob: 'x'.repeat(1500) } };
    const frame = await client.subscribe(channel, subscribeData(scope.server, client.socketId, channel, big));
    assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
    assert.equal(parseData(frame).status, 4301);
  });

  it('applies the event size and name limits to client events', async () => {
    const channel = uniqueChannel('private-');
    const receiver = await scope.rawSubscribed(channel);
    const sender = await scope.rawSubscribed(channel);

    sender.send({ event: 'client-big', channel, data: { blob: 'x'.repeat(1500) } });
    assert.equal(parseData(await sender.next('pusher:error')).code, 4301);
    sender.send({ event: `client-${'x'.repeat(14)}`, channel, data: {} });
    assert.equal(parseData(await sender.next('pusher:error')).code, 4301);

    // A client event within both limits still goes through, and is the first to arrive.
    sender.send({ event: 'client-small', channel, data: { blob: 'x'.repeat(500) } });
    const next = await receiver.next((f) => f.event?.startsWith('client-'));
    assert.equal(next.event, 'client-small', receiver.describeHistory());
  });
});

// ---------------------------------------------------------------------------------------------
// Sources and precedence, read back through `soketi-server config`
// ---------------------------------------------------------------------------------------------

const MASK = '********';

/** The value at a dotted option path (`appManager.array.apps.0.id`) of the printed config. */
function option(config, dotted) {
  let value = config;
  for (const part of dotted.split('.')) {
    assert.ok(
      value !== null && typeof value === 'object' && part in value,
      `option ${dotted} is missing (no "${part}") in the printed configuration: ${JSON.stringify(config)}`,
    );
    value = value[part];
  }
  return value;
}

/** Asserts option values of the printed config, `expected` mapping dotted paths to values. */
function assertOptions(config, expected, context) {
  for (const [dotted, value] of Object.entries(expected)) {
    assert.deepEqual(option(config, dotted), value, `${dotted} (${context})`);
  }
}

describe('soketi-server config', () => {
  it('prints the built-in defaults as nested JSON, with the app secret masked', async () => {
    const config = await effectiveConfig();
    assertOptions(
      config,
      {
        host: '0.0.0.0',
        port: 6001,
        mode: 'full',
        debug: false,
        'adapter.driver': 'local',
        'rateLimiter.driver': 'local',
        'appManager.driver': 'array',
        'appManager.array.apps.0.id': 'app-id',
        'appManager.array.apps.0.key': 'app-key',
        'appManager.array.apps.0.secret': MASK,
        'eventLimits.maxNameLength': 200,
        'metrics.enabled': false,
        'metrics.port': 9601,
        shutdownGracePeriod: 3000,
      },
      'nothing set',
    );
  });

  it('lets a config file override a default, an unprefixed name the file, and SOKETI_ the unprefixed name', async () => {
    const file = writeConfig('precedence.json', { eventLimits: { maxNameLength: 50 } });
    const withFile = ['--config', file];
    const [fileOnly, unprefixed, prefixed, envOnly] = await Promise.all([
      effectiveConfig({}, withFile),
      effectiveConfig({ EVENT_MAX_NAME_LENGTH: '60' }, withFile),
      effectiveConfig({ EVENT_MAX_NAME_LENGTH: '60', SOKETI_EVENT_MAX_NAME_LENGTH: '70' }, withFile),
      effectiveConfig({ EVENT_MAX_NAME_LENGTH: '60' }),
    ]);
    assert.equal(option(fileOnly, 'eventLimits.maxNameLength'), 50, 'file 50 over the default 200');
    assert.equal(option(unprefixed, 'eventLimits.maxNameLength'), 60, 'EVENT_MAX_NAME_LENGTH=60 over file 50');
    assert.equal(option(prefixed, 'eventLimits.maxNameLength'), 70, 'SOKETI_EVENT_MAX_NAME_LENGTH=70 over 60 and 50');
    assert.equal(option(envOnly, 'eventLimits.maxNameLength'), 60, 'EVENT_MAX_NAME_LENGTH=60 without a file');
  });

  it('reads a config file with nested options and one with dotted keys alike', async () => {
    const apps = [
      { id: 'nested-1', key: 'nested-key-1', secret: 'nested-secret-1' },
      { id: 'nested-2', key: 'nested-key-2', secret: 'nested-secret-2' },
    ];
    const nested = writeConfig('nested.json', {
      appManager: { array: { apps } },
      eventLimits: { maxNameLength: 50, maxBatchSize: 3 },
      channelLimits: { maxNameLength: 90 },
    });
    const dotted = writeConfig('dotted.json', {
      'appManager.array.apps': apps,
      'eventLimits.maxNameLength': 50,
      'eventLimits.maxBatchSize': 3,
      'channelLimits.maxNameLength': 90,
    });
    for (const file of [nested, dotted]) {
      const config = await effectiveConfig({}, ['--config', file]);
      assertOptions(
        config,
        {
          'appManager.array.apps.0.id': 'nested-1',
          'appManager.array.apps.1.key': 'nested-key-2',
          'appManager.array.apps.1.secret': MASK,
          'eventLimits.maxNameLength': 50,
          'eventLimits.maxBatchSize': 3,
          'eventLimits.maxChannelsAtOnce': 100,
          'channelLimits.maxNameLength': 90,
        },
        file,
      );
      assert.equal(option(config, 'appManager.array.apps').length, 2, `the file's two apps replace the default one (${file})`);
    }
  });

  it('reads TOML, YAML (.yaml and .yml) and JSON files by their extension', async () => {
    const json = writeConfig('format.json', { eventLimits: { maxNameLength: 51 }, metrics: { prometheus: { prefix: 'f_' } } });
    const toml = writeConfig('format.toml', '[eventLimits]\nmaxNameLength = 52\n\n[metrics.prometheus]\nprefix = "f_"\n');
    const yaml = writeConfig('format.yaml', 'eventLimits:\n  maxNameLength: 53\nmetrics:\n  prometheus:\n    prefix: f_\n');
    const yml = writeConfig('format.yml', 'eventLimits:\n  maxNameLength: 54\nmetrics:\n  prometheus:\n    prefix: f_\n');
    const expected = [
      [json, 51],
      [toml, 52],
      [yaml, 53],
      [yml, 54],
    ];
    const configs = await Promise.all(expected.map(([file]) => effectiveConfig({}, ['--config', file])));
    for (const [i, [file, length]] of expected.entries()) {
      assertOptions(configs[i], { 'eventLimits.maxNameLength': length, 'metrics.prometheus.prefix': 'f_' }, file);
    }
  });

  it('reads the driver and cluster options under both spellings', async () => {
    const cases = [
      [{ ADAPTER_DRIVER: 'cluster' }, 'adapter.driver', 'cluster'],
      [{ SOKETI_ADAPTER_DRIVER: 'cluster' }, 'adapter.driver', 'cluster'],
      [{ RATE_LIMITER_DRIVER: 'cluster' }, 'rateLimiter.driver', 'cluster'],
      [{ SOKETI_RATE_LIMITER_DRIVER: 'cluster' }, 'rateLimiter.driver', 'cluster'],
      [{ CLUSTER_PORT: '11005' }, 'cluster.port', 11005],
      [{ SOKETI_CLUSTER_PORT: '11005' }, 'cluster.port', 11005],
      [{ CLUSTER_PREFIX: 'blue' }, 'cluster.prefix', 'blue'],
      [{ DEFAULT_APP_KEY: 'plain-key' }, 'appManager.array.apps.0.key', 'plain-key'],
      [{ SOKETI_DEFAULT_APP_KEY: 'prefixed-key' }, 'appManager.array.apps.0.key', 'prefixed-key'],
      [{ METRICS_ENABLED: 'true' }, 'metrics.enabled', true],
      [{ PATH_PREFIX: '/ws' }, 'pathPrefix', '/ws'],
      [{ SHUTDOWN_GRACE_PERIOD: '1500' }, 'shutdownGracePeriod', 1500],
    ];
    const configs = await Promise.all(cases.map(([env]) => effectiveConfig(env)));
    for (const [i, [env, dotted, value]] of cases.entries()) {
      assert.deepEqual(option(configs[i], dotted), value, `${dotted} with ${JSON.stringify(env)}`);
    }
  });

  it('reads the app fields in PascalCase (as DynamoDB items hold them), and null or "" quotas as unlimited', async () => {
    const file = writeConfig('pascal.json', {
      appManager: {
        array: {
          apps: [
            {
              AppId: 'pascal-id',
              AppKey: 'pascal-key',
              AppSecret: 'pascal-secret',
              Enabled: true,
              MaxConnections: 5,
              EnableClientMessages: true,
              EnableUserAuthentication: true,
              MaxBackendEventsPerSecond: null,
              MaxClientEventsPerSecond: '',
              MaxReadRequestsPerSecond: '7',
              MaxPresenceMembersPerChannel: 9,
              MaxEventNameLength: 33,
            },
          ],
        },
      },
    });
    const config = await effectiveConfig({}, ['--config', file]);
    assertOptions(
      config,
      {
        'appManager.array.apps.0.id': 'pascal-id',
        'appManager.array.apps.0.key': 'pascal-key',
        'appManager.array.apps.0.secret': MASK,
        'appManager.array.apps.0.maxConnections': 5,
        'appManager.array.apps.0.enableClientMessages': true,
        'appManager.array.apps.0.enableUserAuthentication': true,
        'appManager.array.apps.0.maxBackendEventsPerSecond': -1,
        'appManager.array.apps.0.maxClientEventsPerSecond': -1,
        'appManager.array.apps.0.maxReadRequestsPerSecond': 7,
        'appManager.array.apps.0.maxPresenceMembersPerChannel': 9,
        'appManager.array.apps.0.maxEventNameLength': 33,
      },
      file,
    );
  });

  it('reads DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC, DEFAULT_APP_MAX_READ_REQ_PER_SEC and DEFAULT_APP_USER_AUTHENTICATION', async () => {
    for (const prefix of ['', 'SOKETI_']) {
      const config = await effectiveConfig({
        [`${prefix}DEFAULT_APP_MAX_CLIENT_EVENTS_PER_SEC`]: '3',
        [`${prefix}DEFAULT_APP_MAX_READ_REQ_PER_SEC`]: '4',
        [`${prefix}DEFAULT_APP_USER_AUTHENTICATION`]: 'true',
      });
      assertOptions(
        config,
        {
          'appManager.array.apps.0.maxClientEventsPerSecond': 3,
          'appManager.array.apps.0.maxReadRequestsPerSecond': 4,
          'appManager.array.apps.0.enableUserAuthentication': true,
        },
        `the ${prefix || 'unprefixed'} names`,
      );
    }
  });

  it("applies DEFAULT_APP_* to the first of a config file's apps, leaving the others", async () => {
    const file = writeConfig('override-first.json', {
      appManager: {
        array: {
          apps: [
            { id: 'file-1', key: 'file-key-1', secret: 'file-secret-1', maxConnections: 7 },
            { id: 'file-2', key: 'file-key-2', secret: 'file-secret-2' },
          ],
        },
      },
    });
    const config = await effectiveConfig({ SOKETI_DEFAULT_APP_KEY: 'env-key', DEFAULT_APP_MAX_CONNS: '3' }, ['--config', file]);
    assertOptions(
      config,
      {
        'appManager.array.apps.0.id': 'file-1',
        'appManager.array.apps.0.key': 'env-key',
        'appManager.array.apps.0.maxConnections': 3,
        'appManager.array.apps.1.id': 'file-2',
        'appManager.array.apps.1.key': 'file-key-2',
      },
      'DEFAULT_APP_* over a file with two apps',
    );
    assert.equal(option(config, 'appManager.array.apps').length, 2, 'still two apps');
  });

  it('reads HOST, PORT, DEBUG and MODE only with the SOKETI_ prefix', async () => {
    const [plain, prefixed] = await Promise.all([
      effectiveConfig({ HOST: '10.1.2.3', PORT: '1234', DEBUG: 'true', MODE: 'worker' }),
      effectiveConfig({ SOKETI_HOST: '127.0.0.1', SOKETI_PORT: '1234', SOKETI_DEBUG: 'true', SOKETI_MODE: 'worker' }),
    ]);
    assertOptions(plain, { host: '0.0.0.0', port: 6001, debug: false, mode: 'full' }, 'unprefixed names are ignored');
    assertOptions(prefixed, { host: '127.0.0.1', port: 1234, debug: true, mode: 'worker' }, 'SOKETI_ names apply');
  });

  it('reads environment values as JSON first and as raw strings otherwise', async () => {
    const webhooks = [{ url: 'http://127.0.0.1:9/hook', event_types: ['channel_occupied'] }];
    const config = await effectiveConfig({
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
      DEFAULT_APP_MAX_CONNS: '5',
      DEFAULT_APP_WEBHOOKS: JSON.stringify(webhooks),
      METRICS_PROMETHEUS_PREFIX: 'x_',
      SOKETI_DEFAULT_APP_ID: '123',
      ADAPTER_REDIS_PUB_OPTIONS: '{"x":1}',
      ADAPTER_NATS_SERVERS: '["10.0.0.1:4222"]',
    });
    assertOptions(
      config,
      {
        'appManager.array.apps.0.enableClientMessages': true,
        'appManager.array.apps.0.maxConnections': 5,
        'metrics.prometheus.prefix': 'x_',
        'appManager.array.apps.0.id': '123',
        'adapter.redis.redisPubOptions': { x: 1 },
        'adapter.nats.servers': ['10.0.0.1:4222'],
      },
      'typed environment values',
    );
    const hooks = option(config, 'appManager.array.apps.0.webhooks');
    assert.ok(Array.isArray(hooks) && hooks.length === 1, `webhooks: ${JSON.stringify(hooks)}`);
    assert.equal(hooks[0].url, webhooks[0].url);
    assert.deepEqual(hooks[0].event_types ?? hooks[0].eventTypes, ['channel_occupied']);
  });

  it('masks app secrets, passwords and tokens, wherever they were set', async () => {
    const file = writeConfig('secrets.json', {
      appManager: {
        array: {
          apps: [
            { id: 'masked-1', key: 'masked-key-1', secret: 'file-secret-value-1' },
            { id: 'masked-2', key: 'masked-key-2', secret: 'file-secret-value-2' },
          ],
        },
      },
    });
    const secrets = {
      SOKETI_DB_REDIS_PASSWORD: 'redis-password-value',
      DB_MYSQL_PASSWORD: 'mysql-password-value',
      ADAPTER_NATS_TOKEN: 'nats-token-value',
    };
    const [fromFile, fromEnv] = await Promise.all([
      effectiveConfig(secrets, ['--config', file]),
      effectiveConfig({ SOKETI_DEFAULT_APP_SECRET: 'env-secret-value' }),
    ]);
    assertOptions(
      fromFile,
      {
        'appManager.array.apps.0.secret': MASK,
        'appManager.array.apps.1.secret': MASK,
        'appManager.array.apps.1.key': 'masked-key-2',
      },
      'secrets from a file and the environment',
    );
    assert.equal(option(fromEnv, 'appManager.array.apps.0.secret'), MASK);
    const printed = JSON.stringify(fromFile) + JSON.stringify(fromEnv);
    for (const value of ['file-secret-value-1', 'file-secret-value-2', 'env-secret-value', ...Object.values(secrets)]) {
      assert.ok(!printed.includes(value), `the secret "${value}" must not be printed`);
    }
  });

  it('masks the TLS passphrase', async () => {
    const config = await effectiveConfig({ SOKETI_SSL_PASS: 'ssl-passphrase-value' });
    assert.equal(option(config, 'ssl.passphrase'), MASK);
    assert.ok(!JSON.stringify(config).includes('ssl-passphrase-value'), 'the passphrase must not be printed');
  });

  it("ignores the test process's own soketi variables (the harness drops them)", async () => {
    const leaked = { DEFAULT_APP_KEY: 'leaked-plain', SOKETI_DEFAULT_APP_KEY: 'leaked-prefixed', ADAPTER_DRIVER: 'bogus' };
    const saved = Object.fromEntries(Object.keys(leaked).map((name) => [name, process.env[name]]));
    Object.assign(process.env, leaked);
    try {
      const config = await effectiveConfig();
      assertOptions(config, { 'appManager.array.apps.0.key': 'app-key', 'adapter.driver': 'local' }, 'inherited variables');
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  });
});

describe('default app credentials through the unprefixed names', () => {
  const scope = useServer({ DEFAULT_APP_ID: 'plain-id', DEFAULT_APP_KEY: 'plain-key', DEFAULT_APP_SECRET: 'plain-secret' });

  it('serves pusher-js and the SDK with DEFAULT_APP_ID, DEFAULT_APP_KEY and DEFAULT_APP_SECRET', async () => {
    assert.equal(scope.server.key, 'plain-key');
    const name = uniqueChannel('private-');
    const client = await scope.connectedPusher();
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'plain');
    assert.equal((await scope.sdk().trigger(name, 'plain', { ok: 1 })).status, 200);
    assert.deepEqual(await received, { ok: 1 });
  });
});

describe('numeric default app id', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_ID: '123' });

  it('serves the HTTP API at /apps/123/', async () => {
    assert.equal(scope.server.appId, '123');
    const name = uniqueChannel();
    const client = await scope.rawSubscribed(name);
    const res = await scope.sdk().trigger(name, 'numeric', { ok: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(parseData(await client.next('numeric')), { ok: 1 });
    const channels = await signedRequest(scope.server, { method: 'GET', path: '/apps/123/channels' });
    assert.equal(channels.status, 200, channels.text);
    assert.ok(name in (channels.json?.channels ?? {}), `channel listing: ${channels.text}`);
  });
});

// ---------------------------------------------------------------------------------------------
// Config files driving a real server
// ---------------------------------------------------------------------------------------------

const FILE_FORMATS = {
  json: (apps) => JSON.stringify({ appManager: { array: { apps } } }, null, 2),
  toml: (apps) =>
    '[appManager.array]\napps = [\n' +
    apps.map((a) => `  { ${Object.entries(a).map(([k, v]) => `${k} = ${JSON.stringify(v)}`).join(', ')} },`).join('\n') +
    '\n]\n',
  // YAML gets a numeric id for its second app, which must become the string "2002".
  yaml: (apps) =>
    'appManager:\n  array:\n    apps:\n' +
    apps
      .map((a) =>
        Object.entries(a)
          .map(([k, v], i) => `${i === 0 ? '      - ' : '        '}${k}: ${typeof v === 'string' && !/^\d+$/.test(v) ? JSON.stringify(v) : v}`)
          .join('\n'),
      )
      .join('\n') +
    '\n',
};

for (const [format, render] of Object.entries(FILE_FORMATS)) {
  describe(`two apps from a ${format.toUpperCase()} config file`, () => {
    const first = { id: `${format}-one`, key: `${format}-key-one`, secret: `${format}-secret-one` };
    const second = {
      id: format === 'yaml' ? '2002' : `${format}-two`,
      key: `${format}-key-two`,
      secret: `${format}-secret-two`,
    };
    const file = writeConfig(`two-apps.${format}`, render([first, second]));
    const scope = useServer({}, { args: ['start', '--config', file] });

    it("delivers the SDK's event to pusher-js on the second app", async () => {
      const app = scope.forApp(second);
      const name = uniqueChannel('private-');
      const client = await app.connectedPusher();
      const { channel } = await subscribe(client, name);
      const received = waitFor(channel, 'from-file');
      const res = await app.sdk().trigger(name, 'from-file', { format });
      assert.equal(res.status, 200);
      assert.deepEqual(await received, { format });
    });

    it('keeps the two apps apart: the first app serves too, and one app cannot sign for the other', async () => {
      const one = scope.forApp(first);
      const name = uniqueChannel();
      const client = await one.rawSubscribed(name);
      assert.equal((await one.sdk().trigger(name, 'first', {})).status, 200);
      assert.equal((await client.next('first')).channel, name);
      const crossed = pusherServer(scope.server, { appId: first.id, key: second.key, secret: second.secret });
      const res = await sdkFailure(crossed.trigger(name, 'crossed', {}));
      assert.ok([401, 404].includes(res.status), `a key of another app: ${res.status} ${res.text}`);
    });

    if (format === 'json') {
      it("replaces the default app with the file's apps", async () => {
        const client = await scope.raw(scope.server.wsUrl('app-key'));
        assert.equal(parseData(await client.next('pusher:error')).code, 4001, client.describeHistory());
      });
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Values that stop start-up
// ---------------------------------------------------------------------------------------------

/** The stderr line that matches every pattern (strings or regular expressions). */
function lineWith(failure, ...patterns) {
  const matches = (line, p) => (typeof p === 'string' ? line.includes(p) : p.test(line));
  const line = failure.lines.find((l) => patterns.every((p) => matches(l, p)));
  assert.ok(
    line,
    `expected a stderr line containing ${patterns.map(String).join(' and ')}; stderr:\n${failure.run.stderr || '(empty)'}`,
  );
  return line;
}

describe('values that stop start-up', () => {
  /** Loopback and free ports, so that a server that wrongly starts binds nothing shared. */
  async function safeEnv(extra = {}, { port = true } = {}) {
    const env = { SOKETI_HOST: '127.0.0.1', SOKETI_METRICS_HOST: '127.0.0.1', SOKETI_METRICS_SERVER_PORT: String(await freePort()) };
    if (port) env.SOKETI_PORT = String(await freePort());
    return { ...env, ...extra };
  }

  it('SOKETI_PORT=abc names SOKETI_PORT', async () => {
    const failure = await failedStart(['start'], await safeEnv({ SOKETI_PORT: 'abc' }));
    lineWith(failure, 'SOKETI_PORT');
  });

  it('an unprefixed EVENT_MAX_NAME_LENGTH=long names EVENT_MAX_NAME_LENGTH as set', async () => {
    const failure = await failedStart(['start'], await safeEnv({ EVENT_MAX_NAME_LENGTH: 'long' }));
    lineWith(failure, /(?<!SOKETI_)EVENT_MAX_NAME_LENGTH/);
  });

  it('ADAPTER_DRIVER=bogus names ADAPTER_DRIVER and the accepted drivers', async () => {
    const failure = await failedStart(['start'], await safeEnv({ ADAPTER_DRIVER: 'bogus' }));
    lineWith(failure, /(?<!SOKETI_)ADAPTER_DRIVER/, 'local');
  });

  it('{"port":"abc"} in a config file names the file and port', async () => {
    const file = writeConfig('bad-port.json', { port: 'abc' });
    const failure = await failedStart(['start', '--config', file], await safeEnv({}, { port: false }));
    lineWith(failure, file, /\bport\b/);
  });

  it('a bad dotted key in a config file names the file and the option', async () => {
    const file = writeConfig('bad-limit.json', { 'eventLimits.maxNameLength': 'long' });
    const failure = await failedStart(['start', '--config', file], await safeEnv());
    lineWith(failure, file, 'maxNameLength');
  });

  it('a missing config file is named', async () => {
    const file = `${scratch()}/no-such-config.json`;
    const failure = await failedStart(['start', '--config', file], await safeEnv());
    lineWith(failure, file);
  });

  it('a config path that cannot be read as a file is named', async () => {
    const file = writeConfig('dir-config.json', '{}');
    const dir = `${file}.d.json`;
    mkdirSync(dir, { recursive: true });
    const failure = await failedStart(['start', '--config', dir], await safeEnv());
    lineWith(failure, dir);
  });

  // Settings that parse but cannot run: each stops start-up with a line that names the option
  // and says what to do, rather than a server that silently does less than asked.
  const refusals = [
    ['QUEUE_DRIVER=bogus names the option and the drivers there are', { SOKETI_QUEUE_DRIVER: 'bogus' }, ['QUEUE_DRIVER', 'sync', 'redis', 'sqs']],
    ['QUEUE_DRIVER=sqs without QUEUE_SQS_URL names the queue URL', { SOKETI_QUEUE_DRIVER: 'sqs' }, ['QUEUE_SQS_URL']],
    [
      'a webhook with neither a url nor a lambda_function names the app and the webhook',
      { SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ event_types: ['channel_occupied'] }]) },
      ['webhooks.0', '"app-id"', 'neither a url nor a lambda_function'],
    ],
    [
      'a Lambda webhook with a client option this server does not apply names it',
      { SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ lambda_function: 'fn', event_types: [], lambda: { client_options: { logger: 'console' } } }]) },
      ['webhooks.0', 'lambda.client_options.logger'],
    ],
    [
      'ADAPTER_REDIS_CLUSTER_MODE without DB_REDIS_CLUSTER_NODES names both',
      { SOKETI_ADAPTER_DRIVER: 'redis', SOKETI_ADAPTER_REDIS_CLUSTER_MODE: 'true' },
      ['ADAPTER_REDIS_CLUSTER_MODE', 'DB_REDIS_CLUSTER_NODES'],
    ],
    [
      'QUEUE_REDIS_CLUSTER_MODE with DB_REDIS_DB other than 0 names both',
      { SOKETI_QUEUE_DRIVER: 'redis', SOKETI_QUEUE_REDIS_CLUSTER_MODE: 'true', SOKETI_DB_REDIS_CLUSTER_NODES: '["127.0.0.1:1"]', SOKETI_DB_REDIS_DB: '2' },
      ['QUEUE_REDIS_CLUSTER_MODE', 'DB_REDIS_DB'],
    ],
    [
      'DB_REDIS_SENTINELS that is not a list of {host, port} names the option, with the cache alone',
      { SOKETI_CACHE_DRIVER: 'redis', SOKETI_DB_REDIS_SENTINELS: '{"host":"127.0.0.1"}' },
      ['DB_REDIS_SENTINELS', 'host'],
    ],
    [
      'a DB_REDIS_TLS_CA that cannot be read names the option and the file',
      { SOKETI_RATE_LIMITER_DRIVER: 'redis', SOKETI_DB_REDIS_TLS_CA: '/no/such/ca.pem' },
      ['DB_REDIS_TLS_CA', '/no/such/ca.pem'],
    ],
    [
      'RATE_LIMITER_DRIVER=cluster without a fleet names both options',
      { SOKETI_RATE_LIMITER_DRIVER: 'cluster' },
      ['RATE_LIMITER_DRIVER', 'ADAPTER_DRIVER'],
    ],
    [
      'an adapter node timeout not longer than the heartbeat names both',
      { SOKETI_ADAPTER_DRIVER: 'redis', SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: '500', SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: '500' },
      ['ADAPTER_REDIS_NODE_TIMEOUT', 'ADAPTER_REDIS_HEARTBEAT_INTERVAL'],
    ],
    [
      'a cluster node timeout shorter than the check interval names both',
      { SOKETI_ADAPTER_DRIVER: 'cluster', SOKETI_CLUSTER_HOST: '127.0.0.1', SOKETI_CLUSTER_CHECK_INTERVAL: '500', SOKETI_CLUSTER_NODE_TIMEOUT: '400' },
      ['CLUSTER_NODE_TIMEOUT', 'CLUSTER_CHECK_INTERVAL'],
    ],
    [
      'a cluster master timeout shorter than the node timeout names both',
      { SOKETI_ADAPTER_DRIVER: 'cluster', SOKETI_CLUSTER_HOST: '127.0.0.1', SOKETI_CLUSTER_NODE_TIMEOUT: '2000', SOKETI_CLUSTER_MASTER_TIMEOUT: '1000' },
      ['CLUSTER_MASTER_TIMEOUT', 'CLUSTER_NODE_TIMEOUT'],
    ],
    [
      'an SQS client option this server does not apply names the option and the key',
      { SOKETI_QUEUE_DRIVER: 'sqs', SOKETI_QUEUE_SQS_URL: 'https://sqs.example/queue', SOKETI_QUEUE_SQS_CLIENT_OPTIONS: JSON.stringify({ httpOptions: {} }) },
      ['QUEUE_SQS_CLIENT_OPTIONS', 'httpOptions'],
    ],
    [
      'an ioredis key this server does not apply names the option and the key, the cache in memory',
      { SOKETI_CACHE_REDIS_OPTIONS: JSON.stringify({ connectTimeout: 1000 }) },
      ['CACHE_REDIS_OPTIONS', 'connectTimeout', 'remove it'],
    ],
    [
      'an SQL table name that is not an identifier names the option',
      { SOKETI_APP_MANAGER_DRIVER: 'postgres', SOKETI_APP_MANAGER_POSTGRES_TABLE: 'apps; drop table apps' },
      ['APP_MANAGER_POSTGRES_TABLE', 'letters, digits and _'],
    ],
  ];
  for (const [title, extra, words] of refusals) {
    it(title, async () => {
      const failure = await failedStart(['start'], await safeEnv(extra));
      lineWith(failure, ...words);
    });
  }

  it('--config=FILE reads the file as --config FILE does', async () => {
    const file = writeConfig('equals-form.json', { 'eventLimits.maxNameLength': 'long' });
    const failure = await failedStart([`start`, `--config=${file}`], await safeEnv());
    lineWith(failure, file, 'maxNameLength');
  });

  it('a malformed JSON config file is named', async () => {
    const file = writeConfig('malformed.json', '{"port": 6001,');
    const failure = await failedStart(['start', '--config', file], await safeEnv());
    lineWith(failure, file);
  });
});

describe('options that have no effect here, as in soketi', () => {
  const scope = useServer({
    SOKETI_ADAPTER_NATS_NODES_NUMBER: '3',
    APP_MANAGER_MYSQL_VERSION: '5.7',
  });

  it('start, and are each named once in a warning at start', async () => {
    assert.equal((await scope.sdk().get({ path: '/channels' })).status, 200);
    const lines = scope.server.stderr().split('\n');
    for (const name of ['SOKETI_ADAPTER_NATS_NODES_NUMBER', 'APP_MANAGER_MYSQL_VERSION']) {
      const named = lines.filter((l) => l.includes(name) && l.includes('no effect'));
      assert.equal(named.length, 1, `${name} in:\n${lines.join('\n')}`);
    }
  });
});

describe('config file keys that name no option (ignored, as soketi ignores them)', () => {
  const file = writeConfig('misspelt.json', {
    'eventLimits.maxNameLenght': 10,
    adapter: { redis: { prefixx: 'a' } },
    port: 1,
    // Every spelling of an app field is one (camelCase, snake_case, PascalCase); `Typo` is not.
    appManager: { array: { apps: [{ id: APP.appId, key: APP.key, secret: APP.secret, MaxConnections: 50, max_event_name_length: 150, enableClientMessages: true, Typo: 1 }] } },
  });
  const scope = useServer({}, { args: ['start', '--config', file] });

  it('start, and are each named once in a warning at start; known keys beside them still apply', async () => {
    assert.equal((await scope.sdk().get({ path: '/channels' })).status, 200);
    const lines = scope.server.stderr().split('\n');
    for (const key of ['eventLimits.maxNameLenght', 'adapter.redis.prefixx', 'appManager.array.apps.0.Typo']) {
      const named = lines.filter((l) => l.includes(key) && l.includes('names no option'));
      assert.equal(named.length, 1, `${key} in:\n${lines.join('\n')}`);
    }
    const flagged = lines.filter((l) => l.includes('names no option'));
    assert.equal(flagged.length, 3, flagged.join('\n'));
  });
});
