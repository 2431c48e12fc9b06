// soketi 1.x and this server on one Redis with one adapter prefix, as during a migration that
// shares the Redis: this server's adapter channels are not soketi's (`<prefix>#soketi-rs`), so
// soketi, which JSON.parses every message on `<prefix>#redis-adapter*` and shuts down on the
// first that is not JSON, keeps running; each serves its own clients; this server logs once
// that a soketi node shares the Redis and prefix. The last test shows what an earlier build,
// which published its frames on soketi's channel, did to soketi.
//
// Needs redis-server (redis.mjs) and soketi 1.6.1, installed by soketi-peer.mjs from
// the recipe in peers/soketi when it is not there yet.

import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';

import { Scope, startServer, uniqueChannel, until } from './harness.mjs';
import { redisFleetEnv, redisSkip, startRedis } from './redis.mjs';
import { findSoketi, soketiSkip, startSoketi } from './soketi-peer.mjs';

const PREFIX = 'mixed';
const DETECTED = /a soketi 1\.x node shares this Redis and prefix: /;

/** How many PUBLISH commands Redis has run. */
async function publishes(redis) {
  const stats = await redis.command(['INFO', 'commandstats']);
  return Number(/cmdstat_publish:calls=(\d+)/.exec(stats)?.[1] ?? 0);
}

const found = redisSkip() ? { missing: 'no redis-server' } : await findSoketi();

describe('beside soketi 1.x on one Redis and one adapter prefix', { skip: redisSkip() || soketiSkip(found) }, () => {
  const ctx = { redis: null, soketi: new Scope(), ours: new Scope() };

  before(async () => {
    ctx.redis = await startRedis();
    ctx.soketi.server = await startSoketi(found, {
      SOKETI_ADAPTER_DRIVER: 'redis',
      SOKETI_ADAPTER_REDIS_PREFIX: PREFIX,
      SOKETI_DB_REDIS_HOST: '127.0.0.1',
      SOKETI_DB_REDIS_PORT: String(ctx.redis.port),
    });
    ctx.ours.server = await startServer(
      redisFleetEnv({
        SOKETI_DB_REDIS_HOST: '127.0.0.1',
        SOKETI_DB_REDIS_PORT: String(ctx.redis.port),
        SOKETI_ADAPTER_REDIS_PREFIX: PREFIX,
      }),
    );
  });

  afterEach((t) => {
    if (t.passed === false) {
      ctx.ours.server?.dumpLogs(`test "${t.name}" failed`);
      process.stderr.write(`\n----- soketi output -----\n${ctx.soketi.server?.logs()}\n----- end of soketi output -----\n`);
    }
    ctx.soketi.closeClients();
    ctx.ours.closeClients();
  });

  after(async () => {
    await ctx.soketi.server?.stop();
    await ctx.ours.server?.stop();
    await ctx.redis?.stop();
  });

  it('each serves its own clients, the publishes of each reach only its own, and both keep running', async () => {
    const name = uniqueChannel('mixed-');
    const atSoketi = await ctx.soketi.rawSubscribed(name);
    const atOurs = await ctx.ours.rawSubscribed(name);

    const before = await publishes(ctx.redis);
    for (let round = 0; round < 3; round += 1) {
      await ctx.soketi.sdk().trigger(name, 'from-soketi', { round });
      assert.deepEqual(JSON.parse((await atSoketi.next({ event: 'from-soketi', channel: name })).data), { round });
      await ctx.ours.sdk().trigger(name, 'from-ours', { round });
      assert.deepEqual(JSON.parse((await atOurs.next({ event: 'from-ours', channel: name })).data), { round });
    }
    // Each side's last event came after the other's publishes; nothing crossed.
    await ctx.soketi.sdk().trigger(name, 'last', {});
    await atSoketi.next({ event: 'last', channel: name });
    await ctx.ours.sdk().trigger(name, 'last', {});
    await atOurs.next({ event: 'last', channel: name });
    assert.deepEqual(atSoketi.queue.filter((f) => f.event === 'from-ours'), [], 'nothing of ours at soketi');
    assert.deepEqual(atOurs.queue.filter((f) => f.event === 'from-soketi'), [], "nothing of soketi's at ours");
    // Beyond the 8 publishes above, this server's heartbeats (every 200 ms) while soketi listens.
    await until(async () => (await publishes(ctx.redis)) >= before + 16, { what: "this server's heartbeats on Redis" });

    assert.equal(ctx.soketi.server.exitInfo(), null, 'soketi is running');
    assert.ok(await ctx.soketi.server.alive(), 'soketi answers on /');
    assert.doesNotMatch(ctx.soketi.server.logs(), /uncaughtException|is not valid JSON/);
    assert.equal(ctx.ours.server.exitInfo(), null, 'this server is running');
    assert.ok(atSoketi.isOpen && atOurs.isOpen, 'both clients are still connected');
  });

  it('this server logs once that a soketi node shares the Redis and prefix, then stops listening to soketi', async () => {
    await until(() => DETECTED.test(ctx.ours.server.logs()), { what: `the line about soketi; logs: ${ctx.ours.server.logs()}` });
    // It leaves soketi's channels once it has seen soketi: only soketi's own subscriptions stay.
    await until(async () => {
      const counts = await ctx.redis.command(['PUBSUB', 'NUMSUB', `${PREFIX}#redis-adapter`, `${PREFIX}#redis-adapter#comms#res`]);
      return counts[1] === 0 && counts[3] === 1;
    }, { what: "this server to leave soketi's channels" });
    // More publishes through soketi, heard by soketi's own client, add no line.
    const name = uniqueChannel('again-');
    const atSoketi = await ctx.soketi.rawSubscribed(name);
    for (let n = 0; n < 3; n += 1) {
      await ctx.soketi.sdk().trigger(name, 'again', { n });
      await atSoketi.next({ event: 'again', channel: name });
    }
    const lines = ctx.ours.server.logs().match(new RegExp(DETECTED.source, 'g')) ?? [];
    assert.equal(lines.length, 1, `one line; logs: ${ctx.ours.server.logs()}`);
    assert.match(ctx.ours.server.logs(), /ADAPTER_REDIS_PREFIX/, 'the line says what to do');
    assert.ok(await ctx.soketi.server.alive(), 'soketi answers on /');
  });

  it("what an earlier build did: a frame of this server's format on soketi's channel makes soketi shut down", async () => {
    // One heartbeat frame (kind 1, a node id of 5 bytes), as earlier builds published on
    // `<prefix>#redis-adapter`.
    await ctx.redis.command(['PUBLISH', `${PREFIX}#redis-adapter`, '\x01\x05abcde']);
    await until(() => /uncaughtException/.test(ctx.soketi.server.logs()), {
      what: `soketi to fail on the frame; its output: ${ctx.soketi.server.logs()}`,
    });
    assert.match(ctx.soketi.server.logs(), /is not valid JSON/);
  });
});
