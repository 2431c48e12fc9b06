// Rate limits across a fleet: three nodes, an app limited to 10 backend events per second, and
// 60 publishes sent within one second, spread evenly over the nodes (one every 16 ms, in
// turn). With the cluster rate limiter (over the cluster adapter) and with the Redis one, the
// fleet admits one budget: at most 10 plus a tolerance of 2, for the few milliseconds a
// consumption takes to reach the other nodes (a publish every 16 ms makes two in flight at the
// very most). With the local driver, each node admits its own 10, so the fleet admits about 30:
// the difference the cluster driver makes.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { signedRequest, startServer, until } from './harness.mjs';
import { redisSkip, startRedis } from './redis.mjs';

const LIMIT = 10;
const TOLERANCE = 2;
const SENT = 60;
const SPREAD_MS = 960;

function clusterEnv(port, group) {
  return {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(port),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: group,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: '100',
    SOKETI_CLUSTER_CHECK_INTERVAL: '100',
    SOKETI_CLUSTER_NODE_TIMEOUT: '1000',
    SOKETI_CLUSTER_MASTER_TIMEOUT: '1000',
  };
}

function randomGroup() {
  const byte = () => 1 + Math.floor(Math.random() * 250);
  return `239.255.${byte()}.${byte()}`;
}

function randomClusterPort() {
  return 20_000 + Math.floor(Math.random() * 20_000);
}

/** Starts three nodes with `env` and waits until each lists the two others on `/cluster`. */
async function startFleet(env, { discover = true } = {}) {
  const nodes = [];
  for (let i = 0; i < 3; i += 1) {
    nodes.push(await startServer({ SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC: String(LIMIT), ...env }));
  }
  if (discover) {
    for (const node of nodes) {
      await until(
        async () => {
          const res = await fetch(`http://127.0.0.1:${node.metricsPort}/cluster`);
          const body = await res.json();
          return body.nodes?.length === 2;
        },
        { timeout: 10_000, what: 'the nodes to find each other' },
      );
    }
  }
  return nodes;
}

/** Sends SENT publishes over SPREAD_MS, to the nodes in turn; resolves with the statuses. */
async function burst(nodes) {
  const started = Date.now();
  const answers = [];
  for (let i = 0; i < SENT; i += 1) {
    const due = started + (i * SPREAD_MS) / SENT;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const node = nodes[i % nodes.length];
    answers.push(
      signedRequest(node, {
        path: '/apps/app-id/events',
        body: { name: 'tick', channel: 'limited', data: JSON.stringify({ i }) },
      }).then((res) => res.status),
    );
  }
  const statuses = await Promise.all(answers);
  assert.ok(Date.now() - started < 1_500, 'the burst fits in about a second');
  const admitted = statuses.filter((s) => s === 200).length;
  const refused = statuses.filter((s) => s === 429).length;
  assert.equal(admitted + refused, SENT, `only 200 and 429: ${statuses.join(',')}`);
  return admitted;
}

describe('rate limits with the cluster driver over the cluster adapter', () => {
  let nodes = [];
  before(async () => {
    const env = { ...clusterEnv(randomClusterPort(), randomGroup()), SOKETI_RATE_LIMITER_DRIVER: 'cluster' };
    nodes = await startFleet(env);
  });
  after(() => Promise.all(nodes.map((n) => n.stop())));

  it(`admits one budget of ${LIMIT} (+${TOLERANCE}) for the whole fleet`, async () => {
    const admitted = await burst(nodes);
    assert.ok(admitted >= LIMIT, `at least the budget is admitted: ${admitted}`);
    assert.ok(admitted <= LIMIT + TOLERANCE, `at most ${LIMIT}+${TOLERANCE} admitted: ${admitted}`);
  });
});

describe('rate limits with the local driver over the cluster adapter', () => {
  let nodes = [];
  before(async () => {
    nodes = await startFleet({ ...clusterEnv(randomClusterPort(), randomGroup()), SOKETI_RATE_LIMITER_DRIVER: 'local' });
  });
  after(() => Promise.all(nodes.map((n) => n.stop())));

  it(`admits ${LIMIT} per node: the fleet passes its budget threefold`, async () => {
    const admitted = await burst(nodes);
    assert.equal(admitted, 3 * LIMIT, `each node admits its own ${LIMIT}`);
  });
});

describe('rate limits with the redis driver', { skip: redisSkip() }, () => {
  let nodes = [];
  let redis;
  before(async () => {
    redis = await startRedis();
    const env = {
      SOKETI_ADAPTER_DRIVER: 'redis',
      SOKETI_RATE_LIMITER_DRIVER: 'redis',
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(redis.port),
      SOKETI_ADAPTER_REDIS_HEARTBEAT_INTERVAL: '200',
      SOKETI_ADAPTER_REDIS_NODE_TIMEOUT: '1000',
    };
    nodes = await startFleet(env);
  });
  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await redis?.stop();
  });

  it(`admits one budget of ${LIMIT} for the whole fleet`, async () => {
    const admitted = await burst(nodes);
    // One atomic count in Redis: no tolerance is needed.
    assert.equal(admitted, LIMIT);
  });

  it('answers 429 with the budget headers, and passes again after a second', async () => {
    const [node] = nodes;
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const send = () =>
      signedRequest(node, { path: '/apps/app-id/events', body: { name: 'x', channel: 'limited', data: '{}' } });
    const first = await send();
    assert.equal(first.status, 200);
    assert.equal(first.headers.get('x-ratelimit-limit'), String(LIMIT));
    let refused;
    for (let i = 0; i < LIMIT + 1 && !refused; i += 1) {
      const res = await send();
      if (res.status === 429) refused = res;
    }
    assert.ok(refused, 'the budget runs out');
    assert.equal(refused.json.code, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  });
});
