// Operations: the main port's /accept-traffic, the metrics server (/, /ready, /usage and the
// Prometheus /metrics), CORS headers on the HTTP API, the path prefix, and worker mode.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  APP,
  httpRequest,
  parseData,
  readResponse,
  signedRequest,
  subscribe,
  uniqueChannel,
  useServer,
  waitFor,
  writeConfig,
  upgradeStatus,
} from './harness.mjs';

const SOKETI_METRICS = [
  'connected',
  'new_connections_total',
  'new_disconnections_total',
  'socket_received_bytes',
  'socket_transmitted_bytes',
  'ws_messages_received_total',
  'ws_messages_sent_total',
  'http_received_bytes',
  'http_transmitted_bytes',
  'http_calls_received_total',
  // Described on one node too, with no sample until nodes ask one another (fleet-suite.mjs).
  'horizontal_adapter_resolve_time',
  'horizontal_adapter_resolved_promises',
  'horizontal_adapter_uncomplete_promises',
  'horizontal_adapter_sent_requests',
  'horizontal_adapter_received_requests',
  'horizontal_adapter_received_responses',
];

const ORIGIN = 'http://example.test';

// soketi's CORS defaults.
const CORS_METHODS = ['GET', 'POST', 'PUT', 'DELETE', 'OPTIONS'];
const CORS_HEADERS = [
  'Origin',
  'Content-Type',
  'X-Auth-Token',
  'X-Requested-With',
  'Accept',
  'Authorization',
  'X-CSRF-TOKEN',
  'XSRF-TOKEN',
  'X-Socket-Id',
];

/** Asserts that `value` is a finite number, naming `what`. */
function assertNumber(value, what) {
  assert.equal(typeof value, 'number', `${what} is a number: ${JSON.stringify(value)}`);
  assert.ok(Number.isFinite(value), `${what} is finite: ${value}`);
}


/**
 * The samples of a Prometheus text exposition: `{ name, labels, value }` for every line that is
 * not a comment.
 */
function samples(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.trim() || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value;
    }
    out.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return out;
}

/** The sum of the samples named exactly `name` with the label app_id="app-id" (0 if none). */
function appValue(text, name, appId = APP.appId) {
  return samples(text)
    .filter((s) => s.name === name && s.labels.app_id === appId)
    .reduce((sum, s) => sum + s.value, 0);
}

/** Scrapes /metrics on the metrics port and returns its text, failing unless it answers 200. */
async function scrape(server) {
  const res = await httpRequest(`${server.metricsUrl}/metrics`);
  assert.equal(res.status, 200, `GET /metrics on the metrics port: ${res.status} ${res.text.slice(0, 300)}`);
  return res.text;
}

/**
 * Scrapes until every check `(text) => true` holds, failing after the deadline with the values
 * of the metrics named in `names`.
 */
async function scrapeUntil(server, check, names, timeout = 3_000) {
  const deadline = Date.now() + timeout;
  let text = '';
  for (;;) {
    text = await scrape(server);
    if (check(text)) return text;
    if (Date.now() > deadline) {
      const values = names.map((n) => `${n}=${appValue(text, n)}`).join(', ');
      throw new Error(`metrics did not reach the expected values within ${timeout} ms: ${values}\n${text.slice(0, 3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether the exposition names `name` (in a sample, or in HELP/TYPE lines). */
function mentions(text, name) {
  return new RegExp(`^(?:# (?:HELP|TYPE) )?${name}(?:[ {]|$)`, 'm').test(text);
}

/**
 * Asserts that a response lets the page at `origin` read it: `Access-Control-Allow-Origin: *`
 * (soketi's answer), or the origin itself with `Vary: Origin` (needed when the answer also
 * allows credentials, which browsers refuse with `*`). `get` reads a header by lower-case name.
 */
function assertAllowsOrigin(get, origin, what) {
  const allowed = get('access-control-allow-origin');
  assert.ok(allowed === '*' || allowed === origin, `Access-Control-Allow-Origin on ${what}: ${allowed}`);
  if (allowed === origin) {
    assert.match(get('vary') ?? '', /\borigin\b/i, `an echoed origin needs Vary: Origin (${what})`);
  }
}

/** The comma-separated values of a header, trimmed and upper-cased. */
function headerList(value) {
  return (value ?? '')
    .split(',')
    .map((v) => v.trim().toUpperCase())
    .filter(Boolean);
}

describe('operations endpoints with the defaults', () => {
  const scope = useServer();

  it('answers GET /accept-traffic on the main port with the memory usage', async () => {
    const res = await httpRequest(`${scope.server.baseUrl}/accept-traffic`);
    assert.equal(res.status, 200, res.text);
    const memory = res.json?.memory;
    assert.ok(memory, `body: ${res.text}`);
    for (const field of ['usedSize', 'totalSize', 'percentUsage']) assertNumber(memory[field], `memory.${field}`);
  });

  it('answers GET / and GET /ready on the metrics port', async () => {
    for (const route of ['/', '/ready']) {
      const res = await httpRequest(`${scope.server.metricsUrl}${route}`);
      assert.equal(res.status, 200, `GET ${route} on the metrics port: ${res.status} ${res.text}`);
    }
  });

  it('answers GET /usage on the metrics port with the memory usage', async () => {
    const res = await httpRequest(`${scope.server.metricsUrl}/usage`);
    assert.equal(res.status, 200, res.text);
    const memory = res.json?.memory;
    assert.ok(memory, `body: ${res.text}`);
    for (const field of ['free', 'used', 'total', 'percent']) assertNumber(memory[field], `memory.${field}`);
  });

  it('does not serve /metrics while metrics are disabled', async () => {
    const res = await httpRequest(`${scope.server.metricsUrl}/metrics`);
    assert.notEqual(res.status, 200, `GET /metrics answered 200 with metrics disabled: ${res.text.slice(0, 200)}`);
  });

  it('allows any origin on HTTP API answers, refusals included', async () => {
    const origin = { Origin: ORIGIN };
    const published = await signedRequest(scope.server, {
      path: `/apps/${scope.server.appId}/events`,
      body: { name: 'e', channel: uniqueChannel(), data: '{}' },
      headers: origin,
    });
    assert.equal(published.status, 200, published.text);
    assertAllowsOrigin((h) => published.headers.get(h), ORIGIN, 'POST /events');

    const listed = await signedRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}/channels`, headers: origin });
    assert.equal(listed.status, 200, listed.text);
    assertAllowsOrigin((h) => listed.headers.get(h), ORIGIN, 'GET /channels');

    // Also on refusals, so that a browser can read them.
    const refused = await signedRequest(scope.server, {
      method: 'GET',
      path: `/apps/${scope.server.appId}/channels`,
      headers: origin,
      overrides: { secret: 'wrong-secret' },
    });
    assert.equal(refused.status, 401, refused.text);
    assertAllowsOrigin((h) => refused.headers.get(h), ORIGIN, 'a 401');
  });

  it("answers a CORS preflight with soketi's methods and headers", async () => {
    const res = await httpRequest(`${scope.server.baseUrl}/apps/${scope.server.appId}/events`, {
      method: 'OPTIONS',
      headers: {
        Origin: ORIGIN,
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'content-type, x-socket-id',
      },
    });
    assert.ok([200, 204].includes(res.status), `preflight status ${res.status}: ${res.text}`);
    const headers = JSON.stringify(res.headers);
    assertAllowsOrigin((h) => res.headers[h], ORIGIN, `the preflight: ${headers}`);
    const methods = headerList(res.headers['access-control-allow-methods']);
    for (const method of CORS_METHODS) assert.ok(methods.includes(method), `Access-Control-Allow-Methods has ${method}: ${headers}`);
    const allowed = headerList(res.headers['access-control-allow-headers']);
    for (const header of CORS_HEADERS) {
      assert.ok(allowed.includes(header.toUpperCase()), `Access-Control-Allow-Headers has ${header}: ${headers}`);
    }
  });
});

describe('accept-traffic over its memory threshold', () => {
  const scope = useServer({ SOKETI_HTTP_ACCEPT_TRAFFIC_MEMORY_THRESHOLD: '0.0001' });

  it('answers GET /accept-traffic with 500', async () => {
    const res = await httpRequest(`${scope.server.baseUrl}/accept-traffic`);
    assert.equal(res.status, 500, res.text);
  });
});

describe('Prometheus metrics', () => {
  const scope = useServer({ SOKETI_METRICS_ENABLED: 'true' });

  it("counts a client's connection, messages and HTTP calls under soketi's metric names", async () => {
    const before = await scrape(scope.server);

    const name = uniqueChannel();
    const client = await scope.connectedPusher();
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'counted');
    assert.equal((await scope.sdk().trigger(name, 'counted', { n: 1 })).status, 200);
    await received;

    const grown = [
      'soketi_new_connections_total',
      'soketi_ws_messages_received_total',
      'soketi_ws_messages_sent_total',
      'soketi_socket_received_bytes',
      'soketi_socket_transmitted_bytes',
      'soketi_http_calls_received_total',
      'soketi_http_received_bytes',
      'soketi_http_transmitted_bytes',
    ];
    const after = await scrapeUntil(
      scope.server,
      (text) => appValue(text, 'soketi_connected') >= 1 && grown.every((m) => appValue(text, m) > appValue(before, m)),
      ['soketi_connected', ...grown],
    );
    assert.ok(
      samples(after).some((s) => s.name === 'soketi_connected' && s.labels.app_id === APP.appId),
      'soketi_connected has an app_id="app-id" sample',
    );

    const connected = appValue(after, 'soketi_connected');
    const disconnections = appValue(after, 'soketi_new_disconnections_total');
    client.disconnect();
    const last = await scrapeUntil(
      scope.server,
      (text) =>
        appValue(text, 'soketi_connected') < connected && appValue(text, 'soketi_new_disconnections_total') > disconnections,
      ['soketi_connected', 'soketi_new_disconnections_total'],
    );
    // Checked last, once every metric has had something to count (some exporters leave out
    // a metric that has no sample yet).
    for (const name of SOKETI_METRICS) {
      assert.ok(mentions(last, `soketi_${name}`), `soketi_${name} is exposed:\n${last.slice(0, 3000)}`);
    }
  });
});

describe('Prometheus metrics with prefix x_', () => {
  const scope = useServer({ SOKETI_METRICS_ENABLED: 'true', SOKETI_METRICS_PROMETHEUS_PREFIX: 'x_' });

  it('names the metrics with the prefix', async () => {
    // Some traffic, so that every metric has a sample: a connection that closes, one that
    // stays and sends a message, and an HTTP call.
    const gone = await scope.rawConnected();
    gone.close();
    await gone.closed();
    const stays = await scope.rawConnected();
    await stays.ping();
    assert.equal((await scope.sdk().trigger(uniqueChannel(), 'e', {})).status, 200);
    const text = await scrapeUntil(
      scope.server,
      (t) => appValue(t, 'x_connected') >= 1 && appValue(t, 'x_new_disconnections_total') >= 1,
      ['x_connected', 'x_new_disconnections_total'],
    );
    for (const name of SOKETI_METRICS) assert.ok(mentions(text, `x_${name}`), `x_${name} is exposed:\n${text.slice(0, 3000)}`);
    assert.ok(!/^(?:# (?:HELP|TYPE) )?soketi_/m.test(text), `no soketi_ metric is left:\n${text.slice(0, 3000)}`);
  });
});

describe('CORS from a config file', () => {
  const ALLOWED = 'https://allowed.example';
  const file = writeConfig('cors.json', {
    cors: { credentials: false, origin: [ALLOWED], methods: ['GET', 'POST'], allowedHeaders: ['X-One', 'Content-Type'] },
  });
  const scope = useServer({}, { args: ['start', '--config', file] });

  /** A preflight of a POST to /events from `origin`. */
  const preflight = (origin) =>
    httpRequest(`${scope.server.baseUrl}/apps/${scope.server.appId}/events`, {
      method: 'OPTIONS',
      headers: { Origin: origin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
    });

  it('answers a listed origin with the configured methods and headers, and no credentials', async () => {
    const res = await preflight(ALLOWED);
    const headers = JSON.stringify(res.headers);
    assert.equal(res.headers['access-control-allow-origin'], ALLOWED, headers);
    assert.deepEqual(res.headers['access-control-allow-methods'], 'GET, POST', headers);
    assert.deepEqual(res.headers['access-control-allow-headers'], 'X-One, Content-Type', headers);
    assert.equal(res.headers['access-control-allow-credentials'], undefined, `credentials false: ${headers}`);
  });

  it('gives an origin that is not listed no CORS headers, on a preflight and on an API answer', async () => {
    const res = await preflight(ORIGIN);
    assert.equal(res.headers['access-control-allow-origin'], undefined, JSON.stringify(res.headers));
    const listed = await signedRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}/channels`, headers: { Origin: ORIGIN } });
    assert.equal(listed.status, 200, listed.text);
    assert.equal(listed.headers.get('access-control-allow-origin'), null, 'GET /channels from an origin that is not listed');
  });
});

describe('path prefix /ws', () => {
  const scope = useServer({ SOKETI_PATH_PREFIX: '/ws' });

  /** The SDK, sending its requests under the prefix (the signature covers the full path). */
  function prefixedSdk() {
    const sdk = scope.sdk();
    sdk.config.prefixPath = (subPath) => `/ws/apps/${scope.server.appId}${subPath}`;
    return sdk;
  }

  it('serves pusher-js with wsPath /ws and the SDK under /ws', async () => {
    const name = uniqueChannel('private-');
    const client = await scope.connectedPusher({ wsPath: '/ws' });
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'prefixed');
    assert.equal((await prefixedSdk().trigger(name, 'prefixed', { ok: 1 })).status, 200);
    assert.deepEqual(await received, { ok: 1 });
  });

  it('answers signed requests under /ws', async () => {
    const name = uniqueChannel();
    const client = await scope.rawSubscribed(name);
    const published = await signedRequest(scope.server, {
      path: `/ws/apps/${scope.server.appId}/events`,
      body: { name: 'raw', channel: name, data: '{"n":2}' },
    });
    assert.equal(published.status, 200, published.text);
    assert.deepEqual(parseData(await client.next('raw')), { n: 2 });
    const listed = await signedRequest(scope.server, { method: 'GET', path: `/ws/apps/${scope.server.appId}/channels` });
    assert.equal(listed.status, 200, listed.text);
    assert.ok(name in (listed.json?.channels ?? {}), listed.text);
  });

  it('no longer serves the unprefixed paths', async () => {
    const res = await signedRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}/channels` });
    assert.equal(res.status, 404, res.text);
    const bare = `ws://${scope.server.host}:${scope.server.port}/app/${scope.server.key}?protocol=7`;
    assert.notEqual(await upgradeStatus(bare), 101, 'a WebSocket at /app/<key> without the prefix');
  });
});

describe('worker mode', () => {
  const scope = useServer({ SOKETI_MODE: 'worker' });

  it('answers / and /ready with 200 on the main port', async () => {
    for (const route of ['/', '/ready']) {
      const res = await readResponse(await fetch(`${scope.server.baseUrl}${route}`));
      assert.equal(res.status, 200, `GET ${route}: ${res.text}`);
    }
  });

  it('serves neither WebSockets nor the HTTP API', async () => {
    assert.equal(await upgradeStatus(scope.server.wsUrl()), 404, 'WebSocket upgrade at /app/app-key');
    const published = await signedRequest(scope.server, {
      path: `/apps/${scope.server.appId}/events`,
      body: { name: 'e', channel: uniqueChannel(), data: '{}' },
    });
    assert.equal(published.status, 404, published.text);
    const listed = await signedRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}/channels` });
    assert.equal(listed.status, 404, listed.text);
  });
});
