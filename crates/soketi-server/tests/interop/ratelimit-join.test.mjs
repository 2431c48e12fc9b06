// The cluster rate limiter hands the budget already spent to a node that joins the fleet: the
// master sends a joiner its windows, so a node started in the middle of a second does not open
// a fresh budget of its own. Two processes on loopback (multicast discovery on 127.0.0.1), an app
// limited to LIMIT backend events per second.
//
// A spends the whole budget through A, then B starts and joins, then LIMIT publishes go through
// B. Budgets are sliding windows of one second, so what B must refuse depends on when: the proof
// only holds while B's publishes are answered within a second of A's first one. A slow machine
// may start B later than that; the scenario is then tried again after the window has passed,
// up to ATTEMPTS times. With the local driver (the control), B admits a budget of its own, which
// shows that the measurement can tell the two apart.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Scope, signedRequest, startServer } from './harness.mjs';
import { awaitMesh, randomClusterPort, randomMulticastGroup } from './cluster.mjs';

const LIMIT = 10;
const ATTEMPTS = 3;
// A consumption counts for one second, in slots of 10 ms: keep a slot's worth of margin.
const WINDOW_MS = 1_000 - 10;

function env(driver) {
  return {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_RATE_LIMITER_DRIVER: driver,
    SOKETI_DEFAULT_APP_MAX_BACKEND_EVENTS_PER_SEC: String(LIMIT),
    SOKETI_CLUSTER_HOST: '127.0.0.1',
    SOKETI_CLUSTER_PORT: String(randomClusterPort()),
    SOKETI_CLUSTER_MULTICAST_ADDRESS: randomMulticastGroup(),
    SOKETI_CLUSTER_PREFIX: `skt-rl-join-${process.pid}-${driver}`,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: '100',
    SOKETI_CLUSTER_CHECK_INTERVAL: '100',
    SOKETI_CLUSTER_NODE_TIMEOUT: '1000',
    SOKETI_CLUSTER_MASTER_TIMEOUT: '1000',
  };
}

/** `count` publishes through `server`, one after the other; resolves with their statuses. */
async function publish(server, count) {
  const statuses = [];
  for (let i = 0; i < count; i += 1) {
    const res = await signedRequest(server, { path: '/apps/app-id/events', body: { name: 'tick', channel: 'limited', data: '{}' } });
    statuses.push(res.status);
  }
  assert.ok(
    statuses.every((s) => s === 200 || s === 429),
    `only 200 and 429: ${statuses.join(',')}`,
  );
  return statuses;
}

const admitted = (statuses) => statuses.filter((s) => s === 200).length;

/**
 * The scenario: A spends the budget, B starts and joins, B publishes LIMIT times. Resolves with
 * what B admitted, or null when B's answers came too late to count (a slow start of B).
 */
async function scenario(driver, t) {
  const A = new Scope();
  const B = new Scope();
  A.label = 'A';
  B.label = 'B';
  const nodeEnv = env(driver);
  try {
    A.server = await startServer(nodeEnv);
    await awaitMesh([A]);
    const startedAt = Date.now();
    const onA = await publish(A.server, LIMIT + 2);
    assert.equal(admitted(onA), LIMIT, `A admits its budget and refuses the rest: ${onA.join(',')}`);
    B.server = await startServer(nodeEnv);
    await awaitMesh([A, B]);
    // The master greets a joiner (its windows) when it hears of it, before it answers the
    // joiner's questions on the same ordered link: once a fleet-wide query through B has its
    // answer, the windows are there.
    assert.equal((await B.sdk().get({ path: '/channels' })).status, 200);
    const onB = await publish(B.server, LIMIT);
    const took = Date.now() - startedAt;
    t.diagnostic(`${driver}: B admitted ${admitted(onB)} of ${LIMIT}, ${took} ms after A's first publish (${onB.join(',')})`);
    return took < WINDOW_MS ? admitted(onB) : null;
  } catch (err) {
    for (const scope of [A, B]) scope.server?.dumpLogs(`node ${scope.label}, ${driver} driver`);
    throw err;
  } finally {
    await Promise.all([A.server?.stop(), B.server?.stop()]);
  }
}

/** Runs the scenario until one attempt counts; fails when none did. */
async function measured(driver, t) {
  for (let attempt = 1; attempt <= ATTEMPTS; attempt += 1) {
    const result = await scenario(driver, t);
    if (result !== null) return result;
  }
  throw new Error(`in ${ATTEMPTS} attempts, B never answered within ${WINDOW_MS} ms of A's first publish (the machine is too slow for this test)`);
}

describe('the cluster rate limiter and a node that joins', () => {
  it(`a joining node refuses what the fleet already spent this second (cluster driver: B admits none of ${LIMIT})`, async (t) => {
    assert.equal(await measured('cluster', t), 0);
  });

  it(`the control: with the local driver the joining node admits a budget of its own (${LIMIT})`, async (t) => {
    assert.equal(await measured('local', t), LIMIT);
  });
});
