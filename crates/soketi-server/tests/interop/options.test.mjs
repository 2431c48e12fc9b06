// Options whose promise is a behaviour rather than a value: SOKETI_MODE splitting the work
// between `server` and `worker` processes over the Redis queue (and `full` doing both), the
// HTTP API's body limit SOKETI_HTTP_MAX_REQUEST_SIZE, and the cache-channel TTL
// SOKETI_CHANNEL_CACHE_TTL with the memory and the Redis cache.
//
// Redis is inspected with a few raw RESP commands (`redisCall`), so that a test sees the queue's
// lists, a cached key's TTL and which commands reached Redis, not only what a client receives.

import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';

import {
  APP,
  Scope,
  assertHttpError,
  httpRequest,
  parseData,
  signedRequest,
  startServer,
  subscribe,
  uniqueChannel,
  until,
  useServer,
  waitFor,
  upgradeStatus,
} from './harness.mjs';
import { redisCall as redisCallOn, redisSkip, startRedis } from './redis.mjs';
import { startReceiver } from './webhook-receiver.mjs';

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** One command to the redis-server on `port`, binary values kept byte for byte. */
const redisCall = (port, args) => redisCallOn(port, args, { encoding: 'latin1' });

/** The number of calls of `command` since the last `CONFIG RESETSTAT`, from `INFO commandstats`. */
async function commandCalls(port, command) {
  const info = await redisCall(port, ['INFO', 'commandstats']);
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return match ? Number(match[1]) : 0;
}


/**
 * Registers hooks for tests that start their own servers: `start(label, env)` starts one, and
 * after each test every server it started is stopped, its output printed first if the test
 * failed (with the webhook requests and Redis's output when `context` has them).
 */
function useServers(context = {}) {
  const started = [];
  let requestMark = 0;
  beforeEach(() => {
    requestMark = context.receiver?.mark() ?? 0;
  });
  afterEach(async (t) => {
    if (t.passed === false) {
      // Each server started during the test, so all of its output is the test's.
      for (const scope of started) scope.server.dumpLogs(`${scope.label}, test "${t.name}" failed`);
      if (context.receiver) {
        process.stderr.write(`\n----- webhook requests during "${t.name}" -----\n  ${context.receiver.describe(requestMark)}\n-----\n`);
      }
      if (context.redis) process.stderr.write(`\n----- redis-server output (port ${context.redis.port}) -----\n${context.redis.logs()}\n-----\n`);
    }
    for (const scope of started.splice(0)) {
      scope.closeClients();
      await scope.server.stop();
    }
  });
  return {
    async start(label, env) {
      const scope = new Scope();
      scope.label = label;
      scope.server = await startServer(env);
      started.push(scope);
      return scope;
    },
  };
}

/**
 * Checks that a pusher-js client of `scope` receives what the SDK publishes through it, and
 * returns the channel it used.
 */
async function assertServesPusher(scope) {
  const client = await scope.connectedPusher();
  const name = uniqueChannel('served-');
  const { channel } = await subscribe(client, name);
  const received = waitFor(channel, 'hello');
  const res = await scope.sdk().trigger(name, 'hello', { via: scope.label });
  assert.equal(res.status, 200, `publish through ${scope.label}`);
  assert.deepEqual(await received, { via: scope.label }, `pusher-js on ${scope.label}`);
  return name;
}

// ---------------------------------------------------------------------------------------------
// SOKETI_MODE
// ---------------------------------------------------------------------------------------------

// A process with a queue consumer blocks in BLMOVE on the waiting list, and Redis hands it a job
// within the LPUSH that queues it; the worker below takes a job in a few milliseconds (the test
// prints how many). A `server` process is watched this long with its job queued, and must leave
// it there and never wait on the list. This is a window, not an event: nothing could signal a
// consumer that does not exist. It is many times what a consumer needs, on a loaded machine too.
const NO_CONSUMER_WINDOW_MS = 1_000;
const DELIVERY_DEADLINE_MS = 10_000;

describe('SOKETI_MODE with the Redis queue: server, worker and full', { skip: redisSkip() }, () => {
  const context = { redis: null, receiver: null };
  const servers = useServers(context);
  let testNumber = 0;
  let prefix = '';

  before(async () => {
    context.redis = await startRedis();
    context.receiver = await startReceiver();
  });
  beforeEach(async () => {
    // Each test has its own queue (keys under its own prefix) and its own command counts.
    testNumber += 1;
    prefix = `mode${testNumber}:`;
    await redisCall(context.redis.port, ['CONFIG', 'RESETSTAT']);
  });
  after(async () => {
    await context.receiver?.close();
    await context.redis?.stop();
  });

  const env = (mode, path) => ({
    SOKETI_MODE: mode,
    SOKETI_QUEUE_DRIVER: 'redis',
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(context.redis.port),
    SOKETI_DB_REDIS_KEY_PREFIX: prefix,
    SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ url: context.receiver.url(path), event_types: ['channel_occupied'] }]),
  });
  const waitingList = () => redisCall(context.redis.port, ['LRANGE', `${prefix}queue:webhooks:waiting`, '0', '-1']);
  const processingLength = () => redisCall(context.redis.port, ['LLEN', `${prefix}queue:webhooks:processing`]);
  const occupied = (channel) => ({ name: 'channel_occupied', channel });

  it('a `server` process serves WebSockets and the HTTP API and queues webhooks that only a `worker` delivers', async (t) => {
    const { receiver, redis } = context;
    const path = '/split';
    const since = receiver.mark();
    const server = await servers.start('the server-mode process', env('server', path));
    const served = await assertServesPusher(server);

    const name = uniqueChannel('split-');
    await server.rawSubscribed(name);
    // The job is in Redis: queued by the server, not sent.
    await until(
      async () => {
        const sent = receiver.events({ path, since, accepted: false }).filter((e) => e.channel === name);
        assert.deepEqual(sent, [], 'the server-mode process sent the webhook itself');
        return (await waitingList()).some((job) => job.includes(name));
      },
      { what: `the channel_occupied job of ${name} in ${prefix}queue:webhooks:waiting` },
    );
    const watchedFrom = performance.now();
    while (performance.now() - watchedFrom < NO_CONSUMER_WINDOW_MS) {
      const waiting = await waitingList();
      assert.ok(waiting.some((job) => job.includes(name)), `the job stays in the waiting list: ${JSON.stringify(waiting)}`);
      assert.equal(await processingLength(), 0, 'no job is being processed');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.equal(receiver.requests.slice(since).length, 0, `no webhook without a worker: ${receiver.describe(since)}`);
    assert.equal(await commandCalls(redis.port, 'blmove'), 0, 'no process waited for a job (BLMOVE) in Redis');

    const startedAt = performance.now();
    const worker = await servers.start('the worker-mode process', env('worker', path));
    const [event] = await receiver.waitForEvents(occupied(name), 1, { path, since, timeout: DELIVERY_DEADLINE_MS });
    t.diagnostic(`the worker delivered the queued webhook ${Math.round(event.request.at - Date.now() + performance.now() - startedAt)} ms after it was started`);
    assert.equal(event.request.headers['x-pusher-key'], APP.key, 'the webhook is signed for the app');
    await until(async () => (await waitingList()).length === 0, { what: 'the waiting list to be empty' });
    assert.ok((await commandCalls(redis.port, 'blmove')) > 0, 'the worker waits for jobs with BLMOVE');

    // With both running, what the server queues from now on reaches the receiver through the worker.
    const later = uniqueChannel('split-later-');
    await server.rawSubscribed(later);
    await receiver.waitForEvents(occupied(later), 1, { path, since, timeout: DELIVERY_DEADLINE_MS });
    // One consumer takes the jobs in the order they were queued, each once.
    assert.deepEqual(
      receiver.events({ path, since }).map((e) => e.channel),
      [served, name, later],
      `each webhook once, in order: ${receiver.describe(since)}`,
    );
    assert.equal(worker.server.exitInfo(), null, 'the worker is still running');
  });

  it('a `worker` process answers only / and /ready on its main port: no WebSocket, no HTTP API, no /accept-traffic', async () => {
    const worker = await servers.start('the worker-mode process', env('worker', '/worker-only'));
    const { server } = worker;
    for (const route of ['/', '/ready']) {
      const res = await httpRequest(`${server.baseUrl}${route}`);
      assert.deepEqual({ status: res.status, text: res.text }, { status: 200, text: 'OK' }, `GET ${route}`);
    }
    assert.equal(await upgradeStatus(server.wsUrl()), 404, 'the WebSocket upgrade at /app/app-key');
    const refused = {
      'GET /accept-traffic': await httpRequest(`${server.baseUrl}/accept-traffic`),
      'POST /apps/app-id/events': await signedRequest(server, {
        path: `/apps/${server.appId}/events`,
        body: { name: 'e', channel: uniqueChannel(), data: '{}' },
      }),
      'GET /apps/app-id/channels': await signedRequest(server, { method: 'GET', path: `/apps/${server.appId}/channels` }),
    };
    for (const [what, res] of Object.entries(refused)) {
      assert.equal(res.status, 404, `${what}: ${res.text}`);
      assert.deepEqual(res.json, { error: 'Not found.', code: 404 }, `${what}: ${res.text}`);
    }
  });

  it('a `full` process serves WebSockets and the HTTP API and delivers its own webhooks from the Redis queue', async () => {
    const { receiver, redis } = context;
    const path = '/full';
    const since = receiver.mark();
    const full = await servers.start('the full-mode process', env('full', path));
    await assertServesPusher(full);
    const name = uniqueChannel('full-');
    await full.rawSubscribed(name);
    await receiver.waitForEvents(occupied(name), 1, { path, since, timeout: DELIVERY_DEADLINE_MS });
    await until(async () => (await waitingList()).length === 0, { what: 'the waiting list to be empty' });
    assert.ok((await commandCalls(redis.port, 'blmove')) > 0, 'the full process waits for jobs with BLMOVE');
  });
});

describe('SOKETI_MODE=server with the sync queue', () => {
  const context = { receiver: null };
  const servers = useServers(context);
  before(async () => {
    context.receiver = await startReceiver();
  });
  after(async () => {
    await context.receiver?.close();
  });

  // A sync queue lives in the process that fills it, so no worker could take its jobs: the
  // server sends them itself (lib.rs starts the sender unless mode is server AND the queue is
  // shared).
  it('sends its webhooks itself, since no other process can take them', async () => {
    const { receiver } = context;
    const since = receiver.mark();
    const server = await servers.start('the server-mode process', {
      SOKETI_MODE: 'server',
      SOKETI_DEFAULT_APP_WEBHOOKS: JSON.stringify([{ url: receiver.url('/sync'), event_types: ['channel_occupied'] }]),
    });
    await assertServesPusher(server);
    const name = uniqueChannel('sync-');
    await server.rawSubscribed(name);
    await receiver.waitForEvents({ name: 'channel_occupied', channel: name }, 1, { path: '/sync', since });
  });
});

// ---------------------------------------------------------------------------------------------
// SOKETI_HTTP_MAX_REQUEST_SIZE
// ---------------------------------------------------------------------------------------------

// A fraction of a megabyte: the option is a float, and the limit is floor(MB * 1024 * 1024)
// bytes (Config::max_request_bytes), here 10485, well under the 100 KB event payload limit.
const REQUEST_LIMIT_MB = 0.01;
const REQUEST_LIMIT_BYTES = Math.floor(REQUEST_LIMIT_MB * 1024 * 1024);

describe(`SOKETI_HTTP_MAX_REQUEST_SIZE=${REQUEST_LIMIT_MB} (${REQUEST_LIMIT_BYTES} bytes)`, () => {
  const scope = useServer({ SOKETI_HTTP_MAX_REQUEST_SIZE: String(REQUEST_LIMIT_MB) });

  /** A publish body of exactly `bytes` bytes (ASCII) to `channel`. */
  function bodyOfSize(bytes, channel, name) {
    const head = `{"name":"${name}","channel":"${channel}","data":"`;
    const tail = '"}';
    const text = `${head}${'x'.repeat(bytes - head.length - tail.length)}${tail}`;
    assert.equal(Buffer.byteLength(text), bytes);
    return text;
  }

  const publish = (body) => signedRequest(scope.server, { path: `/apps/${scope.server.appId}/events`, body });

  it('accepts a body of exactly the limit, and the event is delivered', async () => {
    const channel = uniqueChannel();
    const client = await scope.rawSubscribed(channel);
    const res = await publish(bodyOfSize(REQUEST_LIMIT_BYTES, channel, 'at-limit'));
    assert.equal(res.status, 200, res.text);
    const frame = await client.next('at-limit');
    assert.equal(parseData(frame).length, REQUEST_LIMIT_BYTES - `{"name":"at-limit","channel":"${channel}","data":""}`.length);
  });

  it('answers 413 with a JSON {error, code} to a body one byte over the limit, and delivers nothing', async () => {
    const channel = uniqueChannel();
    const client = await scope.rawSubscribed(channel);
    const res = await publish(bodyOfSize(REQUEST_LIMIT_BYTES + 1, channel, 'over-limit'));
    assertHttpError(res, 413);
    assert.match(res.headers.get('content-type') ?? '', /application\/json/);
    // A sentinel published after it comes first: the refused event was never delivered.
    const sentinel = await publish({ name: 'sentinel', channel, data: '{}' });
    assert.equal(sentinel.status, 200, sentinel.text);
    const frame = await client.next((f) => f.channel === channel);
    assert.equal(frame.event, 'sentinel', `frames: ${client.describeHistory()}`);
  });
});

// ---------------------------------------------------------------------------------------------
// SOKETI_CHANNEL_CACHE_TTL
// ---------------------------------------------------------------------------------------------

const CACHE_TTL_S = 2;
const CACHE_TTL_MS = CACHE_TTL_S * 1000;
// How long after the TTL the miss may come: a probe is one subscribe round trip, which a loaded
// machine can stretch; 3 s is far more than one needs.
const EXPIRY_MARGIN_MS = 3_000;
const PROBE_INTERVAL_MS = 100;
// Performance.now() and the server's monotonic clock tick apart by well under this.
const CLOCK_TOLERANCE_MS = 10;
// A run whose first probe came back after the TTL proves nothing about "within the TTL"; it is
// tried again on a new channel, at most this many times.
const CACHE_RUNS = 3;

/**
 * Subscribes `client` to the cache channel, takes the frame that follows subscription_succeeded
 * (the cached event or pusher:cache_miss), and unsubscribes. Times are performance.now().
 */
async function probe(client, channel) {
  const sentAt = performance.now();
  await client.subscribeOk(channel);
  const frame = await client.next((f) => f.channel === channel);
  const at = performance.now();
  client.send({ event: 'pusher:unsubscribe', data: { channel } });
  return { sentAt, at, frame, hit: frame.event !== 'pusher:cache_miss' };
}

/**
 * Publishes `first` then `last` on a new cache channel and probes it until the miss, or until
 * the TTL and the margin have passed since the publish. Returns the probes and the publish's
 * start and end, or null when the first probe came back after the TTL (a machine too slow for
 * the run to say anything).
 */
async function cacheRun(scope, t) {
  const channel = uniqueChannel('cache-');
  const client = await scope.rawConnected();
  const sdk = scope.sdk();
  assert.equal((await sdk.trigger(channel, 'first', { n: 1 })).status, 200);
  // The TTL runs from the last event's publish: the server keeps it before it answers.
  const publishedFrom = performance.now();
  assert.equal((await sdk.trigger(channel, 'last', { n: 2 })).status, 200);
  const publishedBy = performance.now();
  const deadline = publishedBy + CACHE_TTL_MS + EXPIRY_MARGIN_MS;

  const probes = [];
  for (;;) {
    const result = await probe(client, channel);
    probes.push(result);
    if (!result.hit || result.at > deadline) break;
    await new Promise((resolve) => setTimeout(resolve, PROBE_INTERVAL_MS));
  }
  client.terminate();
  const [firstProbe] = probes;
  if (!firstProbe.hit && firstProbe.at - publishedFrom >= CACHE_TTL_MS) {
    t.diagnostic(`the first probe took until ${Math.round(firstProbe.at - publishedFrom)} ms after the publish; trying again`);
    return null;
  }
  return { channel, probes, publishedFrom, publishedBy, deadline };
}

/** The assertions of the cache TTL tests, on a run of `cacheRun`. */
function assertCacheTtl({ channel, probes, publishedFrom, publishedBy, deadline }, t) {
  const timeline = probes
    .map((p) => `${p.hit ? p.frame.event : 'miss'} @${Math.round(p.sentAt - publishedFrom)}..${Math.round(p.at - publishedFrom)}ms`)
    .join(', ');
  t.diagnostic(`probes of ${channel} (times from the publish): ${timeline}`);
  const hits = probes.filter((p) => p.hit);
  const miss = probes.find((p) => !p.hit);

  assert.ok(hits.length > 0, `the last event is given to a subscriber within the TTL: ${timeline}`);
  for (const hit of hits) {
    assert.deepEqual({ event: hit.frame.event, data: parseData(hit.frame) }, { event: 'last', data: { n: 2 } }, `the last event: ${timeline}`);
    assert.ok(
      hit.sentAt < publishedBy + CACHE_TTL_MS + CLOCK_TOLERANCE_MS,
      `a subscription made after the TTL got the cached event: ${timeline}`,
    );
  }
  assert.ok(miss, `pusher:cache_miss within ${CACHE_TTL_MS} + ${EXPIRY_MARGIN_MS} ms of the publish: ${timeline}`);
  assert.ok(miss.at <= deadline + PROBE_INTERVAL_MS, `the miss came by the deadline: ${timeline}`);
  assert.ok(
    miss.at - publishedFrom >= CACHE_TTL_MS - CLOCK_TOLERANCE_MS,
    `the event is kept for the whole TTL (${CACHE_TTL_MS} ms), not less: ${timeline}`,
  );
}

/** Runs `cacheRun` until one is conclusive, at most CACHE_RUNS times. */
async function conclusiveCacheRun(scope, t) {
  for (let i = 0; i < CACHE_RUNS; i += 1) {
    const run = await cacheRun(scope, t);
    if (run) return run;
  }
  throw new Error(`${CACHE_RUNS} runs in a row had their first probe answered after the ${CACHE_TTL_MS} ms TTL`);
}

describe(`SOKETI_CHANNEL_CACHE_TTL=${CACHE_TTL_S} with the memory cache`, () => {
  const scope = useServer({ SOKETI_CHANNEL_CACHE_TTL: String(CACHE_TTL_S) });

  it('gives a cache channel\'s last event to new subscribers within the TTL, and pusher:cache_miss after it', async (t) => {
    assertCacheTtl(await conclusiveCacheRun(scope, t), t);
  });
});

describe(`SOKETI_CHANNEL_CACHE_TTL=${CACHE_TTL_S} with the Redis cache (SOKETI_CACHE_DRIVER=redis)`, { skip: redisSkip() }, () => {
  const context = { redis: null };
  const servers = useServers(context);
  before(async () => {
    context.redis = await startRedis();
  });
  after(async () => {
    await context.redis?.stop();
  });

  it('keeps the last event in Redis, under the key prefix, with the TTL: given within it, pusher:cache_miss after it', async (t) => {
    const keyPrefix = 'cache-ttl:';
    const scope = await servers.start('the server', {
      SOKETI_CHANNEL_CACHE_TTL: String(CACHE_TTL_S),
      SOKETI_CACHE_DRIVER: 'redis',
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(context.redis.port),
      SOKETI_DB_REDIS_KEY_PREFIX: keyPrefix,
    });
    // The key, as soketi names it after SOKETI_DB_REDIS_KEY_PREFIX, carries the TTL in Redis itself.
    const name = uniqueChannel('cache-');
    assert.equal((await scope.sdk().trigger(name, 'kept', {})).status, 200);
    const key = `app:${APP.appId}:channel:${name}:cache_miss`;
    const pttl = await redisCall(context.redis.port, ['PTTL', `${keyPrefix}${key}`]);
    assert.ok(pttl > 0 && pttl <= CACHE_TTL_MS, `PTTL of ${keyPrefix}${key} is within (0, ${CACHE_TTL_MS}] ms: ${pttl}`);
    assert.equal(await redisCall(context.redis.port, ['EXISTS', key]), 0, 'nothing is kept without the prefix');

    assertCacheTtl(await conclusiveCacheRun(scope, t), t);
  });
});
