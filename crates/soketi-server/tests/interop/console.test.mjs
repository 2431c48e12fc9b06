// The live debug console (`GET /console`): its page in a real headless Chromium driven through
// the DevTools protocol (puppeteer-core, which downloads no browser), with a pusher-js client and
// the `pusher` SDK making the traffic it shows; its signed stream (`GET /apps/{id}/console`,
// Server-Sent Events) read directly: refused without a valid signature, bounded for a page that
// does not read, off with SOKETI_CONSOLE_ENABLED=false, and fleet-wide over the Redis adapter
// and the cluster adapter on loopback.
//
// The browser is Debian's (`chromium` or `chromium-headless-shell`, or SOKETI_TEST_CHROMIUM);
// `.ci/run` installs it when absent. Without one the browser tests are skipped, unless
// SOKETI_TEST_REQUIRE_ALL=1, where they fail. SOKETI_CONSOLE_SCREENSHOT=<file.png> saves the
// page in use (docs/console.png is made so).

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import vm from 'node:vm';
import { after, before, describe, it } from 'node:test';

import puppeteer from 'puppeteer-core';

import { APP, REPO_ROOT, freePort, signRequest, subscribe, uniqueChannel, until, useServer, waitFor, writeConfig } from './harness.mjs';
import { fleetTransports, useTransportFleet } from './cluster.mjs';
import { startReceiver } from './webhook-receiver.mjs';
import { hooksEnv } from './webhook-checks.mjs';

const CHROMIUM = [process.env.SOKETI_TEST_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-headless-shell'].find(
  (candidate) => candidate && existsSync(candidate),
);
const browserSkip = (() => {
  if (CHROMIUM) return false;
  const why = 'no Chromium (install Debian\'s chromium or chromium-headless-shell, or set SOKETI_TEST_CHROMIUM)';
  if (process.env.SOKETI_TEST_REQUIRE_ALL === '1') throw new Error(`SOKETI_TEST_REQUIRE_ALL=1, but ${why}`);
  return why;
})();

/** The URL of `server`'s console stream for its app, signed with `secret` (the app's by default). */
function streamUrl(server, { secret = server.secret, appId = server.appId, timestamp } = {}) {
  return signRequest(server, { method: 'GET', path: `/apps/${appId}/console`, overrides: { secret, timestamp } }).url;
}

/**
 * Opens a console stream: `{ status, json, lines, hello, pause(), resume(), close() }`, where
 * `lines` fills with the parsed `data:` of each event as it arrives and `json` is the body of a
 * refusal.
 */
function openStream(url) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      const stream = {
        status: res.statusCode,
        headers: res.headers,
        lines: [],
        text: '',
        pause: () => res.pause(),
        resume: () => res.resume(),
        close: () => req.destroy(),
      };
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        if (res.statusCode !== 200) {
          stream.text += chunk;
          return;
        }
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of block.split('\n')) {
            if (line.startsWith('data: ')) stream.lines.push(JSON.parse(line.slice('data: '.length)));
          }
        }
      });
      res.on('error', () => {});
      if (res.statusCode !== 200) {
        res.on('end', () => {
          stream.json = JSON.parse(stream.text);
          resolve(stream);
        });
        return;
      }
      resolve(stream);
    });
    req.on('error', reject);
  });
}

/** Waits until `stream` holds a line that matches `accept`, and returns it. */
function lineOf(stream, what, accept, timeout = 5_000) {
  return until(() => stream.lines.find(accept), { what: `${what} on the console`, timeout });
}

describe('the console page and its stream', () => {
  const scope = useServer();
  const streams = [];
  after(() => streams.forEach((s) => s.close()));
  const open = async (url) => {
    const stream = await openStream(url);
    streams.push(stream);
    return stream;
  };

  it('serves the page and its scripts from the binary, without anything from elsewhere', async () => {
    const page = await fetch(`${scope.server.baseUrl}/console`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type'), /^text\/html/);
    assert.match(page.headers.get('content-security-policy'), /default-src 'self'/);
    const html = await page.text();
    assert.doesNotMatch(html, /https?:\/\//, 'nothing is loaded from another origin');
    for (const script of ['crypto.js', 'console.js']) {
      const res = await fetch(`${scope.server.baseUrl}/console/${script}`);
      assert.equal(res.status, 200, script);
      assert.match(res.headers.get('content-type'), /javascript/);
    }
    assert.equal((await fetch(`${scope.server.baseUrl}/console/nothing.js`)).status, 404);
  });

  it('streams an app\'s connections, subscriptions, events and errors with a valid signature', async () => {
    const stream = await open(streamUrl(scope.server));
    assert.equal(stream.status, 200);
    assert.equal(stream.headers['content-type'], 'text/event-stream');
    const hello = await lineOf(stream, 'hello', (l) => l.type === 'hello');
    assert.equal(hello.app_id, APP.appId);
    assert.equal(typeof hello.node, 'string');
    assert.equal(hello.nodes, 1, 'one node without a fleet');

    const channel = uniqueChannel('console-');
    const client = await scope.connectedPusher();
    const socketId = client.connection.socket_id;
    await subscribe(client, channel);
    const received = waitFor(client.channel(channel), 'order-created');
    await scope.sdk().trigger(channel, 'order-created', { id: 7 });
    await received;

    const connection = await lineOf(stream, 'the connection', (l) => l.type === 'connection' && l.socket_id === socketId);
    assert.equal(connection.ip, '127.0.0.1');
    await lineOf(stream, 'the subscription', (l) => l.type === 'subscribed' && l.channel === channel && l.socket_id === socketId);
    const event = await lineOf(stream, 'the event', (l) => l.type === 'event' && l.channel === channel);
    assert.equal(event.event, 'order-created');
    assert.equal(event.source, 'api');
    assert.deepEqual(JSON.parse(event.data), { id: 7 });
    assert.ok(Math.abs(event.time - Date.now()) < 60_000, 'lines carry the time in milliseconds');

    // An error the server sends a client: an unsigned private channel.
    const raw = await scope.rawConnected();
    raw.send({ event: 'pusher:subscribe', data: { channel: 'private-console-refused' } });
    await lineOf(stream, 'the refusal', (l) => l.type === 'error' && l.socket_id === raw.socketId && l.channel === 'private-console-refused');

    client.disconnect();
    await lineOf(stream, 'the disconnection', (l) => l.type === 'disconnection' && l.socket_id === socketId);
    const stats = await lineOf(stream, 'the counts', (l) => l.type === 'stats');
    assert.equal(typeof stats.connections, 'number');
    assert.equal(typeof stats.channels, 'number');
  });

  it('refuses a stream without a valid signature, and says nothing of the app', async () => {
    const wrong = await open(streamUrl(scope.server, { secret: 'not-the-secret' }));
    assert.equal(wrong.status, 401);
    assert.match(wrong.json.error, /signature/);
    assert.deepEqual(wrong.lines, []);

    const old = await open(streamUrl(scope.server, { timestamp: Math.floor(Date.now() / 1000) - 3600 }));
    assert.equal(old.status, 401, 'an old timestamp is refused, as the HTTP API refuses it');

    const unsigned = await open(`${scope.server.baseUrl}/apps/${APP.appId}/console`);
    assert.equal(unsigned.status, 401);

    const other = await open(streamUrl(scope.server, { appId: 'no-such-app' }));
    assert.equal(other.status, 404);
  });

  it('signs in the page\'s own SHA-256 as the server checks it: a publish signed by crypto.js is accepted', async () => {
    const context = vm.createContext({});
    vm.runInContext(readFileSync(path.join(REPO_ROOT, 'crates/soketi-server/src/console/crypto.js'), 'utf8'), context);
    const { hmacSha256Hex, md5Hex } = context.ConsoleCrypto;
    const body = JSON.stringify({ name: 'signed-in-js', channels: [uniqueChannel('js-')], data: '{"ünï":"cödé ✓"}' });
    const params = {
      auth_key: APP.key,
      auth_timestamp: String(Math.floor(Date.now() / 1000)),
      auth_version: '1.0',
      body_md5: md5Hex(body),
    };
    const query = Object.keys(params)
      .sort()
      .map((k) => `${k}=${params[k]}`)
      .join('&');
    const urlPath = `/apps/${APP.appId}/events`;
    const signature = hmacSha256Hex(APP.secret, `POST\n${urlPath}\n${query}`);
    const res = await fetch(`${scope.server.baseUrl}${urlPath}?${query}&auth_signature=${signature}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(res.status, 200, await res.text());

    // The key lookup of a page given the id and secret only.
    const lookupQuery = `app_id=${APP.appId}&auth_timestamp=${params.auth_timestamp}`;
    const lookup = (secret) =>
      fetch(`${scope.server.baseUrl}/console/key?${lookupQuery}&auth_signature=${hmacSha256Hex(secret, `GET\n/console/key\n${lookupQuery}`)}`);
    const found = await lookup(APP.secret);
    assert.equal(found.status, 200);
    assert.deepEqual(await found.json(), { key: APP.key });
    assert.equal((await lookup('wrong')).status, 401);
  });

  it('drops and counts the lines of a console that does not read, without slowing anyone else', async () => {
    const stream = await open(streamUrl(scope.server));
    await lineOf(stream, 'hello', (l) => l.type === 'hello');
    stream.pause();
    const channel = uniqueChannel('slow-console-');
    const client = await scope.connectedPusher();
    await subscribe(client, channel);
    let delivered = 0;
    client.channel(channel).bind('bulk', () => {
      delivered += 1;
    });
    const data = 'x'.repeat(1024);
    const sdk = scope.sdk();
    const total = 8_000;
    for (let sent = 0; sent < total; sent += 10) {
      await sdk.triggerBatch(Array.from({ length: 10 }, () => ({ channel, name: 'bulk', data })));
    }
    await until(() => delivered === total, { what: `all ${total} events delivered (got ${delivered})`, timeout: 20_000 });
    stream.resume();
    const dropped = await lineOf(stream, 'a dropped count', (l) => l.type === 'dropped', 10_000);
    assert.ok(dropped.count > 0);
    // Lines go on after the drop.
    await scope.sdk().trigger(channel, 'after-the-drop', {});
    await lineOf(stream, 'a line after the drop', (l) => l.type === 'event' && l.event === 'after-the-drop', 10_000);
  });
});

describe('the console in a real browser', { skip: browserSkip }, () => {
  const scope = useServer();
  let browser;
  before(async () => {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
      defaultViewport: { width: 1280, height: 800 },
    });
  });
  after(async () => {
    await browser?.close();
  });

  /** A page of the console at `fragment`, with the page's errors collected. */
  async function consolePage(fragment) {
    const page = await browser.newPage();
    page.errors = [];
    page.on('pageerror', (err) => page.errors.push(err.message));
    await page.goto(`${scope.server.baseUrl}/console#${fragment}`);
    return page;
  }

  const pageText = (page) => page.evaluate(() => document.body.innerText);

  it('shows a pusher-js client\'s connection, subscription and an event published with the SDK', async () => {
    const page = await consolePage(`app=${APP.appId}&secret=${APP.secret}`);
    try {
      await page.waitForFunction(() => document.getElementById('status')?.dataset.state === 'live', { timeout: 10_000 });
      const channel = uniqueChannel('browser-');
      const client = await scope.connectedPusher();
      const socketId = client.connection.socket_id;
      await subscribe(client, channel);
      await scope.sdk().trigger(channel, 'order-shipped', { parcel: 'P-1' });
      await page.waitForFunction(
        (socketId, channel) => {
          const text = document.getElementById('log').innerText;
          return text.includes(socketId) && text.includes(channel) && text.includes('order-shipped') && text.includes('P-1');
        },
        { timeout: 10_000 },
        socketId,
        channel,
      );
      const types = await page.$$eval('#log .line', (lines) => lines.map((line) => line.dataset.type));
      for (const type of ['connection', 'subscribed', 'event']) assert.ok(types.includes(type), `a ${type} line in ${types}`);
      await page.waitForFunction(() => Number(document.getElementById('count-connections').textContent) >= 1, { timeout: 5_000 });
      assert.equal(await page.$eval('#nodes', (el) => el.textContent), '1 node');

      // Publish from the page's form, signed in the browser; the pusher-js subscriber gets it.
      const received = waitFor(client.channel(channel), 'from-the-console', { timeout: 10_000 });
      await page.$eval('#pub-channel', (el, value) => (el.value = value), channel);
      await page.$eval('#pub-event', (el) => (el.value = 'from-the-console'));
      await page.$eval('#pub-data', (el) => (el.value = '{"note": "sent from the page ✓"}'));
      await page.click('#pub-send');
      const data = await received;
      assert.deepEqual(data, { note: 'sent from the page ✓' });
      await page.waitForFunction(() => /published/.test(document.getElementById('pub-result').textContent), { timeout: 5_000 });
      await page.waitForFunction(() => document.getElementById('log').innerText.includes('from-the-console'), { timeout: 5_000 });

      if (process.env.SOKETI_CONSOLE_SCREENSHOT) {
        await page.$eval('#pub-data', (el) => (el.value = '{"id": 42, "status": "shipped"}'));
        await page.screenshot({ path: process.env.SOKETI_CONSOLE_SCREENSHOT });
      }
      assert.deepEqual(page.errors, []);
    } finally {
      await page.close();
    }
  });

  it('says so in the page when the secret is wrong', async () => {
    for (const fragment of [`app=${APP.appId}&key=${APP.key}&secret=wrong`, `app=${APP.appId}&secret=wrong`]) {
      const page = await consolePage(fragment);
      try {
        await page.waitForFunction(() => /wrong/i.test(document.getElementById('message')?.textContent ?? ''), { timeout: 10_000 });
        assert.notEqual(await page.$eval('#status', (el) => el.dataset.state), 'live', fragment);
        assert.match(await pageText(page), /secret is wrong/i, fragment);
      } finally {
        await page.close();
      }
    }
  });
});

const HOOK_PORT = await freePort();

describe('the console and webhooks', () => {
  const scope = useServer(hooksEnv([{ url: `http://127.0.0.1:${HOOK_PORT}/hook`, event_types: ['channel_occupied'] }]));
  let receiver;
  before(async () => {
    receiver = await startReceiver({ port: HOOK_PORT });
  });
  after(() => receiver?.close());

  it('shows each webhook sent with its receiver\'s answer', async () => {
    const stream = await openStream(streamUrl(scope.server));
    try {
      await lineOf(stream, 'hello', (l) => l.type === 'hello');
      const client = await scope.connectedPusher();
      const answered = uniqueChannel('hooked-');
      await subscribe(client, answered);
      const ok = await lineOf(stream, 'the webhook', (l) => l.type === 'webhook' && l.channel === answered);
      assert.equal(ok.name, 'channel_occupied');
      assert.equal(ok.status, '200');

      receiver.failing = true;
      const refused = uniqueChannel('refused-');
      await subscribe(client, refused);
      const failed = await lineOf(stream, 'the refused webhook', (l) => l.type === 'webhook' && l.channel === refused);
      assert.notEqual(failed.status, '200');
    } finally {
      receiver.failing = false;
      stream.close();
    }
  });
});

describe('the console of one app among two', () => {
  const APPS = {
    one: { id: 'console-one', key: 'console-one-key', secret: 'console-one-secret' },
    two: { id: 'console-two', key: 'console-two-key', secret: 'console-two-secret' },
  };
  const file = writeConfig('console-apps.json', { appManager: { array: { apps: Object.values(APPS) } } });
  const root = useServer({}, { args: ['start', '--config', file] });

  it('shows nothing of another app, and another app\'s secret opens no stream', async () => {
    const one = root.forApp(APPS.one);
    const two = root.forApp(APPS.two);
    const borrowed = await openStream(streamUrl(one.server, { secret: APPS.two.secret }));
    assert.equal(borrowed.status, 401, 'app one\'s stream signed with app two\'s secret');

    const stream = await openStream(streamUrl(two.server));
    try {
      await lineOf(stream, 'hello', (l) => l.type === 'hello' && l.app_id === APPS.two.id);
      const client = await one.connectedPusher();
      const channel = uniqueChannel('app-one-');
      await subscribe(client, channel);
      await one.sdk().trigger(channel, 'of-app-one', {});
      // A sentinel on app two, published after app one's traffic, must come after it.
      await two.sdk().trigger('sentinel', 'of-app-two', {});
      await lineOf(stream, 'the sentinel', (l) => l.type === 'event' && l.event === 'of-app-two');
      const leaked = stream.lines.filter((l) => l.socket_id === client.connection.socket_id || l.channel === channel || l.event === 'of-app-one');
      assert.deepEqual(leaked, []);
    } finally {
      stream.close();
    }
  });
});

describe('the console turned off', () => {
  const scope = useServer({ SOKETI_CONSOLE_ENABLED: 'false' });

  it('serves neither the page nor a stream', async () => {
    assert.equal((await fetch(`${scope.server.baseUrl}/console`)).status, 404);
    assert.equal((await fetch(`${scope.server.baseUrl}/console/console.js`)).status, 404);
    const stream = await openStream(streamUrl(scope.server));
    assert.equal(stream.status, 404);
  });
});

for (const transport of fleetTransports().filter((t) => /redis adapter|cluster adapter on loopback/.test(t.title))) {
  describe(`the console of a fleet over ${transport.title}`, { skip: transport.skip }, () => {
    const fleet = useTransportFleet(transport, () => ({}), { labels: ['A', 'B'] });

    it('shows on one node what happens on the other, marked with that node', async () => {
      assert.ifError(fleet.discovery);
      const { A, B } = fleet;
      const stream = await openStream(streamUrl(A.server));
      try {
        const hello = await lineOf(stream, 'hello', (l) => l.type === 'hello');
        // B hears of the console a moment after it opened, and its lines come in batches:
        // connect on B until one of those connections shows.
        const opened = new Set();
        const shown = () => stream.lines.find((l) => l.type === 'connection' && opened.has(l.socket_id));
        await until(
          async () => {
            if (shown()) return true;
            opened.add((await B.rawConnected()).socketId);
            return false;
          },
          { what: 'a connection on B shown by A\'s console', interval: 200, timeout: 10_000 },
        );
        const connection = shown();
        assert.notEqual(connection.node, hello.node, 'marked with the node it happened on');

        const channel = uniqueChannel('fleet-console-');
        const client = await B.connectedPusher();
        await subscribe(client, channel);
        await B.sdk().trigger(channel, 'made-on-b', { n: 1 });
        const event = await lineOf(stream, 'the event published on B', (l) => l.type === 'event' && l.event === 'made-on-b');
        assert.equal(event.node, connection.node);
        assert.equal(
          stream.lines.filter((l) => l.type === 'event' && l.event === 'made-on-b').length,
          1,
          'each event once, from the node where it was published',
        );
        await A.sdk().trigger(channel, 'made-on-a', { n: 2 });
        const own = await lineOf(stream, 'the event published on A', (l) => l.type === 'event' && l.event === 'made-on-a');
        assert.equal(own.node, hello.node);
        const stats = await lineOf(stream, 'fleet counts', (l) => l.type === 'stats' && l.connections >= 2);
        assert.ok(stats.channels >= 1);
        assert.equal(stats.nodes, 2, 'the fleet counts two nodes');
      } finally {
        stream.close();
      }
    });
  });
}

