// HTTP API refusals. Each carries the status itself and a JSON body `{ error, code }`, as
// Pusher's SDKs expect. Requests that the SDK refuses to build are signed by hand.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  assertHttpError,
  pusherServer,
  readResponse,
  sdkFailure,
  signedRequest,
  uniqueChannel,
  useServer,
} from './harness.mjs';

describe('HTTP API errors', () => {
  const scope = useServer();
  const eventsPath = () => `/apps/${scope.server.appId}/events`;
  const event = (overrides = {}) => ({ name: 'e', data: '{}', channels: [uniqueChannel()], ...overrides });

  it('accepts a request signed by hand, which validates the signing helper', async () => {
    const res = await signedRequest(scope.server, { path: eventsPath(), body: event() });
    assert.equal(res.status, 200, res.text);
  });

  it('refuses a wrong secret with 401', async () => {
    const sdk = pusherServer(scope.server, { secret: 'not-the-secret' });
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e', {})), 401);
  });

  it('refuses an auth_timestamp older than 600 s with 401', async () => {
    const timestamp = Math.floor(Date.now() / 1000) - 601;
    const res = await signedRequest(scope.server, { path: eventsPath(), body: event(), overrides: { timestamp } });
    assertHttpError(res, 401);
  });

  it('refuses a wrong body_md5 with 401', async () => {
    const res = await signedRequest(scope.server, {
      path: eventsPath(),
      body: event(),
      overrides: { bodyMd5: '0'.repeat(32) },
    });
    assertHttpError(res, 401);
  });

  it('refuses an unknown app id with 404', async () => {
    const sdk = pusherServer(scope.server, { appId: 'no-such-app' });
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e', {})), 404);
  });

  it('refuses event data over 100 KB with 413', async () => {
    const data = 'x'.repeat(101 * 1024);
    assertHttpError(await sdkFailure(scope.sdk().trigger(uniqueChannel(), 'e', data)), 413);
  });

  it('refuses a malformed JSON body with 400', async () => {
    const res = await signedRequest(scope.server, { path: eventsPath(), body: '{"name": "e", "data": ' });
    assertHttpError(res, 400);
  });

  it('refuses an event without a name with 400', async () => {
    const { name, ...nameless } = event();
    const res = await signedRequest(scope.server, { path: eventsPath(), body: nameless });
    assertHttpError(res, 400);
  });

  it('refuses an event without channels with 400', async () => {
    const { channels, ...channelless } = event();
    const res = await signedRequest(scope.server, { path: eventsPath(), body: channelless });
    assertHttpError(res, 400);
  });

  it('refuses an event for 101 channels with 400', async () => {
    const channels = Array.from({ length: 101 }, () => uniqueChannel());
    const res = await signedRequest(scope.server, { path: eventsPath(), body: event({ channels }) });
    assertHttpError(res, 400);
  });

  it('refuses an event name over 200 characters with 400', async () => {
    const res = await signedRequest(scope.server, { path: eventsPath(), body: event({ name: 'x'.repeat(201) }) });
    assertHttpError(res, 400);
  });

  it('refuses a batch of 11 events with 400', async () => {
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: uniqueChannel(), name: `e${i}`, data: {} }));
    assertHttpError(await sdkFailure(scope.sdk().triggerBatch(batch)), 400);
  });

  it('refuses an invalid socket_id with 400', async () => {
    const res = await signedRequest(scope.server, { path: eventsPath(), body: event({ socket_id: 'not-a-socket' }) });
    assertHttpError(res, 400);
  });

  it('answers an unknown route with 404', async () => {
    assertHttpError(await readResponse(await fetch(`${scope.server.baseUrl}/no/such/route`)), 404);
  });

  it('answers an unknown signed route under the app with 404', async () => {
    const res = await signedRequest(scope.server, { method: 'GET', path: `/apps/${scope.server.appId}/no-such-route` });
    assertHttpError(res, 404);
  });

  it('answers GET / and GET /ready with 200', async () => {
    for (const path of ['/', '/ready']) {
      const res = await fetch(`${scope.server.baseUrl}${path}`);
      assert.equal(res.status, 200, path);
      await res.arrayBuffer();
    }
  });
});
