// The NATS options of docs/configuration.md, proved on fleets of real server processes
// (SOKETI_ADAPTER_DRIVER=nats) that share a throwaway nats-server (see nats.mjs):
//
// - `adapter.nats.user` and `adapter.nats.pass` against a nats-server that requires them, and
//   `adapter.nats.token` against one that requires a token: events cross the nodes and the
//   listings span them;
// - `adapter.nats.prefix`: the subjects on the server carry it (its monitoring endpoint lists
//   them), and a fleet with another prefix on the same server never hears this one;
// - credentials the server refuses stop start-up with a message that names NATS and hides
//   the secret; a nats-server not there yet only delays the fleet;
// - a nats-server killed with SIGKILL and started again on the same port: both nodes stay up
//   and serve their own clients meanwhile, and events cross again within the client's longest
//   reconnect delay.
//
// Each `describe` starts its own nats-server and nodes, with short liveness settings
// (heartbeats every 200 ms, a node gone after 1 s of silence), and waits until the nodes of
// each fleet list each other's probe channels before its tests run.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { Scope, failedStart, freePort, httpRequest, startServer, uniqueChannel, until } from './harness.mjs';
import { assertCrosses, awaitDiscovery, clusterView, useBusFleets } from './cluster.mjs';
import { natsSkip, startNats } from './nats.mjs';

const HEARTBEAT_INTERVAL_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const REQUESTS_TIMEOUT_MS = 1_000;

// The longest wait between two attempts of a node's NATS client to connect again: async-nats's
// default reconnect delay (2^attempts ms, at most 4 s), which soketi-adapter-nats keeps. Events
// cross again within it once the server is back, plus the margin of a busy two-core machine
// for the connection, the subscriptions sent again and the test's own round trips.
const MAX_RECONNECT_DELAY_MS = 4_000;
const RECONNECT_MARGIN_MS = 4_000;

/** The environment of a node of a fleet on `nats`, with `extra` on top. */
function nodeEnv(nats, extra = {}) {
  return {
    SOKETI_ADAPTER_DRIVER: 'nats',
    SOKETI_ADAPTER_NATS_SERVERS: JSON.stringify([`127.0.0.1:${nats.port}`]),
    SOKETI_ADAPTER_NATS_HEARTBEAT_INTERVAL: String(HEARTBEAT_INTERVAL_MS),
    SOKETI_ADAPTER_NATS_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_ADAPTER_NATS_REQUESTS_TIMEOUT: String(REQUESTS_TIMEOUT_MS),
    ...extra,
  };
}

/** `GET /apps/<id>/channels` on a node: the channel names, sorted. */
async function channelNames(scope) {
  const res = await scope.sdk().get({ path: '/channels' });
  return Object.keys((await res.json()).channels).sort();
}

/**
 * Publishes an event through `from` every 250 ms until the raw client `subscriber` (of another
 * node) gets one, and resolves with how long that took; fails after `timeout`. Until both nodes
 * have connected and subscribed again, an event may reach nobody: NATS keeps nothing for
 * absent subscribers. The SDK calls are not awaited one by one, since a node may hold a
 * request while it reconnects.
 */
async function firstCrossing(from, subscriber, name, timeout) {
  const since = Date.now();
  const sdk = from.sdk({ timeout: 2_000 });
  const outcomes = [];
  for (let n = 1; ; n += 1) {
    if (Date.now() - since > timeout) {
      throw new Error(
        `no event published through node ${from.label} reached the subscriber within ${timeout} ms; ` +
          `publish outcomes: ${outcomes.join(', ')}; subscriber: ${subscriber.describeHistory()}`,
      );
    }
    sdk.trigger(name, 'probe', { n }).then(
      (res) => outcomes.push(`${n}:${res.status}`),
      (err) => outcomes.push(`${n}:${err.status ?? err.message}`),
    );
    const arrived = await subscriber.next('probe', 250).catch(() => null);
    if (arrived) return Date.now() - since;
  }
}

/** Asserts that a start-up failure's stderr names NATS and its refusal, and shows no secret. */
function assertRefusal(failure, secrets, why) {
  const text = failure.lines.join('\n');
  assert.match(text, /NATS at 127\.0\.0\.1:\d+: authorization violation/, `${why}: stderr names NATS and its refusal:\n${text}`);
  for (const secret of secrets) assert.ok(!text.includes(secret), `${why}: stderr shows no secret (${secret}):\n${text}`);
}

// ---------------------------------------------------------------------------------------------
// A user and a password, a prefix, and a restart of the nats-server
// ---------------------------------------------------------------------------------------------

describe('nats options: a user and a password, a subject prefix, and a nats-server restart', { skip: natsSkip() }, () => {
  const USER = 'soketi';
  const PASSWORD = 'nats-user-secret';
  const credentials = { SOKETI_ADAPTER_NATS_USER: USER, SOKETI_ADAPTER_NATS_PASSWORD: PASSWORD };
  const ctx = useBusFleets(
    { name: 'nats', start: startNats, nodeEnv, options: { user: USER, pass: PASSWORD, monitor: true } },
    {
      main: { labels: ['A', 'B'], env: { ...credentials, SOKETI_ADAPTER_NATS_PREFIX: 'main.' } },
      other: { labels: ['C'], env: { ...credentials, SOKETI_ADAPTER_NATS_PREFIX: 'other.' } },
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

  it('the subjects on the nats-server carry each fleet\'s prefix: the fleet\'s subject and one per node', async () => {
    const subject = (prefix, id) => `${prefix}soketi.nats-adapter${id ? `.${id}` : ''}`;
    const expected = [];
    for (const [prefix, nodes] of [
      ['main.', [ctx.A, ctx.B]],
      ['other.', [ctx.C]],
    ]) {
      for (const scope of nodes) {
        const { node_id: id } = await clusterView(scope);
        expected.push(subject(prefix), subject(prefix, id));
      }
    }
    assert.deepEqual(await ctx.nats.subscriptions(), expected.sort());
  });

  it('a fleet with another prefix on the same server hears nothing of this one', async () => {
    const name = uniqueChannel('same-name-');
    const inMain = await ctx.A.rawSubscribed(name);
    const inOther = await ctx.C.rawSubscribed(name);
    await ctx.B.sdk().trigger(name, 'main-event', {});
    await inMain.next('main-event');
    // C's own event comes after B's in NATS: had B's crossed, it would be there before it.
    await ctx.C.sdk().trigger(name, 'other-event', {});
    await inOther.next('other-event');
    const appEvents = inOther.history.filter((f) => typeof f.event === 'string' && !f.event.startsWith('pusher')).map((f) => f.event);
    assert.deepEqual(appEvents, ['other-event'], `frames at C: ${inOther.describeHistory()}`);

    assert.deepEqual((await clusterView(ctx.C)).nodes, [], 'C lists no node of the other fleet');
    const names = await channelNames(ctx.C);
    assert.ok(!names.some((n) => n.startsWith('on-a-') || n.startsWith('on-b-')), `GET /channels on C: ${names.join(', ')}`);
    const res = await ctx.B.sdk().get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
    assert.equal((await res.json()).subscription_count, 1, `B counts only A's subscriber of ${name}`);
  });

  // Last: it kills the nats-server.
  it(`across a nats-server restart (SIGKILL), both nodes stay up and serve their own clients, and events cross again within ${MAX_RECONNECT_DELAY_MS + RECONNECT_MARGIN_MS} ms`, async (t) => {
    const name = uniqueChannel('restart-');
    const onB = await ctx.B.rawSubscribed(name);
    const onA = await ctx.A.rawSubscribed(name);
    await ctx.A.sdk().trigger(name, 'before', {});
    await onB.next('before');
    await onA.next('before');

    // While the nats-server is away, each node still serves its own clients.
    await ctx.nats.restart(async () => {
      for (const [scope, client] of [
        [ctx.A, onA],
        [ctx.B, onB],
      ]) {
        await scope.sdk({ timeout: 2_000 }).trigger(name, `alone-${scope.label}`, {});
        await client.next(`alone-${scope.label}`);
        const ready = await httpRequest(`${scope.server.metricsUrl}/ready`);
        assert.equal(ready.status, 200, `node ${scope.label} answers /ready while NATS is away`);
      }
    });
    const backAt = Date.now();
    const bound = MAX_RECONNECT_DELAY_MS + RECONNECT_MARGIN_MS;
    const aToB = await firstCrossing(ctx.A, onB, name, bound);
    const bToA = await firstCrossing(ctx.B, onA, name, bound);
    t.diagnostic(`an event crossed from A to B ${aToB} ms after the nats-server was back, then from B to A in ${bToA} ms`);

    for (const scope of [ctx.A, ctx.B]) {
      assert.equal(scope.server.exitInfo(), null, `node ${scope.label} is still running`);
      const ready = await httpRequest(`${scope.server.metricsUrl}/ready`);
      assert.equal(ready.status, 200, `node ${scope.label} answers /ready`);
    }
    assert.ok(onA.isOpen && onB.isOpen, 'the WebSocket clients stayed connected');
    // The nodes answer each other's requests again: a channel of B in A's listing.
    const later = uniqueChannel('after-restart-');
    await ctx.B.rawSubscribed(later);
    await until(async () => (await channelNames(ctx.A)).includes(later), {
      timeout: bound,
      what: `GET /channels on A to list ${later}, subscribed on B, after the restart`,
    });
    t.diagnostic(`listings span both nodes ${Date.now() - backAt} ms after the nats-server was back`);
  });
});

// ---------------------------------------------------------------------------------------------
// A token
// ---------------------------------------------------------------------------------------------

describe('nats options: a token', { skip: natsSkip() }, () => {
  const TOKEN = 'nats-token-secret';
  const ctx = useBusFleets(
    { name: 'nats', start: startNats, nodeEnv, options: { token: TOKEN } },
    { main: { labels: ['A', 'B'], env: { SOKETI_ADAPTER_NATS_TOKEN: TOKEN } } });

  it('nodes discover each other', () => {
    if (ctx.discovery) throw ctx.discovery;
  });

  it('an event published through one node reaches a pusher-js client of the other, both ways', async () => {
    await assertCrosses(ctx.A, ctx.B);
    await assertCrosses(ctx.B, ctx.A);
  });
});

// ---------------------------------------------------------------------------------------------
// Refusals and an absent nats-server
// ---------------------------------------------------------------------------------------------

describe('nats options: refused credentials stop start-up; a nats-server not there yet only delays the fleet', { skip: natsSkip() }, () => {
  const USER = 'soketi';
  const PASSWORD = 'right-user-secret';
  const TOKEN = 'right-token-secret';
  let withUser = null;
  let withToken = null;
  const started = [];

  before(async () => {
    withUser = await startNats({ user: USER, pass: PASSWORD });
    withToken = await startNats({ token: TOKEN });
  });
  afterEach(async (t) => {
    if (t.passed === false) {
      for (const scope of started) scope.server.dumpLogs(`node ${scope.label}, test "${t.name}" failed`);
      for (const nats of [withUser, withToken]) {
        if (nats) process.stderr.write(`\n----- nats-server output (port ${nats.port}) -----\n${nats.logs()}\n-----\n`);
      }
    }
    for (const scope of started.splice(0)) {
      scope.closeClients();
      await scope.server.stop();
    }
  });
  after(async () => {
    await withUser?.stop();
    await withToken?.stop();
  });

  const refusals = [
    ['a wrong password', () => withUser, { SOKETI_ADAPTER_NATS_USER: USER, SOKETI_ADAPTER_NATS_PASSWORD: 'wrong-user-secret' }],
    ['no credentials', () => withUser, {}],
    ['a wrong token', () => withToken, { SOKETI_ADAPTER_NATS_TOKEN: 'wrong-token-secret' }],
    ['no token', () => withToken, {}],
  ];
  for (const [why, server, extra] of refusals) {
    it(`${why}: start-up fails within 10 s with a message that names NATS and hides the secret`, async () => {
      // Free ports, so that only NATS can be the reason.
      const ports = { SOKETI_PORT: String(await freePort()), SOKETI_METRICS_SERVER_PORT: String(await freePort()) };
      const failure = await failedStart(['start'], nodeEnv(server(), { ...ports, ...extra }), 10_000);
      assertRefusal(failure, [PASSWORD, TOKEN, 'wrong-user-secret', 'wrong-token-secret'], why);
    });
  }

  it('a nats-server that is down at start-up: the node starts, says so, and joins the fleet once NATS answers', async (t) => {
    const port = await freePort();
    const first = new Scope();
    first.label = 'early';
    started.push(first);
    first.server = await startServer(nodeEnv({ port }));
    await until(() => /cannot reach NATS/.test(first.server.logs()), { what: 'a log line saying that NATS cannot be reached' });
    const ready = await httpRequest(`${first.server.metricsUrl}/ready`);
    assert.equal(ready.status, 200, 'the node serves alone meanwhile');

    const late = await startNats({ port });
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
