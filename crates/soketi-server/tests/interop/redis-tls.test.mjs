// Redis over TLS (SOKETI_DB_REDIS_TLS, _TLS_CA, _TLS_CERT, _TLS_KEY, and the `tls` key of
// soketi's ioredis-style *_REDIS_OPTIONS) for every user of Redis: the adapter, the cache, the
// webhook queue and the rate limiter. A redis-server serves TLS on a second port with
// certificates that the test makes with the openssl CLI (a CA, a server certificate for
// 127.0.0.1, a client certificate, and another CA that signed none of them).
//
// The fleet suite (fleet-suite.mjs) runs over a Redis that requires client certificates, with
// the cache, the webhook queue and the rate limiter in Redis too. Then: a certificate that the
// configured CA did not sign stops start-up with a line naming TLS and the certificate, for the
// adapter, the cache, the queue and the rate limiter; a missing client certificate stops it
// too; a plain-text port is never talked to in plain text; the `tls` key of CACHE_REDIS_OPTIONS works as the
// environment does; DB_REDIS_TLS_INSECURE=true connects and warns.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { Scope, failedStart, freePort, parseData, startServer, uniqueChannel, until } from './harness.mjs';
import { fleetSuite } from './fleet-suite.mjs';
import { FLEET_NODE_TIMEOUT_MS, redisCertificates, redisFleetEnv, redisSkip, startRedis } from './redis.mjs';

/** Where the nodes find the TLS Redis `bus`, with the client certificate. */
function tlsEnv(bus, certs) {
  return {
    SOKETI_DB_REDIS_HOST: '127.0.0.1',
    SOKETI_DB_REDIS_PORT: String(bus.tlsPort),
    SOKETI_DB_REDIS_TLS: 'true',
    SOKETI_DB_REDIS_TLS_CA: certs.ca,
    SOKETI_DB_REDIS_TLS_CERT: certs.clientCert,
    SOKETI_DB_REDIS_TLS_KEY: certs.clientKey,
  };
}

/** Every user of Redis in Redis. */
const ALL_IN_REDIS = { SOKETI_CACHE_DRIVER: 'redis', SOKETI_QUEUE_DRIVER: 'redis', SOKETI_RATE_LIMITER_DRIVER: 'redis' };

let fleetCerts = null;
fleetSuite({
  title: 'redis adapter over TLS with client certificates (cache, queue and rate limiter in Redis too)',
  skip: redisSkip(),
  nodeTimeoutMs: FLEET_NODE_TIMEOUT_MS,
  setup: async () => {
    fleetCerts = redisCertificates('redis-tls-fleet');
    return startRedis({ tls: { ...fleetCerts, authClients: true } });
  },
  nodeSpecs: (bus, labels, env) => labels.map((label) => ({ label, env: redisFleetEnv(tlsEnv(bus, fleetCerts), { ...ALL_IN_REDIS, ...env }) })),
  teardown: (bus) => bus?.stop(),
  logs: (bus) => bus.logs(),
});

/** Loopback and free ports, so that a server that wrongly starts binds nothing shared. */
async function safeEnv(extra) {
  return {
    SOKETI_HOST: '127.0.0.1',
    SOKETI_PORT: String(await freePort()),
    SOKETI_METRICS_HOST: '127.0.0.1',
    SOKETI_METRICS_SERVER_PORT: String(await freePort()),
    ...extra,
  };
}

/** The stderr line of `failure` that matches every pattern. */
function lineWith(failure, ...patterns) {
  const matches = (line, p) => (typeof p === 'string' ? line.includes(p) : p.test(line));
  const line = failure.lines.find((l) => patterns.every((p) => matches(l, p)));
  assert.ok(line, `expected a stderr line containing ${patterns.map(String).join(' and ')}; stderr:\n${failure.run.stderr || '(empty)'}`);
  return line;
}

describe('redis over TLS: certificates', { skip: redisSkip() }, () => {
  let certs;
  let redis;
  let strict;
  before(async () => {
    certs = redisCertificates('redis-tls-checks');
    redis = await startRedis({ tls: { ...certs, authClients: false } });
    strict = await startRedis({ tls: { ...certs, authClients: true } });
  });
  after(async () => {
    await redis?.stop();
    await strict?.stop();
  });

  const at = (port, extra = {}) => ({ SOKETI_DB_REDIS_HOST: '127.0.0.1', SOKETI_DB_REDIS_PORT: String(port), ...extra });

  it('a server certificate that DB_REDIS_TLS_CA did not sign stops start-up of the adapter, naming TLS and the certificate', async () => {
    const failure = await failedStart(['start'], await safeEnv(redisFleetEnv(at(redis.tlsPort, { SOKETI_DB_REDIS_TLS: 'true', SOKETI_DB_REDIS_TLS_CA: certs.otherCa }))), 10_000);
    lineWith(failure, 'TLS', /certificate/i, 'adapter');
  });

  it('the same for the cache alone (local adapter), with the bare DB_REDIS_ names', async () => {
    const failure = await failedStart(['start'], await safeEnv({ CACHE_DRIVER: 'redis', ...{ DB_REDIS_HOST: '127.0.0.1', DB_REDIS_PORT: String(redis.tlsPort), DB_REDIS_TLS: 'true', DB_REDIS_TLS_CA: certs.otherCa } }), 10_000);
    lineWith(failure, 'TLS', /certificate/i, 'cache');
  });

  it('the system roots do not trust a private CA: DB_REDIS_TLS=true alone stops start-up for the queue and the rate limiter', async () => {
    for (const [driver, what] of [[{ SOKETI_QUEUE_DRIVER: 'redis' }, 'webhook queue'], [{ SOKETI_RATE_LIMITER_DRIVER: 'redis' }, 'rate limiter']]) {
      const failure = await failedStart(['start'], await safeEnv({ ...driver, ...at(redis.tlsPort, { SOKETI_DB_REDIS_TLS: 'true' }) }), 10_000);
      lineWith(failure, 'TLS', /certificate/i, what);
    }
  });

  it('a Redis that requires a client certificate, without one, stops start-up naming TLS', async () => {
    const failure = await failedStart(['start'], await safeEnv(redisFleetEnv(at(strict.tlsPort, { SOKETI_DB_REDIS_TLS: 'true', SOKETI_DB_REDIS_TLS_CA: certs.ca }))), 10_000);
    lineWith(failure, 'TLS', 'adapter');
  });

  it('TLS to a plain-text port never falls back to plain text: the node says it cannot reach Redis over TLS and never subscribes', async () => {
    const scope = new Scope();
    scope.server = await startServer(redisFleetEnv(at(redis.port, { SOKETI_DB_REDIS_TLS: 'true', SOKETI_DB_REDIS_TLS_CA: certs.ca })));
    try {
      await until(() => /cannot reach Redis over TLS for the adapter/.test(scope.server.logs()), {
        timeout: 15_000,
        what: `the warning about TLS; logs: ${scope.server.logs()}`,
      });
      // Its subscriber has been trying for as long as the start-up check waited.
      const subscribed = await redis.command(['PUBSUB', 'NUMSUB', '#soketi-rs']);
      assert.deepEqual(subscribed, ['#soketi-rs', 0], 'no node subscribed in plain text');
      const hello = await scope.rawSubscribed(uniqueChannel());
      assert.ok(hello.isOpen, 'the node serves its own clients meanwhile');
    } finally {
      scope.closeClients();
      await scope.server.stop();
    }
  });

  it('DB_REDIS_TLS_CERT without DB_REDIS_TLS_KEY names both', async () => {
    const failure = await failedStart(['start'], await safeEnv({ SOKETI_CACHE_DRIVER: 'redis', ...at(redis.tlsPort, { SOKETI_DB_REDIS_TLS_CERT: certs.clientCert }) }));
    lineWith(failure, 'DB_REDIS_TLS_CERT', 'DB_REDIS_TLS_KEY');
  });

  it('the tls key of CACHE_REDIS_OPTIONS (ioredis: PEM text, as soketi passes it) shares cache channels through the TLS Redis', async () => {
    const tls = { ca: readFileSync(certs.ca, 'utf8'), cert: readFileSync(certs.clientCert, 'utf8'), key: readFileSync(certs.clientKey, 'utf8') };
    const env = { SOKETI_CACHE_DRIVER: 'redis', SOKETI_DB_REDIS_KEY_PREFIX: 'tls-options:', SOKETI_CACHE_REDIS_OPTIONS: JSON.stringify({ tls }), ...at(strict.tlsPort) };
    const first = new Scope();
    first.server = await startServer(env);
    const second = new Scope();
    try {
      const name = uniqueChannel('cache-');
      assert.equal((await first.sdk().trigger(name, 'cached', { n: 7 })).status, 200);
      const keys = await strict.command(['KEYS', 'tls-options:*']);
      assert.ok(keys.length >= 1, `the cache wrote under the key prefix in Redis: ${JSON.stringify(keys)}`);
      second.server = await startServer(env);
      const client = await second.rawSubscribed(name);
      const frame = await client.next();
      assert.equal(frame.event, 'cached', `a node started after the publish: ${client.describeHistory()}`);
      assert.deepEqual(parseData(frame), { n: 7 });
    } finally {
      for (const scope of [first, second]) {
        scope.closeClients();
        await scope.server?.stop();
      }
    }
  });

  it('a tls key of CACHE_REDIS_OPTIONS that is not understood names the option', async () => {
    const failure = await failedStart(['start'], await safeEnv({ SOKETI_CACHE_DRIVER: 'redis', SOKETI_CACHE_REDIS_OPTIONS: JSON.stringify({ tls: { servername: 'x' } }), ...at(redis.tlsPort) }));
    lineWith(failure, 'CACHE_REDIS_OPTIONS', 'servername');
  });

  it('DB_REDIS_TLS_INSECURE=true connects to a certificate nobody vouches for, and warns loudly', async () => {
    const scope = new Scope();
    scope.server = await startServer(redisFleetEnv(at(redis.tlsPort, { SOKETI_DB_REDIS_TLS_INSECURE: 'true', SOKETI_CACHE_DRIVER: 'redis' })));
    try {
      const name = uniqueChannel('cache-');
      assert.equal((await scope.sdk().trigger(name, 'cached', {})).status, 200);
      assert.match(scope.server.logs(), /VERIFICATION IS OFF/, 'the warning is logged');
    } finally {
      await scope.server.stop();
    }
  });
});

