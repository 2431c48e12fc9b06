// The cluster adapter (SOKETI_ADAPTER_DRIVER=cluster) between three hosts of a private
// network, in each discovery mode: broadcast (the default, 255.255.255.255), multicast and
// unicast. The hosts are network namespaces h1..h3 at 198.18.0.1..3 on a virtual bridge of
// the root namespace (see netns.mjs: nothing is sent on a real interface, and everything is
// removed at the end, or at the start of the next run after a crash). Each node runs with
// `ip netns exec`, listens on 0.0.0.0 in its namespace, and the test reaches it at its address.
//
// Needs root: without it (or without `ip netns`), the file is skipped, unless
// SOKETI_TEST_REQUIRE_ALL=1, where it fails with the reason.
//
// The nodes start one after the other (h1, h2, h3), so h1 runs longest and is the master. The
// liveness settings are short: a hello every 200 ms, checks every 200 ms, a node (or master)
// gone after 1 s of silence.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { parseData, record, subscribe, uniqueChannel, waitFor } from './harness.mjs';
import {
  assertMaster,
  awaitMasterAgreement,
  awaitMesh,
  clusterView,
  labelled,
  member,
  peerIds,
  poll,
  randomClusterPort,
  randomMulticastGroup,
  useFleet,
  userIds,
} from './cluster.mjs';
import { SUBNET, createNetwork, netnsSkip, netnsUnavailable, ownLeftovers } from './netns.mjs';

const KEEPALIVE_MS = 200;
const CHECK_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const MASTER_TIMEOUT_MS = 1_000;
const DISCOVERY_LIMIT_MS = 1_000;
const MARGIN_MS = 500;
const DROP_LIMIT_MS = NODE_TIMEOUT_MS + CHECK_MS + MARGIN_MS;
const MASTER_LIMIT_MS = MASTER_TIMEOUT_MS + CHECK_MS + MARGIN_MS;

const network = { hosts: null, destroy: null };

/** The environment of a node on `host` of a cluster (`port`, `prefix`, discovery `mode`). */
function nodeEnv(host, { port, prefix, mode }) {
  const env = {
    SOKETI_ADAPTER_DRIVER: 'cluster',
    SOKETI_HOST: '0.0.0.0',
    SOKETI_METRICS_HOST: '0.0.0.0',
    SOKETI_CLUSTER_PORT: String(port),
    SOKETI_CLUSTER_PREFIX: prefix,
    SOKETI_CLUSTER_KEEPALIVE_INTERVAL: String(KEEPALIVE_MS),
    SOKETI_CLUSTER_CHECK_INTERVAL: String(CHECK_MS),
    SOKETI_CLUSTER_NODE_TIMEOUT: String(NODE_TIMEOUT_MS),
    SOKETI_CLUSTER_MASTER_TIMEOUT: String(MASTER_TIMEOUT_MS),
    SOKETI_ADAPTER_CLUSTER_REQUESTS_TIMEOUT: '1000',
    SOKETI_EVENT_MAX_SIZE_IN_KB: '2048',
  };
  if (mode.kind === 'broadcast') {
    // SOKETI_CLUSTER_BROADCAST_ADDRESS left at its default, 255.255.255.255; bound to 0.0.0.0.
    env.SOKETI_CLUSTER_HOST = '0.0.0.0';
  } else if (mode.kind === 'multicast') {
    env.SOKETI_CLUSTER_HOST = host.address;
    env.SOKETI_CLUSTER_MULTICAST_ADDRESS = mode.group;
  } else {
    env.SOKETI_CLUSTER_HOST = host.address;
    env.SOKETI_CLUSTER_UNICAST_ADDRESSES = JSON.stringify(network.hosts.map((h) => h.address));
  }
  return env;
}

/** The `useFleet` spec of a node on `host`. */
function nodeSpec(host, cluster) {
  return { label: host.name, host, env: nodeEnv(host, cluster), options: { host: host.address, wrap: host.wrap } };
}

/** Frames of a raw client for presence changes of `channel`, as `added:<id>` / `removed:<id>`. */
function rawMemberChanges(client, channel) {
  return client.history
    .filter((f) => f.channel === channel && /^pusher_internal:member_(added|removed)$/.test(f.event))
    .map((f) => `${f.event.slice('pusher_internal:member_'.length)}:${parseData(f).user_id}`);
}

/** Publishes a sentinel through each node of `via` and waits until every raw client got them all. */
async function rawSentinels(via, channel, clients) {
  for (const scope of via) {
    const id = crypto.randomBytes(4).toString('hex');
    await scope.sdk().trigger(channel, 'sentinel', { id });
    await Promise.all(
      Object.entries(clients).map(([label, client]) =>
        labelled(`${label}, for the sentinel through ${scope.label}`, client.next((f) => f.event === 'sentinel' && parseData(f)?.id === id)),
      ),
    );
  }
}

/** The tests of one discovery mode; `full` adds presence, a 1 MB event, a restart and a new master. */
function modeSuite(title, mode, { full }) {
  describe(title, () => {
    const fleet = useFleet(() => {
      const cluster = { port: randomClusterPort(), prefix: `skt-${process.pid}-${mode.kind}`, mode };
      return network.hosts.map((host) => nodeSpec(host, cluster));
    });

    it(`the three nodes list each other in GET /cluster within ${DISCOVERY_LIMIT_MS} ms, with their addresses, and agree that h1 is the master`, async (t) => {
      if (fleet.discovery) throw fleet.discovery;
      t.diagnostic(`the mesh was complete ${fleet.mesh.took} ms after h3 was ready`);
      assert.ok(fleet.mesh.took <= DISCOVERY_LIMIT_MS, `the nodes listed each other ${fleet.mesh.took} ms after the last one was ready (limit ${DISCOVERY_LIMIT_MS})`);
      const addressOf = new Map(fleet.nodes.map((s) => [s.nodeId, s.spec.host.address]));
      for (const scope of fleet.nodes) {
        const view = await clusterView(scope);
        assert.equal(view.driver, 'cluster', `GET /cluster on ${scope.label}: ${JSON.stringify(view)}`);
        for (const peer of view.nodes) {
          const [ip, port] = String(peer.address).split(':');
          assert.equal(ip, addressOf.get(peer.node_id), `the address of ${peer.node_id} in the view of ${scope.label}: ${JSON.stringify(view)}`);
          assert.ok(Number(port) > 0, `the address of ${peer.node_id} has a port: ${peer.address}`);
        }
      }
      const { views } = await awaitMasterAgreement(fleet.nodes, { timeout: 2_000 });
      assertMaster(fleet.nodes, views, fleet.h1.nodeId, '(h1 was started first)');
    });

    it('delivers SDK events published on h2 to a pusher-js client on each node exactly once, in order', async () => {
      const N = 10;
      const name = uniqueChannel();
      const subscribers = [];
      for (const scope of fleet.nodes) {
        const client = await scope.connectedPusher();
        const { channel } = await subscribe(client, name);
        const done = labelled(`the subscriber on ${scope.label}`, waitFor(channel, 'done'));
        done.catch(() => {});
        subscribers.push({ label: scope.label, seen: record(channel, 'seq'), done });
      }
      const sdk = fleet.h2.sdk();
      for (let n = 1; n <= N; n += 1) assert.equal((await sdk.trigger(name, 'seq', { n })).status, 200);
      await sdk.trigger(name, 'done', {});
      for (const { label, seen, done } of subscribers) {
        await done.catch((err) => {
          err.message += `; the seq events it got: ${JSON.stringify(seen.map(([d]) => d?.n))}`;
          throw err;
        });
        seen.stop();
        assert.deepEqual(seen.map(([d]) => d?.n), Array.from({ length: N }, (_, i) => i + 1), `the subscriber on ${label}: 1..${N} once each, in order`);
      }
    });

    if (full) {
      it('counts a user with connections on h1 and h2 once, and sends member_added/member_removed once for it', async () => {
        const { h1, h2, h3 } = fleet;
        const name = uniqueChannel('presence-');
        const watcher = await h3.rawSubscribed(name, member('w'));
        const u1OnH1 = await h1.rawSubscribed(name, member('u1'));
        await watcher.next('pusher_internal:member_added');
        // Presence is replicated (each node tells the others of a join): u1's second connection
        // waits until h2 knows of the first, or both would count as a first join.
        await poll(`GET /channels/${name}/users on h2 to list u1 (on h1)`, () => userIds(h2, name), (ids) => ids.includes('u1'));
        const u1OnH2 = await h2.rawSubscribed(name, member('u1'));
        assert.deepEqual(Object.keys(parseData(u1OnH2.succeeded).presence.hash).sort(), ['u1', 'w'], 'u1 on h2 sees u1 and w');
        await h3.rawSubscribed(name, member('u2'));
        await rawSentinels([h1, h2], name, { 'the watcher on h3': watcher });
        assert.deepEqual(rawMemberChanges(watcher, name), ['added:u1', 'added:u2'], 'the watcher on h3: member_added once per user');

        for (const scope of fleet.nodes) {
          const res = await scope.sdk().get({ path: `/channels/${name}`, params: { info: 'user_count,subscription_count' } });
          assert.deepEqual(await res.json(), { occupied: true, user_count: 3, subscription_count: 4 }, `GET /channels/${name} on ${scope.label}`);
          const users = await scope.sdk().get({ path: `/channels/${name}/users` });
          assert.deepEqual((await users.json()).users.map((u) => u.id).sort(), ['u1', 'u2', 'w'], `GET /channels/${name}/users on ${scope.label}`);
        }

        u1OnH1.terminate();
        await poll(`subscription_count of ${name} to fall to 3 once u1 left h1`, async () => {
          const res = await h3.sdk().get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
          return (await res.json()).subscription_count;
        }, (n) => n === 3);
        await rawSentinels([h1, h2], name, { 'the watcher on h3': watcher });
        assert.deepEqual(rawMemberChanges(watcher, name), ['added:u1', 'added:u2'], 'no member_removed while u1 is still on h2');

        u1OnH2.terminate();
        await watcher.next('pusher_internal:member_removed');
        await rawSentinels([h1, h2], name, { 'the watcher on h3': watcher });
        assert.deepEqual(rawMemberChanges(watcher, name), ['added:u1', 'added:u2', 'removed:u1'], 'member_removed once, after the last connection of u1 left');
      });

      it('carries a 1 MB event from h1 to h2 and h3 intact', async () => {
        const name = uniqueChannel();
        const receivers = { h2: await fleet.h2.rawSubscribed(name), h3: await fleet.h3.rawSubscribed(name) };
        // 10^6 bytes: a frame of a little more than 1 MiB would pass the default per-connection
        // queue limit (SOKETI_MAX_BACKPRESSURE, 1 MiB as in soketi) and close the client with 4100.
        const payload = { blob: crypto.randomBytes(500_000).toString('hex'), end: 'the end' };
        const text = JSON.stringify(payload);
        assert.ok(text.length >= 1_000_000, `${text.length} bytes`);
        const res = await fleet.h1.sdk({ timeout: 10_000 }).trigger(name, 'big', payload);
        assert.equal(res.status, 200);
        for (const [label, receiver] of Object.entries(receivers)) {
          const frame = await receiver.next('big', 10_000);
          assert.equal(frame.data.length, text.length, `${label}: the data arrives at full length`);
          assert.ok(frame.data === text, `${label}: the data arrives byte for byte`);
        }
      });
    }

    it(`drops h3, killed with SIGKILL, within ${DROP_LIMIT_MS} ms, and sends member_removed for its only user`, async (t) => {
      const { h1, h2, h3 } = fleet;
      const name = uniqueChannel('presence-');
      await h3.rawSubscribed(name, member('k'));
      const watcher = await h1.rawSubscribed(name, member('w'));
      assert.deepEqual(Object.keys(parseData(watcher.succeeded).presence.hash).sort(), ['k', 'w'], 'the watcher on h1 sees k (on h3)');

      const killedAt = Date.now();
      assert.equal((await h3.server.kill('SIGKILL')).signal, 'SIGKILL');
      const removed = labelled('the watcher on h1', watcher.next('pusher_internal:member_removed', DROP_LIMIT_MS + 4_000));
      removed.catch(() => {});
      const drops = await Promise.all(
        [h1, h2].map(async (scope) => {
          await poll(`GET /cluster on ${scope.label} to drop h3 (${h3.nodeId})`, () => clusterView(scope), (v) => !peerIds(v).includes(h3.nodeId), {
            timeout: DROP_LIMIT_MS + 4_000,
            interval: 20,
          });
          return Date.now() - killedAt;
        }),
      );
      const frame = await removed;
      const removedAfter = Date.now() - killedAt;
      t.diagnostic(`h1 dropped h3 after ${drops[0]} ms, h2 after ${drops[1]} ms; member_removed reached h1's watcher after ${removedAfter} ms`);
      for (const [i, took] of drops.entries()) {
        assert.ok(took <= DROP_LIMIT_MS, `h${i + 1} dropped h3 ${took} ms after the kill (limit ${DROP_LIMIT_MS})`);
      }
      assert.equal(parseData(frame).user_id, 'k');
      assert.ok(removedAfter <= DROP_LIMIT_MS + MARGIN_MS, `member_removed came ${removedAfter} ms after the kill`);
      assert.deepEqual(peerIds(await clusterView(h1)), [h2.nodeId], 'GET /cluster on h1 lists h2 only');
      assert.deepEqual(peerIds(await clusterView(h2)), [h1.nodeId], 'GET /cluster on h2 lists h1 only');

      // Sentinels through both survivors: a second member_removed (from h2) would come before.
      await rawSentinels([h2, h1], name, { 'the watcher on h1': watcher });
      assert.deepEqual(rawMemberChanges(watcher, name), ['removed:k'], 'the watcher gets member_removed for k once');
      const res = await h2.sdk().get({ path: `/channels/${name}/users` });
      assert.deepEqual((await res.json()).users.map((u) => u.id), ['w'], `GET /channels/${name}/users on h2`);
    });

    if (full) {
      it('lets h3, started again, rejoin: every node lists the two others, and h1 stays the master', async (t) => {
        const { h1, h3 } = fleet;
        const oldId = h3.nodeId;
        const startedAt = Date.now();
        await fleet.restart(h3);
        const { took } = await awaitMesh(fleet.nodes, { timeout: 5_000 });
        t.diagnostic(`h3 (was ${oldId}, now ${h3.nodeId}) was listed by every node ${Date.now() - startedAt} ms after its start (${took} ms after it was ready)`);
        assert.ok(took <= DISCOVERY_LIMIT_MS, `the mesh was complete ${took} ms after h3 was ready again (limit ${DISCOVERY_LIMIT_MS})`);
        const views = await Promise.all(fleet.nodes.map(clusterView));
        assertMaster(fleet.nodes, views, h1.nodeId, 'after h3 rejoined (h1 still runs longest)');

        // And it carries events again.
        const name = uniqueChannel();
        const onH3 = await h3.rawSubscribed(name);
        await h1.sdk().trigger(name, 'back', { n: 1 });
        assert.deepEqual(parseData(await onH3.next('back')), { n: 1 }, 'an event published on h1 reaches h3');
      });

      it(`elects h2 (now the longest-running) when the master h1 is killed, agreed by h2 and h3 within ${MASTER_LIMIT_MS} ms`, async (t) => {
        const { h1, h2, h3 } = fleet;
        const before = await awaitMasterAgreement(fleet.nodes, { timeout: 2_000 });
        assert.equal(before.masterId, h1.nodeId, 'h1 is the master before the kill');
        const killedAt = Date.now();
        await h1.server.kill('SIGKILL');
        const { masterId } = await awaitMasterAgreement([h2, h3], {
          timeout: MASTER_LIMIT_MS + 4_000,
          interval: 20,
          accept: (id) => id !== h1.nodeId,
        });
        const took = Date.now() - killedAt;
        t.diagnostic(`h2 and h3 agreed on ${masterId === h2.nodeId ? 'h2' : masterId} as the master ${took} ms after h1 was killed`);
        assert.equal(masterId, h2.nodeId, 'the new master is h2, which has run longer than the restarted h3');
        assert.ok(took <= MASTER_LIMIT_MS, `the new master was agreed ${took} ms after the kill (limit ${MASTER_LIMIT_MS})`);
        await poll('h2 and h3 to drop h1', () => Promise.all([h2, h3].map(clusterView)), (vs) => vs.every((v) => !peerIds(v).includes(h1.nodeId)), { timeout: 2_000 });
        const views = await Promise.all([h2, h3].map(clusterView));
        assertMaster([h2, h3], views, h2.nodeId, 'after h1 was killed');
      });
    }
  });
}

describe('cluster adapter between network namespaces (root)', { skip: netnsSkip() }, () => {
  before(async () => {
    const reason = netnsUnavailable();
    if (reason) throw new Error(`SOKETI_TEST_REQUIRE_ALL=1, but ${reason}`);
    const created = await createNetwork({ hosts: 3 });
    if (created.leftovers.length) process.stderr.write(`removed what an earlier run left: ${created.leftovers.join(', ')}\n`);
    Object.assign(network, created);
  });
  after(() => {
    network.destroy?.();
    const left = ownLeftovers();
    assert.deepEqual(left, [], 'the namespaces, veths and bridge of this run are gone');
  });

  modeSuite('broadcast (default address 255.255.255.255, bound to 0.0.0.0)', { kind: 'broadcast' }, { full: true });
  modeSuite('multicast (239.255.x.y on the node address)', { kind: 'multicast', group: randomMulticastGroup() }, { full: true });
  modeSuite(`unicast (["${SUBNET}.1","${SUBNET}.2","${SUBNET}.3"])`, { kind: 'unicast' }, { full: true });

  describe('two clusters with different SOKETI_CLUSTER_PREFIX on the same port and network', () => {
    const fleet = useFleet(
      () => {
        const port = randomClusterPort();
        const [h1, h2, h3] = network.hosts;
        const a = { port, prefix: `skt-${process.pid}-a`, mode: { kind: 'broadcast' } };
        const b = { port, prefix: `skt-${process.pid}-b`, mode: { kind: 'broadcast' } };
        // h3 (cluster b) first, so that its hellos were on the wire all along.
        return [nodeSpec(h3, b), nodeSpec(h1, a), nodeSpec(h2, a)];
      },
      { groups: (f) => [[f.h1, f.h2], [f.h3]] },
    );

    it('stay apart: h3 (prefix b) lists nobody, h1 and h2 (prefix a) list only each other', async () => {
      if (fleet.discovery) throw fleet.discovery;
      const { h1, h2, h3 } = fleet;
      // For a node timeout (5 hello intervals of h3), no view may list a node of the other cluster.
      const until = Date.now() + NODE_TIMEOUT_MS;
      while (Date.now() < until) {
        const [v1, v2, v3] = await Promise.all([h1, h2, h3].map(clusterView));
        assert.deepEqual(peerIds(v1), [h2.nodeId], `GET /cluster on h1: ${JSON.stringify(v1)}`);
        assert.deepEqual(peerIds(v2), [h1.nodeId], `GET /cluster on h2: ${JSON.stringify(v2)}`);
        assert.deepEqual(peerIds(v3), [], `GET /cluster on h3: ${JSON.stringify(v3)}`);
        assert.equal(v3.master_id, h3.nodeId, 'h3 is the master of its own cluster');
        assert.equal(v3.is_master, true);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });

    it("does not deliver a publish in cluster a to h3's client, nor list h3's channels in cluster a", async () => {
      const { h1, h2, h3 } = fleet;
      const name = uniqueChannel();
      const onH2 = await h2.rawSubscribed(name);
      const onH3 = await h3.rawSubscribed(name);
      await h1.sdk().trigger(name, 'for-a', { n: 1 });
      await onH2.next('for-a');
      // Sent after h2 got the event; h3's own publish must arrive, and nothing from cluster a before it.
      await h3.sdk().trigger(name, 'sentinel', {});
      await onH3.next('sentinel');
      const h3Events = onH3.history.filter((f) => f.channel === name && !String(f.event).startsWith('pusher')).map((f) => f.event);
      assert.deepEqual(h3Events, ['sentinel'], `events on h3's client: ${onH3.describeHistory()}`);

      const onlyH3 = uniqueChannel();
      await h3.rawSubscribed(onlyH3);
      const res = await h1.sdk().get({ path: '/channels' });
      const { channels } = await res.json();
      assert.ok(!(onlyH3 in channels), `GET /channels on h1 does not list ${onlyH3} of h3: ${JSON.stringify(channels)}`);
      assert.equal((await (await h1.sdk().get({ path: `/channels/${name}`, params: { info: 'subscription_count' } })).json()).subscription_count, 1, `subscription_count of ${name} in cluster a counts h2's client only`);
    });
  });
});
