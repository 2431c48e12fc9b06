// Connection lifecycle: the handshake, refusals at connect time, and the activity check.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { SOCKET_ID_RE, connected, parseData, record, until, useServer } from './harness.mjs';

/** Asserts that a raw client got `pusher:error` with `code` and was then closed with it. */
async function assertRefused(client, code) {
  const error = await client.next('pusher:error');
  const data = parseData(error);
  assert.equal(data.code, code, `pusher:error code; frames: ${client.describeHistory()}`);
  assert.equal(typeof data.message, 'string');
  const { code: closeCode } = await client.closed();
  assert.equal(closeCode, code, 'close code');
  assert.ok(
    !client.history.some((f) => f.event === 'pusher:connection_established'),
    'a refused connection is never established',
  );
}

describe('connection on the default server', () => {
  const scope = useServer();

  it('sends pusher:connection_established with a socket id and activity_timeout 30', async () => {
    const client = await scope.raw();
    const frame = await client.next('pusher:connection_established');
    assert.equal(typeof frame.data, 'string', 'Pusher sends this event data as a JSON string');
    const data = JSON.parse(frame.data);
    assert.match(data.socket_id, SOCKET_ID_RE);
    assert.equal(data.activity_timeout, 30);
  });

  it('gives each connection its own socket id', async () => {
    const a = await scope.rawConnected();
    const b = await scope.rawConnected();
    assert.notEqual(a.socketId, b.socketId);
  });

  it('lets pusher-js reach "connected" with a socket id', async () => {
    const client = scope.pusher();
    await connected(client);
    assert.equal(client.connection.state, 'connected');
    assert.match(client.connection.socket_id, SOCKET_ID_RE);
  });

  it('accepts a connection without the protocol parameter', async () => {
    const client = await scope.raw(scope.server.wsUrl(scope.server.key, ''));
    const data = await client.established();
    assert.match(data.socket_id, SOCKET_ID_RE);
  });

  it('refuses an unknown app key with 4001', async () => {
    const client = await scope.raw(scope.server.wsUrl('no-such-key'));
    await assertRefused(client, 4001);
  });

  it('refuses protocol 3 with 4007', async () => {
    const client = await scope.raw(scope.server.wsUrl(scope.server.key, 'protocol=3&client=js&version=8.4.0'));
    await assertRefused(client, 4007);
  });

  it('answers pusher:ping with pusher:pong', async () => {
    const client = await scope.rawConnected();
    const pong = await client.ping();
    assert.equal(pong.event, 'pusher:pong');
    assert.ok(client.isOpen);
  });
});

describe('connection to a disabled app', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_ENABLED: 'false' });

  it('refuses the connection with 4003', async () => {
    const client = await scope.raw();
    await assertRefused(client, 4003);
  });
});

describe('connection limit of 2', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_MAX_CONNS: '2' });

  it('refuses the third connection with 4100 and accepts a new one after a close', async () => {
    const first = await scope.rawConnected();
    await scope.rawConnected();

    const third = await scope.raw();
    await assertRefused(third, 4100);

    first.close();
    await first.closed();
    // The server may count the close a moment after the client sees it, so retry with a
    // deadline instead of expecting the very next attempt to succeed.
    const accepted = await scope.rawAcceptedAgain();
    assert.ok(accepted.isOpen);
    await accepted.ping();
  });
});

describe('activity check with 1 s timeouts', () => {
  const scope = useServer({ SOKETI_ACTIVITY_TIMEOUT: '1', SOKETI_PONG_TIMEOUT: '1' });

  it('advertises activity_timeout 1', async () => {
    const client = await scope.raw();
    const data = await client.established();
    assert.equal(data.activity_timeout, 1);
  });

  it('pings a silent client and then closes it with 4201', async () => {
    const client = await scope.rawConnected();
    const ping = await client.next('pusher:ping', 4_000);
    assert.equal(ping.event, 'pusher:ping');
    const { code } = await client.closed(5_000);
    assert.equal(code, 4201);
  });

  it('keeps a client open that answers each ping with pusher:pong', async () => {
    const client = await scope.rawConnected();
    const start = Date.now();
    let pings = 0;
    // Answer the server's pings until well past activity + pong timeout (2 s): reaching this
    // point open shows that answering pings keeps the connection alive.
    while (Date.now() - start < 3_000) {
      await client.next('pusher:ping', 4_000);
      pings += 1;
      client.send({ event: 'pusher:pong', data: {} });
    }
    assert.ok(pings >= 2, `expected at least 2 server pings, got ${pings}`);
    assert.ok(client.isOpen, `closed with ${client.closeCode}`);
    await client.ping();
  });

  it('keeps pusher-js connected', async () => {
    const client = scope.pusher();
    await connected(client);
    const socketId = client.connection.socket_id;
    const changes = record(client.connection, 'state_change');
    const heartbeats = record(client.connection, 'message');
    const start = Date.now();
    // pusher-js and the server exchange pings every second here; wait for several of them
    // over more than activity + pong timeout.
    await until(
      () =>
        Date.now() - start > 3_000 &&
        heartbeats.filter((m) => m.event === 'pusher:ping' || m.event === 'pusher:pong').length >= 2,
      { timeout: 8_000, what: 'pings and pongs over 3 s' },
    );
    changes.stop();
    heartbeats.stop();
    assert.deepEqual(changes, [], 'no state change');
    assert.equal(client.connection.state, 'connected');
    assert.equal(client.connection.socket_id, socketId, 'same connection, not a reconnect');
  });
});
