// Pusher's watchlist events (`enableWatchlistEvents`) seen through pusher-js 8's
// `pusher.user.watchlist.bind('online' | 'offline')`, and the `user_online` / `user_offline`
// webhooks (an extension of Pusher's set), on one node and on three nodes over every transport
// of cluster.mjs's `fleetTransports()` (the Redis adapter, the NATS adapter, the cluster adapter
// on loopback and between network namespaces): the state a watcher gets at sign-in, a user
// online once however many connections and nodes hold it, offline when the last one goes (in a
// fleet, after a grace of 1 s without it anywhere), a reconnect within the vacated delay
// invisible to the webhooks, and the users of a node killed with SIGKILL going offline for
// everyone.
//
// To show that something does NOT arrive, a test makes a sentinel event that must arrive after
// it (a sentinel user signing in or out after), then checks what arrived.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { freePort, until, useServer, withTimeout } from './harness.mjs';
import { fleetTransports, useTransportFleet } from './cluster.mjs';
import { startReceiver } from './webhook-receiver.mjs';
import { CUSTOM_HEADERS, assertSingle, hooksEnv } from './webhook-checks.mjs';

const VACATED_DELAY_MS = 300;
// The receiver's port, known before the server that posts to it starts.
const SINGLE_PORT = await freePort();
const hookUrl = (port, path) => `http://127.0.0.1:${port}${path}`;
const USER_TYPES = ['user_online', 'user_offline'];

/** A user id no other test uses. */
const userId = (prefix) => `${prefix}-${crypto.randomBytes(3).toString('hex')}`;

/**
 * A pusher-js client of `scope`'s server signed in as `id` with `watchlist` (when given), and the
 * log of its watchlist events, each as `online:a,b` (ids sorted).
 */
async function signedIn(scope, id, watchlist) {
  const user = watchlist ? { id, watchlist } : { id };
  const client = await scope.connectedPusher({ user });
  const log = [];
  for (const name of ['online', 'offline']) {
    client.user.watchlist.bind(name, (event) => log.push(`${event.name}:${[...event.user_ids].sort().join(',')}`));
  }
  client.signin();
  await withTimeout(client.user.signinDonePromise, 5_000, `sign-in of ${id}`);
  assert.equal(client.user.user_data?.id, id);
  return { client, log };
}

/** Waits until `log` holds `expected` exactly. */
async function logIs(log, expected, what) {
  try {
    await until(() => JSON.stringify(log) === JSON.stringify(expected), { what });
  } catch (err) {
    throw new Error(`${err.message}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(log)}`);
  }
}

/** The user webhook events of `receiver` about `user`, as `user_online` / `user_offline`. */
const userTags = (receiver, user) =>
  receiver
    .events()
    .filter((e) => USER_TYPES.includes(e.name) && e.user_id === user)
    .map((e) => e.name);

describe('watchlist events on one node', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS: 'true' });

  it('gives the state at sign-in, then online on the first connection and offline after the last', async () => {
    const [alice, bob, carol] = [userId('alice'), userId('bob'), userId('carol')];
    await signedIn(scope, alice);
    const watcher = await signedIn(scope, userId('w'), [alice, bob, carol]);
    await logIs(watcher.log, [`online:${alice}`, `offline:${[bob, carol].sort().join(',')}`], 'the state at sign-in');

    const bob1 = await signedIn(scope, bob);
    await logIs(watcher.log, [...watcher.log.slice(0, 2), `online:${bob}`], "bob's online");
    const bob2 = await signedIn(scope, bob);
    bob1.client.disconnect();
    // carol's online is the sentinel: a wrong online or offline of bob would come before it.
    const carol1 = await signedIn(scope, carol);
    await logIs(watcher.log, [...watcher.log.slice(0, 3), `online:${carol}`], "carol's online, and nothing of bob");
    bob2.client.disconnect();
    await logIs(watcher.log, [...watcher.log.slice(0, 4), `offline:${bob}`], "bob's offline after his last connection");
    carol1.client.disconnect();
    await logIs(watcher.log, [...watcher.log.slice(0, 5), `offline:${carol}`], "carol's offline");
  });

  it(`refuses a watchlist of more than 100 user ids with pusher:error, and signs nobody in`, async () => {
    const client = await scope.rawConnected();
    const watchlist = Array.from({ length: 101 }, (_, i) => `u${i}`);
    const frame = await client.signin(scope.sdk(), { id: userId('greedy'), watchlist });
    assert.equal(frame.event, 'pusher:error', client.describeHistory());
    assert.match(JSON.stringify(frame.data), /at most 100 user ids/);
    await client.ping();
    assert.ok(client.isOpen, 'the connection stays open');

    const ok = await scope.rawConnected();
    const fine = await ok.signin(scope.sdk(), { id: userId('fine'), watchlist: watchlist.slice(0, 100) });
    assert.equal(fine.event, 'pusher:signin_success', ok.describeHistory());
  });
});

describe('watchlist events are off by default', () => {
  const scope = useServer();

  it('sends no watchlist event to a connection whose user_data has a watchlist', async () => {
    const online = userId('on');
    await signedIn(scope, online);
    const client = await scope.rawConnected();
    const frame = await client.signin(scope.sdk(), { id: userId('w'), watchlist: [online] });
    assert.equal(frame.event, 'pusher:signin_success');
    await client.ping();
    assert.ok(!client.describeHistory().includes('watchlist_events'), client.describeHistory());
  });
});

describe('user_online and user_offline webhooks on one node', () => {
  const ctx = { receiver: null };
  const scope = useServer({
    SOKETI_WEBHOOKS_VACATED_DELAY: String(VACATED_DELAY_MS),
    ...hooksEnv([
      { url: hookUrl(SINGLE_PORT, '/hook'), event_types: USER_TYPES, headers: CUSTOM_HEADERS },
      // Filtered out: another type only.
      { url: hookUrl(SINGLE_PORT, '/other'), event_types: ['channel_occupied'] },
    ]),
  });
  before(async () => {
    ctx.receiver = await startReceiver({ port: SINGLE_PORT });
  });
  after(() => ctx.receiver?.close());

  it('user_online once on the first connection, user_offline once after the last, each signed', async () => {
    const { receiver } = ctx;
    const user = userId('hooked');
    const first = await signedIn(scope, user);
    const [online] = await receiver.waitForEvents({ name: 'user_online', user_id: user });
    assert.deepEqual(Object.keys(online).filter((k) => k !== 'request').sort(), ['name', 'user_id']);
    assertSingle(online);
    const second = await signedIn(scope, user);
    first.client.disconnect();
    second.client.disconnect();
    const [offline] = await receiver.waitForEvents({ name: 'user_offline', user_id: user });
    assertSingle(offline);
    // A sentinel user online and offline after: nothing more of `user` came before its offline.
    const sentinel = userId('sentinel');
    (await signedIn(scope, sentinel)).client.disconnect();
    await receiver.waitForEvents({ name: 'user_offline', user_id: sentinel });
    assert.deepEqual(userTags(receiver, user), ['user_online', 'user_offline']);
    assert.equal(receiver.events({ path: '/other' }).length, 0, 'the other webhook wants none of them');
  });

  it('a reconnect within the vacated delay sends neither user_offline nor a second user_online', async () => {
    const { receiver } = ctx;
    const user = userId('bouncer');
    const first = await signedIn(scope, user);
    await receiver.waitForEvents({ name: 'user_online', user_id: user });
    first.client.disconnect();
    const again = await signedIn(scope, user);
    // The sentinel goes offline after the delay that user's offline would have waited.
    const sentinel = userId('sentinel');
    (await signedIn(scope, sentinel)).client.disconnect();
    await receiver.waitForEvents({ name: 'user_offline', user_id: sentinel });
    assert.deepEqual(userTags(receiver, user), ['user_online']);
    again.client.disconnect();
    await receiver.waitForEvents({ name: 'user_offline', user_id: user });
  });
});

// ---------------------------------------------------------------------------------------------
// Three nodes over every transport (cluster.mjs's fleetTransports)
// ---------------------------------------------------------------------------------------------

for (const transport of fleetTransports()) describe(`watchlist and user webhooks over ${transport.title}, three nodes`, { skip: transport.skip }, () => {
  const fleet = useTransportFleet(transport, (receiver) => ({
    SOKETI_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS: 'true',
    SOKETI_WEBHOOKS_VACATED_DELAY: String(VACATED_DELAY_MS),
    ...hooksEnv([{ url: receiver.url('/hook'), event_types: USER_TYPES, headers: CUSTOM_HEADERS }]),
  }));

  it('nodes discover each other', () => {
    if (fleet.discovery) throw fleet.discovery;
  });

  it('a user on two nodes comes online once and goes offline once, for a watcher on a third, and its webhooks fire once', async () => {
    const { A, B, C, receiver } = fleet;
    const [x, sentinel] = [userId('x'), userId('sentinel')];
    const watcher = await signedIn(A, userId('w'), [x, sentinel]);
    await logIs(watcher.log, [`offline:${[x, sentinel].sort().join(',')}`], 'the state at sign-in');
    const onB = await signedIn(B, x);
    await logIs(watcher.log, [...watcher.log.slice(0, 1), `online:${x}`], 'x online through B');
    const onC = await signedIn(C, x);
    onB.client.disconnect();
    // The sentinel's online, through C, comes after anything wrong about x.
    const s = await signedIn(C, sentinel);
    await logIs(watcher.log, [...watcher.log.slice(0, 2), `online:${sentinel}`], 'the sentinel, and nothing of x');
    onC.client.disconnect();
    await logIs(watcher.log, [...watcher.log.slice(0, 3), `offline:${x}`], "x offline after its last connection, on C");
    s.client.disconnect();
    await receiver.waitForEvents({ name: 'user_offline', user_id: sentinel });
    await receiver.waitForEvents({ name: 'user_offline', user_id: x });
    assert.deepEqual(userTags(receiver, x), ['user_online', 'user_offline'], 'once for the fleet');
    for (const e of receiver.events().filter((e) => e.user_id === x)) assertSingle(e);
  });

  it('a watcher signing in on A sees at once a user signed in on B', async () => {
    const { A, B } = fleet;
    const y = userId('y');
    await signedIn(B, y);
    // A has heard of y once its webhook fired (settled after the other nodes' reports).
    await fleet.receiver.waitForEvents({ name: 'user_online', user_id: y });
    await until(async () => {
      const probe = await signedIn(A, userId('probe'), [y]);
      probe.client.disconnect();
      return probe.log[0] === `online:${y}`;
    }, { what: 'A to know y is online' });
    const watcher = await signedIn(A, userId('w'), [y]);
    await logIs(watcher.log, [`online:${y}`], 'the state at sign-in');
  });

  it('the users of C, killed with SIGKILL, go offline for the watchers on A and B, and user_offline fires once', async () => {
    const { A, B, C } = fleet;
    const k = userId('k');
    const wa = await signedIn(A, userId('wa'), [k]);
    const wb = await signedIn(B, userId('wb'), [k]);
    await signedIn(C, k);
    await logIs(wa.log, [`offline:${k}`, `online:${k}`], 'k online on A');
    await logIs(wb.log, [`offline:${k}`, `online:${k}`], 'k online on B');
    await fleet.receiver.waitForEvents({ name: 'user_online', user_id: k });
    assert.equal((await C.server.kill('SIGKILL')).signal, 'SIGKILL');
    await logIs(wa.log, [`offline:${k}`, `online:${k}`, `offline:${k}`], 'k offline on A');
    await logIs(wb.log, [`offline:${k}`, `online:${k}`, `offline:${k}`], 'k offline on B');
    await fleet.receiver.waitForEvents({ name: 'user_offline', user_id: k });
    // A sentinel through A after: one offline of k came before it.
    const sentinel = userId('sentinel');
    (await signedIn(A, sentinel)).client.disconnect();
    await fleet.receiver.waitForEvents({ name: 'user_offline', user_id: sentinel });
    assert.deepEqual(userTags(fleet.receiver, k), ['user_online', 'user_offline']);
  });
});
