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

import http from 'node:http';

import { freePort } from './harness.mjs';

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
  const waiters = new Set();
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
      return wait(check, timeout, () => `${n} accepted webhook requests${path ? ` on ${path}` : ''}; received: ${receiver.describe(since)}`);
    },
    waitForEvents(match, n = 1, { timeout = DEFAULT_WAIT_MS, path, since = 0, what } = {}) {
      const matches = toPredicate(match);
      const check = () => {
        const got = receiver.events({ path, since }).filter(matches);
        return got.length >= n ? got.slice(0, n) : null;
      };
      const label = what ?? (typeof match === 'function' ? match.toString() : JSON.stringify(match));
      return wait(check, timeout, () => `${n} webhook event(s) matching ${label}; received: ${receiver.describe(since)}`);
    },
    /** Waits until some request (accepted or not) matches `fn`. */
    waitForRequest(fn, { timeout = DEFAULT_WAIT_MS, since = 0, what = 'a request' } = {}) {
      const check = () => requests.slice(since).find(fn) ?? null;
      return wait(check, timeout, () => `${what}; received: ${receiver.describe(since)}`);
    },
    /** Waits until `n` requests (accepted or not) match `fn`, and resolves with the first n. */
    waitForRequests(fn, n = 1, { timeout = DEFAULT_WAIT_MS, since = 0, what = `${n} matching request(s)` } = {}) {
      const check = () => {
        const got = requests.slice(since).filter(fn);
        return got.length >= n ? got.slice(0, n) : null;
      };
      return wait(check, timeout, () => `${what}; received: ${receiver.describe(since)}`);
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
      for (const waiter of waiters) waiter.cancel();
    },
  };

  const notify = () => {
    for (const waiter of waiters) waiter.poke();
  };

  // `describe` is called at the deadline, so that the message lists what did arrive.
  function wait(check, timeout, describe) {
    const found = check();
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const waiter = {
        poke() {
          const value = check();
          if (value) finish(null, value);
        },
        cancel() {
          finish(new Error(`the webhook receiver was closed while waiting for ${describe()}`));
        },
      };
      const timer = setTimeout(() => finish(new Error(`timed out after ${timeout} ms waiting for ${describe()}`)), timeout);
      function finish(err, value) {
        clearTimeout(timer);
        waiters.delete(waiter);
        if (err) reject(err);
        else resolve(value);
      }
      waiters.add(waiter);
    });
  }

  const server = http.createServer((req, res) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    req.on('end', () => {
      const rawBody = Buffer.concat(chunks).toString('utf8');
      let json;
      try {
        json = JSON.parse(rawBody);
      } catch {
        json = undefined;
      }
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

function toPredicate(match) {
  if (typeof match === 'function') return match;
  return (event) => Object.entries(match).every(([k, v]) => event[k] === v);
}

function truncate(text, max = 400) {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
