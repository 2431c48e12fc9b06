// The Redis options of docs/configuration.md, proved on fleets of real server processes
// (SOKETI_ADAPTER_DRIVER=redis) that share a throwaway redis-server (see redis.mjs):
//
// - `database.redis.password` against a Redis with `requirepass`, `database.redis.username`
//   with an ACL user, `database.redis.db` and `database.redis.keyPrefix`: events cross the
//   nodes, and a raw client sees where the keys and channels land (PUBSUB CHANNELS, KEYS in the
//   chosen database); an ACL that allows only the prefixes proves nothing else is touched;
// - credentials or a database that Redis refuses stop start-up with a message that names Redis
//   and hides the password; a Redis that is not there yet only delays the fleet;
// - `adapter.redis.prefix`: two fleets on one Redis never hear each other.
//
// Each `describe` starts its own redis-server and nodes, with short liveness settings
// (heartbeats every 200 ms, a node gone after 1 s of silence), and waits until the nodes of
// each fleet list each other's probe channels before its tests run.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import {
  Scope,
  failedStart,
  freePort,
  httpRequest,
  parseData,
  startServer,
  uniqueChannel,
  until,
} from './harness.mjs';
import { assertCrosses, awaitDiscovery, clusterView, poll, useBusFleets } from './cluster.mjs';
import { redisSkip, startRedis } from './redis.mjs';

const HEARTBEAT_INTERVAL_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const REQUESTS_TIMEOUT_MS = 1_000;

// The longest wait between two attempts of a node to reach Redis: soketi-adapter-redis's
// `backoff` (50 ms doubled per attempt, up to five times). A node whose Redis appears late meets
// the fleet within it, plus the margin of a busy two-core machine for the connection, the
// subscriptions and a heartbeat round.
const MAX_RECONNECT_DELAY_MS = 1_600;
const RECONNECT_MARGIN_MS = 5_000;

/** The environment of a node of a fleet on `redis`, with `extra` on top. */
function nodeEnv(redis, extra = {}) {
  return {
    SOKETI_ADAPTER_DRIVER: 'redis',
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(redis.port),
    SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
    SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
    ...extra,
  };
}

/** `GET /apps/<id>/channels` on a node: the channel names, sorted. */
async function channelNames(scope) {
  const res = await scope.sdk().get({ path: '/channels' });
  return Object.keys((await res.json()).channels).sort();
}

/**
 * Runs a node on `redis` with `extra` that must fail to start (on free ports, so that only
 * Redis can be the reason), and returns `failedStart`'s result.
 */
async function refusedStart(redis, extra) {
  const ports = { SOKETI_PORT: String(await freePort()), SOKETI_METRICS_SERVER_PORT: String(await freePort()) };
  return failedStart(['start'], nodeEnv(redis, { ...ports, ...extra }), 10_000);
}

/** Asserts that a start-up failure's stderr names Redis and its refusal, and shows no secret. */
function assertRefusal(failure, secrets, why) {
  const text = failure.lines.join('\n');
  assert.match(text, /Redis at redis:\/\/\S+ refused/, `${why}: stderr names Redis and its refusal:\n${text}`);
  for (const secret of secrets) assert.ok(!text.includes(secret), `${why}: stderr shows no secret (${secret}):\n${text}`);
}

// ---------------------------------------------------------------------------------------------
// A password, a database number, a key prefix and an adapter prefix
// ---------------------------------------------------------------------------------------------

describe('redis options: a password (requirepass), database 3, a key prefix and an adapter prefix', { skip: redisSkip() }, () => {
  const PASSWORD = 'requirepass-secret';
  const KEY_PREFIX = 'skt-opts:';
  const ADAPTER_PREFIX = 'opts-fleet';
  const DB = 3;
  const ctx = useBusFleets(
    { name: 'redis', start: startRedis, nodeEnv, options: { password: PASSWORD } },
    {
      fleet: {
        labels: ['A', 'B'],
        env: {
          SOKETI_DB_REDIS_PASSWORD: PASSWORD,
          SOKETI_DB_REDIS_DB: String(DB),
          SOKETI_DB_REDIS_KEY_PREFIX: KEY_PREFIX,
          SOKETI_ADAPTER_REDIS_PREFIX: ADAPTER_PREFIX,
          SOKETI_CACHE_DRIVER: 'redis',
          // Webhooks go through the Redis queue; in `server` mode nobody takes them, so the
          // queue's key stays for the test to find. Nothing listens at the URL.
          SOKETI_QUEUE_DRIVER: 'redis',
          SOKETI_MODE: 'server',
          SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ url: 'http://127.0.0.1:9/never', event_types: ['channel_occupied'] }]),
        },
      },
    },
  );

  it('nodes discover each other', () => {
    if (ctx.discovery) throw ctx.discovery;
  });

  it('an event published through one node reaches a pusher-js client of the other, both ways', async () => {
    await assertCrosses(ctx.A, ctx.B);
    await assertCrosses(ctx.B, ctx.A);
  });

  it('GET /channels on either node lists the channels of both', async () => {
    const onA = uniqueChannel('on-a-');
    const onB = uniqueChannel('on-b-');
    await ctx.A.rawSubscribed(onA);
    await ctx.B.rawSubscribed(onB);
    for (const scope of [ctx.A, ctx.B]) {
      const names = await channelNames(scope);
      assert.ok(names.includes(onA) && names.includes(onB), `GET /channels on node ${scope.label}: ${names.join(', ')}`);
    }
  });

  it('PUBSUB CHANNELS lists the adapter prefix\'s fleet channel, one channel per node and the two of soketi\'s it watches, and nothing else', async () => {
    const ids = [];
    for (const scope of [ctx.A, ctx.B]) ids.push((await clusterView(scope)).node_id);
    const channels = (await ctx.redis.command(['PUBSUB', 'CHANNELS'])).sort();
    // soketi's broadcasts and responses, watched for a soketi node sharing the prefix.
    const soketis = ['', '#comms#res'].map((tail) => `${ADAPTER_PREFIX}#redis-adapter${tail}`);
    assert.deepEqual(channels, [`${ADAPTER_PREFIX}#soketi-rs`, ...ids.map((id) => `${ADAPTER_PREFIX}#soketi-rs#${id}`), ...soketis].sort());
  });

  it(`the cache and the webhook queue keep their keys in database ${DB} under the key prefix; database 0 stays empty`, async () => {
    // A cache channel's event is kept in the shared cache: a subscriber of the other node gets it.
    const cached = uniqueChannel('cache-');
    await ctx.A.sdk().trigger(cached, 'kept', { n: 1 });
    const late = await ctx.B.rawSubscribed(cached);
    const frame = await late.next();
    assert.deepEqual({ event: frame.event, data: parseData(frame) }, { event: 'kept', data: { n: 1 } }, `frames at B: ${late.describeHistory()}`);

    // The subscription above occupied a channel: a channel_occupied webhook waits in the queue.
    const cacheKey = `${KEY_PREFIX}app:app-id:channel:${cached}:cache_miss`;
    const queueKey = `${KEY_PREFIX}queue:webhooks:waiting`;
    const keys = await poll(
      `the keys ${cacheKey} and ${queueKey} in database ${DB}`,
      () => ctx.redis.command(['KEYS', '*'], { db: DB }),
      (found) => found.includes(cacheKey) && found.includes(queueKey),
    );
    const strays = keys.filter((key) => !key.startsWith(KEY_PREFIX));
    assert.deepEqual(strays, [], `every key in database ${DB} has the prefix ${KEY_PREFIX}`);
    assert.match(await ctx.redis.command(['GET', cacheKey], { db: DB }), /"kept"/, 'the cached value is the event');
    assert.equal(await ctx.redis.command(['DBSIZE']), 0, 'database 0 holds nothing');
  });
});

// ---------------------------------------------------------------------------------------------
// An ACL user that may touch only the fleet's prefixes
// ---------------------------------------------------------------------------------------------

describe('redis options: an ACL user (username and password) allowed only the key and adapter prefixes', { skip: redisSkip() }, () => {
  const KEY_PREFIX = 'skt-acl:';
  const ADAPTER_PREFIX = 'acl-fleet';
  const USER = { name: 'soketi', password: 'acl-user-secret', rules: [`~${KEY_PREFIX}*`, `&${ADAPTER_PREFIX}#*`, '+@all'] };
  const ADMIN = { name: 'admin', password: 'acl-admin-secret' };
  const env = {
    SOKETI_DB_REDIS_USERNAME: USER.name,
    SOKETI_DB_REDIS_PASSWORD: USER.password,
    SOKETI_DB_REDIS_KEY_PREFIX: KEY_PREFIX,
    SOKETI_ADAPTER_REDIS_PREFIX: ADAPTER_PREFIX,
    SOKETI_CACHE_DRIVER: 'redis',
    // Every HTTP publish draws from the app's budget in Redis: a key outside the prefix would be
    // denied, and the publish would fail.
    SOKETI_RATE_LIMITER_DRIVER: 'redis',
    SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC: '1000',
  };
  const ctx = useBusFleets(
    {
      name: 'redis',
      start: startRedis,
      nodeEnv,
      // The default user is off: only named users get in.
      options: { users: [{ name: 'default', off: true }, USER, ADMIN], admin: { user: ADMIN.name, password: ADMIN.password } },
    },
    { fleet: { labels: ['A', 'B'], env } },
  );

  it('nodes discover each other', () => {
    if (ctx.discovery) throw ctx.discovery;
  });

  it('events cross both ways, listings span both nodes and a cache channel is shared, with nothing denied by the ACL', async () => {
    await ctx.redis.command(['ACL', 'LOG', 'RESET']);
    await assertCrosses(ctx.A, ctx.B);
    await assertCrosses(ctx.B, ctx.A);
    const onB = uniqueChannel('acl-on-b-');
    await ctx.B.rawSubscribed(onB);
    assert.ok((await channelNames(ctx.A)).includes(onB), 'GET /channels on A lists a channel of B');

    const cached = uniqueChannel('cache-');
    await ctx.B.sdk().trigger(cached, 'kept', { n: 2 });
    const late = await ctx.A.rawSubscribed(cached);
    const frame = await late.next();
    assert.equal(frame.event, 'kept', `frames at A: ${late.describeHistory()}`);

    const keys = await ctx.redis.command(['KEYS', '*']);
    assert.ok(keys.includes(`${KEY_PREFIX}app:app-id:channel:${cached}:cache_miss`), `keys: ${keys.join(', ')}`);
    assert.deepEqual(await ctx.redis.command(['ACL', 'LOG']), [], 'the ACL denied no command, key or channel');
  });

  it('another adapter prefix, outside the channels the ACL allows, stops start-up', async () => {
    const failure = await refusedStart(ctx.redis, { ...env, SOKETI_ADAPTER_REDIS_PREFIX: 'elsewhere' });
    assertRefusal(failure, [USER.password], 'a prefix the ACL forbids');
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals and an absent Redis
// ---------------------------------------------------------------------------------------------

describe('redis options: what Redis refuses stops start-up; a Redis not there yet only delays the fleet', { skip: redisSkip() }, () => {
  const PASSWORD = 'right-secret';
  const USER = { name: 'soketi', password: 'user-secret' };
  let redis = null;
  const started = [];

  before(async () => {
    redis = await startRedis({ password: PASSWORD, users: [USER] });
  });
  afterEach(async (t) => {
    if (t.passed === false) {
      for (const scope of started) scope.server.dumpLogs(`node ${scope.label}, test "${t.name}" failed`);
      if (redis) process.stderr.write(`\n----- redis-server output (port ${redis.port}) -----\n${redis.logs()}\n-----\n`);
    }
    for (const scope of started.splice(0)) {
      scope.closeClients();
      await scope.server.stop();
    }
  });
  after(async () => {
    await redis?.stop();
  });

  const refusals = [
    ['a wrong password', { SOKETI_DB_REDIS_PASSWORD: 'wrong-secret' }],
    ['no password', {}],
    ['a wrong password for an ACL user', { SOKETI_DB_REDIS_USERNAME: USER.name, SOKETI_DB_REDIS_PASSWORD: 'wrong-user-secret' }],
    ['an unknown user', { SOKETI_DB_REDIS_USERNAME: 'nobody', SOKETI_DB_REDIS_PASSWORD: PASSWORD }],
    ['a database number Redis does not have (16 by default)', { SOKETI_DB_REDIS_PASSWORD: PASSWORD, SOKETI_DB_REDIS_DB: '99' }],
  ];
  for (const [why, extra] of refusals) {
    it(`${why}: start-up fails within 10 s with a message that names Redis and hides the password`, async () => {
      const failure = await refusedStart(redis, extra);
      assertRefusal(failure, [PASSWORD, USER.password, 'wrong-secret', 'wrong-user-secret'], why);
    });
  }

  it('a Redis that is down at start-up: the node starts, says so, and joins the fleet once Redis answers', async (t) => {
    const port = await freePort();
    const absent = { port };
    const first = new Scope();
    first.label = 'early';
    started.push(first);
    first.server = await startServer(nodeEnv(absent));
    await until(() => /cannot reach Redis/.test(first.server.logs()), { what: 'a log line saying that Redis cannot be reached' });
    const ready = await httpRequest(`${first.server.metricsUrl}/ready`);
    assert.equal(ready.status, 200, 'the node serves alone meanwhile');

    const late = await startRedis({ port });
    try {
      const second = new Scope();
      second.label = 'later';
      started.push(second);
      second.server = await startServer(nodeEnv(late));
      const since = Date.now();
      await awaitDiscovery([first, second], MAX_RECONNECT_DELAY_MS + RECONNECT_MARGIN_MS);
      t.diagnostic(`the nodes met ${Date.now() - since} ms after the second one was ready`);
      await assertCrosses(second, first);
    } finally {
      for (const scope of started.splice(0)) {
        scope.closeClients();
        await scope.server.stop();
      }
      await late.stop();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Two fleets on one Redis
// ---------------------------------------------------------------------------------------------

describe('redis options: two fleets with different adapter prefixes on one Redis stay apart', { skip: redisSkip() }, () => {
  const ctx = useBusFleets(
    { name: 'redis', start: startRedis, nodeEnv, options: {} },
    {
      alpha: { labels: ['A1', 'A2'], env: { SOKETI_ADAPTER_REDIS_PREFIX: 'alpha' } },
      beta: { labels: ['B1', 'B2'], env: { SOKETI_ADAPTER_REDIS_PREFIX: 'beta' } },
    },
  );

  it('the nodes of each fleet discover each other, and only each other', async () => {
    if (ctx.discovery) throw ctx.discovery;
    for (const [fleet, nodes] of Object.entries(ctx.fleets)) {
      const ids = [];
      for (const scope of nodes) ids.push((await clusterView(scope)).node_id);
      for (const [i, scope] of nodes.entries()) {
        const peers = (await clusterView(scope)).nodes.map((n) => n.node_id);
        assert.deepEqual(peers, ids.filter((_, j) => j !== i), `GET /cluster on ${scope.label} lists only its fleet ${fleet}`);
      }
    }
    const counts = await ctx.redis.command(['PUBSUB', 'NUMSUB', 'alpha#soketi-rs', 'beta#soketi-rs']);
    assert.deepEqual(counts, ['alpha#soketi-rs', 2, 'beta#soketi-rs', 2]);
  });

  it('a publish in one fleet never reaches a client of the other on the same channel name', async () => {
    const name = uniqueChannel('shared-name-');
    const inAlpha = await ctx.A1.rawSubscribed(name);
    const inBeta = await ctx.B1.rawSubscribed(name);

    await ctx.A2.sdk().trigger(name, 'alpha-event', { from: 'alpha' });
    await inAlpha.next('alpha-event');
    await ctx.B2.sdk().trigger(name, 'beta-event', { from: 'beta' });
    await inBeta.next('beta-event');
    // Each fleet's sentinel came after the other fleet's event: had that one crossed, it would
    // be there before.
    const appEvents = (client) => client.history.filter((f) => typeof f.event === 'string' && !f.event.startsWith('pusher')).map((f) => f.event);
    assert.deepEqual(appEvents(inAlpha), ['alpha-event'], `frames at A1: ${inAlpha.describeHistory()}`);
    assert.deepEqual(appEvents(inBeta), ['beta-event'], `frames at B1: ${inBeta.describeHistory()}`);
    await ctx.A2.sdk().trigger(name, 'alpha-sentinel', {});
    await inAlpha.next('alpha-sentinel');
    assert.deepEqual(appEvents(inAlpha), ['alpha-event', 'alpha-sentinel'], `frames at A1: ${inAlpha.describeHistory()}`);
  });

  it('listings do not mix: each fleet counts only its own subscribers', async () => {
    const onlyAlpha = uniqueChannel('only-alpha-');
    const onlyBeta = uniqueChannel('only-beta-');
    const shared = uniqueChannel('both-');
    await ctx.A1.rawSubscribed(onlyAlpha);
    await ctx.B1.rawSubscribed(onlyBeta);
    await ctx.A1.rawSubscribed(shared);
    await ctx.B1.rawSubscribed(shared);
    await ctx.B2.rawSubscribed(shared);

    for (const [scope, mine, theirs, count] of [
      [ctx.A2, onlyAlpha, onlyBeta, 1],
      [ctx.B2, onlyBeta, onlyAlpha, 2],
    ]) {
      const names = await channelNames(scope);
      assert.ok(names.includes(mine) && names.includes(shared), `GET /channels on ${scope.label} lists its fleet's channels: ${names.join(', ')}`);
      assert.ok(!names.includes(theirs), `GET /channels on ${scope.label} lists no channel of the other fleet: ${names.join(', ')}`);
      const res = await scope.sdk().get({ path: `/channels/${shared}`, params: { info: 'subscription_count' } });
      assert.equal((await res.json()).subscription_count, count, `subscription_count of ${shared} on ${scope.label}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// soketi's ioredis options (*_REDIS_OPTIONS): the keys ioredis shared with database.redis
// ---------------------------------------------------------------------------------------------

describe('redis options: host, port, password, db and keyPrefix of CACHE_REDIS_OPTIONS and QUEUE_REDIS_OPTIONS take effect for their user', { skip: redisSkip() }, () => {
  const PASSWORD = 'ioredis-options-secret';
  const scope = new Scope();
  let redis;

  before(async () => {
    redis = await startRedis({ password: PASSWORD });
    const options = (db, keyPrefix) => JSON.stringify({ host: '127.0.0.1', port: redis.port, password: PASSWORD, db, keyPrefix });
    scope.server = await startServer({
      // Nothing listens at database.redis: only the options lead to Redis.
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(await freePort()),
      SOKETI_CACHE_DRIVER: 'redis',
      SOKETI_CACHE_REDIS_OPTIONS: options(5, 'cache-opts:'),
      SOKETI_QUEUE_DRIVER: 'redis',
      SOKETI_QUEUE_REDIS_OPTIONS: options(6, 'queue-opts:'),
      // In `server` mode nobody takes the queued webhook, so its key stays for the test.
      SOKETI_MODE: 'server',
      SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ url: 'http://127.0.0.1:9/never', event_types: ['channel_occupied'] }]),
    });
  });

  afterEach(() => scope.closeClients());

  after(async () => {
    scope.closeClients();
    await scope.server?.stop();
    await redis?.stop();
  });

  it('the cache keeps its keys in database 5 under its prefix, the queue in database 6 under its own', async () => {
    const cached = uniqueChannel('cache-');
    await scope.sdk().trigger(cached, 'kept', { n: 3 });
    const late = await scope.rawSubscribed(cached);
    const frame = await late.next();
    assert.deepEqual({ event: frame.event, data: parseData(frame) }, { event: 'kept', data: { n: 3 } }, `frames: ${late.describeHistory()}`);
    const cacheKey = `cache-opts:app:app-id:channel:${cached}:cache_miss`;
    await poll(`the key ${cacheKey} in database 5`, () => redis.command(['KEYS', '*'], { db: 5 }), (keys) => keys.includes(cacheKey));
    await poll('the queue\'s waiting list in database 6', () => redis.command(['KEYS', '*'], { db: 6 }), (keys) => keys.includes('queue-opts:queue:webhooks:waiting'));
    assert.equal(await redis.command(['DBSIZE']), 0, 'database 0 holds nothing');
  });
});
