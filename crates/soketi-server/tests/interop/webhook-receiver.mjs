// A webhook receiver for the webhook tests: an `http.createServer` on a free loopback port that
// records every request (`{ path, method, headers, rawBody, json, status, at }`) and answers
// 200, or 500 while `failing` is set, or resets the connection without an answer while
// `refusing` is set (the sender's POST fails as against a receiver that is down, but the attempt
// is recorded), or keeps the answer until the sender gives up while `holding` is set (a receiver
// slower than the webhook timeout), or nothing at all while it is `down()` (the port is closed,
// so the server's POST is refused and leaves no trace here). Several webhooks can share one
// receiver through different paths (`receiver.url('/a')`, `receiver.url('/b')`).
//
// Every wait has a deadline. `waitFor(n)` waits for n accepted (2xx) requests; `waitForEvents`
// waits for events (flattened out of the bodies' `events`) that match a predicate;
// `waitForRequests` for requests of any outcome (refused and held ones included).
//
// `useServersAndReceiver` registers the hooks of a suite whose tests start their own servers
// posting to one receiver (the durable queues' tests). `recordWaits`, `readBody` and `parseJson`
// are the parts of a recording HTTP server that lambda-endpoint.mjs uses too.

import http from 'node:http';
import { after, afterEach, before, beforeEach } from 'node:test';

import { Scope, freePort, startServer } from './harness.mjs';
import { dumpRequests } from './webhook-checks.mjs';

const DEFAULT_WAIT_MS = 5_000;
const MAX_BODY_BYTES = 8 * 1024 * 1024;

/**
 * Starts a receiver on a free port (or `port`) of `host` (loopback by default; the bridge
 * address for nodes in network namespaces). Resolves once it listens with:
 * - `port`, `url(path = '/hook')`;
 * - `requests`: every request received, in order of arrival, each
 *   `{ seq, path, method, headers, rawBody, json, status, at }` (`status` is what it answered:
 *   a number, `'reset'` for a refused request, `'held'` for one never answered, whose
 *   `closedAt` is when the sender closed the connection);
 * - `accepted()`: the requests answered 2xx; `failed()`: the others;
 * - `failing`: set to true to answer 500 (`failStatus`) to every request, to a number n to
 *   answer 500 to the next n requests only, or to a function of the request record (`path`,
 *   `json`, ...) that says whether to answer 500;
 * - `refusing`: the same choices, for requests that are read, recorded with status `'reset'`
 *   and answered by resetting the connection (TCP RST), so that the sender counts a failed
 *   attempt that the test can count too;
 * - `holding`: the same choices, for requests recorded with status `'held'` and not answered
 *   until the sender closes the connection (`closedAt`); `refusing` comes first, then
 *   `holding`, then `failing`;
 * - `down()` / `up()`: close the port (connections too) and listen again on the same port;
 * - `events({ path, accepted })`: the events of the bodies, each `{ ...event, request }`;
 * - `waitFor(n, { timeout, path })`: resolves with the accepted requests once there are n;
 * - `waitForEvents(match, n, { timeout, path, since })`: resolves with the first n events
 *   (of accepted requests) that match, once there are n;
 * - `waitForRequests(match, n, { timeout, since, what })`: resolves with the first n requests
 *   (of any status) for which `match(request)` holds, once there are n; `waitForRequest(fn)`
 *   with the first one;
 * - `mark()`: the number of requests so far, for `since`;
 * - `describe(since)`: the requests as text, for assertion messages;
 * - `close()`.
 */
export async function startReceiver({ port: wantedPort, host = '127.0.0.1' } = {}) {
  const port = wantedPort ?? (await freePort());
  const requests = [];
  const waits = recordWaits('the webhook receiver', requests, (since) => receiver.describe(since));
  const sockets = new Set();
  let isUp = false;

  const receiver = {
    port,
    requests,
    failing: false,
    refusing: false,
    holding: false,
    failStatus: 500,
    url: (path = '/hook') => `http://${host}:${port}${path}`,
    mark: () => requests.length,
    accepted: (since = 0) => requests.slice(since).filter((r) => r.status >= 200 && r.status < 300),
    failed: (since = 0) => requests.slice(since).filter((r) => !(r.status >= 200 && r.status < 300)),
    /** The events of the requests since `since`, accepted ones only unless `accepted: false`. */
    events({ path, since = 0, accepted = true } = {}) {
      const out = [];
      for (const request of requests.slice(since)) {
        if (path !== undefined && request.path !== path) continue;
        if (accepted && !(request.status >= 200 && request.status < 300)) continue;
        const events = Array.isArray(request.json?.events) ? request.json.events : [];
        for (const event of events) out.push({ ...event, request });
      }
      return out;
    },
    waitFor(n, { timeout = DEFAULT_WAIT_MS, path, since = 0 } = {}) {
      const check = () => {
        const got = receiver.accepted(since).filter((r) => path === undefined || r.path === path);
        return got.length >= n ? got : null;
      };
      return waits.wait(check, { timeout, since, what: `${n} accepted webhook requests${path ? ` on ${path}` : ''}` });
    },
    waitForEvents(match, n = 1, { timeout = DEFAULT_WAIT_MS, path, since = 0, what } = {}) {
      const matches = toPredicate(match);
      const check = () => {
        const got = receiver.events({ path, since }).filter(matches);
        return got.length >= n ? got.slice(0, n) : null;
      };
      const label = what ?? (typeof match === 'function' ? match.toString() : JSON.stringify(match));
      return waits.wait(check, { timeout, since, what: `${n} webhook event(s) matching ${label}` });
    },
    /** Waits until some request (accepted or not) matches `fn`. */
    waitForRequest(fn, { timeout = DEFAULT_WAIT_MS, since = 0, what = 'a request' } = {}) {
      return waits.wait(() => requests.slice(since).find(fn) ?? null, { timeout, since, what });
    },
    /** Waits until `n` requests (accepted or not) match `fn`, and resolves with the first n. */
    waitForRequests(fn, n = 1, { timeout = DEFAULT_WAIT_MS, since = 0, what = `${n} matching request(s)` } = {}) {
      return waits.matching(fn, n, { timeout, since, what });
    },
    describe(since = 0) {
      const list = requests.slice(since);
      if (list.length === 0) return '(no requests)';
      return list
        .map((r) => `#${r.seq} ${r.method} ${r.path} -> ${r.status} key=${r.headers['x-pusher-key']} ${truncate(r.rawBody)}`)
        .join('\n  ');
    },
    down: () => stop(),
    up: () => listen(),
    async close() {
      await stop();
      waits.cancel();
    },
  };

  const notify = () => waits.poke();

  const server = http.createServer((req, res) => {
    readBody(req, (body) => {
      const rawBody = body.toString('utf8');
      const json = parseJson(rawBody);
      const record = {
        seq: requests.length,
        path: req.url,
        method: req.method,
        headers: req.headers,
        rawBody,
        json,
        status: 200,
        at: Date.now(),
      };
      if (takes('refusing', record)) {
        record.status = 'reset';
      } else if (takes('holding', record)) {
        record.status = 'held';
      } else if (takes('failing', record)) {
        record.status = receiver.failStatus;
      }
      const { status } = record;
      requests.push(record);
      if (status === 'reset') {
        req.socket.resetAndDestroy();
      } else if (status === 'held') {
        res.on('close', () => {
          record.closedAt = Date.now();
          notify();
        });
      } else {
        res.writeHead(status, { 'content-type': 'text/plain' });
        res.end(status === 200 ? 'ok' : 'failing on purpose');
      }
      notify();
    });
  });
  /** Whether the mode `name` (`failing`, `refusing`, `holding`) applies to this request. */
  function takes(name, record) {
    const mode = receiver[name];
    if (mode === true) return true;
    if (typeof mode === 'number' && mode > 0) {
      receiver[name] -= 1;
      return true;
    }
    return typeof mode === 'function' && Boolean(mode(record));
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function listen() {
    if (isUp) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onError = (err) => reject(err);
      server.once('error', onError);
      server.listen(port, host, () => {
        server.off('error', onError);
        isUp = true;
        resolve();
      });
    });
  }

  function stop() {
    if (!isUp) return Promise.resolve();
    isUp = false;
    return new Promise((resolve) => {
      server.close(() => resolve());
      // Keep-alive connections would otherwise keep taking requests.
      server.closeAllConnections();
      for (const socket of sockets) socket.destroy();
    });
  }

  await listen();
  return receiver;
}

/**
 * Registers the hooks of a `describe` whose tests start their own servers, all posting to one
 * receiver, beside a service the suite starts once (the queue's redis-server or moto_server):
 * `service` is `{ name, start }`, `start()` resolving with `{ port, logs(), stop() }`. Returns
 * `{ receiver, service, start(label, env) }`, `receiver` and `service` being set once the suite's
 * `before` ran; `start` starts a server and resolves with its scope, `label` naming it in the
 * output of a failure. After each test, the servers it started are stopped and the receiver is
 * made healthy again (not failing, refusing nor holding, and listening); when the test failed,
 * the servers' output, the requests received during it and the service's output follow the
 * failure.
 */
export function useServersAndReceiver(service) {
  const servers = [];
  const ctx = {
    receiver: null,
    service: null,
    async start(label, env) {
      const scope = new Scope();
      scope.label = label;
      scope.server = await startServer(env);
      servers.push(scope);
      return scope;
    },
  };
  let requestMark = 0;

  before(async () => {
    ctx.service = await service.start();
    ctx.receiver = await startReceiver();
  });
  beforeEach(() => {
    requestMark = ctx.receiver?.mark() ?? 0;
  });
  afterEach(async (t) => {
    if (t.passed === false) {
      // Every server was started by this test: all of its output is the test's.
      for (const scope of servers) scope.server.dumpLogs(`${scope.label}, test "${t.name}" failed`);
      dumpRequests(ctx.receiver, requestMark, t.name);
      if (ctx.service) {
        process.stderr.write(`\n----- ${service.name} output (port ${ctx.service.port}) -----\n${ctx.service.logs().slice(-8_000)}\n-----\n`);
      }
    }
    for (const scope of servers.splice(0)) {
      scope.closeClients();
      await scope.server.stop();
    }
    if (ctx.receiver) {
      ctx.receiver.failing = false;
      ctx.receiver.refusing = false;
      ctx.receiver.holding = false;
      await ctx.receiver.up();
    }
  });
  after(async () => {
    await ctx.receiver?.close();
    await ctx.service?.stop();
  });
  return ctx;
}

/**
 * The waits of a recording server called `name` in messages, whose records are `records` (in
 * order of arrival) and `describe(since)` lists them:
 * - `wait(check, { timeout, since, what })` resolves with the first value of `check()` that is
 *   not empty, tried at once and at each `poke()` (a new record), and fails at the deadline or
 *   at `cancel()` (the server closed), saying `what` it waited for and the records since `since`
 *   (listed then, so that the message has what did arrive);
 * - `matching(match, n, { timeout, since, what })` resolves with the first n records since
 *   `since` for which `match(record)` holds, once there are n.
 */
export function recordWaits(name, records, describe) {
  const waiters = new Set();
  const waits = {
    wait(check, { timeout, since = 0, what }) {
      const found = check();
      if (found) return Promise.resolve(found);
      const waitingFor = () => `${what}; received: ${describe(since)}`;
      return new Promise((resolve, reject) => {
        const waiter = {
          poke() {
            const value = check();
            if (value) finish(null, value);
          },
          cancel() {
            finish(new Error(`${name} was closed while waiting for ${waitingFor()}`));
          },
        };
        const timer = setTimeout(() => finish(new Error(`timed out after ${timeout} ms waiting for ${waitingFor()}`)), timeout);
        function finish(err, value) {
          clearTimeout(timer);
          waiters.delete(waiter);
          if (err) reject(err);
          else resolve(value);
        }
        waiters.add(waiter);
      });
    },
    matching(match, n, { timeout, since = 0, what }) {
      const check = () => {
        const got = records.slice(since).filter(match);
        return got.length >= n ? got.slice(0, n) : null;
      };
      return waits.wait(check, { timeout, since, what });
    },
    poke() {
      for (const waiter of waiters) waiter.poke();
    },
    cancel() {
      for (const waiter of waiters) waiter.cancel();
    },
  };
  return waits;
}

/** Reads the body of `req` (keeping its first MAX_BODY_BYTES), then calls `onBody(buffer)`. */
export function readBody(req, onBody) {
  const chunks = [];
  let size = 0;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size <= MAX_BODY_BYTES) chunks.push(chunk);
  });
  req.on('end', () => onBody(Buffer.concat(chunks)));
}

/** `text` parsed as JSON, or undefined when it is not JSON. */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function toPredicate(match) {
  if (typeof match === 'function') return match;
  return (event) => Object.entries(match).every(([k, v]) => event[k] === v);
}

/** `text` cut to `max` characters, for messages. */
export function truncate(text, max = 400) {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
