// Redis Sentinel (SOKETI_DB_REDIS_SENTINELS, _SENTINEL_PASSWORD, _INSTANCE_NAME): the nodes ask
// the sentinels where the master is, for the adapter and the cache alike. A master, one replica
// and three `redis-server --sentinel` processes run on free ports, with short timers (the master
// is down after 1 s of silence, a failover times out after 3 s).
//
// The fleet suite (fleet-suite.mjs) runs over Sentinel, with the cache in Redis. Then the
// failover: the master is killed with SIGKILL, the sentinels promote the replica, and an event
// published on A reaches B again. The test prints the time from the kill to the first delivered
// event and from the promotion (the sentinels naming the new master) to it, and requires the
// second within 10 s.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';

import { parseData, uniqueChannel } from './harness.mjs';
import { poll, useBusFleets } from './cluster.mjs';
import { fleetSuite } from './fleet-suite.mjs';
import { FLEET_NODE_TIMEOUT_MS, redisFleetEnv, redisSkip, startSentinelGroup } from './redis.mjs';

const MASTER_NAME = 'soketi-master';

/** Where the nodes find Redis: the sentinels of `group`, under its master's name. */
function sentinelEnv(group) {
  return {
    SOKETI_DB_REDIS_SENTINELS: JSON.stringify(group.sentinels.map((s) => ({ host: '127.0.0.1', port: s.port }))),
    SOKETI_DB_REDIS_INSTANCE_NAME: group.name,
    // Nothing listens here: the nodes must not use DB_REDIS_HOST/PORT when sentinels are set.
    SOKETI_DB_REDIS_PORT: '1',
  };
}

const startGroup = () => startSentinelGroup({ name: MASTER_NAME });

fleetSuite({
  title: 'redis adapter over Sentinel (cache in Redis too)',
  skip: redisSkip(),
  nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
  setup: startGroup,
  nodeSpecs: (group, labels, env) => labels.map((label) => ({ label, env: redisFleetEnv(sentinelEnv(group), { SOKETI_CACHE_DRIVER: 'redis', ...env }) })),
  teardown: (group) => group?.stop(),
  logs: (group) => group.logs(),
});

describe('redis over Sentinel: a failover', { skip: redisSkip() }, () => {
  const cluster = useBusFleets(
    { name: 'group', start: startGroup, nodeEnv: (group, env) => redisFleetEnv(sentinelEnv(group), env) },
    { fleet: { labels: ['A', 'B'], env: { SOKETI_CACHE_DRIVER: 'redis' } } },
    { discoveryTimeout: 15_000 },
  );
  const { A, B } = cluster;

  it('nodes discover each other through the master the sentinels name', () => {
    if (cluster.discovery) throw cluster.discovery;
  });

  it('after SIGKILL of the master, events from A reach B again within 10 s of the promotion', async (t) => {
    const group = cluster.group;
    const name = uniqueChannel();
    const subscriber = await B.rawSubscribed(name);
    await A.sdk().trigger(name, 'before', {});
    await subscriber.next('before');

    const oldPort = group.master.port;
    assert.equal(await group.masterPort(), oldPort, 'the sentinels name the first master');
    await group.master.kill();
    const killedAt = Date.now();

    // The promotion: when a sentinel first names another master.
    let promotedAt = null;
    let newPort = null;
    const watching = (async () => {
      while (promotedAt === null && Date.now() - killedAt < 60_000) {
        const port = await group.masterPort();
        if (port !== null && port !== oldPort) {
          promotedAt = Date.now();
          newPort = port;
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();

    // An event every 250 ms until one arrives; the SDK calls are not awaited one by one, since a
    // node may hold a request while it reconnects.
    const sdk = A.sdk({ timeout: 2_000 });
    const outcomes = [];
    let arrived = null;
    for (let n = 1; !arrived; n += 1) {
      const waited = Date.now() - (promotedAt ?? killedAt);
      if ((promotedAt !== null && waited > 20_000) || Date.now() - killedAt > 60_000) {
        throw new Error(
          `no event published on A reached B (killed ${Date.now() - killedAt} ms ago, promoted: ${promotedAt ? `${Date.now() - promotedAt} ms ago` : 'not yet'}); ` +
            `publish outcomes: ${outcomes.slice(-20).join(', ')}; subscriber on B: ${subscriber.describeHistory()}`,
        );
      }
      sdk.trigger(name, 'after', { n }).then(
        (res) => outcomes.push(`${n}:${res.status}`),
        (err) => outcomes.push(`${n}:${err.status ?? err.message}`),
      );
      arrived = await subscriber.next('after', 250).catch(() => null);
    }
    const deliveredAt = Date.now();
    await watching;
    assert.ok(promotedAt !== null, 'the sentinels promoted the replica');
    const fromKill = deliveredAt - killedAt;
    const fromPromotion = deliveredAt - promotedAt;
    const line =
      `Sentinel failover: event ${parseData(arrived).n} reached B ${fromKill} ms after the master was killed, ` +
      `${fromPromotion} ms after the sentinels named the new master (port ${oldPort} -> ${newPort}; promotion ${promotedAt - killedAt} ms after the kill)`;
    t.diagnostic(line);
    process.stderr.write(`${line}\n`);
    assert.equal(newPort, group.replica.port, 'the replica is the new master');
    assert.ok(fromPromotion <= 10_000, line);
    assert.ok(subscriber.isOpen, "B's WebSocket client stayed connected");
  });

  it('answers for the other node and shares cache channels through the new master', async () => {
    const name = uniqueChannel();
    await B.rawSubscribed(name);
    await poll(
      `GET /channels on A to list ${name}, subscribed on B`,
      async () => (await (await A.sdk().get({ path: '/channels' })).json()).channels,
      (channels) => channels[name]?.subscription_count === 1,
    );
    const cached = uniqueChannel('cache-');
    assert.equal((await A.sdk().trigger(cached, 'kept', { n: 1 })).status, 200);
    const keys = await cluster.group.replica.command(['KEYS', `*${cached}*`]);
    assert.equal(keys.length, 1, `the cache entry is in the new master: ${JSON.stringify(keys)}`);
    const late = await B.rawSubscribed(cached);
    const frame = await late.next();
    assert.equal(frame.event, 'kept', late.describeHistory());
  });
});
