// Redis Cluster (SOKETI_ADAPTER_REDIS_CLUSTER_MODE, CACHE_, QUEUE_, RATE_LIMITER_REDIS_CLUSTER_MODE
// and SOKETI_DB_REDIS_CLUSTER_NODES): three masters made with `redis-cli --cluster create` on
// free ports. The adapter uses sharded pub/sub (SSUBSCRIBE, SPUBLISH; docs/redis.md says why);
// the queue's keys carry a hash tag, so that BLMOVE and its scripts touch one slot.
//
// The fleet suite (fleet-suite.mjs) runs over the Cluster with the cache, the webhook queue and
// the rate limiter in it too; the fleet's webhooks then travel through the queue. Then: the
// nodes are found from one seed node, the queue's keys share one slot, a budget is kept for
// the whole fleet in the Cluster, and webhook batches (open in the Cluster, closed by its
// scripts) reach the receiver whole.

import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { useBusFleets } from './cluster.mjs';
import { uniqueChannel } from './harness.mjs';
import { DEFAULT_APP, assertWebhookRequest, countBy, hooksEnv } from './webhook-checks.mjs';
import { startReceiver } from './webhook-receiver.mjs';
import { fleetSuite } from './fleet-suite.mjs';
import { FLEET_NODE_TIMEOUT_MS, redisCall, redisFleetEnv, redisSkip, startRedisCluster } from './redis.mjs';

/** Every Redis user in cluster mode, found from `seeds` (ports). */
function clusterEnv(seeds) {
  return {
    SOKETI_DB_REDIS_CLUSTER_NODES: JSON.stringify(seeds.map((port) => ({ host: '127.0.0.1', port }))),
    SOKETI_ADAPTER_REDIS_CLUSTER_MODE: 'true',
    SOKETI_CACHE_REDIS_CLUSTER_MODE: 'true',
    SOKETI_QUEUE_REDIS_CLUSTER_MODE: 'true',
    SOKETI_RATE_LIMITER_REDIS_CLUSTER_MODE: 'true',
    SOKETI_CACHE_DRIVER: 'redis',
    SOKETI_QUEUE_DRIVER: 'redis',
    SOKETI_RATE_LIMITER_DRIVER: 'redis',
    // Nothing listens here: cluster mode must not use DB_REDIS_HOST/PORT.
    SOKETI_DB_REDIS_PORT: '1',
  };
}

fleetSuite({
  title: 'redis adapter over Redis Cluster (cache, queue and rate limiter in the Cluster too)',
  skip: redisSkip(),
  nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
  setup: () => startRedisCluster(),
  nodeSpecs: (bus, labels, env) => labels.map((label) => ({ label, env: redisFleetEnv(clusterEnv(bus.ports), env) })),
  teardown: (bus) => bus?.stop(),
  logs: (bus) => bus.logs(),
});

describe('redis over Cluster: slots and budgets', { skip: redisSkip() }, () => {
  const cluster = useBusFleets(
    // One seed node: the others are found from it.
    { name: 'redis', start: () => startRedisCluster(), nodeEnv: (bus, env) => redisFleetEnv(clusterEnv(bus.ports.slice(0, 1)), env) },
    {
      fleet: {
        labels: ['A', 'B'],
        env: { SOKETI_DB_REDIS_KEY_PREFIX: 'slots:', SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC: '5' },
      },
    },
    { discoveryTimeout: 15_000 },
  );
  const { A, B } = cluster;

  it('nodes found from one seed discover each other', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it("the queue's keys share one hash slot", async () => {
    const keys = ['waiting', 'processing', 'delayed', 'batches', `batch:0:${DEFAULT_APP.id}`].map((k) => `slots:{queue:webhooks}:${k}`);
    const slots = await Promise.all(keys.map((k) => redisCall(cluster.redis.ports[0], ['CLUSTER', 'KEYSLOT', k])));
    assert.equal(new Set(slots).size, 1, `the slots of ${keys.join(', ')}: ${slots.join(', ')}`);
  });

  it('keeps one budget of backend events for both nodes in the Cluster: 5 a second in all', async (t) => {
    // Six events through A and B in turn within one second: the sixth is over the fleet's
    // budget (with a budget per node, each would admit three). A burst that a slow machine
    // spreads over more than a window proves nothing, so it is tried again, up to five times.
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      const channel = `budget-${attempt}`;
      const statuses = [];
      const start = Date.now();
      for (const scope of [A, B, A, B, A, B]) {
        const res = await scope.sdk().trigger(channel, 'e', {}).catch((err) => err);
        statuses.push(res.status);
      }
      if (Date.now() - start > 800) {
        t.diagnostic(`attempt ${attempt} took ${Date.now() - start} ms; trying again`);
        await new Promise((resolve) => setTimeout(resolve, 1_100));
        continue;
      }
      assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429], 'the sixth event in one second is over the fleet budget');
      const key = 'slots:app:app-id:app-id:backend:events';
      const slot = await redisCall(cluster.redis.ports[0], ['CLUSTER', 'KEYSLOT', key]);
      assert.equal(typeof slot, 'number', `the budget's key ${key} is a key of the Cluster`);
      return;
    }
    assert.fail('no burst of six requests fitted in 800 ms in five attempts');
  });
});

describe('redis over Cluster: webhook batches', { skip: redisSkip() }, () => {
  const BATCH_MS = 300;
  let receiver = null;
  const cluster = useBusFleets(
    {
      name: 'redis',
      start: async () => {
        receiver = await startReceiver();
        return startRedisCluster();
      },
      nodeEnv: (bus, env) =>
        redisFleetEnv(clusterEnv(bus.ports), {
          ...env,
          ...hooksEnv([{ url: receiver.url('/batched'), event_types: ['channel_occupied'] }]),
        }),
    },
    {
      fleet: {
        labels: ['A', 'B'],
        env: { SOKETI_DB_REDIS_KEY_PREFIX: 'batches:', SOKETI_WEBHOOKS_BATCHING: 'true', SOKETI_WEBHOOKS_BATCHING_DURATION: String(BATCH_MS) },
      },
    },
    { discoveryTimeout: 15_000 },
  );
  after(() => receiver?.close());

  it('events fired on both nodes reach the receiver once each, in batches closed in the Cluster', async (t) => {
    if (cluster.discovery) throw cluster.discovery;
    const { A, B } = cluster;
    const names = Array.from({ length: 20 }, (_, i) => uniqueChannel(`batched-${i}-`));
    for (const [i, name] of names.entries()) await (i % 2 ? B : A).rawSubscribed(name);
    const events = await receiver.waitForEvents((e) => e.name === 'channel_occupied' && names.includes(e.channel), names.length, { path: '/batched' });
    const requests = new Set(events.map((e) => e.request.seq));
    t.diagnostic(`${names.length} channel_occupied from two nodes in ${requests.size} request(s)`);
    for (const event of events) assertWebhookRequest(event.request, DEFAULT_APP, { headers: {} });
    assert.ok(requests.size < names.length, `batched: ${requests.size} requests for ${names.length} events`);
    // Nothing more comes: each once.
    await new Promise((resolve) => setTimeout(resolve, 2 * BATCH_MS + 200));
    const counts = countBy(receiver.events({ path: '/batched' }).filter((e) => names.includes(e.channel)).map((e) => e.channel));
    assert.deepEqual(Object.values(counts), names.map(() => 1), JSON.stringify(counts));
  });
});
