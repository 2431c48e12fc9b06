// Graceful shutdown on SIGTERM: every connection is closed with 4200, /ready stops answering
// 200 while the server drains, the process exits 0 within the grace period, and an HTTP
// request already in flight still completes.
//
// Each test stops its own server, so each starts one. The server waits for a client that never
// answers its close frame until the grace period ends: that it did wait is shown by when it
// exited (never sooner than the grace period after SIGTERM, whatever the machine's load), not by
// catching it still running at some moment.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { describe, it } from 'node:test';

import {
  connected,
  httpRequest,
  pusherClient,
  record,
  signRequest,
  startServer,
  uniqueChannel,
  until,
  withTimeout,
} from './harness.mjs';

const GRACE_MS = 1_500;
// How long after SIGTERM the process may take to exit: the grace period, then the server's last
// steps (a 20 ms poll of its connections, stopping its tasks) and the harness seeing the exit;
// 3 s leave room for a busy machine and still catch a server that ignores the grace period.
const EXIT_DEADLINE_MS = GRACE_MS + 3_000;
// For the request in flight: long enough that no busy machine reaches it, since the server
// exits as soon as its connections are closed and its requests answered.
const LONG_GRACE_MS = 60_000;

/**
 * A WebSocket client on a bare TCP socket that never answers the server's close frame, so
 * that the server has a connection to wait for while it shuts down.
 *
 * `established` resolves once `pusher:connection_established` has arrived; `closeCode`
 * resolves with the code of the server's close frame.
 */
function stubbornClient(server) {
  const socket = net.connect(server.port, server.host);
  const key = crypto.randomBytes(16).toString('base64');
  socket.on('connect', () => {
    socket.write(
      `GET ${server.pathPrefix}/app/${server.key}?protocol=7&client=js&version=8.4.0&flash=false HTTP/1.1\r\n` +
        `Host: ${server.host}:${server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    );
  });

  let onEstablished;
  let onClose;
  let onFail;
  const established = new Promise((resolve, reject) => {
    onEstablished = resolve;
    onFail = reject;
  });
  const closeCode = new Promise((resolve) => {
    onClose = resolve;
  });
  established.catch(() => {});

  let buffer = Buffer.alloc(0);
  let upgraded = false;
  const frames = [];
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    if (!upgraded) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffer.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) {
        onFail(new Error(`the upgrade was refused: ${head.split('\r\n')[0]}`));
        return;
      }
      upgraded = true;
      buffer = buffer.subarray(end + 4);
    }
    // Server frames are not masked: opcode, length (7 bits, or 16 or 64 bits), payload.
    for (;;) {
      if (buffer.length < 2) return;
      const opcode = buffer[0] & 0x0f;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) return;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1) {
        const text = payload.toString();
        frames.push(text);
        if (text.includes('pusher:connection_established')) onEstablished();
      } else if (opcode === 0x8) {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        frames.push(`<close ${code}>`);
        onClose(code);
      }
    }
  });
  socket.on('error', (err) => onFail(err));
  socket.on('close', () => {
    onFail(new Error('the connection closed before it was established'));
    onClose(null);
  });

  return {
    established: () => withTimeout(established, 5_000, `the stubborn client's connection_established`),
    closeCode: (timeout) => withTimeout(closeCode, timeout, `a close frame on the stubborn client; frames: ${frames.join(', ')}`),
    frames,
    destroy: () => socket.destroy(),
  };
}

/**
 * GET /ready at `url`: `{ status }` when it answers, `{ refused: <error code> }` when the
 * connection is refused or reset.
 */
async function probeReady(url) {
  try {
    const res = await httpRequest(url, { timeout: 1_000 });
    return { status: res.status };
  } catch (err) {
    if (['ECONNREFUSED', 'ECONNRESET', 'EPIPE'].includes(err.code)) return { refused: err.code };
    throw new Error(`GET ${url} during shutdown: ${err.message}`);
  }
}

/** Runs `body` with a fresh server, printing its output if the test fails and stopping it after. */
async function withServer(env, body) {
  const server = await startServer(env);
  try {
    await body(server);
  } catch (err) {
    server.dumpLogs('shutdown test failed');
    throw err;
  } finally {
    await server.stop();
  }
}

describe('graceful shutdown on SIGTERM', () => {
  const env = { SOKETI_SHUTDOWN_GRACE_PERIOD: String(GRACE_MS) };

  it(`closes connections with 4200, stops answering /ready, waits out the ${GRACE_MS} ms grace period for a client that never closes, and exits 0`, async () => {
    await withServer(env, async (server) => {
      const client = pusherClient(server);
      const stubborn = stubbornClient(server);
      try {
        await connected(client);
        await stubborn.established();
        const errors = record(client.connection, 'error');

        const start = Date.now();
        server.signal('SIGTERM');

        assert.equal(await stubborn.closeCode(3_000), 4200, `the raw client's close code; frames: ${stubborn.frames.join(', ')}`);
        await until(() => errors.some((e) => e?.data?.code === 4200), {
          timeout: 3_000,
          what: `pusher-js to report code 4200 (errors: ${JSON.stringify(errors)})`,
        });

        // The stubborn client has not answered the close frame: the server is draining (or,
        // on a machine slow enough to get here after the grace period, gone).
        for (const url of [`${server.baseUrl}/ready`, `${server.metricsUrl}/ready`]) {
          const probe = await probeReady(url);
          assert.ok(
            probe.refused !== undefined || probe.status === 503,
            `GET ${url} while shutting down: expected 503 or a refused connection, got ${JSON.stringify(probe)}`,
          );
        }

        const exit = await server.waitExit(Math.max(0, EXIT_DEADLINE_MS - (Date.now() - start)));
        const elapsed = Date.now() - start;
        assert.deepEqual(exit, { code: 0, signal: null }, 'a clean exit');
        // `start` was taken before the signal was sent, so a server that waited out the grace
        // period for the stubborn client cannot have exited sooner than this.
        assert.ok(elapsed >= GRACE_MS, `exited ${elapsed} ms after SIGTERM: it did not wait ${GRACE_MS} ms for the connection it closed`);
        assert.ok(elapsed <= EXIT_DEADLINE_MS, `exited ${elapsed} ms after SIGTERM`);
      } finally {
        client.disconnect();
        stubborn.destroy();
      }
    });
  });

  it('completes an HTTP request that is in flight when SIGTERM arrives, then exits as soon as nothing is left', async () => {
    await withServer({ SOKETI_SHUTDOWN_GRACE_PERIOD: String(LONG_GRACE_MS) }, async (server) => {
      const stubborn = stubbornClient(server);
      try {
        await stubborn.established();
        const { url, text } = signRequest(server, {
          path: `/apps/${server.appId}/events`,
          body: { name: 'inflight', channel: uniqueChannel(), data: '{}' },
        });
        // `Expect: 100-continue` makes the server say when its handler reads the body, which
        // shows that the request is in flight; the body is sent only after SIGTERM.
        const req = http.request(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), expect: '100-continue' },
          agent: false,
        });
        const response = new Promise((resolve, reject) => {
          req.on('response', (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (chunk) => {
              body += chunk;
            });
            res.on('end', () => resolve({ status: res.statusCode, body }));
          });
          req.on('error', reject);
        });
        response.catch(() => {});
        const continued = new Promise((resolve) => req.on('continue', resolve));
        req.flushHeaders();
        await withTimeout(continued, 3_000, 'the server to answer Expect: 100-continue');

        server.signal('SIGTERM');
        assert.equal(await stubborn.closeCode(3_000), 4200, 'shutdown has begun');
        req.end(text);

        const res = await withTimeout(response, 5_000, 'the answer to the request in flight');
        assert.equal(res.status, 200, `the request in flight: ${res.status} ${res.body}`);
        // With its last connection gone and nothing in flight, the server exits at once, long
        // before the grace period.
        stubborn.destroy();
        const exit = await server.waitExit(5_000);
        assert.equal(exit.code, 0, `exit: ${JSON.stringify(exit)}`);
      } finally {
        stubborn.destroy();
      }
    });
  });
});
