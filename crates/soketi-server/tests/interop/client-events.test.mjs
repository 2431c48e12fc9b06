// Client events (`client-*`): delivery to the other subscribers, never back to the sender, with
// the sender's user_id on presence channels, and every case where the server must refuse them.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ENCRYPTED, parseData, record, subscribe, uniqueChannel, useServer, waitFor, waitForArgs } from './harness.mjs';

const alice = { user_id: 'alice', user_info: { name: 'Alice' } };
const bob = { user_id: 'bob', user_info: { name: 'Bob' } };
const carol = { user_id: 'carol', user_info: { name: 'Carol' } };

/** The next frame that is an event for the application, not a protocol frame. */
function nextAppEvent(client) {
  return client.next((f) => typeof f.event === 'string' && !f.event.startsWith('pusher'));
}

/**
 * Sends `message` from a raw sender and asserts the refusal: a `pusher:error` with code 4301,
 * the sender still connected, and nothing delivered to a subscriber of `channel`.
 */
async function assertRefused(scope, channel, message, { senderSubscribed = true } = {}) {
  const receiver = await scope.rawSubscribed(channel, bob);
  const sender = senderSubscribed ? await scope.rawSubscribed(channel, alice) : await scope.rawConnected();

  sender.send({ channel, ...message });
  const error = await sender.next('pusher:error');
  assert.equal(parseData(error).code, 4301, `pusher:error data; frames: ${sender.describeHistory()}`);
  await sender.ping();
  assert.ok(sender.isOpen, 'the sender stays connected');

  // The refused event would have been queued to the receiver before the error reached the
  // sender, so the sentinel published afterwards must be the receiver's next event.
  await scope.sdk(ENCRYPTED).trigger(channel, 'sentinel', {});
  const next = await nextAppEvent(receiver);
  assert.equal(next.event, 'sentinel', `receiver frames: ${receiver.describeHistory()}`);
}

describe('client events enabled', () => {
  const scope = useServer({ SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES: 'true' });

  it('delivers a client event on a private channel to the others, not back to the sender', async () => {
    const name = uniqueChannel('private-');
    const sender = await scope.connectedPusher();
    const receiver = await scope.connectedPusher();
    const { channel: sent } = await subscribe(sender, name);
    const { channel: got } = await subscribe(receiver, name);

    const echoes = record(sent, 'client-x');
    const received = waitFor(got, 'client-x');
    assert.equal(sent.trigger('client-x', { hello: 'world' }), true);
    assert.deepEqual(await received, { hello: 'world' });

    // The reply is sent only after the receiver got the event, so an echo to the sender
    // would have arrived before it.
    const reply = waitFor(sent, 'client-reply');
    got.trigger('client-reply', { thanks: true });
    assert.deepEqual(await reply, { thanks: true });
    echoes.stop();
    assert.deepEqual(echoes, [], 'the sender does not receive its own event');
  });

  it("adds the sender's user_id on a presence channel, which pusher-js passes as metadata", async () => {
    const name = uniqueChannel('presence-');
    const sender = await scope.connectedPusher({ presence: alice });
    const receiver = await scope.connectedPusher({ presence: bob });
    const { channel: sent } = await subscribe(sender, name);
    const { channel: got } = await subscribe(receiver, name);
    const raw = await scope.rawSubscribed(name, carol);

    const received = waitForArgs(got, 'client-wave');
    sent.trigger('client-wave', { n: 1 });
    const [data, metadata] = await received;
    assert.deepEqual(data, { n: 1 });
    assert.deepEqual(metadata, { user_id: 'alice' });

    const frame = await raw.next('client-wave');
    assert.equal(frame.channel, name);
    assert.equal(frame.user_id, 'alice');
    assert.deepEqual(parseData(frame), { n: 1 });
  });

  it('accepts an event name of exactly 200 characters', async () => {
    const channel = uniqueChannel('private-');
    const receiver = await scope.rawSubscribed(channel, bob);
    const sender = await scope.rawSubscribed(channel, alice);
    const event = `client-${'x'.repeat(193)}`;
    assert.equal(event.length, 200);
    sender.send({ event, channel, data: {} });
    const frame = await receiver.next(event);
    assert.equal(frame.channel, channel);
  });

  it('refuses a client event on a public channel with 4301', async () => {
    await assertRefused(scope, uniqueChannel(), { event: 'client-x', data: {} });
  });

  it('refuses a client event on a private-encrypted channel with 4301', async () => {
    await assertRefused(scope, uniqueChannel('private-encrypted-'), { event: 'client-x', data: {} });
  });

  it('refuses a client event from a connection not subscribed to the channel with 4301', async () => {
    await assertRefused(scope, uniqueChannel('private-'), { event: 'client-x', data: {} }, { senderSubscribed: false });
  });

  it('refuses a client event whose name is over 200 characters with 4301', async () => {
    const event = `client-${'x'.repeat(194)}`;
    assert.equal(event.length, 201);
    await assertRefused(scope, uniqueChannel('private-'), { event, data: {} });
  });

  it('refuses a client event whose data is over 100 KB with 4301', async () => {
    await assertRefused(scope, uniqueChannel('presence-'), { event: 'client-x', data: { blob: 'x'.repeat(101 * 1024) } });
  });
});

describe('client events on the default server (disabled)', () => {
  const scope = useServer();

  it('refuses a client event with 4301 when the app does not enable them', async () => {
    await assertRefused(scope, uniqueChannel('private-'), { event: 'client-x', data: {} });
  });

  it('refuses it on a presence channel too', async () => {
    await assertRefused(scope, uniqueChannel('presence-'), { event: 'client-x', data: {} });
  });
});
