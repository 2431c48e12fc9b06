// Configuration through the environment: the default app's credentials and the limits,
// set far from their defaults so that each one is seen to take effect.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  assertHttpError,
  parseData,
  pusherServer,
  sdkFailure,
  subscribe,
  subscribeData,
  uniqueChannel,
  useServer,
  waitFor,
} from './harness.mjs';

/** A channel name of exactly `length` characters that no other test uses. */
function channelOfLength(length) {
  const base = uniqueChannel();
  assert.ok(base.length <= length, `${base} is longer than ${length}`);
  return base + 'x'.repeat(length - base.length);
}

describe('custom default app credentials', () => {
  const scope = useServer({
    SOKETI_DEFAULT_APP_ID: 'custom-id',
    SOKETI_DEFAULT_APP_KEY: 'custom-key',
    SOKETI_DEFAULT_APP_SECRET: 'custom-secret',
  });

  it('serves pusher-js and the SDK with the configured id, key and secret', async () => {
    assert.equal(scope.server.key, 'custom-key');
    const name = uniqueChannel('private-');
    const client = await scope.connectedPusher();
    const { channel } = await subscribe(client, name);
    const received = waitFor(channel, 'configured');
    const res = await scope.sdk().trigger(name, 'configured', { ok: 1 });
    assert.equal(res.status, 200);
    assert.deepEqual(await received, { ok: 1 });
  });

  it('no longer knows the stock key, id or secret', async () => {
    const client = await scope.raw(scope.server.wsUrl('app-key'));
    assert.equal(parseData(await client.next('pusher:error')).code, 4001);
    assert.equal((await client.closed()).code, 4001);

    const stockId = pusherServer(scope.server, { appId: 'app-id' });
    assertHttpError(await sdkFailure(stockId.trigger(uniqueChannel(), 'e', {})), 404);
    const stockSecret = pusherServer(scope.server, { secret: 'app-secret' });
    assertHttpError(await sdkFailure(stockSecret.trigger(uniqueChannel(), 'e', {})), 401);
  });
});

describe('custom limits', () => {
  const scope = useServer({
    SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true',
    SOKETI_EVENT_MAX_SIZE_IN_KB: '1',
    SOKETI_EVENT_MAX_CHANNELS_AT_ONCE: '2',
    SOKETI_EVENT_MAX_BATCH_SIZE: '2',
    SOKETI_EVENT_MAX_NAME_LENGTH: '20',
    SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH: '40',
    SOKETI_PRESENCE_MAX_MEMBER_SIZE: '1',
  });

  it('applies SOKETI_EVENT_MAX_SIZE_IN_KB to published data', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(800))).status, 200);
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e', 'x'.repeat(1500))), 413);
  });

  it('applies SOKETI_EVENT_MAX_CHANNELS_AT_ONCE', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger([uniqueChannel(), uniqueChannel()], 'e', {})).status, 200);
    const three = [uniqueChannel(), uniqueChannel(), uniqueChannel()];
    assertHttpError(await sdkFailure(sdk.trigger(three, 'e', {})), 400);
  });

  it('applies SOKETI_EVENT_MAX_BATCH_SIZE', async () => {
    const sdk = scope.sdk();
    const batch = (n) => Array.from({ length: n }, () => ({ channel: uniqueChannel(), name: 'e', data: {} }));
    assert.equal((await sdk.triggerBatch(batch(2))).status, 200);
    assertHttpError(await sdkFailure(sdk.triggerBatch(batch(3))), 400);
  });

  it('applies SOKETI_EVENT_MAX_NAME_LENGTH to published events', async () => {
    const sdk = scope.sdk();
    assert.equal((await sdk.trigger(uniqueChannel(), 'e'.repeat(20), {})).status, 200);
    assertHttpError(await sdkFailure(sdk.trigger(uniqueChannel(), 'e'.repeat(21), {})), 400);
  });

  it('applies SOKETI_CHANNEL_LIMITS_MAX_NAME_LENGTH to subscriptions', async () => {
    const client = await scope.rawConnected();
    await client.subscribeOk(channelOfLength(40));
    const tooLong = channelOfLength(41);
    client.send({ event: 'pusher:subscribe', data: { channel: tooLong } });
    const frame = await client.next(
      (f) => f.event === 'pusher:error' || (f.channel === tooLong && f.event?.startsWith('pusher')),
    );
    assert.ok(
      frame.event === 'pusher:subscription_error' || frame.event === 'pusher:error',
      `expected a refusal, got ${JSON.stringify(frame)}`,
    );
    await client.ping();
  });

  it('applies SOKETI_PRESENCE_MAX_MEMBER_SIZE', async () => {
    const channel = uniqueChannel('presence-');
    const small = { user_id: 'small', user_info: { blob: 'x'.repeat(500) } };
    await scope.rawSubscribed(channel, small);

    const client = await scope.rawConnected();
    const big = { user_id: 'big', user_info: { blob: 'x'.repeat(1500) } };
    const frame = await client.subscribe(channel, subscribeData(scope.server, client.socketId, channel, big));
    assert.equal(frame.event, 'pusher:subscription_error', client.describeHistory());
    assert.equal(parseData(frame).status, 4301);
  });

  it('applies the event size and name limits to client events', async () => {
    const channel = uniqueChannel('private-');
    const receiver = await scope.rawSubscribed(channel);
    const sender = await scope.rawSubscribed(channel);

    sender.send({ event: 'client-big', channel, data: { blob: 'x'.repeat(1500) } });
    assert.equal(parseData(await sender.next('pusher:error')).code, 4301);
    sender.send({ event: `client-${'x'.repeat(14)}`, channel, data: {} });
    assert.equal(parseData(await sender.next('pusher:error')).code, 4301);

    // A client event within both limits still goes through, and is the first to arrive.
    sender.send({ event: 'client-small', channel, data: { blob: 'x'.repeat(500) } });
    const next = await receiver.next((f) => f.event?.startsWith('client-'));
    assert.equal(next.event, 'client-small', receiver.describeHistory());
  });
});
