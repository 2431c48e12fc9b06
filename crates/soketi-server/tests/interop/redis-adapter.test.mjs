// The Redis adapter (SOKETI_ADAPTER_DRIVER=redis): several server processes sharing one
// throwaway redis-server behave as one server. The fleet suite (fleet-suite.mjs: events, client
// events, presence, the HTTP listings, users, cache channels, webhooks once per fleet, a node
// killed with SIGKILL) runs over it; this file adds what is Redis's own: a Redis restart is
// survived, and the cache driver shares cache channels through Redis.
//
// Each `describe` starts its own redis-server (see redis.mjs) and its own nodes, with short
// liveness settings (heartbeats every 200 ms, a node gone after 1 s of silence). Before the
// tests run, the nodes' discovery of each other is awaited by subscribing a probe channel on
// every node and polling `GET /channels` on every node until all probes are listed.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { Scope, httpRequest, parseData, startServer, uniqueChannel } from './harness.mjs';
import { poll, useBusFleets } from './cluster.mjs';
import { fleetSuite } from './fleet-suite.mjs';
import { natsSkip, startNats } from './nats.mjs';
import { redisSkip, startRedis } from './redis.mjs';

// The bus of the fleet: Redis here; nats-adapter.test.mjs reruns this suite over NATS by
// setting SOKETI_TEST_FLEET_BUS=nats before importing it. Both adapters share the
// HorizontalAdapter, so every semantic must hold over both.
const BUS = process.env.SOKETI_TEST_FLEET_BUS === 'nats' ? 'nats' : 'redis';
const busSkip = BUS === 'nats' ? natsSkip : redisSkip;
const startBus = BUS === 'nats' ? startNats : startRedis;

const HEARTBEAT_INTERVAL_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const REQUESTS_TIMEOUT_MS = 1_000;
const DISCOVERY_DEADLINE_MS = 10_000;

/** The environment of a node of the fleet that shares `redis` (or the NATS server). */
function nodeEnv(redis, extra = {}) {
  if (BUS === 'nats') {
    return {
      SOKETI_ADAPTER_DRIVER: 'nats',
      SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${redis.port}`]),
      SOKETI_ADAPTER_NATS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
      SOKETI_ADAPTER_NATS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
      SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
      SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
      ...extra,
    };
  }
  return {
    SOKETI_ADAPTER_DRIVER: 'redis',
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(redis.port),
    SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
    SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_REDIS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    ...extra,
  };
}

/**
 * Registers suite hooks that start a redis-server and one node per name (`['A', 'B']`) on it,
 * with `extraEnv`, and wait for the nodes to discover each other (`useBusFleets`). The returned
 * context has a `Scope` per name (`cluster.A`, ...), `cluster.nodes`, `cluster.redis` and
 * `cluster.discovery`.
 */
function useCluster(names, extraEnv = {}) {
  return useBusFleets({ name: 'redis', start: startBus, nodeEnv }, { fleet: { labels: names, env: extraEnv } }, {
    discoveryTimeout: DISCOVERY_DEADLINE_MS,
  });
}
// ---------------------------------------------------------------------------------------------
// The fleet suite (fleet-suite.mjs), over this bus
// ---------------------------------------------------------------------------------------------

fleetSuite({
  title: `${BUS} adapter`,
  skip: busSkip(),
  nodeTimeoutMs: NODE_TIMEOUT_MS,
  setup: () => startBus(),
  nodeSpecs: (bus, labels, env) => labels.map((label) => ({ label, env: nodeEnv(bus, env) })),
  teardown: (bus) => bus?.stop(),
  logs: (bus) => bus.logs(),
});

/** `GET /apps/<id>/channels` on a node: the `channels` object. */
async function listChannels(scope, params = {}) {
  const res = await scope.sdk().get({ path: '/channels', params });
  return (await res.json()).channels;
}

// The rest is about Redis itself.
if (BUS === 'redis') describe('redis adapter: a Redis restart', { skip: redisSkip() }, () => {
  const cluster = useCluster(['A', 'B']);
  const { A, B } = cluster;

  it('nodes discover each other', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it('delivers events from A to B again within 5 s of Redis coming back, with both nodes still up', async (t) => {
    const name = uniqueChannel();
    const subscriber = await B.rawSubscribed(name);
    await A.sdk().trigger(name, 'before', {});
    await subscriber.next('before');

    await cluster.redis.restart();
    const backAt = Date.now();

    // An event every 250 ms until one arrives; the SDK calls are not awaited one by one, since
    // a node may hold a request while it reconnects.
    const sdk = A.sdk({ timeout: 2_000 });
    const outcomes = [];
    let arrived = null;
    for (let n = 1; !arrived; n += 1) {
      if (Date.now() - backAt > 10_000) {
        throw new Error(
          `no event published on A reached B within 10 s of the Redis restart; publish outcomes: ${outcomes.join(', ')}; ` +
            `subscriber on B: ${subscriber.describeHistory()}; node A ${A.server.exitInfo() ? 'exited' : 'running'}, ` +
            `node B ${B.server.exitInfo() ? 'exited' : 'running'}`,
        );
      }
      sdk.trigger(name, 'after', { n }).then(
        (res) => outcomes.push(`${n}:${res.status}`),
        (err) => outcomes.push(`${n}:${err.status ?? err.message}`),
      );
      arrived = await subscriber.next('after', 250).catch(() => null);
    }
    const took = Date.now() - backAt;
    t.diagnostic(`event ${parseData(arrived).n} reached B ${took} ms after Redis was back; publish outcomes: ${outcomes.join(', ')}`);
    assert.ok(took <= 5_000, `the first event (${arrived.data}) reached B ${took} ms after Redis was back; publish outcomes: ${outcomes.join(', ')}`);
    assert.ok(subscriber.isOpen, "B's WebSocket client stayed connected");

    for (const scope of [A, B]) {
      assert.equal(scope.server.exitInfo(), null, `node ${scope.label} is still running`);
      const ready = await httpRequest(`${scope.server.baseUrl}/ready`);
      assert.equal(ready.status, 200, `GET /ready on node ${scope.label}: ${ready.text}`);
    }
  });

  it('answers for the other node again after the Redis restart', async () => {
    const name = uniqueChannel();
    await B.rawSubscribed(name);
    await poll(
      `GET /channels on A to list ${name}, subscribed on B`,
      () => listChannels(A),
      (channels) => channels[name]?.subscription_count === 1,
    );
  });
});

if (BUS === 'redis') describe('redis adapter: cache channels shared in Redis (SOKETI_CACHE_DRIVER=redis)', { skip: redisSkip() }, () => {
  const cluster = useCluster(['A'], { SOKETI_CACHE_DRIVER: 'redis' });
  const { A } = cluster;

  it('gives a subscriber of a node started after the publish the cached event', async () => {
    const name = uniqueChannel('cache-');
    const res = await A.sdk().trigger(name, 'cached', { n: 1 });
    assert.equal(res.status, 200);

    const late = new Scope();
    late.label = 'B (started after the publish)';
    late.server = await startServer(nodeEnv(cluster.redis, { SOKETI_CACHE_DRIVER: 'redis' }));
    try {
      const client = await late.rawSubscribed(name);
      const frame = await client.next();
      assert.deepEqual(
        { event: frame.event, channel: frame.channel },
        { event: 'cached', channel: name },
        `subscriber on the late node: ${client.describeHistory()}`,
      );
      assert.deepEqual(parseData(frame), { n: 1 });
    } catch (err) {
      late.server.dumpLogs('the late node, for a failed test');
      throw err;
    } finally {
      late.closeClients();
      await late.server.stop();
    }
  });
});
