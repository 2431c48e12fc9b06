// The cluster adapter (SOKETI_ADAPTER_DRIVER=cluster) between three hosts of a private
// network, in each discovery mode: broadcast (the default, 255.255.255.255), multicast, unicast
// by address and unicast by a name that resolves to every host (as a Kubernetes headless
// Service). The hosts are network namespaces h1..h3 at 198.18.0.1..3 on a virtual bridge of
// the root namespace (see netns.mjs: nothing is sent on a real interface, and everything is
// removed at the end, or at the start of the next run after a crash). Each node runs with
// `ip netns exec`, listens on 0.0.0.0 in its namespace, and the test reaches it at its address;
// names resolve through each namespace's own hosts file (`/etc/netns/<ns>/hosts`).
//
// In each mode the fleet suite (fleet-suite.mjs) runs with its nodes A, B, C on h1, h2, h3,
// followed by the cluster's own tests (`clusterTests`). Needs root: without it (or without
// `ip netns`), the file is skipped, unless SOKETI_TEST_REQUIRE_ALL=1, where it fails with the
// reason.
//
// The nodes start one after the other, so A runs longest and is the master. The liveness
// settings are short: a hello every 200 ms, checks every 200 ms, a node (or master) gone after
// 1 s of silence.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import { parseData, uniqueChannel } from './harness.mjs';
import {
  assertMaster,
  awaitDiscovery,
  awaitMasterAgreement,
  awaitMesh,
  clusterView,
  labelled,
  peerIds,
  poll,
  randomClusterPort,
  randomMulticastGroup,
  useFleet,
} from './cluster.mjs';
import { fleetSuite } from './fleet-suite.mjs';
import { BRIDGE_ADDRESS, SUBNET, createNetwork, netnsSkip, netnsUnavailable, ownLeftovers } from './netns.mjs';

const KEEPALIVE_MS = 200;
const CHECK_MS = 200;
const NODE_TIMEOUT_MS = 1_000;
const MASTER_TIMEOUT_MS = 1_000;
// What discovery, a drop or an election may take beyond the configured intervals on a loaded
// two-core machine: these tests show that the settings are honoured, not how fast the machine is.
const LOAD_MARGIN_MS = 2_000;
// A hello goes out every keep-alive interval; the data link follows the first one heard.
const DISCOVERY_LIMIT_MS = KEEPALIVE_MS + CHECK_MS + LOAD_MARGIN_MS;
const DROP_LIMIT_MS = NODE_TIMEOUT_MS + CHECK_MS + LOAD_MARGIN_MS;
const MASTER_LIMIT_MS = MASTER_TIMEOUT_MS + CHECK_MS + LOAD_MARGIN_MS;
/** The name of the whole fleet in the namespaces' hosts files, as a headless Service's name. */
const FLEET_NAME = 'soketi-peers.fleet.test';

const network = { hosts: null, destroy: null, writeHosts: null };

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
  } else if (mode.kind === 'dns') {
    // One name for the fleet, resolved by each node through its namespace's hosts file, as the
    // pods of a Kubernetes headless Service resolve the Service's name (docs/cluster.md).
    env.SOKETI_CLUSTER_HOST = host.address;
    env.SOKETI_CLUSTER_UNICAST_ADDRESSES = JSON.stringify([FLEET_NAME]);
  } else {
    env.SOKETI_CLUSTER_HOST = host.address;
    env.SOKETI_CLUSTER_UNICAST_ADDRESSES = JSON.stringify(network.hosts.map((h) => h.address));
  }
  return env;
}

/** The hosts file of every namespace when the fleet's name resolves to `hosts`. */
function fleetHosts(hosts) {
  return hosts.map((h) => `${h.address} ${FLEET_NAME}\n`).join('');
}

/** The `useFleet` spec of a node on `host`. */
function nodeSpec(host, cluster) {
  return { label: host.name, host, env: nodeEnv(host, cluster), options: { host: host.address, wrap: host.wrap } };
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

/** Aborts every TCP connection between the nodes on `a` and `b`, from `a`'s side (`ss -K`). */
function breakDataLinks(a, b) {
  // Test clients reach a node from the bridge address, never from another host's address, so
  // only the node-to-node links match.
  const killed = execFileSync('ip', ['netns', 'exec', a.ns, 'ss', '-K', '-H', '-t', 'dst', b.address], { encoding: 'utf8' });
  const links = killed.split('\n').filter((line) => line.trim());
  // One link each way: A's to B's data port, and B's to A's.
  assert.ok(links.length >= 2, `ss -K aborted the links between ${a.name} and ${b.name}: ${killed}`);
}

/**
 * The fleet suite (fleet-suite.mjs) in one discovery mode, with the nodes A, B, C on the hosts
 * h1, h2, h3, then what only the cluster adapter does: addresses and the master in
 * `GET /cluster`, a killed node dropped and rejoining, a broken data link, a 1 MB event and a
 * new master.
 */
function modeSuite(title, mode) {
  fleetSuite(
    {
      title: `cluster adapter between network namespaces, ${title}`,
      skip: netnsSkip(),
      nodeTimeoutMs: NODE_TIMEOUT_MS,
      receiverHost: BRIDGE_ADDRESS,
      setup: async () => {
        if (mode.kind === 'dns') network.writeHosts(fleetHosts(network.hosts));
        return { port: randomClusterPort(), prefix: `skt-${process.pid}-${mode.kind}`, mode };
      },
      nodeSpecs: (cluster, labels, env) =>
        labels.map((label, i) => {
          const spec = nodeSpec(network.hosts[i], cluster);
          return { ...spec, label, env: { ...spec.env, ...env } };
        }),
    },
    { extra: (fleet) => clusterTests(fleet, mode) },
  );
}

/** The tests of the cluster adapter's own behaviour, after the fleet suite killed C. */
function clusterTests(fleet, mode) {
  it(`A and B list only each other once C is dropped, within ${DROP_LIMIT_MS} ms of its kill`, async () => {
    const { A, B, C } = fleet;
    // The fleet suite's last test killed C and waited for the member_removed that the drop sends.
    const [vA, vB] = await Promise.all([A, B].map(clusterView));
    assert.deepEqual(peerIds(vA), [B.nodeId], `GET /cluster on A after C (${C.nodeId}) was killed: ${JSON.stringify(vA)}`);
    assert.deepEqual(peerIds(vB), [A.nodeId], `GET /cluster on B after C (${C.nodeId}) was killed: ${JSON.stringify(vB)}`);
  });

  it(`lets C, started again, rejoin within ${DISCOVERY_LIMIT_MS} ms: the nodes list each other with their addresses, and A stays the master`, async (t) => {
    const { A, B, C } = fleet;
    const oldId = C.nodeId;
    if (mode.kind === 'dns') {
      // As a pod that comes back: A and B resolve the Service's name to each other while C is
      // gone, and C, started again, to itself alone; for a node timeout, nobody finds anybody
      // new. Then the name covers all three, which each node only learns by resolving it again.
      const [h1, h2, h3] = network.hosts;
      try {
        network.writeHosts(fleetHosts([h1, h2]), [h1, h2]);
        network.writeHosts(fleetHosts([h3]), [h3]);
        await fleet.restart(C);
        await awaitMesh([C], { timeout: 5_000 });
        // A and B may still send a hello or two to C's address until their next lookup, and C
        // then lists them until they have been silent for its node timeout. What must hold is
        // that, from some moment on, nobody finds anybody new for a whole node timeout.
        const isolated = ([vA, vB, vC]) =>
          JSON.stringify(peerIds(vA)) === JSON.stringify([B.nodeId]) &&
          JSON.stringify(peerIds(vB)) === JSON.stringify([A.nodeId]) &&
          peerIds(vC).length === 0;
        const deadline = Date.now() + 3 * NODE_TIMEOUT_MS + LOAD_MARGIN_MS + 5_000;
        let since = null;
        let last = null;
        while (since === null || Date.now() - since < NODE_TIMEOUT_MS) {
          assert.ok(Date.now() < deadline, `nobody finding anybody new for a node timeout while the name leaves C out; last views: ${JSON.stringify(last)}`);
          last = await Promise.all([A, B, C].map(clusterView));
          if (!isolated(last)) since = null;
          else since ??= Date.now();
          await new Promise((resolve) => setTimeout(resolve, CHECK_MS / 2));
        }
      } finally {
        network.writeHosts(fleetHosts(network.hosts));
      }
    } else {
      await fleet.restart(C);
    }
    const { took } = await awaitMesh(fleet.nodes, { timeout: DISCOVERY_LIMIT_MS + CHECK_MS + 5_000 });
    t.diagnostic(`C (was ${oldId}, now ${C.nodeId}) was listed by every node ${took} ms after it was ready`);
    // By name, the next check resolves the name again: one check interval more.
    const limit = DISCOVERY_LIMIT_MS + (mode.kind === 'dns' ? CHECK_MS : 0);
    assert.ok(took <= limit, `the mesh was complete ${took} ms after C was ready again, or its name covered it (limit ${limit})`);
    const addressOf = new Map(fleet.nodes.map((s) => [s.nodeId, s.spec.host.address]));
    const views = await Promise.all(fleet.nodes.map(clusterView));
    for (const [i, view] of views.entries()) {
      assert.equal(view.driver, 'cluster', `GET /cluster on ${fleet.nodes[i].label}: ${JSON.stringify(view)}`);
      for (const peer of view.nodes) {
        const [ip, port] = String(peer.address).split(':');
        assert.equal(ip, addressOf.get(peer.node_id), `the address of ${peer.node_id} in the view of ${fleet.nodes[i].label}: ${JSON.stringify(view)}`);
        assert.ok(Number(port) > 0, `the address of ${peer.node_id} has a port: ${peer.address}`);
      }
    }
    assertMaster(fleet.nodes, views, A.nodeId, 'after C rejoined (A runs longest)');
    await awaitDiscovery(fleet.nodes);
    const name = uniqueChannel();
    const onC = await C.rawSubscribed(name);
    await A.sdk().trigger(name, 'back', { n: 1 });
    assert.deepEqual(parseData(await onC.next('back')), { n: 1 }, 'an event published on A reaches C');
  });

  it('carries every event again, in order, after the data links between A and B were aborted while both live', async () => {
    const { A, B } = fleet;
    const name = uniqueChannel();
    const onB = await B.rawSubscribed(name);
    const onA = await A.rawSubscribed(name);
    await A.sdk().trigger(name, 'seq', { n: 0 });
    await onB.next((f) => f.event === 'seq' && parseData(f).n === 0);
    breakDataLinks(A.spec.host, B.spec.host);
    const N = 20;
    for (let n = 1; n <= N; n += 1) assert.equal((await A.sdk().trigger(name, 'seq', { n })).status, 200);
    // And the other way, over the link B had to A.
    for (let n = N + 1; n <= 2 * N; n += 1) assert.equal((await B.sdk().trigger(name, 'seq', { n })).status, 200);
    await rawSentinels([A, B], name, { 'the subscriber on B': onB, 'the subscriber on A': onA });
    // Each node's events arrive once and in the order it published them. Between the two
    // publishers there is no order: B's first event may overtake A's last one, which was still
    // on its way over the new link when B published.
    const seqs = (client, from, to) =>
      client.history
        .filter((f) => f.event === 'seq')
        .map((f) => parseData(f).n)
        .filter((n) => n >= from && n <= to);
    const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
    for (const [label, client] of [['B', onB], ['A', onA]]) {
      assert.deepEqual(seqs(client, 0, N), range(0, N), `the subscriber on ${label}: A's events once each, in order: ${client.describeHistory()}`);
      assert.deepEqual(seqs(client, N + 1, 2 * N), range(N + 1, 2 * N), `the subscriber on ${label}: B's events once each, in order: ${client.describeHistory()}`);
    }
  });

  it('carries a 1 MB event from A to B and C intact', async () => {
    const { A, B, C } = fleet;
    const name = uniqueChannel();
    const receivers = { B: await B.rawSubscribed(name), C: await C.rawSubscribed(name) };
    // 10^6 bytes: a frame of a little more than 1 MiB would pass the default per-connection
    // queue limit (SOKETI_MAX_BACKPRESSURE, 1 MiB as in soketi) and close the client with 4100.
    const payload = { blob: crypto.randomBytes(500_000).toString('hex'), end: 'the end' };
    const text = JSON.stringify(payload);
    assert.ok(text.length >= 1_000_000, `${text.length} bytes`);
    assert.equal((await A.sdk({ timeout: 10_000 }).trigger(name, 'big', payload)).status, 200);
    for (const [label, receiver] of Object.entries(receivers)) {
      const frame = await receiver.next('big', 10_000);
      assert.equal(frame.data.length, text.length, `${label}: the data arrives at full length`);
      assert.ok(frame.data === text, `${label}: the data arrives byte for byte`);
    }
  });

  it(`elects B (now the longest-running) when the master A is killed, agreed by B and C within ${MASTER_LIMIT_MS} ms`, async (t) => {
    const { A, B, C } = fleet;
    const before = await awaitMasterAgreement(fleet.nodes, { timeout: 2_000 });
    assert.equal(before.masterId, A.nodeId, 'A is the master before the kill');
    const killedAt = Date.now();
    await A.server.kill('SIGKILL');
    const { masterId } = await awaitMasterAgreement([B, C], { timeout: MASTER_LIMIT_MS + 4_000, interval: 20, accept: (id) => id !== A.nodeId });
    const took = Date.now() - killedAt;
    t.diagnostic(`B and C agreed on ${masterId === B.nodeId ? 'B' : masterId} as the master ${took} ms after A was killed`);
    assert.equal(masterId, B.nodeId, 'the new master is B, which has run longer than the restarted C');
    assert.ok(took <= MASTER_LIMIT_MS, `the new master was agreed ${took} ms after the kill (limit ${MASTER_LIMIT_MS})`);
    // The last hello of the master left at most one keep-alive interval before the kill.
    assert.ok(took >= MASTER_TIMEOUT_MS - KEEPALIVE_MS, `the new master was agreed ${took} ms after the kill, before the master timeout ran out`);
    await poll('B and C to drop A', () => Promise.all([B, C].map(clusterView)), (vs) => vs.every((v) => !peerIds(v).includes(A.nodeId)), { timeout: 2_000 });
    assertMaster([B, C], await Promise.all([B, C].map(clusterView)), B.nodeId, 'after A was killed');
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

  modeSuite('broadcast (default address 255.255.255.255, bound to 0.0.0.0)', { kind: 'broadcast' });
  modeSuite('multicast (239.255.x.y on the node address)', { kind: 'multicast', group: randomMulticastGroup() });
  modeSuite(`unicast (["${SUBNET}.1","${SUBNET}.2","${SUBNET}.3"])`, { kind: 'unicast' });
  modeSuite(`unicast by name (["${FLEET_NAME}"], resolved through the hosts file, as a headless Service)`, { kind: 'dns' });

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
